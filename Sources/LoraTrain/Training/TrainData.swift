import Foundation
import LoraModel
import LoraText

// The trainer's data entry points: the training (and validation) files read by
// LoraText's Dataset — JSONL of messages, ShareGPT conversations,
// prompt/completion, plain text or pre-tokenized ids, rendered through the
// model's chat template and masked so that only the assistant turns train —
// and the one place a planned batch becomes the model's TokenBatch.

/// A model without a tokenizer (a bare checkpoint): only pre-tokenized
/// `{"input_ids": …}` lines can be trained; any text line names the problem.
public struct PreTokenizedOnly: DataTokenizer {
    public let model: String
    public let vocabularySize: Int
    public init(model: String, vocabularySize: Int) {
        self.model = model
        self.vocabularySize = vocabularySize
    }
    public var eosID: Int? { nil }
    public var padID: Int? { nil }
    public func encodeIDs(_ text: String, addSpecialTokens: Bool) throws -> [Int] { throw ModelTextError.noTokenizer(model) }
    public func encodeOffsets(_ text: String) throws -> [TokenOffset] { throw ModelTextError.noTokenizer(model) }
    public func decodeIDs(_ ids: [Int]) -> String { ids.map(String.init).joined(separator: " ") }
}

/// Training and validation samples, with what the loader counted.
struct TrainingSamples {
    var train: [TokenizedSample] = []
    var validation: [TokenizedSample] = []
    /// One line per file: "FILE: N samples, T tokens (K trained), …".
    var summaries: [String] = []
    var padTokenID = 0
    /// A classifier's labels (task_type SEQ_CLS), from the data and the model's own id2label.
    var labels: ClassificationLabels?
    /// Every line that gave no sample (with --skip-bad-lines, or with no trained token), in file order.
    var skipped: [(file: String, line: Int, reason: SkipReason)] = []
    /// Extractive QA (task_type QUESTION_ANS): every question and window of the run, for scoring the
    /// validation questions (a sample's AnswerSpan.feature indexes `qa.features`).
    var qa: QAQuestions?
}

/// Extractive-QA questions and their windows (features), over every file of a run.
struct QAQuestions {
    var records: [QARecord] = []
    /// Each window; `record` indexes `records`.
    var features: [QAFeature] = []
}

