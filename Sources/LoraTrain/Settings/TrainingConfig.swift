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
    /// How the frozen weights are kept on the device (`QuantizeMode`: auto, none, q8_0, q4_0, nf4; any case).
    public var quantize: String = "auto"
    public var data: [String] = []
    public var valData: String?
    public var valSplit: Double = 0
    public var maxSeqLen: Int = 1024
    public var packing = false
    public var trainOn: String = "assistant"
    public var chatTemplate: String?
    /// Extra chat-template arguments, as transformers' apply_chat_template(**kwargs) takes them
    /// (enable_thinking: false for Qwen3 …); TRL's SFTConfig names them chat_template_kwargs.
    public var chatTemplateKwargs = JSONObject()
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
    /// A classifier's problem_type (transformers' config name); nil: the labels' shape decides.
    public var problemType: String?
    /// TOKEN_CLS: label every sub-token of a word (run_ner.py's label_all_tokens), not only the first.
    public var labelAllTokens = false
    /// QUESTION_ANS (run_qa.py's names and defaults): the overlap, in tokens, between the windows of a
    /// context longer than max_seq_len; the longest answer and how many start/end candidates the
    /// post-processing weighs; whether a question may have no answer (SQuAD v2: the null answer).
    public var docStride = 128
    public var maxAnswerLength = 30
    public var nBestSize = 20
    public var version2WithNegative = false
    /// FEATURE_EXTRACTION: how a text's hidden states become its vector (mean over its tokens, as
    /// sentence-transformers' default Pooling; or its last token), and InfoNCE's temperature
    /// (MultipleNegativesRankingLoss's scale 20 = 1 / 0.05).
    public var pooling = "mean"
    public var temperature = 0.05
    /// transformers' eval_on_start: evaluate once before the first step (printed, the "before" of a run).
    public var evalOnStart = false
    public var metricForBestModel: String = "eval_loss"
    public var earlyStoppingPatience: Int?
    public var earlyStoppingThreshold: Double = 0
    public var neftuneNoiseAlpha: Double?
    public var resumeFromCheckpoint: String?

    /// What the reading decided that the user should hear (printed when training starts).
    public var notes: [String] = []
    /// Keys given explicitly (file or flags).
    public var explicitKeys: Set<String> = []
    /// Where each explicit key came from (the file's path, or the flags), so that an error names it.
    public var keySources: [String: String] = [:]

    public subscript<T>(dynamicMember key: WritableKeyPath<LoraConfig, T>) -> T {
        get { lora[keyPath: key] }
        set { lora[keyPath: key] = newValue }
    }

    /// How a training setting is stored (LoRA keys live in `lora`).
    enum Field {
        case text(WritableKeyPath<TrainingConfig, String>), optionalText(WritableKeyPath<TrainingConfig, String?>)
        case int(WritableKeyPath<TrainingConfig, Int>), optionalInt(WritableKeyPath<TrainingConfig, Int?>)
        case number(WritableKeyPath<TrainingConfig, Double>), optionalNumber(WritableKeyPath<TrainingConfig, Double?>)
        case flag(WritableKeyPath<TrainingConfig, Bool>), texts(WritableKeyPath<TrainingConfig, [String]>)
        case scheduler, lora, templateKwargs
    }

    /// Every key a config file or flag may set, in training_config.yaml's order, with its field.
    static let fields: [(key: String, field: Field)] = [
        ("model", .text(\.model)), ("quantize", .text(\.quantize)), ("data", .texts(\.data)), ("val_data", .optionalText(\.valData)),
        ("val_split", .number(\.valSplit)), ("max_seq_len", .int(\.maxSeqLen)), ("packing", .flag(\.packing)),
        ("train_on", .text(\.trainOn)), ("chat_template", .optionalText(\.chatTemplate)),
        ("chat_template_kwargs", .templateKwargs), ("skip_bad_lines", .flag(\.skipBadLines)),
    ] + LoraConfig.adapterKeys.map { ($0, Field.lora) } + [
        ("lora_config", .optionalText(\.loraConfig)), ("adapter", .optionalText(\.adapter)),
        ("learning_rate", .number(\.learningRate)), ("lr_scheduler_type", .scheduler), ("warmup_steps", .number(\.warmupSteps)),
        ("warmup_ratio", .number(\.warmupRatio)), ("weight_decay", .number(\.weightDecay)), ("adam_beta1", .number(\.adamBeta1)),
        ("adam_beta2", .number(\.adamBeta2)), ("adam_epsilon", .number(\.adamEpsilon)), ("max_grad_norm", .number(\.maxGradNorm)),
        ("per_device_train_batch_size", .int(\.perDeviceTrainBatchSize)),
        ("per_device_eval_batch_size", .int(\.perDeviceEvalBatchSize)),
        ("gradient_accumulation_steps", .int(\.gradientAccumulationSteps)), ("num_train_epochs", .number(\.numTrainEpochs)),
        ("max_steps", .int(\.maxSteps)), ("gradient_checkpointing", .flag(\.gradientCheckpointing)), ("seed", .int(\.seed)),
        ("output_dir", .text(\.outputDir)), ("logging_steps", .number(\.loggingSteps)), ("eval_steps", .optionalNumber(\.evalSteps)),
        ("save_steps", .number(\.saveSteps)), ("save_total_limit", .optionalInt(\.saveTotalLimit)),
        ("load_best_model_at_end", .flag(\.loadBestModelAtEnd)), ("metric_for_best_model", .text(\.metricForBestModel)),
        ("eval_on_start", .flag(\.evalOnStart)), ("problem_type", .optionalText(\.problemType)),
        ("label_all_tokens", .flag(\.labelAllTokens)),
        ("doc_stride", .int(\.docStride)), ("max_answer_length", .int(\.maxAnswerLength)), ("n_best_size", .int(\.nBestSize)),
        ("version_2_with_negative", .flag(\.version2WithNegative)),
        ("pooling", .text(\.pooling)), ("temperature", .number(\.temperature)),
        ("early_stopping_patience", .optionalInt(\.earlyStoppingPatience)),
        ("early_stopping_threshold", .number(\.earlyStoppingThreshold)),
        ("neftune_noise_alpha", .optionalNumber(\.neftuneNoiseAlpha)), ("resume_from_checkpoint", .optionalText(\.resumeFromCheckpoint)),
    ]
    public static let keys = fields.map(\.key)
    /// Every key a settings file or flag may give: the training keys and all of PEFT's LoraConfig.
    static let allKeys = keys + LoraConfig.peftKeys.map(\.key).filter { !keys.contains($0) }
    static let fieldOf = Dictionary(uniqueKeysWithValues: fields)

    /// Keys of PEFT's LoraConfig: every one is a setting (LoraConfig.peftKeys says what each does);
    /// they override `lora_config`'s. training_config.yaml writes the adapter's (LoraConfig.adapterKeys).
    public static let loraKeys = Set(LoraConfig.peftKeys.map(\.key))
    /// The LoRA keys an adapter given with `adapter` fixes (a key given must agree with it).
    static let adapterFixedKeys = Set(LoraConfig.adapterKeys)
    public static let trainOnValues = ["assistant", "all", "last"]
    public static let metrics = ["eval_loss", "eval_perplexity", "loss", "eval_accuracy", "eval_f1", "eval_exact_match"]
    /// Metrics where higher is better (tracked negated; a classifier's or QA's scores).
    public static let greaterIsBetter: Set<String> = ["eval_accuracy", "eval_f1", "eval_exact_match"]
    /// The best metric as the user reads it (un-negated).
    public func shownMetric(_ tracked: Double?) -> Double {
        guard let v = tracked else { return .nan }
        return Self.greaterIsBetter.contains(metricForBestModel) ? -v : v
    }

    public init() {}

    // MARK: reading

    /// The settings of `file` (YAML or JSON: one flat mapping), then `overrides`
    /// (the flags, which win), validated. With `lora_config` or `adapter` the adapter
    /// starts from that adapter_config.json: lora_config's is overridden by the LoRA
    /// keys given, an adapter's must agree with them.
    public static func resolve(file: String?, overrides: [String: Any]) throws -> TrainingConfig {
        var given: [(key: String, value: JSONValue, source: String)] = []
        var peftFile = false
        if let file {
            let pairs = try readMapping(file)
            peftFile = writtenByPEFT(pairs.map(\.0))
            given += pairs.map { ($0.0, $0.1, file) }
        }
        given += overrides.keys.sorted().map { ($0, value(any: overrides[$0]!), "command line") }
        var c = TrainingConfig()
        for g in given where !loraKeys.contains(g.key) {
            try c.set(g.key, g.value, source: g.source, savedByPEFT: peftFile && g.source == file)
        }
        let fixed = try c.adapter.map { try LoraConfig.load(path: $0) }
        if var fixed {
            // Continuing a saved adapter (PEFT saves inference_mode: true): trained again, as
            // PeftModel.from_pretrained(..., is_trainable=True) does.
            fixed.inferenceMode = false
            c.lora = fixed
        } else if let loraFile = c.loraConfig {
            // What inspect --lora-config reads: an adapter_config.json, or a settings file's LoRA keys.
            let (lora, notApplied) = try loraConfigFile(path: loraFile, visited: Set(file.map { [standardized($0)] } ?? []))
            c.lora = lora
            if c.lora.inferenceMode { c.keySources["inference_mode"] = loraFile }
            if !notApplied.isEmpty {
                c.notes.append("lora_config \(loraFile) is a settings file: its LoRA settings are used, its other settings ("
                               + notApplied.joined(separator: ", ") + ") are not; give it with --config to train with them"
                               + (notApplied.contains("adapter") ? " (its adapter gives the LoRA settings only, not its weights: "
                                  + "this run starts a new adapter; --adapter DIR continues one)" : ""))
            }
        }
        for g in given where loraKeys.contains(g.key) { try c.set(g.key, g.value, source: g.source) }
        try c.validate(adapterConfig: fixed)
        return c
    }

    /// The LoRA settings of a settings file (what `inspect --config` shows): its LoRA keys over its
    /// lora_config or adapter, every key checked as `train` checks it; the training keys are not
    /// required (no model or data needed).
    public static func loraSettings(file: String) throws -> LoraConfig {
        try loraSettings(file: file, visited: [standardized(file)]).lora
    }

    /// loraSettings, and the training keys the file gives (checked, not applied). `visited`: the
    /// files a chain of lora_config has read (a loop is an error). `requireSettings`: an empty file is an error.
    static func loraSettings(file: String, visited: Set<String>, requireSettings: Bool = false) throws -> (lora: LoraConfig, trainingKeys: [String]) {
        let given = try readMapping(file)
        if requireSettings && given.isEmpty {
            throw TrainError.setting(source: file, key: "(file)", reason: "holds no setting: give the LoRA settings (r, lora_alpha, "
                                     + "target_modules, …) or an adapter_config.json")
        }
        let peftFile = writtenByPEFT(given.map(\.0))
        var c = TrainingConfig()
        for (k, v) in given where !loraKeys.contains(k) { try c.set(k, v, source: file, savedByPEFT: peftFile) }
        if let a = c.adapter { c.lora = try LoraConfig.load(path: a); c.lora.inferenceMode = false }
        else if let l = c.loraConfig {
            guard !visited.contains(standardized(l)) else {
                throw TrainError.setting(source: file, key: "lora_config", reason: "\(l) leads back to a file already read (a loop)")
            }
            c.lora = try loraConfigFile(path: l, visited: visited.union([standardized(l)])).lora
        }
        for (k, v) in given where loraKeys.contains(k) { try c.set(k, v, source: file) }
        do { try c.lora.validate() } catch let e as LoraConfig.SettingError {
            throw TrainError.setting(source: file, key: e.key, reason: e.reason)
        }
        // What --lora-config does not take from it: training settings, and an adapter's weights.
        let training = given.map(\.0).filter { !loraKeys.contains($0) && $0 != "lora_config" && (fieldOf[$0] != nil) }
        return (c.lora, training)
    }

    /// What `lora_config` (`train --lora-config`, `inspect --lora-config`) names, read by one rule:
    /// an adapter directory, or a JSON file PEFT wrote (it carries peft_type: an adapter_config.json),
    /// read as PEFT reads it; any other file is a settings file (YAML or JSON, what `--config` reads:
    /// a hand-written LoraConfig JSON too, so a missing target_modules takes PEFT's default for these
    /// models and a misspelt training key names the key meant), whose LoRA settings are taken.
    /// `notApplied`: a settings file's training keys (and adapter), checked but not applied.
    public static func loraConfigFile(path: String, visited: Set<String> = []) throws -> (lora: LoraConfig, notApplied: [String]) {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue {
            return (try LoraConfig.load(path: path), [])
        }
        if let data = FileManager.default.contents(atPath: path), let j = try? JSONValue.parse(data), let o = j.object,
           writtenByPEFT(o.pairs.map(\.0)) {
            return (try LoraConfig.load(path: path), [])
        }
        let settings = try loraSettings(file: path, visited: visited.union([standardized(path)]), requireSettings: true)
        return (settings.lora, settings.trainingKeys)
    }

    /// Whether a file with these top-level keys is one PEFT wrote (an adapter_config.json: it carries peft_type).
    static func writtenByPEFT(_ keys: [String]) -> Bool { keys.contains("peft_type") }

    static func standardized(_ path: String) -> String { URL(fileURLWithPath: path).standardizedFileURL.resolvingSymlinksInPath().path }

    /// Why training refuses inference_mode: true.
    public static let inferenceModeReason = "true loads the adapter frozen, for inference: PEFT trains nothing with it "
        + "(its parameters do not require gradients); set inference_mode: false to train"

    /// Sets one key from a value (typed JSON, or text from YAML and flags).
    /// `savedByPEFT`: the key comes from a file PEFT wrote (it has peft_type), where an unknown key at a
    /// default-like value is ignored (LoraConfig.unknownKey, the one rule of every path).
    public mutating func set(_ key: String, _ value: JSONValue, source: String, savedByPEFT: Bool = false) throws {
        func fail(_ r: String) -> TrainError { .setting(source: source, key: key, reason: r) }
        guard Self.fieldOf[key] != nil || Self.loraKeys.contains(key) else {
            if LoraConfig.unknownKey(key, value, savedByPEFT: savedByPEFT, known: Self.allKeys) == nil { return }
            throw fail(Self.unknownKeyReason(key, value))
        }
        explicitKeys.insert(key)
        keySources[key] = source
        do { try setTrainingKey(key, value) } catch let e as LoraConfig.SettingError {
            throw fail(e.reason)
        }
    }

    private mutating func setTrainingKey(_ key: String, _ v: JSONValue) throws {
        guard let field = Self.fieldOf[key] else { return try lora.set(key, v) }  // a LoRA key not written back
        switch field {
        case .text(let k): self[keyPath: k] = try Setting.text(v, key)
        case .optionalText(let k): self[keyPath: k] = v.isNull ? nil : try Setting.text(v, key)
        case .int(let k): self[keyPath: k] = try Setting.int(v, key)
        case .optionalInt(let k): self[keyPath: k] = v.isNull ? nil : try Setting.int(v, key)
        // warmup_ratio: null is transformers' default 0.
        case .number(let k): self[keyPath: k] = key == "warmup_ratio" && v.isNull ? 0 : try Setting.double(v, key)
        case .optionalNumber(let k): self[keyPath: k] = v.isNull ? nil : try Setting.double(v, key)
        case .flag(let k): self[keyPath: k] = try Setting.bool(v, key)
        case .texts(let k): self[keyPath: k] = v.isNull ? [] : try Setting.strings(v, key)
        case .scheduler:
            let t = try Setting.text(v, key)
            guard let s = Scheduler(rawValue: t) else {
                throw LoraConfig.SettingError(key, "'\(t)' is not supported; supported: " + Scheduler.allCases.map(\.rawValue).joined(separator: ", "))
            }
            lrSchedulerType = s
        case .lora: try lora.set(key, v)
        case .templateKwargs:
            if v.isNull { chatTemplateKwargs = JSONObject(); return }
            guard let o = v.object else {
                throw LoraConfig.SettingError(key, "must be a mapping of template argument to value, e.g. {enable_thinking: false}")
            }
            // YAML and flags give scalars as text: read each as YAML types it (false → a boolean).
            chatTemplateKwargs = JSONObject(o.pairs.map { ($0.0, Self.typedScalars($0.1)) })
        }
    }

    /// A key's value as training_config.yaml writes it.
    public func value(forKey key: String) -> JSONValue {
        func opt<T>(_ v: T?, _ f: (T) -> JSONValue) -> JSONValue { v.map(f) ?? .null }
        switch Self.fieldOf[key] {
        case .text(let k)?: return .string(self[keyPath: k])
        case .optionalText(let k)?: return opt(self[keyPath: k]) { .string($0) }
        case .int(let k)?: return .int(self[keyPath: k])
        case .optionalInt(let k)?: return opt(self[keyPath: k]) { .int($0) }
        case .number(let k)?: return .double(self[keyPath: k])
        case .optionalNumber(let k)?: return opt(self[keyPath: k]) { .double($0) }
        case .flag(let k)?: return .bool(self[keyPath: k])
        case .texts(let k)?: return JSONValue(self[keyPath: k])
        case .scheduler?: return .string(lrSchedulerType.rawValue)
        case .lora?: return lora.value(forKey: key)
        case .templateKwargs?: return .object(chatTemplateKwargs)
        case nil: return .null
        }
    }

    /// The LoRA configuration in force.
    public func loraSettings() -> LoraConfig { lora }

    /// Precision settings of other trainers: none exists here.
    static let precisionKeys: Set = ["bf16", "fp16", "tf32", "torch_dtype", "dtype", "bf16_full_eval", "fp16_full_eval",
                                     "half_precision_backend", "mixed_precision"]

    /// Why `key` is refused, and what to write instead.
    static func unknownKeyReason(_ key: String, _ value: JSONValue) -> String {
        if let block = value.object {
            let valid = block.keys.filter { fieldOf[$0] != nil || loraKeys.contains($0) }
            return "unknown setting: settings are flat (one `setting: value` per line), not grouped under '\(key)'"
                + (valid.isEmpty ? "" : "; write \(valid.joined(separator: ", ")) at the top level")
        }
        if precisionKeys.contains(key.lowercased()) {
            return "unknown setting: there is no precision setting. The frozen weights keep the checkpoint's dtype on "
                + "the device (F16 and BF16 stay 16-bit, F32 and GGUF blocks become fp32; the memory plan shows it) "
                + "and every product accumulates in fp32"
        }
        // LoraConfig's rule for unknown keys, over the training keys too: a near miss names the key meant.
        return "unknown setting" + NearestName.suggestion(key, among: allKeys)
    }

    /// The known key nearest to `key` (NearestName: a near miss only).
    static func closest(_ key: String, among known: [String]) -> String? { NearestName.closest(key, among: known) }

    // MARK: validation

    /// Checks every value, naming the file or flags that set it. `adapterConfig`: the
    /// adapter's own config, which the LoRA keys given must agree with (compared as values).
    public func validate(adapterConfig: LoraConfig? = nil) throws {
        func fail(_ k: String, _ r: String) -> TrainError { .setting(source: keySources[k] ?? "settings", key: k, reason: r) }
        if model.isEmpty { throw fail("model", "missing: give the base model directory (--model DIR)") }
        if QuantizeMode(rawValue: quantize.lowercased()) == nil {
            throw fail("quantize", "'\(quantize)' is not one of " + QuantizeMode.allCases.map(\.rawValue).joined(separator: ", "))
        }
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
        if lora.inferenceMode { throw fail("inference_mode", Self.inferenceModeReason) }
        if adapter != nil, loraConfig != nil { throw fail("adapter", "give adapter or lora_config, not both") }
        if let theirs = adapterConfig {
            // The adapter fixes the LoRA settings: a key given must agree with its config
            // (a training_config.yaml written by an earlier run lists them all).
            let clash = explicitKeys.intersection(Self.adapterFixedKeys).sorted()
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
        if let p = problemType, !["single_label_classification", "regression", "multi_label_classification"].contains(p) {
            throw fail("problem_type", "'\(p)' is not one of single_label_classification, regression, multi_label_classification")
        }
        if problemType != nil && lora.taskType != "SEQ_CLS" {
            throw fail("problem_type", "a sequence classifier's setting: it needs task_type SEQ_CLS")
        }
        if labelAllTokens && lora.taskType != "TOKEN_CLS" {
            throw fail("label_all_tokens", "a token classifier's setting: it needs task_type TOKEN_CLS")
        }
        let qa = lora.taskType == "QUESTION_ANS"
        for (key, given) in [("doc_stride", docStride != 128), ("max_answer_length", maxAnswerLength != 30),
                             ("n_best_size", nBestSize != 20), ("version_2_with_negative", version2WithNegative)]
            where given && !qa {
            throw fail(key, "an extractive-QA setting: it needs task_type QUESTION_ANS")
        }
        let fe = lora.taskType == "FEATURE_EXTRACTION"
        for (key, given) in [("pooling", pooling != "mean"), ("temperature", temperature != 0.05)] where given && !fe {
            throw fail(key, "a contrastive (embedding) setting: it needs task_type FEATURE_EXTRACTION")
        }
        if !["mean", "last"].contains(pooling) { throw fail("pooling", "'\(pooling)' is not one of mean, last") }
        if !(temperature > 0) || !temperature.isFinite || !Float(1 / temperature).isFinite {
            throw fail("temperature", "must be a positive number, got \(temperature)")
        }
        if docStride < 0 { throw fail("doc_stride", "must be 0 or more, got \(docStride)") }
        if maxAnswerLength < 1 { throw fail("max_answer_length", "must be at least 1, got \(maxAnswerLength)") }
        if nBestSize < 1 { throw fail("n_best_size", "must be at least 1, got \(nBestSize)") }
        if qa && docStride >= maxSeqLen && explicitKeys.contains("doc_stride") {   // the default adapts (TrainingSetup)
            throw fail("doc_stride", "\(docStride) must be below max_seq_len \(maxSeqLen) (the overlap of a context's windows)")
        }
        if metricForBestModel == "eval_exact_match" && !qa {
            throw fail("metric_for_best_model", "eval_exact_match is extractive QA's score: it needs task_type QUESTION_ANS")
        }
        if metricForBestModel == "eval_f1" && fe {
            throw fail("metric_for_best_model", "an embedder scores eval_accuracy (retrieval accuracy@1 over the validation set), not eval_f1")
        }
        if metricForBestModel == "eval_accuracy" && qa {
            throw fail("metric_for_best_model", "extractive QA scores eval_exact_match and eval_f1 (SQuAD's), not eval_accuracy")
        }
        if Self.greaterIsBetter.contains(metricForBestModel) && (lora.taskType == "CAUSAL_LM" || problemType == "regression")
            && !(fe && metricForBestModel == "eval_accuracy") {
            throw fail("metric_for_best_model", "\(metricForBestModel) is a classifier's score: it needs task_type SEQ_CLS, "
                       + "TOKEN_CLS or QUESTION_ANS, and not a regression (use eval_loss, the mean squared error)")
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
}
