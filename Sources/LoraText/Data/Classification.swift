import Foundation
import LoraBase

// JSONL for a sequence classifier (task_type SEQ_CLS), one sample per line:
//
//   {"text": "…", "label": 2 | "positive" | 0.75 | [1, 0, 1]}
//   {"text": "…", "text_pair": "…", "label": …}              (a pair: NLI, paraphrase, QA relevance)
//   {"input_ids": [Int…], "label": …}                       (pre-tokenized; ids used as they are)
//
// Labels, over every file of a run together: names (strings) become class ids
// in sorted order (as transformers' run_glue.py does) unless the model already
// names its labels; integers are class ids; non-integer numbers make a
// regression; lists of numbers (one per label) a multi-label classifier.
// Other keys on a line are ignored. Text is tokenized as transformers'
// `tokenizer(text, text_pair, truncation=True, max_length=max_seq_len)` does.

/// A label as written on a line.
public enum RawClassLabel: Equatable, Sendable {
    case name(String)
    case integer(Int)
    case number(Double)
    case list([Double])
}

/// One line of a classification file.
public struct ClassificationRecord: Equatable, Sendable {
    public var line: Int
    public var text: String?
    public var textPair: String?
    public var inputIDs: [Int]?
    /// nil only where labels are optional (prediction data).
    public var label: RawClassLabel?
}

/// transformers' problem_type, as the data implies it.
public enum ClassificationKind: String, Sendable {
    case singleLabel = "single_label_classification"
    case regression
    case multiLabel = "multi_label_classification"
}

/// The classes a run trains: their names in id order and the problem type.
public struct ClassificationLabels: Equatable, Sendable {
    public var kind: ClassificationKind
    /// id2label: class names (single-label), or one name per output (regression, multi-label).
    public var names: [String]
    public init(kind: ClassificationKind, names: [String]) {
        self.kind = kind
        self.names = names
    }
}

public enum ClassificationData {
    /// Every line of `file` parsed (no tokenizing): a bad line is an error naming file and line.
    /// `requireLabel` false: lines without "label" are kept (text to predict).
    public static func read(file: String, requireLabel: Bool = true) throws -> [ClassificationRecord] {
        try JSONLReader.read(file: file).map { try parse($0.bytes, file: file, line: $0.line, requireLabel: requireLabel) }
    }

    static func parse(_ bytes: [UInt8], file: String, line: Int, requireLabel: Bool = true) throws -> ClassificationRecord {
        let (o, fail) = try JSONLReader.object(bytes, file: file, line: line)
        let label: RawClassLabel?
        switch o["label"] ?? o["labels"] {
        case nil where !requireLabel: label = nil
        case nil:
            throw fail("no \"label\": a classification line is {\"text\": …, \"label\": …} (or \"text_pair\", or \"input_ids\"); "
                       + "keys here: " + o.keys.joined(separator: ", "))
        case .null? where !requireLabel: label = nil
        case let l?:
        switch l {
        case .string(let s) where !s.isEmpty: label = .name(s)
        case .int(let i): label = .integer(i)
        // 1.0 is a number (Python's json gives a float; run_glue makes a float column a regression).
        case .double(let d) where d.isFinite: label = .number(d)
        case .array(let a) where !a.isEmpty:
            let v = a.compactMap(\.double)
            guard v.count == a.count, v.allSatisfy(\.isFinite) else { throw fail("\"label\" list must hold numbers only (one per label)") }
            label = .list(v)
        default:
            throw fail("\"label\" must be a class name, a class id, a number (regression) or a list of numbers (multi-label), "
                       + "got \(l.shortDescription)")
        }
        }
        var r = ClassificationRecord(line: line, text: nil, textPair: nil, inputIDs: nil, label: label)
        if let ids = o["input_ids"] {
            guard let a = ids.array, !a.isEmpty else { throw fail("\"input_ids\" must be a non-empty list of token ids") }
            var out: [Int] = []
            for (i, x) in a.enumerated() {
                guard let v = x.integral, v >= 0 else { throw fail("input_ids[\(i)] = \(x.shortDescription) is not a token id") }
                out.append(v)
            }
            r.inputIDs = out
        } else {
            guard let t = o["text"]?.string else {
                throw fail(o["text"] == nil ? "no \"text\" (or \"input_ids\") on a classification line" : "\"text\" must be a string")
            }
            r.text = t
            if let p = o["text_pair"], !p.isNull {
                guard let ps = p.string else { throw fail("\"text_pair\" must be a string") }
                r.textPair = ps
            }
        }
        return r
    }

