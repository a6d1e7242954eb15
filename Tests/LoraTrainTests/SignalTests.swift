import Foundation
import TestSupport
import XCTest
@testable import LoraTrain

/// The built `lora-gpu` binary, run as a practitioner runs it.
final class SignalTests: XCTestCase {
    func testSIGINTSavesACheckpointAndExitsCleanly() throws {
        let dir = try temporaryDirectory("sigint")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeSamples(dir + "/train.jsonl", count: 16)
        let out = dir + "/out"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: try CLI.binary())
        p.arguments = ["train", "--model", fixtureModel, "--data", dir + "/train.jsonl", "--output-dir", out,
                       "--max-steps", "100000", "--per-device-train-batch-size", "4", "--logging-steps", "1",
                       "--save-steps", "100000", "--learning-rate", "1e-3", "--device", "cpu"]
        FileManager.default.createFile(atPath: dir + "/stdout.txt", contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: dir + "/stdout.txt"))
        p.standardOutput = log
        p.standardError = FileHandle.nullDevice
        try p.run()
        // Wait for two logged steps (the OpenCL program is compiled first), then interrupt.
        let deadline = Date().addingTimeInterval(300)
        while Date() < deadline && p.isRunning {
            let lines = (try? readLines(out + "/metrics.jsonl")) ?? []
            if lines.count >= 2 { break }
            Thread.sleep(forTimeInterval: 0.05)
        }
        XCTAssertTrue(p.isRunning, "the run ended before it was interrupted")
        kill(p.processIdentifier, SIGINT)
        p.waitUntilExit()
        try log.close()
        XCTAssertEqual(p.terminationReason, .exit, "killed by the signal instead of exiting")
        XCTAssertEqual(p.terminationStatus, 130)

        let ckpts = Checkpoints.list(out)
        XCTAssertEqual(ckpts.count, 1, "one checkpoint, at the step the signal finished")
        guard let ck = ckpts.first else { return }
        let st = try Checkpoints.state(ck.path)
        XCTAssertEqual(st.globalStep, ck.step)
        XCTAssertGreaterThanOrEqual(st.globalStep, 2)
        XCTAssertLessThan(st.globalStep, 100000)
        XCTAssertEqual(st.rng.dropoutStep, st.globalStep)
        for f in ["adapter_model.safetensors", "adapter_config.json", "optimizer.safetensors", "trainer_state.json",
                  "training_config.yaml"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: ck.path + "/" + f), f)
        }
        // metrics.jsonl has every step up to the checkpoint: the signal lost no finished step.
        let steps = try readLines(out + "/metrics.jsonl").compactMap { MetricsRecord(json: $0)?.step }
        XCTAssertEqual(steps, Array(1...st.globalStep))
        // Not a terminal: plain lines, and the stop is explained.
        let text = try String(contentsOfFile: dir + "/stdout.txt", encoding: .utf8)
        XCTAssertFalse(text.contains("\r"))
        XCTAssertTrue(text.contains("step 1/100000 | epoch "), text)
        XCTAssertTrue(text.contains("stopped by SIGINT after step \(st.globalStep)"), text)
        XCTAssertTrue(text.contains("--resume-from-checkpoint latest"))

        // It continues from there (metrics.jsonl grows past the checkpoint); SIGTERM stops it the same way.
        let r = Process()
        r.executableURL = p.executableURL
        r.arguments = p.arguments! + ["--resume-from-checkpoint", "latest"]
        r.standardOutput = FileHandle.nullDevice
        r.standardError = FileHandle.nullDevice
        try r.run()
        let until = Date().addingTimeInterval(300)
        while Date() < until && r.isRunning {
            if ((try? readLines(out + "/metrics.jsonl")) ?? []).count >= st.globalStep + 2 { break }
            Thread.sleep(forTimeInterval: 0.05)
        }
        kill(r.processIdentifier, SIGTERM)
        r.waitUntilExit()
        XCTAssertEqual(r.terminationReason, .exit)
        XCTAssertEqual(r.terminationStatus, 143)
        let later = Checkpoints.list(out)
        XCTAssertEqual(later.first?.step, st.globalStep)
        XCTAssertEqual(later.count, 2)
        XCTAssertGreaterThanOrEqual(later.last?.step ?? 0, st.globalStep + 2)
        let all = try readLines(out + "/metrics.jsonl").compactMap { MetricsRecord(json: $0)?.step }
        XCTAssertEqual(all, Array(1...(later.last?.step ?? 0)))
    }
}
