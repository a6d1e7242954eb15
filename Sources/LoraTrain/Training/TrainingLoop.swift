import Foundation
import LoraModel
import LoraOps
import LoraText
import OpenCLRuntime

/// The loop of one run, readable top to bottom in `run`: each optimizer step
/// (`step`), then evaluation, logging and checkpoints at their intervals, then the
/// outputs (`finish`). The state that a checkpoint saves is `state`; the rest is
/// bookkeeping of this process.
final class TrainingLoop {
    let setup: TrainingSetup
    let trainer: Trainer
    var c: TrainingConfig { setup.settings }
    var model: LlamaLoRAModel { setup.model }
    var progress: ProgressPrinter { trainer.progress }
    var outputDir: String { c.outputDir }

    var state: TrainerState
    var records: [MetricsRecord] = []
    var lastCheckpoint: String?
    let evalRows: [BatchRows]
    let hyperBase: ComputeContext.AdamWHyper
    /// Set when the loop starts (after the model, data and any checkpoint are loaded).
    var started = Date()
    let elapsedBefore: Double
    let startStep: Int
    var windowStart = Date(), windowTokens = 0
    /// The last logged window's tokens/s: what the bar shows while the new window is still empty.
    var lastRate = 0.0
    var lastGradNorm: Float = .nan, lastLoss: Double = .nan
    var savedAt = -1, loggedAt = -1, evaluatedAt = -1
    /// A classifier's accuracy and F1, or extractive QA's exact match and F1, from the last evaluate().
    var evalScores: EvalScores?
    var stoppedEarly = false
    private var plan: (epoch: Int, rows: [BatchRows])?

    /// Fresh or resumed state; metrics.jsonl started or cut back to the resume point.
    init(setup: TrainingSetup, trainer: Trainer) throws {
        self.setup = setup
        self.trainer = trainer
        let c = setup.settings
        state = TrainerState(
            scheduler: .init(type: c.lrSchedulerType.rawValue, warmupSteps: setup.schedule.warmupSteps, totalSteps: setup.total,
                             lastLr: 0),
            rng: .init(seed: c.seed, dropoutStep: 0))
        if let path = setup.resumeFrom {
            state = try Checkpoints.load(path, into: setup.model)
            guard state.scheduler.totalSteps == setup.total else {
                throw TrainError.checkpoint(path: path, reason: "was made for \(state.scheduler.totalSteps) steps, these settings give "
                    + "\(setup.total): resume with the settings of the interrupted run")
            }
            lastCheckpoint = path
            let changed = Trainer.changedSettings(checkpoint: path, now: setup.configYAML)
            if !changed.isEmpty {
                trainer.progress.message("warning: settings differ from the checkpoint's (the result will not match an uninterrupted "
                    + "run): " + changed.joined(separator: ", "))
            }
            // The lines up to the checkpoint stay byte for byte as the interrupted run wrote them.
            let resumedStep = state.globalStep
            let kept = trainer.readRecords().filter { $0.record.step <= resumedStep }
            records = kept.map(\.record)
            if setup.isRoot { try writeAtomically(Data(kept.map { $0.line + "\n" }.joined().utf8), to: trainer.metricsPath) }
            trainer.progress.message("resumed from \(path) at step \(state.globalStep) (epoch \(state.dataEpoch), batch \(state.dataBatch))")
        } else if setup.isRoot {
            try? FileManager.default.removeItem(atPath: trainer.metricsPath)
            _ = FileManager.default.createFile(atPath: trainer.metricsPath, contents: nil)
        }
        evalRows = setup.validation.isEmpty || !setup.isRoot ? [] : Batching.plan(setup.validation, options: BatchingOptions(
            batchSize: c.perDeviceEvalBatchSize, maxSeqLen: c.maxSeqLen, packing: c.packing, padTokenID: setup.padTokenID,
            shuffle: false), seed: UInt64(c.seed), epoch: 0)
        hyperBase = ComputeContext.AdamWHyper(
            lr: 0, beta1: Float(c.adamBeta1), beta2: Float(c.adamBeta2), eps: Float(c.adamEpsilon),
            weightDecay: Float(c.weightDecay), maxGradNorm: Float(c.maxGradNorm))
        elapsedBefore = state.elapsedSeconds ?? 0
        startStep = state.globalStep
        loggedAt = state.stepsSinceLog == 0 ? state.globalStep : -1
    }

