import Foundation
import LoraBase

// JSONL for extractive question answering (task_type QUESTION_ANS), in SQuAD's shape:
//
//   {"id": "q1", "question": "企鹅生活在哪里？", "context": "企鹅几乎只生活在南半球。…",
//    "answers": {"text": ["南半球"], "answer_start": [8]}}
//   {"question": …, "context": …, "answers": {"text": [], "answer_start": []}}   (unanswerable: SQuAD v2)
//   {"input_ids": [Int…], "start_positions": 5, "end_positions": 7}              (pre-tokenized, transformers' names)
//
// answer_start counts characters (Unicode scalars, as Python's str does). Each
// question/context pair becomes one or more features as transformers' QA recipe
// (run_qa.py) makes them: `tokenizer(question.lstrip(), context,
// truncation="only_second", max_length=max_seq_len, stride=doc_stride,
// return_overflowing_tokens=True, return_offsets_mapping=True)`; a window that
// holds the first answer whole points at its first and last token, any other
// window at position 0 (the recipe's CLS/BOS index — position 0 for every
// tokenizer here), and so does an unanswerable question. Departures, each where
// the recipe's labels are a span its own post-processing can never answer: its
// walks stay inside the context (run_qa.py's may end on a trailing special token
// or start in the question), and where the start lands after the end (a
// one-character answer split into byte pieces sharing its offsets) the two are
// swapped.

public struct QAAnswer: Equatable, Sendable {
    public var text: String
    /// Where the answer starts in the context, in characters.
    public var start: Int
    public init(text: String, start: Int) {
        self.text = text
        self.start = start
    }
}

public struct QARecord: Equatable, Sendable {
    public var line: Int
    /// The line's "id", else "line N".
    public var id: String
    public var question: String?
    public var context: String?
    /// Gold answers; empty for an unanswerable question (and for unlabelled prediction lines).
    public var answers: [QAAnswer]
    /// Whether the line gave "answers" (or start/end positions): false for an unlabelled prediction line.
    public var hasAnswers = false
    /// Pre-tokenized lines.
    public var inputIDs: [Int]?
    public var startPosition: Int?
    public var endPosition: Int?
}

/// One row the model sees: a question with one window of its context.
public struct QAFeature: Equatable, Sendable {
    /// The record (index in its file's records) the window comes from.
    public var record: Int
    public var line: Int
    public var inputIDs: [Int]
    public var start: Int
    public var end: Int
    /// Each token's byte range in the context; nil for the question's and special tokens (and for
    /// pre-tokenized lines): where an answer span may lie.
    public var contextOffsets: [Range<Int>?]
}

public enum QuestionAnsweringData {
    public static func read(file: String, requireAnswers: Bool = true) throws -> [QARecord] {
        try JSONLReader.read(file: file).map { try parse($0.bytes, file: file, line: $0.line, requireAnswers: requireAnswers) }
    }

