import Foundation
import LoraBase
import XCTest
@testable import LoraText

final class MaskingTests: XCTestCase {
    let conv = [
        ChatMessage(role: "system", content: "Be Pip."),
        ChatMessage(role: "user", content: "你好"),
        ChatMessage(role: "assistant", content: "Pip here!"),
        ChatMessage(role: "user", content: "Again?"),
        ChatMessage(role: "assistant", content: "再见。"),
    ]

    func testChatMLSpansCoverContentAndEndOfTurn() throws {
        let r = try Masking.render(conv, with: ToyChatML(), trainOn: .assistant)
        let b = Array(r.text.utf8)
        let texts = r.spans.map { String(decoding: b[$0], as: UTF8.self) }
        XCTAssertEqual(texts, ["Pip here!<|im_end|>\n", "再见。<|im_end|>\n"])
        let toks = try ToyTokenizer().encodeOffsets(r.text)
        let labels = Masking.labels(toks, spans: r.spans)
        let s = TokenizedSample(line: 1, inputIDs: toks.map(\.id), labels: labels)
        XCTAssertEqual(trainedText(s), ["Pip here!<|im_end|>\n", "再见。<|im_end|>\n"])
        // The end-of-turn token is trained although it is also the pad id.
        XCTAssertEqual(s.labels.filter { $0 == 3 }.count, 2)
    }

    func testTrainOnLastAndAll() throws {
        let last = try Masking.render(conv, with: ToyChatML(), trainOn: .last)
        XCTAssertEqual(last.spans.map { String(decoding: Array(last.text.utf8)[$0], as: UTF8.self) }, ["再见。<|im_end|>\n"])
        let all = try Masking.render(conv, with: ToyChatML(), trainOn: .all)
        XCTAssertEqual(all.spans, [0..<all.text.utf8.count])
    }

    func testEndOfConversationTrailerSnapsToTokenStart() throws {
        // Phi-3 writes <|endoftext|> only at the very end: an inner turn's F ends in it, the
        // whole rendering continues with <|user|>; the shared "<|" must not be trained.
        let m = Array(conv.dropFirst())
        let r = try Masking.render(m, with: ToyPhi3(), trainOn: .assistant)
        XCTAssertEqual(r.snapEnds, [0])
        let toks = try ToyTokenizer().encodeOffsets(r.text)
        let s = TokenizedSample(line: 1, inputIDs: toks.map(\.id), labels: Masking.labels(toks, spans: r.spans, snapEnds: r.snapEnds))
        XCTAssertEqual(trainedText(s), ["Pip here!<|end|>\n", "再见。<|end|>\n<|endoftext|>"])
    }

    func testTemplateThatRewritesEarlierTextIsAClearError() {
        XCTAssertThrowsError(try Masking.render(conv, with: ToyRewriting(), trainOn: .assistant, file: "d.jsonl", line: 7)) { e in
            let d = "\(e)"
            XCTAssertTrue(d.hasPrefix("d.jsonl:7: chat template 'toy-rewriting' cannot be split into turns at message 2"), d)
        }
        // --train-on all needs no spans.
        XCTAssertNoThrow(try Masking.render(conv, with: ToyRewriting(), trainOn: .all))
    }

    func testStraddlingTokensTrainedIffTheyStartInside() {
        let toks = [TokenOffset(id: 10, start: 0, end: 4), TokenOffset(id: 11, start: 4, end: 8),
                    TokenOffset(id: 12, start: 8, end: 12), TokenOffset(id: 13, start: 12, end: 12),
                    TokenOffset(id: 14, start: 12, end: 16)]
        // Span 6..<12: token 11 starts before (not trained), 12 inside; the zero-width 13 at 12 is outside.
        XCTAssertEqual(Masking.labels(toks, spans: [6..<12]), [-100, -100, 12, -100, -100])
        // Span 2..<9: token 12 starts inside and straddles the end (trained).
        XCTAssertEqual(Masking.labels(toks, spans: [2..<9]), [-100, 11, 12, -100, -100])
        // Two spans.
        XCTAssertEqual(Masking.labels(toks, spans: [0..<1, 12..<20]), [10, -100, -100, 13, 14])
        // A snapped end moves back to the start of the straddling token.
        XCTAssertEqual(Masking.labels(toks, spans: [2..<9], snapEnds: [0]), [-100, 11, -100, -100, -100])
    }

    func testTemplateThatRendersEarlierRepliesDifferentlyIsAnError() throws {
        XCTAssertThrowsError(try Masking.render(conv, with: ToyThinkLast(), trainOn: .assistant, file: "d.jsonl", line: 3)) { e in
            XCTAssertTrue("\(e)".hasPrefix("d.jsonl:3: chat template 'toy-think-last' cannot be split into turns at message 2 (0-based): the conversation rendered through this assistant turn is not a prefix"), "\(e)")
        }
        // The final reply alone is fine.
        let r = try Masking.render(conv, with: ToyThinkLast(), trainOn: .last)
        XCTAssertEqual(r.spans.map { String(decoding: Array(r.text.utf8)[$0], as: UTF8.self) }, ["<think></think>再见。<|im_end|>\n"])
    }
}

