import Foundation
import LoraBase

// JSONL for a token classifier (task_type TOKEN_CLS: NER, POS tagging), one
// sentence per line, in the shape of the usual NER sets:
//
//   {"tokens": ["张", "三", "在", "北", "京"], "tags": ["B-PER", "I-PER", "O", "B-LOC", "I-LOC"]}
//   {"tokens": [...], "ner_tags": [3, 4, 0, 5, 6]}            (class ids, as Hugging Face datasets store them)
//   {"input_ids": [Int…], "labels": [Int…]}                    (pre-tokenized: a label per token, -100 untrained)
//
// Words become sub-tokens as transformers' `tokenizer(words,
// is_split_into_words=True, truncation=True, max_length=max_seq_len)` makes
// them; the word's tag goes on its first sub-token and -100 on the rest, as
// transformers' token-classification recipe does (`label_all_tokens`: every
// sub-token, B-X turned I-X after the first). Tag names become class ids in
// sorted order over every file of the run (run_ner.py's get_label_list),
// unless the model already names its labels.

public struct TaggedRecord: Equatable, Sendable {
    public var line: Int
    public var words: [String]?
    /// Tag names, or class ids (per word); nil for pre-tokenized lines and unlabelled prediction lines.
    public var tags: [TagLabel]?
    public var inputIDs: [Int]?
    /// Pre-tokenized lines: a label per token.
    public var tokenLabels: [Int]?
}

public enum TagLabel: Equatable, Sendable {
    case name(String)
    case id(Int)
}

public enum TaggingData {
    public static func read(file: String, requireLabels: Bool = true) throws -> [TaggedRecord] {
        try JSONLReader.read(file: file).map { try parse($0.bytes, file: file, line: $0.line, requireLabels: requireLabels) }
    }

    static func parse(_ bytes: [UInt8], file: String, line: Int, requireLabels: Bool = true) throws -> TaggedRecord {
        let (o, fail) = try JSONLReader.object(bytes, file: file, line: line)
        var r = TaggedRecord(line: line, words: nil, tags: nil, inputIDs: nil, tokenLabels: nil)
        func ints(_ key: String, min: Int) throws -> [Int] {
            guard let a = o[key]?.array, !a.isEmpty else { throw fail("\"\(key)\" must be a non-empty list of integers") }
            return try a.enumerated().map { i, x in
                guard let v = x.integral, v >= min || v == -100 else { throw fail("\(key)[\(i)] = \(x.shortDescription) is out of range") }
                return v
            }
        }
        if o["input_ids"] != nil {
            r.inputIDs = try ints("input_ids", min: 0)
            if o["labels"] != nil {
                let l = try ints("labels", min: 0)
                guard l.count == r.inputIDs!.count else {
                    throw fail("\"labels\" has \(l.count) entries for \(r.inputIDs!.count) input_ids (a label per token, -100 untrained)")
                }
                r.tokenLabels = l
            } else if requireLabels {
                throw fail("no \"labels\": a pre-tokenized tagging line is {\"input_ids\": […], \"labels\": […]}")
            }
            return r
        }
        guard let t = o["tokens"] ?? o["words"] else {
            throw fail("no \"tokens\": a tagging line is {\"tokens\": [words…], \"tags\": [tags…]} (or \"ner_tags\", "
                       + "or \"input_ids\" + \"labels\"); keys here: " + o.keys.joined(separator: ", "))
        }
        guard let words = t.array?.compactMap(\.string), words.count == t.array?.count, !words.isEmpty else {
            throw fail("\"tokens\" must be a non-empty list of strings (the words)")
        }
        r.words = words
        let key = ["tags", "ner_tags", "pos_tags", "labels"].first { o[$0] != nil }
        guard let key else {
            if requireLabels { throw fail("no \"tags\" (or \"ner_tags\"): a tag per word") }
            return r
        }
        guard let a = o[key]?.array else { throw fail("\"\(key)\" must be a list: a tag per word") }
        guard a.count == words.count else {
            throw fail("\"\(key)\" has \(a.count) entries for \(words.count) tokens: a tag per word")
        }
        r.tags = try a.enumerated().map { i, x in
            if let s = x.string, !s.isEmpty { return .name(s) }
            if let v = x.integral, v >= 0 || v == -100 { return .id(v) }
            throw fail("\(key)[\(i)] = \(x.shortDescription) is neither a tag name nor a class id")
        }
        return r
    }

