import Foundation
import LoraBase

/// Plain CPU references for every kernel: float64 loops, the ground truth of the
/// parity tests and of the tuner's check (OpenBLAS sgemm, the speed yardstick,
/// is in ReferenceBLAS).
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
    /// gelu_pytorch_tanh: ½·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), and its derivative.
    // ½·(1 + tanh(u)) is written σ(2u): for a gate below about −6, 1 + tanh(u) cancels to a few ulps of 1 in
    // float64 (relative error 5e-4 at u ≈ −14), which failed a correct kernel (CI, seed 16036460814162678481).
    public static func geluTanh(_ x: Double) -> Double {
        let b = (2 / Double.pi).squareRoot()
        return x / (1 + exp(-2 * b * (x + 0.044715 * x * x * x)))
    }
    public static func geluTanhGrad(_ x: Double) -> Double {
        let b = (2 / Double.pi).squareRoot(), s = 1 / (1 + exp(-2 * b * (x + 0.044715 * x * x * x)))
        return s + 2 * x * s * (1 - s) * b * (1 + 3 * 0.044715 * x * x)
    }
}

/// The counter-based dropout RNG of Kernels/common.cl, bit for bit.
public enum DropoutMask {
    public static func hash(seed: UInt32, index: UInt64) -> UInt32 {
        UInt32(truncatingIfNeeded: SplitMix64.mix(index &+ (UInt64(seed) << 32) &+ SplitMix64.golden) >> 32)
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

/// The tests' and benchmarks' inputs: SplitMix64 with uniforms and normals.
public typealias SeededRandom = SplitMix64

extension SplitMix64 {
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