/// Reads every `data` file (and `val_data`, or splits `val_split` off the
/// training samples, seeded), truncated to `max_seq_len` and masked by
/// `train_on`. `vocabSize` bounds pre-tokenized ids.
func loadTrainingSamples(_ c: TrainingConfig, vocabSize: Int, classifier: SequenceClassifier? = nil,
                         progress: ProgressPrinter? = nil) throws -> TrainingSamples {
    var out = TrainingSamples()
    let tokenizer: DataTokenizer
    var template: ConversationRenderer? = nil
    let modelText: ModelText?
    do {
        modelText = try ModelText(model: c.model, chatTemplate: c.chatTemplate, needsTemplate: false,
                                  templateVariables: c.chatTemplateKwargs)
    } catch ModelTextError.noTokenizer {
        modelText = nil
    }
    if let text = modelText {
        out.summaries += text.notes
        tokenizer = TokenizerDataAdapter(text.tokenizer)
        template = text.template
    } else {
        if c.chatTemplate != nil {
            throw TrainError.setting(source: "settings", key: "chat_template",
                                     reason: "\(c.model) has no tokenizer to render a chat template with")
        }
        tokenizer = PreTokenizedOnly(model: c.model, vocabularySize: vocabSize)
    }
    if c.lora.taskType == "SEQ_CLS" {
        return try loadClassificationSamples(c, tokenizer: tokenizer, vocabSize: vocabSize, classifier: classifier, into: out)
    }
    if c.lora.taskType == "TOKEN_CLS" {
        return try loadTaggingSamples(c, tokenizer: tokenizer, vocabSize: vocabSize, classifier: classifier, into: out)
    }
    if c.lora.taskType == "QUESTION_ANS" {
        return try loadQuestionAnsweringSamples(c, tokenizer: tokenizer, vocabSize: vocabSize, into: out)
    }
    if c.lora.taskType == "FEATURE_EXTRACTION" {
        return try loadContrastiveSamples(c, tokenizer: tokenizer, vocabSize: vocabSize, into: out)
    }
    guard let trainOn = TrainOn(rawValue: c.trainOn) else {
        throw TrainError.setting(source: "settings", key: "train_on", reason: "'\(c.trainOn)' is not one of "
            + TrainOn.allCases.map(\.rawValue).joined(separator: ", "))
    }
    let options = DatasetOptions(maxSeqLen: c.maxSeqLen, trainOn: trainOn, skipBadLines: c.skipBadLines)
    out.padTokenID = tokenizer.padID ?? tokenizer.eosID ?? 0
    func read(_ file: String) throws -> [TokenizedSample] {
        let d: LoadedDataset
        do {
            d = try Dataset.load(file: file, tokenizer: tokenizer, template: template, options: options,
                                 progress: progress?.loading(file))
        } catch DatasetError.noChatTemplate(let f, let line, let format) where tokenizer is PreTokenizedOnly {
            throw TrainError.data(path: f, line: line, reason: "\(format) samples need a tokenizer: \(ModelTextError.noTokenizer(c.model))")
        }
        if let bad = d.samples.lazy.flatMap(\.inputIDs).first(where: { $0 >= vocabSize }) {
            throw TrainError.data(path: file, line: 0, reason: "token id \(bad) is outside the model's vocabulary (size \(vocabSize))")
        }
        out.skipped += d.skipped.map { (file, $0.line, $0.reason) }
        let st = d.statistics
        out.summaries.append("\(file) (\(d.format.rawValue)): \(st.samples) samples, \(st.tokens) tokens, "
            + "\(st.trainedTokens) trained, \(st.truncated) truncated, \(st.skippedTotal) skipped; "
            + "length median \(st.lengthMedian), max \(st.lengthMax)"
            + (st.expandedConversations > 0 ? "; \(st.expandedConversations) conversation(s) expanded into \(st.expandedSamples) "
               + "samples, one per assistant turn (the chat template rewrites earlier turns)" : ""))
        return d.samples
    }
    for f in c.data + (c.valData.map { [$0] } ?? []) {
        if let note = DatasetHints.classifierNote(file: f) { out.summaries.append("note: " + note) }
    }
    // Each sample's (file, line): a conversation expanded into per-turn samples goes to one side of val_split.
    var lineKeys: [Int] = []
    for (i, f) in c.data.enumerated() {
        let samples = try read(f)
        out.train += samples
        lineKeys += samples.map { i << 40 | $0.line }
    }
    if let v = c.valData {
        out.validation = try read(v)
    } else if c.valSplit > 0 {
        (out.train, out.validation) = try Dataset.split(out.train, validationFraction: c.valSplit, seed: UInt64(c.seed), groupKeys: lineKeys)
    }
    return out
}

/// A sequence classifier's samples (SEQ_CLS): `{"text"[, "text_pair"], "label"}` or
/// `{"input_ids", "label"}` lines, labels resolved over every file of the run
/// (and the model's own id2label when its checkpoint has a classifier).
func loadClassificationSamples(_ c: TrainingConfig, tokenizer: DataTokenizer, vocabSize: Int,
                               classifier: SequenceClassifier?, into start: TrainingSamples) throws -> TrainingSamples {
    let records = try runFiles(c).map { f in (file: f, records: try ClassificationData.read(file: f)) }
    let known = classifier.map { ClassificationLabels(kind: ClassificationKind(rawValue: $0.problemType.rawValue)!, names: $0.labels) }
    let labels = try ClassificationData.labels(records, known: known,
                                               problemType: c.problemType.flatMap(ClassificationKind.init(rawValue:)))
    let summary = "labels (\(labels.kind.rawValue)): " + (labels.kind == .singleLabel
        ? labels.names.enumerated().map { "\($0.offset) \($0.element)" }.joined(separator: ", ")
        : "\(labels.names.count) output(s)")
    return try labelledSamples(c, records, labels: labels, labelSummary: summary, tokenizer: tokenizer, vocabSize: vocabSize,
                               into: start) { f, rs in
        let (samples, truncated) = try ClassificationData.samples(rs, file: f, labels: labels, tokenizer: tokenizer,
                                                                  maxSeqLen: c.maxSeqLen)
        let lengths = samples.map(\.inputIDs.count).sorted()
        return (samples, "\(f) (classification): \(samples.count) samples, \(lengths.reduce(0, +)) tokens, "
            + "\(truncated) truncated, \(rs.count - samples.count) without a label (-100); "
            + "length median \(lengths.isEmpty ? 0 : lengths[lengths.count / 2]), max \(lengths.last ?? 0)")
    }
}

