import Foundation
import LoraBase
import XCTest
@testable import LoraText

/// Issue 17 item 7: a template that renders earlier turns differently once later ones follow (Qwen3 drops
/// the reasoning of replies before the last user message) gives one sample per assistant turn, each equal to
/// transformers' apply_chat_template(messages[:k+1], tokenize=True) with exactly turn k's reply and end-of-turn
/// trained (scripts/make_expansion_fixtures.py: Qwen3 and Qwen3.5 templates; plain, system, reasoning_content,
/// inline <think>, tool calls with a tools list, enable_thinking=false).
final class PerTurnExpansionTests: XCTestCase {
    static let text = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/text").path

    func renderer(_ template: String, kwargs: JSONObject, tokenizer: Tokenizer) throws -> ChatTemplateRenderer {
        let all = try JSONValue.read(path: Self.text + "/templates/chat_templates.json")
        let source = try XCTUnwrap(all["templates"]?[template]?["template"]?.string, template)
        var r = ChatTemplateRenderer(template: try ChatTemplate(source: source, name: template), specialTokens: tokenizer.config.specialTokens)
        for (k, v) in kwargs.pairs { r.variables[k] = v }
        return r
    }

    func testSamplesEqualTransformersPerTurn() throws {
        let tok = try Tokenizer.load(directory: Self.text + "/data/qwen2")
        let adapter = TokenizerDataAdapter(tok)
        let cases = try XCTUnwrap(try JSONValue.read(path: Self.text + "/expansion.json")["cases"]?.array)
        XCTAssertEqual(cases.count, 12)
        var checked = 0
        for c in cases {
            let name = "\(c["template"]!.string!)/\(c["conversation"]!.string!)"
            let r = try renderer(c["template"]!.string!, kwargs: c["kwargs"]?.object ?? JSONObject(), tokenizer: tok)
            var line: JSONObject = ["messages": c["messages"]!]
            if let t = c["tools"], !t.isNull { line["tools"] = t }
            let (format, record) = try DatasetLineParser.parse(Array(JSONValue.object(line).serialized().utf8), file: name, line: 1)
            let processor = SampleProcessor(tokenizer: adapter, template: r, options: DatasetOptions(), file: name)
            let got = try processor.processAll(record, format: format, line: 1)
            let want = try XCTUnwrap(c["samples"]?.array)
            XCTAssertEqual(got.count, want.count, name)
            for (k, (g, w)) in zip(got, want).enumerated() {
                XCTAssertEqual(g.sample.inputIDs, w["input_ids"]!.array!.map { $0.int! }, "\(name) turn \(k): ids")
                XCTAssertEqual(g.sample.labels, w["labels"]!.array!.map { $0.int! }, "\(name) turn \(k): labels")
                XCTAssertEqual(adapter.decodeIDs(g.sample.labels.filter { $0 != -100 }), w["trained_text"]!.string!, name)
                XCTAssertEqual(g.expansion?.turn, k + 1)
                XCTAssertEqual(g.expansion?.of, want.count)
                checked += 1
            }
        }
        XCTAssertEqual(checked, 28)
    }

    /// A template with `{% generation %}` blocks (TRL's *_training.jinja form) is masked by its blocks: ids and labels
    /// equal transformers' apply_chat_template(return_assistant_tokens_mask=True); --train-on last keeps the last block.
    func testGenerationBlocksGiveTheMask() throws {
        let tok = try Tokenizer.load(directory: Self.text + "/data/qwen2")
        let adapter = TokenizerDataAdapter(tok)
        let fixture = try JSONValue.read(path: Self.text + "/expansion.json")
        let cases = try XCTUnwrap(fixture["generation"]?.array)
        XCTAssertEqual(cases.count, 9)
        for c in cases {
            let which = c["template"]!.string!
            var template = which == "ours" ? try ChatTemplate(source: try XCTUnwrap(fixture["generation_template"]?.string), name: "generation")
                : try renderer(which, kwargs: JSONObject(), tokenizer: tok).template
            // The fixture was rendered on 2026-12-07 with the clock's date (SmolLM3's template prints today's date):
            // strftime_now() sees that day, or the test fails from the next midnight on.
            template.fixedNowUTC = 1_796_644_800
            XCTAssertTrue(template.hasGenerationBlocks, which)
            let r = ChatTemplateRenderer(template: template, specialTokens: tok.config.specialTokens)
            let name = which + "/" + c["conversation"]!.string!
            let (format, record) = try DatasetLineParser.parse(Array(JSONValue.object(["messages": c["messages"]!]).serialized().utf8),
                                                               file: name, line: 1)
            let all = try SampleProcessor(tokenizer: adapter, template: r, options: DatasetOptions(), file: name)
                .processAll(record, format: format, line: 1)
            XCTAssertEqual(all.count, 1, name)
            XCTAssertNil(all[0].expansion)
            XCTAssertEqual(all[0].sample.inputIDs, c["input_ids"]!.array!.map { $0.int! }, name)
            XCTAssertEqual(all[0].sample.labels, c["labels"]!.array!.map { $0.int! }, name)
            let last = try SampleProcessor(tokenizer: adapter, template: r, options: DatasetOptions(trainOn: .last), file: name)
                .processAll(record, format: format, line: 1)[0]
            let lastText = adapter.decodeIDs(last.sample.labels.filter { $0 != -100 })
            XCTAssertTrue(c["trained_text"]!.string!.hasSuffix(lastText) && lastText.contains("<|im_end|>") && !lastText.isEmpty, lastText)
        }
        XCTAssertFalse(try ChatTemplate(source: "{{ messages[0].content }}").hasGenerationBlocks)
    }

