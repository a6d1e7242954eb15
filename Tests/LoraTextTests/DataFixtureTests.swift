import Foundation
import LoraBase
import XCTest
@testable import LoraText

/// Tests/Fixtures/text/data (scripts/make_data_fixtures.py): per-family tokenizer directories and
/// masks.json with transformers' renderings and ids and the hand-marked trained pieces.
enum DataFixtures {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../Fixtures/text/data").standardized

    static func masks() throws -> JSONValue {
        try JSONValue.parse(Data(contentsOf: root.appendingPathComponent("masks.json")))
    }

    static func templateSource(_ family: String) throws -> String {
        let config = try JSONValue.parse(Data(contentsOf: root.appendingPathComponent(family).appendingPathComponent("tokenizer_config.json")))
        return config["chat_template"]!.string!
    }

    static func messages(_ v: JSONValue) -> [ChatMessage] {
        (v.array ?? []).map { ChatMessage(role: $0["role"]!.string!, content: $0["content"]!.string!) }
    }

    static func renderer(_ family: String, _ f: JSONValue) throws -> ChatTemplateRenderer {
        var specials: [String: String] = [:]
        for (k, v) in f["special_tokens"]!.object!.pairs { specials[k] = v.string! }
        return ChatTemplateRenderer(template: try ChatTemplate(source: try templateSource(family), name: family), specialTokens: specials)
    }
}

final class DataFixtureTests: XCTestCase {
    /// The assistant spans found from each real template equal the hand-marked pieces
    /// (text level: no tokenizer involved), and the template's own errors come through.
    func testSpansFromRealTemplatesMatchHandMarkedPieces() throws {
        let fixtures = try DataFixtures.masks()
        var checked = 0, families = 0
        for (family, f) in fixtures["families"]!.object!.pairs {
            families += 1
            let r = try DataFixtures.renderer(family, f)
            for c in f["cases"]!.array! {
                let name = c["conversation"]!.string!
                let messages = DataFixtures.messages(c["messages"]!)
                if let err = c["error"]?.string {
                    XCTAssertThrowsError(try Masking.render(messages, with: r, trainOn: .assistant)) { e in
                        XCTAssertEqual("\(e)", err, "\(family)/\(name)")
                    }
                    continue
                }
                let rendered = try Masking.render(messages, with: r, trainOn: .assistant)
                XCTAssertEqual(rendered.text, c["rendered"]!.string!, "\(family)/\(name)")
                let bytes = Array(rendered.text.utf8)
                let got = rendered.spans.map { String(decoding: bytes[$0], as: UTF8.self) }
                let want = c["trained_pieces"]!.array!.map { $0.string! }
                XCTAssertEqual(got.count, want.count, "\(family)/\(name)")
                for (k, (g, w)) in zip(got, want).enumerated() {
                    if rendered.snapEnds.contains(k) {
                        // An end-of-conversation trailer (Phi-3's eos_token): the span runs to where the
                        // renderings part, inside the next turn's first token; tokens move it back (tested
                        // with the tokenizer below).
                        XCTAssertTrue(g.hasPrefix(w) && g.count - w.count < 8, "\(family)/\(name) turn \(k): \(g.debugDescription) vs \(w.debugDescription)")
                    } else {
                        XCTAssertEqual(g, w, "\(family)/\(name) turn \(k)")
                    }
                }
                // --train-on last: only the final reply.
                let last = try Masking.render(messages, with: r, trainOn: .last)
                XCTAssertEqual(last.spans.count, 1)
                XCTAssertEqual(last.spans.first?.lowerBound, rendered.spans.last?.lowerBound, "\(family)/\(name)")
                checked += 1
            }
        }
        XCTAssertEqual(families, 12)
        XCTAssertGreaterThanOrEqual(checked, 50)
    }

    /// The rule computed independently in Python (scripts/make_data_fixtures.py, rule_spans) over every
    /// template of the template fixtures: the same spans (before the token-level snap of trailers), the
    /// same trailer turns, a prefix error where the template rewrites earlier turns (QwQ, Qwen3, …),
    /// and the template's own error where it raises.
    func testRuleOverEveryTemplate() throws {
        let fixtures = try DataFixtures.masks()
        let templates = try JSONValue.parse(Data(contentsOf: DataFixtures.root.appendingPathComponent("../templates/chat_templates.json")))
        let conversations = fixtures["families"]!["qwen2"]!["cases"]!.array!
        var spansChecked = 0, prefixErrors = 0, raised = 0, generationTemplates = 0
        for (name, cases) in fixtures["rule_check"]!.object!.pairs {
            let t = templates["templates"]![name]!
            var variables: [String: JSONValue] = [:]
            for (k, v) in t["variables"]!.object!.pairs { variables[k] = v }
            for (k, v) in fixtures["rule_variables"]!.object!.pairs { variables[k] = v }
            let r = ChatTemplateRenderer(template: try ChatTemplate(source: t["template"]!.string!, name: name), variables: variables)
            // A template with {% generation %} blocks (SmolLM3's, LFM2.5-VL's) is masked by its blocks, as transformers'
            // return_assistant_tokens_mask: PerTurnExpansionTests checks those against transformers.
            if r.template.hasGenerationBlocks { generationTemplates += 1; continue }
            for (conv, expected) in cases.object!.pairs {
                let messages = DataFixtures.messages(conversations.first { $0["conversation"]!.string! == conv }!["messages"]!)
                switch expected["error"]?.string {
                case "raises"?:
                    XCTAssertThrowsError(try Masking.render(messages, with: r, trainOn: .assistant), "\(name)/\(conv)") { e in
                        XCTAssertFalse(e is DatasetError, "\(name)/\(conv): \(e)")
                    }
                    raised += 1
                case "prefix"?:
                    XCTAssertThrowsError(try Masking.render(messages, with: r, trainOn: .assistant), "\(name)/\(conv)") { e in
                        guard case DatasetError.templatePrefix(let tn, _, _, let turn, _) = e else {
                            return XCTFail("\(name)/\(conv): \(e)")
                        }
                        XCTAssertEqual(tn, name)
                        XCTAssertEqual(turn, expected["turn"]!.int!, "\(name)/\(conv)")
                    }
                    prefixErrors += 1
                default:
                    do {
                        let got = try Masking.render(messages, with: r, trainOn: .assistant)
                        let want = expected["spans"]!.array!.map { $0[0]!.int!..<$0[1]!.int! }
                        XCTAssertEqual(got.spans, want, "\(name)/\(conv)")
                        XCTAssertEqual(got.snapEnds, Set(expected["trailers"]!.array!.map { $0.int! }), "\(name)/\(conv)")
                        spansChecked += 1
                    } catch {
                        XCTFail("\(name)/\(conv): \(error)")
                    }
                }
            }
        }
        XCTAssertEqual([spansChecked, prefixErrors, raised, generationTemplates], [316, 22, 37, 2])
    }
}
