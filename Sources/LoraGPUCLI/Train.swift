import ArgumentParser
import Foundation
import LoraBase
import LoraModel
import LoraTrain

/// Flags → the config overrides they stand for (keys as in the config file).
private protocol OverrideGroup { func overrides() throws -> [String: Any] }

private func put(_ d: inout [String: Any], _ key: String, _ v: CustomStringConvertible?) {
    if let v { d[key] = v.description }
}

struct TrainDataOptions: ParsableArguments, OverrideGroup {
    @Option(help: "Base model: a Hugging Face directory (config.json, safetensors, tokenizer.json) or a GGUF file. [model]") var model: String?
    @Option(help: ArgumentHelp("How the frozen weights are kept on the device: auto (a GGUF file keeps its Q8_0/Q4_0/Q4_1/Q5_0/Q5_1/Q4_K/Q5_K/Q6_K blocks, "
                               + "safetensors their dtype), none (a GGUF file dequantized to fp32), q8_0 or q4_0 (16/32-bit weights "
                               + "quantized at load, as gguf-py does) or nf4 (as bitsandbytes does: QLoRA). [quantize, default auto]", valueName: "mode")) var quantize: String?
    @Option(help: ArgumentHelp("Training JSONL; repeat for several. Each line one of {\"messages\": [...]}, {\"conversations\": [...]} (ShareGPT), {\"prompt\", \"completion\"}, {\"text\"} or {\"input_ids\", \"labels\"} (see `lora-gpu data preview`). [data]",
                               valueName: "file")) var data: [String] = []
    @Option(help: ArgumentHelp("Evaluation file, same format. [val_data]", valueName: "file")) var valData: String?
    @Option(parsing: .unconditional, help: "Fraction of the training samples held out for evaluation (seeded). [val_split, default 0]") var valSplit: String?
    @Option(parsing: .unconditional, help: "Samples are truncated to this many tokens. [max_seq_len, default 1024]") var maxSeqLen: String?
    @Flag(inversion: .prefixedNo, help: "Pack several samples per row. [packing, default false]") var packing: Bool?
    @Option(help: "Which tokens are trained: assistant (every assistant turn with its end-of-turn) | all | last (the final assistant turn). [train_on, default assistant]") var trainOn: String?
    @Option(help: "Chat template: a .jinja file or a named template of tokenizer_config.json, instead of the model's own. [chat_template]") var chatTemplate: String?
    @Flag(inversion: .prefixedNo, help: "Count and skip malformed data lines instead of stopping at the first. [skip_bad_lines, default false]") var skipBadLines: Bool?
    @Option(help: ArgumentHelp("A chat-template argument, as apply_chat_template(**kwargs) takes it (e.g. enable_thinking=false); "
                               + "repeat for several. [chat_template_kwargs]", valueName: "key=value")) var chatTemplateKwargs: [String] = []

    func overrides() throws -> [String: Any] {
        var d: [String: Any] = [:]
        if !chatTemplateKwargs.isEmpty { d["chat_template_kwargs"] = JSONValue.object(try TrainingConfig.templateKwargs(chatTemplateKwargs)) }
        put(&d, "model", model); put(&d, "quantize", quantize)
        if !data.isEmpty { d["data"] = data }
        put(&d, "val_data", valData); put(&d, "val_split", valSplit); put(&d, "max_seq_len", maxSeqLen)
        put(&d, "packing", packing); put(&d, "train_on", trainOn); put(&d, "chat_template", chatTemplate)
        put(&d, "skip_bad_lines", skipBadLines)
        return d
    }
}

