import Foundation
import LoraBase
import LoraModel

/// Every setting of `lora-gpu train`, named and defaulted as transformers'
/// TrainingArguments name and default them, plus the adapter's: a PEFT
/// `LoraConfig` (`lora`), whose keys (r, lora_alpha, …) are settings too and are
/// read by LoraConfig's own rules. Read from one flat YAML/JSON mapping and from
/// flags (a flag wins over the file); `c.r`, `c.loraAlpha`, … reach into `lora`.
@dynamicMemberLookup
public struct TrainingConfig: Equatable, Sendable {
    public enum Scheduler: String, Codable, Sendable, CaseIterable {
        case linear, cosine, constant
        case constantWithWarmup = "constant_with_warmup"
    }

    // Data
    public var model: String = ""
    public var data: [String] = []
    public var valData: String?
    public var valSplit: Double = 0
    public var maxSeqLen: Int = 1024
    public var packing = false
    public var trainOn: String = "assistant"
    public var chatTemplate: String?
    public var skipBadLines = false
    // The adapter: PEFT's LoraConfig, from lora_config / adapter and the LoRA keys.
    public var lora = LoraConfig()
    public var loraConfig: String?
    public var adapter: String?
    // Optimisation (transformers' TrainingArguments)
    public var learningRate: Double = 5e-5
    public var lrSchedulerType: Scheduler = .linear
    public var warmupSteps: Double = 0
    public var warmupRatio: Double = 0
    public var weightDecay: Double = 0
    public var adamBeta1: Double = 0.9
    public var adamBeta2: Double = 0.999
    public var adamEpsilon: Double = 1e-8
    public var maxGradNorm: Double = 1.0
    public var perDeviceTrainBatchSize: Int = 8
    public var perDeviceEvalBatchSize: Int = 8
    public var gradientAccumulationSteps: Int = 1
    public var numTrainEpochs: Double = 3
    public var maxSteps: Int = -1
    public var gradientCheckpointing = false
    public var seed: Int = 42
    // Output, logging, evaluation, checkpoints
    public var outputDir: String = "lora-gpu-output"
    public var loggingSteps: Double = 500
    public var evalSteps: Double?
    public var saveSteps: Double = 500
    public var saveTotalLimit: Int?
    public var loadBestModelAtEnd = false
    public var metricForBestModel: String = "eval_loss"
    public var earlyStoppingPatience: Int?
    public var earlyStoppingThreshold: Double = 0
    public var neftuneNoiseAlpha: Double?
    public var resumeFromCheckpoint: String?

    /// Keys given explicitly (file or flags).
    public var explicitKeys: Set<String> = []
    /// Where each explicit key came from (the file's path, or the flags), so that an error names it.
    public var keySources: [String: String] = [:]

    public subscript<T>(dynamicMember key: WritableKeyPath<LoraConfig, T>) -> T {
        get { lora[keyPath: key] }
        set { lora[keyPath: key] = newValue }
    }

    /// Every key a config file or flag may set, in training_config.yaml's order.
    public static let keys = ["model", "data", "val_data", "val_split", "max_seq_len", "packing", "train_on",
                              "chat_template", "skip_bad_lines"]
        + LoraConfig.adapterKeys + ["lora_config", "adapter",
        "learning_rate", "lr_scheduler_type", "warmup_steps", "warmup_ratio", "weight_decay", "adam_beta1", "adam_beta2",
        "adam_epsilon", "max_grad_norm", "per_device_train_batch_size", "per_device_eval_batch_size",
        "gradient_accumulation_steps", "num_train_epochs", "max_steps", "gradient_checkpointing", "seed", "output_dir",
        "logging_steps", "eval_steps", "save_steps", "save_total_limit", "load_best_model_at_end", "metric_for_best_model",
        "early_stopping_patience", "early_stopping_threshold", "neftune_noise_alpha", "resume_from_checkpoint"]

    /// Keys that describe the LoRA adapter (fixed by `adapter`, overriding `lora_config`).
    public static let loraKeys = Set(LoraConfig.adapterKeys)
    public static let trainOnValues = ["assistant", "all", "last"]
    public static let metrics = ["eval_loss", "eval_perplexity", "loss"]

    public init() {}

    // MARK: reading

