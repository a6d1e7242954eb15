import Foundation
import LoraBase
import LoraModel
import LoraOps
import LoraText

/// A SEQ_CLS adapter on its base, run over a JSONL file: one prediction per
/// line, and the task's scores where the lines carry labels.
public enum ClassifierPrediction {
    /// The base with the adapter as the classifier it was trained as: a
    /// *ForSequenceClassification checkpoint's own head, or a causal base
    /// given the adapter's labels.json (num_labels, id2label, problem_type,
    /// pad_token_id).
    public static func loadModel(_ path: String, adapter: String, context ctx: ComputeContext,
                                 quantize: QuantizeMode = .auto) throws -> LlamaLoRAModel {
        try AdapterModel.load(path, adapter: adapter, context: ctx, quantize: quantize) { lora, adapter in
            guard ["SEQ_CLS", "TOKEN_CLS", "QUESTION_ANS"].contains(lora.taskType) else {
                throw TrainError.setting(source: adapter + "/adapter_config.json", key: "task_type",
                                         reason: "\(lora.taskType): predict runs a classifier (SEQ_CLS, TOKEN_CLS) or extractive-QA "
                                            + "(QUESTION_ANS) adapter; " + (lora.taskType == "FEATURE_EXTRACTION"
                                                ? "an embedder's vectors come from `lora-gpu embed`" : "for a causal LM use `lora-gpu generate`"))
            }
        }
    }

    /// The model's tokenizer; without one (a bare checkpoint) only pre-tokenized lines work.
    /// A tokenizer that fails to load is an error, not a fallback.
    public static func tokenizer(model: String, vocabularySize: Int) throws -> DataTokenizer {
        do {
            return TokenizerDataAdapter(try ModelText(model: model, chatTemplate: nil, needsTemplate: false).tokenizer)
        } catch ModelTextError.noTokenizer {
            return PreTokenizedOnly(model: model, vocabularySize: vocabularySize)
        }
    }

    /// max_seq_len of the run that wrote the adapter (its training_config.yaml), so that
    /// prediction truncates as evaluation did; nil when the file is not there.
    public static func trainedMaxSeqLen(adapter: String) -> Int? { SavedRunSettings(adapter: adapter)?.int("max_seq_len") }

    public struct Prediction: Sendable {
        public var line: Int
        /// The pooled logits (num_labels).
        public var logits: [Float]
        public var target: ClassTarget?
    }

    public struct Scores: Sendable {
        public var count: Int
        public var accuracy: Double?
        public var f1: Double?
        /// Regression: the mean squared error.
        public var meanSquaredError: Double?
        public var summary: String {
            var parts = ["\(count) labelled"]
            if let a = accuracy { parts.append("accuracy \(String(format: "%.4f", a))") }
            if let f = f1 { parts.append("F1 \(String(format: "%.4f", f))") }
            if let e = meanSquaredError { parts.append("MSE \(String(format: "%.6f", e))") }
            return parts.joined(separator: ", ")
        }
    }

    /// A token classifier's output for one line: a tag per input word (nil where the
    /// word gives no sub-token, or was cut by truncation), read at the word's first
    /// sub-token; for a pre-tokenized line, a tag per labelled token (every token
    /// without labels). The true tags when the line has them (nil: -100, untrained).
    public struct TagPrediction: Sendable {
        public var line: Int
        public var predicted: [String?]
        public var truth: [String?]?
        public var truncated: Bool
        public var logits: [[Float]]

        /// The (predicted, true) tags of the words that have both, for scoring.
        public var scored: (predicted: [String], truth: [String])? {
            guard let truth else { return nil }
            var p: [String] = [], t: [String] = []
            for (a, b) in zip(predicted, truth) { if let a, let b { p.append(a); t.append(b) } }
            return (p, t)
        }
    }

