import Foundation
import LoraBase
import LoraModel
import LoraOps
import Reference
import TestSupport
import XCTest
@testable import LoraTrain

/// `lora-gpu train` prints the memory plan at start-up, and a run that cannot fit
/// the device stops before loading any weight, with one message naming the numbers
/// and what would fit, leaving nothing in the output directory (issue 9, resources).
final class MemoryPlanTrainTests: XCTestCase {
    func train(_ args: [String], environment: [String: String] = [:]) throws -> (status: Int32, stdout: String, stderr: String) {
        let r = try CLI.run(["train"] + args, environment: CLI.environment(environment))
        return (r.status, r.stdout, r.stderr)
    }

    /// Adds a sample of `length` tokens (the plan is made for the data's longest row).
    func appendLongSample(_ path: String, length: Int) throws {
        let ids = (0..<length).map { 3 + $0 % 60 }
        let line = JSONValue.object(["input_ids": JSONValue(ids), "labels": JSONValue(ids)]).serialized() + "\n"
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try h.seekToEnd()
        try h.write(contentsOf: Data(line.utf8))
        try h.close()
    }

    func arguments(data: String, output: String, batch: Int) -> [String] {
        ["--model", fixtureModel, "--data", data, "--output-dir", output, "--max-steps", "2", "--max-seq-len", "64",
         "--per-device-train-batch-size", "\(batch)", "--target-modules", "all-linear"]
    }

    /// 10 million rows × 64 tokens of the fixture model: ≈ 3 TiB, past any device's memory
    /// (pocl's CL_DEVICE_GLOBAL_MEM_SIZE is ≈ 13.6 GiB on this host). No weight is loaded
    /// (the trainable-parameter line printed after loading never appears), the output
    /// directory is never made, and the message gives the plan and settings that fit.
    func testABatchBeyondTheDeviceStopsBeforeLoading() throws {
        let dir = try temporaryDirectory("memory")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeSamples(dir + "/train.jsonl", count: 8)
        try appendLongSample(dir + "/train.jsonl", length: 64)
        let out = dir + "/out"
        let r = try train(arguments(data: dir + "/train.jsonl", output: out, batch: 10_000_000))
        if ProcessInfo.processInfo.environment["LORA_GPU_PRINT_ERRORS"] != nil { print("ERROR:", r.stderr) }
        XCTAssertNotEqual(r.status, 0)
        let errorLines = r.stderr.split(separator: "\n").filter { $0.contains("memory plan:") }
        XCTAssertEqual(errorLines.count, 1, r.stderr)
        let m = String(errorLines.first ?? "")
        for part in ["per_device_train_batch_size 10000000 × max_seq_len 64", "does not fit", "it needs", "GiB",
                     "weights", "trainable + optimizer", "activations", "scratch", "the device has",
                     "CL_DEVICE_GLOBAL_MEM_SIZE", "CL_DEVICE_MAX_MEM_ALLOC_SIZE", "Nothing was loaded or written",
                     "These fit: per_device_train_batch_size", "gradient_accumulation_steps"] {
            XCTAssertTrue(m.contains(part), "'\(part)' not in: \(m)")
        }
        XCTAssertTrue(r.stdout.contains("memory plan for"), r.stdout)
        XCTAssertFalse(r.stdout.contains("trainable params"), "the model was loaded: \(r.stdout)")
        XCTAssertFalse(FileManager.default.fileExists(atPath: out), "the output directory was made")
    }