    static func parse(_ bytes: [UInt8], file: String, line: Int, requireAnswers: Bool = true) throws -> QARecord {
        let (o, fail) = try JSONLReader.object(bytes, file: file, line: line)
        var id = "line \(line)"
        if let v = o["id"] {
            if let s = v.string { id = s } else if let i = v.integral { id = String(i) } else { throw fail("\"id\" must be a string or an integer") }
        }
        var r = QARecord(line: line, id: id, question: nil, context: nil, answers: [], inputIDs: nil, startPosition: nil, endPosition: nil)
        if let ids = o["input_ids"] {
            guard let a = ids.array, !a.isEmpty else { throw fail("\"input_ids\" must be a non-empty list of token ids") }
            r.inputIDs = try a.enumerated().map { i, x in
                guard let v = x.integral, v >= 0 else { throw fail("input_ids[\(i)] = \(x.shortDescription) is not a token id") }
                return v
            }
            for key in ["start_positions", "end_positions"] {
                guard let v = o[key] else {
                    if requireAnswers {
                        throw fail("no \"\(key)\": a pre-tokenized QA line is {\"input_ids\": […], \"start_positions\": N, \"end_positions\": M}")
                    }
                    continue
                }
                guard let p = v.integral, p >= 0, p < a.count else {
                    throw fail("\"\(key)\" = \(v.shortDescription) is not a token position of this line (0…\(a.count - 1))")
                }
                if key == "start_positions" { r.startPosition = p } else { r.endPosition = p }
            }
            r.hasAnswers = r.startPosition != nil && r.endPosition != nil
            if let s = r.startPosition, let e = r.endPosition, e < s {
                throw fail("\"end_positions\" \(e) is before \"start_positions\" \(s)")
            }
            return r
        }
        guard let q = o["question"]?.string, let c = o["context"]?.string else {
            throw fail("a QA line is {\"question\": …, \"context\": …, \"answers\": {\"text\": […], \"answer_start\": […]}} "
                       + "(or \"input_ids\" + \"start_positions\" + \"end_positions\"); keys here: " + o.keys.joined(separator: ", "))
        }
        r.question = q
        r.context = c
        r.hasAnswers = o["answers"] != nil
        guard let answers = o["answers"] else {
            if requireAnswers { throw fail("no \"answers\": {\"text\": [...], \"answer_start\": [...]} (empty lists: no answer)") }
            return r
        }
        guard let texts = answers["text"]?.array, let starts = answers["answer_start"]?.array else {
            throw fail("\"answers\" must be {\"text\": [...], \"answer_start\": [...]}, as SQuAD writes it")
        }
        guard texts.count == starts.count else {
            throw fail("\"answers\" has \(texts.count) text(s) and \(starts.count) answer_start(s)")
        }
        let context = Array(c.unicodeScalars)
        for (k, (t, s)) in zip(texts, starts).enumerated() {
            guard let text = t.string, !text.isEmpty else { throw fail("answers.text[\(k)] must be a non-empty string") }
            guard let start = s.integral, start >= 0 else { throw fail("answers.answer_start[\(k)] must be a character position") }
            let n = text.unicodeScalars.count
            guard start <= context.count - n else {
                throw fail("answers.answer_start[\(k)] = \(start): the answer would end past the context's \(context.count) characters")
            }
            let there = String(String.UnicodeScalarView(context[start..<(start + n)]))
            guard there.unicodeScalars.elementsEqual(text.unicodeScalars) else {
                throw fail("answers.answer_start[\(k)] = \(start): the context there reads \(there.debugDescription), not the answer "
                           + "\(text.debugDescription) (answer_start counts characters from 0)")
            }
            r.answers.append(QAAnswer(text: text, start: start))
        }
        return r
    }