    /// Every line of `file` through the token classifier, `batchSize` sentences at a time.
    public static func runTagger(model m: LlamaLoRAModel, file: String, tokenizer: DataTokenizer, maxSeqLen: Int,
                                 batchSize: Int, progress: (Int, Int) -> Void = { _, _ in }) throws -> [TagPrediction] {
        guard let tagger = m.config.task.tokenClassifier else {
            throw TrainError.setting(source: "model", key: "task_type", reason: "not a token classifier")
        }
        let records = try TaggingData.read(file: file, requireLabels: false)
        let C = tagger.numLabels
        var out: [TagPrediction] = []
        for start in stride(from: 0, to: records.count, by: batchSize) {
            let chunk = Array(records[start..<min(start + batchSize, records.count)])
            // Per output entry, the token read (nil: none) and the true tag (nil: untrained).
            var ids: [[Int]] = [], read: [[Int?]] = [], truth: [[String?]?] = [], cut: [Bool] = []
            for r in chunk {
                func fail(_ why: String) -> DatasetError { .badLine(DatasetLineError(file: file, line: r.line, reason: why)) }
                func name(_ k: Int) throws -> String? {
                    if k == -100 { return nil }
                    guard (0..<C).contains(k) else { throw fail("class id \(k) is not below num_labels \(C)") }
                    return tagger.labels[k]
                }
                if let given = r.inputIDs {
                    let t = Array(given.prefix(maxSeqLen))
                    ids.append(t)
                    cut.append(given.count > t.count)
                    let labels = r.tokenLabels.map { Array($0.prefix(maxSeqLen)) }
                    let positions = labels.map { l in l.indices.filter { l[$0] != -100 } } ?? Array(t.indices)
                    read.append(positions)
                    truth.append(try labels.map { l in try positions.map { try name(l[$0]) } })
                } else {
                    let words = r.words ?? []
                    let e = try tokenizer.encodeWords(words, maxLength: maxSeqLen)
                    ids.append(e.ids)
                    cut.append(e.truncated)
                    var first = [Int?](repeating: nil, count: words.count)
                    for (i, w) in e.wordIDs.enumerated() { if let w, first[w] == nil { first[w] = i } }
                    read.append(first)
                    truth.append(try r.tags.map { tags in try tags.map { t -> String? in
                        switch t {
                        case .name(let n):
                            guard tagger.labels.contains(n) else {
                                throw fail("tag '\(n)' is not one of the tagger's labels (\(tagger.labels.joined(separator: ", ")))")
                            }
                            return n
                        case .id(let k): return try name(k)
                        }
                    } })
                }
                if let bad = ids.last!.first(where: { $0 >= m.config.vocabSize }) {
                    throw fail("token id \(bad) is outside the model's vocabulary (size \(m.config.vocabSize))")
                }
                if ids.last!.isEmpty { throw fail("the line gives no token") }
            }
            let width = ids.map(\.count).max()!
            let rows = ids.map { $0 + [Int](repeating: m.config.padTokenID ?? 0, count: width - $0.count) }
            let b = try TokenBatch.unlabelled(rows, lengths: ids.map(\.count), for: m.config)
            let logits = try m.logits(b)
            for (k, r) in chunk.enumerated() {
                let perToken = (0..<ids[k].count).map { i in Array(logits[((k * width + i) * C)..<((k * width + i + 1) * C)]) }
                let predicted = read[k].map { pos -> String? in
                    guard let i = pos else { return nil }
                    return tagger.labels[Sampler.argmax(perToken[i])]
                }
                out.append(TagPrediction(line: r.line, predicted: predicted, truth: truth[k], truncated: cut[k], logits: perToken))
            }
            progress(out.count, records.count)
        }
        return out
    }

    /// One JSONL line of a tagger's output (null where a word has no prediction or no trained tag).
    public static func json(_ p: TagPrediction) -> String {
        var o = OrderedMap<JSONValue>()
        o["line"] = .int(p.line)
        o["prediction"] = .array(p.predicted.map { $0.map { .string($0) } ?? .null })
        if let t = p.truth { o["label"] = .array(t.map { $0.map { .string($0) } ?? .null }) }
        if p.truncated { o["truncated"] = .bool(true) }
        o["logits"] = .array(p.logits.map { .array($0.map { .double(Double($0)) }) })
        return JSONValue.object(o).serialized(JSONStyle())
    }