    /// One epoch's batches, planned once and kept while the epoch lasts.
    func batches(_ epoch: Int) -> [BatchRows] {
        if let p = plan, p.epoch == epoch { return p.rows }
        let rows = Batching.plan(setup.train, options: setup.batching, seed: UInt64(c.seed), epoch: epoch)
        plan = (epoch, rows)
        return rows
    }

    var stopAsked: Bool { setup.dist?.stopAgreed ?? (StopSignals.received != 0 || trainer.stopRequested) }

    func run() throws -> Trainer.Outcome {
        started = Date()
        windowStart = started
        let dist = setup.dist
        progress.message("training \(setup.train.count) samples\(setup.validation.isEmpty ? "" : ", evaluating \(setup.validation.count)"): "
            + "\(setup.total) steps (batch \(c.perDeviceTrainBatchSize) × accumulation \(c.gradientAccumulationSteps)"
            + "\(dist.map { " × \($0.size) ranks" } ?? "")), warmup \(setup.schedule.warmupSteps), output \(outputDir)")
        if c.evalOnStart, !evalRows.isEmpty, state.globalStep == 0 {
            let e = try evaluate()
            var line = "before training: eval_loss \(String(format: "%.4f", e))"
            if let s = evalScores { line += s.shown }
            progress.message(line)
        }
        let profiler = trainer.profile ? StepProfiler(context: trainer.ctx, progress: progress) : nil
        defer { if trainer.profile { trainer.ctx.profileLaunches = false } }
        while state.globalStep < setup.total, !stopAsked, state.dataEpoch < setup.epochLimit {
            guard let lr = try step(profiler: profiler) else { continue }
            try afterStep(lr: lr)
            if stoppedEarly { break }
        }
        profiler?.finish()
        if stopAsked && !stoppedEarly && state.globalStep < setup.total { return try interrupted() }
        return try finish()
    }

    /// The next optimizer step: its micro-batches, the step on the device (all-reduced under
    /// MPI), the state after it. nil when the data moved on without a step (an epoch's end,
    /// or batches with no trained token); else the step's learning rate.
    func step(profiler: StepProfiler?) throws -> Double? {
        let e = state.dataEpoch
        let bs = batches(e)
        if state.dataBatch >= bs.count {
            state.dataEpoch += 1
            state.dataBatch = 0
            return nil
        }
        let first = state.dataBatch
        let end = min((first / setup.stepBatches + 1) * setup.stepBatches, bs.count)
        let group = bs[first..<end]
        state.dataBatch = end
        let usable = group.filter { $0.trainedTokens > 0 }
        if usable.count < group.count {
            state.skippedBatches += group.count - usable.count
            progress.message("skipped \(group.count - usable.count) batch(es) of epoch \(e) whose every label is -100 "
                + "(\(state.skippedBatches) so far)")
        }
        if usable.isEmpty { return nil }
        let micro = try usable.map { try tokenBatch($0, for: model, settings: c) }
        var hyper = hyperBase
        let lr = setup.schedule.lr(state.globalStep)
        hyper.lr = Float(lr)
        try profiler?.beforeStep()
        let r = try setup.dist.map {
            try $0.trainStep(model, micro, hyper: hyper, stopRequested: StopSignals.received != 0 || trainer.stopRequested)
        } ?? model.trainStep(micro, hyper: hyper)
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
        trainer.afterStep?(state.globalStep)
        return lr
    }