    /// One buffer past the per-buffer limit (LORA_GPU_DEVICE_MEMORY's second number stands
    /// in for a device with a small CL_DEVICE_MAX_MEM_ALLOC_SIZE) is named with the limit.
    func testABufferPastTheAllocationLimitIsNamed() throws {
        let dir = try temporaryDirectory("memory")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeSamples(dir + "/train.jsonl", count: 8)
        try appendLongSample(dir + "/train.jsonl", length: 64)
        let out = dir + "/out"
        let r = try train(arguments(data: dir + "/train.jsonl", output: out, batch: 1000),
                          environment: ["LORA_GPU_DEVICE_MEMORY": "64G,4M"])
        if ProcessInfo.processInfo.environment["LORA_GPU_PRINT_ERRORS"] != nil { print("ERROR:", r.stderr) }
        XCTAssertNotEqual(r.status, 0)
        for part in ["memory plan:", "the buffer 'each layer's gate, up or act (64000, 48)' needs 11.7 MiB",
                     "largest single allocation of 4.0 MiB (LORA_GPU_DEVICE_MEMORY)", "These fit: per_device_train_batch_size 341"] {
            XCTAssertTrue(r.stderr.contains(part), "'\(part)' not in: \(r.stderr)")
        }
        XCTAssertFalse(r.stderr.contains("it needs"), "the total fits 64 GiB: \(r.stderr)")
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
    }

    /// A per-buffer limit (here LORA_GPU_DEVICE_MEMORY's, 8 KiB) below the fixture's
    /// embedding and lm_head (67 × 32 fp32 in panels of 80 rows: 10 KiB each) and its
    /// trainable tensors together: the run keeps them in parts, says so in the plan,
    /// trains, and ends with the adapter of the same run without the limit (within fp32
    /// rounding: dX of a split lm_head adds its parts in another order).
    func testWeightsPastTheLimitAreKeptInPartsAndTrain() throws {
        let dir = try temporaryDirectory("memory")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeSamples(dir + "/train.jsonl", count: 8)
        var args: [[String]] = []
        for name in ["whole", "parts"] {
            args.append(["--model", fixtureModel, "--data", dir + "/train.jsonl", "--output-dir", dir + "/" + name,
                         "--max-steps", "3", "--max-seq-len", "16", "--per-device-train-batch-size", "1",
                         "--target-modules", "all-linear", "--lora-dropout", "0"])
        }
        let whole = try train(args[0])
        XCTAssertEqual(whole.status, 0, whole.stderr)
        XCTAssertFalse(whole.stdout.contains("kept in parts"), whole.stdout)
        let parts = try train(args[1], environment: ["LORA_GPU_DEVICE_MEMORY": "64G,8K"])
        XCTAssertEqual(parts.status, 0, parts.stderr)
        for part in ["kept in parts (one buffer each ≤ the per-buffer limit): model.embed_tokens.weight in 2 parts",
                     "lm_head.weight in 2 parts", "the trainable tensors in", "of 8.0 KiB per buffer (LORA_GPU_DEVICE_MEMORY)"] {
            XCTAssertTrue(parts.stdout.contains(part), "'\(part)' not in: \(parts.stdout)")
        }
        let a = try SafeTensorsFile(path: dir + "/whole/adapter_model.safetensors")
        let b = try SafeTensorsFile(path: dir + "/parts/adapter_model.safetensors")
        XCTAssertEqual(Set(a.tensors.keys), Set(b.tensors.keys))
        XCTAssertFalse(a.tensors.isEmpty)
        for key in a.tensors.keys.sorted() {
            let x = try a.floats(key).values, y = try b.floats(key).values
            let err = relativeError(y, x.map(Double.init))
            XCTAssertLessThanOrEqual(err, 1e-5, "\(key): relative difference \(err)")
        }
    }