    /// Every record of `file` through the classifier, `batchSize` rows at a time.
    public static func run(model m: LlamaLoRAModel, file: String, tokenizer: DataTokenizer, maxSeqLen: Int, batchSize: Int,
                           progress: (Int, Int) -> Void = { _, _ in }) throws -> [Prediction] {
        guard let cls = m.config.task.classifier else { throw TrainError.setting(source: "model", key: "task_type", reason: "not a classifier") }
        let records = try ClassificationData.read(file: file, requireLabel: false)
        let labels = ClassificationLabels(kind: ClassificationKind(rawValue: cls.problemType.rawValue)!, names: cls.labels)
        let pad = m.config.padTokenID ?? 0
        var out: [Prediction] = []
        for start in stride(from: 0, to: records.count, by: batchSize) {
            let chunk = Array(records[start..<min(start + batchSize, records.count)])
            let ids = try chunk.map { r -> [Int] in
                let t = try ClassificationData.tokens(r, file: file, tokenizer: tokenizer, maxSeqLen: maxSeqLen).ids
                if let bad = t.first(where: { $0 >= m.config.vocabSize }) {
                    throw DatasetError.badLine(DatasetLineError(file: file, line: r.line, reason:
                        "token id \(bad) is outside the model's vocabulary (size \(m.config.vocabSize))"))
                }
                return t
            }
            let width = ids.map(\.count).max()!
            let rows = ids.map { $0 + [Int](repeating: pad, count: width - $0.count) }
            let b = try TokenBatch.unlabelled(rows, lengths: ids.map(\.count), for: m.config)
            let logits = try m.classifierLogits(b)
            for (i, r) in chunk.enumerated() {
                if r.label != nil, ClassificationData.target(r, labels) == nil {
                    throw DatasetError.badLine(DatasetLineError(file: file, line: r.line, reason:
                        "label does not fit the classifier's labels (\(cls.labels.joined(separator: ", ")))"))
                }
                out.append(Prediction(line: r.line, logits: Array(logits[(i * cls.numLabels)..<((i + 1) * cls.numLabels)]),
                                      target: ClassificationData.target(r, labels)))
            }
            progress(out.count, records.count)
        }
        return out
    }

    /// The task's scores over the labelled predictions (nil when none is labelled).
    public static func scores(_ p: [Prediction], classifier cls: SequenceClassifier) -> Scores? {
        let labelled = p.filter { $0.target != nil && $0.target != .classID(-100) }
        guard !labelled.isEmpty else { return nil }
        let logits = labelled.flatMap(\.logits)
        var s = Scores(count: labelled.count)
        switch cls.problemType {
        case .singleLabel:
            let y = labelled.map { if case .classID(let i)? = $0.target { return i }; return -100 }
            let r = ClassificationScores.singleLabel(logits: logits, labels: y, classes: cls.numLabels)
            (s.accuracy, s.f1) = (r.accuracy, r.macroF1)
        case .multiLabel:
            let t = labelled.map { if case .reals(let v)? = $0.target { return v }; return [] }
            let r = ClassificationScores.multiLabel(logits: logits, targets: t)
            (s.accuracy, s.f1) = (r.accuracy, r.microF1)
        case .regression:
            let t = labelled.flatMap { if case .reals(let v)? = $0.target { return v }; return [] }
            s.meanSquaredError = zip(logits, t).reduce(0) { $0 + Double(($1.0 - $1.1) * ($1.0 - $1.1)) } / Double(t.count)
        }
        return s
    }

    /// One JSONL line: the line number, the prediction in the labels' names, the logits (and the label when given).
    public static func json(_ p: Prediction, classifier cls: SequenceClassifier) -> String {
        var o = OrderedMap<JSONValue>()
        o["line"] = .int(p.line)
        switch cls.problemType {
        case .singleLabel:
            let best = Sampler.argmax(p.logits)
            let m = p.logits.max()!, z = p.logits.reduce(0) { $0 + exp(Double($1 - m)) }
            o["prediction"] = .string(cls.labels[best])
            o["score"] = .double(exp(Double(p.logits[best] - m)) / z)
            if case .classID(let i)? = p.target, i >= 0 { o["label"] = .string(cls.labels[i]) }
        case .multiLabel:
            o["prediction"] = .array(p.logits.indices.filter { p.logits[$0] > 0 }.map { .string(cls.labels[$0]) })
            if case .reals(let v)? = p.target { o["label"] = .array(v.indices.filter { v[$0] >= 0.5 }.map { .string(cls.labels[$0]) }) }
        case .regression:
            o["prediction"] = p.logits.count == 1 ? .double(Double(p.logits[0])) : .array(p.logits.map { .double(Double($0)) })
            if case .reals(let v)? = p.target { o["label"] = v.count == 1 ? .double(Double(v[0])) : .array(v.map { .double(Double($0)) }) }
        }
        o["logits"] = .array(p.logits.map { .double(Double($0)) })
        return JSONValue.object(o).serialized(JSONStyle())
    }
}