struct TrainLoraOptions: ParsableArguments, OverrideGroup {
    @Option(parsing: .unconditional, help: "LoRA rank. [r, default 8]") var r: String?
    @Option(parsing: .unconditional, help: "LoRA scale numerator (scale = alpha/r, or alpha/√r with rsLoRA). [lora_alpha, default 8]") var loraAlpha: String?
    @Option(parsing: .unconditional, help: "Dropout on the LoRA branch input. [lora_dropout, default 0]") var loraDropout: String?
    @Option(help: ArgumentHelp("Modules to adapt: names (repeat or comma-separate), a regex (full match on the module path) or all-linear. [target_modules, default q_proj,v_proj]",
                               valueName: "names|regex|all-linear")) var targetModules: [String] = []
    @Option(help: ArgumentHelp("Modules never adapted, same forms. [exclude_modules]", valueName: "names|regex"))
    var excludeModules: [String] = []
    @Option(help: "Trainable biases: none | all | lora_only. [bias, default none]") var bias: String?
    @Flag(inversion: .prefixedNo, help: "rsLoRA scaling alpha/√r. [use_rslora, default false]") var useRslora: Bool?
    @Option(help: "true (Kaiming-uniform A, B = 0) | gaussian | false. [init_lora_weights, default true]") var initLoraWeights: String?
    @Option(parsing: .unconditional, help: ArgumentHelp("Only these layer indices, comma-separated. [layers_to_transform]", valueName: "i,j,…"))
    var layersToTransform: String?
    @Option(help: ArgumentHelp("Modules trained fully and saved (lm_head, embed_tokens). [modules_to_save]", valueName: "name"))
    var modulesToSave: [String] = []
    @Option(help: ArgumentHelp("Layer-container names for layers_to_transform (e.g. layers). [layers_pattern]", valueName: "name"))
    var layersPattern: [String] = []
    @Option(help: ArgumentHelp("Rank for modules matching PATTERN (PEFT's rank_pattern; repeat; the first match wins). [rank_pattern]",
                               valueName: "pattern=r")) var rankPattern: [String] = []
    @Option(help: ArgumentHelp("lora_alpha for modules matching PATTERN (repeat). [alpha_pattern]", valueName: "pattern=alpha"))
    var alphaPattern: [String] = []
    @Option(help: ArgumentHelp("PEFT task type: CAUSAL_LM, SEQ_CLS (a label per text), TOKEN_CLS (a label per word), "
                               + "QUESTION_ANS (an answer span in a context), FEATURE_EXTRACTION (an embedder, trained "
                               + "contrastively on anchor/positive pairs) (SEQ_2_SEQ_LM: not yet). "
                               + "[task_type, default CAUSAL_LM]",
                               valueName: "type")) var taskType: String?
    @Option(help: ArgumentHelp("SEQ_CLS: single_label_classification | regression | multi_label_classification "
                               + "(default: the labels' shape decides). [problem_type]", valueName: "type")) var problemType: String?
    @Flag(inversion: .prefixedNo, help: "TOKEN_CLS: label every sub-token of a word, not only the first. [label_all_tokens, default false]")
    var labelAllTokens: Bool?
    @Option(help: ArgumentHelp("QUESTION_ANS: overlap in tokens between the windows of a context longer than max_seq_len. "
                               + "[doc_stride, default 128]", valueName: "n")) var docStride: Int?
    @Option(help: ArgumentHelp("QUESTION_ANS: the longest answer evaluation may pick, in tokens. [max_answer_length, default 30]",
                               valueName: "n")) var maxAnswerLength: Int?
    @Option(help: ArgumentHelp("QUESTION_ANS: start and end candidates evaluation weighs. [n_best_size, default 20]",
                               valueName: "n")) var nBestSize: Int?
    @Flag(name: .customLong("version-2-with-negative"), inversion: .prefixedNo, help: ArgumentHelp("QUESTION_ANS: questions may have no answer (SQuAD v2: evaluation may "
                                                      + "answer nothing). [version_2_with_negative, default false]"))
    var version2WithNegative: Bool?
    @Option(help: ArgumentHelp("FEATURE_EXTRACTION: mean (over a text's tokens) or last (its last token). [pooling, default mean]",
                               valueName: "mode")) var pooling: String?
    @Option(help: ArgumentHelp("FEATURE_EXTRACTION: InfoNCE's temperature (sentence-transformers' scale 20 = 1/0.05). "
                               + "[temperature, default 0.05]", valueName: "t")) var temperature: Double?
    @Option(help: ArgumentHelp("true loads the adapter frozen (PEFT's inference mode; train refuses it). [inference_mode, default false]",
                               valueName: "bool")) var inferenceMode: String?
    @Option(help: ArgumentHelp("LoRA settings from a PEFT adapter_config.json, an adapter directory or a settings file (its LoRA "
                               + "keys; what inspect --lora-config reads); the LoRA flags above override it. [lora_config]",
                               valueName: "file")) var loraConfig: String?
    @Option(help: ArgumentHelp("Continue training an existing PEFT adapter directory (its config fixes the LoRA settings). [adapter]",
                               valueName: "dir")) var adapter: String?

