import Foundation
import LoraBase
import LoraModel
import LoraOps
import LoraText

/// `lora-gpu embed`: one vector per JSONL line, the model's (and adapter's)
/// final hidden states pooled (last token or mean) and optionally L2-normalised,
/// as transformers' AutoModel + PEFT gives them.
public enum Embedder {
    /// The base with an adapter (any trained task: its hidden states), or alone.
    public static func loadModel(_ path: String, adapter: String?, context ctx: ComputeContext,
                                 quantize: QuantizeMode = .auto) throws -> LlamaLoRAModel {
        try AdapterModel.load(path, adapter: adapter, context: ctx, quantize: quantize)
    }

    /// The texts of a JSONL file: `{"text": …}` lines (other keys ignored), or
    /// `{"input_ids": […]}` pre-tokenized ones.
    public static func read(file: String) throws -> [(line: Int, text: String?, ids: [Int]?)] {
        try JSONLReader.read(file: file).map { l in
            func fail(_ reason: String, column: Int? = nil) -> DatasetError {
                .badLine(DatasetLineError(file: file, line: l.line, column: column, reason: reason))
            }
            let v: JSONValue
            do { v = try JSONValue.parse(Data(l.bytes)) } catch let e as JSONParseError {
                throw fail("not JSON: \(e.reason)", column: e.column)
            }
            guard let o = v.object else { throw fail("not a JSON object") }
            if let ids = o["input_ids"] {
                guard let a = ids.array, !a.isEmpty, let xs = Optional(a.compactMap(\.integral)), xs.count == a.count,
                      xs.allSatisfy({ $0 >= 0 }) else {
                    throw fail("\"input_ids\" must be a non-empty list of token ids")
                }
                return (l.line, nil, xs)
            }
            guard let t = o["text"]?.string else {
                throw fail("no \"text\": an embedding line is {\"text\": …} (or {\"input_ids\": […]}); keys here: "
                           + o.keys.joined(separator: ", "))
            }
            return (l.line, t, nil)
        }
    }

    /// Every line's vector (rows of H) with its line number, `batchSize` lines at a time.
    public static func run(model m: LlamaLoRAModel, file: String, tokenizer: DataTokenizer, maxSeqLen: Int,
                           pooling: Pooling, normalize: Bool, batchSize: Int,
                           progress: (Int, Int) -> Void = { _, _ in }) throws -> (lines: [Int], vectors: [[Float]]) {
        let lines = try read(file: file)
        let H = m.config.hiddenSize
        var out: [[Float]] = []
        out.reserveCapacity(lines.count)
        for start in stride(from: 0, to: lines.count, by: batchSize) {
            let chunk = lines[start..<min(start + batchSize, lines.count)]
            let ids = try chunk.map { l -> [Int] in
                let t = try l.ids.map { Array($0.prefix(maxSeqLen)) } ?? tokenizer.encodePair(l.text ?? "", nil, maxLength: maxSeqLen).ids
                guard !t.isEmpty else {
                    throw DatasetError.badLine(DatasetLineError(file: file, line: l.line, reason: "the text gives no token"))
                }
                if let bad = t.first(where: { $0 >= m.config.vocabSize }) {
                    throw DatasetError.badLine(DatasetLineError(file: file, line: l.line, reason:
                        "token id \(bad) is outside the model's vocabulary (size \(m.config.vocabSize))"))
                }
                return t
            }
            let width = ids.map(\.count).max()!
            let rows = ids.map { $0 + [Int](repeating: m.config.padTokenID ?? 0, count: width - $0.count) }
            let b = try TokenBatch.unlabelled(rows, lengths: ids.map(\.count), for: m.config)
            let v = try m.pooledHiddenStates(b, lengths: ids.map(\.count), pooling: pooling, normalize: normalize)
            for r in 0..<ids.count { out.append(Array(v[(r * H)..<((r + 1) * H)])) }
            progress(out.count, lines.count)
        }
        return (lines.map(\.line), out)
    }

    /// NumPy's .npy (format 1.0): a little-endian float32 (N, H) array.
    public static func npy(_ rows: [[Float]]) -> Data {
        let h = rows.first?.count ?? 0
        var header = "{'descr': '<f4', 'fortran_order': False, 'shape': (\(rows.count), \(h)), }"
        // magic (6) + version (2) + length (2) + header, padded with spaces to a multiple of 64, ending in \n.
        let total = 10 + header.utf8.count + 1
        header += String(repeating: " ", count: (64 - total % 64) % 64) + "\n"
        var d = Data([0x93] + Array("NUMPY".utf8) + [1, 0])
        let n = UInt16(header.utf8.count)
        d.append(contentsOf: [UInt8(n & 0xFF), UInt8(n >> 8)])
        d.append(contentsOf: Array(header.utf8))
        for row in rows { for x in row { withUnsafeBytes(of: x.bitPattern.littleEndian) { d.append(contentsOf: $0) } } }
        return d
    }

    /// One JSONL line per vector: {"line": n, "embedding": […]}.
    public static func jsonl(_ rows: [[Float]], lines: [Int]) -> String {
        zip(lines, rows).map { l, v in
            JSONValue.object(["line": .int(l), "embedding": .array(v.map { .double(Double($0)) })]).serialized(JSONStyle()) + "\n"
        }.joined()
    }
}