    /// A normal run prints the plan (weights, trainable + optimizer, activations,
    /// scratch, total against the device, largest buffer against its limit) and trains.
    func testTheNormalRunPrintsThePlan() throws {
        let dir = try temporaryDirectory("memory")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeSamples(dir + "/train.jsonl", count: 8)
        try appendLongSample(dir + "/train.jsonl", length: 64)
        let out = dir + "/out"
        let r = try train(arguments(data: dir + "/train.jsonl", output: out, batch: 4))
        XCTAssertEqual(r.status, 0, r.stderr)
        let lines = r.stdout.split(separator: "\n").map(String.init)
        let start = try XCTUnwrap(lines.firstIndex { $0.hasPrefix("memory plan for ") && $0.contains("micro-batch 4 × 64 tokens") },
                                  r.stdout)
        let plan = lines[start..<min(start + 7, lines.count)]
        for (i, label) in ["weights", "trainable + optimizer", "activations", "scratch", "total", "largest buffer"].enumerated() {
            XCTAssertTrue(plan[start + 1 + i].hasPrefix("  " + label), "line \(i + 1) of the plan: \(plan[start + 1 + i])")
        }
        XCTAssertTrue(plan[start + 5].contains("(CL_DEVICE_GLOBAL_MEM_SIZE)"), plan[start + 5])
        XCTAssertTrue(plan[start + 6].contains("per buffer (CL_DEVICE_MAX_MEM_ALLOC_SIZE)"), plan[start + 6])
        XCTAssertTrue(r.stdout.contains("done: 2 steps"), r.stdout)
        XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/adapter_model.safetensors"))
    }

