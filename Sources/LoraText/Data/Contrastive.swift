import Foundation
import LoraBase

// JSONL for contrastive training of an embedder (task_type FEATURE_EXTRACTION), in
// sentence-transformers' (anchor, positive[, negative]) shape:
//
//   {"anchor": "怎么重置密码？", "positive": "在设置页面点击“忘记密码”……"}
//   {"anchor": "…", "positive": "…", "negative": "a hard negative: close, but wrong"}
//   {"anchor": [1, 523, 88], "positive": [1, 77, 9]}                (pre-tokenized: token ids)
//
// Each text is tokenized as sentence-transformers' Transformer module does it —
// `tokenizer(text, truncation=True, max_length=max_seq_len)`, special tokens
// included. Every line of a run has a negative, or none does (a batch's rows are
// [anchors; positives; negatives]).

public struct ContrastiveRecord: Equatable, Sendable {
    public enum Text: Equatable, Sendable {
        case text(String)
        case ids([Int])
    }
    public var line: Int
    public var anchor: Text
    public var positive: Text
    public var negative: Text?
}

public enum ContrastiveData {
    public static let keys = ["anchor", "positive", "negative"]

    public static func read(file: String) throws -> [ContrastiveRecord] {
        let records = try JSONLReader.read(file: file).map { try parse($0.bytes, file: file, line: $0.line) }
        if let first = records.first, let odd = records.first(where: { ($0.negative == nil) != (first.negative == nil) }) {
            throw DatasetError.badLine(DatasetLineError(file: file, line: odd.line, reason:
                "\(odd.negative == nil ? "no" : "a") \"negative\" here, \(first.negative == nil ? "none" : "one") on line "
                    + "\(first.line): every line of a run has a negative, or none does"))
        }
        return records
    }

    static func parse(_ bytes: [UInt8], file: String, line: Int) throws -> ContrastiveRecord {
        let (o, fail) = try JSONLReader.object(bytes, file: file, line: line)
        func text(_ key: String) throws -> ContrastiveRecord.Text? {
            guard let v = o[key], !v.isNull else { return nil }   // null: absent (datasets write missing columns so)
            if let s = v.string {
                guard !s.isEmpty else { throw fail("\"\(key)\" is empty") }
                return .text(s)
            }
            if let a = v.array, !a.isEmpty {
                return .ids(try a.enumerated().map { i, x in
                    guard let id = x.integral, id >= 0 else { throw fail("\(key)[\(i)] = \(x.shortDescription) is not a token id") }
                    return id
                })
            }
            throw fail("\"\(key)\" must be a text or a non-empty list of token ids")
        }
        guard let anchor = try text("anchor"), let positive = try text("positive") else {
            throw fail("a contrastive line is {\"anchor\": …, \"positive\": …[, \"negative\": …]} (texts, or lists of token ids); "
                       + "keys here: " + o.keys.joined(separator: ", "))
        }
        return ContrastiveRecord(line: line, anchor: anchor, positive: positive, negative: try text("negative"))
    }

    /// The samples of a file: each line's texts as token ids (special tokens included, cut at
    /// `maxSeqLen`), kept apart in `contrastiveParts`; `inputIDs` holds them one after another (for
    /// counting). Returns how many texts were truncated.
    public static func samples(_ records: [ContrastiveRecord], file: String, tokenizer: DataTokenizer,
                               maxSeqLen: Int) throws -> (samples: [TokenizedSample], truncated: Int) {
        var truncated = 0
        let samples = try records.map { r -> TokenizedSample in
            let parts = try ([r.anchor, r.positive] + (r.negative.map { [$0] } ?? [])).map { t -> [Int] in
                var ids: [Int]
                switch t {
                case .ids(let given):
                    ids = given
                    if ids.count > maxSeqLen { ids.removeSubrange(maxSeqLen...); truncated += 1 }
                case .text(let s):
                    // transformers' truncation: the post-processor's special tokens kept, the text cut.
                    let e = try tokenizer.encodePair(s, nil, maxLength: maxSeqLen)
                    ids = e.ids
                    if e.truncated { truncated += 1 }
                }
                if ids.isEmpty {
                    throw DatasetError.badLine(DatasetLineError(file: file, line: r.line, reason: "a text gives no token"))
                }
                return ids
            }
            var s = TokenizedSample(line: r.line, inputIDs: parts.flatMap { $0 }, labels: parts.flatMap { $0 }.map { _ in -100 })
            s.contrastiveParts = parts
            return s
        }
        return (samples, truncated)
    }
}
