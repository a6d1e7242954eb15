import Foundation
import LoraBase

/// `lora-gpu data preview --task-type SEQ_CLS|TOKEN_CLS`: a classifier's samples
/// as training reads them — the tokens and the label each one gets.
public enum ClassifierPreview {
    /// SEQ_CLS: the first `n` samples (their text as the model reads it, the label),
    /// then the counts per label. `json`: every sample as {"line", "input_ids", "label"}.
    public static func sequences(file: String, tokenizer: DataTokenizer, maxSeqLen: Int, problemType: ClassificationKind?,
                                 n: Int, json: Bool) throws -> String {
        let records = try ClassificationData.read(file: file)
        let labels = try ClassificationData.labels([(file, records)], problemType: problemType)
        let (samples, truncated) = try ClassificationData.samples(records, file: file, labels: labels, tokenizer: tokenizer,
                                                                  maxSeqLen: maxSeqLen)
        func name(_ t: ClassTarget?) -> String {
            switch t {
            case .classID(let i)?: return labels.names[i]
            case .reals(let v)?: return "[" + v.map { String($0) }.joined(separator: ", ") + "]"
            case nil: return "?"
            }
        }
        if json {
            return samples.map { s in
                var o = OrderedMap<JSONValue>()
                o["line"] = .int(s.line)
                o["input_ids"] = .array(s.inputIDs.map { .int($0) })
                o["label"] = .string(name(s.classTarget))
                return JSONValue.object(o).serialized(JSONStyle()) + "\n"
            }.joined()
        }
        var out = "\(file): sequence classification (\(labels.kind.rawValue)), \(labels.names.count) output(s)\n"
        for s in samples.prefix(n) {
            out += "── line \(s.line): \(s.inputIDs.count) tokens → \(name(s.classTarget))\n"
            out += "«" + tokenizer.decodeIDs(s.inputIDs) + "»\n"
        }
        out += "──\nsamples   \(samples.count)\ntokens    \(samples.reduce(0) { $0 + $1.inputIDs.count })\ntruncated \(truncated)\n"
        if labels.kind == .singleLabel {
            var counts = [Int](repeating: 0, count: labels.names.count)
            for s in samples { if case .classID(let i)? = s.classTarget, i >= 0 { counts[i] += 1 } }
            for (i, c) in counts.enumerated() { out += "  \(i) \(labels.names[i]): \(c)\n" }
        }
        return out
    }

    /// TOKEN_CLS: the first `n` sentences as sub-tokens, each labelled one followed by
    /// its tag (the rest, which do not train, plain), then the counts per tag.
    public static func tags(file: String, tokenizer: DataTokenizer, maxSeqLen: Int, labelAllTokens: Bool,
                            n: Int, json: Bool) throws -> String {
        let records = try TaggingData.read(file: file)
        let names = try TaggingData.labels([(file, records)])
        let (samples, truncated) = try TaggingData.samples(records, file: file, labels: names, tokenizer: tokenizer,
                                                           maxSeqLen: maxSeqLen, labelAllTokens: labelAllTokens)
        if json {
            return samples.map { s in
                var o = OrderedMap<JSONValue>()
                o["line"] = .int(s.line)
                o["input_ids"] = .array(s.inputIDs.map { .int($0) })
                o["labels"] = .array(s.labels.map { .int($0) })
                return JSONValue.object(o).serialized(JSONStyle()) + "\n"
            }.joined()
        }
        var out = "\(file): token classification, \(names.count) tags\n"
        for s in samples.prefix(n) {
            out += "── line \(s.line): \(s.inputIDs.count) tokens, \(s.trainedTokens) labelled\n"
            out += zip(s.inputIDs, s.labels).map { id, l in
                "«" + tokenizer.decodeIDs([id]) + "»" + (l >= 0 ? "/" + names[l] : "")
            }.joined(separator: " ") + "\n"
        }
        out += "──\nsamples   \(samples.count)\ntokens    \(samples.reduce(0) { $0 + $1.inputIDs.count })\ntruncated \(truncated)\n"
        var counts = [Int](repeating: 0, count: names.count)
        for s in samples { for l in s.labels where l >= 0 { counts[l] += 1 } }
        for (i, c) in counts.enumerated() { out += "  \(i) \(names[i]): \(c)\n" }
        return out
    }

    /// QUESTION_ANS: the first `n` questions' windows as training sees them (the answer's tokens
    /// inside «…», a window without it marked so), then the counts. `docStride` as training's.
    public static func answers(file: String, tokenizer: DataTokenizer, maxSeqLen: Int, docStride: Int,
                               n: Int, json: Bool) throws -> String {
        let records = try QuestionAnsweringData.read(file: file)
        let features = try QuestionAnsweringData.features(records, file: file, tokenizer: tokenizer, maxSeqLen: maxSeqLen,
                                                          docStride: docStride)
        if json {
            return features.map { f in
                var o = OrderedMap<JSONValue>()
                o["line"] = .int(f.line)
                o["input_ids"] = .array(f.inputIDs.map { .int($0) })
                o["start_positions"] = .int(f.start)
                o["end_positions"] = .int(f.end)
                return JSONValue.object(o).serialized(JSONStyle()) + "\n"
            }.joined()
        }
        var out = "\(file): question answering, windows of max_seq_len \(maxSeqLen) tokens, doc_stride \(docStride)\n"
        let shown = Set(records.prefix(n).indices)
        for f in features where shown.contains(f.record) {
            let r = records[f.record]
            let answer = r.answers.first.map { "answer \($0.text.debugDescription)" } ?? (r.inputIDs == nil ? "no answer" : "given positions")
            let holds = f.start != 0 || f.end != 0
            out += "── line \(f.line) (\(r.id)): \(f.inputIDs.count) tokens, \(answer); "
                + (holds ? "tokens \(f.start)…\(f.end)" : "this window points at 0 (no answer in it)") + "\n"
            let ids = f.inputIDs
            out += (holds ? tokenizer.decodeIDs(Array(ids[..<f.start])) + "«" + tokenizer.decodeIDs(Array(ids[f.start...f.end])) + "»"
                        + tokenizer.decodeIDs(Array(ids[(f.end + 1)...]))
                          : tokenizer.decodeIDs(ids)) + "\n"
        }
        let answered = features.filter { $0.start != 0 || $0.end != 0 }.count
        out += "──\nquestions \(records.count)\nwindows   \(features.count) (\(answered) holding the answer)\n"
            + "no answer \(records.filter { $0.inputIDs == nil && $0.answers.isEmpty }.count)\n"
        return out
    }
}