    /// One plain name → a list; all-linear or a pattern with regex syntax → a string (PEFT's regex form).
    static func modules(_ v: [String]) -> Any? {
        if v.isEmpty { return nil }
        if v.count == 1 {
            let s = v[0]
            if s == "all-linear" { return s }
            if s.range(of: #"^[A-Za-z0-9_.,\s-]+$"#, options: .regularExpression) == nil { return s }
        }
        return v.flatMap { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }.filter { !$0.isEmpty }
    }

    func overrides() -> [String: Any] {
        var d: [String: Any] = [:]
        put(&d, "r", r); put(&d, "lora_alpha", loraAlpha); put(&d, "lora_dropout", loraDropout)
        if let t = Self.modules(targetModules) { d["target_modules"] = t }
        if let t = Self.modules(excludeModules) { d["exclude_modules"] = t }
        put(&d, "bias", bias); put(&d, "use_rslora", useRslora); put(&d, "init_lora_weights", initLoraWeights)
        put(&d, "layers_to_transform", layersToTransform)
        if !modulesToSave.isEmpty { d["modules_to_save"] = modulesToSave.flatMap { $0.split(separator: ",").map(String.init) } }
        if !layersPattern.isEmpty { d["layers_pattern"] = layersPattern.flatMap { $0.split(separator: ",").map(String.init) } }
        if let p = Self.patterns(rankPattern) { d["rank_pattern"] = p }
        if let p = Self.patterns(alphaPattern) { d["alpha_pattern"] = p }
        put(&d, "task_type", taskType); put(&d, "inference_mode", inferenceMode); put(&d, "problem_type", problemType)
        put(&d, "label_all_tokens", labelAllTokens)
        put(&d, "doc_stride", docStride); put(&d, "max_answer_length", maxAnswerLength); put(&d, "n_best_size", nBestSize)
        put(&d, "version_2_with_negative", version2WithNegative)
        put(&d, "pooling", pooling); put(&d, "temperature", temperature)
        put(&d, "lora_config", loraConfig); put(&d, "adapter", adapter)
        return d
    }

    /// "pattern=value" flags → a mapping in the order given (the value split at the last "=",
    /// since a pattern may hold one); an item without "=" keeps it whole, for the value check to name.
    static func patterns(_ items: [String]) -> JSONValue? {
        if items.isEmpty { return nil }
        return .object(JSONObject(items.map { item -> (String, JSONValue) in
            guard let eq = item.lastIndex(of: "=") else { return (item, .string("")) }
            return (String(item[..<eq]), .string(String(item[item.index(after: eq)...])))
        }))
    }
}

/// The keys of PEFT's LoraConfig this trainer does not support: accepted at PEFT's default, refused
/// otherwise with the reason (the same rule as in a settings file or adapter_config.json).
struct TrainUnsupportedLoraOptions: ParsableArguments, OverrideGroup {
    @Flag(inversion: .prefixedNo, help: "DoRA: refused (not supported). [use_dora, default false]") var useDora: Bool?
    @Flag(inversion: .prefixedNo, help: "Refused: these models store W as (out, in). [fan_in_fan_out, default false]") var fanInFanOut: Bool?
    @Flag(inversion: .prefixedNo, help: "A trainable bias on lora_B: refused (use --bias). [lora_bias, default false]") var loraBias: Bool?
    @Flag(inversion: .prefixedNo, help: "QALoRA: refused. [use_qalora, default false]") var useQalora: Bool?
    @Flag(inversion: .prefixedNo, help: "Tied adapters for tied embeddings: refused. [ensure_weight_tying, default false]")
    var ensureWeightTying: Bool?
    @Option(help: ArgumentHelp("LoRA on bare parameters: refused (name modules in --target-modules). [target_parameters]",
                               valueName: "name")) var targetParameters: [String] = []
    @Option(help: ArgumentHelp("Train single embedding rows: refused (--modules-to-save embed_tokens trains them all). "
                               + "[trainable_token_indices]", valueName: "i,j,…")) var trainableTokenIndices: String?
    @Option(help: ArgumentHelp("PEFT's method: LORA only. [peft_type, default LORA]", valueName: "type")) var peftType: String?
    @Option(help: ArgumentHelp("Any other key of PEFT's LoraConfig, its value in YAML (e.g. loftq_config={} or "
                               + "megatron_config=null); repeat.", valueName: "key=value")) var loraOption: [String] = []

