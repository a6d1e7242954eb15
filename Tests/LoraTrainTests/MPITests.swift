import Foundation
import LoraModel
import TestSupport
import XCTest
@testable import LoraTrain

/// Data parallel over MPI, run as a user runs it: `mpirun -np 2 lora-gpu train`
/// on pocl against one process with twice the gradient accumulation on the
/// same data (scripts/test.sh installs Open MPI, so CI runs these).
final class MPITests: XCTestCase {
    func mpirun() throws -> String {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        let dirs = path.split(separator: ":").map(String.init) + ["/usr/bin"]
        if let d = dirs.first(where: { FileManager.default.isExecutableFile(atPath: $0 + "/mpirun") }) { return d + "/mpirun" }
        print("MPITests: SKIPPED — mpirun is not installed (scripts/test.sh installs openmpi-bin)")
        throw XCTSkip("mpirun is not installed (scripts/test.sh installs openmpi-bin)")
    }

    /// Runs `executable args` with the MPI launcher's variables of the test's own environment removed; returns (status, output).
    @discardableResult
    func run(_ executable: String, _ args: [String], env extra: [String: String] = [:]) throws -> (Int32, String) {
        let r = try CLI.run(args, executable: executable, environment: CLI.environment(extra, dropping: ["OMPI_", "PMI"]),
                            mergeOutput: true)
        return (r.status, r.stdout)
    }

    /// `-x NAME=value` for each space-separated pair of LORA_GPU_TEST_RANK_ENV: variables for the ranks
    /// alone, not for the test process. scripts/sanitize.sh (address) sets it so that LeakSanitizer can name
    /// Open MPI's own allocations in the ranks (its plugins kept loaded, full allocation stacks).
    func rankEnvironment() -> [String] {
        let list = ProcessInfo.processInfo.environment["LORA_GPU_TEST_RANK_ENV"] ?? ""
        return list.split(whereSeparator: { $0 == " " || $0 == "\n" }).filter { $0.contains("=") }.flatMap { ["-x", String($0)] }
    }

    /// `rankEnv`: NAME=value pairs for the ranks (mpirun -x).
    func train(ranks: Int, accumulation: Int, data: String, output: String, extra: [String] = [],
               rankEnv: [String] = [], model: String = fixtureModel) throws -> String {
        let args = ["train", "--model", model, "--data", data, "--output-dir", output,
                    "--per-device-train-batch-size", "2", "--gradient-accumulation-steps", String(accumulation),
                    "--learning-rate", "1e-2", "--max-steps", "4", "--logging-steps", "1", "--save-steps", "2",
                    "--target-modules", "all-linear", "--lora-dropout", "0.1", "--seed", "5"] + extra
        // One pocl compute unit per rank: the ranks share the machine's cores.
        let (status, out): (Int32, String)
        if ranks == 1 {
            (status, out) = try run(try CLI.binary(), args)
        } else {
            (status, out) = try run(try mpirun(), ["-np", String(ranks), "--oversubscribe", "--allow-run-as-root",
                                                   "-x", "POCL_MAX_PTHREAD_COUNT=1"] + rankEnvironment()
                                                   + rankEnv.flatMap { ["-x", $0] } + [try CLI.binary()] + args)
        }
        XCTAssertEqual(status, 0, out)
        return out
    }

    /// Every tensor of two adapter files within `rel` of the largest magnitude of the first.
    func assertSameAdapter(_ a: String, _ b: String, rel: Float = 1e-5, file: StaticString = #filePath, line: UInt = #line) throws {
        let x = try SafeTensorsFile(path: a), y = try SafeTensorsFile(path: b)
        XCTAssertEqual(Set(x.tensors.keys), Set(y.tensors.keys), file: file, line: line)
        XCTAssertGreaterThan(x.tensors.count, 0, file: file, line: line)
        for name in x.tensors.keys.sorted() {
            let u = try x.floats(name).values, v = try y.floats(name).values
            XCTAssertEqual(u.count, v.count, name, file: file, line: line)
            let scale = max(u.map(abs).max() ?? 0, 1e-30)
            let diff = zip(u, v).map { abs($0 - $1) }.max() ?? 0
            XCTAssertLessThanOrEqual(diff / scale, rel, "\(name): max difference \(diff), largest value \(scale)", file: file, line: line)
        }
    }

