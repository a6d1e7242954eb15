import Foundation
import TestSupport
import XCTest
@testable import LoraTrain

/// The whole path a practitioner walks, through the built `lora-gpu` binary on
/// the tiny ChatML fixture model (scripts/make_generate_fixtures.py, cli_chatml:
/// random Llama, vocab 400, byte-level BPE, ChatML template) and the chat data
/// of scripts/make_e2e_fixtures.py: data preview → train → interrupt + resume
/// → merge → generate.
final class EndToEndTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures").path
    static let model = fixtures + "/generate/cli_chatml/model"
    static let chat = fixtures + "/e2e/chat.jsonl"
    static let steps = 160

    /// The settings of every run here (8 conversations, 2 per step, 40 epochs: enough to learn to answer "Pip here!"), as flags.
    static func trainArgs(output: String) -> [String] {
        ["train", "--model", model, "--data", chat, "--output-dir", output, "--max-steps", String(steps),
         "--per-device-train-batch-size", "2", "--learning-rate", "2e-2", "--lr-scheduler-type", "cosine",
         "--warmup-steps", "2", "--r", "4", "--lora-alpha", "8", "--lora-dropout", "0.1",
         "--target-modules", "all-linear", "--logging-steps", "1", "--save-steps", "1000", "--seed", "3",
         "--device", "cpu"]
    }

    // MARK: running the binary

    typealias Run = CLI.Run

    /// Runs `lora-gpu args` to the end, stdout and stderr to files (never a terminal).
    static func run(_ args: [String], stdin: String = "") throws -> Run { try CLI.run(args, stdin: stdin) }

    static func start(_ args: [String], stdout: String, stderr: String, stdin: String? = nil) throws -> Process {
        try CLI.start(args, stdout: stdout, stderr: stderr, stdin: stdin)
    }

    static func bytes(_ path: String) throws -> Data { try Data(contentsOf: URL(fileURLWithPath: path)) }

    // MARK: the uninterrupted run, shared by the tests below

    nonisolated(unsafe) static var root: String?
    nonisolated(unsafe) static var straight: (dir: String, run: Run)?

    static func scratch() throws -> String {
        if let root { return root }
        let d = try temporaryDirectory("e2e")
        root = d
        return d
    }

    /// `lora-gpu train` for `steps` steps without interruption (once per test process).
    static func straightRun() throws -> (dir: String, run: Run) {
        if let straight { return straight }
        let out = try scratch() + "/straight"
        let r = try run(trainArgs(output: out))
        guard r.status == 0 else {
            throw TrainError.checkpoint(path: out, reason: "the straight run failed (\(r.status)): \(r.stderr)\(r.stdout)")
        }
        straight = (out, r)
        return (out, r)
    }

    override class func tearDown() {
        if let root { try? FileManager.default.removeItem(atPath: root) }
        root = nil
        straight = nil
        super.tearDown()
    }

    // MARK: (a) the loss mask of a multi-turn chat file

    func testPreviewJSONTrainsOnlyAssistantTurnsAsTransformersTokenizes() throws {
        let r = try Self.run(["data", "preview", "--tokenizer", Self.model, "--data", Self.chat, "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let expected = try XCTUnwrap(
            try JSONSerialization.jsonObject(with: try Self.bytes(Self.fixtures + "/e2e/expected.json")) as? [String: Any])
        let samples = try XCTUnwrap(expected["samples"] as? [[String: Any]])
        let lines = r.stdout.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.count, samples.count)
        var trained = 0, masked = 0
        for (i, (line, want)) in zip(lines, samples).enumerated() {
            let got = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], line)
            XCTAssertEqual(got["line"] as? Int, i + 1)
            let ids = try XCTUnwrap(got["input_ids"] as? [Int]), labels = try XCTUnwrap(got["labels"] as? [Int])
            XCTAssertEqual(ids, try XCTUnwrap(want["input_ids"] as? [Int]), "line \(i + 1): input_ids")
            XCTAssertEqual(labels, try XCTUnwrap(want["labels"] as? [Int]), "line \(i + 1): labels")
            // Each label is the token itself (trained) or -100 (system, user, assistant header).
            for (id, l) in zip(ids, labels) {
                XCTAssertTrue(l == id || l == -100)
                if l == -100 { masked += 1 } else { trained += 1 }
            }
            // The first token (<|im_start|> of the first turn) is never trained.
            XCTAssertEqual(labels.first, -100)
        }
        XCTAssertGreaterThan(trained, 100)
        XCTAssertGreaterThan(masked, 100)
    }

    // MARK: (b) interrupted and resumed = uninterrupted

    func testSIGINTThenResumeEndsWithTheStraightRunsAdapterBytes() throws {
        let (straightDir, _) = try Self.straightRun()
        let dir = try Self.scratch() + "/interrupted"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let out = dir + "/out"
        let args = Self.trainArgs(output: out)
        let p = try Self.start(args, stdout: dir + "/stdout1", stderr: dir + "/stderr1")
        // Interrupt in the second epoch (4 steps an epoch: the shuffled order and the position in it are
        // part of the checkpoint); the signal is honoured at the end of the current step.
        let deadline = Date().addingTimeInterval(300)
        while Date() < deadline && p.isRunning {
            if ((try? readLines(out + "/metrics.jsonl")) ?? []).count >= 5 { break }
            Thread.sleep(forTimeInterval: 0.005)
        }
        XCTAssertTrue(p.isRunning, "the run ended before it was interrupted")
        kill(p.processIdentifier, SIGINT)
        p.waitUntilExit()
        let firstOut = try String(contentsOfFile: dir + "/stdout1", encoding: .utf8)
        XCTAssertEqual(p.terminationReason, .exit)
        XCTAssertEqual(p.terminationStatus, 130, firstOut)
        let ckpts = Checkpoints.list(out)
        XCTAssertEqual(ckpts.count, 1)
        let stoppedAt = try XCTUnwrap(ckpts.first).step
        XCTAssertGreaterThanOrEqual(stoppedAt, 5)
        XCTAssertLessThan(stoppedAt, Self.steps, "the interruption came before the last step")
        XCTAssertTrue(firstOut.contains("stopped by SIGINT after step \(stoppedAt)"), firstOut)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/adapter_model.safetensors"),
                       "an interrupted run leaves its adapter in the checkpoint only")

        let resumed = try Self.run(args + ["--resume-from-checkpoint", "latest"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr + resumed.stdout)
        XCTAssertTrue(resumed.stdout.contains("step \(Self.steps)/\(Self.steps)"), resumed.stdout)
        XCTAssertFalse(resumed.stdout.contains("step \(stoppedAt)/\(Self.steps) "), "steps done before the stop are not redone")
        let a = try Self.bytes(straightDir + "/adapter_model.safetensors")
        let b = try Self.bytes(out + "/adapter_model.safetensors")
        XCTAssertGreaterThan(a.count, 1000)
        XCTAssertEqual(a, b, "resumed from step \(stoppedAt): the final adapter differs from the uninterrupted run's")
        XCTAssertEqual(try Self.bytes(straightDir + "/adapter_config.json"), try Self.bytes(out + "/adapter_config.json"))
        // metrics.jsonl: every step once, in order, and the same losses as the straight run.
        let losses = { (path: String) -> [Int: Double] in
            var d: [Int: Double] = [:]
            for r in ((try? readLines(path)) ?? []).compactMap(MetricsRecord.init(json:)) { d[r.step] = r.loss }
            return d
        }
        let steps = try readLines(out + "/metrics.jsonl").compactMap { MetricsRecord(json: $0)?.step }
        XCTAssertEqual(steps, Array(1...Self.steps))
        XCTAssertEqual(losses(out + "/metrics.jsonl"), losses(straightDir + "/metrics.jsonl"))
    }

    // MARK: (c) merged = unmerged, (d) --prompt through the template

    func testMergedModelGeneratesWhatTheUnmergedAdapterGenerates() throws {
        let (adapter, _) = try Self.straightRun()
        let merged = try Self.scratch() + "/merged"
        let m = try Self.run(["merge", "--model", Self.model, "--adapter", adapter, "--output", merged])
        XCTAssertEqual(m.status, 0, m.stderr)
        XCTAssertTrue(m.stdout.contains("merged 14 LoRA module(s)"), m.stdout)
        for f in ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: merged + "/" + f), f)
        }
        for prompt in ["<|im_start|>user\nWho are you?<|im_end|>\n<|im_start|>assistant\n", "Pip", "意大利的首都"] {
            let gen = ["generate", "--raw-prompt", prompt, "--max-new-tokens", "12", "--device", "cpu"]
            let unmerged = try Self.run(gen + ["--model", Self.model, "--adapter", adapter])
            let folded = try Self.run(gen + ["--model", merged])
            let base = try Self.run(gen + ["--model", Self.model])
            for r in [unmerged, folded, base] { XCTAssertEqual(r.status, 0, r.stderr) }
            XCTAssertFalse(unmerged.stdout.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, prompt)
            XCTAssertEqual(folded.stdout, unmerged.stdout, "\(prompt): merged vs base + adapter")
            XCTAssertEqual(folded.stderr.components(separatedBy: " new tokens").first?.split(separator: " ").last,
                           unmerged.stderr.components(separatedBy: " new tokens").first?.split(separator: " ").last)
            XCTAssertNotEqual(base.stdout, unmerged.stdout, "\(prompt): the trained adapter changes nothing")
        }
    }

    func testPromptIsRenderedWithTheChatTemplate() throws {
        let (adapter, _) = try Self.straightRun()
        let expected = try XCTUnwrap(
            try JSONSerialization.jsonObject(with: try Self.bytes(Self.fixtures + "/e2e/expected.json")) as? [String: Any])
        let prompt = try XCTUnwrap(expected["prompt"] as? String)
        let common = ["generate", "--model", Self.model, "--adapter", adapter, "--max-new-tokens", "12", "--device", "cpu"]
        let templated = try Self.run(common + ["--prompt", prompt])
        XCTAssertEqual(templated.status, 0, templated.stderr)
        // The ChatML rendering of one user turn with the generation prompt, given raw.
        let rendered = "<|im_start|>user\n\(prompt)<|im_end|>\n<|im_start|>assistant\n"
        let raw = try Self.run(common + ["--raw-prompt", rendered])
        XCTAssertEqual(raw.status, 0, raw.stderr)
        XCTAssertEqual(templated.stdout, raw.stdout)
        // The template rendered by `data render` is that text, and it tokenizes to transformers'
        // apply_chat_template(..., add_generation_prompt=True) ids.
        let messages = String(decoding: try JSONSerialization.data(withJSONObject: ["messages": [["role": "user", "content": prompt]]]),
                              as: UTF8.self)
        let render = try Self.run(["data", "render", Self.model, "--add-generation-prompt"], stdin: messages)
        XCTAssertEqual(render.status, 0, render.stderr)
        XCTAssertEqual(render.stdout, rendered)
        let quoted = String(decoding: try JSONSerialization.data(withJSONObject: [rendered]), as: UTF8.self).dropFirst().dropLast()
        let ids = try Self.run(["data", "tokenize", Self.model], stdin: String(quoted) + "\n")
        XCTAssertEqual(ids.status, 0, ids.stderr)
        let want = try XCTUnwrap(expected["prompt_ids"] as? [Int])
        XCTAssertEqual(ids.stdout, "[" + want.map(String.init).joined(separator: ", ") + "]\n")
        XCTAssertTrue(templated.stderr.contains("[\(want.count) prompt tokens"), templated.stderr)
        // Trained to answer as Pip, it does.
        XCTAssertTrue(templated.stdout.hasPrefix("Pip"), templated.stdout)
        let plain = try Self.run(["generate", "--model", Self.model, "--prompt", prompt, "--max-new-tokens", "12", "--device", "cpu"])
        XCTAssertEqual(plain.status, 0, plain.stderr)
        XCTAssertFalse(plain.stdout.hasPrefix("Pip"), plain.stdout)
    }

    // MARK: (e) what a run leaves, and its settings file read back

    func testPlainProgressLinesOutputFilesAndTheSavedConfigReproducesTheRun() throws {
        let (out, r) = try Self.straightRun()
        XCTAssertFalse(r.stdout.contains("\r"), "no terminal: no carriage-return progress bar")
        let lines = r.stdout.split(separator: "\n").map(String.init)
        for n in 1...Self.steps {
            XCTAssertEqual(lines.filter { $0.hasPrefix("step \(n)/\(Self.steps) ") }.count, 1, "step \(n): \(r.stdout)")
        }
        XCTAssertTrue(r.stdout.contains("done: \(Self.steps) steps"), r.stdout)

        let fm = FileManager.default
        for f in ["adapter_model.safetensors", "adapter_config.json", "metrics.jsonl", "loss.svg", "training_config.yaml",
                  "README.md"] {
            XCTAssertTrue(fm.fileExists(atPath: out + "/" + f), f)
        }
        // The model's tokenizer files, as they are.
        for f in ["tokenizer.json", "tokenizer_config.json", "chat_template.jinja"] {
            XCTAssertEqual(try Self.bytes(out + "/" + f), try Self.bytes(Self.model + "/" + f), f)
        }
        let records = try readLines(out + "/metrics.jsonl").compactMap(MetricsRecord.init(json:))
        XCTAssertEqual(records.map(\.step), Array(1...Self.steps))
        for line in try readLines(out + "/metrics.jsonl") {
            let o = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            for k in ["step", "epoch", "loss", "grad_norm", "learning_rate", "tokens_per_second", "elapsed_seconds"] {
                XCTAssertNotNil(o[k] as? Double ?? (o[k] as? Int).map(Double.init), "\(k) in \(line)")
            }
        }
        let first = try XCTUnwrap(records.first?.loss), last = try XCTUnwrap(records.last?.loss)
        XCTAssertLessThan(last, first, "the loss falls over the run")
        let svg = try String(contentsOfFile: out + "/loss.svg", encoding: .utf8)
        XCTAssertTrue(svg.contains("<svg") && svg.contains("</svg>"))
        XCTAssertTrue(svg.contains(">step</text>") && svg.contains(">loss</text>"), "labelled axes")
        // The train curve: one vertex per logged step.
        let curve = try XCTUnwrap(svg.split(separator: "\n").first { $0.hasPrefix("<path d=\"M") })
        XCTAssertEqual(curve.filter { $0 == "L" }.count, Self.steps - 1, String(curve.prefix(200)))
        let readme = try String(contentsOfFile: out + "/README.md", encoding: .utf8)
        XCTAssertTrue(readme.contains(Self.model), "README names the base model")
        XCTAssertTrue(readme.contains(Self.chat), "README names the data")
        XCTAssertTrue(readme.contains(String(format: "Final train loss: %.4f", last)), readme)

        // training_config.yaml as --config (output_dir the only flag) reproduces the settings and the adapter.
        let yaml = try String(contentsOfFile: out + "/training_config.yaml", encoding: .utf8)
        for setting in ["r: 4", "lora_alpha: 8.0", "lora_dropout: 0.1", "learning_rate: 0.02", "lr_scheduler_type: cosine",
                        "max_steps: \(Self.steps)", "seed: 3", "per_device_train_batch_size: 2", "target_modules: all-linear",
                        "warmup_steps: 2.0", "train_on: \"assistant\"", "data: [\"\(Self.chat)\"]"] {
            XCTAssertTrue(yaml.contains("\n" + setting + "\n") || yaml.hasPrefix(setting + "\n"), "\(setting) in\n\(yaml)")
        }
        let again = try Self.scratch() + "/from-config"
        let r2 = try Self.run(["train", "--config", out + "/training_config.yaml", "--output-dir", again, "--device", "cpu"])
        XCTAssertEqual(r2.status, 0, r2.stderr + r2.stdout)
        let yaml2 = try String(contentsOfFile: again + "/training_config.yaml", encoding: .utf8)
        let withoutOutput = { (y: String) in y.split(separator: "\n").filter { !$0.hasPrefix("output_dir:") } }
        XCTAssertEqual(withoutOutput(yaml2), withoutOutput(yaml))
        XCTAssertEqual(try Self.bytes(again + "/adapter_model.safetensors"), try Self.bytes(out + "/adapter_model.safetensors"))
    }
}