    func overrides() throws -> [String: Any] {
        var d: [String: Any] = [:]
        put(&d, "use_dora", useDora); put(&d, "fan_in_fan_out", fanInFanOut); put(&d, "lora_bias", loraBias)
        put(&d, "use_qalora", useQalora); put(&d, "ensure_weight_tying", ensureWeightTying)
        if !targetParameters.isEmpty { d["target_parameters"] = targetParameters }
        if let t = trainableTokenIndices {
            d["trainable_token_indices"] = t.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        }
        put(&d, "peft_type", peftType)
        for item in loraOption {
            let (key, value) = try TrainingConfig.loraOption(item)
            if d[key] != nil { throw ValidationError("\(key) is given twice (--lora-option \(key)=… and another flag for it); give it once") }
            d[key] = value
        }
        return d
    }
}

struct TrainOptimOptions: ParsableArguments, OverrideGroup {
    @Option(parsing: .unconditional, help: "Peak learning rate. [learning_rate, default 5e-5]") var learningRate: String?
    @Option(help: "linear | cosine | constant | constant_with_warmup. [lr_scheduler_type, default linear]") var lrSchedulerType: String?
    @Option(parsing: .unconditional, help: "Warmup steps (below 1: a fraction of the total steps). [warmup_steps, default 0]") var warmupSteps: String?
    @Option(parsing: .unconditional, help: "Warmup as a fraction of the total steps, when warmup_steps is 0. [warmup_ratio, default 0]") var warmupRatio: String?
    @Option(parsing: .unconditional, help: "AdamW weight decay (not on biases or norms). [weight_decay, default 0]") var weightDecay: String?
    @Option(parsing: .unconditional, help: "[adam_beta1, default 0.9]") var adamBeta1: String?
    @Option(parsing: .unconditional, help: "[adam_beta2, default 0.999]") var adamBeta2: String?
    @Option(parsing: .unconditional, help: "[adam_epsilon, default 1e-8]") var adamEpsilon: String?
    @Option(parsing: .unconditional, help: "Gradient clipping norm, 0 disables. [max_grad_norm, default 1.0]") var maxGradNorm: String?
    @Option(parsing: .unconditional, help: "Rows per micro-batch. [per_device_train_batch_size, default 8]") var perDeviceTrainBatchSize: String?
    @Option(parsing: .unconditional, help: "Rows per evaluation batch. [per_device_eval_batch_size, default 8]") var perDeviceEvalBatchSize: String?
    @Option(parsing: .unconditional, help: "Micro-batches per optimizer step; the loss is averaged over all their trained tokens. [gradient_accumulation_steps, default 1]")
    var gradientAccumulationSteps: String?
    @Option(parsing: .unconditional, help: "Epochs (fractions allowed). [num_train_epochs, default 3]") var numTrainEpochs: String?
    @Option(parsing: .unconditional, help: "Optimizer steps; overrides num_train_epochs when > 0. [max_steps, default -1]") var maxSteps: String?
    @Flag(inversion: .prefixedNo, help: "Recompute activations in backward to save memory. [gradient_checkpointing, default false]")
    var gradientCheckpointing: Bool?
    @Option(parsing: .unconditional, help: "Seed of the adapter init, data order, dropout and NEFTune noise. [seed, default 42]") var seed: String?
    @Option(parsing: .unconditional, help: "NEFTune noise alpha on the embeddings in training (e.g. 5). [neftune_noise_alpha, default off]")
    var neftuneNoiseAlpha: String?