    /// The settings of `file` (YAML or JSON: one flat mapping), then `overrides`
    /// (the flags, which win), validated. With `lora_config` or `adapter` the adapter
    /// starts from that adapter_config.json: lora_config's is overridden by the LoRA
    /// keys given, an adapter's must agree with them.
    public static func resolve(file: String?, overrides: [String: Any]) throws -> TrainingConfig {
        var given: [(key: String, value: JSONValue, source: String)] = []
        if let file { given += try readMapping(file).map { ($0.0, $0.1, file) } }
        given += overrides.keys.sorted().map { ($0, value(any: overrides[$0]!), "command line") }
        var c = TrainingConfig()
        for g in given where !loraKeys.contains(g.key) { try c.set(g.key, g.value, source: g.source) }
        let fixed = try c.adapter.map { try LoraConfig.load(path: adapterConfigPath($0)) }
        if let fixed { c.lora = fixed } else if let file = c.loraConfig { c.lora = try LoraConfig.load(path: adapterConfigPath(file)) }
        c.lora.inferenceMode = false
        for g in given where loraKeys.contains(g.key) { try c.set(g.key, g.value, source: g.source) }
        try c.validate(adapterConfig: fixed)
        return c
    }

    /// Sets one key from a value (typed JSON, or text from YAML and flags).
    public mutating func set(_ key: String, _ value: JSONValue, source: String) throws {
        func fail(_ r: String) -> TrainError { .setting(source: source, key: key, reason: r) }
        guard Self.keys.contains(key) else {
            let near = Self.closest(key, among: Self.keys)
            throw fail("unknown setting" + (near.map { "; did you mean '\($0)'?" } ?? ""))
        }
        explicitKeys.insert(key)
        keySources[key] = source
        do {
            if Self.loraKeys.contains(key) { try lora.set(key, value) } else { try setTrainingKey(key, value) }
        } catch let e as LoraConfig.SettingError {
            throw fail(e.reason)
        }
    }

    private mutating func setTrainingKey(_ key: String, _ v: JSONValue) throws {
        func text() throws -> String { try Setting.text(v, key) }
        func optText() throws -> String? { v.isNull ? nil : try text() }
        func int() throws -> Int { try Setting.int(v, key) }
        func double() throws -> Double { try Setting.double(v, key) }
        func optDouble() throws -> Double? { v.isNull ? nil : try double() }
        func bool() throws -> Bool { try Setting.bool(v, key) }
        switch key {
        case "model": model = try text()
        case "data": data = v.isNull ? [] : try Setting.strings(v, key)
        case "val_data": valData = try optText()
        case "val_split": valSplit = try double()
        case "max_seq_len": maxSeqLen = try int()
        case "packing": packing = try bool()
        case "train_on": trainOn = try text()
        case "chat_template": chatTemplate = try optText()
        case "skip_bad_lines": skipBadLines = try bool()
        case "lora_config": loraConfig = try optText()
        case "adapter": adapter = try optText()
        case "learning_rate": learningRate = try double()
        case "lr_scheduler_type":
            guard let s = Scheduler(rawValue: try text()) else {
                throw LoraConfig.SettingError(key, "'\(try text())' is not supported; supported: "
                                                + Scheduler.allCases.map(\.rawValue).joined(separator: ", "))
            }
            lrSchedulerType = s
        case "warmup_steps": warmupSteps = try double()
        case "warmup_ratio": warmupRatio = try optDouble() ?? 0
        case "weight_decay": weightDecay = try double()
        case "adam_beta1": adamBeta1 = try double()
        case "adam_beta2": adamBeta2 = try double()
        case "adam_epsilon": adamEpsilon = try double()
        case "max_grad_norm": maxGradNorm = try double()
        case "per_device_train_batch_size": perDeviceTrainBatchSize = try int()
        case "per_device_eval_batch_size": perDeviceEvalBatchSize = try int()
        case "gradient_accumulation_steps": gradientAccumulationSteps = try int()
        case "num_train_epochs": numTrainEpochs = try double()
        case "max_steps": maxSteps = try int()
        case "gradient_checkpointing": gradientCheckpointing = try bool()
        case "seed": seed = try int()
        case "output_dir": outputDir = try text()
        case "logging_steps": loggingSteps = try double()
        case "eval_steps": evalSteps = try optDouble()
        case "save_steps": saveSteps = try double()
        case "save_total_limit": saveTotalLimit = v.isNull ? nil : try int()
        case "load_best_model_at_end": loadBestModelAtEnd = try bool()
        case "metric_for_best_model": metricForBestModel = try text()
        case "early_stopping_patience": earlyStoppingPatience = v.isNull ? nil : try int()
        case "early_stopping_threshold": earlyStoppingThreshold = try double()
        case "neftune_noise_alpha": neftuneNoiseAlpha = try optDouble()
        case "resume_from_checkpoint": resumeFromCheckpoint = try optText()
        default: preconditionFailure("key \(key) listed but not read")
        }
    }