    /// The plan is made for the rows the run makes (issue 18): as wide as the data's longest sample (14 tokens here,
    /// batches are padded to their longest row), not max_seq_len; with packing, max_seq_len (packed rows are that wide).
    /// A batch that does not fit at that width says so with both numbers.
    func testThePlanFollowsTheDatasLongestRow() throws {
        let dir = try temporaryDirectory("memory")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeSamples(dir + "/train.jsonl", count: 8)
        let short = try train(arguments(data: dir + "/train.jsonl", output: dir + "/short", batch: 4))
        XCTAssertEqual(short.status, 0, short.stderr)
        XCTAssertTrue(short.stdout.contains("memory plan for") && short.stdout.contains("micro-batch 4 × 14 tokens"), short.stdout)
        let packed = try train(arguments(data: dir + "/train.jsonl", output: dir + "/packed", batch: 4) + ["--packing"])
        XCTAssertEqual(packed.status, 0, packed.stderr)
        XCTAssertTrue(packed.stdout.contains("micro-batch 4 × 64 tokens"), packed.stdout)
        let big = try train(arguments(data: dir + "/train.jsonl", output: dir + "/big", batch: 10_000_000))
        XCTAssertNotEqual(big.status, 0)
        XCTAssertTrue(big.stderr.contains("per_device_train_batch_size 10000000 × 14 tokens (the data's longest row; max_seq_len 64) does not fit"),
                      big.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/big"), "the output directory was made")
    }

    /// Data with no trained token says so, not that a plan does not fit; a typo in
    /// target_modules is named before the data is read (the data file here is not even there).
    func testNoTrainingSampleAndBadSettingsComeFirst() throws {
        let dir = try temporaryDirectory("memory")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeSamples(dir + "/train.jsonl", count: 3, untrained: [0, 1, 2])
        let empty = try train(arguments(data: dir + "/train.jsonl", output: dir + "/empty", batch: 10_000_000))
        XCTAssertNotEqual(empty.status, 0)
        XCTAssertTrue(empty.stderr.contains("no sample left to train on (no trained token: 3)"), empty.stderr)
        XCTAssertFalse(empty.stderr.contains("memory plan:"), empty.stderr)
        var args = arguments(data: dir + "/missing.jsonl", output: dir + "/typo", batch: 4)
        args[args.firstIndex(of: "all-linear")!] = "q_prj"
        let typo = try train(args)
        XCTAssertNotEqual(typo.status, 0)
        XCTAssertTrue(typo.stderr.contains("q_prj"), typo.stderr)
        XCTAssertFalse(typo.stderr.contains("missing.jsonl"), "the data was read first: \(typo.stderr)")
    }

    /// The settings the message suggests do fit, one more row or token does not,
    /// and gradient checkpointing is offered only when it is off and would fit.
    func testSuggestionsArePlanned() throws {
        let (mc, checkpoint) = try ModelSource.open(fixtureModel)
        let c = try smallConfig(data: "unused.jsonl", output: "unused", ["per_device_train_batch_size": "512", "max_seq_len": "64"])
        let lora = c.loraSettings()
        let plan = try MemoryPlan.make(config: mc, adapterPlan: try AdapterPlan(config: mc, lora: lora), checkpoint: checkpoint,
                                       shape: .init(batch: 512, seq: 64), alignmentBytes: 128)
        let limits = MemoryLimits(deviceName: "test device", globalBytes: plan.totalBytes * 3 / 4, maxAllocationBytes: 1 << 40)
        XCTAssertThrowsError(try Trainer.checkMemory(plan, limits: limits, config: c)) { e in
            let m = "\(e)"
            let b = Int(m.components(separatedBy: "These fit: per_device_train_batch_size ").last!.prefix { $0.isNumber })!
            func fits(_ b: Int, _ t: Int, ckpt: Bool = false) -> Bool {
                let p = plan.with(shape: .init(batch: b, seq: t, gradientCheckpointing: ckpt))
                return p.problems(limits: limits).fit
            }
            XCTAssertTrue(fits(b, 64) && !fits(b + 1, 64), "\(b): \(m)")
            let t = Int(m.components(separatedBy: "or max_seq_len ").last!.prefix { $0.isNumber })!
            XCTAssertTrue(fits(512, t) && !fits(512, t + 1), "\(t): \(m)")
            XCTAssertEqual(m.contains("gradient_checkpointing: true"), fits(512, 64, ckpt: true), m)
            XCTAssertTrue(m.contains("test device"), m)
        }
        // Within the limits: no error.
        XCTAssertNoThrow(try Trainer.checkMemory(plan, limits: MemoryLimits(deviceName: "big", globalBytes: plan.totalBytes,
                                                                          maxAllocationBytes: plan.largest!.bytes), config: c))
    }

    /// Weights that do not fit until quantized: the advice names `quantize` with the planned bytes — `auto` for a GGUF
    /// file dequantized by `--quantize none` (its own blocks kept), `q8_0` for an fp32 safetensors checkpoint.
    func testQuantizeIsSuggestedWhereItFits() throws {
        let gguf = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/gguf/llama_q.gguf").path
        for (path, mode, expect) in [(gguf, "none", QuantizeMode.auto), (fixtureModel, "auto", .q8_0)] {
            let (mc, checkpoint) = try ModelSource.open(path, quantize: QuantizeMode(rawValue: mode)!)
            let c = try smallConfig(data: "unused.jsonl", output: "unused", ["model": path, "quantize": mode,
                                                                              "per_device_train_batch_size": "1", "max_seq_len": "2"])
            let plan = try MemoryPlan.make(config: mc, adapterPlan: try AdapterPlan(config: mc, lora: c.loraSettings()),
                                           checkpoint: checkpoint, shape: .init(batch: 1, seq: 2), alignmentBytes: 128)
            let smaller = plan.with(quantize: expect)
            XCTAssertLessThan(smaller.weightBytes, plan.weightBytes, path)
            let limits = MemoryLimits(deviceName: "test device", globalBytes: smaller.totalBytes, maxAllocationBytes: 1 << 40)
            XCTAssertThrowsError(try Trainer.checkMemory(plan, limits: limits, config: c)) { e in
                let m = "\(e)"
                if ProcessInfo.processInfo.environment["LORA_GPU_PRINT_ERRORS"] != nil { print("ERROR:", m) }
                XCTAssertTrue(m.contains("quantize: \(expect.rawValue) ("), m)
                XCTAssertTrue(m.contains("weights \(MemoryPlan.format(smaller.weightBytes)) instead of \(MemoryPlan.format(plan.weightBytes))"), m)
            }
        }
    }
}
