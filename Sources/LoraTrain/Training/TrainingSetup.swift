import Foundation
import LoraBase
import LoraModel
import LoraOps
import LoraText
import OpenCLRuntime

/// Everything a run needs before its first step, checked in the order of cost:
/// the settings against the model's config (the adapter plan, the checkpoint's
/// headers, the device limits), the data (tokenizer, template, every line), the
/// memory plan for the rows the data makes (printed; a run that cannot fit stops
/// here, before any weight is loaded or anything written), the output directory,
/// and only then the weights with the adapter; the step count, schedule and
/// intervals. training_config.yaml is written last.
struct TrainingSetup {
    /// The settings in force (max_seq_len capped at the model's positions).
    let settings: TrainingConfig
    let dist: Distributed?
    let isRoot: Bool
    let model: LlamaLoRAModel
    let train: [TokenizedSample]
    let validation: [TokenizedSample]
    /// Extractive QA: the run's questions and windows (validation samples point into them).
    let qa: QAQuestions?
    let padTokenID: Int
    let batching: BatchingOptions
    /// Micro-batches per optimizer step: accumulation × ranks (the global batch).
    let stepBatches: Int
    let total: Int
    let epochLimit: Int
    let schedule: LRSchedule
    let logEvery: Int
    let saveEvery: Int
    let evalEvery: Int
    let configYAML: String
    let resumeFrom: String?