    /// A template whose prefix property holds keeps one sample per conversation; QwQ's generation prompt
    /// ("<think>\n") is not where its rendered reply starts, so no split exists: an error naming line and turn.
    /// A conversation opening with an assistant turn, where the template indexes the first user message,
    /// gets the template's message and the reason in plain words.
    func testWhatIsNotExpanded() throws {
        let tok = try Tokenizer.load(directory: Self.text + "/data/qwen2")
        let adapter = TokenizerDataAdapter(tok)
        let messages = [ChatMessage(role: "user", content: "hi"), ChatMessage(role: "assistant", content: "yo"),
                        ChatMessage(role: "user", content: "bye"), ChatMessage(role: "assistant", content: "ciao")]
        let chatml = try renderer("qwen2", kwargs: JSONObject(), tokenizer: tok)
        let one = try SampleProcessor(tokenizer: adapter, template: chatml, options: DatasetOptions(), file: "f")
            .processAll(.conversation(messages), format: .messages, line: 1)
        XCTAssertEqual(one.count, 1)
        XCTAssertNil(one[0].expansion)
        let qwq = try renderer("qwq", kwargs: JSONObject(), tokenizer: tok)
        XCTAssertThrowsError(try SampleProcessor(tokenizer: adapter, template: qwq, options: DatasetOptions(), file: "f.jsonl")
            .processAll(.conversation(messages), format: .messages, line: 7)) { e in
            XCTAssertTrue("\(e)".hasPrefix("f.jsonl:7: chat template 'qwq' cannot be split into turns at message 1 (0-based): even with this turn last"), "\(e)")
        }
        // --train-on last of a rewriting template: the last turn's sample alone, unexpanded by the whole rendering.
        let qwen3 = try renderer("qwen3_0_6b", kwargs: JSONObject(), tokenizer: tok)
        let last = try SampleProcessor(tokenizer: adapter, template: qwen3, options: DatasetOptions(trainOn: .last), file: "f")
            .processAll(.conversation(messages), format: .messages, line: 1)
        XCTAssertEqual(last.count, 1)
        XCTAssertEqual(adapter.decodeIDs(last[0].sample.labels.filter { $0 != -100 }), "<think>\n\n</think>\n\nciao<|im_end|>\n")
        let opening = [ChatMessage(role: "assistant", content: "hello"), ChatMessage(role: "user", content: "hi")]
        let llama3 = try renderer("llama2", kwargs: JSONObject(), tokenizer: tok)
        XCTAssertThrowsError(try SampleProcessor(tokenizer: adapter, template: llama3, options: DatasetOptions(), file: "f.jsonl")
            .processAll(.conversation(opening), format: .messages, line: 3)) { e in
            XCTAssertTrue("\(e)".contains("the conversation opens with an assistant turn, and this template expects the first turn "
                                          + "after any system message to be the user's"), "\(e)")
            // Llama 2's template refuses the whole conversation too (raise_exception): --train-on all is no way out here.
            XCTAssertTrue("\(e)".hasSuffix(": start each conversation with a user message"), "\(e)")
        }
        XCTAssertThrowsError(try SampleProcessor(tokenizer: adapter, template: llama3, options: DatasetOptions(trainOn: .all), file: "f.jsonl")
            .processAll(.conversation(opening), format: .messages, line: 3)) { e in
            XCTAssertFalse("\(e)".contains("--train-on"), "\(e)")
        }
    }
}