    func testTwoRanksEqualOneProcessWithTwiceTheAccumulation() throws {
        _ = try mpirun()
        let dir = try temporaryDirectory("mpi")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeSamples(dir + "/d.jsonl", count: 16, seed: 11)
        let one = try train(ranks: 1, accumulation: 2, data: dir + "/d.jsonl", output: dir + "/one")
        let two = try train(ranks: 2, accumulation: 1, data: dir + "/d.jsonl", output: dir + "/two")
        XCTAssertTrue(two.contains("× 2 ranks"), two)
        try assertSameAdapter(dir + "/one/adapter_model.safetensors", dir + "/two/adapter_model.safetensors")
        try assertSameAdapter(dir + "/one/checkpoint-2/adapter_model.safetensors", dir + "/two/checkpoint-2/adapter_model.safetensors")
        // Rank 0 alone logs: one metrics line per step, one progress line per step.
        XCTAssertEqual(try readLines(dir + "/two/metrics.jsonl").count, 4)
        XCTAssertEqual(two.components(separatedBy: "step 4/4 |").count - 1, 1, two)
        XCTAssertEqual(one.components(separatedBy: "step 4/4 |").count - 1, 1, one)
        // The same losses, step by step.
        let l1 = try readLines(dir + "/one/metrics.jsonl").compactMap { MetricsRecord(json: $0)?.loss }
        let l2 = try readLines(dir + "/two/metrics.jsonl").compactMap { MetricsRecord(json: $0)?.loss }
        XCTAssertEqual(l1.count, 4)
        for (a, b) in zip(l1, l2) { XCTAssertEqual(a, b, accuracy: 1e-5 * max(abs(a), 1)) }
        // No stray files from the other rank.
        let names = try FileManager.default.contentsOfDirectory(atPath: dir + "/two").filter { $0.hasPrefix(".") }
        XCTAssertEqual(names, [])
    }

    /// Two ranks whose buffer limit (LORA_GPU_DEVICE_MEMORY's 9 KiB) keeps the embedding and
    /// lm_head in parts and the trainable tensors in groups of flat buffers — each group's
    /// gradients summed over the ranks on its own — end with the adapter of one process
    /// without a limit and twice the accumulation — within 5e-4 of each tensor's largest value:
    /// dX of the split lm_head and the norm over groups add in another order, and four AdamW
    /// steps at lr 1e-2 magnify that rounding where a gradient element is near zero (one
    /// process with and without the limit differs by 1.4e-4 on this data, measured).
    func testTwoRanksWithWeightsInPartsAndGroupedTrainables() throws {
        _ = try mpirun()
        let dir = try temporaryDirectory("mpi-parts")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeSamples(dir + "/d.jsonl", count: 16, seed: 13)
        let short = ["--max-seq-len", "16"]
        _ = try train(ranks: 1, accumulation: 2, data: dir + "/d.jsonl", output: dir + "/one", extra: short)
        let two = try train(ranks: 2, accumulation: 1, data: dir + "/d.jsonl", output: dir + "/two", extra: short,
                            rankEnv: ["LORA_GPU_DEVICE_MEMORY=64G,9K"])
        for part in ["model.embed_tokens.weight in 2 parts", "lm_head.weight in 2 parts", "the trainable tensors in"] {
            XCTAssertTrue(two.contains(part), "'\(part)' not in: \(two)")
        }
        try assertSameAdapter(dir + "/one/adapter_model.safetensors", dir + "/two/adapter_model.safetensors", rel: 5e-4)
    }