    init(trainer: Trainer) throws {
        var c = trainer.config
        for note in c.notes { trainer.progress.message("note: " + note) }
        var (modelConfig, checkpoint) = try ModelSource.open(c.model, quantize: QuantizeMode(rawValue: c.quantize.lowercased()) ?? .auto)
        try Self.capSequenceLength(&c, modelConfig: modelConfig, progress: trainer.progress)
        let classifies = c.lora.taskType == "SEQ_CLS" || c.lora.taskType == "TOKEN_CLS"
        let tags = c.lora.taskType == "TOKEN_CLS"
        if c.lora.taskType == "QUESTION_ANS" {
            if c.packing {
                throw TrainError.setting(source: "settings", key: "packing", reason: "an extractive-QA window is one row "
                    + "(its positions count from the row's start): packing is not available with task_type QUESTION_ANS")
            }
            if c.docStride >= c.maxSeqLen {
                guard !c.explicitKeys.contains("doc_stride") else {
                    throw TrainError.setting(source: "settings", key: "doc_stride", reason: "\(c.docStride) must be below max_seq_len "
                        + "\(c.maxSeqLen) (capped at the model's positions): the overlap of a context's windows")
                }
                // run_qa.py's defaults keep a third of the window as overlap (128 of 384): so here.
                let stride = c.maxSeqLen / 3
                trainer.progress.message("note: doc_stride \(c.docStride) (the default) set to \(stride), a third of max_seq_len \(c.maxSeqLen)")
                c.docStride = stride
            }
            // A causal checkpoint gets a new qa_outputs (transformers' init, seeded); a *ForQuestionAnswering one keeps its own.
            switch modelConfig.task.kind {
            case .causalLM:
                guard let qa = modelConfig.withoutLabelsHead(taskType: "QUESTION_ANS") else {
                    throw TrainError.setting(source: "settings", key: "task_type", reason: "transformers has no "
                        + "\(modelConfig.architecture.className(for: .questionAnswering)): QUESTION_ANS is not available for this family")
                }
                modelConfig = qa
            case .questionAnswering: break
            default:
                throw TrainError.setting(source: "settings", key: "model", reason: "\(c.model) is a "
                    + "\(modelConfig.architecture.className(for: modelConfig.task)) (task \(modelConfig.task.peftTaskType)): "
                    + "QUESTION_ANS trains from a causal LM or a *ForQuestionAnswering checkpoint")
            }
        }
        if c.lora.taskType == "FEATURE_EXTRACTION" {
            if c.packing {
                throw TrainError.setting(source: "settings", key: "packing", reason: "each text is pooled into its own vector: "
                    + "packing is not available with task_type FEATURE_EXTRACTION")
            }
            // The base's trunk, no head (transformers' AutoModel): from a causal checkpoint.
            guard let trunk = modelConfig.withoutLabelsHead(taskType: "FEATURE_EXTRACTION") else {
                throw TrainError.setting(source: "settings", key: "model", reason: "\(c.model) is a "
                    + "\(modelConfig.architecture.className(for: modelConfig.task)): FEATURE_EXTRACTION trains a causal LM's trunk")
            }
            modelConfig = trunk
        }
        if classifies && c.packing {
            throw TrainError.setting(source: "settings", key: "packing", reason: tags
                ? "packing is not available with task_type TOKEN_CLS yet (one sentence per row)"
                : "a sequence classifier reads one token per sample: packing is not available with task_type SEQ_CLS")
        }
        // Under mpirun: rank 0 alone prints, evaluates and writes; every rank trains its share.
        dist = try Distributed.world()
        isRoot = (dist?.rank ?? 0) == 0
        if !isRoot { trainer.progress = ProgressPrinter(isTerminal: false) { _ in } }
        let progress = trainer.progress
        // The settings, the checkpoint's headers and the device limits, checked before the data is read (a typo in
        // target_modules costs no tokenization pass): a plan of one-token rows, not printed, with a 2-label stand-in for
        // a new classifier. The plan the run is held to comes after the data.
        let standIn = SequenceClassifier.defaultLabels(2)
        let earlyConfig = !classifies || modelConfig.task.kind != .causalLM ? modelConfig
            : tags ? modelConfig.tagging(.tokens(labels: standIn)) : modelConfig.classifying(SequenceClassifier(labels: standIn))
        _ = try Trainer.memoryPlan(c, model: earlyConfig, lora: c.lora, checkpoint: checkpoint, device: trainer.ctx.device, rowLength: 1)
        // Nothing is written before the plan fits: the resume point is found first, the output directory made after.
        resumeFrom = try Self.resumePoint(c)

        // Continuing a classifier (an adapter, or a checkpoint being resumed) on a causal base:
        // its labels.json fixes the labels.
        // (A checkpoint's head with default names LABEL_k takes the names training wrote there too.)
        var knownClassifier = modelConfig.task.classifier
        let defaultNames = knownClassifier?.labels.allSatisfy { $0.hasPrefix("LABEL_") } ?? true
        if classifies, defaultNames, let dir = resumeFrom ?? c.adapter,
           let saved = try SequenceClassifier.load(adapterDirectory: dir),
           knownClassifier.map({ $0.numLabels == saved.classifier.numLabels }) ?? true {
            knownClassifier = saved.classifier
            if modelConfig.padTokenID == nil { modelConfig.padTokenID = saved.padTokenID }
        }
        let data = try loadTrainingSamples(c, vocabSize: modelConfig.vocabSize, classifier: knownClassifier, progress: progress)
        for line in data.summaries { progress.message("data: " + line) }
        if classifies, let labels = data.labels {
            modelConfig = tags ? try Self.taggerConfig(modelConfig, labels: labels.names)
                : try Self.classifierConfig(modelConfig, labels: labels, dataPad: data.padTokenID, progress: progress)
            if labels.kind == .regression && TrainingConfig.greaterIsBetter.contains(c.metricForBestModel) {
                throw TrainError.setting(source: "settings", key: "metric_for_best_model", reason: "\(c.metricForBestModel) "
                    + "is a classifier's score, and these labels make a regression: use eval_loss (the mean squared error)")
            }
        }
        guard !data.train.isEmpty else {
            // The skipped lines say why: written (to a new output directory) before the error.
            try FileManager.default.createDirectory(atPath: c.outputDir, withIntermediateDirectories: true)
            if isRoot { try Self.reportSkipped(data.skipped, outputDir: c.outputDir, progress: progress) }
            throw TrainError.data(path: c.data.joined(separator: ", "), line: 0, reason: "no training sample")
        }
        // The memory plan for what the run needs (before any weight is loaded): rows as wide as the data's longest,
        // the classifier its labels make.
        let rowLength = Self.plannedRowLength(c, train: data.train, validation: data.validation)
        let memory = try Trainer.memoryPlan(c, model: modelConfig, lora: c.lora, checkpoint: checkpoint, device: trainer.ctx.device,
                                            kernels: trainer.ctx.config,
                                            rowLength: rowLength)
        for line in memory.plan.lines(limits: memory.limits) { progress.message(line) }
        try Trainer.checkMemory(memory.plan, limits: memory.limits, config: c)
        try FileManager.default.createDirectory(atPath: c.outputDir, withIntermediateDirectories: true)
        if isRoot { try Self.reportSkipped(data.skipped, outputDir: c.outputDir, progress: progress) }
        train = data.train
        validation = data.validation
        qa = data.qa
        padTokenID = modelConfig.padTokenID ?? data.padTokenID
        // The weights last: everything above is checked without them.
        // The RoPE tables cover the positions the run reaches (below its widest row), as planned.
        model = try Self.makeModel(c, modelConfig: modelConfig, checkpoint: checkpoint, context: trainer.ctx, progress: progress,
                                   ropePositions: rowLength)
        batching = BatchingOptions(batchSize: c.perDeviceTrainBatchSize, maxSeqLen: c.maxSeqLen, packing: c.packing,
                                   padTokenID: padTokenID, shuffle: true)
        stepBatches = c.gradientAccumulationSteps * (dist?.size ?? 1)
        (total, epochLimit) = Self.stepCount(c, train: train, batching: batching, stepBatches: stepBatches)
        schedule = LRSchedule(type: c.lrSchedulerType, baseLR: c.learningRate, warmupSteps: c.warmup(total: total),
                              totalSteps: total)
        logEvery = TrainingConfig.interval(c.loggingSteps, total: total)
        saveEvery = TrainingConfig.interval(c.saveSteps, total: total)
        evalEvery = TrainingConfig.interval(c.evalSteps ?? c.loggingSteps, total: total)
        if c.loadBestModelAtEnd && !validation.isEmpty && saveEvery % evalEvery != 0 {
            throw TrainError.setting(source: "settings", key: "save_steps",
                                     reason: "load_best_model_at_end needs save_steps (\(saveEvery)) to be a multiple of eval_steps (\(evalEvery))")
        }
        configYAML = c.yaml()
        settings = c
        if isRoot { try writeAtomically(Data(configYAML.utf8), to: c.outputDir + "/training_config.yaml") }
    }

