import Foundation
import LoraModel
import LoraOps
import XCTest
@testable import LoraTrain

/// What a new user hit (issue 22): each fix with the test that failed before it.
final class NewUserTests: XCTestCase {
    var dir = ""
    override func setUpWithError() throws { dir = try temporaryDirectory("newuser") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: dir) }

    static let tiedModel = testFixturesRoot + "/reference/llama_tied_rslora_regex/model"

    func train(_ args: [String]) throws -> CLI.Run {
        try CLI.run(["train", "--device", "cpu", "--max-steps", "1", "--per-device-train-batch-size", "2"] + args)
    }

    /// Item 1: the train-time warning that an adapter on a tied lm_head unties it in the merge.
    func testTrainWarnsThatATiedHeadAdapterUnties() throws {
        try writeSamples(dir + "/t.jsonl", count: 4)
        let r = try train(["--model", Self.tiedModel, "--data", dir + "/t.jsonl", "--output-dir", dir + "/out",
                           "--target-modules", "lm_head,q_proj"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("warning: the base ties lm_head to embed_tokens and this adapter has a LoRA on lm_head: "
                                        + "`lora-gpu merge` will write them as two tensors"), r.stdout)
        let plain = try train(["--model", Self.tiedModel, "--data", dir + "/t.jsonl", "--output-dir", dir + "/out2"])
        XCTAssertFalse(plain.stdout.contains("ties lm_head"), plain.stdout)
    }

    /// Item 8: a negative number as its own argument reaches the range check.
    func testNegativeNumbersAsSeparateArgumentsReachTheValidation() throws {
        for (flag, message) in [("--r", "r: must be a positive integer, got -1"), ("--learning-rate", "learning_rate: must be ≥ 0, got -1.0")] {
            let r = try CLI.run(["train", "--model", Self.tiedModel, "--data", "d.jsonl", flag, "-1"])
            XCTAssertNotEqual(r.status, 0)
            XCTAssertTrue(r.stderr.contains(message), "\(flag): \(r.stderr)")
            XCTAssertFalse(r.stderr.contains("Missing value"), r.stderr)
        }
        let g = try CLI.run(["generate", "--model", Self.tiedModel, "--raw-prompt", "a", "--temperature", "-1"])
        XCTAssertNotEqual(g.status, 0)
        XCTAssertFalse(g.stderr.contains("Missing value"), g.stderr)
    }

    /// Item 9: `lora-gpu --version` names the version, the commit and the OpenCL device.
    func testVersionNamesTheCommitAndTheDevice() throws {
        let r = try CLI.run(["--version"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let lines = r.stdout.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.count, 2, r.stdout)
        XCTAssertTrue(lines[0].hasPrefix("lora-gpu 0."), r.stdout)
        let commit = try XCTUnwrap(lines[0].split(separator: " ").last).dropLast()
        XCTAssertTrue(commit.count == 40 && commit.allSatisfy(\.isHexDigit) || commit == "unknown", r.stdout)
        XCTAssertTrue(lines[1].hasPrefix("OpenCL: "), r.stdout)
        XCTAssertEqual(try CLI.run([]).status, 0, "no subcommand prints the help")
    }

    /// Item 12: a resumed run leaves the metrics.jsonl lines before the resume point byte for byte.
    func testResumeKeepsEarlierMetricsLinesByteForByte() throws {
        try writeSamples(dir + "/t.jsonl", count: 12)
        let args = ["--model", Self.tiedModel, "--data", dir + "/t.jsonl", "--output-dir", dir + "/out", "--max-steps", "4",
                    "--save-steps", "2", "--logging-steps", "1", "--device", "cpu"]
        XCTAssertEqual(try CLI.run(["train"] + args).status, 0)
        var lines = try readLines(dir + "/out/metrics.jsonl")
        XCTAssertEqual(lines.count, 4)
        // Written by another tool or version: the same values, other digits and spacing.
        lines[0] = lines[0].replacingOccurrences(of: ", ", with: ",  ").replacingOccurrences(of: "\"step\": 1,", with: "\"step\": 1.0,")
        try (lines.joined(separator: "\n") + "\n").write(toFile: dir + "/out/metrics.jsonl", atomically: true, encoding: .utf8)
        try FileManager.default.removeItem(atPath: dir + "/out/checkpoint-4")
        let r = try CLI.run(["train"] + args + ["--resume-from-checkpoint", dir + "/out/checkpoint-2"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let after = try readLines(dir + "/out/metrics.jsonl")
        XCTAssertEqual(Array(after.prefix(2)), Array(lines.prefix(2)), "lines up to the checkpoint are kept as written")
        XCTAssertEqual(after.count, 4)
    }

    /// Item 11: settings files: a repeated key, a nested block, a precision flag, no far-fetched suggestion.
    func testSettingsFileMistakesAreExplained() throws {
        func message(_ yaml: String) -> String {
            let path = dir + "/s.yaml"
            try? yaml.write(toFile: path, atomically: true, encoding: .utf8)
            do { _ = try TrainingConfig.resolve(file: path, overrides: ["model": "m", "data": "d"]); return "" } catch { return "\(error)" }
        }
        XCTAssertEqual(message("r: 8\nlora_alpha: 16\nr: 16\n"), dir + "/s.yaml: r: given twice, on line 1 and on line 3; give each setting once")
        XCTAssertEqual(message("lora:\n  r: 16\n  lora_alpha: 32\n  rank: 4\n"), dir + "/s.yaml: lora: unknown setting: settings are flat "
                       + "(one `setting: value` per line), not grouped under 'lora'; write r, lora_alpha at the top level")
        XCTAssertTrue(message("bf16: true\n").contains("bf16: unknown setting: there is no precision setting. The frozen weights keep the checkpoint's dtype"))
        XCTAssertEqual(message("bfx16: true\n"), dir + "/s.yaml: bfx16: unknown setting")
        XCTAssertTrue(message("lora_aplha: 32\n").hasSuffix("did you mean 'lora_alpha'?"), message("lora_aplha: 32\n"))
    }

    /// Items 3, 7 and 15: skipped lines are named and listed, a directory is not a data file, and data
    /// errors come before any weight is loaded.
    func testSkippedLinesDirectoriesAndDataBeforeWeights() throws {
        try writeSamples(dir + "/t.jsonl", count: 6, untrained: [1, 4])
        try (try String(contentsOfFile: dir + "/t.jsonl", encoding: .utf8) + "{\"input_ids\": [1, 2\n").write(
            toFile: dir + "/t.jsonl", atomically: true, encoding: .utf8)
        let r = try train(["--model", Self.tiedModel, "--data", dir + "/t.jsonl", "--output-dir", dir + "/out", "--skip-bad-lines"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("data: skipped \(dir)/t.jsonl:2: no trained token"), r.stdout)
        XCTAssertTrue(r.stdout.contains("data: skipped \(dir)/t.jsonl:7: "), r.stdout)
        XCTAssertTrue(r.stdout.contains("data: 3 line(s) skipped (no trained token 2, bad line 1); every one is in \(dir)/out/skipped.jsonl"), r.stdout)
        let listed = try readLines(dir + "/out/skipped.jsonl")
        XCTAssertEqual(listed.count, 3)
        XCTAssertTrue(listed[0].hasPrefix("{\"file\": \"\(dir)/t.jsonl\", \"line\": 2, \"reason\": \"no trained token\""), listed[0])

        let d = try train(["--model", Self.tiedModel, "--data", dir, "--output-dir", dir + "/out3"])
        XCTAssertNotEqual(d.status, 0)
        XCTAssertTrue(d.stderr.contains("\(dir): cannot read: is a directory; give a JSONL file (one sample per line)"), d.stderr)
        XCTAssertFalse(d.stderr.contains("NSCocoaErrorDomain"), d.stderr)
        XCTAssertFalse(d.stdout.contains("trainable params"), "the data is checked before the weights are loaded: \(d.stdout)")
    }

    /// Item 2: a terminal shows the data being read (lines done, lines/s) before training starts.
    func testDataLoadingShowsProgressOnATerminal() throws {
        try writeSamples(dir + "/t.jsonl", count: 8)
        let out = Captured()
        let c = try smallConfig(data: dir + "/t.jsonl", output: dir + "/out", ["max_steps": "1"])
        _ = try Trainer(config: c, context: try ComputeContext.shared(), progress: out.printer(terminal: true)).run()
        XCTAssertTrue(out.text.contains("\r\u{1B}[Kdata: reading \(dir)/t.jsonl: 8/8 lines, "), out.text)
        let plain = Captured()
        _ = try Trainer(config: try smallConfig(data: dir + "/t.jsonl", output: dir + "/out2", ["max_steps": "1"]),
                        context: try ComputeContext.shared(), progress: plain.printer(terminal: false)).run()
        XCTAssertFalse(plain.text.contains("data: reading"), "no progress lines in a log file")
    }
}
