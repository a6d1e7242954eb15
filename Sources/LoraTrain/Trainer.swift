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
    private var stopRequested = false

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

    public func run() throws -> Outcome {
        var c = config
        let fm = FileManager.default
        // Positions restart per sample, so no sample may be longer than the model's positions:
        // the default max_seq_len is capped there, an explicit one beyond it is refused before anything is written.
        let (modelConfig, checkpoint) = try ModelSource.open(c.model)
        if c.maxSeqLen > modelConfig.maxPositionEmbeddings {
            guard !c.explicitKeys.contains("max_seq_len") else {
                throw TrainError.setting(source: "settings", key: "max_seq_len", reason: "\(c.maxSeqLen) exceeds the model's "
                    + "max_position_embeddings \(modelConfig.maxPositionEmbeddings); give at most that")
            }
            progress.message("note: max_seq_len \(c.maxSeqLen) capped at the model's max_position_embeddings \(modelConfig.maxPositionEmbeddings)")
            c.maxSeqLen = modelConfig.maxPositionEmbeddings
        }
        // Under mpirun: rank 0 alone prints, evaluates and writes; every rank trains its share.
        let dist = try Distributed.world()
        let isRoot = (dist?.rank ?? 0) == 0
        if !isRoot { progress = ProgressPrinter(isTerminal: false) { _ in } }
        // The memory plan, from the configs and the checkpoint's headers: printed, and a run
        // that cannot fit the device stops here, before any weight is loaded or anything written.
        let lora = try c.loraSettings()
        let memory = try Self.memoryPlan(c, model: modelConfig, lora: lora, checkpoint: checkpoint, device: ctx.device)
        for line in memory.plan.lines(limits: memory.limits) { progress.message(line) }
        try Self.checkMemory(memory.plan, limits: memory.limits, config: c)
        try fm.createDirectory(atPath: outputDir, withIntermediateDirectories: true)
        let resumeFrom = try c.resumeFromCheckpoint.map { try Checkpoints.resolve($0, outputDir: outputDir) }
        if resumeFrom == nil, let existing = Checkpoints.list(outputDir).last {
            throw TrainError.setting(source: "settings", key: "output_dir",
                                     reason: "\(outputDir) already holds checkpoints (\(existing.path)); continue them with "
                                        + "--resume-from-checkpoint latest, or choose another output_dir")
        }

        // The model.
        let model = try LlamaLoRAModel(config: modelConfig, checkpoint: checkpoint, lora: lora, context: ctx)
        for w in model.adapterPlan.warnings { progress.message("warning: \(w)") }
        try model.initializeAdapters(seed: UInt64(c.seed))
        if let a = c.adapter { try model.loadAdapter(directory: a) }
        model.gradientCheckpointing = c.gradientCheckpointing
        model.seed = UInt32(truncatingIfNeeded: c.seed)
        model.neftuneNoiseAlpha = c.neftuneNoiseAlpha.map(Float.init)
        try model.store.setDecayMask(ParameterStore.trainerDecays)
        progress.message(model.adapterPlan.trainableLine)

        // The data.
        let data = try loadTrainingSamples(c, vocabSize: modelConfig.vocabSize)
        for line in data.summaries { progress.message("data: " + line) }
        let train = data.train, val = data.validation
        guard !train.isEmpty else {
            throw TrainError.data(path: c.data.joined(separator: ", "), line: 0, reason: "no training sample")
        }
        let options = BatchingOptions(batchSize: c.perDeviceTrainBatchSize, maxSeqLen: c.maxSeqLen, packing: c.packing,
                                      padTokenID: data.padTokenID, shuffle: true)
        var plans: [Int: [BatchRows]] = [:]
        func batches(_ epoch: Int) -> [BatchRows] {
            if let p = plans[epoch] { return p }
            let p = Batching.plan(train, options: options, seed: UInt64(c.seed), epoch: epoch)
            plans = [epoch: p]  // keep one epoch's plan alive
            return p
        }
        let acc = c.gradientAccumulationSteps
        // An optimizer step takes accumulation × ranks micro-batches (the global batch).
        let stepBatches = acc * (dist?.size ?? 1)
        func stepsIn(_ epoch: Int) -> Int { (batches(epoch).count + stepBatches - 1) / stepBatches }

        // Steps, schedule and intervals.
        let total: Int
        let epochLimit: Int
        if c.maxSteps > 0 {
            total = c.maxSteps
            epochLimit = Int.max
        } else {
            let whole = Int(c.numTrainEpochs.rounded(.down)), frac = c.numTrainEpochs - Double(whole)
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
            epochLimit = Int(c.numTrainEpochs.rounded(.up))
        }
        let schedule = LRSchedule(type: c.lrSchedulerType, baseLR: c.learningRate, warmupSteps: c.warmup(total: total),
                                  totalSteps: total)
        let logEvery = TrainingConfig.interval(c.loggingSteps, total: total)
        let saveEvery = TrainingConfig.interval(c.saveSteps, total: total)
        let evalEvery = TrainingConfig.interval(c.evalSteps ?? c.loggingSteps, total: total)
        if c.loadBestModelAtEnd && !val.isEmpty && saveEvery % evalEvery != 0 {
            throw TrainError.setting(source: "settings", key: "save_steps",
                                     reason: "load_best_model_at_end needs save_steps (\(saveEvery)) to be a multiple of eval_steps (\(evalEvery))")
        }
        let configYAML = try c.yaml()
        if isRoot { try writeAtomically(Data(configYAML.utf8), to: outputDir + "/training_config.yaml") }

        // Fresh or resumed state.
        var state = TrainerState(
            scheduler: .init(type: c.lrSchedulerType.rawValue, warmupSteps: schedule.warmupSteps, totalSteps: total, lastLr: 0),
            rng: .init(seed: c.seed, dropoutStep: 0))
        var records: [MetricsRecord] = []
        var lastCheckpoint: String?
        if let path = resumeFrom {
            state = try Checkpoints.load(path, into: model)
            guard state.scheduler.totalSteps == total else {
                throw TrainError.checkpoint(path: path, reason: "was made for \(state.scheduler.totalSteps) steps, these settings give \(total): "
                    + "resume with the settings of the interrupted run")
            }
            lastCheckpoint = path
            let changed = Self.changedSettings(checkpoint: path, now: configYAML)
            if !changed.isEmpty {
                progress.message("warning: settings differ from the checkpoint's (the result will not match an uninterrupted run): "
                    + changed.joined(separator: ", "))
            }
            records = readRecords().filter { $0.step <= state.globalStep }
            if isRoot { try writeAtomically(Data(records.map { $0.json + "\n" }.joined().utf8), to: metricsPath) }
            progress.message("resumed from \(path) at step \(state.globalStep) (epoch \(state.dataEpoch), batch \(state.dataBatch))")
        } else if isRoot {
            try? fm.removeItem(atPath: metricsPath)
            _ = fm.createFile(atPath: metricsPath, contents: nil)
        }
        let evalRows = val.isEmpty || !isRoot ? [] : Batching.plan(val, options: BatchingOptions(
            batchSize: c.perDeviceEvalBatchSize, maxSeqLen: c.maxSeqLen, packing: c.packing, padTokenID: data.padTokenID, shuffle: false),
            seed: UInt64(c.seed), epoch: 0)
        progress.message("training \(train.count) samples\(val.isEmpty ? "" : ", evaluating \(val.count)"): \(total) steps "
            + "(batch \(c.perDeviceTrainBatchSize) × accumulation \(acc)\(dist.map { " × \($0.size) ranks" } ?? "")), warmup \(schedule.warmupSteps), output \(outputDir)")

        StopSignals.install()
        defer { StopSignals.uninstall() }

        let hyperBase = ComputeContext.AdamWHyper(
            lr: 0, beta1: Float(c.adamBeta1), beta2: Float(c.adamBeta2), eps: Float(c.adamEpsilon),
            weightDecay: Float(c.weightDecay), maxGradNorm: Float(c.maxGradNorm))
        let started = Date()
        let elapsedBefore = state.elapsedSeconds ?? 0
        let startStep = state.globalStep
        var windowStart = Date(), windowTokens = 0
        /// The last logged window's tokens/s: what the bar shows while the new window is still empty.
        var lastRate = 0.0
        var lastGradNorm: Float = .nan, lastLoss: Double = .nan
        var savedAt = -1, loggedAt = state.stepsSinceLog == 0 ? state.globalStep : -1, evaluatedAt = -1
        var stoppedEarly = false

        /// eval_loss as transformers' evaluate computes it: each batch's mean token
        /// loss, averaged over batches weighted by their rows (batches without a
        /// trained token are left out, where transformers would get 0/0).
        func evaluate() throws -> Double {
            var sum = 0.0, rows = 0
            for b in evalRows where b.trainedTokens > 0 {
                sum += Double(try model.loss(try tokenBatch(b))) * Double(b.rows)
                rows += b.rows
            }
            return rows > 0 ? sum / Double(rows) : .nan
        }

        func log(evalLoss: Double?) throws {
            guard isRoot else { return }
            let now = Date()
            let window = now.timeIntervalSince(windowStart)
            let loss = state.stepsSinceLog > 0 ? state.lossSinceLog / Double(state.stepsSinceLog) : lastLoss
            let r = MetricsRecord(step: state.globalStep, epoch: state.epoch, loss: loss, gradNorm: Double(lastGradNorm),
                                  learningRate: state.scheduler.lastLr,
                                  tokensPerSecond: window > 0 ? Double(windowTokens) / window : 0,
                                  elapsedSeconds: elapsedBefore + now.timeIntervalSince(started), evalLoss: evalLoss)
            records.append(r)
            let h = try FileHandle(forWritingTo: URL(fileURLWithPath: metricsPath))
            h.seekToEndOfFile()
            h.write(Data((r.json + "\n").utf8))
            try h.close()
            try writeAtomically(Data(plot(records).utf8), to: outputDir + "/loss.svg")
            progress.line(r, total: total)
            lastRate = r.tokensPerSecond
            state.lossSinceLog = 0
            state.stepsSinceLog = 0
            windowStart = now
            windowTokens = 0
            loggedAt = state.globalStep
        }

        func save() throws {
            guard isRoot else { savedAt = state.globalStep; return }
            if let m = state.lastMetric, state.lastMetricStep == state.globalStep,
               state.bestMetric.map({ m < $0 }) ?? true {
                state.bestMetric = m
                state.bestStep = state.globalStep
                state.bestCheckpoint = Checkpoints.name(step: state.globalStep)
            }
            state.rng.dropoutStep = model.step
            state.elapsedSeconds = elapsedBefore + Date().timeIntervalSince(started)
            let path = try Checkpoints.save(model: model, state: state, outputDir: outputDir, baseModel: c.model,
                                            configYAML: configYAML)
            lastCheckpoint = path
            savedAt = state.globalStep
            if let limit = c.saveTotalLimit {
                for d in Checkpoints.prune(outputDir, limit: limit, best: c.loadBestModelAtEnd ? state.bestCheckpoint : nil) {
                    progress.message("removed \(d) (save_total_limit \(limit))")
                }
            }
        }

        func metricValue(evalLoss: Double?) -> Double? {
            switch c.metricForBestModel {
            case "loss": return records.last(where: { $0.step == state.globalStep })?.loss
            default: return evalLoss   // eval_perplexity = exp(eval_loss) orders the same
            }
        }

        // MARK: the loop
        let profiler = profile ? StepProfiler(context: ctx, progress: progress) : nil
        defer { if profile { ctx.profileLaunches = false } }
        while state.globalStep < total {
            if dist?.stopAgreed ?? (StopSignals.received != 0 || stopRequested) { break }
            let e = state.dataEpoch
            if e >= epochLimit { break }
            let bs = batches(e)
            if state.dataBatch >= bs.count {
                state.dataEpoch += 1
                state.dataBatch = 0
                continue
            }
            let first = state.dataBatch
            let end = min((first / stepBatches + 1) * stepBatches, bs.count)
            let group = bs[first..<end]
            state.dataBatch = end
            let usable = group.filter { $0.trainedTokens > 0 }
            if usable.count < group.count {
                state.skippedBatches += group.count - usable.count
                progress.message("skipped \(group.count - usable.count) batch(es) of epoch \(e) whose every label is -100 "
                    + "(\(state.skippedBatches) so far)")
            }
            if usable.isEmpty { continue }
            let micro = try usable.map(tokenBatch)
            var hyper = hyperBase
            let lr = schedule.lr(state.globalStep)
            hyper.lr = Float(lr)
            try profiler?.beforeStep()
            let r = try dist.map { try $0.trainStep(model, micro, hyper: hyper, stopRequested: StopSignals.received != 0 || stopRequested) }
                ?? model.trainStep(micro, hyper: hyper)
            try profiler?.afterStep()
            guard r.applied else {
                throw TrainError.nonFinite(step: state.globalStep + 1, epoch: e, batch: first, loss: r.loss,
                                           gradNorm: r.gradNorm, lastCheckpoint: lastCheckpoint)
            }
            state.globalStep += 1
            state.epoch = Double(e) + Double(end) / Double(bs.count)
            state.scheduler.lastLr = lr
            state.rng.dropoutStep = model.step
            state.lossSinceLog += Double(r.loss)
            state.stepsSinceLog += 1
            lastLoss = Double(r.loss)
            lastGradNorm = r.gradNorm
            windowTokens += micro.reduce(0) { $0 + $1.tokens }
            afterStep?(state.globalStep)

            let last = state.globalStep == total
            var evalLoss: Double?
            if !evalRows.isEmpty && (state.globalStep % evalEvery == 0 || last) {
                evalLoss = try evaluate()
                evaluatedAt = state.globalStep
            }
            if state.globalStep % logEvery == 0 || evalLoss != nil || last { try log(evalLoss: evalLoss) }
            if let m = metricValue(evalLoss: evalLoss) {
                state.lastMetric = m
                state.lastMetricStep = state.globalStep
                if let patience = c.earlyStoppingPatience {
                    if state.earlyStoppingBest.map({ m < $0 - c.earlyStoppingThreshold }) ?? true {
                        state.earlyStoppingBest = m
                        state.earlyStoppingCounter = 0
                    } else {
                        state.earlyStoppingCounter += 1
                        if state.earlyStoppingCounter >= patience {
                            progress.message("early stopping at step \(state.globalStep): \(c.metricForBestModel) has not improved "
                                + "for \(patience) evaluation(s)")
                            stoppedEarly = true
                        }
                    }
                }
            }
            if let d = dist { stoppedEarly = try d.any(stoppedEarly) }  // rank 0's decision
            if state.globalStep % saveEvery == 0 || last || stoppedEarly { try save() }
            if stoppedEarly { break }
            let done = state.globalStep - startStep
            let eta = Date().timeIntervalSince(started) / Double(max(done, 1)) * Double(total - state.globalStep)
            let window = Date().timeIntervalSince(windowStart)
            // Right after a logged step the window is empty: the bar keeps the logged rate.
            progress.bar(step: state.globalStep, total: total, loss: lastLoss, lr: lr,
                         tokensPerSecond: windowTokens > 0 && window > 0 ? Double(windowTokens) / window : lastRate, eta: eta)
        }

        profiler?.finish()

        // Interrupted: a checkpoint of the step just finished, then out.
        let sig = StopSignals.received
        if (dist?.stopAgreed ?? (sig != 0 || stopRequested)) && !stoppedEarly && state.globalStep < total {
            if savedAt != state.globalStep { try save() }
            let path = lastCheckpoint ?? outputDir
            let why = sig == SIGTERM ? "SIGTERM" : sig == SIGINT ? "SIGINT" : "a stop request"
            progress.message("stopped by \(why) after step \(state.globalStep): checkpoint \(path); "
                + "continue with --resume-from-checkpoint latest")
            dist?.finalize()
            return .interrupted(step: state.globalStep, signal: sig, checkpoint: path)
        }

        // The end: last log, evaluation and checkpoint when the loop ended between them.
        if !evalRows.isEmpty && evaluatedAt != state.globalStep && state.globalStep > 0 && state.stepsSinceLog > 0 {
            let e = try evaluate()
            try log(evalLoss: e)
            state.lastMetric = metricValue(evalLoss: e)
            state.lastMetricStep = state.globalStep
        } else if loggedAt != state.globalStep && state.stepsSinceLog > 0 {
            try log(evalLoss: nil)
        }
        if savedAt != state.globalStep && state.globalStep > 0 { try save() }
        if let d = dist, !isRoot {
            d.finalize()
            return stoppedEarly ? .stoppedEarly(step: state.globalStep) : .completed(step: state.globalStep)
        }

        // The final adapter: the best checkpoint's, or the last state.
        let finalTmp = outputDir + "/.final-adapter.tmp-\(getpid())"
        try? fm.removeItem(atPath: finalTmp)
        defer { try? fm.removeItem(atPath: finalTmp) }
        var source = finalTmp
        if c.loadBestModelAtEnd, let best = state.bestCheckpoint, fm.fileExists(atPath: outputDir + "/" + best) {
            source = outputDir + "/" + best
            progress.message("best \(c.metricForBestModel) \(String(format: "%.4f", state.bestMetric ?? .nan)) at step "
                + "\(state.bestStep ?? 0) (\(best)): its adapter is the one left in \(outputDir)")
        } else {
            try model.saveAdapter(directory: finalTmp, baseModel: c.model)
        }
        for f in ["adapter_model.safetensors", "adapter_config.json"] {
            let data = try Data(contentsOf: URL(fileURLWithPath: source + "/" + f))
            try writeAtomically(data, to: outputDir + "/" + f)
        }
        if ModelSource.isFile(c.model) {
            // A GGUF base: its tokenizer.ggml.* metadata, as the tokenizer files transformers would write.
            if let files = try? GGUFFile(path: c.model).tokenizerFiles() {
                try writeAtomically(files.tokenizerJSON, to: outputDir + "/tokenizer.json")
                try writeAtomically(files.tokenizerConfig, to: outputDir + "/tokenizer_config.json")
            }
        } else {
            for f in Self.tokenizerFiles where fm.fileExists(atPath: c.model + "/" + f) {
                try writeAtomically(try Data(contentsOf: URL(fileURLWithPath: c.model + "/" + f)), to: outputDir + "/" + f)
            }
        }
        try writeAtomically(Data(readme(state: state, records: records, total: total, trainCount: train.count,
                                        valCount: val.count).utf8), to: outputDir + "/README.md")
        if state.skippedBatches > 0 {
            progress.message("\(state.skippedBatches) batch(es) whose every label is -100 were skipped")
        }
        progress.message("done: \(state.globalStep) steps; adapter in \(outputDir)")
        dist?.finalize()
        return stoppedEarly ? .stoppedEarly(step: state.globalStep) : .completed(step: state.globalStep)
    }

    // MARK: the memory plan

    /// The plan of the largest micro-batch the run will meet: per_device_train_batch_size
    /// (or the eval batch size when there is evaluation data and it is larger) × max_seq_len
    /// (padded batches are at most that wide, packed rows exactly that), and the device's limits.
    static func memoryPlan(_ c: TrainingConfig, model: ModelConfig, lora: LoraConfig, checkpoint: CheckpointSource,
                           device: Device) throws -> (plan: MemoryPlan, limits: MemoryLimits) {
        let evaluates = c.valData != nil || c.valSplit > 0
        let shape = MemoryPlan.Shape(batch: evaluates ? max(c.perDeviceTrainBatchSize, c.perDeviceEvalBatchSize) : c.perDeviceTrainBatchSize,
                                     seq: c.maxSeqLen, gradientCheckpointing: c.gradientCheckpointing)
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
        let batchKey = s.batch > c.perDeviceTrainBatchSize ? "per_device_eval_batch_size" : "per_device_train_batch_size"
        var m = "memory plan: the model with micro-batches of \(batchKey) \(s.batch) × max_seq_len \(s.seq) tokens does not fit "
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
        if let b = largest(s.batch - 1, { b in shaped { $0.batch = b } }) {
            options.append("\(batchKey) \(b)" + (batchKey == "per_device_train_batch_size"
                ? " (with gradient_accumulation_steps to keep the effective batch)" : ""))
        }
        if let t = largest(s.seq - 1, { t in shaped { $0.seq = t } }), t >= 2 { options.append("max_seq_len \(t)") }
        if !s.gradientCheckpointing && fits(shaped { $0.gradientCheckpointing = true }) {
            options.append("gradient_checkpointing: true (keeps one layer's activations and recomputes the others in backward)")
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
        let a = pairs(then), b = pairs(now)
        return TrainingConfig.keys.filter { $0 != "resume_from_checkpoint" && a[$0] != b[$0] }
    }

    func readRecords() -> [MetricsRecord] {
        guard let text = try? String(contentsOfFile: metricsPath, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { MetricsRecord(json: String($0)) }
    }

    func plot(_ records: [MetricsRecord]) -> String {
        LossPlot.svg(train: records.map { ($0.step, $0.loss) },
                     eval: records.compactMap { r in r.evalLoss.map { (r.step, $0) } },
                     title: "lora-gpu train — " + URL(fileURLWithPath: config.model).lastPathComponent)
    }

    func readme(state: TrainerState, records: [MetricsRecord], total: Int, trainCount: Int, valCount: Int) -> String {
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
        if c.loadBestModelAtEnd, let b = state.bestCheckpoint {
            s += "- Best \(c.metricForBestModel): \(String(format: "%.4f", state.bestMetric ?? .nan)) at step \(state.bestStep ?? 0) (`\(b)`); this adapter is that checkpoint's\n"
        }
        return s
    }
}
