import Foundation
import LoraBase
import LoraModel

/// What a checkpoint holds besides the adapter and the AdamW moments: enough
/// to continue so the result is bit-identical to an uninterrupted run.
public struct TrainerState: Codable, Equatable, Sendable {
    public struct Scheduler: Codable, Equatable, Sendable {
        public var type: String
        public var warmupSteps: Int
        public var totalSteps: Int
        /// The learning rate of the last step taken.
        public var lastLr: Double
    }
    public struct RNG: Codable, Equatable, Sendable {
        /// Dropout masks and NEFTune noise are pure functions of (seed, step, micro-batch).
        public var seed: Int
        public var dropoutStep: Int
    }
    /// Optimizer steps taken.
    public var globalStep: Int = 0
    /// Fractional epochs done.
    public var epoch: Double = 0
    /// The next micro-batch: its epoch and index in that epoch's batch plan.
    public var dataEpoch: Int = 0
    public var dataBatch: Int = 0
    public var scheduler: Scheduler
    public var rng: RNG
    public var bestMetric: Double?
    public var bestStep: Int?
    public var bestCheckpoint: String?
    /// Early stopping: the best metric seen and evaluations since it improved.
    public var earlyStoppingBest: Double?
    public var earlyStoppingCounter: Int = 0
    /// Micro-batches skipped because every label was -100.
    public var skippedBatches: Int = 0
    /// The logging window in progress: summed step losses and their count.
    public var lossSinceLog: Double = 0
    public var stepsSinceLog: Int = 0
    /// The most recent metric value and its step (for the best checkpoint).
    public var lastMetric: Double?
    public var lastMetricStep: Int?
    /// Training time before this checkpoint, summed over resumed runs.
    public var elapsedSeconds: Double?
}

/// checkpoint-N directories: written whole (temporary directory, then rename),
/// listed, loaded, pruned.
public enum Checkpoints {
    static let optimizerFile = "optimizer.safetensors"
    static let stateFile = "trainer_state.json"

    public static func name(step: Int) -> String { "checkpoint-\(step)" }

