import ArgumentParser
import Foundation
import LoraBase
import LoraModel
import LoraText
import LoraTrain

struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a classifier (SEQ_CLS, TOKEN_CLS) or extractive-QA (QUESTION_ANS) adapter over a JSONL file: one prediction per line, and the scores.",
        discussion: """
            Lines are {"text": …[, "text_pair": …][, "label": …]} or {"input_ids": […][, "label": …]}, as for training. \
            Each output line holds the line number, the prediction in the classifier's label names (with its softmax \
            score for a single-label classifier), the label when the line has one, and the logits. Lines with labels \
            are scored: accuracy and macro-F1 (single-label), subset accuracy and micro-F1 (multi-label), MSE (regression). \
            A TOKEN_CLS adapter reads {"tokens": […][, "tags": […]]} (or {"input_ids", "labels"}) lines and writes a tag \
            per input word (read at its first sub-token; null for a word that gives no token or was truncated), the true \
            tags when given, and every token's logits; it scores token accuracy and entity precision, recall and F1 as \
            seqeval does, over the words (training's evaluation with --label-all-tokens scores every labelled sub-token, \
            as run_ner.py does). \
            A QUESTION_ANS adapter reads {"question", "context"[, "answers"]} lines (or {"input_ids"[, "start_positions", \
            "end_positions"]}) and writes the answer as the QA recipe picks it over the question's windows of the context \
            (doc_stride, max_answer_length, n_best_size and version_2_with_negative from the adapter's training_config.yaml): \
            prediction_text and answer_start (characters), or token positions for a pre-tokenized line; lines with answers \
            are scored with SQuAD's exact match and F1. \
            The base may be a causal LM (the adapter's labels.json rebuilds the classifier) or the \
            *ForSequenceClassification / *ForTokenClassification checkpoint it was trained from.
            """)

    @OptionGroup var deviceOption: DeviceOption
    @OptionGroup var quantizeOption: QuantizeOption
    @Option(help: "The base model: a Hugging Face model directory or a GGUF file.") var model: String
    @Option(help: "A SEQ_CLS, TOKEN_CLS or QUESTION_ANS adapter directory (adapter_config.json, adapter_model.safetensors; labels.json for a classifier).") var adapter: String
    @Option(help: "JSONL lines to classify.") var data: String
    @Option(help: "Where to write the predictions (JSONL; default: stdout).") var output: String?
    @Option(name: .customLong("batch-size"), parsing: .unconditional) var batchSize: Int = 8
    @Option(name: .customLong("max-seq-len"), parsing: .unconditional,
            help: "Texts are truncated to this many tokens (default: the training run's max_seq_len from the adapter's training_config.yaml, else the model's positions).")
    var maxSeqLen: Int?
    @Flag(help: "QUESTION_ANS: also write each window's start and end logits (\"windows\").") var logits = false

    func validate() throws {
        guard batchSize >= 1 else { throw ValidationError("--batch-size must be ≥ 1, got \(batchSize)") }
        if let m = maxSeqLen, m < 1 { throw ValidationError("--max-seq-len must be ≥ 1, got \(m)") }
    }

    func run() throws {
        let ctx = try deviceOption.context(model: model, quantize: try quantizeOption.mode())
        let m = try ClassifierPrediction.loadModel(model, adapter: adapter, context: ctx, quantize: try quantizeOption.mode())
        let tokenizer = try ClassifierPrediction.tokenizer(model: model, vocabularySize: m.config.vocabSize)
        if m.config.task.kind == .questionAnswering {
            var settings = AnswerPrediction.Settings(adapter: adapter, modelPositions: m.config.maxPositionEmbeddings)
            if let l = maxSeqLen { settings.maxSeqLen = min(l, m.config.maxPositionEmbeddings) }
            let answers = try AnswerPrediction.run(model: m, file: data, tokenizer: tokenizer, settings: settings, batchSize: batchSize,
                                                   progress: CommandOutput.counter("windows"))
            CommandOutput.endCounter()
            try CommandOutput.write(Data(answers.map { AnswerPrediction.json($0, logits: logits) + "\n" }.joined().utf8), to: output,
                                    count: answers.count, what: "answers")
            if let s = AnswerPrediction.scores(answers) {
                FileHandle.standardError.write(Data(("question_answering: \(s.count) with answers, exact match "
                    + String(format: "%.2f", s.exactMatch) + ", F1 " + String(format: "%.2f", s.f1) + " (SQuAD's, percent)\n").utf8))
            }
            return
        }
        guard let cls = m.config.task.classifier else { return }
        let trained = ClassifierPrediction.trainedMaxSeqLen(adapter: adapter)
        let maxLen = min(maxSeqLen ?? trained ?? m.config.maxPositionEmbeddings, m.config.maxPositionEmbeddings)
        if m.config.task.tokenClassifier != nil {
            let tagged = try ClassifierPrediction.runTagger(model: m, file: data, tokenizer: tokenizer, maxSeqLen: maxLen,
                                                            batchSize: batchSize, progress: CommandOutput.counter("predicted"))
            CommandOutput.endCounter()
            try CommandOutput.write(Data(tagged.map { ClassifierPrediction.json($0) + "\n" }.joined().utf8), to: output,
                                    count: tagged.count, what: "predictions")
            let scored = tagged.compactMap(\.scored)
            let cut = tagged.filter(\.truncated).count
            if cut > 0 {
                FileHandle.standardError.write(Data(("\(cut) line(s) truncated at \(maxLen) tokens: their last words have no "
                    + "prediction (null)\n").utf8))
            }
            if !scored.isEmpty {
                let s = TaggingScores.score(predicted: scored.map(\.predicted), truth: scored.map(\.truth))
                FileHandle.standardError.write(Data(("token_classification: \(scored.count) labelled, token accuracy "
                    + String(format: "%.4f", s.accuracy) + ", entity precision " + String(format: "%.4f", s.precision)
                    + ", recall " + String(format: "%.4f", s.recall) + ", F1 " + String(format: "%.4f", s.f1) + "\n").utf8))
            }
            return
        }
        let predictions = try ClassifierPrediction.run(model: m, file: data, tokenizer: tokenizer, maxSeqLen: maxLen,
                                                       batchSize: batchSize, progress: CommandOutput.counter("predicted"))
        CommandOutput.endCounter()
        try CommandOutput.write(Data(predictions.map { ClassifierPrediction.json($0, classifier: cls) + "\n" }.joined().utf8),
                                to: output, count: predictions.count, what: "predictions")
        if let s = ClassifierPrediction.scores(predictions, classifier: cls) {
            FileHandle.standardError.write(Data("\(cls.problemType.rawValue): \(s.summary)\n".utf8))
        }
    }
}