    /// Evaluation, logging, early stopping and checkpoints due after a step; the progress bar.
    func afterStep(lr: Double) throws {
        let last = state.globalStep == setup.total
        var evalLoss: Double?
        if !evalRows.isEmpty && (state.globalStep % setup.evalEvery == 0 || last) {
            evalLoss = try evaluate()
            evaluatedAt = state.globalStep
        }
        if state.globalStep % setup.logEvery == 0 || evalLoss != nil || last { try log(evalLoss: evalLoss) }
        if let m = metricValue(evalLoss: evalLoss) { track(metric: m) }
        if let d = setup.dist { stoppedEarly = try d.any(stoppedEarly) }  // rank 0's decision
        if state.globalStep % setup.saveEvery == 0 || last || stoppedEarly { try checkpoint() }
        if stoppedEarly { return }
        let done = state.globalStep - startStep
        let eta = Date().timeIntervalSince(started) / Double(max(done, 1)) * Double(setup.total - state.globalStep)
        let window = Date().timeIntervalSince(windowStart)
        // Right after a logged step the window is empty: the bar keeps the logged rate.
        progress.bar(step: state.globalStep, total: setup.total, loss: lastLoss, lr: lr,
                     tokensPerSecond: windowTokens > 0 && window > 0 ? Double(windowTokens) / window : lastRate, eta: eta)
    }