    /// Positions restart per sample, so no sample may be longer than the model's positions:
    /// the default max_seq_len is capped there, an explicit one beyond it is refused before anything is written.
    static func capSequenceLength(_ c: inout TrainingConfig, modelConfig: ModelConfig, progress: ProgressPrinter) throws {
        guard c.maxSeqLen > modelConfig.maxPositionEmbeddings else { return }
        guard !c.explicitKeys.contains("max_seq_len") else {
            throw TrainError.setting(source: "settings", key: "max_seq_len", reason: "\(c.maxSeqLen) exceeds the model's "
                + "max_position_embeddings \(modelConfig.maxPositionEmbeddings); give at most that")
        }
        progress.message("note: max_seq_len \(c.maxSeqLen) capped at the model's max_position_embeddings \(modelConfig.maxPositionEmbeddings)")
        c.maxSeqLen = modelConfig.maxPositionEmbeddings
    }

    /// The model config with the run's classifier: a new score for a causal
    /// checkpoint (the data's labels), the checkpoint's own one otherwise (its
    /// num_labels must match). Without a pad_token_id the classifier takes the
    /// data's pad id, so training reads where transformers will (rightmost
    /// token that is not it) once config.pad_token_id is set to it.
    static func classifierConfig(_ m: ModelConfig, labels: ClassificationLabels, dataPad: Int,
                                 progress: ProgressPrinter) throws -> ModelConfig {
        var out = m
        let problem = ProblemType(rawValue: labels.kind.rawValue)!
        if var own = m.task.classifier {
            guard own.numLabels == labels.names.count, own.problemType == problem || own.problemTypeInferred else {
                throw TrainError.setting(source: "settings", key: "model", reason: "the checkpoint's classifier has "
                    + "\(own.numLabels) label(s) (\(own.problemType.rawValue)); the data has \(labels.names.count) (\(labels.kind.rawValue))")
            }
            // transformers infers a null problem_type from the labels; default names (LABEL_k) take the
            // data's, as run_glue.py writes label2id / id2label.
            own.problemType = problem
            if own.labels.allSatisfy({ $0.hasPrefix("LABEL_") }) { own.labels = labels.names }
            out.task = .sequenceClassification(own)
        } else {
            out = m.classifying(SequenceClassifier(labels: labels.names, problemType: problem))
        }
        if out.padTokenID == nil {
            out.padTokenID = dataPad
            progress.message("note: the model's config.json has no pad_token_id; the classifier reads each sample's last token "
                + "that is not \(dataPad) (the tokenizer's pad, else eos): set config.pad_token_id = \(dataPad) where you load it")
        }
        return out
    }