    /// The data position is in global steps: a 1-process checkpoint resumed by 2 ranks
    /// (accumulation halved, the global batch kept) ends where the 1-process run does.
    func testResumeWithADifferentNumberOfRanks() throws {
        _ = try mpirun()
        let dir = try temporaryDirectory("mpi-resume")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeSamples(dir + "/d.jsonl", count: 12, seed: 12)
        _ = try train(ranks: 1, accumulation: 2, data: dir + "/d.jsonl", output: dir + "/one")
        try FileManager.default.createDirectory(atPath: dir + "/resumed", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: dir + "/one/checkpoint-2", toPath: dir + "/resumed/checkpoint-2")
        let out = try train(ranks: 2, accumulation: 1, data: dir + "/d.jsonl", output: dir + "/resumed",
                            extra: ["--resume-from-checkpoint", "latest"])
        XCTAssertTrue(out.contains("resumed from") && out.contains("at step 2"), out)
        try assertSameAdapter(dir + "/one/adapter_model.safetensors", dir + "/resumed/adapter_model.safetensors")
    }

    /// The task heads over two ranks: the head's gradients are summed with the adapter's (issue 16, one
    /// engine). Text data on the ChatML fixture; TOKEN_CLS's classifier dropout and lora_dropout are on.
    func testTaskHeadsOverTwoRanks() throws {
        _ = try mpirun()
        let dir = try temporaryDirectory("mpi-tasks")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for (task, lines, taskExtra) in TaskResumeTests.tasks() {
            let data = dir + "/\(task).jsonl"
            try lines.write(toFile: data, atomically: true, encoding: .utf8)
            let extra = ["--task-type", task, "--target-modules", "q_proj,v_proj,down_proj"]
                + taskExtra.sorted { $0.key < $1.key }.flatMap { ["--" + $0.key.replacingOccurrences(of: "_", with: "-"), "\($0.value)"] }
            _ = try train(ranks: 1, accumulation: 2, data: data, output: dir + "/\(task)-one", extra: extra, model: EndToEndTests.model)
            let two = try train(ranks: 2, accumulation: 1, data: data, output: dir + "/\(task)-two", extra: extra, model: EndToEndTests.model)
            XCTAssertTrue(two.contains("× 2 ranks"), two)
            try assertSameAdapter(dir + "/\(task)-one/adapter_model.safetensors", dir + "/\(task)-two/adapter_model.safetensors")
        }
    }

    /// The newer families over two ranks (issue 17, "each family everywhere"): Qwen3's q/k norms, SmolLM3's NoPE
    /// layer, Phi-3's fused projections and partial rotary, Mistral's sliding window, Gemma 3's sliding and full
    /// layers with their norms and scaled embedding — each equal to one process with twice the accumulation.
    func testNewFamiliesOverTwoRanks() throws {
        _ = try mpirun()
        let dir = try temporaryDirectory("mpi-families")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeSamples(dir + "/d.jsonl", count: 16, seed: 21)
        for name in ["qwen3_qk_norm", "smollm3_nope", "phi3_fused_longrope", "mistral_sliding_window", "gemma3_sliding"] {
            let model = fixturesRoot + "/reference/\(name)/model"
            _ = try train(ranks: 1, accumulation: 2, data: dir + "/d.jsonl", output: dir + "/\(name)-one", model: model)
            let two = try train(ranks: 2, accumulation: 1, data: dir + "/d.jsonl", output: dir + "/\(name)-two", model: model)
            XCTAssertTrue(two.contains("× 2 ranks"), two)
            try assertSameAdapter(dir + "/\(name)-one/adapter_model.safetensors", dir + "/\(name)-two/adapter_model.safetensors")
        }
    }

    func testWithoutALauncherThereIsNoWorld() throws {
        XCTAssertNil(Distributed.launcherSize([:]))
        XCTAssertEqual(Distributed.launcherSize(["OMPI_COMM_WORLD_SIZE": "4"]), 4)
        XCTAssertEqual(Distributed.launcherSize(["PMI_SIZE": " 2"]), 2)
        if Distributed.launcherSize() == nil { XCTAssertNil(try Distributed.world()) }
    }
}