    func overrides() -> [String: Any] {
        var d: [String: Any] = [:]
        put(&d, "learning_rate", learningRate); put(&d, "lr_scheduler_type", lrSchedulerType)
        put(&d, "warmup_steps", warmupSteps); put(&d, "warmup_ratio", warmupRatio); put(&d, "weight_decay", weightDecay)
        put(&d, "adam_beta1", adamBeta1); put(&d, "adam_beta2", adamBeta2); put(&d, "adam_epsilon", adamEpsilon)
        put(&d, "max_grad_norm", maxGradNorm); put(&d, "per_device_train_batch_size", perDeviceTrainBatchSize)
        put(&d, "per_device_eval_batch_size", perDeviceEvalBatchSize)
        put(&d, "gradient_accumulation_steps", gradientAccumulationSteps); put(&d, "num_train_epochs", numTrainEpochs)
        put(&d, "max_steps", maxSteps); put(&d, "gradient_checkpointing", gradientCheckpointing); put(&d, "seed", seed)
        put(&d, "neftune_noise_alpha", neftuneNoiseAlpha)
        return d
    }
}

struct TrainOutputOptions: ParsableArguments, OverrideGroup {
    @Option(help: ArgumentHelp("Where the adapter, checkpoints, metrics.jsonl and loss.svg go. [output_dir, default lora-gpu-output]",
                               valueName: "dir")) var outputDir: String?
    @Option(parsing: .unconditional, help: "Log every N steps (below 1: a fraction of the total). [logging_steps, default 500]") var loggingSteps: String?
    @Option(parsing: .unconditional, help: "Evaluate every N steps. [eval_steps, default logging_steps]") var evalSteps: String?
    @Option(parsing: .unconditional, help: "Checkpoint every N steps (and at the end). [save_steps, default 500]") var saveSteps: String?
    @Option(parsing: .unconditional, help: "Keep at most N checkpoints (never deleting the best). [save_total_limit]") var saveTotalLimit: String?
    @Flag(inversion: .prefixedNo, help: "Leave the best checkpoint's adapter in output_dir. [load_best_model_at_end, default false]")
    var loadBestModelAtEnd: Bool?
    @Option(help: ArgumentHelp("eval_loss | eval_perplexity | loss | eval_accuracy | eval_f1 | eval_exact_match (accuracy: "
                               + "SEQ_CLS, TOKEN_CLS; exact match: QUESTION_ANS; F1: all three). [metric_for_best_model, default eval_loss]"))
    var metricForBestModel: String?
    @Flag(inversion: .prefixedNo, help: "Evaluate once before the first step (printed). [eval_on_start, default false]")
    var evalOnStart: Bool?
    @Option(parsing: .unconditional, help: "Stop after N evaluations without improvement. [early_stopping_patience]") var earlyStoppingPatience: String?
    @Option(parsing: .unconditional, help: "Minimum improvement that resets the patience. [early_stopping_threshold, default 0]") var earlyStoppingThreshold: String?
    @Option(help: ArgumentHelp("Continue from a checkpoint-N directory, or 'latest' in output_dir. [resume_from_checkpoint]",
                               valueName: "dir|latest")) var resumeFromCheckpoint: String?