    /// The model config with the run's token classifier: a new score (and bias) for a
    /// causal checkpoint, the checkpoint's own (same num_labels; default names take the data's) otherwise.
    static func taggerConfig(_ m: ModelConfig, labels: [String]) throws -> ModelConfig {
        guard var own = m.task.tokenClassifier else { return m.tagging(.tokens(labels: labels)) }
        guard own.numLabels == labels.count else {
            throw TrainError.setting(source: "settings", key: "model", reason: "the checkpoint's token classifier has "
                + "\(own.numLabels) label(s); the data has \(labels.count)")
        }
        if own.labels.allSatisfy({ $0.hasPrefix("LABEL_") }) { own.labels = labels }
        var out = m
        out.task = .tokenClassification(own)
        return out
    }

    /// The widest row the run makes: max_seq_len with packing (packed rows are that wide), and for extractive QA and
    /// contrastive batches (their own row layouts); otherwise the longest training or validation sample, since a batch
    /// is padded to its longest row only (samples are already cut to max_seq_len).
    static func plannedRowLength(_ c: TrainingConfig, train: [TokenizedSample], validation: [TokenizedSample]) -> Int {
        if c.packing || c.lora.taskType == "QUESTION_ANS" || c.lora.taskType == "FEATURE_EXTRACTION" { return c.maxSeqLen }
        let longest = (train + validation).map(\.inputIDs.count).max() ?? c.maxSeqLen
        return min(max(longest, 1), c.maxSeqLen)
    }

    /// The checkpoint to resume from, refusing to overwrite checkpoints otherwise; writes nothing.
    static func resumePoint(_ c: TrainingConfig) throws -> String? {
        let resumeFrom = try c.resumeFromCheckpoint.map { try Checkpoints.resolve($0, outputDir: c.outputDir) }
        if resumeFrom == nil, let existing = Checkpoints.list(c.outputDir).last {
            throw TrainError.setting(source: "settings", key: "output_dir",
                                     reason: "\(c.outputDir) already holds checkpoints (\(existing.path)); continue them with "
                                        + "--resume-from-checkpoint latest, or choose another output_dir")
        }
        return resumeFrom
    }