    /// The features of a file's records, as the QA recipe makes them (see the top of this file).
    /// `maxSeqLen` caps each row; `docStride` is the overlap between a context's windows.
    public static func features(_ records: [QARecord], file: String, tokenizer: DataTokenizer, maxSeqLen: Int,
                                docStride: Int) throws -> [QAFeature] {
        var out: [QAFeature] = []
        for (index, r) in records.enumerated() {
            if let ids = r.inputIDs {
                guard ids.count <= maxSeqLen else {
                    throw DatasetError.badLine(DatasetLineError(file: file, line: r.line, reason:
                        "\(ids.count) input_ids: longer than max_seq_len \(maxSeqLen) (pre-tokenized QA lines are not windowed)"))
                }
                out.append(QAFeature(record: index, line: r.line, inputIDs: ids, start: r.startPosition ?? 0, end: r.endPosition ?? 0,
                                     contextOffsets: ids.map { _ in nil }))
                continue
            }
            guard let q = r.question, let c = r.context else { continue }
            let question = String(String.UnicodeScalarView(q.unicodeScalars.drop { $0.properties.isWhitespace }))
            let rows: [Tokenizer.PairRow]
            do {
                rows = try tokenizer.encodeQuestionContext(question, c, maxLength: maxSeqLen, stride: docStride)
            } catch let e as TokenizerError {
                throw DatasetError.badLine(DatasetLineError(file: file, line: r.line, reason: "question and context: \(e.message)"))
            }
            let qChars = CharacterIndex(question), cChars = CharacterIndex(c)
            for row in rows {
                // The recipe's arithmetic is in characters, each token's in its own text.
                let offsets: [(Int, Int)] = row.offsets.indices.map { k in
                    let idx = row.sequence[k] == 1 ? cChars : qChars
                    return (idx.character(atByte: row.offsets[k].lowerBound), idx.character(atByte: row.offsets[k].upperBound))
                }
                var start = 0, end = 0
                if let a = r.answers.first, let first = row.sequence.firstIndex(of: 1), let last = row.sequence.lastIndex(of: 1) {
                    let startChar = a.start, endChar = a.start + a.text.unicodeScalars.count
                    if offsets[first].0 <= startChar && offsets[last].1 >= endChar {
                        // The recipe's walks, kept inside the context: run_qa.py lets the start walk onto a
                        // trailing special token (an answer in the window's last token) and the end into the
                        // question (an answer in the context's first token, with no separator between them) —
                        // spans its own post-processing can never answer.
                        var ts = first, te = last
                        while ts <= last && offsets[ts].0 <= startChar { ts += 1 }
                        start = ts - 1
                        while te >= first && offsets[te].1 >= endChar { te -= 1 }
                        end = te + 1
                        // One character split into pieces that share its offsets (byte-level BPE, byte fallback):
                        // the start lands on its last piece and the end on its first. Swapped, the span covers it.
                        if start > end { swap(&start, &end) }
                    }
                }
                out.append(QAFeature(record: index, line: r.line, inputIDs: row.ids, start: start, end: end,
                                     contextOffsets: row.offsets.indices.map { row.sequence[$0] == 1 ? row.offsets[$0] : nil }))
            }
        }
        return out
    }
}

/// A text's UTF-8 byte offsets ↔ character (Unicode scalar) positions: `byteAt[c]` is where
/// character c starts (and the end), `character(atByte:)` the character a byte belongs to.
struct CharacterIndex {
    let byteAt: [Int]
    private let charAt: [Int]

    init(_ s: String) { self.init(Array(s.unicodeScalars)) }

    init(_ scalars: [Unicode.Scalar]) {
        var byteAt = [0]
        byteAt.reserveCapacity(scalars.count + 1)
        for c in scalars { byteAt.append(byteAt[byteAt.count - 1] + UTF8.width(c)) }
        var charAt = [Int](repeating: 0, count: byteAt[byteAt.count - 1] + 1)
        for c in scalars.indices { for b in byteAt[c]..<byteAt[c + 1] { charAt[b] = c } }
        charAt[charAt.count - 1] = scalars.count
        self.byteAt = byteAt
        self.charAt = charAt
    }

    func character(atByte b: Int) -> Int { charAt[min(max(b, 0), charAt.count - 1)] }
}

/// An answer from start and end logits, as the QA recipe's post-processing picks it
/// (utils_qa.postprocess_qa_predictions): over every window of the question, the
/// `nBest` highest start and end logits; a span counts when both ends lie in the
/// context, end ≥ start and it has at most `maxAnswerLength` tokens; the best score
/// start + end wins. With `allowNoAnswer` (SQuAD v2) the null answer — the lowest
/// start₀ + end₀ over the windows — wins when it beats the best span. With no valid
/// span at all the recipe answers "empty", and so does this.
public enum QAPrediction {
    public struct Window {
        public var start: [Float]
        public var end: [Float]
        public var contextOffsets: [Range<Int>?]
        public init(start: [Float], end: [Float], contextOffsets: [Range<Int>?]) {
            self.start = start
            self.end = end
            self.contextOffsets = contextOffsets
        }