    /// The labels of a run from all its files (`known`: the model's own id2label,
    /// when it has real names; its kind when the model fixes one).
    /// `problemType`: the run's problem_type when the user gave it (regression
    /// with whole-number targets, or several real outputs per sample), else the
    /// data's shape decides.
    public static func labels(_ files: [(file: String, records: [ClassificationRecord])],
                              known: ClassificationLabels? = nil,
                              problemType: ClassificationKind? = nil) throws -> ClassificationLabels {
        func fail(_ f: String, _ r: ClassificationRecord, _ reason: String) -> DatasetError {
            .badLine(DatasetLineError(file: f, line: r.line, reason: reason))
        }
        guard let (firstFile, first) = files.lazy.compactMap({ f in f.records.first { $0.label != nil }.map { (f.file, $0) } }).first,
              let firstLabel = first.label else {
            throw DatasetError.invalidOption("no labelled classification sample")
        }
        // The shape of the first label decides; every other line must agree.
        func shape(_ l: RawClassLabel) -> String {
            switch l {
            case .name: return "a class name"
            case .integer: return "a class id"
            case .number: return "a number"
            case .list(let v): return "a list of \(v.count) numbers"
            }
        }
        func sameShape(_ a: RawClassLabel, _ b: RawClassLabel) -> Bool {
            switch (a, b) {
            case (.name, .name), (.integer, .integer): return true
            case (.number, .number), (.number, .integer), (.integer, .number): return true
            case (.list(let x), .list(let y)): return x.count == y.count
            default: return false
            }
        }
        let numbers = files.contains { $0.records.contains { if case .number? = $0.label { return true }; return false } }
        let regression = numbers || (problemType == .regression && { if case .integer = firstLabel { return true }; return false }())
        let reference: RawClassLabel = regression ? .number(0) : firstLabel
        if let p = problemType {
            let fits: Bool
            switch (p, reference) {
            case (.singleLabel, .name), (.singleLabel, .integer), (.regression, .number), (.regression, .list),
                 (.multiLabel, .list): fits = true
            default: fits = false
            }
            guard fits else {
                throw fail(firstFile, first, "problem_type \(p.rawValue) does not fit this label (\(shape(firstLabel))): "
                           + "single_label_classification takes class names or ids, regression numbers or lists of numbers, "
                           + "multi_label_classification lists of 0/1 targets")
            }
        }
        for (f, records) in files {
            for r in records { if let l = r.label, !sameShape(reference, l) {
                throw fail(f, r, "label \(shape(l)), but \(firstFile):\(first.line) has \(shape(firstLabel)); "
                           + "every line of a run labels the same way")
            } }
        }
        switch reference {
        case .name:
            let seen = Set(files.flatMap { $0.records.compactMap { if case .name(let n)? = $0.label { return n }; return nil } })
            if let known, known.kind == .singleLabel, !known.names.allSatisfy({ $0.hasPrefix("LABEL_") }) {
                for (f, records) in files {
                    for r in records { if case .name(let n)? = r.label, !known.names.contains(n) {
                        throw fail(f, r, "label '\(n)' is not one of the model's labels (id2label): "
                                   + known.names.joined(separator: ", ") + NearestName.suggestion(n, among: known.names))
                    } }
                }
                return known
            }
            guard seen.count >= 2 else {
                throw fail(firstFile, first, "every line has the label '\(seen.first ?? "")': a classifier needs at least two classes")
            }
            return ClassificationLabels(kind: .singleLabel, names: seen.sorted())
        case .integer:
            let ids = files.flatMap { f in f.records.map { (f.file, $0) } }
            var top = 0
            for (f, r) in ids {
                guard case .integer(let i)? = r.label else { continue }
                guard i >= 0 || i == -100 else { throw fail(f, r, "class id \(i) is negative (−100 skips a line)") }
                if let known, known.kind == .singleLabel, i >= known.names.count {
                    throw fail(f, r, "class id \(i) is not below the model's num_labels \(known.names.count)")
                }
                top = max(top, i)
            }
            if let known, known.kind == .singleLabel { return known }
            guard top >= 1 else {
                let all = ids.allSatisfy { if case .integer(-100)? = $0.1.label { return true }; return $0.1.label == nil }
                throw fail(firstFile, first, all ? "every label is -100: nothing to train"
                                                 : "every class id is 0 (or -100): a classifier needs at least two classes")
            }
            return ClassificationLabels(kind: .singleLabel, names: (0...top).map { "LABEL_\($0)" })
        case .number:
            return known?.kind == .regression && known?.names.count == 1 ? known! : ClassificationLabels(kind: .regression, names: ["LABEL_0"])
        case .list(let v) where problemType == .regression:
            if let known, known.kind == .regression, known.names.count == v.count { return known }
            return ClassificationLabels(kind: .regression, names: (0..<v.count).map { "LABEL_\($0)" })
        case .list(let v):
            // BCE with logits is bounded below only for targets in [0, 1].
            for (f, records) in files {
                for r in records { if case .list(let x)? = r.label, let bad = x.first(where: { !(0...1).contains($0) }) {
                    throw fail(f, r, "multi-label targets must lie in [0, 1] (binary cross-entropy), got \(bad); "
                               + "a list of real values to predict is a regression: give problem_type regression")
                } }
            }
            if let known, known.kind != .singleLabel, known.names.count == v.count { return known }
            return ClassificationLabels(kind: .multiLabel, names: (0..<v.count).map { "LABEL_\($0)" })
        }
    }