    /// The metric of the step for load_best_model_at_end and early stopping.
    func track(metric m: Double) {
        state.lastMetric = m
        state.lastMetricStep = state.globalStep
        guard let patience = c.earlyStoppingPatience else { return }
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

    /// eval_loss as transformers' evaluate computes it: each batch's mean token
    /// loss, averaged over batches weighted by their rows (batches without a
    /// trained token are left out, where transformers would get 0/0).
    func evaluate() throws -> Double {
        if let qa = setup.qa { return try evaluateAnswers(qa) }
        if model.config.task.kind == .featureExtraction { return try evaluateEmbeddings() }
        var sum = 0.0, rows = 0
        var logits: [Float] = [], classes: [Int] = [], reals: [[Float]] = []
        var taggedPredictions: [[String]] = [], taggedTruth: [[String]] = []
        let classifier = model.config.task.classifier
        for b in evalRows where b.trainedTokens > 0 {
            let tb = try tokenBatch(b, for: model, settings: c)
            guard let cls = classifier, cls.problemType != .regression else {
                sum += Double(try model.loss(tb)) * Double(b.rows)
                rows += b.rows
                continue
            }
            // One forward: the loss and the head's logits at the counted rows, in batch order.
            let (loss, counted) = try model.lossAndCountedLogits(tb)
            sum += Double(loss) * Double(b.rows)
            rows += b.rows
            let C = cls.numLabels
            if model.config.task.tokenClassifier != nil {
                // Per sentence, the argmax at every labelled token (a word's first sub-token).
                var k = 0
                for row in b.labels {
                    var p: [String] = [], t: [String] = []
                    for y in row where y >= 0 {
                        p.append(cls.labels[Sampler.argmax(Array(counted[(k * C)..<((k + 1) * C)]))])
                        t.append(cls.labels[y])
                        k += 1
                    }
                    taggedPredictions.append(p)
                    taggedTruth.append(t)
                }
                continue
            }
            logits += counted
            for t in b.classTargets ?? [] {
                switch t {
                case .classID(let i): if i >= 0 { classes.append(i) }   // -100 rows are not counted
                case .reals(let v): reals.append(v)
                }
            }
        }
        evalScores = nil
        if !taggedTruth.isEmpty {
            let s = TaggingScores.score(predicted: taggedPredictions, truth: taggedTruth)
            evalScores = EvalScores(accuracy: s.accuracy, f1: s.f1)
        } else if let cls = classifier, !logits.isEmpty {
            let s: (Double, Double) = cls.problemType == .multiLabel
                ? ClassificationScores.multiLabel(logits: logits, targets: reals)
                : ClassificationScores.singleLabel(logits: logits, labels: classes, classes: cls.numLabels)
            evalScores = EvalScores(accuracy: s.0, f1: s.1)
        }
        return rows > 0 ? sum / Double(rows) : .nan
    }

    /// An embedder: eval_loss as above (the contrastive loss over each batch), and eval_accuracy —
    /// retrieval accuracy@1 over the whole validation set, as sentence-transformers'
    /// InformationRetrievalEvaluator counts it: each anchor's vector against every positive (and
    /// negative) of the set, right when the best-scoring text is its own positive.
    func evaluateEmbeddings() throws -> Double {
        var sum = 0.0, rows = 0
        // Flat (count, H) vectors: the anchors; the corpus (positives, then negatives, per batch) with each text's ids.
        var anchors: [Float] = [], corpus: [Float] = [], corpusIDs: [[Int]] = [], own: [[Int]] = []
        let H = model.config.hiddenSize
        for b in evalRows where b.trainedTokens > 0 {
            // One forward: the batch's loss and its vectors (anchors; positives, then negatives).
            let (loss, a, cand) = try model.contrastiveLossAndVectors(try tokenBatch(b, for: model, settings: c))
            sum += Double(loss) * Double(b.rows)
            rows += b.rows
            guard let parts = b.contrastiveParts else { continue }
            anchors += a
            own += parts.map { $0[1] }
            corpus += cand
            for k in 1..<(parts.first?.count ?? 1) { corpusIDs += parts.map { $0[k] } }
        }
        evalScores = nil
        let Q = anchors.count / H, C = corpusIDs.count
        if Q > 0, C > 0, corpus.count == C * H {
            // Scores on the device, a block of anchors at a time (at most 16M scores held): anchors · corpusᵀ.
            let ctx = model.ctx
            let corpusBuffer = try ctx.buffer(corpus)
            let block = max(1, min(Q, (16 << 20) / C))
            var right = 0
            for start in stride(from: 0, to: Q, by: block) {
                let q = min(block, Q - start)
                let scores = try ctx.buffer(count: q * C)
                try ctx.matmul(scores, try ctx.buffer(Array(anchors[(start * H)..<((start + q) * H)])), corpusBuffer,
                               m: q, n: C, k: H, transB: .transposed)
                let s = try scores.read()
                for i in 0..<q where corpusIDs[Sampler.argmax(Array(s[(i * C)..<((i + 1) * C)]))] == own[start + i] { right += 1 }
            }
            evalScores = EvalScores(accuracy: Double(right) / Double(Q))
        }
        return rows > 0 ? sum / Double(rows) : .nan
    }

    /// Extractive QA: eval_loss as above, and SQuAD's exact match and F1 (percent) of the answers
    /// the QA recipe's post-processing picks from each validation question's windows (max_answer_length,
    /// n_best_size, version_2_with_negative). Pre-tokenized questions have no text to score: loss only.
    func evaluateAnswers(_ qa: QAQuestions) throws -> Double {
        var sum = 0.0, rows = 0
        var windows: [Int: [QAPrediction.Window]] = [:]
        for b in evalRows where b.trainedTokens > 0 {
            let (loss, logits) = try model.lossAndCountedLogits(try tokenBatch(b, for: model))
            sum += Double(loss) * Double(b.rows)
            rows += b.rows
            let T = b.seqLen
            guard logits.count == 2 * b.rows * T else {
                throw TrainError.data(path: "evaluation", line: b.lines.first ?? 0, reason: "the model gave \(logits.count) logits "
                    + "for \(b.rows) windows of \(T) tokens (start and end: \(2 * b.rows * T)): not an extractive-QA head")
            }
            for (r, span) in (b.answerSpans ?? []).enumerated() {
                let f = qa.features[span.feature]
                windows[f.record, default: []].append(QAPrediction.Window(row: r, of: logits, width: T, contextOffsets: f.contextOffsets))
            }
        }
        var predictions: [String] = [], golds: [[String]] = []
        for (record, ws) in windows.sorted(by: { $0.key < $1.key }) {
            guard let context = qa.records[record].context else { continue }
            predictions.append(QAPrediction.answer(context: context, windows: ws, allowNoAnswer: c.version2WithNegative,
                                                   nBest: c.nBestSize, maxAnswerLength: c.maxAnswerLength).text)
            golds.append(qa.records[record].answers.map(\.text))
        }
        evalScores = nil
        if !predictions.isEmpty {
            let s = SQuADScores.score(predictions: predictions, answers: golds)
            evalScores = EvalScores(exactMatch: s.exactMatch, f1: s.f1)
        }
        return rows > 0 ? sum / Double(rows) : .nan
    }

    /// A metrics.jsonl line, loss.svg and the printed line (rank 0).
    func log(evalLoss: Double?) throws {
        guard setup.isRoot else { return }
        let now = Date()
        let window = now.timeIntervalSince(windowStart)
        let loss = state.stepsSinceLog > 0 ? state.lossSinceLog / Double(state.stepsSinceLog) : lastLoss
        var r = MetricsRecord(step: state.globalStep, epoch: state.epoch, loss: loss, gradNorm: Double(lastGradNorm),
                              learningRate: state.scheduler.lastLr,
                              tokensPerSecond: window > 0 ? Double(windowTokens) / window : 0,
                              elapsedSeconds: elapsedBefore + now.timeIntervalSince(started), evalLoss: evalLoss)
        r.lossIsTokenCrossEntropy = model.config.task.kind == .causalLM
        if evalLoss != nil, let s = evalScores { (r.evalAccuracy, r.evalExactMatch, r.evalF1) = (s.accuracy, s.exactMatch, s.f1) }
        records.append(r)
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: trainer.metricsPath))
        h.seekToEndOfFile()
        h.write(Data((r.json + "\n").utf8))
        try h.close()
        try writeAtomically(Data(trainer.plot(records).utf8), to: outputDir + "/loss.svg")
        progress.line(r, total: setup.total)
        lastRate = r.tokensPerSecond
        state.lossSinceLog = 0
        state.stepsSinceLog = 0
        windowStart = now
        windowTokens = 0
        loggedAt = state.globalStep
    }

    /// A checkpoint of the state after this step (rank 0 writes), pruned to save_total_limit.
    func checkpoint() throws {
        guard setup.isRoot else { savedAt = state.globalStep; return }
        if let m = state.lastMetric, state.lastMetricStep == state.globalStep, state.bestMetric.map({ m < $0 }) ?? true {
            state.bestMetric = m
            state.bestStep = state.globalStep
            state.bestCheckpoint = Checkpoints.name(step: state.globalStep)
        }
        state.rng.dropoutStep = model.step
        state.elapsedSeconds = elapsedBefore + Date().timeIntervalSince(started)
        let path = try Checkpoints.save(model: model, state: state, outputDir: outputDir, baseModel: c.model,
                                        configYAML: setup.configYAML)
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
        // Higher is better: tracked negated (regression has no accuracy: its loss then).
        case "eval_accuracy": return evalLoss == nil ? nil : evalScores?.accuracy.map { -$0 } ?? evalLoss
        case "eval_exact_match": return evalLoss == nil ? nil : evalScores?.exactMatch.map { -$0 } ?? evalLoss
        case "eval_f1": return evalLoss == nil ? nil : evalScores?.f1.map { -$0 } ?? evalLoss
        default: return evalLoss   // eval_perplexity = exp(eval_loss) orders the same
        }
    }

    /// Stopped by a signal: a checkpoint of the step just finished, then out.
    func interrupted() throws -> Trainer.Outcome {
        let sig = StopSignals.received
        if savedAt != state.globalStep { try checkpoint() }
        let path = lastCheckpoint ?? outputDir
        let why = sig == SIGTERM ? "SIGTERM" : sig == SIGINT ? "SIGINT" : "a stop request"
        progress.message("stopped by \(why) after step \(state.globalStep): checkpoint \(path); "
            + "continue with --resume-from-checkpoint latest")
        setup.dist?.finalize()
        return .interrupted(step: state.globalStep, signal: sig, checkpoint: path)
    }

    /// The end: the last log, evaluation and checkpoint when the loop ended between them,
    /// then the outputs (rank 0).
    func finish() throws -> Trainer.Outcome {
        if !evalRows.isEmpty && evaluatedAt != state.globalStep && state.globalStep > 0 && state.stepsSinceLog > 0 {
            let e = try evaluate()
            try log(evalLoss: e)
            state.lastMetric = metricValue(evalLoss: e)
            state.lastMetricStep = state.globalStep
        } else if loggedAt != state.globalStep && state.stepsSinceLog > 0 {
            try log(evalLoss: nil)
        }
        if savedAt != state.globalStep && state.globalStep > 0 { try checkpoint() }
        let outcome: Trainer.Outcome = stoppedEarly ? .stoppedEarly(step: state.globalStep) : .completed(step: state.globalStep)
        if setup.isRoot { try writeOutputs() }
        setup.dist?.finalize()
        return outcome
    }

    /// output_dir's final files: the adapter (the best checkpoint's, or the last state's),
    /// the tokenizer files, README.md.
    func writeOutputs() throws {
        let fm = FileManager.default
        let finalTmp = outputDir + "/.final-adapter.tmp-\(getpid())"
        try? fm.removeItem(atPath: finalTmp)
        defer { try? fm.removeItem(atPath: finalTmp) }
        var source = finalTmp
        if c.loadBestModelAtEnd, let best = state.bestCheckpoint, fm.fileExists(atPath: outputDir + "/" + best) {
            source = outputDir + "/" + best
            progress.message("best \(c.metricForBestModel) \(String(format: "%.4f", c.shownMetric(state.bestMetric))) at step "
                + "\(state.bestStep ?? 0) (\(best)): its adapter is the one left in \(outputDir)")
        } else {
            try model.saveAdapter(directory: finalTmp, baseModel: c.model)
        }
        for f in ["adapter_model.safetensors", "adapter_config.json", SequenceClassifier.labelsFile]
        where f != SequenceClassifier.labelsFile || model.config.task.classifier != nil {
            try copyAtomically(from: source + "/" + f, to: outputDir + "/" + f)
        }
        if ModelSource.isFile(c.model) {
            // A GGUF base: its tokenizer.ggml.* metadata, as the tokenizer files transformers would write.
            if let files = try? GGUFFile(path: c.model).tokenizerFiles() {
                try writeAtomically(files.tokenizerJSON, to: outputDir + "/tokenizer.json")
                try writeAtomically(files.tokenizerConfig, to: outputDir + "/tokenizer_config.json")
            }
        } else {
            for f in Trainer.tokenizerFiles where fm.fileExists(atPath: c.model + "/" + f) {
                try writeAtomically(try Data(contentsOf: URL(fileURLWithPath: c.model + "/" + f)), to: outputDir + "/" + f)
            }
        }
        try writeAtomically(Data(trainer.readme(state: state, records: records, total: setup.total, trainCount: setup.train.count,
                                                valCount: setup.validation.count, model: model.config).utf8),
                           to: outputDir + "/README.md")
        if state.skippedBatches > 0 {
            progress.message("\(state.skippedBatches) batch(es) whose every label is -100 were skipped")
        }
        progress.message("done: \(state.globalStep) steps; adapter in \(outputDir)")
    }
}
