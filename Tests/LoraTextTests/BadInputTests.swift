import Foundation
import TestSupport
import XCTest
@testable import LoraText

/// Issue 9, bad inputs on the text side: each gives one error naming the file and the
/// position or field at fault (printed with LORA_GPU_PRINT_ERRORS=1 for docs/ERRORS.md).
final class BadInputTests: XCTestCase {
    let tokenizerDir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/text/tokenizers/qwen2").path

    func message(_ body: () throws -> Void) -> String {
        do { try body(); return "no error" } catch {
            if ProcessInfo.processInfo.environment["LORA_GPU_PRINT_ERRORS"] != nil { print("ERROR:", error) }
            return "\(error)"
        }
    }

    func tokenizerJSON() throws -> String {
        try String(contentsOfFile: tokenizerDir + "/tokenizer.json", encoding: .utf8)
    }

    func testMalformedTokenizerJSONNamesTheFileAndPosition() throws {
        let full = try tokenizerJSON()
        let cut = String(full.prefix(full.count / 2))
        let m = message { _ = try Tokenizer(tokenizerJSON: Data(cut.utf8), source: "dl/tokenizer.json") }
        // One long line: the column says where.
        XCTAssertTrue(m.hasPrefix("dl/tokenizer.json: line 1, column "), m)
        XCTAssertTrue(m.contains("invalid JSON"), m)
        let bad = message { _ = try Tokenizer(tokenizerJSON: Data("{\n  \"model\": nul\n}".utf8), source: "t.json") }
        XCTAssertTrue(bad.hasPrefix("t.json: line 2, column "), bad)
        let notObject = message { _ = try Tokenizer(tokenizerJSON: Data("[1, 2]".utf8), source: "dl/tokenizer.json") }
        XCTAssertTrue(notObject.hasPrefix("dl/tokenizer.json"), notObject)
        let empty = message { _ = try Tokenizer(tokenizerJSON: Data(), source: "dl/tokenizer.json") }
        XCTAssertTrue(empty.hasPrefix("dl/tokenizer.json"), empty)
    }

    func testUnsupportedTokenizerModelTypeIsNamed() throws {
        let json = try tokenizerJSON().replacingOccurrences(of: #""type":"BPE""#, with: #""type":"Unigram""#)
        XCTAssertTrue(json.contains("Unigram"), "the fixture's model type was replaced")
        let m = message { _ = try Tokenizer(tokenizerJSON: Data(json.utf8), source: "dl/tokenizer.json") }
        XCTAssertTrue(m.hasPrefix("dl/tokenizer.json"), m)
        XCTAssertTrue(m.contains("Unigram"), m)
    }

    func testTemplateSyntaxErrorHasLineAndColumn() {
        let m = message { _ = try ChatTemplate(source: "{% for m in messages %}\n{{ m.content }\n{% endfor %}", name: "tpl.jinja") }
        XCTAssertTrue(m.hasPrefix("tpl.jinja:2:"), m)
    }

    /// --max-seq-len shorter than the template's own tokens: every sample loses its trained tokens,
    /// and the file gives one error with the count instead of an empty run.
    func testMaxSeqLenTooSmallForTheTemplate() throws {
        let tok = try Tokenizer.load(directory: tokenizerDir)
        let template = try ChatTemplateSelection.resolve(option: nil, tokenizer: tok)
        XCTAssertNotNil(template)
        let dir = try temporaryDirectory("badinput")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let line = #"{"messages": [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi there"}]}"#
        let file = dir + "/chat.jsonl"
        try (line + "\n" + line + "\n").write(toFile: file, atomically: true, encoding: .utf8)
        let m = message {
            _ = try Dataset.load(file: file, tokenizer: TokenizerDataAdapter(tok), template: template,
                                 options: DatasetOptions(maxSeqLen: 4))
        }
        XCTAssertTrue(m.hasPrefix(file), m)
        XCTAssertTrue(m.contains("no sample left to train on"), m)
        XCTAssertTrue(m.contains("truncation: 2"), m)
        // The same file with room for the reply loads.
        XCTAssertEqual(try Dataset.load(file: file, tokenizer: TokenizerDataAdapter(tok), template: template,
                                        options: DatasetOptions(maxSeqLen: 64)).samples.count, 2)
    }
}
