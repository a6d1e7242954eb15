import Foundation
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
}