        /// The window of row `r` of a batch's (2B, T) logits — row 2r its start logits, 2r+1 its end
        /// logits — cut to its `contextOffsets.count` tokens.
        public init(row r: Int, of logits: [Float], width T: Int, contextOffsets: [Range<Int>?]) {
            let n = contextOffsets.count
            self.init(start: Array(logits[(2 * r * T)..<(2 * r * T + n)]), end: Array(logits[((2 * r + 1) * T)..<((2 * r + 1) * T + n)]),
                      contextOffsets: contextOffsets)
        }
    }

    public struct Answer: Equatable {
        public var text: String
        /// The span's bytes in the context (nil: the null answer or "empty").
        public var bytes: Range<Int>?
        public var score: Float
        /// The span's window and its first and last token there (nil: the null answer or "empty").
        public var window: Int?
        public var tokens: ClosedRange<Int>?
    }

    public static func answer(context: String, windows: [Window], allowNoAnswer: Bool, nBest: Int = 20,
                              maxAnswerLength: Int = 30) -> Answer {
        struct Candidate {
            var bytes: Range<Int>?; var score: Float; var startLogit: Float; var endLogit: Float
            var window: Int? = nil, tokens: ClosedRange<Int>? = nil
        }
        var prelim: [Candidate] = []
        var null: Candidate? = nil
        /// The indexes of the `n` largest values, largest first (numpy's argsort reversed: ties, higher index first).
        func top(_ v: [Float], _ n: Int) -> [Int] {
            Array(v.indices.sorted { v[$0] != v[$1] ? v[$0] > v[$1] : $0 > $1 }.prefix(n))
        }
        for (wi, w) in windows.enumerated() {
            let n = min(w.start.count, w.end.count)
            guard n > 0 else { continue }
            let nullScore = w.start[0] + w.end[0]
            if null == nil || null!.score > nullScore {
                null = Candidate(bytes: nil, score: nullScore, startLogit: w.start[0], endLogit: w.end[0])
            }
            for s in top(Array(w.start[..<n]), nBest) {
                for e in top(Array(w.end[..<n]), nBest) {
                    guard s < w.contextOffsets.count, e < w.contextOffsets.count,
                          let so = w.contextOffsets[s], let eo = w.contextOffsets[e] else { continue }
                    if e < s || e - s + 1 > maxAnswerLength { continue }
                    prelim.append(Candidate(bytes: so.lowerBound..<max(so.lowerBound, eo.upperBound), score: w.start[s] + w.end[e],
                                            startLogit: w.start[s], endLogit: w.end[e], window: wi, tokens: s...e))
                }
            }
        }
        if allowNoAnswer, let n = null { prelim.append(n) }
        // A stable sort by score, best first, as Python's sorted(reverse=True).
        var ranked = prelim.enumerated().sorted { $0.element.score != $1.element.score ? $0.element.score > $1.element.score
                                                                                       : $0.offset < $1.offset }
            .map(\.element).prefix(nBest).map { $0 }
        if allowNoAnswer, let n = null, !ranked.contains(where: { $0.bytes == nil }) { ranked.append(n) }
        let bytes = Array(context.utf8)
        func text(_ c: Candidate) -> String { c.bytes.map { String(decoding: bytes[$0.clamped(to: 0..<bytes.count)], as: UTF8.self) } ?? "" }
        if ranked.isEmpty || (ranked.count == 1 && text(ranked[0]).isEmpty) {
            ranked.insert(Candidate(bytes: nil, score: 0, startLogit: 0, endLogit: 0), at: 0)
            if !allowNoAnswer { return Answer(text: "empty", bytes: nil, score: 0) }
            // The recipe's stand-in "empty" is then the best non-null answer.
            let diff = (null?.score ?? 0) - 0
            return diff > 0 ? Answer(text: "", bytes: nil, score: null?.score ?? 0) : Answer(text: "empty", bytes: nil, score: 0)
        }
        func answer(_ c: Candidate) -> Answer {
            Answer(text: text(c), bytes: c.bytes, score: c.score, window: c.window, tokens: c.tokens)
        }
        guard allowNoAnswer else { return answer(ranked[0]) }
        guard let best = ranked.first(where: { !text($0).isEmpty }) else {
            return Answer(text: "", bytes: nil, score: null?.score ?? 0)
        }
        let diff = (null?.score ?? 0) - best.startLogit - best.endLogit
        return diff > 0 ? Answer(text: "", bytes: nil, score: null?.score ?? 0) : answer(best)
    }
}