    /// The target of a record under `labels`.
    /// nil when the label does not fit (a name not among the labels, a class id
    /// out of range, a list of another length, a shape of another kind).
    public static func target(_ r: ClassificationRecord, _ labels: ClassificationLabels) -> ClassTarget? {
        guard let label = r.label else { return nil }
        let n = labels.names.count
        switch (label, labels.kind) {
        case (.name(let name), .singleLabel): return labels.names.firstIndex(of: name).map { .classID($0) }
        case (.integer(let i), .singleLabel): return i == -100 || (0..<n).contains(i) ? .classID(i) : nil
        case (.integer(let i), .regression) where n == 1: return .reals([Float(i)])
        case (.number(let d), .regression) where n == 1: return .reals([Float(d)])
        case (.list(let v), .regression) where v.count == n: return .reals(v.map(Float.init))
        case (.list(let v), .multiLabel) where v.count == n: return .reals(v.map(Float.init))
        default: return nil
        }
    }

    /// The tokenized samples of one file's records; `truncated` counts samples cut to `maxSeqLen`.
    public static func samples(_ records: [ClassificationRecord], file: String, labels: ClassificationLabels,
                               tokenizer: DataTokenizer, maxSeqLen: Int) throws -> (samples: [TokenizedSample], truncated: Int) {
        var out: [TokenizedSample] = []
        var truncated = 0
        out.reserveCapacity(records.count)
        for r in records {
            guard let t = target(r, labels) else {
                throw DatasetError.badLine(DatasetLineError(file: file, line: r.line, reason: "label does not fit the run's labels"))
            }
            if case .classID(-100) = t { continue }   // transformers' ignore_index: nothing to train
            let (ids, cut) = try tokens(r, file: file, tokenizer: tokenizer, maxSeqLen: maxSeqLen)
            if cut { truncated += 1 }
            out.append(TokenizedSample(line: r.line, inputIDs: ids, labels: ids.map { _ in -100 }, classTarget: t))
        }
        return (out, truncated)
    }

    /// A record's ids: its input_ids, or its text (and pair) tokenized; cut to maxSeqLen.
    public static func tokens(_ r: ClassificationRecord, file: String, tokenizer: DataTokenizer,
                              maxSeqLen: Int) throws -> (ids: [Int], truncated: Bool) {
        var ids: [Int], cut = false
        if let given = r.inputIDs {
            ids = given
            if ids.count > maxSeqLen { ids.removeLast(ids.count - maxSeqLen); cut = true }
        } else {
            (ids, cut) = try tokenizer.encodePair(r.text ?? "", r.textPair, maxLength: maxSeqLen)
        }
        guard !ids.isEmpty else {
            throw DatasetError.badLine(DatasetLineError(file: file, line: r.line, reason: "the text gives no token"))
        }
        return (ids, cut)
    }
}