    /// The model on the device with its adapter initialised (or loaded from `adapter`).
    static func makeModel(_ c: TrainingConfig, modelConfig: ModelConfig, checkpoint: CheckpointSource,
                          context: ComputeContext, progress: ProgressPrinter, ropePositions: Int? = nil) throws -> LlamaLoRAModel {
        let model = try LlamaLoRAModel(config: modelConfig, checkpoint: checkpoint, lora: c.lora, context: context,
                                       ropePositions: ropePositions)
        for w in model.adapterPlan.warnings { progress.message("warning: \(w)") }
        if let why = ModelMerger.untyingReason(model.adapterPlan, tied: modelConfig.tieWordEmbeddings) {
            progress.message("warning: the base ties lm_head to embed_tokens and this adapter has \(why): `lora-gpu merge` "
                + "will write them as two tensors (tie_word_embeddings: false), as the adapter computes them")
        }
        try model.initializeAdapters(seed: UInt64(c.seed))
        if let a = c.adapter {
            try model.loadAdapter(directory: a)
            for note in model.adapterNotes { progress.message("note: " + note) }
        }
        model.gradientCheckpointing = c.gradientCheckpointing
        model.seed = UInt32(truncatingIfNeeded: c.seed)
        model.neftuneNoiseAlpha = c.neftuneNoiseAlpha.map(Float.init)
        try model.store.setDecayMask(ParameterStore.trainerDecays)
        progress.message(model.adapterPlan.trainableLine)
        return model
    }

    /// The lines that gave no sample: the first few printed (file:line: reason), every one in
    /// OUTPUT/skipped.jsonl, and the count by reason.
    static func reportSkipped(_ skipped: [(file: String, line: Int, reason: SkipReason)], outputDir: String,
                              progress: ProgressPrinter) throws {
        let path = outputDir + "/skipped.jsonl"
        guard !skipped.isEmpty else {
            try? FileManager.default.removeItem(atPath: path)  // not an earlier run's list
            return
        }
        let shown = 5
        for s in skipped.prefix(shown) { progress.message("data: skipped \(s.file):\(s.line): \(s.reason)") }
        var counts: [String: Int] = [:]
        for s in skipped { counts[s.reason.category, default: 0] += 1 }
        let byReason = counts.sorted { ($0.value, $1.key) > ($1.value, $0.key) }.map { "\($0.key) \($0.value)" }
        progress.message("data: \(skipped.count) line(s) skipped (\(byReason.joined(separator: ", ")))"
            + (skipped.count > shown ? ", \(skipped.count - shown) more not shown" : "") + "; every one is in \(path)")
        let lines = skipped.map { s -> String in
            let o: JSONValue = ["file": .string(s.file), "line": .int(s.line), "reason": .string(s.reason.category),
                                "detail": .string(s.reason.description)]
            return o.serialized(JSONStyle()) + "\n"
        }
        try writeAtomically(Data(lines.joined().utf8), to: path)
    }

    /// The optimizer steps of the run and the epochs it may enter.
    static func stepCount(_ c: TrainingConfig, train: [TokenizedSample], batching: BatchingOptions,
                          stepBatches: Int) -> (total: Int, epochLimit: Int) {
        if c.maxSteps > 0 { return (c.maxSteps, Int.max) }
        func stepsIn(_ epoch: Int) -> Int {
            let n = Batching.plan(train, options: batching, seed: UInt64(c.seed), epoch: epoch).count
            return (n + stepBatches - 1) / stepBatches
        }
        let whole = Int(c.numTrainEpochs.rounded(.down)), frac = c.numTrainEpochs - Double(whole)
        let total: Int
        if !c.packing || whole > 1000 {
            // transformers: ⌈num_train_epochs × steps per epoch⌉ (padded batches: the same count every epoch).
            total = max(Int((c.numTrainEpochs * Double(stepsIn(0))).rounded(.up)), 1)
        } else {
            // Packed rows depend on each epoch's order: count every epoch.
            var t = 0
            for e in 0..<whole { t += stepsIn(e) }
            if frac > 0 { t += Int((frac * Double(stepsIn(whole))).rounded(.up)) }
            total = max(t, 1)
        }
        return (total, Int(c.numTrainEpochs.rounded(.up)))
    }
}