    /// A key's value as training_config.yaml writes it.
    public func value(forKey key: String) -> JSONValue {
        func opt<T>(_ v: T?, _ f: (T) -> JSONValue) -> JSONValue { v.map(f) ?? .null }
        if Self.loraKeys.contains(key) { return lora.value(forKey: key) }
        switch key {
        case "model": return .string(model)
        case "data": return JSONValue(data)
        case "val_data": return opt(valData) { .string($0) }
        case "val_split": return .double(valSplit)
        case "max_seq_len": return .int(maxSeqLen)
        case "packing": return .bool(packing)
        case "train_on": return .string(trainOn)
        case "chat_template": return opt(chatTemplate) { .string($0) }
        case "skip_bad_lines": return .bool(skipBadLines)
        case "lora_config": return opt(loraConfig) { .string($0) }
        case "adapter": return opt(adapter) { .string($0) }
        case "learning_rate": return .double(learningRate)
        case "lr_scheduler_type": return .string(lrSchedulerType.rawValue)
        case "warmup_steps": return .double(warmupSteps)
        case "warmup_ratio": return .double(warmupRatio)
        case "weight_decay": return .double(weightDecay)
        case "adam_beta1": return .double(adamBeta1)
        case "adam_beta2": return .double(adamBeta2)
        case "adam_epsilon": return .double(adamEpsilon)
        case "max_grad_norm": return .double(maxGradNorm)
        case "per_device_train_batch_size": return .int(perDeviceTrainBatchSize)
        case "per_device_eval_batch_size": return .int(perDeviceEvalBatchSize)
        case "gradient_accumulation_steps": return .int(gradientAccumulationSteps)
        case "num_train_epochs": return .double(numTrainEpochs)
        case "max_steps": return .int(maxSteps)
        case "gradient_checkpointing": return .bool(gradientCheckpointing)
        case "seed": return .int(seed)
        case "output_dir": return .string(outputDir)
        case "logging_steps": return .double(loggingSteps)
        case "eval_steps": return opt(evalSteps) { .double($0) }
        case "save_steps": return .double(saveSteps)
        case "save_total_limit": return opt(saveTotalLimit) { .int($0) }
        case "load_best_model_at_end": return .bool(loadBestModelAtEnd)
        case "metric_for_best_model": return .string(metricForBestModel)
        case "early_stopping_patience": return opt(earlyStoppingPatience) { .int($0) }
        case "early_stopping_threshold": return .double(earlyStoppingThreshold)
        case "neftune_noise_alpha": return opt(neftuneNoiseAlpha) { .double($0) }
        case "resume_from_checkpoint": return opt(resumeFromCheckpoint) { .string($0) }
        default: return .null
        }
    }

    /// The LoRA configuration in force.
    public func loraSettings() -> LoraConfig { lora }

    /// The known key nearest to `key` by edit distance (nil when nothing is close).
    static func closest(_ key: String, among known: [String]) -> String? {
        func distance(_ a: [Character], _ b: [Character]) -> Int {
            var prev = Array(0...b.count)
            for i in 1...max(a.count, 1) where !a.isEmpty {
                var cur = [i] + Array(repeating: 0, count: b.count)
                for j in 1...max(b.count, 1) where !b.isEmpty {
                    cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
                }
                prev = cur
            }
            return a.isEmpty ? b.count : prev[b.count]
        }
        let k = Array(key.lowercased().replacingOccurrences(of: "-", with: "_"))
        let scored = known.map { ($0, distance(k, Array($0))) }.min { ($0.1, $0.0) < ($1.1, $1.0) }
        guard let best = scored, best.1 <= max(3, k.count / 2) else { return nil }
        return best.0
    }

    // MARK: validation

    /// Checks every value, naming the file or flags that set it. `adapterConfig`: the
    /// adapter's own config, which the LoRA keys given must agree with (compared as values).
    public func validate(adapterConfig: LoraConfig? = nil) throws {
        func fail(_ k: String, _ r: String) -> TrainError { .setting(source: keySources[k] ?? "settings", key: k, reason: r) }
        if model.isEmpty { throw fail("model", "missing: give the base model directory (--model DIR)") }
        if data.isEmpty { throw fail("data", "missing: give at least one training file (--data FILE)") }
        if !(0..<1).contains(valSplit) { throw fail("val_split", "must be in [0, 1), got \(valSplit)") }
        if valData != nil && valSplit > 0 { throw fail("val_split", "give val_data or val_split, not both") }
        if maxSeqLen < 2 { throw fail("max_seq_len", "must be at least 2, got \(maxSeqLen)") }
        if !Self.trainOnValues.contains(trainOn) {
            throw fail("train_on", "'\(trainOn)' is not supported; supported: " + Self.trainOnValues.joined(separator: ", "))
        }
        do { try lora.validate() } catch let e as LoraConfig.SettingError {
            throw fail(e.key, e.reason)
        }
        if adapter != nil, loraConfig != nil { throw fail("adapter", "give adapter or lora_config, not both") }
        if let theirs = adapterConfig {
            // The adapter fixes the LoRA settings: a key given must agree with its config
            // (a training_config.yaml written by an earlier run lists them all).
            let clash = explicitKeys.intersection(Self.loraKeys).sorted()
                .filter { lora.value(forKey: $0) != theirs.value(forKey: $0) }
            if !clash.isEmpty {
                throw fail("adapter", "the adapter's adapter_config.json fixes the LoRA settings; " + clash.map {
                    "\($0) is \(theirs.value(forKey: $0).serialized(JSONStyle())) there, "
                        + "\(lora.value(forKey: $0).serialized(JSONStyle())) here"
                }.joined(separator: "; "))
            }
        }
        try validateTraining(fail)
    }