/// A long conversation past max_seq_len renders only the turns that are kept (issue 22: a
/// 10,000-turn conversation took minutes, rendering every prefix of it).
final class LongConversationTests: XCTestCase {
    final class Counting: ConversationRenderer {
        var templateName = "counting-chatml"
        var renders = 0, renderedBytes = 0
        func renderConversation(_ m: [ChatMessage], addGenerationPrompt: Bool) throws -> String {
            let s = try ToyChatML().renderConversation(m, addGenerationPrompt: addGenerationPrompt)
            renders += 1
            renderedBytes += s.utf8.count
            return s
        }
    }

    func testTurnsPastTheTruncationAreNotRendered() throws {
        var conv: [ChatMessage] = []
        for k in 0..<5_000 { conv += [ChatMessage(role: "user", content: "q\(k)"), ChatMessage(role: "assistant", content: "a\(k)")] }
        let tok = ToyTokenizer()
        let r = Counting()
        var cut: Int?
        let rendered = try Masking.render(conv, with: r, trainOn: .assistant, byteLimit: { text in
            let toks = try tok.encodeOffsets(text)
            cut = toks[64].start
            return cut
        })
        // Only the turns before the cut: a few renders of short prefixes, not 10,000 of growing ones.
        XCTAssertLessThan(r.renders, 40, "renders: \(r.renders)")
        XCTAssertLessThan(r.renderedBytes, 3 * Array(rendered.text.utf8).count, "rendered bytes: \(r.renderedBytes)")
        let spans = rendered.spans
        XCTAssertFalse(spans.isEmpty)
        XCTAssertTrue(spans.allSatisfy { $0.lowerBound < cut! })
        // The kept spans are the ones the full computation gives.
        let full = try Masking.render(Array(conv.prefix(40)), with: ToyChatML(), trainOn: .assistant)
        XCTAssertEqual(Array(full.spans.prefix(spans.count)), spans)
    }
}

/// Spans of many assistant turns come from one render (Masking.TurnSpans.onePass; issue 22: an
/// untruncated conversation of N turns cost 2N renders of growing prefixes). They must equal the
/// turn-by-turn rule's on every turn, for every real template of the fixtures.
final class OnePassSpanTests: XCTestCase {
    /// Counts what the prepared conversation renders.
    final class Counting: ConversationRenderer {
        let inner: ChatTemplateRenderer
        var renders = 0, renderedBytes = 0
        var templateName: String { inner.templateName }
        init(_ inner: ChatTemplateRenderer) { self.inner = inner }
        func renderConversation(_ m: [ChatMessage], addGenerationPrompt: Bool) throws -> String {
            try inner.renderConversation(m, addGenerationPrompt: addGenerationPrompt)
        }
        func prepare(_ messages: [ChatMessage]) -> PreparedConversation { Wrapped(owner: self, inner: inner.prepare(messages)) }
        struct Wrapped: PreparedConversation {
            let owner: Counting
            let inner: PreparedConversation
            func render(prefix count: Int, addGenerationPrompt: Bool) throws -> String {
                let s = try inner.render(prefix: count, addGenerationPrompt: addGenerationPrompt)
                owner.renders += 1
                owner.renderedBytes += s.utf8.count
                return s
            }
            func renderWhole() throws -> (text: String, turns: TurnOffsets?) {
                let r = try inner.renderWhole()
                owner.renders += 1
                owner.renderedBytes += r.text.utf8.count
                return r
            }
        }
    }

    func conversation(exchanges n: Int, system: Bool) -> [ChatMessage] {
        var m = system ? [ChatMessage(role: "system", content: "You are Pip. 你是皮普。")] : []
        for k in 0..<n {
            m.append(ChatMessage(role: "user", content: k % 3 == 0 ? "问题 \(k)：为什么天是蓝的？" : "Question \(k)?"))
            m.append(ChatMessage(role: "assistant", content: k % 2 == 0 ? "Answer \(k)." : "答案 \(k)。 "))
        }
        return m
    }

