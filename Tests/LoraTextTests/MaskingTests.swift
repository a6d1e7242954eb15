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