    private func validateTraining(_ fail: (String, String) -> TrainError) throws {
        if learningRate < 0 { throw fail("learning_rate", "must be ≥ 0, got \(learningRate)") }
        if warmupSteps < 0 { throw fail("warmup_steps", "must be ≥ 0, got \(warmupSteps)") }
        if !(0...1).contains(warmupRatio) { throw fail("warmup_ratio", "must be in [0, 1], got \(warmupRatio)") }
        if weightDecay < 0 { throw fail("weight_decay", "must be ≥ 0, got \(weightDecay)") }
        if !(0..<1).contains(adamBeta1) { throw fail("adam_beta1", "must be in [0, 1), got \(adamBeta1)") }
        if !(0..<1).contains(adamBeta2) { throw fail("adam_beta2", "must be in [0, 1), got \(adamBeta2)") }
        if adamEpsilon < 0 { throw fail("adam_epsilon", "must be ≥ 0, got \(adamEpsilon)") }
        if maxGradNorm < 0 { throw fail("max_grad_norm", "must be ≥ 0 (0 disables clipping), got \(maxGradNorm)") }
        if perDeviceTrainBatchSize < 1 { throw fail("per_device_train_batch_size", "must be ≥ 1") }
        if perDeviceEvalBatchSize < 1 { throw fail("per_device_eval_batch_size", "must be ≥ 1") }
        if gradientAccumulationSteps < 1 { throw fail("gradient_accumulation_steps", "must be ≥ 1") }
        if maxSteps <= 0 && numTrainEpochs <= 0 { throw fail("num_train_epochs", "must be > 0 when max_steps is not set") }
        if maxSteps == 0 || maxSteps < -1 { throw fail("max_steps", "must be a positive number of steps, or -1 for num_train_epochs") }
        if outputDir.isEmpty { throw fail("output_dir", "must not be empty") }
        for (k, v) in [("logging_steps", loggingSteps), ("save_steps", saveSteps), ("eval_steps", evalSteps ?? 1)] where v <= 0 {
            throw fail(k, "must be > 0 (a step count, or a fraction of the total steps below 1), got \(v)")
        }
        for (k, v) in [("num_train_epochs", numTrainEpochs), ("warmup_steps", warmupSteps), ("logging_steps", loggingSteps),
                       ("save_steps", saveSteps), ("eval_steps", evalSteps ?? 1)] where v > 1e9 {
            throw fail(k, "\(v) is beyond any run (at most 1e9)")
        }
        if let l = saveTotalLimit, l < 1 { throw fail("save_total_limit", "must be ≥ 1") }
        if !Self.metrics.contains(metricForBestModel) {
            throw fail("metric_for_best_model", "'\(metricForBestModel)' is not supported; supported: " + Self.metrics.joined(separator: ", "))
        }
        let hasEval = valData != nil || valSplit > 0
        if loadBestModelAtEnd && !hasEval && metricForBestModel != "loss" {
            throw fail("load_best_model_at_end", "needs evaluation data (val_data or val_split) for \(metricForBestModel)")
        }
        if let p = earlyStoppingPatience {
            if p < 1 { throw fail("early_stopping_patience", "must be ≥ 1") }
            if !hasEval && metricForBestModel != "loss" {
                throw fail("early_stopping_patience", "needs evaluation data (val_data or val_split)")
            }
        }
        if let a = neftuneNoiseAlpha, a < 0 { throw fail("neftune_noise_alpha", "must be ≥ 0, got \(a)") }
        if seed < 0 { throw fail("seed", "must be ≥ 0") }
    }

    /// A directory holding adapter_config.json, or the file itself.
    static func adapterConfigPath(_ p: String) -> String {
        var isDir: ObjCBool = false
        return FileManager.default.fileExists(atPath: p, isDirectory: &isDir) && isDir.boolValue ? p + "/adapter_config.json" : p
    }
}
