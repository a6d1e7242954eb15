import Foundation
import LoraText
import LoraTrain
import TestSupport
import XCTest

/// llama.cpp's tokenizer suite on four of its vocabularies (Tests/Fixtures/gguf_vocab/README.md): the
/// tokenizer `lora-gpu` builds from each GGUF file gives, for every input, the ids the model's original
/// Hugging Face tokenizer gives (add_special_tokens=False). Each vocabulary pins one rule.
final class GGUFVocabSuiteTests: XCTestCase {
    static let dir = testFixturesRoot + "/gguf_vocab"

    private func check(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let path = Self.dir + "/ggml-vocab-\(name).gguf"
        var texts = try String(contentsOfFile: path + ".inp", encoding: .utf8).components(separatedBy: "\n__ggml_vocab_test__\n")
        if texts.last == "" { texts.removeLast() }
        let lines = try String(contentsOfFile: path + ".out", encoding: .utf8).components(separatedBy: "\n")
        XCTAssertGreaterThanOrEqual(lines.count, texts.count, "\(name): .out has fewer lines than inputs", file: file, line: line)
        XCTAssertGreaterThan(texts.count, 40, name, file: file, line: line)
        let text = try ModelText(model: path, chatTemplate: nil, needsTemplate: false)
        var bad: [String] = []
        for (t, l) in zip(texts, lines) {
            let want = l.split(separator: " ").map { Int($0)! }
            let got = text.tokenizer.encode(t, addSpecialTokens: false)
            if got != want { bad.append("\(t.debugDescription): got \(got), want \(want)") }
        }
        XCTAssertEqual(bad, [], "\(name): \(bad.count) of \(texts.count) inputs differ", file: file, line: line)
    }

    /// User-defined tokens of a byte-level vocabulary are raw text: "   Hello" → "   ", "Hello".
    func testMPTSpaceRunsAreAddedTokens() throws { try check("mpt") }

    /// "starcoder": each \p{N} is its own piece before GPT-2's regex ("ied 4 ½ months": "½" alone).
    func testStarCoderSplitsEveryNumberFirst() throws { try check("starcoder") }

    /// "deepseek-coder": newlines, letters with one leading space, punctuation, CJK runs, digits.
    func testDeepSeekCoderSplitSequence() throws { try check("deepseek-coder") }

    /// SentencePiece's dummy prefix before every fragment: " Hello" → "▁", "▁Hello"; " " → "▁▁".
    func testLlamaSPMDummyPrefixOnTextStartingWithASpace() throws { try check("llama-spm") }
}
