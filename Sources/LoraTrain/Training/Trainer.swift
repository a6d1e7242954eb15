import Foundation
import LoraModel
import LoraOps
import LoraText
import OpenCLRuntime

/// The training loop of `lora-gpu train`: data → batches → accumulated
/// optimizer steps on the device, with logging, evaluation, checkpoints,
/// exact resume and a clean stop on SIGINT / SIGTERM.
public final class Trainer {
    public enum Outcome: Equatable, Sendable {
        /// Every step done; the final adapter is in output_dir.
        case completed(step: Int)
        /// early_stopping_patience evaluations without improvement.
        case stoppedEarly(step: Int)
        /// A signal (or requestStop) stopped the run after `step`; `checkpoint` holds it.
        case interrupted(step: Int, signal: Int32, checkpoint: String)
    }

    public let config: TrainingConfig
    public let ctx: ComputeContext
    public var progress: ProgressPrinter
    /// Called after every optimizer step with the global step (tests, tools).
    public var afterStep: ((Int) -> Void)?
    /// Print device time per kernel family per step (`--profile`; see StepProfiler).
    public var profile = false
    private(set) var stopRequested = false

    public init(config: TrainingConfig, context: ComputeContext, progress: ProgressPrinter = .standard) {
        self.config = config
        self.ctx = context
        self.progress = progress
    }

    /// Stops after the current step with a checkpoint, as SIGINT does.
    public func requestStop() { stopRequested = true }

    var outputDir: String { config.outputDir }
    var metricsPath: String { outputDir + "/metrics.jsonl" }

    // MARK: the run

    /// Setup (settings, model, data, plan: everything that can fail before a step),
    /// then the loop (step / evaluate / log / checkpoint), then the outputs.
    public func run() throws -> Outcome {
        let setup = try TrainingSetup(trainer: self)
        let loop = try TrainingLoop(setup: setup, trainer: self)
        StopSignals.install()
        defer { StopSignals.uninstall() }
        return try loop.run()
    }

    // MARK: the memory plan

    /// The plan of the largest micro-batch the run will meet: per_device_train_batch_size
    /// (or the eval batch size when there is evaluation data and it is larger) × `rowLength`, the
    /// widest row the run will make (TrainingSetup.plannedRowLength: the longest sample, or
    /// max_seq_len for packed, QA and contrastive rows; max_seq_len when nil), and the device's limits.
    static func memoryPlan(_ c: TrainingConfig, model: ModelConfig, lora: LoraConfig, checkpoint: CheckpointSource,
                           device: Device, kernels: KernelConfig? = nil, rowLength: Int? = nil) throws -> (plan: MemoryPlan, limits: MemoryLimits) {
        let evaluates = c.valData != nil || c.valSplit > 0
        let samples = evaluates ? max(c.perDeviceTrainBatchSize, c.perDeviceEvalBatchSize) : c.perDeviceTrainBatchSize
        // A contrastive batch of B samples runs up to 3B rows: anchors, positives, negatives.
        let rowsPerSample = c.lora.taskType == "FEATURE_EXTRACTION" ? 3 : 1
        let seq = min(rowLength ?? c.maxSeqLen, c.maxSeqLen)
        // The RoPE tables cover the positions below the widest row (LlamaLoRAModel's ropePositions, as TrainingSetup makes it).
        var shape = MemoryPlan.Shape(batch: samples * rowsPerSample, seq: seq, gradientCheckpointing: c.gradientCheckpointing,
                                     ropePositions: rowLength)
        shape.stagedFormats = kernels?.quantStaged ?? []
        let plan = try MemoryPlan.make(config: model, adapterPlan: try AdapterPlan(config: model, lora: lora), checkpoint: checkpoint,
                                       shape: shape, alignmentBytes: device.baseAddressAlignmentBytes,
                                       bufferLimitBytes: try LlamaLoRAModel.bufferLimit(for: device))
        return (plan, try MemoryLimits(device: device))
    }