/// A token classifier's samples (TOKEN_CLS): `{"tokens", "tags"|"ner_tags"}` or
/// `{"input_ids", "labels"}` lines; tag names sorted over every file of the run
/// (or the model's own labels).
func loadTaggingSamples(_ c: TrainingConfig, tokenizer: DataTokenizer, vocabSize: Int,
                        classifier: SequenceClassifier?, into start: TrainingSamples) throws -> TrainingSamples {
    let records = try runFiles(c).map { f in (file: f, records: try TaggingData.read(file: f)) }
    let names = try TaggingData.labels(records, known: classifier?.labels)
    let summary = "tags: " + names.enumerated().map { "\($0.offset) \($0.element)" }.joined(separator: ", ")
    return try labelledSamples(c, records, labels: ClassificationLabels(kind: .singleLabel, names: names), labelSummary: summary,
                               tokenizer: tokenizer, vocabSize: vocabSize, into: start) { f, rs in
        let counted = try TaggingData.samplesCounting(rs, file: f, labels: names, tokenizer: tokenizer, maxSeqLen: c.maxSeqLen,
                                                      labelAllTokens: c.labelAllTokens)
        let samples = counted.samples
        let tokens = samples.reduce(0) { $0 + $1.inputIDs.count }, trained = samples.reduce(0) { $0 + $1.trainedTokens }
        return (samples, "\(f) (tagging): \(samples.count) samples, \(tokens) tokens, \(trained) labelled, \(counted.truncated) truncated"
            + (counted.emptyWords > 0 ? ", \(counted.emptyWords) word(s) giving no token (their tags are not trained)" : ""))
    }
}

/// Extractive-QA samples (QUESTION_ANS): SQuAD-shaped or pre-tokenized lines, each question cut
/// into windows of max_seq_len with doc_stride overlap (QuestionAnsweringData). A val_split
/// keeps each question's windows together.
func loadQuestionAnsweringSamples(_ c: TrainingConfig, tokenizer: DataTokenizer, vocabSize: Int,
                                  into start: TrainingSamples) throws -> TrainingSamples {
    var out = start
    out.padTokenID = tokenizer.padID ?? tokenizer.eosID ?? 0
    var qa = QAQuestions()
    func read(_ f: String) throws -> [TokenizedSample] {
        let records = try QuestionAnsweringData.read(file: f)
        let features = try QuestionAnsweringData.features(records, file: f, tokenizer: tokenizer, maxSeqLen: c.maxSeqLen,
                                                          docStride: c.docStride)
        if let bad = features.first(where: { $0.inputIDs.contains { $0 >= vocabSize } }) {
            throw TrainError.data(path: f, line: bad.line, reason: "token id \(bad.inputIDs.first { $0 >= vocabSize }!) is outside "
                                  + "the model's vocabulary (size \(vocabSize))")
        }
        let base = qa.features.count, recordBase = qa.records.count
        qa.records += records
        var samples: [TokenizedSample] = []
        for (k, f) in features.enumerated() {
            var g = f
            g.record += recordBase
            qa.features.append(g)
            samples.append(TokenizedSample(line: f.line, inputIDs: f.inputIDs, labels: f.inputIDs.map { _ in -100 },
                                           answerSpan: AnswerSpan(start: f.start, end: f.end, feature: base + k)))
        }
        let lengths = features.map(\.inputIDs.count).sorted()
        let unanswerable = records.filter { $0.inputIDs == nil && $0.answers.isEmpty }.count
        let answered = features.filter { $0.start != 0 || $0.end != 0 }.count
        out.summaries.append("\(f) (question answering): \(records.count) questions, \(features.count) windows "
            + "(\(answered) holding the answer), \(unanswerable) unanswerable; length median "
            + "\(lengths.isEmpty ? 0 : lengths[lengths.count / 2]), max \(lengths.last ?? 0)")
        if unanswerable > 0 && !c.version2WithNegative {
            out.summaries.append("note: \(f) has \(unanswerable) question(s) without an answer: they train towards position 0; "
                + "give --version-2-with-negative so that evaluation and predict may answer nothing (SQuAD v2)")
        }
        return samples
    }
    for f in c.data { out.train += try read(f) }
    if let v = c.valData {
        out.validation = try read(v)
    } else if c.valSplit > 0 {
        let features = qa.features
        (out.train, out.validation) = try Dataset.split(out.train, validationFraction: c.valSplit, seed: UInt64(c.seed),
                                                        group: { features[$0.answerSpan!.feature].record })
    }
    out.qa = qa
    return out
}