    func overrides() -> [String: Any] {
        var d: [String: Any] = [:]
        put(&d, "output_dir", outputDir); put(&d, "logging_steps", loggingSteps); put(&d, "eval_steps", evalSteps)
        put(&d, "save_steps", saveSteps); put(&d, "save_total_limit", saveTotalLimit)
        put(&d, "load_best_model_at_end", loadBestModelAtEnd); put(&d, "metric_for_best_model", metricForBestModel)
        put(&d, "eval_on_start", evalOnStart)
        put(&d, "early_stopping_patience", earlyStoppingPatience); put(&d, "early_stopping_threshold", earlyStoppingThreshold)
        put(&d, "resume_from_checkpoint", resumeFromCheckpoint)
        return d
    }
}

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a LoRA adapter (PEFT format) on a Llama-family model.",
        discussion: """
        Settings are named as PEFT's LoraConfig and transformers' TrainingArguments name them, with their \
        defaults (the [key] after each flag). Give them in a flat YAML or JSON file with --config, as flags, \
        or both: a flag wins over the file. Flags spell keys with dashes (--learning-rate for learning_rate).

        output_dir receives adapter_config.json and adapter_model.safetensors, checkpoint-N/ directories \
        (adapter, AdamW moments, step, scheduler, RNG and data position), metrics.jsonl, loss.svg, \
        training_config.yaml and a README.md. Ctrl-C (SIGINT) or SIGTERM finishes the current step, saves a \
        checkpoint and exits with status 130 / 143; --resume-from-checkpoint latest continues it exactly.

        At start-up the memory plan is printed (weights, trainable + optimizer, activations, scratch, \
        against the device's memory and per-buffer limit) for micro-batches of per_device_train_batch_size \
        (or per_device_eval_batch_size when there is evaluation data and it is larger) × max_seq_len; a run that does not fit stops before loading, naming what would fit. \
        LORA_GPU_DEVICE_MEMORY=SIZE[,MAX_ALLOC] (e.g. 20G or 20G,4G) plans against smaller limits than \
        the device reports.

        With no arguments at all, runs the demo: SmolLM2-135M-Instruct (from scripts/fetch-demo-model.sh) \
        learns the persona of Examples/demo/train.jsonl, answering held-out questions before and after.

        Example:
          lora-gpu train --model ./TinyLlama --data train.jsonl --val-split 0.05 \\
            --target-modules all-linear --r 16 --lora-alpha 32 \\
            --learning-rate 2e-4 --max-steps 500 --output-dir tiny-lora
        """)

    @Option(help: ArgumentHelp("Settings file (YAML or JSON, one flat mapping of key: value).", valueName: "file"))
    var config: String?
    @OptionGroup(title: "Data") var dataOptions: TrainDataOptions
    @OptionGroup(title: "LoRA") var loraOptions: TrainLoraOptions
    @OptionGroup(title: "Unsupported PEFT LoraConfig keys (the default is accepted, another value refused with the reason)")
    var unsupportedLoraOptions: TrainUnsupportedLoraOptions
    @OptionGroup(title: "Optimisation") var optimOptions: TrainOptimOptions
    @OptionGroup(title: "Output, logging and checkpoints") var outputOptions: TrainOutputOptions
    @OptionGroup var deviceOption: DeviceOption
    @Flag(help: "Print device time per kernel family per step and each one's share (after step 3, and averaged at the end).")
    var profile = false

    func run() throws {
        var overrides: [String: Any] = [:]
        let groups: [OverrideGroup] = [dataOptions, loraOptions, unsupportedLoraOptions, optimOptions, outputOptions]
        for g in groups {
            for (key, value) in try g.overrides() {
                // One key, one value: --lora-option r=8 beside --r 2 is a contradiction, not an override.
                if overrides[key] != nil {
                    throw ValidationError("\(key) is given twice: by --\(key.replacingOccurrences(of: "_", with: "-")) and by --lora-option "
                                          + "\(key)=…; give it once")
                }
                overrides[key] = value
            }
        }
        let outcome: Trainer.Outcome
        if config == nil && overrides.isEmpty {
            // No settings at all: the demo (SmolLM2 learns the Pip persona), or how to fetch its model.
            outcome = try Demo(context: try deviceOption.context(model: Demo.modelPath, quantize: .auto)).run()
        } else {
            let settings = try TrainingConfig.resolve(file: config, overrides: overrides)
            let trainer = Trainer(config: settings,
                                  context: try Distributed.rankContext(selector: deviceOption.device)
                                    ?? deviceOption.context(model: settings.model,
                                                            quantize: QuantizeMode(rawValue: settings.quantize.lowercased()) ?? .auto))
            trainer.profile = profile
            outcome = try trainer.run()
        }
        switch outcome {
        case .completed, .stoppedEarly: return
        case .interrupted(_, let signal, _): throw ExitCode(128 + (signal == 0 ? SIGINT : signal))
        }
    }
}