    /// Throws one error naming the numbers when `plan` does not fit `limits`:
    /// the total past the device memory and/or the largest buffer past the
    /// per-buffer limit, with the settings that would fit (a smaller batch, a
    /// shorter max_seq_len, gradient checkpointing), each checked by planning it.
    static func checkMemory(_ plan: MemoryPlan, limits: MemoryLimits, config c: TrainingConfig) throws {
        func fits(_ p: MemoryPlan) -> Bool { p.problems(limits: limits).fit }
        let problems = plan.problems(limits: limits)
        guard !problems.fit else { return }
        let s = plan.shape, F = MemoryPlan.format
        // A contrastive sample is three rows (anchor, positive, negative): settings count samples.
        let rows = c.lora.taskType == "FEATURE_EXTRACTION" ? 3 : 1
        let batchKey = s.batch / rows > c.perDeviceTrainBatchSize ? "per_device_eval_batch_size" : "per_device_train_batch_size"
        var m = "memory plan: the model with micro-batches of \(batchKey) \(s.batch / rows)"
            + (rows > 1 ? " (\(s.batch) rows: anchors, positives, negatives)" : "")
            + (s.seq < c.maxSeqLen ? " × \(s.seq) tokens (the data's longest row; max_seq_len \(c.maxSeqLen))" : " × max_seq_len \(s.seq) tokens")
            + " does not fit "
            + "\(limits.deviceName):"
        if problems.total {
            m += " it needs \(F(plan.totalBytes)) (weights \(F(plan.weightBytes)), trainable + optimizer \(F(plan.trainableBytes)), "
                + "activations \(F(plan.activationBytes)), scratch \(F(plan.scratchBytes))), the device has \(F(limits.globalBytes)) "
                + "(\(limits.globalSource))"
        }
        if let b = problems.buffer {
            m += (problems.total ? "; and" : "") + " the buffer '\(b.name)' needs \(F(b.bytes)), past the device's largest single "
                + "allocation of \(F(limits.maxAllocationBytes)) (\(limits.allocationSource))"
        }
        if let b = problems.elements, b != problems.buffer {
            m += (problems.total || problems.buffer != nil ? "; and" : "") + " the buffer '\(b.name)' has \(b.elements) elements, "
                + "past the kernels' 32-bit indices (\(Int32.max))"
        }
        m += ". Nothing was loaded or written."
        // What would fit, each planned: the largest batch at this length, the longest length at this batch, checkpointing.
        func largest(_ upTo: Int, _ make: (Int) -> MemoryPlan) -> Int? {
            guard upTo >= 1, fits(make(1)) else { return nil }
            var (lo, hi) = (1, upTo)            // fits(lo), and nothing above hi is wanted
            while lo < hi {
                let mid = lo + (hi - lo + 1) / 2
                if fits(make(mid)) { lo = mid } else { hi = mid - 1 }
            }
            return lo
        }
        func shaped(_ f: (inout MemoryPlan.Shape) -> Void) -> MemoryPlan { var t = s; f(&t); return plan.with(shape: t) }
        var options: [String] = []
        if let b = largest(s.batch / rows - 1, { b in shaped { $0.batch = b * rows } }) {
            options.append("\(batchKey) \(b)" + (batchKey == "per_device_train_batch_size"
                ? " (with gradient_accumulation_steps to keep the effective batch)" : ""))
        }
        if let t = largest(s.seq - 1, { t in shaped { $0.seq = t } }), t >= 2 { options.append("max_seq_len \(t)") }
        if !s.gradientCheckpointing && fits(shaped { $0.gradientCheckpointing = true }) {
            options.append("gradient_checkpointing: true (keeps one layer's activations and recomputes the others in backward)")
        }
        // Smaller frozen weights: a GGUF file's own blocks kept (after --quantize none), else quantized at load.
        let current = QuantizeMode(rawValue: c.quantize.lowercased()) ?? .auto
        for mode in [QuantizeMode.auto, .q8_0, .nf4] where mode != current {
            let q = plan.with(quantize: mode)
            guard q.weightBytes < plan.weightBytes, fits(q) else { continue }
            options.append("quantize: \(mode.rawValue) (" + (mode == .auto ? "the GGUF file's blocks kept" : "frozen weights quantized at load")
                           + ": weights \(F(q.weightBytes)) instead of \(F(plan.weightBytes)))")
            break
        }
        if !options.isEmpty {
            m += " These fit: " + options.joined(separator: "; or ") + "."
        } else if fits(shaped { $0.batch = 1; $0.seq = 2; $0.gradientCheckpointing = true }) {
            m += " Lower \(batchKey) and max_seq_len together" + (s.gradientCheckpointing ? "" : ", and set gradient_checkpointing: true") + "."
        } else if let b = problems.buffer ?? problems.elements, b.category == .weights {
            // Frozen weights past the limit are kept in blocks of rows; this one's smallest block is past it too.
            m += " Not even the smallest block of rows this frozen tensor can be kept in fits one buffer on this device."
        } else if let b = problems.buffer, b.aloneTensor != nil {
            m += " A fully trained copy (modules_to_save) is kept whole in one buffer: adapt that module with LoRA instead "
                + "(target_modules), or use a device whose CL_DEVICE_MAX_MEM_ALLOC_SIZE holds it."
        } else {
            m += " The weights and the adapter alone (\(F(plan.weightBytes + plan.trainableBytes))) leave no room for a batch on this device."
        }
        throw MemoryPlanError(message: m)
    }