/// SQuAD's scores as its official evaluation computes them: answers normalised (lower case,
/// punctuation and the articles a/an/the removed, whitespace collapsed), exact match and
/// token F1 (tokens split on whitespace), each the best over the gold answers; an
/// unanswerable question's gold is the empty answer. Percentages over the questions.
public enum SQuADScores {
    public static func normalize(_ s: String) -> String {
        let lowered = s.lowercased()
        var text = Array(lowered.unicodeScalars.filter { !isASCIIPunctuation($0) })
        // re.sub(r"\b(a|an|the)\b", " ", text): a whole run of word characters that is an article.
        var out: [Unicode.Scalar] = [], i = 0
        while i < text.count {
            guard isWordScalarPython(text[i]) else { out.append(text[i]); i += 1; continue }
            var j = i
            while j < text.count && isWordScalarPython(text[j]) { j += 1 }
            let word = String(String.UnicodeScalarView(text[i..<j]))
            if word == "a" || word == "an" || word == "the" { out.append(" ") } else { out += text[i..<j] }
            i = j
        }
        text = out
        // " ".join(text.split())
        return String(String.UnicodeScalarView(text)).split(whereSeparator: { $0.isWhitespace }).joined(separator: " ")
    }

    /// Python re's \w on str: alphanumeric (letters and numbers) or "_".
    static func isWordScalarPython(_ c: Unicode.Scalar) -> Bool {
        if c == "_" { return true }
        switch c.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter,
             .decimalNumber, .letterNumber, .otherNumber: return true
        default: return false
        }
    }

    /// Python's string.punctuation.
    static func isASCIIPunctuation(_ c: Unicode.Scalar) -> Bool {
        let v = c.value
        return (v >= 0x21 && v <= 0x2F) || (v >= 0x3A && v <= 0x40) || (v >= 0x5B && v <= 0x60) || (v >= 0x7B && v <= 0x7E)
    }

    public static func exactMatch(_ prediction: String, _ gold: String) -> Double {
        normalize(prediction) == normalize(gold) ? 1 : 0
    }

    public static func f1(_ prediction: String, _ gold: String) -> Double {
        let p = prediction.isEmpty ? [] : normalize(prediction).split(separator: " ").map(String.init)
        let g = gold.isEmpty ? [] : normalize(gold).split(separator: " ").map(String.init)
        if p.isEmpty || g.isEmpty { return p == g ? 1 : 0 }
        var counts: [String: Int] = [:]
        for t in g { counts[t, default: 0] += 1 }
        var same = 0
        for t in p where (counts[t] ?? 0) > 0 { same += 1; counts[t]! -= 1 }
        if same == 0 { return 0 }
        let precision = Double(same) / Double(p.count), recall = Double(same) / Double(g.count)
        return 2 * precision * recall / (precision + recall)
    }

    /// (exact match, F1) in percent over the questions.
    public static func score(predictions: [String], answers: [[String]]) -> (exactMatch: Double, f1: Double) {
        guard !predictions.isEmpty else { return (0, 0) }
        var em = 0.0, f = 0.0
        for (p, golds) in zip(predictions, answers) {
            let g = golds.isEmpty ? [""] : golds
            em += g.map { exactMatch(p, $0) }.max() ?? 0
            f += g.map { f1(p, $0) }.max() ?? 0
        }
        return (100 * em / Double(predictions.count), 100 * f / Double(predictions.count))
    }
}
