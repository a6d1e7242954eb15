import Foundation
import LoraModel
import LoraOps
import LoraText
import OpenCLRuntime

/// Everything a run needs before its first step, checked in the order of cost:
/// the settings against the model's config, the memory plan (printed; a run that
/// cannot fit stops here, before any weight is loaded or anything written), the
/// output directory, the model with its adapter, the data and its batches, and the
/// step count, schedule and intervals. training_config.yaml is written last.
struct TrainingSetup {
    /// The settings in force (max_seq_len capped at the model's positions).
    let settings: TrainingConfig
    let dist: Distributed?
    let isRoot: Bool
    let model: LlamaLoRAModel
    let train: [TokenizedSample]
    let validation: [TokenizedSample]
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
        let (modelConfig, checkpoint) = try ModelSource.open(c.model)
        try Self.capSequenceLength(&c, modelConfig: modelConfig, progress: trainer.progress)
        // Under mpirun: rank 0 alone prints, evaluates and writes; every rank trains its share.
        dist = try Distributed.world()
        isRoot = (dist?.rank ?? 0) == 0
        if !isRoot { trainer.progress = ProgressPrinter(isTerminal: false) { _ in } }
        let progress = trainer.progress
        let memory = try Trainer.memoryPlan(c, model: modelConfig, lora: c.lora, checkpoint: checkpoint, device: trainer.ctx.device)
        for line in memory.plan.lines(limits: memory.limits) { progress.message(line) }
        try Trainer.checkMemory(memory.plan, limits: memory.limits, config: c)
        resumeFrom = try Self.prepareOutput(c)

        model = try Self.makeModel(c, modelConfig: modelConfig, checkpoint: checkpoint, context: trainer.ctx, progress: progress)
        let data = try loadTrainingSamples(c, vocabSize: modelConfig.vocabSize)
        for line in data.summaries { progress.message("data: " + line) }
        train = data.train
        validation = data.validation
        padTokenID = data.padTokenID
        guard !train.isEmpty else {
            throw TrainError.data(path: c.data.joined(separator: ", "), line: 0, reason: "no training sample")
        }
        batching = BatchingOptions(batchSize: c.perDeviceTrainBatchSize, maxSeqLen: c.maxSeqLen, packing: c.packing,
                                   padTokenID: data.padTokenID, shuffle: true)
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

    /// Creates output_dir; returns the checkpoint to resume from, refusing to overwrite checkpoints otherwise.
    static func prepareOutput(_ c: TrainingConfig) throws -> String? {
        try FileManager.default.createDirectory(atPath: c.outputDir, withIntermediateDirectories: true)
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
                          context: ComputeContext, progress: ProgressPrinter) throws -> LlamaLoRAModel {
        let model = try LlamaLoRAModel(config: modelConfig, checkpoint: checkpoint, lora: c.lora, context: context)
        for w in model.adapterPlan.warnings { progress.message("warning: \(w)") }
        try model.initializeAdapters(seed: UInt64(c.seed))
        if let a = c.adapter { try model.loadAdapter(directory: a) }
        model.gradientCheckpointing = c.gradientCheckpointing
        model.seed = UInt32(truncatingIfNeeded: c.seed)
        model.neftuneNoiseAlpha = c.neftuneNoiseAlpha.map(Float.init)
        try model.store.setDecayMask(ParameterStore.trainerDecays)
        progress.message(model.adapterPlan.trainableLine)
        return model
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
