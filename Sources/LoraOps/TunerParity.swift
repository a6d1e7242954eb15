import Foundation
import LoraBase
import OpenCLRuntime
import Reference

// The tuner's check before timing: a candidate config's gemm against the
// float64 reference (Reference.matmul), on awkward shapes.

extension Tuner {
    // MARK: the check before timing

    /// The relative error allowed against the float64 reference.
    public static let parityTolerance = 1e-5

    /// nil when `ctx`'s matmul matches a float64 reference on awkward shapes
    /// (sizes not multiples of 16 or of any GEMM_MR; every transpose form;
    /// NaN-poisoned C with beta = 0, beta ≠ 0, a pre-packed weight with bias);
    /// otherwise what failed.
    public static func parityFailure(_ ctx: ComputeContext) throws -> String? {
        var rng = SplitMix64(seed: 0xc0ffee)
        // 293 rows: with `band`, several full bands of row groups and a partial last one.
        let shapes = [(1, 1, 1), (37, 45, 70), (13, 17, 5), (29, 33, 129), (293, 45, 17)]
        for (m, n, k) in shapes {
            for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
                let a = rng.signedUnits(m * k), b = rng.signedUnits(k * n), c0 = rng.signedUnits(m * n)
                let beta: Float = (m + n) % 2 == 0 ? 0 : 0.75
                let c = try ctx.buffer(count: m * n)
                if beta == 0 { try c.fill(.nan) } else { try c.write(c0) }
                try ctx.matmul(c, try ctx.buffer(a), try ctx.buffer(b), m: m, n: n, k: k,
                               transA: ta ? .transposed : .none, transB: tb ? .transposed : .none,
                               alpha: 1.5, beta: beta)
                let ref = Reference.matmul(a, b, c: c0, m: m, n: n, k: k, transA: ta, transB: tb, alpha: 1.5, beta: Double(beta))
                if let e = Self.mismatch(try c.read(), ref) {
                    return "matmul \(m)x\(n)x\(k) tA=\(ta) tB=\(tb) β=\(beta): \(e)"
                }
            }
            // x·Wᵀ + bias with the weight packed once (the frozen-linear path).
            let x = rng.signedUnits(m * k), w = rng.signedUnits(n * k), bias = rng.signedUnits(n)
            let y = try ctx.buffer(count: m * n)
            try y.fill(.nan)
            let packed = try ctx.pack(try ctx.buffer(w), k: k, n: n, .transposed)
            try ctx.matmul(y, try ctx.buffer(x), packed: packed, m: m, bias: try ctx.buffer(bias))
            let ref = zip(Reference.matmul(x, w, m: m, n: n, k: k, transB: true), (0..<m * n).map { bias[$0 % n] })
                .map { $0 + Double($1) }
            if let e = Self.mismatch(try y.read(), ref) { return "packed x·Wᵀ + b \(m)x\(n)x\(k): \(e)" }
        }
        return nil
    }

    static func mismatch(_ out: [Float], _ ref: [Double]) -> String? {
        if out.count != ref.count { return "\(out.count) values, expected \(ref.count)" }
        if let i = out.firstIndex(where: { !$0.isFinite }) { return "non-finite value at \(i) (unwritten element?)" }
        let err = relativeError(out, ref)
        return err <= parityTolerance ? nil : String(format: "relative error %.3g > %.0e", err, parityTolerance)
    }
}