extension ModelConfig {
    /// The config `inspect` shows for `lora`: a classifier task on a causal base takes
    /// the adapter's labels.json when `path` is an adapter (directory or its
    /// adapter_config.json); otherwise a 2-label stand-in (training takes the
    /// labels from the data), said in the note.
    public func forInspection(lora: LoraConfig, path: String?) throws -> (config: ModelConfig, note: String?) {
        if let config = withoutLabelsHead(taskType: lora.taskType) {
            return (config, lora.taskType == "QUESTION_ANS"
                ? "QUESTION_ANS on a causal base: training makes qa_outputs (hidden → 2, with a bias)"
                : "FEATURE_EXTRACTION on a causal base: its trunk, no head (transformers' AutoModel)")
        }
        guard lora.taskType == "SEQ_CLS" || lora.taskType == "TOKEN_CLS", task.kind == .causalLM else { return (self, nil) }
        if let path {
            var isDir: ObjCBool = false
            let dir = FileManager.default.fileExists(atPath: path, isDirectory: &isDir) && isDir.boolValue
                ? path : (path as NSString).deletingLastPathComponent
            if FileManager.default.fileExists(atPath: dir + "/" + SequenceClassifier.labelsFile) {
                return (try forAdapter(dir, lora: lora, basePath: "the base"), nil)
            }
        }
        let standIn = SequenceClassifier.defaultLabels(2)
        return (lora.taskType == "TOKEN_CLS" ? tagging(.tokens(labels: standIn)) : classifying(SequenceClassifier(labels: standIn)),
                "\(lora.taskType) on a causal base: shown with 2 labels; training makes the head with the data's labels "
                    + "(num_labels from them)")
    }

    /// The base's config as an adapter of `lora`'s task needs it: for SEQ_CLS on a
    /// causal base, the classifier of the adapter's labels.json (num_labels,
    /// id2label, problem_type, pad_token_id); a classifier checkpoint keeps its own
    /// head (the pad id from labels.json when its config has none).
    public func forAdapter(_ adapter: String, lora: LoraConfig, basePath: String) throws -> ModelConfig {
        // QUESTION_ANS: the adapter's qa_outputs (under modules_to_save) is the head; FEATURE_EXTRACTION: none.
        if let config = withoutLabelsHead(taskType: lora.taskType) { return config }
        guard lora.taskType == "SEQ_CLS" || lora.taskType == "TOKEN_CLS" else { return self }
        let tags = lora.taskType == "TOKEN_CLS"
        let saved = try SequenceClassifier.load(adapterDirectory: adapter)
        var config = self
        if var own = config.task.classifier {
            // The checkpoint's head; its default names (LABEL_k) give way to the names training wrote.
            if let saved, own.labels.allSatisfy({ $0.hasPrefix("LABEL_") }), saved.classifier.numLabels == own.numLabels {
                own.labels = saved.classifier.labels
                if own.problemTypeInferred { own.problemType = saved.classifier.problemType }
                config.task = tags ? .tokenClassification(own) : .sequenceClassification(own)
            }
        } else {
            guard let saved else {
                throw TrainError.setting(source: adapter, key: SequenceClassifier.labelsFile,
                                         reason: "missing: the base \(basePath) is a causal LM, so the \(tags ? "tagger" : "classifier")'s "
                                            + "labels (num_labels, id2label\(tags ? "" : ", problem_type")) must come from the adapter's labels.json")
            }
            config = tags ? config.tagging(.tokens(labels: saved.classifier.labels)) : config.classifying(saved.classifier)
        }
        if !tags, config.padTokenID == nil { config.padTokenID = saved?.padTokenID }
        return config
    }
}
