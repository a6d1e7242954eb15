import Foundation
import LoraModel
import LoraText

// The trainer's data entry points. One function here is a stand-in the lead
// replaces when the rest of LoraText lands:
//   loadSamples     — pre-tokenized JSONL only, until DatasetLoader exists;

/// Reads every training file into samples, truncated to `maxSeqLen` tokens.
/// Today: pre-tokenized JSONL, one `{"input_ids": [...], "labels": [...]}`
/// per line (labels optional: every token trained; -100 marks an untrained one).
func loadSamples(paths: [String], maxSeqLen: Int, vocabSize: Int) throws -> [TokenizedSample] {
    var out: [TokenizedSample] = []
    for path in paths {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TrainError.data(path: path, line: 0, reason: "cannot read the file")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw TrainError.data(path: path, line: 0, reason: "not UTF-8 text")
        }
        var lineNo = 0
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNo += 1
            let s = line.trimmingCharacters(in: .whitespacesAndNewlines)
            if s.isEmpty { continue }
            func fail(_ r: String) -> TrainError { .data(path: path, line: lineNo, reason: r) }
            guard let obj = try? JSONSerialization.jsonObject(with: Data(s.utf8)) as? [String: Any] else {
                throw fail("not a JSON object")
            }
            guard let rawIDs = obj["input_ids"] else {
                let keys = obj.keys.sorted().joined(separator: ", ")
                throw fail("no \"input_ids\" (keys: \(keys)); only pre-tokenized JSONL is read until the dataset loader lands")
            }
            func ints(_ v: Any, _ field: String) throws -> [Int] {
                guard let a = v as? [Any] else { throw fail("\"\(field)\" must be a list of integers") }
                return try a.map { x in
                    guard let n = x as? NSNumber, Double(n.intValue) == n.doubleValue else {
                        throw fail("\"\(field)\" must be a list of integers")
                    }
                    return n.intValue
                }
            }
            var ids = try ints(rawIDs, "input_ids")
            var labels = try obj["labels"].map { try ints($0, "labels") } ?? ids
            guard labels.count == ids.count else {
                throw fail("\"labels\" has \(labels.count) entries, \"input_ids\" \(ids.count)")
            }
            if let bad = ids.first(where: { $0 < 0 || $0 >= vocabSize }) {
                throw fail("token id \(bad) is outside the model's vocabulary (size \(vocabSize))")
            }
            if let bad = labels.first(where: { $0 != -100 && ($0 < 0 || $0 >= vocabSize) }) {
                throw fail("label \(bad) is neither -100 nor a token id (vocabulary size \(vocabSize))")
            }
            if ids.isEmpty { continue }
            if ids.count > maxSeqLen {  // truncation keeps the start, as TRL's
                ids = Array(ids.prefix(maxSeqLen))
                labels = Array(labels.prefix(maxSeqLen))
            }
            out.append(TokenizedSample(line: lineNo, inputIDs: ids, labels: labels))
        }
    }
    return out
}

/// The one place a planned batch becomes the model's TokenBatch: positions
/// restart per packed sample, and attention and the label shift never cross
/// a sequence id.
func tokenBatch(_ rows: BatchRows) throws -> TokenBatch {
    try TokenBatch(inputIDs: rows.inputIDs, labels: rows.labels, positionIDs: rows.positionIDs, sequenceIDs: rows.sequenceIDs)
}

/// A seeded split of `samples` into (train, validation): ⌈fraction·n⌉ samples
/// (at least 1, leaving at least 1) drawn by a shuffle that depends only on the seed.
func split(_ samples: [TokenizedSample], fraction: Double, seed: UInt64) -> (train: [TokenizedSample], val: [TokenizedSample]) {
    guard fraction > 0, samples.count > 1 else { return (samples, []) }
    let n = min(max(1, Int((fraction * Double(samples.count)).rounded(.up))), samples.count - 1)
    let order = Batching.order(count: samples.count, seed: seed ^ 0x5A17_5A17, epoch: 0, shuffle: true)
    let val = Set(order.prefix(n))
    return (samples.indices.filter { !val.contains($0) }.map { samples[$0] }, order.prefix(n).sorted().map { samples[$0] })
}
