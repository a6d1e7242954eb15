import Foundation
import LoraBase
import LoraModel
import LoraText

/// A QUESTION_ANS adapter on its base, run over a JSONL file of questions: one
/// answer per line (the QA recipe's post-processing over the question's windows),
/// and SQuAD's exact match and F1 where the lines carry answers.
public enum AnswerPrediction {
    /// The run's QA settings: the adapter's training_config.yaml where it has them, else run_qa.py's defaults.
    public struct Settings: Sendable {
        public var maxSeqLen: Int
        public var docStride = 128
        public var maxAnswerLength = 30
        public var nBestSize = 20
        public var allowNoAnswer = false

        /// max_seq_len: the training run's, else run_qa.py's 384 (capped at the model's positions).
        public init(adapter: String, modelPositions: Int) {
            let run = SavedRunSettings(adapter: adapter)
            maxSeqLen = min(run?.int("max_seq_len") ?? 384, modelPositions)
            guard let run else { return }
            docStride = run.int("doc_stride") ?? docStride
            maxAnswerLength = run.int("max_answer_length") ?? maxAnswerLength
            nBestSize = run.int("n_best_size") ?? nBestSize
            allowNoAnswer = run.bool("version_2_with_negative") ?? allowNoAnswer
        }
    }

    public struct Answer: Sendable {
        public var line: Int
        public var id: String
        /// The answer's text ("" : no answer, with version_2_with_negative; "empty": no valid span, as the recipe says).
        public var text: String
        /// Where it starts in the context, in characters (nil: no span, or a pre-tokenized line).
        public var start: Int?
        /// A pre-tokenized line's answer: its first and last token.
        public var tokens: ClosedRange<Int>?
        public var score: Float
        /// The gold answers when the line has them ([]: unanswerable).
        public var gold: [String]?
        /// Each window's start and end logits (its own length), in window order.
        public var logits: [(start: [Float], end: [Float])]
    }

    /// Every question of `file`, `batchSize` windows at a time.
    public static func run(model m: LlamaLoRAModel, file: String, tokenizer: DataTokenizer, settings s: Settings, batchSize: Int,
                           progress: (Int, Int) -> Void = { _, _ in }) throws -> [Answer] {
        guard m.config.task.kind == .questionAnswering else {
            throw TrainError.setting(source: "model", key: "task_type", reason: "not an extractive-QA model")
        }
        let records = try QuestionAnsweringData.read(file: file, requireAnswers: false)
        let features = try QuestionAnsweringData.features(records, file: file, tokenizer: tokenizer, maxSeqLen: s.maxSeqLen,
                                                          docStride: min(s.docStride, s.maxSeqLen - 1))
        var windows = [[QAPrediction.Window]](repeating: [], count: records.count)
        let pad = m.config.padTokenID ?? 0
        for start in stride(from: 0, to: features.count, by: batchSize) {
            let chunk = Array(features[start..<min(start + batchSize, features.count)])
            for f in chunk {
                if let bad = f.inputIDs.first(where: { $0 >= m.config.vocabSize }) {
                    throw DatasetError.badLine(DatasetLineError(file: file, line: f.line, reason:
                        "token id \(bad) is outside the model's vocabulary (size \(m.config.vocabSize))"))
                }
            }
            let width = chunk.map(\.inputIDs.count).max()!
            let rows = chunk.map { $0.inputIDs + [Int](repeating: pad, count: width - $0.inputIDs.count) }
            let (_, logits) = try m.lossAndCountedLogits(try TokenBatch.unlabelled(rows, lengths: chunk.map(\.inputIDs.count), for: m.config))
            guard logits.count == 2 * chunk.count * width else {
                throw TrainError.setting(source: "model", key: "task_type", reason: "the model gave \(logits.count) logits for "
                    + "\(chunk.count) windows of \(width) tokens: not an extractive-QA head")
            }
            for (r, f) in chunk.enumerated() {
                let n = f.inputIDs.count
                // A pre-tokenized line has no context text: every token may be part of the span.
                let offsets = records[f.record].context == nil ? (0..<n).map { Optional($0..<($0 + 1)) } : f.contextOffsets
                windows[f.record].append(QAPrediction.Window(row: r, of: logits, width: width, contextOffsets: offsets))
            }
            progress(min(start + batchSize, features.count), features.count)
        }
        return records.enumerated().map { k, r in
            let pretokenized = r.context == nil
            let context = r.context ?? String(repeating: "x", count: r.inputIDs?.count ?? 0)
            let a = QAPrediction.answer(context: context, windows: windows[k], allowNoAnswer: s.allowNoAnswer, nBest: s.nBestSize,
                                        maxAnswerLength: s.maxAnswerLength)
            var start: Int? = nil
            if !pretokenized, let b = a.bytes { start = String(decoding: Array(context.utf8)[..<b.lowerBound], as: UTF8.self).unicodeScalars.count }
            let gold: [String]? = pretokenized || !r.hasAnswers ? nil : r.answers.map(\.text)
            return Answer(line: r.line, id: r.id, text: pretokenized ? "" : a.text, start: start,
                          tokens: pretokenized ? a.tokens : nil, score: a.score, gold: gold,
                          logits: windows[k].map { ($0.start, $0.end) })
        }
    }

    /// SQuAD's (exact match, F1) in percent over the lines with answers; nil when none has.
    public static func scores(_ answers: [Answer]) -> (count: Int, exactMatch: Double, f1: Double)? {
        let scored = answers.filter { $0.gold != nil }
        guard !scored.isEmpty else { return nil }
        let s = SQuADScores.score(predictions: scored.map(\.text), answers: scored.map { $0.gold! })
        return (scored.count, s.exactMatch, s.f1)
    }

    /// One JSONL line: the line, its id, the answer (text and start in characters, or token
    /// positions for a pre-tokenized line), the score (start + end logit), the gold answers, and
    /// with `logits` each window's start and end logits.
    public static func json(_ a: Answer, logits: Bool = false) -> String {
        var o = OrderedMap<JSONValue>()
        o["line"] = .int(a.line)
        o["id"] = .string(a.id)
        if let t = a.tokens {
            o["start_positions"] = .int(t.lowerBound)
            o["end_positions"] = .int(t.upperBound)
        } else {
            o["prediction_text"] = .string(a.text)
            o["answer_start"] = a.start.map { .int($0) } ?? .null
        }
        o["score"] = .double(Double(a.score))
        if let g = a.gold { o["answers"] = .array(g.map { .string($0) }) }
        if logits {
            o["windows"] = .array(a.logits.map { w in
                .object(["start_logits": .array(w.start.map { .double(Double($0)) }), "end_logits": .array(w.end.map { .double(Double($0)) })])
            })
        }
        return JSONValue.object(o).serialized(JSONStyle())
    }
}