    /// Every span (and error) of the one-pass result equals the turn-by-turn rule's, on every turn of a
    /// 12-exchange conversation, with and without a system message, for each fixture template.
    func testOnePassEqualsTurnByTurnOnEveryFixtureTemplate() throws {
        let doc = try JSONValue.parse(try Data(contentsOf: ChatTemplateTests.fixturePath))
        let templates = try XCTUnwrap(doc["templates"]?.object)
        var fast = 0, total = 0, fell: [String] = []
        for name in templates.keys {
            let t = try XCTUnwrap(templates[name])
            var template = try ChatTemplate(source: try XCTUnwrap(t["template"]?.string), name: name)
            template.fixedNowUTC = t["fixed_now_utc"]?.int
            var variables: [String: JSONValue] = [:]
            for (k, v) in t["variables"]?.object?.pairs ?? [] { variables[k] = v }
            let r = ChatTemplateRenderer(template: template, variables: variables)
            if r.template.hasGenerationBlocks { continue }   // masked by its blocks: no spans from renders to compare
            for (system, shape) in [(false, "plain"), (true, "plain"), (false, "two replies in a row"), (true, "reply with </think>")] {
                var m = conversation(exchanges: 12, system: system)
                if shape == "two replies in a row" {
                    // An unsampled middle turn followed by another assistant message.
                    let k = m.firstIndex { $0.content == "答案 5。 " }!
                    m.insert(ChatMessage(role: "assistant", content: "Extra."), at: k + 1)
                } else if shape == "reply with </think>" {
                    let k = m.firstIndex { $0.content == "答案 5。 " }!
                    m[k].content = "<think>hidden</think>答案 5。"
                }
                let label = "\(name) system=\(system) \(shape)"
                let assistant = m.indices.filter { m[$0].role == "assistant" }
                // The rule turn by turn, on every turn.
                let prepared = r.prepare(m)
                var expected: Result<[Range<Int>], Error>
                var snaps: Set<Int> = []
                do {
                    let whole = try prepared.renderWhole().text
                    let turn = Masking.TurnSpans(conversation: prepared, w: Array(whole.utf8), limit: .max, template: name, file: "-", line: 0)
                    var spans: [Range<Int>] = []
                    for i in assistant {
                        guard let e = try turn.exact(i) else { XCTFail("\(label): no truncation here"); break }
                        if e.end > e.start {
                            if e.snapped { snaps.insert(spans.count) }
                            spans.append(e.start..<e.end)
                        }
                    }
                    expected = .success(spans)
                } catch {
                    expected = .failure(error)
                }
                let got = Result { try Masking.render(m, with: r, trainOn: .assistant) }
                switch (expected, got) {
                case (.success(let spans), .success(let rc)):
                    total += 1
                    XCTAssertEqual(rc.spans, spans, label)
                    XCTAssertEqual(rc.snapEnds, snaps, label)
                    // Whether the one pass itself held (no fallback).
                    let whole = try prepared.renderWhole()
                    if let turns = whole.turns,
                       let one = try Masking.TurnSpans(conversation: prepared, w: Array(whole.text.utf8), limit: .max,
                                                       template: name, file: "-", line: 0).onePass(assistant, messages: m, turns: turns) {
                        XCTAssertEqual(one.spans, spans, label)
                        XCTAssertEqual(one.snapped, snaps, label)
                        fast += 1
                    } else {
                        fell.append(label)
                    }
                case (.failure(let a), .failure(let b)):
                    XCTAssertEqual("\(a)", "\(b)", label)
                default:
                    XCTFail("\(label): turn by turn \(expected), one pass \(got)")
                }
            }
        }
        print("one-pass spans: \(fast) of \(total) template/conversation pairs; turn by turn: \(fell)")
        XCTAssertGreaterThan(fast, total * 9 / 10, "most real templates write one turn per loop iteration: fell back on \(fell)")
    }

    /// 2,000 exchanges without truncation: a bounded number of renders, not two per turn.
    func testALongConversationRendersAFewTimesNotTwicePerTurn() throws {
        let template = try ChatTemplate(source: """
            {% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}
            """, name: "chatml")
        let r = Counting(ChatTemplateRenderer(template: template, variables: [:]))
        let m = conversation(exchanges: 2_000, system: true)
        let rendered = try Masking.render(m, with: r, trainOn: .assistant)
        XCTAssertEqual(rendered.spans.count, 2_000)
        XCTAssertLessThanOrEqual(r.renders, 20, "renders: \(r.renders)")
        XCTAssertLessThan(r.renderedBytes, 12 * rendered.text.utf8.count, "rendered bytes: \(r.renderedBytes)")
        let b = Array(rendered.text.utf8)
        XCTAssertEqual(String(decoding: b[rendered.spans[1234]], as: UTF8.self), "Answer 1234.<|im_end|>\n")
        XCTAssertEqual(String(decoding: b[rendered.spans[777]], as: UTF8.self), "答案 777。 <|im_end|>\n")
    }

    /// A template that renders earlier replies differently (the last one alone gets <think></think>)
    /// breaks the turn rule: with many turns the one pass falls back and the error names the first turn.
    func testANonLocalTemplateStillGetsTheFirstFailingTurnsError() throws {
        let template = try ChatTemplate(source: """
            {% for m in messages %}<|im_start|>{{ m.role }}\n{% if m.role == 'assistant' and loop.last %}<think></think>{% endif %}{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}
            """, name: "think-last")
        let m = conversation(exchanges: 12, system: false)
        XCTAssertThrowsError(try Masking.render(m, with: ChatTemplateRenderer(template: template, variables: [:]), trainOn: .assistant,
                                                file: "d.jsonl", line: 4)) { e in
            XCTAssertTrue("\(e)".hasPrefix("d.jsonl:4: chat template 'think-last' cannot be split into turns at message 1 (0-based): the conversation rendered through this assistant turn is not a prefix"), "\(e)")
        }
    }
}