/// Contrastive samples (FEATURE_EXTRACTION): {"anchor", "positive"[, "negative"]} lines, each text
/// tokenized with its special tokens and cut at max_seq_len; every file of a run with negatives, or
/// none.
func loadContrastiveSamples(_ c: TrainingConfig, tokenizer: DataTokenizer, vocabSize: Int,
                            into start: TrainingSamples) throws -> TrainingSamples {
    var out = start
    out.padTokenID = tokenizer.padID ?? tokenizer.eosID ?? 0
    var arity: (file: String, parts: Int)? = nil
    func read(_ f: String) throws -> [TokenizedSample] {
        let records = try ContrastiveData.read(file: f)
        let (samples, truncated) = try ContrastiveData.samples(records, file: f, tokenizer: tokenizer, maxSeqLen: c.maxSeqLen)
        if let s = samples.first(where: { $0.inputIDs.contains { $0 >= vocabSize } }) {
            throw TrainError.data(path: f, line: s.line, reason: "token id \(s.inputIDs.first { $0 >= vocabSize }!) is outside the "
                                  + "model's vocabulary (size \(vocabSize))")
        }
        if let first = samples.first?.contrastiveParts?.count {
            if let a = arity, a.parts != first {
                throw TrainError.data(path: f, line: samples[0].line, reason: "\(first == 3 ? "negatives" : "no negatives") here, "
                    + "\(a.parts == 3 ? "negatives" : "none") in \(a.file): every file of a run has a negative per line, or none does")
            }
            arity = (f, first)
        }
        let lengths = samples.flatMap { $0.contrastiveParts ?? [] }.map(\.count).sorted()
        out.summaries.append("\(f) (contrastive): \(samples.count) anchors with a positive"
            + "\((arity?.parts ?? 2) == 3 ? " and a hard negative" : "") each, \(lengths.reduce(0, +)) tokens, \(truncated) text(s) "
            + "truncated; text length median \(lengths.isEmpty ? 0 : lengths[lengths.count / 2]), max \(lengths.last ?? 0)")
        return samples
    }
    for f in c.data { out.train += try read(f) }
    if (arity?.parts ?? 2) == 2 && c.perDeviceTrainBatchSize == 1 {
        throw TrainError.setting(source: "settings", key: "per_device_train_batch_size", reason: "1 with no hard negatives: "
            + "each anchor's only candidate is its own positive, so the contrastive loss is 0 and nothing trains; give at least 2")
    }
    if let v = c.valData {
        out.validation = try read(v)
    } else if c.valSplit > 0 {
        (out.train, out.validation) = try Dataset.split(out.train, validationFraction: c.valSplit, seed: UInt64(c.seed))
    }
    return out
}

/// The run's files: the training files, then the validation file.
private func runFiles(_ c: TrainingConfig) -> [String] { c.data + (c.valData.map { [$0] } ?? []) }

