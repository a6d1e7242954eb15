import Foundation

/// float64 reference of the KV-cache attention (Kernels/decode.cl).
extension Reference {
    /// n queries q (n, NH, D) at positions p0 … p0+n−1 over keys/values
    /// k, v (p0+n, NKV, D) of one sequence: query i sees keys 0 … p0+i.
    /// Returns (n, NH, D).
    /// With `window` W the query at position p attends only keys j > p − W.
    public static func decodeAttention(q: [Double], k: [Double], v: [Double], tokens n: Int, position p0: Int,
                                       heads: Int, kvHeads: Int, headDim d: Int, window: Int? = nil,
                                       scale given: Double? = nil) -> [Double] {
        var out = [Double](repeating: 0, count: n * heads * d)
        let scale = given ?? 1 / Double(d).squareRoot(), group = heads / kvHeads
        for i in 0..<n { for h in 0..<heads {
            let qo = (i * heads + h) * d, g = h / group, last = p0 + i
            let first = window.map { max(0, last - $0 + 1) } ?? 0
            var scores = [Double](repeating: -Double.infinity, count: last + 1)
            for j in first...last {
                let ko = (j * kvHeads + g) * d
                var s = 0.0
                for x in 0..<d { s += q[qo + x] * k[ko + x] }
                scores[j] = s * scale
            }
            let m = scores.max()!
            let e = scores.map { Foundation.exp($0 - m) }
            let z = e.reduce(0, +)
            for j in first...last {
                let vo = (j * kvHeads + g) * d
                for x in 0..<d { out[qo + x] += e[j] / z * v[vo + x] }
            }
        } }
        return out
    }
}
