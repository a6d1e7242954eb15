import LoraOps
import OpenCLRuntime

/// How a sample's hidden states (the final norm's output, transformers'
/// `last_hidden_state`) become one vector.
public enum Pooling: String, Sendable, CaseIterable {
    /// The sample's last token (right padding: position length − 1), as decoder
    /// embedders (Qwen3-Embedding, E5-Mistral) pool.
    case last
    /// The mean over the sample's tokens (the attention mask's ones).
    case mean
}

extension LlamaLoRAModel {
    /// One vector per row of `b` (B, H), in eval mode: pooled = P·hf with the
    /// pooling matrix P (B, B·T) — a one-hot row at each sample's last token, or
    /// 1/length over its tokens — then, with `normalize`, each row divided by its
    /// L2 norm (the RMSNorm kernel with weight 1/√H: x / √(Σx²), as F.normalize
    /// does away from zero). `lengths`: each row's sample length (≤ T).
    public func pooledHiddenStates(_ b: TokenBatch, lengths: [Int], pooling: Pooling, normalize: Bool) throws -> [Float] {
        guard lengths.count == b.batch, lengths.allSatisfy({ (1...b.seq).contains($0) }) else {
            throw LoraError.batch("lengths must give 1…\(b.seq) tokens for each of the \(b.batch) rows")
        }
        let p = try prepare(b)
        try trunkForward(p, training: false)
        let H = config.hiddenSize, B = b.batch
        let pooled = try ctx.buffer(count: B * H, label: "pooled hidden states (\(B), \(H))")
        try ctx.matmul(pooled, try poolingMatrix(rows: 0..<B, lengths: lengths, seq: b.seq, pooling: pooling), p.hf,
                       m: B, n: H, k: b.tokens)
        guard normalize else { return try pooled.read() }
        let out = try ctx.buffer(count: B * H), rstd = try ctx.buffer(count: B)
        try l2Normalize(y: out, rstd: rstd, x: pooled, rows: B)
        return try out.read()
    }

    /// The pooling matrix P (rows, B·T) of batch rows `rows` (each `lengths[r]` tokens of a T-token
    /// row): a one-hot at the sample's last token, or 1/length over its tokens; pooled = P·hf.
    func poolingMatrix(rows: Range<Int>, lengths: [Int], seq T: Int, pooling: Pooling) throws -> DeviceBuffer<Float> {
        let N = lengths.count * T
        var w = [Float](repeating: 0, count: rows.count * N)
        for (i, r) in rows.enumerated() {
            let len = lengths[r]
            switch pooling {
            case .last: w[i * N + r * T + len - 1] = 1
            case .mean: for t in 0..<len { w[i * N + r * T + t] = 1 / Float(len) }
            }
        }
        return try ctx.buffer(w)
    }

    /// Each row of `x` (rows, H) divided by its L2 norm, as F.normalize: the RMSNorm kernel with weight
    /// 1/√H and eps 1e-24/H (mean(x²) + eps: F.normalize's clamp of the norm at 1e-12). Its backward is
    /// rmsnormBackward with `rstd` and `l2NormalizeWeight()`.
    func l2Normalize(y: DeviceBuffer<Float>, rstd: DeviceBuffer<Float>, x: DeviceBuffer<Float>, rows: Int) throws {
        let H = config.hiddenSize
        try ctx.rmsnormForward(y: y, rstd: rstd, x: x, weight: try l2NormalizeWeight(), rows: rows, cols: H, eps: 1e-24 / Float(H))
    }

    /// The weight 1/√H that makes RMSNorm an L2 normalisation.
    func l2NormalizeWeight() throws -> DeviceBuffer<Float> {
        try ctx.buffer([Float](repeating: 1 / Float(config.hiddenSize).squareRoot(), count: config.hiddenSize))
    }
}

extension TokenBatch {
    /// A batch without labels (inference) in the shape `config`'s head takes:
    /// plain rows for a causal LM, per-token −100 for a token classifier, a
    /// read-out per row (with placeholder targets) for a sequence classifier.
    public static func unlabelled(_ rows: [[Int]], lengths: [Int], for config: ModelConfig) throws -> TokenBatch {
        switch config.task {
        case .causalLM, .featureExtraction: return try TokenBatch(inputIDs: rows)
        case .questionAnswering: return try .questionAnswering(inputIDs: rows, spans: rows.map { _ in (0, 0) })
        case .tokenClassification: return try .tokenClassification(inputIDs: rows, labels: rows.map { $0.map { _ in -100 } })
        case .sequenceClassification(let c):
            let targets: ClassTargets = c.problemType == .singleLabel
                ? .classes(rows.map { _ in -100 }) : .reals(rows.map { _ in [Float](repeating: 0, count: c.numLabels) })
            return try .sequenceClassification(inputIDs: rows, padTokenID: config.padTokenID, lengths: lengths, targets: targets)
        }
    }
}
