import Foundation
import LoraBase
import LoraText
import TestSupport
import XCTest
@testable import LoraTrain

/// Issue 17 item 7 as a user meets it, against transformers' renderings (Tests/Fixtures/text/expansion.json,
/// scripts/make_expansion_fixtures.py: each Qwen3 sample is apply_chat_template(messages[:k+1], tokenize=True)
/// with turn k's reply trained): `--chat-template-kwargs` / `chat_template_kwargs` reach Qwen3's template in
/// `data preview`, `data render` and training; `data preview` and the figures say which conversations were
/// expanded and into how many samples; val_split keeps a conversation's samples together; a conversation
/// opening with an assistant turn is an error naming its line.
final class ChatTemplateKwargsTests: XCTestCase {
    static let text = testFixturesRoot + "/text"
    /// The tokenizer the expansion fixture was tokenized with.
    static let tokenizer = text + "/data/qwen2"
    var dir = ""

    override func setUpWithError() throws {
        dir = try temporaryDirectory("template-kwargs")
        // Qwen3-0.6B's chat template (the fuzz corpus' copy, as the fixture rendered it) as a file.
        let all = try JSONValue.read(path: Self.text + "/templates/chat_templates.json")
        try XCTUnwrap(all["templates"]?["qwen3_0_6b"]?["template"]?.string).write(toFile: qwen3, atomically: true, encoding: .utf8)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: dir) }

    var qwen3: String { dir + "/qwen3.jinja" }

    /// transformers' samples for one conversation of the Qwen3-0.6B template.
    struct Case {
        var messages: JSONValue
        var tools: JSONValue?
        var samples: [(ids: [Int], labels: [Int])]
        var line: String {
            var o: JSONObject = ["messages": messages]
            if let tools, !tools.isNull { o["tools"] = tools }
            return JSONValue.object(o).serialized()
        }
        /// The same conversation through its first assistant turn only (one turn: nothing to expand).
        var firstTurn: String { JSONValue.object(["messages": .array(Array(messages.array!.prefix(2)))]).serialized() }
    }

    func fixture(_ conversation: String) throws -> Case {
        let cases = try XCTUnwrap(try JSONValue.read(path: Self.text + "/expansion.json")["cases"]?.array)
        let c = try XCTUnwrap(cases.first { $0["template"]?.string == "qwen3_0_6b" && $0["conversation"]?.string == conversation },
                              conversation)
        let samples = try XCTUnwrap(c["samples"]?.array).map { s in
            (ids: s["input_ids"]!.array!.map { $0.int! }, labels: s["labels"]!.array!.map { $0.int! })
        }
        return Case(messages: c["messages"]!, tools: c["tools"], samples: samples)
    }

    func write(_ lines: [String], _ name: String) throws -> String {
        let path = dir + "/" + name
        try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func trained(_ labels: [Int]) -> Int { labels.filter { $0 != -100 }.count }

    /// `data preview --json`'s samples as (line, ids, labels).
    func jsonSamples(_ stdout: String) throws -> [(line: Int, ids: [Int], labels: [Int])] {
        try stdout.split(separator: "\n").map { l in
            let v = try JSONValue.parse(Data(l.utf8))
            return (v["line"]!.int!, v["input_ids"]!.array!.map { $0.int! }, v["labels"]!.array!.map { $0.int! })
        }
    }

    /// enable_thinking=false moves Qwen3's empty think block from the trained reply into the prompt (the
    /// generation prompt writes it): `data preview` gives transformers' ids and labels per turn with the flag,
    /// the same ids with the think block trained without it; `data render` writes transformers' prompt.
    func testKwargsReachDataPreviewAndRenderAsTransformersRenders() throws {
        let c = try fixture("no_thinking")
        XCTAssertEqual(c.samples.count, 2)
        let data = try write([c.line], "no_thinking.jsonl")
        let base = ["data", "preview", "--tokenizer", Self.tokenizer, "--chat-template", qwen3, "--data", data, "--json"]
        let off = try CLI.run(base + ["--chat-template-kwargs", "enable_thinking=false"])
        XCTAssertEqual(off.status, 0, off.stderr)
        let got = try jsonSamples(off.stdout)
        XCTAssertEqual(got.count, 2)
        for (k, (g, w)) in zip(got, c.samples).enumerated() {
            XCTAssertEqual(g.line, 1)
            XCTAssertEqual(g.ids, w.ids, "turn \(k): ids")
            XCTAssertEqual(g.labels, w.labels, "turn \(k): labels (enable_thinking=false)")
        }
        // Without it the renderings are the same text, but each reply is trained from its think block on.
        let tok = try Tokenizer.load(directory: Self.tokenizer)
        let on = try CLI.run(base)
        XCTAssertEqual(on.status, 0, on.stderr)
        let plain = try jsonSamples(on.stdout)
        XCTAssertEqual(plain.map(\.ids), c.samples.map(\.ids))
        XCTAssertEqual(plain.map { tok.decode($0.labels.filter { $0 != -100 }) },
                       ["<think>\n\n</think>\n\nhello<|im_end|>\n", "<think>\n\n</think>\n\ngoodbye<|im_end|>\n"])
        XCTAssertEqual(got.map { tok.decode($0.labels.filter { $0 != -100 }) }, ["hello<|im_end|>\n", "goodbye<|im_end|>\n"])

        // data render: transformers' generation prompt is the untrained start of its first sample.
        let prompt = tok.decode(Array(c.samples[0].ids.prefix(c.samples[0].labels.firstIndex { $0 != -100 }!)))
        XCTAssertEqual(prompt, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n")
        let stdin = #"{"messages": [{"role": "user", "content": "hi"}]}"#
        let render = ["data", "render", Self.tokenizer, "--chat-template", qwen3, "--add-generation-prompt"]
        let rendered = try CLI.run(render + ["--chat-template-kwargs", "enable_thinking=false"], stdin: stdin)
        XCTAssertEqual(rendered.status, 0, rendered.stderr)
        XCTAssertEqual(rendered.stdout, prompt)
        XCTAssertEqual(try CLI.run(render, stdin: stdin).stdout, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
        // enable_thinking=true is what the template does when the variable is undefined.
        XCTAssertEqual(try CLI.run(render + ["--chat-template-kwargs", "enable_thinking=true"], stdin: stdin).stdout,
                       "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")

        // Not KEY=VALUE: named as docs/ERRORS.md gives it.
        let bad = try CLI.run(base + ["--chat-template-kwargs", "enable_thinking"])
        XCTAssertEqual(bad.status, 1)
        XCTAssertTrue(bad.stderr.contains("command line: chat_template_kwargs: 'enable_thinking' is not KEY=VALUE "
                                          + "(e.g. --chat-template-kwargs enable_thinking=false)"), bad.stderr)
    }

    /// `data preview` heads each sample of an expanded conversation "assistant turn k of n" and its figures count the
    /// expansion; a one-turn conversation of the same template is not expanded. Counts are transformers'.
    func testPreviewNamesEachTurnAndTheFiguresCountTheExpansion() throws {
        let zh = try fixture("plain_zh"), sys = try fixture("system_three_turns")
        XCTAssertEqual([zh.samples.count, sys.samples.count], [2, 3])
        let data = try write([zh.line, zh.firstTurn, sys.line], "mixed.jsonl")
        let r = try CLI.run(["data", "preview", "--tokenizer", Self.tokenizer, "--chat-template", qwen3, "--data", data, "--n", "10"])
        XCTAssertEqual(r.status, 0, r.stderr)
        // (line, turn of n or nil, transformers' sample)
        let expected: [(Int, (Int, Int)?, (ids: [Int], labels: [Int]))] = [
            (1, (1, 2), zh.samples[0]), (1, (2, 2), zh.samples[1]), (2, nil, zh.samples[0]),
            (3, (1, 3), sys.samples[0]), (3, (2, 3), sys.samples[1]), (3, (3, 3), sys.samples[2]),
        ]
        let headers = r.stdout.split(separator: "\n").filter { $0.hasPrefix("── line ") }.map(String.init)
        XCTAssertEqual(headers, expected.map { line, turn, s in
            "── line \(line)" + (turn.map { " (assistant turn \($0.0) of \($0.1): the template rewrites earlier turns, so each turn is a sample)" } ?? "")
                + ": \(s.ids.count) tokens, \(trained(s.labels)) trained"
        })
        let tokens = expected.reduce(0) { $0 + $1.2.ids.count }, trainedTokens = expected.reduce(0) { $0 + trained($1.2.labels) }
        let figures = r.stdout.components(separatedBy: "──\n").last!
        XCTAssertTrue(figures.hasPrefix("samples        6\ntokens         \(tokens)\ntrained tokens \(trainedTokens) ("), figures)
        XCTAssertTrue(figures.contains("\nexpanded       2 conversation(s) into 5 samples, one per assistant turn (the template renders "
                                       + "earlier turns differently once later ones follow)\nskipped        0\n"), figures)
    }

    /// The settings key (a settings file's `chat_template_kwargs: {enable_thinking: false}`) and the flag's items (as
    /// `train --chat-template-kwargs` turns them into that key) reach the template in training: transformers' samples,
    /// and the file's figures line counting the expansion.
    func testTrainingSettingsCarryKwargsToTheTemplate() throws {
        let c = try fixture("no_thinking")
        let data = try write([c.line], "no_thinking.jsonl")
        let yaml = dir + "/settings.yaml"
        try """
        model: \(Self.tokenizer)
        data: [\(data)]
        chat_template: \(qwen3)
        chat_template_kwargs: {enable_thinking: false}
        output_dir: \(dir)/out
        """.write(toFile: yaml, atomically: true, encoding: .utf8)
        let fromFile = try TrainingConfig.resolve(file: yaml, overrides: [:])
        let fromFlag = try TrainingConfig.resolve(file: nil, overrides: [
            "model": Self.tokenizer, "data": [data], "chat_template": qwen3, "output_dir": dir + "/out",
            "chat_template_kwargs": JSONValue.object(try TrainingConfig.templateKwargs(["enable_thinking=false"]))])
        for (how, config) in [("settings file", fromFile), ("flag", fromFlag)] {
            XCTAssertEqual(config.chatTemplateKwargs, ["enable_thinking": false], how)
            let s = try loadTrainingSamples(config, vocabSize: 1000)
            XCTAssertEqual(s.train.map(\.line), [1, 1], how)
            XCTAssertEqual(s.train.map(\.inputIDs), c.samples.map(\.ids), how)
            XCTAssertEqual(s.train.map(\.labels), c.samples.map(\.labels), "\(how): labels as transformers' with enable_thinking=false")
            let lengths = c.samples.map(\.ids.count).sorted()
            XCTAssertEqual(s.summaries.last, "\(data) (messages): 2 samples, \(lengths.reduce(0, +)) tokens, "
                           + "\(c.samples.reduce(0) { $0 + trained($1.labels) }) trained, 0 truncated, 0 skipped; "
                           + "length median \(lengths[0]), max \(lengths[1]); 1 conversation(s) expanded into 2 samples, "
                           + "one per assistant turn (the chat template rewrites earlier turns)", how)
        }
        // Without the key the replies are trained from the think block on: more trained tokens.
        var none = fromFile
        none.chatTemplateKwargs = JSONObject()
        let plain = try loadTrainingSamples(none, vocabSize: 1000).train
        XCTAssertEqual(plain.map(\.inputIDs), c.samples.map(\.ids))
        XCTAssertGreaterThan(plain.reduce(0) { $0 + $1.trainedTokens }, c.samples.reduce(0) { $0 + trained($1.labels) })
    }

    /// `lora-gpu train`: the flag and the settings key give the same data line (differing from neither), and the
    /// resolved settings keep the kwargs (training_config.yaml).
    func testTrainFlagAndSettingsKeyReachTheTemplate() throws {
        let c = try fixture("no_thinking")
        let data = try write([c.line], "no_thinking.jsonl")
        let model = testFixturesRoot + "/generate/cli_chatml/model"
        func dataLine(_ extra: [String], _ out: String) throws -> String {
            let r = try CLI.run(["train", "--device", "cpu", "--model", model, "--data", data, "--chat-template", qwen3,
                                 "--max-steps", "1", "--output-dir", dir + "/" + out] + extra, mergeOutput: true)
            XCTAssertEqual(r.status, 0, r.stdout)
            return try XCTUnwrap(r.stdout.split(separator: "\n").first { $0.hasPrefix("data: ") }.map(String.init), r.stdout)
        }
        let settings = dir + "/settings.yaml"
        try "chat_template_kwargs: {enable_thinking: false}\n".write(toFile: settings, atomically: true, encoding: .utf8)
        let flag = try dataLine(["--chat-template-kwargs", "enable_thinking=false"], "flag")
        let file = try dataLine(["--config", settings], "file")
        let none = try dataLine([], "none")
        XCTAssertEqual(flag, file)
        XCTAssertNotEqual(flag, none)
        XCTAssertTrue(flag.hasSuffix("; 1 conversation(s) expanded into 2 samples, one per assistant turn (the chat template rewrites earlier turns)"), flag)
        func trainedCount(_ line: String) -> Int? {
            line.components(separatedBy: " tokens, ").dropFirst().first.flatMap { Int($0.prefix { $0.isNumber }) }
        }
        XCTAssertLessThan(try XCTUnwrap(trainedCount(flag)), try XCTUnwrap(trainedCount(none)), "the think blocks are not trained")
        for out in ["flag", "file"] {
            let saved = try String(contentsOfFile: dir + "/\(out)/training_config.yaml", encoding: .utf8)
            XCTAssertTrue(saved.contains("\nchat_template_kwargs: {\"enable_thinking\": false}\n"), "\(out): \(saved)")
        }
    }

    /// val_split holds out whole conversations: every sample of an expanded conversation is on one side, and the
    /// fraction counts conversations (round(0.25 · 12) = 3), not samples.
    func testValidationSplitKeepsAConversationsSamplesTogether() throws {
        var lines: [String] = [], perLine: [Int] = []
        for name in ["plain_zh", "system_three_turns", "reasoning_content", "inline_think", "tool_calls", "no_thinking"] {
            let c = try fixture(name)
            lines.append(c.line)
            perLine.append(c.samples.count)
        }
        lines += lines
        perLine += perLine
        XCTAssertEqual(perLine.reduce(0, +), 28)
        let data = try write(lines, "twelve.jsonl")
        var c = TrainingConfig()
        c.model = Self.tokenizer
        c.data = [data]
        c.chatTemplate = qwen3
        c.valSplit = 0.25
        var sawAThreeTurnOne = false
        for seed in 0..<8 {
            c.seed = seed
            let s = try loadTrainingSamples(c, vocabSize: 1000)
            let valLines = Set(s.validation.map(\.line)), trainLines = Set(s.train.map(\.line))
            XCTAssertEqual(valLines.count, 3, "seed \(seed): three of twelve conversations")
            XCTAssertTrue(valLines.isDisjoint(with: trainLines), "seed \(seed): a conversation split across train and validation")
            XCTAssertEqual(s.validation.count, valLines.reduce(0) { $0 + perLine[$1 - 1] }, "seed \(seed): each held-out line's every turn")
            XCTAssertEqual(s.train.count + s.validation.count, 28)
            if valLines.contains(where: { perLine[$0 - 1] == 3 }) { sawAThreeTurnOne = true }
        }
        XCTAssertTrue(sawAThreeTurnOne)
    }

    /// Qwen3's template, given a conversation opening with an assistant turn: the render of the conversation before
    /// that turn (no messages) fails inside the template (`messages[0].role`, its line 13); the error names the file,
    /// the line and says why in plain words, in `data preview` and in training alike, and names the way out that
    /// works for it: the whole conversation renders, so `--train-on all` trains on the file, every token of it, with
    /// transformers' ids for the conversation.
    func testAConversationOpeningWithAnAssistantTurnIsNamed() throws {
        let source = try String(contentsOfFile: qwen3, encoding: .utf8)
        XCTAssertTrue(source.split(separator: "\n", omittingEmptySubsequences: false)[12].contains("messages[0].role == 'system'"))
        let data = try write([#"{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}"#,
                              #"{"messages": [{"role": "assistant", "content": "hello"}, {"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}"#],
                             "opens.jsonl")
        let why = "\(data):2: chat template '\(qwen3)': \(qwen3):13:23: list object has no element 0 — the conversation opens with an "
            + "assistant turn, and this template expects the first turn after any system message to be the user's: start each "
            + "conversation with a user message, or train on every token of it with --train-on all (the template renders the "
            + "whole conversation; --train-on assistant also renders the part before each trained assistant turn, and that fails)"
        let r = try CLI.run(["data", "preview", "--tokenizer", Self.tokenizer, "--chat-template", qwen3, "--data", data])
        XCTAssertEqual(r.status, 1)
        XCTAssertEqual(r.stderr, "error: " + why + "\n")
        var c = TrainingConfig()
        c.model = Self.tokenizer
        c.data = [data]
        c.chatTemplate = qwen3
        XCTAssertThrowsError(try loadTrainingSamples(c, vocabSize: 1000)) { e in XCTAssertEqual("\(e)", why) }

        // The way out: line 2 is transformers' apply_chat_template(messages, chat_template=qwen3, tokenize=True) with
        // this tokenizer, every token trained.
        let line2 = [1, 67, 364, 487, 201, 266, 78, 78, 81, 2, 201, 1, 367, 201, 74, 75, 2, 201, 1, 67, 364, 487, 201, 30, 86, 74,
                     262, 77, 32, 410, 30, 17, 86, 74, 262, 77, 32, 410, 91, 81, 2, 201]
        let all = try CLI.run(["data", "preview", "--tokenizer", Self.tokenizer, "--chat-template", qwen3, "--data", data,
                               "--train-on", "all", "--json"])
        XCTAssertEqual(all.status, 0, all.stderr)
        let samples = try jsonSamples(all.stdout)
        XCTAssertEqual(samples.map(\.line), [1, 2])
        XCTAssertEqual(samples[1].ids, line2)
        for s in samples { XCTAssertEqual(s.labels, s.ids, "line \(s.line): every token trained") }
        c.trainOn = "all"
        XCTAssertEqual(try loadTrainingSamples(c, vocabSize: 1000).train.map(\.inputIDs), samples.map(\.ids))
    }
}
