import CBLAS
import Foundation

/// Plain CPU references for every kernel: float64 loops (the ground truth of
/// the parity tests) and OpenBLAS sgemm (the speed and parity yardstick).
public enum Reference {
    // MARK: matmul

    /// C (M,N) = alpha·op(A)·op(B) + beta·C in float64. A stored (M,K) or (K,M)
    /// when `transA`; B stored (K,N) or (N,K) when `transB`.
    public static func matmul(_ a: [Float], _ b: [Float], c: [Float]? = nil, m: Int, n: Int, k: Int,
                              transA: Bool = false, transB: Bool = false,
                              alpha: Double = 1, beta: Double = 0) -> [Double] {
        var out = [Double](repeating: 0, count: m * n)
        for i in 0..<m {
            for j in 0..<n {
                var s = 0.0
                for p in 0..<k {
                    let av = transA ? a[p * m + i] : a[i * k + p]
                    let bv = transB ? b[j * k + p] : b[p * n + j]
                    s += Double(av) * Double(bv)
                }
                out[i * n + j] = alpha * s + (beta != 0 ? beta * Double(c![i * n + j]) : 0)
            }
        }
        return out
    }

    /// OpenBLAS sgemm, row-major, C (M,N) overwritten/accumulated as BLAS does.
    public static func sgemm(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>,
                             m: Int, n: Int, k: Int, transA: Bool = false, transB: Bool = false,
                             alpha: Float = 1, beta: Float = 0) {
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(transA ? m : k), b, Int32(transB ? k : n),
                    beta, c, Int32(n))
    }

    public static func sgemm(_ a: [Float], _ b: [Float], c: [Float]? = nil, m: Int, n: Int, k: Int,
                             transA: Bool = false, transB: Bool = false, alpha: Float = 1, beta: Float = 0) -> [Float] {
        var out = c ?? [Float](repeating: 0, count: m * n)
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                out.withUnsafeMutableBufferPointer { pc in
                    sgemm(pa.baseAddress!, pb.baseAddress!, pc.baseAddress!, m: m, n: n, k: k,
                          transA: transA, transB: transB, alpha: alpha, beta: beta)
                }
            }
        }
        return out
    }

    // MARK: RMSNorm

    public static func rmsnormForward(x: [Float], w: [Float], rows n: Int, cols c: Int, eps: Double)
        -> (y: [Double], rstd: [Double]) {
        var y = [Double](repeating: 0, count: n * c), rstd = [Double](repeating: 0, count: n)
        for i in 0..<n {
            var ss = 0.0
            for j in 0..<c { ss += Double(x[i * c + j]) * Double(x[i * c + j]) }
            let r = 1 / (ss / Double(c) + eps).squareRoot()
            rstd[i] = r
            for j in 0..<c { y[i * c + j] = Double(x[i * c + j]) * r * Double(w[j]) }
        }
        return (y, rstd)
    }

    /// Analytic RMSNorm backward in float64 (dx, dw).
    public static func rmsnormBackward(dy: [Float], x: [Float], w: [Float], rows n: Int, cols c: Int, eps: Double)
        -> (dx: [Double], dw: [Double]) {
        let (_, rstd) = rmsnormForward(x: x, w: w, rows: n, cols: c, eps: eps)
        var dx = [Double](repeating: 0, count: n * c), dw = [Double](repeating: 0, count: c)
        for i in 0..<n {
            let r = rstd[i]
            var dot = 0.0
            for j in 0..<c { dot += Double(w[j]) * Double(dy[i * c + j]) * Double(x[i * c + j]) }
            for j in 0..<c {
                dx[i * c + j] = r * Double(w[j]) * Double(dy[i * c + j]) - r * r * r * dot / Double(c) * Double(x[i * c + j])
                dw[j] += Double(dy[i * c + j]) * Double(x[i * c + j]) * r
            }
        }
        return (dx, dw)
    }

    // MARK: activations

    public static func sigmoid(_ x: Double) -> Double { 1 / (1 + exp(-x)) }
    public static func silu(_ x: Double) -> Double { x * sigmoid(x) }
    public static func siluGrad(_ x: Double) -> Double { let s = sigmoid(x); return s * (1 + x * (1 - s)) }
}

/// The counter-based dropout RNG of Kernels/common.cl, bit for bit.
public enum DropoutMask {
    public static func hash(seed: UInt32, index: UInt64) -> UInt32 {
        var z = index &+ (UInt64(seed) << 32) &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z = z ^ (z >> 31)
        return UInt32(truncatingIfNeeded: z >> 32)
    }

    public static func keep(seed: UInt32, index: UInt64, p: Float) -> Bool {
        let u = Float(hash(seed: seed, index: index) >> 8) * (1.0 / 16_777_216.0)
        return u >= p
    }

    /// Inverted-dropout multipliers (0 or 1/(1−p)) of `count` elements.
    public static func multipliers(count: Int, p: Float, seed: UInt32) -> [Double] {
        (0..<count).map { keep(seed: seed, index: UInt64($0), p: p) ? 1 / (1 - Double(p)) : 0 }
    }
}

/// SplitMix64: a small seeded generator for test and benchmark inputs.
public struct SeededRandom: RandomNumberGenerator {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// `count` uniforms in [lo, hi).
    public mutating func uniform(_ count: Int, _ lo: Float = -1, _ hi: Float = 1) -> [Float] {
        (0..<count).map { _ in Float.random(in: lo..<hi, using: &self) }
    }

    /// `count` normals N(0, std²) by Box–Muller.
    public mutating func normal(_ count: Int, std: Float = 1) -> [Float] {
        (0..<count).map { _ in
            let u1 = Double.random(in: Double.ulpOfOne..<1, using: &self)
            let u2 = Double.random(in: 0..<1, using: &self)
            return Float((-2 * log(u1)).squareRoot() * cos(2 * .pi * u2)) * std
        }
    }
}

/// ‖out − ref‖ / ‖ref‖ (and whether any output is NaN or infinite).
public func relativeError(_ out: [Float], _ ref: [Double]) -> Double {
    precondition(out.count == ref.count)
    var num = 0.0, den = 0.0
    for (o, r) in zip(out, ref) {
        if !o.isFinite { return .infinity }
        num += (Double(o) - r) * (Double(o) - r)
        den += r * r
    }
    return den == 0 ? num.squareRoot() : (num / den).squareRoot()
}
