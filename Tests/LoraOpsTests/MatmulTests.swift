import LoraOps
import OpenCLRuntime
import Reference
import ReferenceBLAS
import XCTest

final class MatmulTests: XCTestCase {
    /// Awkward sizes: 1, 3, 17, 63, 129 (never multiples of the 16-wide panel or
    /// the 8-row tile) and mixed with 1000.
    static let shapes: [(m: Int, n: Int, k: Int)] = [
        (1, 1, 1), (3, 1, 17), (1, 3, 1), (17, 3, 1), (3, 17, 63), (63, 129, 17), (129, 63, 129),
        (17, 1000, 3), (1000, 17, 63), (129, 129, 1000), (1, 1000, 129), (1000, 1, 17), (64, 32, 48),
    ]

    func testAllFormsAgainstFloat64Reference() throws {
        let ctx = try sharedContext()
        var rng = freshRandom(#function)
        let forms: [(Bool, Bool)] = [(false, false), (false, true), (true, false), (true, true)]
        for (m, n, k) in Self.shapes {
            for (ta, tb) in forms {
                let a = rng.uniform(m * k), b = rng.uniform(k * n)
                let alpha = Float.random(in: -2...2, using: &rng)
                let da = try ctx.buffer(a), db = try ctx.buffer(b)
                // beta = 0 on a NaN-poisoned C: every element must be written and C never read.
                let c = try poisoned(ctx, m * n)
                try ctx.matmul(c, da, db, m: m, n: n, k: k, transA: ta ? .transposed : .none,
                               transB: tb ? .transposed : .none, alpha: alpha)
                let ref = Reference.matmul(a, b, m: m, n: n, k: k, transA: ta, transB: tb, alpha: Double(alpha))
                assertClose(try c.read(), ref, "matmul \(m)x\(n)x\(k) tA=\(ta) tB=\(tb) α=\(alpha)")
                // beta ≠ 0 accumulates into C.
                let c0 = rng.uniform(m * n)
                let beta = Float.random(in: -1.5...1.5, using: &rng)
                let c2 = try ctx.buffer(c0)
                try ctx.matmul(c2, da, db, m: m, n: n, k: k, transA: ta ? .transposed : .none,
                               transB: tb ? .transposed : .none, alpha: alpha, beta: beta)
                let ref2 = Reference.matmul(a, b, c: c0, m: m, n: n, k: k, transA: ta, transB: tb,
                                            alpha: Double(alpha), beta: Double(beta))
                assertClose(try c2.read(), ref2, "matmul β=\(beta) \(m)x\(n)x\(k) tA=\(ta) tB=\(tb)")
            }
        }
    }

    func testTrainingSizedShapesAgainstOpenBLAS() throws {
        let ctx = try sharedContext()
        var rng = freshRandom(#function)
        for (m, n, k, ta, tb) in [(1000, 1000, 1000, false, true), (257, 576, 1536, false, false),
                                  (576, 100, 1000, true, false), (1024, 192, 576, false, true)] {
            let a = rng.uniform(m * k), b = rng.uniform(k * n)
            let c = try poisoned(ctx, m * n)
            try ctx.matmul(c, try ctx.buffer(a), try ctx.buffer(b), m: m, n: n, k: k,
                           transA: ta ? .transposed : .none, transB: tb ? .transposed : .none)
            let ref = Reference.sgemm(a, b, m: m, n: n, k: k, transA: ta, transB: tb)
            assertClose(try c.read(), toDouble(ref), "matmul vs sgemm \(m)x\(n)x\(k) tA=\(ta) tB=\(tb)")
        }
    }

    func testPackedWeightWithBias() throws {
        let ctx = try sharedContext()
        var rng = freshRandom(#function)
        for (m, n, k) in [(1, 1, 1), (17, 129, 63), (3, 1000, 17)] {
            let x = rng.uniform(m * k), w = rng.uniform(n * k), bias = rng.uniform(n)
            let packed = try ctx.pack(try ctx.buffer(w), k: k, n: n, .transposed)
            let y = try poisoned(ctx, m * n)
            try ctx.matmul(y, try ctx.buffer(x), packed: packed, m: m, bias: try ctx.buffer(bias))
            var ref = Reference.matmul(x, w, m: m, n: n, k: k, transB: true)
            for i in 0..<m { for j in 0..<n { ref[i * n + j] += Double(bias[j]) } }
            assertClose(try y.read(), ref, "x·Wᵀ + b \(m)x\(n)x\(k)")
        }
    }

    func testColumnSum() throws {
        let ctx = try sharedContext()
        var rng = freshRandom(#function)
        for (m, n) in [(1, 1), (17, 3), (1000, 129)] {
            let x = rng.uniform(m * n)
            let out = try poisoned(ctx, n)
            try ctx.columnSum(out, try ctx.buffer(x), m: m, n: n)
            var ref = [Double](repeating: 0, count: n)
            for i in 0..<m { for j in 0..<n { ref[j] += Double(x[i * n + j]) } }
            assertClose(try out.read(), ref, "colsum \(m)x\(n)")
        }
    }

    func testShapeErrorsThrowInsteadOfCrashing() throws {
        let ctx = try sharedContext()
        let a = try ctx.buffer(count: 6), b = try ctx.buffer(count: 6), c = try ctx.buffer(count: 3)
        XCTAssertThrowsError(try ctx.matmul(c, a, b, m: 3, n: 3, k: 2)) { error in
            XCTAssertTrue("\(error)".contains("C has 3 elements"), "\(error)")
        }
        XCTAssertThrowsError(try ctx.matmul(c, a, b, m: 0, n: 3, k: 2))
    }
}