    /// The tag names of a run (sorted over every file), or the model's own when it names them.
    public static func labels(_ files: [(file: String, records: [TaggedRecord])], known: [String]? = nil) throws -> [String] {
        var names = Set<String>(), top = -1
        var firstName: (String, Int)?, firstID: (String, Int)?
        for (f, records) in files {
            for r in records {
                for t in r.tags ?? [] {
                    switch t {
                    case .name(let n): names.insert(n); if firstName == nil { firstName = (f, r.line) }
                    case .id(-100): break   // an untrained word, alongside names or ids
                    case .id(let i): top = max(top, i); if firstID == nil { firstID = (f, r.line) }
                    }
                }
                if let l = r.tokenLabels { top = max(top, l.max() ?? -1); if firstID == nil { firstID = (f, r.line) } }
            }
        }
        if let (nf, nl) = firstName, let (idf, idl) = firstID {
            throw DatasetError.badLine(DatasetLineError(file: nf, line: nl, reason:
                "tag names here, class ids at \(idf):\(idl): every line of a run labels the same way"))
        }
        let knownNames = known.flatMap { k in k.allSatisfy { $0.hasPrefix("LABEL_") } ? nil : k }
        if !names.isEmpty {
            if let k = knownNames {
                for (f, records) in files { for r in records { for case .name(let n) in r.tags ?? [] where !k.contains(n) {
                    throw DatasetError.badLine(DatasetLineError(file: f, line: r.line, reason:
                        "tag '\(n)' is not one of the model's labels (id2label): " + k.joined(separator: ", ")
                        + NearestName.suggestion(n, among: k)))
                } } }
                return k
            }
            guard names.count >= 2 else {
                throw DatasetError.invalidOption("\(files.map(\.file).joined(separator: ", ")): every tag is "
                                                 + "'\(names.first ?? "")': a tagger needs at least two tags")
            }
            return names.sorted()
        }
        if let k = known {
            if top >= k.count, let (f, l) = firstID {
                throw DatasetError.badLine(DatasetLineError(file: f, line: l, reason:
                    "class id \(top) (in this run) is not below the model's num_labels \(k.count)"))
            }
            return k
        }
        guard top >= 1 else {
            throw DatasetError.invalidOption("\(files.map(\.file).joined(separator: ", ")): no tag to train: every class id is 0 or -100")
        }
        return (0...top).map { "LABEL_\($0)" }
    }

    /// run_ner.py's b_to_i_label: for a B-X tag the id of I-X when the labels have it, else itself.
    static func insideOf(_ labels: [String]) -> [Int] {
        labels.enumerated().map { i, n in
            guard n.hasPrefix("B-"), let j = labels.firstIndex(of: "I-" + n.dropFirst(2)) else { return i }
            return j
        }
    }

    /// One file's samples: sub-tokens with a label on each word's first sub-token
    /// (every sub-token with `labelAllTokens`), -100 elsewhere. `truncated`: samples cut.
    public static func samples(_ records: [TaggedRecord], file: String, labels: [String], tokenizer: DataTokenizer,
                               maxSeqLen: Int, labelAllTokens: Bool = false) throws -> (samples: [TokenizedSample], truncated: Int) {
        let r = try samplesCounting(records, file: file, labels: labels, tokenizer: tokenizer, maxSeqLen: maxSeqLen,
                                    labelAllTokens: labelAllTokens)
        return (r.samples, r.truncated)
    }

    /// `samples`, and the words that give no sub-token (an empty or whitespace word:
    /// its tag is not trained, as transformers' word_ids never point at it).
    public static func samplesCounting(_ records: [TaggedRecord], file: String, labels: [String], tokenizer: DataTokenizer,
                                       maxSeqLen: Int, labelAllTokens: Bool = false)
        throws -> (samples: [TokenizedSample], truncated: Int, emptyWords: Int) {
        var out: [TokenizedSample] = []
        var truncated = 0, emptyWords = 0
        let inside = insideOf(labels)
        for r in records {
            func fail(_ reason: String) -> DatasetError { .badLine(DatasetLineError(file: file, line: r.line, reason: reason)) }
            var ids: [Int], tokenLabels: [Int]
            if let given = r.inputIDs {
                ids = Array(given.prefix(maxSeqLen))
                tokenLabels = Array((r.tokenLabels ?? given.map { _ in -100 }).prefix(maxSeqLen))
                if given.count > maxSeqLen { truncated += 1 }
                if let bad = tokenLabels.first(where: { $0 != -100 && $0 >= labels.count }) {
                    throw fail("label \(bad) is not below num_labels \(labels.count)")
                }
            } else {
                let tagIDs: [Int] = try (r.tags ?? []).map { t in
                    switch t {
                    case .name(let n):
                        guard let i = labels.firstIndex(of: n) else { throw fail("tag '\(n)' is not one of the labels") }
                        return i
                    case .id(let i):
                        guard i == -100 || i < labels.count else { throw fail("class id \(i) is not below num_labels \(labels.count)") }
                        return i
                    }
                }
                let e = try tokenizer.encodeWords(r.words ?? [], maxLength: maxSeqLen)
                ids = e.ids
                if e.truncated { truncated += 1 }
                if !e.truncated { emptyWords += (r.words ?? []).count - Set(e.wordIDs.compactMap { $0 }).count }
                var previous: Int? = nil
                tokenLabels = e.wordIDs.map { w -> Int in
                    defer { previous = w }
                    guard let w, w < tagIDs.count else { return -100 }
                    if w != previous { return tagIDs[w] }
                    return labelAllTokens && tagIDs[w] >= 0 ? inside[tagIDs[w]] : -100
                }
            }
            guard !ids.isEmpty else { throw fail("the words give no token") }
            out.append(TokenizedSample(line: r.line, inputIDs: ids, labels: tokenLabels, labelsAreUnshifted: true))
        }
        return (out, truncated, emptyWords)
    }
}