/// A classifier's samples from its files' records (`tokenize` turns one file's records
/// into samples and its summary line): token ids checked against the vocabulary (the
/// first bad one named by file and line), summaries, the training/validation split.
private func labelledSamples<R>(_ c: TrainingConfig, _ records: [(file: String, records: [R])], labels: ClassificationLabels,
                                labelSummary: String, tokenizer: DataTokenizer, vocabSize: Int, into start: TrainingSamples,
                                tokenize: (String, [R]) throws -> (samples: [TokenizedSample], summary: String))
    throws -> TrainingSamples {
    var out = start
    out.labels = labels
    out.padTokenID = tokenizer.padID ?? tokenizer.eosID ?? 0
    var byFile: [String: [TokenizedSample]] = [:]
    for (f, rs) in records {
        let (samples, summary) = try tokenize(f, rs)
        if let s = samples.first(where: { $0.inputIDs.contains { $0 >= vocabSize } }), let bad = s.inputIDs.first(where: { $0 >= vocabSize }) {
            throw TrainError.data(path: f, line: s.line, reason: "token id \(bad) is outside the model's vocabulary (size \(vocabSize))")
        }
        out.summaries.append(summary)
        byFile[f] = samples
    }
    out.summaries.append(labelSummary)
    for f in c.data { out.train += byFile[f] ?? [] }
    if let v = c.valData {
        out.validation = byFile[v] ?? []
    } else if c.valSplit > 0 {
        (out.train, out.validation) = try Dataset.split(out.train, validationFraction: c.valSplit, seed: UInt64(c.seed))
    }
    return out
}

/// The one place a planned batch becomes the model's TokenBatch: positions
/// restart per packed sample, and attention and the label shift never cross
/// a sequence id. A classification batch is read where the model's
/// classifier reads (its pad_token_id; each sample's last token without one).
func tokenBatch(_ rows: BatchRows, for model: LlamaLoRAModel, settings c: TrainingConfig? = nil) throws -> TokenBatch {
    if let parts = rows.contrastiveParts {
        guard let c, parts.count == rows.rows, let arity = parts.first?.count, parts.allSatisfy({ $0.count == arity }) else {
            throw TrainError.data(path: "batch", line: rows.lines.first ?? 0, reason: "a contrastive batch needs the run's pooling "
                                  + "and temperature and an anchor, a positive (and a negative) per row")
        }
        return try TokenBatch.contrastive(anchors: parts.map { $0[0] }, positives: parts.map { $0[1] },
                                          negatives: arity == 3 ? parts.map { $0[2] } : nil, padTokenID: rows.padTokenID,
                                          pooling: Pooling(rawValue: c.pooling) ?? .mean, scale: Float(1 / c.temperature))
    }
    if model.config.task.kind == .questionAnswering {
        guard let spans = rows.answerSpans, spans.count == rows.rows else {
            throw TrainError.data(path: "batch", line: rows.lines.first ?? 0, reason: "an extractive-QA batch needs an answer span per row")
        }
        return try TokenBatch.questionAnswering(inputIDs: rows.inputIDs, spans: spans.map { ($0.start, $0.end) })
    }
    if model.config.task.tokenClassifier != nil {
        return try TokenBatch.tokenClassification(inputIDs: rows.inputIDs, labels: rows.labels)
    }
    if let targets = rows.classTargets {
        let t: TokenBatch.ClassTargets
        if case .classID? = targets.first {
            t = .classes(targets.map { if case .classID(let i) = $0 { return i }; return -100 })
        } else {
            t = .reals(targets.map { if case .reals(let v) = $0 { return v }; return [] })
        }
        return try TokenBatch.sequenceClassification(inputIDs: rows.inputIDs, padTokenID: model.config.padTokenID,
                                                     lengths: rows.lengths, targets: t)
    }
    return try TokenBatch(inputIDs: rows.inputIDs, labels: rows.labels, positionIDs: rows.positionIDs,
                          sequenceIDs: rows.sequenceIDs)
}
