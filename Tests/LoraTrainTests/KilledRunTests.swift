import Foundation
import LoraOps
import TestSupport
import XCTest
@testable import LoraTrain

/// A real `lora-gpu train` process killed with SIGKILL (no handler runs) in the middle of training
/// and in the middle of writing a checkpoint: the output directory keeps a complete earlier
/// checkpoint, a half-written one is never listed, and resuming ends with the adapter bytes of an
/// uninterrupted run. Plus a full disk while saving (in process, through the ENOSPC test hook).
final class KilledRunTests: XCTestCase {
    let steps = 60, saveSteps = 10
    var dir = ""

    override func setUpWithError() throws {
        dir = try temporaryDirectory("killed")
        try writeSamples(dir + "/train.jsonl", count: 16)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: dir) }

    func arguments(_ out: String) -> [String] {
        ["train", "--model", fixtureModel, "--data", dir + "/train.jsonl", "--output-dir", out,
         "--max-steps", String(steps), "--per-device-train-batch-size", "4", "--logging-steps", "1",
         "--save-steps", String(saveSteps), "--learning-rate", "1e-3", "--lora-dropout", "0.1", "--device", "cpu"]
    }

    func start(_ args: [String], environment: [String: String] = [:]) throws -> Process {
        try CLI.start(args, environment: CLI.environment(environment))
    }

    /// Runs to the end; fails the test on a non-zero exit.
    func runToEnd(_ args: [String]) throws {
        let p = try start(args)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationReason, .exit)
        XCTAssertEqual(p.terminationStatus, 0, "lora-gpu \(args.joined(separator: " ")) failed")
    }

    /// Polls `done` every 10 ms while `p` runs (at most 300 s).
    func wait(for p: Process, until done: () -> Bool) {
        let deadline = Date().addingTimeInterval(300)
        while Date() < deadline && p.isRunning && !done() { Thread.sleep(forTimeInterval: 0.01) }
    }

    func sigkill(_ p: Process) {
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationReason, .uncaughtSignal)
        XCTAssertEqual(p.terminationStatus, SIGKILL)
    }

    func bytes(_ path: String) throws -> Data { try Data(contentsOf: URL(fileURLWithPath: path)) }

    /// Every listed checkpoint is complete: all its files, a readable state at its own step.
    func assertCompleteCheckpoints(_ out: String, file: StaticString = #filePath, line: UInt = #line) throws {
        for ck in Checkpoints.list(out) {
            for f in ["adapter_model.safetensors", "adapter_config.json", "optimizer.safetensors", "trainer_state.json",
                      "training_config.yaml"] {
                XCTAssertTrue(FileManager.default.fileExists(atPath: ck.path + "/" + f), "\(ck.path)/\(f)", file: file, line: line)
            }
            XCTAssertEqual(try Checkpoints.state(ck.path).globalStep, ck.step, file: file, line: line)
        }
    }

    func testSIGKILLDuringTrainingAndDuringACheckpointWriteThenResumeIsBitIdentical() throws {
        // The uninterrupted run.
        try runToEnd(arguments(dir + "/straight"))
        let reference = try bytes(dir + "/straight/adapter_model.safetensors")

        // 1. Killed between checkpoints: after checkpoint-10 and a few more steps, before checkpoint-20.
        let out = dir + "/killed"
        let a = try start(arguments(out))
        wait(for: a) { ((try? readLines(out + "/metrics.jsonl")) ?? []).count >= saveSteps + 3 }
        XCTAssertTrue(a.isRunning, "the run ended before it was killed")
        sigkill(a)
        let afterKill = Checkpoints.list(out)
        XCTAssertGreaterThanOrEqual(afterKill.count, 1)
        XCTAssertLessThan(afterKill.last?.step ?? steps, steps)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/adapter_model.safetensors"), "no final adapter yet")
        try assertCompleteCheckpoints(out)

        // 2. Resumed, and killed again inside the write of the next checkpoint (the hook pauses
        // after the adapter is in the temporary directory and before the optimizer state).
        let last = afterKill.last?.step ?? 0
        let next = last + saveSteps
        let b = try start(arguments(out) + ["--resume-from-checkpoint", "latest"],
                          environment: ["LORA_GPU_TEST_PAUSE_IN_CHECKPOINT": "\(next):120"])
        let temporary = out + "/.checkpoint-\(next).tmp-\(b.processIdentifier)"
        wait(for: b) { FileManager.default.fileExists(atPath: temporary + "/adapter_model.safetensors") }
        XCTAssertTrue(b.isRunning, "the resumed run ended before its checkpoint write was killed")
        sigkill(b)
        XCTAssertTrue(FileManager.default.fileExists(atPath: temporary + "/adapter_model.safetensors"),
                      "the half-written checkpoint is on disk")
        XCTAssertFalse(FileManager.default.fileExists(atPath: temporary + "/optimizer.safetensors"))
        XCTAssertEqual(Checkpoints.list(out).map(\.step), afterKill.map(\.step), "the half-written checkpoint is not listed")
        XCTAssertEqual(try Checkpoints.resolve("latest", outputDir: out), out + "/checkpoint-\(last)")
        XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/checkpoint-\(next)"))
        try assertCompleteCheckpoints(out)

        // 3. Resumed to the end: the adapter is bit-identical to the uninterrupted run's, and the
        // killed process's temporary directory is gone.
        try runToEnd(arguments(out) + ["--resume-from-checkpoint", "latest"])
        XCTAssertEqual(try bytes(out + "/adapter_model.safetensors"), reference,
                       "the adapter after two SIGKILLs and resumes differs from the uninterrupted run's")
        XCTAssertEqual(try bytes(out + "/checkpoint-\(steps)/optimizer.safetensors"),
                       try bytes(dir + "/straight/checkpoint-\(steps)/optimizer.safetensors"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: temporary), "stale temporary checkpoint removed")
        let steps = try readLines(out + "/metrics.jsonl").compactMap { MetricsRecord(json: $0)?.step }
        XCTAssertEqual(steps, Array(1...self.steps))
    }

    /// A full disk while writing checkpoint-4 (ENOSPC from the test hook): the run stops with an error
    /// naming the checkpoint, checkpoint-2 survives whole, no temporary directory is left, and the run
    /// resumes from checkpoint-2.
    func testFullDiskWhileSavingKeepsThePreviousCheckpoint() throws {
        let out = dir + "/out"
        let c = try smallConfig(data: dir + "/train.jsonl", output: out, ["save_steps": "2", "max_steps": "6"])
        setenv("LORA_GPU_TEST_CHECKPOINT_ENOSPC", "4", 1)
        defer { unsetenv("LORA_GPU_TEST_CHECKPOINT_ENOSPC") }
        XCTAssertThrowsError(try Trainer(config: c, context: try ComputeContext.shared(),
                                         progress: Captured().printer(terminal: false)).run()) { e in
            let m = "\(e)"
            if ProcessInfo.processInfo.environment["LORA_GPU_PRINT_ERRORS"] != nil { print("full disk:", m) }
            XCTAssertTrue(m.contains(out + "/checkpoint-4"), m)
            XCTAssertTrue(m.contains("could not write the checkpoint"), m)
            XCTAssertTrue(m.contains("No space left on device"), m)
        }
        XCTAssertEqual(Checkpoints.list(out).map(\.step), [2])
        try assertCompleteCheckpoints(out)
        let names = try FileManager.default.contentsOfDirectory(atPath: out)
        XCTAssertFalse(names.contains { $0.contains(".tmp-") }, "\(names)")
        unsetenv("LORA_GPU_TEST_CHECKPOINT_ENOSPC")
        let resumed = try smallConfig(data: dir + "/train.jsonl", output: out,
                                      ["save_steps": "2", "max_steps": "6", "resume_from_checkpoint": "latest"])
        XCTAssertEqual(try Trainer(config: resumed, context: try ComputeContext.shared(),
                                   progress: Captured().printer(terminal: false)).run(), .completed(step: 6))
        XCTAssertEqual(Checkpoints.list(out).map(\.step), [2, 4, 6])
    }

    /// Only checkpoint-N directories are checkpoints; a dead process's temporary is removed, a live
    /// one's and a replace's `.old-PID` are kept.
    func testListingIgnoresTemporariesAndStaleOnesAreRemoved() throws {
        let fm = FileManager.default
        let out = dir + "/list"
        // A PID that is not running: past the kernel's pid_max.
        let dead = "4194400"
        for d in ["checkpoint-2", ".checkpoint-4.tmp-\(dead)", ".checkpoint-6.tmp-\(getpid())", "checkpoint-8.tmp",
                  "checkpoint-x", ".checkpoint-2.old-\(dead)"] {
            try fm.createDirectory(atPath: out + "/" + d, withIntermediateDirectories: true)
        }
        XCTAssertEqual(Checkpoints.list(out).map(\.step), [2])
        Checkpoints.removeStaleTemporaries(out)
        let left = Set(try fm.contentsOfDirectory(atPath: out))
        XCTAssertFalse(left.contains(".checkpoint-4.tmp-\(dead)"))
        XCTAssertTrue(left.contains(".checkpoint-6.tmp-\(getpid())"), "this process's own temporary is kept")
        XCTAssertTrue(left.contains(".checkpoint-2.old-\(dead)"), "an .old directory may be the only copy")
        XCTAssertTrue(left.contains("checkpoint-2"))
    }
}