    /// checkpoint-N directories of `outputDir`, oldest first.
    public static func list(_ outputDir: String) -> [(step: Int, path: String)] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: outputDir)) ?? []
        return names.compactMap { n -> (Int, String)? in
            guard n.hasPrefix("checkpoint-"), let s = Int(n.dropFirst("checkpoint-".count)) else { return nil }
            return (s, outputDir + "/" + n)
        }.sorted { $0.0 < $1.0 }
    }

    /// "latest" (or "true", as transformers' resume_from_checkpoint=True) → the newest
    /// checkpoint of `outputDir`; anything else is a checkpoint path.
    public static func resolve(_ spec: String, outputDir: String) throws -> String {
        if spec == "latest" || spec.lowercased() == "true" {
            guard let last = list(outputDir).last else {
                throw TrainError.checkpoint(path: outputDir, reason: "no checkpoint-N directory to resume from")
            }
            return last.path
        }
        return spec
    }

    static func encoder() -> JSONEncoder {
        let e = JSONEncoder()
        e.keyEncodingStrategy = .convertToSnakeCase
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        return e
    }

    /// Writes checkpoint-N: the PEFT adapter, optimizer.safetensors (exp_avg.KEY,
    /// exp_avg_sq.KEY), trainer_state.json and training_config.yaml. An existing
    /// checkpoint-N is replaced whole.
    static func save(model: LlamaLoRAModel, state: TrainerState, outputDir: String, baseModel: String,
                     configYAML: String) throws -> String {
        let fm = FileManager.default
        let dst = outputDir + "/" + name(step: state.globalStep)
        let tmp = outputDir + "/.\(name(step: state.globalStep)).tmp-\(getpid())"
        try? fm.removeItem(atPath: tmp)
        removeStaleTemporaries(outputDir)
        do {
            try model.saveAdapter(directory: tmp, baseModel: baseModel)
            try testHookAfterAdapter(step: state.globalStep)
            // The moments read one tensor at a time as the file is written (an 8B model's are 336 MB at r 16).
            let store = model.store
            let tensors = store.entries.flatMap { e in [
                SafeTensorsWriter.LazyTensor(name: "exp_avg." + e.key, shape: e.shape) { try store.moment(\.m, of: e) },
                SafeTensorsWriter.LazyTensor(name: "exp_avg_sq." + e.key, shape: e.shape) { try store.moment(\.v, of: e) },
            ] }
            try SafeTensorsWriter.write(lazy: tensors, metadata: ["format": "pt", "step": String(model.step)],
                                        to: tmp + "/" + optimizerFile)
            try encoder().encode(state).write(to: URL(fileURLWithPath: tmp + "/" + stateFile))
            try Data(configYAML.utf8).write(to: URL(fileURLWithPath: tmp + "/training_config.yaml"))
            try DirectoryReplace.replace(dst, with: tmp)
        } catch {
            try? fm.removeItem(atPath: tmp)
            throw TrainError.checkpoint(path: dst, reason: "could not write the checkpoint: \(SystemError.describe(error))")
        }
        return dst
    }

    /// Removes `.checkpoint-N.tmp-PID` directories left by a killed process (PID no longer running):
    /// half-written, never listed as checkpoints. `.tmp-PID.old` directories are kept: after a kill
    /// between the two renames of DirectoryReplace's fallback, one may be the only copy of its checkpoint.
    static func removeStaleTemporaries(_ outputDir: String) {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: outputDir)) ?? []
        for n in names where n.hasPrefix(".checkpoint-") {
            guard let r = n.range(of: ".tmp-", options: .backwards), let pid = Int32(n[r.upperBound...]),
                  pid != getpid(), kill(pid, 0) != 0, errno == ESRCH else { continue }
            try? FileManager.default.removeItem(atPath: outputDir + "/" + n)
        }
    }

    /// Test hooks (issue 9; debug builds, ENABLE_TEST_HOOKS), read from the environment, inert unless set. With the adapter written
    /// into the temporary directory and the rest not yet:
    ///   LORA_GPU_TEST_PAUSE_IN_CHECKPOINT=SECONDS (every checkpoint) or STEP:SECONDS (checkpoint-STEP)
    ///   sleeps (a test SIGKILLs the process there);
    ///   LORA_GPU_TEST_CHECKPOINT_ENOSPC=STEP fails the save of checkpoint-STEP as a full disk would.
    static func testHookAfterAdapter(step: Int) throws {
        #if ENABLE_TEST_HOOKS
        let env = ProcessInfo.processInfo.environment
        if let v = env["LORA_GPU_TEST_PAUSE_IN_CHECKPOINT"] {
            let parts = v.split(separator: ":").map(String.init)
            let at = parts.count == 2 ? Int(parts[0]) : step
            if at == step, let s = parts.last.flatMap(Double.init), s > 0 { Thread.sleep(forTimeInterval: s) }
        }
        if let s = env["LORA_GPU_TEST_CHECKPOINT_ENOSPC"].flatMap(Int.init), s == step {
            throw POSIXError(.ENOSPC)
        }
        #endif
    }

    /// Reads trainer_state.json.
    public static func state(_ path: String) throws -> TrainerState {
        guard let data = FileManager.default.contents(atPath: path + "/" + stateFile) else {
            throw TrainError.checkpoint(path: path, reason: "no \(stateFile): not a lora-gpu checkpoint")
        }
        let d = JSONDecoder()
        d.keyDecodingStrategy = .convertFromSnakeCase
        do { return try d.decode(TrainerState.self, from: data) } catch {
            throw TrainError.checkpoint(path: path + "/" + stateFile, reason: "unreadable: \(error)")
        }
    }

    /// Loads a checkpoint into `model` (adapter, moments, step) and returns its state.
    static func load(_ path: String, into model: LlamaLoRAModel) throws -> TrainerState {
        let st = try state(path)
        try model.loadAdapter(directory: path)
        let opt = path + "/" + optimizerFile
        guard FileManager.default.fileExists(atPath: opt) else {
            throw TrainError.checkpoint(path: path, reason: "no \(optimizerFile)")
        }
        let file = try SafeTensorsFile(path: opt)
        var m: [String: [Float]] = [:], v: [String: [Float]] = [:]
        for e in model.store.entries {
            for (prefix, _) in [("exp_avg.", 0), ("exp_avg_sq.", 1)] {
                guard file.tensors[prefix + e.key] != nil else {
                    throw TrainError.checkpoint(path: opt, reason: "tensor '\(prefix + e.key)' is missing")
                }
            }
            m[e.key] = try file.floats("exp_avg." + e.key).values
            v[e.key] = try file.floats("exp_avg_sq." + e.key).values
        }
        try model.store.restoreMoments(m: m, v: v, source: opt)
        model.restoreStep(st.rng.dropoutStep)
        return st
    }

    /// Deletes the oldest checkpoints beyond `limit`, never `best` (as
    /// transformers: the best is kept, and a limit of 1 keeps 2 when the best is not the newest).
    static func prune(_ outputDir: String, limit: Int, best: String?) -> [String] {
        var all = list(outputDir).map(\.path)
        var keep = limit
        if let best, let i = all.firstIndex(where: { $0.hasSuffix("/" + best) }) {
            if limit == 1 && i != all.count - 1 { keep = 2 }
            let b = all.remove(at: i)
            all.append(b)
        }
        guard all.count > keep else { return [] }
        let doomed = Array(all.prefix(all.count - keep))
        for d in doomed { try? FileManager.default.removeItem(atPath: d) }
        return doomed
    }
}