    // MARK: outputs

    static let tokenizerFiles = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                                 "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja", "chat_template.json"]

    /// Keys whose value differs between a checkpoint's training_config.yaml and `now` (resume_from_checkpoint aside).
    static func changedSettings(checkpoint: String, now: String) -> [String] {
        guard let then = try? String(contentsOfFile: checkpoint + "/training_config.yaml", encoding: .utf8) else { return [] }
        func pairs(_ y: String) -> [String: Substring] {
            var d: [String: Substring] = [:]
            for line in y.split(separator: "\n") {
                guard let i = line.firstIndex(of: ":") else { continue }
                d[String(line[..<i])] = line[line.index(after: i)...]
            }
            return d
        }
        // A key the checkpoint's file lacks (written before the key existed) held its default.
        let a = pairs(then), b = pairs(now), defaults = pairs(TrainingConfig().yaml())
        return TrainingConfig.keys.filter { $0 != "resume_from_checkpoint" && (a[$0] ?? defaults[$0]) != b[$0] }
    }

    /// metrics.jsonl's records with their lines as written.
    func readRecords() -> [(line: Substring, record: MetricsRecord)] {
        guard let text = try? String(contentsOfFile: metricsPath, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { l in MetricsRecord(json: String(l)).map { (l, $0) } }
    }

    func plot(_ records: [MetricsRecord]) -> String {
        LossPlot.svg(train: records.map { ($0.step, $0.loss) },
                     eval: records.compactMap { r in r.evalLoss.map { (r.step, $0) } },
                     title: "lora-gpu train — " + URL(fileURLWithPath: config.model).lastPathComponent)
    }

    func readme(state: TrainerState, records: [MetricsRecord], total: Int, trainCount: Int, valCount: Int,
                model: ModelConfig? = nil) -> String {
        let c = config
        let lastTrain = records.last.map { String(format: "%.4f", $0.loss) } ?? "n/a"
        let lastEval = records.last(where: { $0.evalLoss != nil })?.evalLoss.map { String(format: "%.4f", $0) }
        var s = """
        # LoRA adapter

        Trained with `lora-gpu train` (PEFT format: load with `PeftModel.from_pretrained(base, "\(c.outputDir)")`).

        - Base model: `\(c.model)`
        - Training data: \(c.data.map { "`\($0)`" }.joined(separator: ", ")) (\(trainCount) samples)
        """
        if valCount > 0 { s += "\n- Evaluation data: " + (c.valData.map { "`\($0)`" } ?? "val_split \(c.valSplit)") + " (\(valCount) samples)" }
        s += """


        ## Settings

        | setting | value |
        |---|---|
        | r / lora_alpha / lora_dropout | \(c.r) / \(c.loraAlpha) / \(c.loraDropout) |
        | learning_rate / lr_scheduler_type | \(c.learningRate) / \(c.lrSchedulerType.rawValue) |
        | steps / warmup | \(state.globalStep) of \(total) / \(state.scheduler.warmupSteps) |
        | batch × accumulation | \(c.perDeviceTrainBatchSize) × \(c.gradientAccumulationSteps) |
        | max_seq_len / packing | \(c.maxSeqLen) / \(c.packing) |
        | weight_decay / max_grad_norm | \(c.weightDecay) / \(c.maxGradNorm) |
        | seed | \(c.seed) |

        Every setting: `training_config.yaml`. Per-step metrics: `metrics.jsonl`, plotted in `loss.svg`.

        ## Results

        - Final train loss: \(lastTrain)

        """
        if let lastEval { s += "- Final eval loss: \(lastEval)\n" }
        if let r = records.last(where: { $0.evalExactMatch != nil }), let m = r.evalExactMatch {
            s += "- Final eval exact match: \(String(format: "%.2f", m))" + (r.evalF1.map { ", F1 \(String(format: "%.2f", $0))" } ?? "")
                + " (SQuAD's, percent)\n"
        }
        if let r = records.last(where: { $0.evalAccuracy != nil }), let a = r.evalAccuracy {
            s += "- Final eval accuracy: \(String(format: "%.4f", a))" + (r.evalF1.map { ", F1 \(String(format: "%.4f", $0))" } ?? "") + "\n"
        }
        if c.loadBestModelAtEnd, let b = state.bestCheckpoint {
            s += "- Best \(c.metricForBestModel): \(String(format: "%.4f", c.shownMetric(state.bestMetric))) at step \(state.bestStep ?? 0) (`\(b)`); this adapter is that checkpoint's\n"
        }
        if let m = model, let cls = m.task.classifier {
            s += "\n" + cls.readmeSection(architecture: m.architecture, padTokenID: m.padTokenID, tokens: m.task.tokenClassifier != nil)
        }
        if let m = model, m.task.kind == .featureExtraction {
            s += """

            ## Embedder (task_type FEATURE_EXTRACTION)

            The base's trunk, no head (`\(m.architecture.className(for: m.task))`, transformers' `AutoModel`), trained
            contrastively as sentence-transformers' MultipleNegativesRankingLoss does: each text's `last_hidden_state`
            pooled (`\(c.pooling)`) and L2-normalised, cosine similarities scaled by 1/temperature (\(1 / c.temperature)),
            cross-entropy of each anchor towards its own positive among every positive (and negative) of its batch.
            `lora-gpu embed --pooling \(c.pooling) --normalize` with this adapter gives the vectors.

            ```python
            from peft import AutoPeftModelForFeatureExtraction
            model = AutoPeftModelForFeatureExtraction.from_pretrained("ADAPTER_DIR")
            ```

            """
        }
        if let m = model, m.task.kind == .questionAnswering {
            s += """

            ## Extractive question answering (task_type QUESTION_ANS)

            `\(m.architecture.className(for: m.task))`: `qa_outputs` (hidden → 2, with its bias) gives every token a start and an
            end logit; it is trained in full and saved under `modules_to_save`. Questions and contexts were windowed as
            transformers' QA recipe does (max_seq_len \(c.maxSeqLen), doc_stride \(c.docStride)); answers are picked as its
            post-processing does (max_answer_length \(c.maxAnswerLength), n_best_size \(c.nBestSize),
            version_2_with_negative \(c.version2WithNegative)): `lora-gpu predict` with this adapter does the same.

            ```python
            from peft import AutoPeftModelForQuestionAnswering
            model = AutoPeftModelForQuestionAnswering.from_pretrained("ADAPTER_DIR")
            ```

            A causal-LM base is the exception (transformers names Llama's and Qwen2's QA trunk `transformer`, so
            `AutoModelForQuestionAnswering` reads none of a causal checkpoint's `model.*` weights): build the base by
            hand, or use `lora-gpu merge`, which writes the `*ForQuestionAnswering` checkpoint transformers loads whole.

            ```python
            from peft import PeftModel
            from transformers import AutoModelForCausalLM, AutoModelForQuestionAnswering
            base = AutoModelForQuestionAnswering.from_pretrained("BASE")
            base.transformer.load_state_dict(AutoModelForCausalLM.from_pretrained("BASE").model.state_dict())
            model = PeftModel.from_pretrained(base, "ADAPTER_DIR")
            ```

            """
        }
        return s
    }
}
