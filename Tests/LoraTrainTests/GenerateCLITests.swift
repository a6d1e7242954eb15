import Foundation
import LoraTrain
import TestSupport
import XCTest

/// `lora-gpu generate` run as a user runs it, against transformers' greedy
/// `generate` + apply_chat_template + decode (scripts/make_generate_fixtures.py, cli_chatml).
final class GenerateCLITests: XCTestCase {
    static let root = testFixturesRoot + "/generate/cli_chatml"

    func run(_ args: [String], stdin: String = "") throws -> (status: Int32, stdout: Data, stderr: String) {
        let r = try CLI.run(["generate"] + args, stdin: stdin)
        return (r.status, r.stdoutData, r.stderr)
    }

    func testStdoutEqualsTransformersForPromptRawPromptTemplateFileAndChat() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: Self.root + "/cli.json"))
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let cases = try XCTUnwrap(json["cases"] as? [[String: Any]])
        let maxNew = try XCTUnwrap(json["max_new_tokens"] as? Int)
        XCTAssertEqual(cases.count, 6)
        let fixtures = URL(fileURLWithPath: Self.root).deletingLastPathComponent().deletingLastPathComponent().path
        for c in cases {
            let args = try XCTUnwrap(c["args"] as? [String]).map { $0 == "plain.jinja" ? Self.root + "/plain.jinja" : $0 }
            // The ChatML model with its adapter, or a GGUF file (model, tokenizer and template from its metadata).
            let model = (c["model"] as? String).map { ["--model", fixtures + "/" + $0] }
                ?? ["--model", Self.root + "/model", "--adapter", Self.root + "/adapter"]
            let r = try run(args + model + ["--max-new-tokens", String(maxNew)], stdin: c["stdin"] as? String ?? "")
            XCTAssertEqual(r.status, 0, "\(args): \(r.stderr)")
            let expected = try XCTUnwrap(c["stdout"] as? String)
            XCTAssertEqual(String(decoding: r.stdout, as: UTF8.self), expected, "\(args) \(model): stdout")
            XCTAssertEqual(r.stdout, Data(expected.utf8), "\(args) \(model): stdout bytes")
            if let ids = c["ids"] as? [Int] {
                // The EOS ids and the template's end-of-turn token (<|im_end|>, found from the template alone).
                let stops = (c["stop"] as? Int).map { [$0] } ?? [json["im_end"] as? Int, json["eos"] as? Int].compactMap { $0 }
                let why = ids.last.map { stops.contains($0) } == true ? "stopped by stop token \(ids.last!)" : "stopped by max_new_tokens"
                XCTAssertTrue(r.stderr.contains("\(ids.count) new tokens") && r.stderr.contains(why), "\(args): \(r.stderr)")
            }
        }
    }

    /// `--chat-template-kwargs` reaches the template in `generate` (cli_chatml/kwargs.json, made by
    /// scripts/make_generate_fixtures.py on the same model and adapter): Qwen3-0.6B's template as a file, --prompt with
    /// enable_thinking=false (its generation prompt writes an empty think block) and without the flag. Each run's prompt
    /// is transformers' apply_chat_template(add_generation_prompt=True, tokenize=True, **kwargs) — its length in the
    /// summary, its ids as generate renders them (ModelText, built as the command builds it) — and stdout is
    /// transformers' greedy continuation from it.
    func testChatTemplateKwargsReachTheTemplateAsTransformersRenders() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: Self.root + "/kwargs.json"))
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let cases = try XCTUnwrap(json["cases"] as? [[String: Any]])
        XCTAssertEqual(cases.map { $0["kwargs"] as? [String] }, [["enable_thinking=false"], []])
        let dir = try temporaryDirectory("generate-kwargs")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let corpus = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath:
            testFixturesRoot + "/text/templates/chat_templates.json"))) as? [String: Any]
        let templates = try XCTUnwrap(corpus?["templates"] as? [String: [String: Any]])
        let qwen3 = dir + "/qwen3.jinja"
        try XCTUnwrap(templates[try XCTUnwrap(json["template"] as? String)]?["template"] as? String)
            .write(toFile: qwen3, atomically: true, encoding: .utf8)
        let maxNew = try XCTUnwrap(json["max_new_tokens"] as? Int), imEnd = try XCTUnwrap(json["im_end"] as? Int)
        var prompts: [[Int]] = []
        for c in cases {
            let kwargs = try XCTUnwrap(c["kwargs"] as? [String]), prompt = try XCTUnwrap(c["prompt"] as? String)
            let promptIDs = try XCTUnwrap(c["prompt_ids"] as? [Int]), ids = try XCTUnwrap(c["ids"] as? [Int])
            prompts.append(promptIDs)
            let r = try run(["--model", Self.root + "/model", "--adapter", Self.root + "/adapter", "--prompt", prompt,
                             "--chat-template", qwen3, "--max-new-tokens", String(maxNew)]
                            + kwargs.flatMap { ["--chat-template-kwargs", $0] })
            XCTAssertEqual(r.status, 0, "\(kwargs): \(r.stderr)")
            XCTAssertEqual(String(decoding: r.stdout, as: UTF8.self), try XCTUnwrap(c["stdout"] as? String), "\(kwargs): stdout")
            XCTAssertEqual(ids.last, imEnd, "\(kwargs): transformers stopped at <|im_end|>")
            XCTAssertTrue(r.stderr.contains("[\(promptIDs.count) prompt tokens ") && r.stderr.contains(", \(ids.count) new tokens ")
                          && r.stderr.contains("stopped by stop token \(imEnd)]"), "\(kwargs): \(r.stderr)")
            let text = try ModelText(model: Self.root + "/model", chatTemplate: qwen3, needsTemplate: true,
                                     templateVariables: try TrainingConfig.templateKwargs(kwargs))
            XCTAssertEqual(try text.chatIDs(messages: [ModelText.message("user", prompt)]), promptIDs, "\(kwargs): prompt ids")
            XCTAssertEqual(text.decode(promptIDs), (c["rendered"] as? String)?.replacingOccurrences(of: "<|im_start|>", with: "")
                .replacingOccurrences(of: "<|im_end|>", with: ""), "\(kwargs): the rendering, special tokens skipped")
        }
        // The flag changed the prompt: the think block is written by the generation prompt.
        XCTAssertEqual(prompts[0].count, 40)
        XCTAssertEqual(Array(prompts[0].prefix(prompts[1].count)), prompts[1])
    }

    /// `--quantize`: a GGUF file's blocks kept (the default) or dequantized (none) give the same text, bit for bit
    /// the same numbers; a value that is not a mode is named with the choices.
    func testQuantizeModesGiveTheSameTextAndABadOneIsNamed() throws {
        let model = URL(fileURLWithPath: Self.root).deletingLastPathComponent().deletingLastPathComponent().path + "/gguf/llama_q.gguf"
        let args = ["--model", model, "--raw-prompt", "hello world", "--max-new-tokens", "6", "--kernel-config", "cpu"]
        let kept = try run(args), none = try run(args + ["--quantize", "none"])
        XCTAssertEqual(kept.status, 0, kept.stderr)
        XCTAssertEqual(none.status, 0, none.stderr)
        XCTAssertEqual(kept.stdout, none.stdout)
        XCTAssertTrue(kept.stderr.contains("6 new tokens"), kept.stderr)
        let bad = try run(args + ["--quantize", "q2"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("--quantize must be one of auto, none, q8_0, q4_0, nf4, got 'q2'"), bad.stderr)
    }

    /// `tune --format` names a format that is not a quantized one (before any tuning), and `--quantize` asks for `--model`.
    func testTuneFormatAndQuantizeMistakesAreNamed() throws {
        for (args, says) in [(["--format", "q4_0,q3_k"], "--format: 'q3_k' is not a quantized format (q8_0, q4_0, q4_1, q5_0, q5_1, nf4, q4_k, q5_k, q6_k, all)"),
                             (["--format", "f16"], "--format: 'f16' is not a quantized format"),
                             (["--quantize", "q4_0"], "--quantize applies to --model")] {
            let r = try CLI.run(["tune", "--force"] + args)
            XCTAssertNotEqual(r.status, 0, "\(args)")
            XCTAssertTrue(r.stderr.contains(says), "\(args): \(r.stderr)")
        }
    }

    func testPromptWithoutChatTemplateAsksForOneAndRawPromptStillWorks() throws {
        let dir = try temporaryDirectory("notemplate")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for f in ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json"] {
            try FileManager.default.copyItem(atPath: Self.root + "/model/" + f, toPath: dir + "/" + f)
        }
        // tokenizer_config.json without its template (and no chat_template.jinja).
        let cfgData = try Data(contentsOf: URL(fileURLWithPath: Self.root + "/model/tokenizer_config.json"))
        var cfg = try XCTUnwrap(try JSONSerialization.jsonObject(with: cfgData) as? [String: Any])
        cfg["chat_template"] = nil
        try JSONSerialization.data(withJSONObject: cfg).write(to: URL(fileURLWithPath: dir + "/tokenizer_config.json"))
        let r = try run(["--model", dir, "--prompt", "hi", "--max-new-tokens", "2"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("no chat template") && r.stderr.contains("--chat-template")
                      && r.stderr.contains("--raw-prompt"), r.stderr)
        XCTAssertTrue(r.stdout.isEmpty)
        let raw = try run(["--model", dir, "--raw-prompt", "The quick", "--max-new-tokens", "3"])
        XCTAssertEqual(raw.status, 0, raw.stderr)
        XCTAssertTrue(raw.stderr.contains("3 new tokens"), raw.stderr)
        // Argument errors name the option.
        let both = try run(["--model", dir, "--prompt", "a", "--raw-prompt", "b"])
        XCTAssertNotEqual(both.status, 0)
        XCTAssertTrue(both.stderr.contains("exactly one of --prompt, --raw-prompt, --chat"), both.stderr)
        let badT = try run(["--model", dir, "--raw-prompt", "a", "--temperature=-1"])
        XCTAssertTrue(badT.stderr.contains("temperature must be ≥ 0"), badT.stderr)
        let unknown = try run(["--model", Self.root + "/model", "--prompt", "a", "--chat-template", "nonesuch"])
        XCTAssertTrue(unknown.stderr.contains("--chat-template nonesuch"), unknown.stderr)
    }
}
