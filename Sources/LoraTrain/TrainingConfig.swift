import Foundation
import LoraModel
import Yams

/// Errors of the trainer: settings, data, checkpoints and the run itself.
public enum TrainError: Error, CustomStringConvertible, Equatable {
    /// A setting: where it came from (a file path or "command line"), its key, what is wrong.
    case setting(source: String, key: String, reason: String)
    case data(path: String, line: Int, reason: String)
    case checkpoint(path: String, reason: String)
    case nonFinite(step: Int, epoch: Int, batch: Int, loss: Float, gradNorm: Float, lastCheckpoint: String?)

    public var description: String {
        switch self {
        case .setting(let s, let k, let r): return "\(s): \(k): \(r)"
        case .data(let p, let l, let r): return l > 0 ? "\(p):\(l): \(r)" : "\(p): \(r)"
        case .checkpoint(let p, let r): return "\(p): \(r)"
        case .nonFinite(let step, let e, let b, let loss, let norm, let last):
            return "step \(step) (epoch \(e), batch \(b)): the loss is \(loss) and the gradient norm \(norm); stopped "
                + "without updating the adapter. "
                + (last.map { "The last good checkpoint is \($0)." } ?? "No checkpoint had been saved yet.")
                + " Try a lower learning_rate, max_grad_norm > 0 or warmup."
        }
    }
}

/// Every setting of `lora-gpu train`, named and defaulted as PEFT's LoraConfig
/// and transformers' TrainingArguments name and default them. Read from one
/// flat YAML/JSON mapping and from flags (a flag wins over the file).
public struct TrainingConfig: Codable, Equatable, Sendable {
    public enum Scheduler: String, Codable, Sendable, CaseIterable {
        case linear, cosine, constant
        case constantWithWarmup = "constant_with_warmup"
    }

