import Foundation

/// float64 references of the model kernels (attention, RoPE, cross-entropy, AdamW).
extension Reference {
    /// HF rotate_half RoPE on x (N, heads, D) with tables (P, D); `inverse` rotates by −θ.
    /// rotate_half RoPE on the first `rotaryDim` values of each head (all by default), tables (P, rotaryDim).
    public static func rope(_ x: [Double], positions: [Int], cos: [Float], sin: [Float], tokens n: Int, heads: Int,
                            headDim d: Int, rotaryDim: Int? = nil, inverse: Bool = false) -> [Double] {
        var out = x
        let r = rotaryDim ?? d
        let h = r / 2, sign = inverse ? -1.0 : 1.0
        for t in 0..<n { for hh in 0..<heads { for i in 0..<h {
            let base = (t * heads + hh) * d, tb = positions[t] * r
            let a = x[base + i], b = x[base + i + h]
            out[base + i] = a * Double(cos[tb + i]) - b * sign * Double(sin[tb + i])
            out[base + i + h] = b * Double(cos[tb + i + h]) + a * sign * Double(sin[tb + i + h])
        } } }
        return out
    }

    /// Causal GQA attention, q (B·T, NH, D), k/v (B·T, NKV, D) → (B·T, NH, D).
    /// With `sequenceIDs` (B·T) query t of a row attends only keys j ≤ t of the
    /// same row with the same id (packed samples), else every j ≤ t.
    /// With `window` W, query t attends only keys j > t − W (transformers' sliding window, also within a sample).
    /// `scale`: the scores' scale, 1/√D unless given.
    public static func attention(q: [Double], k: [Double], v: [Double], batch: Int, seq: Int, heads: Int,
                                 kvHeads: Int, headDim d: Int, sequenceIDs: [Int]? = nil, window: Int? = nil,
                                 scale given: Double? = nil) -> [Double] {
        var out = [Double](repeating: 0, count: batch * seq * heads * d)
        let scale = given ?? 1 / Double(d).squareRoot(), group = heads / kvHeads
        for b in 0..<batch { for h in 0..<heads { for t in 0..<seq {
            let qo = ((b * seq + t) * heads + h) * d
            let keys = (0...t).filter { j in (sequenceIDs.map { $0[b * seq + j] == $0[b * seq + t] } ?? true) && (window.map { t - j < $0 } ?? true) }
            let scores = keys.map { j -> Double in
                let ko = ((b * seq + j) * kvHeads + h / group) * d
                return (0..<d).reduce(0) { $0 + q[qo + $1] * k[ko + $1] } * scale
            }
            let m = scores.max()!
            let e = scores.map { Foundation.exp($0 - m) }
            let z = e.reduce(0, +)
            for (n, j) in keys.enumerated() {
                let vo = ((b * seq + j) * kvHeads + h / group) * d
                for i in 0..<d { out[qo + i] += e[n] / z * v[vo + i] }
            }
        } } }
        return out
    }

    /// Mean cross-entropy over rows whose target ≥ 0, and its gradient.
    public static func crossEntropy(logits: [Double], targets: [Int], vocab v: Int) -> (loss: Double, grad: [Double]) {
        let rows = targets.count, counted = Double(targets.filter { $0 >= 0 }.count)
        var loss = 0.0, grad = [Double](repeating: 0, count: logits.count)
        for r in 0..<rows where targets[r] >= 0 {
            let row = Array(logits[(r * v)..<((r + 1) * v)])
            let m = row.max()!
            let lse = m + Foundation.log(row.reduce(0) { $0 + Foundation.exp($1 - m) })
            loss += lse - row[targets[r]]
            for c in 0..<v { grad[r * v + c] = (Foundation.exp(row[c] - lse) - (c == targets[r] ? 1 : 0)) / counted }
        }
        return (loss / counted, grad)
    }

    /// torch's MSELoss (`bce` false) or BCEWithLogitsLoss (true), means over all
    /// rows × C elements, and the gradient.
    public static func realTargetLoss(logits: [Double], targets: [Double], bce: Bool) -> (loss: Double, grad: [Double]) {
        let n = Double(logits.count)
        var loss = 0.0, grad = [Double](repeating: 0, count: logits.count)
        for (i, (x, y)) in zip(logits, targets).enumerated() {
            if bce {
                loss += Swift.max(x, 0) - x * y + Foundation.log1p(Foundation.exp(-Swift.abs(x)))
                grad[i] = (1 / (1 + Foundation.exp(-x)) - y) / n
            } else {
                loss += (x - y) * (x - y)
                grad[i] = 2 * (x - y) / n
            }
        }
        return (loss / n, grad)
    }

    /// torch.optim.AdamW's update of one tensor (with the clip coefficient applied to g).
    public static func adamw(p: [Double], g: [Double], m: [Double], v: [Double], step: Int, lr: Double, beta1: Double,
                             beta2: Double, eps: Double, wd: Double, clip: Double, decay: [Bool])
        -> (p: [Double], m: [Double], v: [Double]) {
        var p2 = p, m2 = m, v2 = v
        let bc1 = 1 - Foundation.pow(beta1, Double(step)), bc2 = 1 - Foundation.pow(beta2, Double(step))
        for i in 0..<p.count {
            let gi = g[i] * clip
            if decay[i] { p2[i] *= 1 - lr * wd }
            m2[i] = beta1 * m[i] + (1 - beta1) * gi
            v2[i] = beta2 * v[i] + (1 - beta2) * gi * gi
            p2[i] -= lr / bc1 * m2[i] / (v2[i].squareRoot() / bc2.squareRoot() + eps)
        }
        return (p2, m2, v2)
    }
}
