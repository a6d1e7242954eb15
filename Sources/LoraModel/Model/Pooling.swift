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
        let H = config.hiddenSize, B = b.batch, N = b.tokens
        var weights = [Float](repeating: 0, count: B * N)
        for (r, len) in lengths.enumerated() {
            switch pooling {
            case .last: weights[r * N + r * b.seq + len - 1] = 1
            case .mean: for t in 0..<len { weights[r * N + r * b.seq + t] = 1 / Float(len) }
            }
        }
        let poolMatrix = try ctx.buffer(weights)
        let pooled = try ctx.buffer(count: B * H, label: "pooled hidden states (\(B), \(H))")
        try ctx.matmul(pooled, poolMatrix, p.hf, m: B, n: H, k: N)
        guard normalize else { return try pooled.read() }
        let unit = try ctx.buffer([Float](repeating: 1 / Float(H).squareRoot(), count: H))
        let out = try ctx.buffer(count: B * H), rstd = try ctx.buffer(count: B)
        // mean(x²) + eps with eps = 1e-24/H: F.normalize's clamp of the norm at 1e-12.
        try ctx.rmsnormForward(y: out, rstd: rstd, x: pooled, weight: unit, rows: B, cols: H, eps: 1e-24 / Float(H))
        return try out.read()
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