    /// target_modules / exclude_modules as PEFT takes them.
    public enum Modules: Codable, Equatable, Sendable {
        case list([String])
        case regex(String)        // a string: re.fullmatch against the module path
        case allLinear
        public init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let s = try? c.decode(String.self) { self = s == "all-linear" ? .allLinear : .regex(s) }
            else { self = .list(try c.decode([String].self)) }
        }
        public func encode(to encoder: Encoder) throws {
            var c = encoder.singleValueContainer()
            switch self {
            case .list(let l): try c.encode(l)
            case .regex(let r): try c.encode(r)
            case .allLinear: try c.encode("all-linear")
            }
        }
        var lora: LoraConfig.Targets {
            switch self {
            case .list(let l): return .list(l)
            case .regex(let r): return .regex(r)
            case .allLinear: return .allLinear
            }
        }
    }

    /// init_lora_weights: true (Kaiming-uniform A, B = 0), "gaussian", false (both random).
    public enum InitWeights: String, Codable, Sendable {
        case `true`, gaussian, `false`
        public init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let b = try? c.decode(Bool.self) { self = b ? .true : .false; return }
            let s = try c.decode(String.self).lowercased()
            guard let v = InitWeights(rawValue: s) else {
                throw DecodingError.dataCorruptedError(in: c, debugDescription: "init_lora_weights must be true, false or gaussian")
            }
            self = v
        }
        public func encode(to encoder: Encoder) throws {
            var c = encoder.singleValueContainer()
            switch self {
            case .true: try c.encode(true)
            case .false: try c.encode(false)
            case .gaussian: try c.encode("gaussian")
            }
        }
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
    // LoRA (PEFT's LoraConfig)
    public var r: Int = 8
    public var loraAlpha: Double = 8
    public var loraDropout: Double = 0
    public var targetModules: Modules?
    public var excludeModules: Modules?
    public var bias: String = "none"
    public var useRslora = false
    public var initLoraWeights: InitWeights = .true
    public var layersToTransform: [Int]?
    public var modulesToSave: [String]?
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

    /// Keys given explicitly (file or flags), not encoded.
    public var explicitKeys: Set<String> = []
    /// Where each explicit key came from (the file's path, or the flags), so that an error names it.
    public var keySources: [String: String] = [:]

    enum CodingKeys: String, CodingKey, CaseIterable {
        case model, data, valData = "val_data", valSplit = "val_split", maxSeqLen = "max_seq_len", packing
        case trainOn = "train_on", chatTemplate = "chat_template", skipBadLines = "skip_bad_lines"
        case r, loraAlpha = "lora_alpha", loraDropout = "lora_dropout", targetModules = "target_modules"
        case excludeModules = "exclude_modules", bias, useRslora = "use_rslora", initLoraWeights = "init_lora_weights"
        case layersToTransform = "layers_to_transform", modulesToSave = "modules_to_save", loraConfig = "lora_config"
        case adapter
        case learningRate = "learning_rate", lrSchedulerType = "lr_scheduler_type", warmupSteps = "warmup_steps"
        case warmupRatio = "warmup_ratio", weightDecay = "weight_decay", adamBeta1 = "adam_beta1"
        case adamBeta2 = "adam_beta2", adamEpsilon = "adam_epsilon", maxGradNorm = "max_grad_norm"
        case perDeviceTrainBatchSize = "per_device_train_batch_size"
        case perDeviceEvalBatchSize = "per_device_eval_batch_size"
        case gradientAccumulationSteps = "gradient_accumulation_steps", numTrainEpochs = "num_train_epochs"
        case maxSteps = "max_steps", gradientCheckpointing = "gradient_checkpointing", seed
        case outputDir = "output_dir", loggingSteps = "logging_steps", evalSteps = "eval_steps"
        case saveSteps = "save_steps", saveTotalLimit = "save_total_limit"
        case loadBestModelAtEnd = "load_best_model_at_end", metricForBestModel = "metric_for_best_model"
        case earlyStoppingPatience = "early_stopping_patience", earlyStoppingThreshold = "early_stopping_threshold"
        case neftuneNoiseAlpha = "neftune_noise_alpha", resumeFromCheckpoint = "resume_from_checkpoint"
    }

    /// Every key a config file or flag may set.
    public static var keys: [String] { CodingKeys.allCases.map(\.rawValue) }

    /// Keys that describe the LoRA adapter (fixed by `adapter`, overriding `lora_config`).
    public static let loraKeys: Set<String> = ["r", "lora_alpha", "lora_dropout", "target_modules", "exclude_modules", "bias",
                                               "use_rslora", "init_lora_weights", "layers_to_transform", "modules_to_save"]
    public static let trainOnValues = ["assistant", "all", "last"]
    public static let metrics = ["eval_loss", "eval_perplexity", "loss"]

    public init() {}

    // MARK: reading

    /// The settings of `file` (YAML or JSON: one flat mapping), then `overrides`
    /// (the flags, which win), validated.
    public static func resolve(file: String?, overrides: [String: Any]) throws -> TrainingConfig {
        var c = TrainingConfig()
        if let file {
            for (k, v) in try readMapping(file) { try c.set(k, v, source: file) }
        }
        for k in overrides.keys.sorted() { try c.set(k, overrides[k]!, source: "command line") }
        try c.validate()
        // With lora_config or adapter the LoRA keys show the settings in force (training_config.yaml).
        if c.adapter != nil || c.loraConfig != nil { c.absorb(try c.loraSettings()) }
        return c
    }

    /// One flat mapping from a YAML or JSON file (YAML is a superset of JSON).
    public static func readMapping(_ path: String) throws -> [(String, Any)] {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw TrainError.setting(source: path, key: "(file)", reason: "cannot read the config file")
        }
        let node: Node?
        do { node = try Yams.compose(yaml: text) } catch {
            throw TrainError.setting(source: path, key: "(file)", reason: "not valid YAML or JSON: \(error)")
        }
        guard let node else { return [] }
        guard let mapping = node.mapping else {
            throw TrainError.setting(source: path, key: "(file)", reason: "must be one flat mapping of setting: value")
        }
        var out: [(String, Any)] = []
        for (k, v) in mapping {
            guard let key = k.string else { throw TrainError.setting(source: path, key: "\(k)", reason: "keys must be strings") }
            out.append((key, plain(v)))
        }
        return out
    }

    /// A YAML node as plain values (String for every scalar, converted per key later; NSNull for null).
    static func plain(_ n: Node) -> Any {
        switch n {
        case .scalar(let s):
            if s.style == .plain, ["null", "~", "Null", "NULL", ""].contains(s.string) { return NSNull() }
            return s.string
        case .sequence(let seq): return seq.map { plain($0) }
        case .mapping(let m): return Dictionary(m.map { ($0.key.string ?? "\($0.key)", plain($0.value)) }, uniquingKeysWith: { a, _ in a })
        }
    }

    /// Sets one key from a plain value (String, number, Bool, list or NSNull).
    public mutating func set(_ key: String, _ value: Any, source: String) throws {
        func fail(_ r: String) -> TrainError { .setting(source: source, key: key, reason: r) }
        guard let ck = CodingKeys(rawValue: key) else {
            let near = Self.closest(key, among: Self.keys)
            throw fail("unknown setting" + (near.map { "; did you mean '\($0)'?" } ?? ""))
        }
        explicitKeys.insert(key)
        keySources[key] = source
        let isNull = value is NSNull
        func text() throws -> String {
            if let s = value as? String { return s }
            if let n = value as? NSNumber { return n.stringValue }
            throw fail("must be a single value, got \(value)")
        }
        func int() throws -> Int {
            let t = try text().trimmingCharacters(in: .whitespaces)
            if let i = Int(t) { return i }
            if let d = Double(t), d == d.rounded(), abs(d) < 1e15 { return Int(d) }
            throw fail("must be an integer, got '\(t)'")
        }
        func double() throws -> Double {
            let t = try text().trimmingCharacters(in: .whitespaces)
            guard let d = Double(t), d.isFinite else { throw fail("must be a number, got '\(t)'") }
            return d
        }
        func bool() throws -> Bool {
            if let b = value as? Bool { return b }
            switch try text().lowercased() {
            case "true", "yes", "on", "1": return true
            case "false", "no", "off", "0": return false
            case let t: throw fail("must be true or false, got '\(t)'")
            }
        }
        func strings() throws -> [String] {
            if let a = value as? [Any] {
                return try a.map { v in
                    if let s = v as? String { return s }
                    if let n = v as? NSNumber { return n.stringValue }
                    throw fail("must be a list of strings")
                }
            }
            return [try text()]
        }
        func modules() throws -> Modules {
            if let a = value as? [Any] {
                _ = a
                return .list(try strings())
            }
            let s = try text()
            if s == "all-linear" { return .allLinear }
            do { _ = try Regex(s) } catch { throw fail("invalid regular expression '\(s)': \(error)") }
            return .regex(s)
        }
        switch ck {
        case .model: model = try text()
        case .data: data = isNull ? [] : try strings()
        case .valData: valData = isNull ? nil : try text()
        case .valSplit: valSplit = try double()
        case .maxSeqLen: maxSeqLen = try int()
        case .packing: packing = try bool()
        case .trainOn: trainOn = try text()
        case .chatTemplate: chatTemplate = isNull ? nil : try text()
        case .skipBadLines: skipBadLines = try bool()
        case .r: r = try int()
        case .loraAlpha: loraAlpha = try double()
        case .loraDropout: loraDropout = try double()
        case .targetModules: targetModules = isNull ? nil : try modules()
        case .excludeModules: excludeModules = isNull ? nil : try modules()
        case .bias: bias = try text()
        case .useRslora: useRslora = try bool()
        case .initLoraWeights:
            if let b = value as? Bool { initLoraWeights = b ? .true : .false; break }
            guard let v = InitWeights(rawValue: try text().lowercased()) else {
                throw fail("must be true, false or gaussian, got '\(try text())'")
            }
            initLoraWeights = v
        case .layersToTransform:
            if isNull { layersToTransform = nil; break }
            if let a = value as? [Any] {
                layersToTransform = try a.map { v -> Int in
                    guard let i = Int("\(v)".trimmingCharacters(in: .whitespaces)) else { throw fail("must be a list of integers") }
                    return i
                }
            } else {
                layersToTransform = try text().split(separator: ",").map { s -> Int in
                    guard let i = Int(s.trimmingCharacters(in: .whitespaces)) else { throw fail("must be integers, got '\(s)'") }
                    return i
                }
            }
        case .modulesToSave: modulesToSave = isNull ? nil : try strings()
        case .loraConfig: loraConfig = isNull ? nil : try text()
        case .adapter: adapter = isNull ? nil : try text()
        case .learningRate: learningRate = try double()
        case .lrSchedulerType:
            guard let s = Scheduler(rawValue: try text()) else {
                throw fail("'\(try text())' is not supported; supported: " + Scheduler.allCases.map(\.rawValue).joined(separator: ", "))
            }
            lrSchedulerType = s
        case .warmupSteps: warmupSteps = try double()
        case .warmupRatio: warmupRatio = isNull ? 0 : try double()
        case .weightDecay: weightDecay = try double()
        case .adamBeta1: adamBeta1 = try double()
        case .adamBeta2: adamBeta2 = try double()
        case .adamEpsilon: adamEpsilon = try double()
        case .maxGradNorm: maxGradNorm = try double()
        case .perDeviceTrainBatchSize: perDeviceTrainBatchSize = try int()
        case .perDeviceEvalBatchSize: perDeviceEvalBatchSize = try int()
        case .gradientAccumulationSteps: gradientAccumulationSteps = try int()
        case .numTrainEpochs: numTrainEpochs = try double()
        case .maxSteps: maxSteps = try int()
        case .gradientCheckpointing: gradientCheckpointing = try bool()
        case .seed: seed = try int()
        case .outputDir: outputDir = try text()
        case .loggingSteps: loggingSteps = try double()
        case .evalSteps: evalSteps = isNull ? nil : try double()
        case .saveSteps: saveSteps = try double()
        case .saveTotalLimit: saveTotalLimit = isNull ? nil : try int()
        case .loadBestModelAtEnd: loadBestModelAtEnd = try bool()
        case .metricForBestModel: metricForBestModel = try text()
        case .earlyStoppingPatience: earlyStoppingPatience = isNull ? nil : try int()
        case .earlyStoppingThreshold: earlyStoppingThreshold = try double()
        case .neftuneNoiseAlpha: neftuneNoiseAlpha = isNull ? nil : try double()
        case .resumeFromCheckpoint: resumeFromCheckpoint = isNull ? nil : try text()
        }
    }

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

    public func validate() throws {
        func fail(_ k: String, _ r: String) -> TrainError { .setting(source: keySources[k] ?? "settings", key: k, reason: r) }
        if model.isEmpty { throw fail("model", "missing: give the base model directory (--model DIR)") }
        if data.isEmpty { throw fail("data", "missing: give at least one training file (--data FILE)") }
        if !(0..<1).contains(valSplit) { throw fail("val_split", "must be in [0, 1), got \(valSplit)") }
        if valData != nil && valSplit > 0 { throw fail("val_split", "give val_data or val_split, not both") }
        if maxSeqLen < 2 { throw fail("max_seq_len", "must be at least 2, got \(maxSeqLen)") }
        if !Self.trainOnValues.contains(trainOn) {
            throw fail("train_on", "'\(trainOn)' is not supported; supported: " + Self.trainOnValues.joined(separator: ", "))
        }
        if r < 1 { throw fail("r", "must be a positive integer, got \(r)") }
        if !(0..<1).contains(loraDropout) { throw fail("lora_dropout", "must be in [0, 1), got \(loraDropout)") }
        if LoraConfig.Bias(rawValue: bias) == nil { throw fail("bias", "must be none, all or lora_only, got '\(bias)'") }
        if let adapter {
            if loraConfig != nil { throw fail("adapter", "give adapter or lora_config, not both") }
            // The adapter fixes the LoRA settings: a key given must agree with its config
            // (a training_config.yaml written by an earlier run lists them all).
            var fixed = self
            fixed.absorb(try LoraConfig.load(path: Self.adapterConfigPath(adapter)))
            let mine = yamlValues(), its = fixed.yamlValues()
            let clash = explicitKeys.intersection(Self.loraKeys).filter { mine[$0] != its[$0] }.sorted()
            if !clash.isEmpty {
                throw fail("adapter", "the adapter's adapter_config.json fixes the LoRA settings; "
                    + clash.map { "\($0) is \(its[$0] ?? "null") there, \(mine[$0] ?? "null") here" }.joined(separator: "; "))
            }
        }
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

    // MARK: derived settings

    /// The LoRA config the model is built with: the adapter's, else
    /// lora_config's overridden by the LoRA keys given, else PEFT's defaults and the keys.
    public func loraSettings() throws -> LoraConfig {
        if let adapter {
            var c = try LoraConfig.load(path: Self.adapterConfigPath(adapter))
            c.inferenceMode = false
            return c
        }
        var c = try loraConfig.map { try LoraConfig.load(path: Self.adapterConfigPath($0)) } ?? LoraConfig()
        c.inferenceMode = false
        let given = loraConfig == nil ? Set(Self.loraKeys) : explicitKeys.intersection(Self.loraKeys)
        if given.contains("r") { c.r = r }
        if given.contains("lora_alpha") { c.loraAlpha = loraAlpha }
        if given.contains("lora_dropout") { c.loraDropout = loraDropout }
        if given.contains("target_modules"), let t = targetModules { c.targetModules = t.lora }
        if given.contains("exclude_modules") { c.excludeModules = excludeModules?.lora }
        if given.contains("bias"), let b = LoraConfig.Bias(rawValue: bias) { c.bias = b }
        if given.contains("use_rslora") { c.useRSLoRA = useRslora }
        if given.contains("init_lora_weights") {
            c.initLoraWeights = initLoraWeights == .true ? .kaiming : initLoraWeights == .gaussian ? .gaussian : .random
        }
        if given.contains("layers_to_transform") { c.layersToTransform = layersToTransform }
        if given.contains("modules_to_save") { c.modulesToSave = modulesToSave ?? [] }
        return c
    }

    /// Takes the LoRA keys from `l`.
    mutating func absorb(_ l: LoraConfig) {
        func modules(_ t: LoraConfig.Targets) -> Modules {
            switch t {
            case .list(let x): return .list(x)
            case .regex(let r): return .regex(r)
            case .allLinear: return .allLinear
            }
        }
        r = l.r
        loraAlpha = l.loraAlpha
        loraDropout = l.loraDropout
        targetModules = modules(l.targetModules)
        excludeModules = l.excludeModules.map(modules)
        bias = l.bias.rawValue
        useRslora = l.useRSLoRA
        initLoraWeights = l.initLoraWeights == .kaiming ? .true : l.initLoraWeights == .gaussian ? .gaussian : .false
        layersToTransform = l.layersToTransform
        modulesToSave = l.modulesToSave.isEmpty ? nil : l.modulesToSave
    }

    /// A directory holding adapter_config.json, or the file itself.
    static func adapterConfigPath(_ p: String) -> String {
        var isDir: ObjCBool = false
        return FileManager.default.fileExists(atPath: p, isDirectory: &isDir) && isDir.boolValue ? p + "/adapter_config.json" : p
    }

    /// warmup steps for `total` steps: warmup_steps when ≥ 1 (a fraction below 1
    /// is a ratio, as transformers 5), else ⌈warmup_ratio·total⌉ (transformers 4).
    public func warmup(total: Int) -> Int {
        if warmupSteps >= 1 { return Int(warmupSteps) }
        let ratio = warmupSteps > 0 ? warmupSteps : warmupRatio
        return Int((ratio * Double(total)).rounded(.up))
    }

    /// A step interval: ≥ 1 a count, below 1 a fraction of the total (ceil), as transformers.
    static func interval(_ v: Double, total: Int) -> Int {
        v >= 1 ? Int(v) : max(1, Int((v * Double(total)).rounded(.up)))
    }

    /// The resolved settings as YAML (training_config.yaml): every key in
    /// the order above, null for an unset one; reads back through `resolve`.
    public func yaml() throws -> String {
        let values = yamlValues()
        return Self.keys.map { "\($0): \(values[$0] ?? "null")" }.joined(separator: "\n") + "\n"
    }

    /// Each key's value as training_config.yaml spells it.
    func yamlValues() -> [String: String] {
        // Property names are the keys in camelCase (learningRate ↔ learning_rate).
        func snake(_ name: String) -> String {
            name.reduce(into: "") { out, ch in out += ch.isUppercase ? "_" + ch.lowercased() : String(ch) }
        }
        var values: [String: String] = [:]
        for child in Mirror(reflecting: self).children {
            guard let label = child.label, let key = Optional(snake(label)), CodingKeys(rawValue: key) != nil else { continue }
            values[key] = Self.yamlValue(child.value)
        }
        return values
    }

    static func yamlValue(_ v: Any) -> String {
        let m = Mirror(reflecting: v)
        if m.displayStyle == .optional { return m.children.first.map { yamlValue($0.value) } ?? "null" }
        func quoted(_ s: String) -> String {
            var out = "\""
            for ch in s.unicodeScalars {
                switch ch {
                case "\"": out += "\\\""
                case "\\": out += "\\\\"
                case "\n": out += "\\n"
                case "\t": out += "\\t"
                default: out.unicodeScalars.append(ch)
                }
            }
            return out + "\""
        }
        switch v {
        case let b as Bool: return b ? "true" : "false"
        case let i as Int: return String(i)
        case let d as Double: return "\(d)"
        case let s as String: return quoted(s)
        case let a as [String]: return "[" + a.map(quoted).joined(separator: ", ") + "]"
        case let a as [Int]: return "[" + a.map(String.init).joined(separator: ", ") + "]"
        case let e as Scheduler: return e.rawValue
        case let e as InitWeights: return e == .gaussian ? "gaussian" : e.rawValue
        case let e as Modules:
            switch e {
            case .list(let l): return yamlValue(l)
            case .regex(let r): return quoted(r)
            case .allLinear: return "all-linear"
            }
        default: return quoted("\(v)")
        }
    }
}
