import Foundation
import LoraOps
import OpenCLRuntime
import Reference
import XCTest

final class LoRALinearTests: XCTestCase {
    /// (tokens, in, out, rank), awkward and mixed.
    static let shapes: [(Int, Int, Int, Int)] = [
        (1, 1, 1, 1), (3, 17, 5, 2), (17, 3, 63, 8), (63, 129, 17, 16), (129, 63, 129, 3), (5, 1000, 17, 64),
    ]

    struct Case {
        let n, din, dout, r: Int
        let x, w, a, b, bias: [Float]
        let lora: LoRASettings
        let seed: UInt32
        var mask: [Double]? {
            lora.dropout > 0 ? DropoutMask.multipliers(count: n * din, p: lora.dropout, seed: seed) : nil
        }
    }

    func makeCase(_ shape: (Int, Int, Int, Int), dropout: Float, rslora: Bool = false,
                  rng: inout SeededRandom) -> Case {
        let (n, din, dout, r) = shape
        return Case(n: n, din: din, dout: dout, r: r, x: rng.uniform(n * din), w: rng.uniform(dout * din),
                    a: rng.uniform(r * din), b: rng.uniform(dout * r), bias: rng.uniform(dout),
                    lora: LoRASettings(rank: r, alpha: Float(r) * 1.5 + 1, dropout: dropout, useRSLoRA: rslora),
                    seed: UInt32.random(in: 0...UInt32.max, using: &rng))
    }

    /// The forward run on |inputs|: per element, the sum of its terms' magnitudes,
    /// which bounds float rounding where the terms cancel.
    func termMagnitudes(_ c: Case, bias: Bool) -> (y: [Double], u: [Double]) {
        Reference.loraForward(x: c.x.map { abs(Double($0)) }, w: c.w.map { abs(Double($0)) },
                              a: c.a.map { abs(Double($0)) }, b: c.b.map { abs(Double($0)) },
                              bias: bias ? c.bias.map { abs(Double($0)) } : nil, n: c.n, din: c.din, dout: c.dout,
                              r: c.r, scale: abs(Double(c.lora.scale)), mask: c.mask)
    }

    func norm(_ v: [Double]) -> Double { v.reduce(0) { $0 + $1 * $1 }.squareRoot() }

    func runForward(_ ctx: ComputeContext, _ c: Case, bias: Bool) throws -> (y: [Float], u: [Float]) {
        let base = try FrozenLinear(ctx, weight: try ctx.buffer(c.w), outFeatures: c.dout, inFeatures: c.din)
        let y = try poisoned(ctx, c.n * c.dout), u = try poisoned(ctx, c.n * c.r)
        try ctx.loraForward(y: y, u: u, x: try ctx.buffer(c.x), base: base, a: try ctx.buffer(c.a),
                            b: try ctx.buffer(c.b), bias: bias ? try ctx.buffer(c.bias) : nil,
                            tokens: c.n, lora: c.lora, seed: c.seed)
        return (try y.read(), try u.read())
    }

    func testForwardAgainstFloat64WithAndWithoutDropout() throws {
        let ctx = try sharedContext()
        var rng = freshRandom(#function)
        for shape in Self.shapes {
            for (p, rs, bias) in [(Float(0), false, false), (0.3, false, true), (0.1, true, false)] {
                let c = makeCase(shape, dropout: p, rslora: rs, rng: &rng)
                let (y, u) = try runForward(ctx, c, bias: bias)
                let ref = Reference.loraForward(x: toDouble(c.x), w: toDouble(c.w), a: toDouble(c.a), b: toDouble(c.b),
                                                bias: bias ? toDouble(c.bias) : nil, n: c.n, din: c.din, dout: c.dout,
                                                r: c.r, scale: Double(c.lora.scale), mask: c.mask)
                // Bounded by the magnitude of the summed terms: y = x·Wᵀ + s·u·Bᵀ can cancel.
                let terms = termMagnitudes(c, bias: bias)
                assertClose(y, ref.y, floor: norm(terms.y), "lora y \(shape) p=\(p) rslora=\(rs) bias=\(bias)")
                assertClose(u, ref.u, floor: norm(terms.u), "lora u \(shape) p=\(p)")
            }
        }
    }

    /// The fused forward equals the base matmul plus the two low-rank matmuls,
    /// each run through the plain matmul kernel.
    func testFusedForwardEqualsUnfusedComposition() throws {
        let ctx = try sharedContext()
        var rng = freshRandom(#function)
        for shape in Self.shapes {
            let c = makeCase(shape, dropout: 0, rng: &rng)
            let (y, _) = try runForward(ctx, c, bias: true)
            let x = try ctx.buffer(c.x), w = try ctx.buffer(c.w), a = try ctx.buffer(c.a), b = try ctx.buffer(c.b)
            let yc = try ctx.buffer(count: c.n * c.dout), u = try ctx.buffer(count: c.n * c.r)
            try ctx.matmul(yc, x, w, m: c.n, n: c.dout, k: c.din, transB: .transposed)
            try ctx.matmul(u, x, a, m: c.n, n: c.r, k: c.din, transB: .transposed)
            try ctx.matmul(yc, u, b, m: c.n, n: c.dout, k: c.r, transB: .transposed, alpha: c.lora.scale, beta: 1)
            let composed = try yc.read()
            let withBias = (0..<c.n * c.dout).map { Double(composed[$0]) + Double(c.bias[$0 % c.dout]) }
            assertClose(y, withBias, floor: norm(termMagnitudes(c, bias: true).y), "fused vs composed \(shape)")
        }
    }

    func testDropoutZeroEqualsNoDropoutAndSeedsBehave() throws {
        let ctx = try sharedContext()
        var rng = freshRandom(#function)
        let c0 = makeCase((33, 129, 17, 8), dropout: 0, rng: &rng)
        let noDrop = try runForward(ctx, c0, bias: false)
        let ref = Reference.loraForward(x: toDouble(c0.x), w: toDouble(c0.w), a: toDouble(c0.a), b: toDouble(c0.b),
                                        bias: nil, n: c0.n, din: c0.din, dout: c0.dout, r: c0.r,
                                        scale: Double(c0.lora.scale), mask: nil)
        assertClose(noDrop.y, ref.y, "p = 0")
        // p = 0 ignores the seed entirely.
        let other = Case(n: c0.n, din: c0.din, dout: c0.dout, r: c0.r, x: c0.x, w: c0.w, a: c0.a, b: c0.b,
                         bias: c0.bias, lora: c0.lora, seed: c0.seed &+ 1)
        XCTAssertEqual(try runForward(ctx, other, bias: false).y, noDrop.y)

        let n = 4097 * 16
        let x = try ctx.buffer([Float](repeating: 1, count: n))
        func mask(_ p: Float, _ seed: UInt32) throws -> [Float] {
            let out = try poisoned(ctx, n)
            try ctx.dropoutForward(out: out, x: x, count: n, p: p, seed: seed)
            return try out.read()
        }
        for p: Float in [0.05, 0.1, 0.5, 0.9] {
            let m1 = try mask(p, 42), m2 = try mask(p, 42), m3 = try mask(p, 43)
            XCTAssertEqual(m1, m2, "same seed, same mask (p=\(p))")
            XCTAssertNotEqual(m1, m3, "different seed, different mask (p=\(p))")
            let kept = Double(m1.filter { $0 != 0 }.count) / Double(n)
            // Binomial standard deviation √(p(1−p)/n) ≤ 0.002 here; allow 5σ.
            let sigma = (Double(p) * Double(1 - p) / Double(n)).squareRoot()
            XCTAssertEqual(kept, 1 - Double(p), accuracy: 5 * sigma, "kept fraction at p=\(p)")
            XCTAssertTrue(m1.allSatisfy { $0 == 0 || abs($0 - 1 / (1 - p)) < 1e-6 }, "kept values scaled by 1/(1-p)")
            // The device mask is the host replica's, bit for bit.
            XCTAssertEqual(m1.map(Double.init), DropoutMask.multipliers(count: n, p: p, seed: 42).map { Double(Float($0)) })
            // Neighbouring seeds are uncorrelated: overlap of kept sets ≈ (1−p)².
            let both = Double(zip(m1, m3).filter { $0 != 0 && $1 != 0 }.count) / Double(n)
            XCTAssertEqual(both, Double((1 - p) * (1 - p)), accuracy: 0.01, "seed independence at p=\(p)")
        }
    }

    func runBackward(_ ctx: ComputeContext, _ c: Case, dy: [Float], withDX: Bool = true)
        throws -> (dx: [Float], da: [Float], db: [Float], dbias: [Float]) {
        let base = try FrozenLinear(ctx, weight: try ctx.buffer(c.w), outFeatures: c.dout, inFeatures: c.din)
        let x = try ctx.buffer(c.x), a = try ctx.buffer(c.a), b = try ctx.buffer(c.b)
        let y = try ctx.buffer(count: c.n * c.dout), u = try ctx.buffer(count: c.n * c.r)
        try ctx.loraForward(y: y, u: u, x: x, base: base, a: a, b: b, bias: nil, tokens: c.n, lora: c.lora, seed: c.seed)
        let dx = try poisoned(ctx, c.n * c.din), da = try poisoned(ctx, c.r * c.din)
        let db = try poisoned(ctx, c.dout * c.r), dbias = try poisoned(ctx, c.dout)
        try ctx.loraBackward(dx: withDX ? dx : nil, da: da, db: db, dbias: dbias, dy: try ctx.buffer(dy), x: x, u: u,
                             base: base, a: a, b: b, tokens: c.n, lora: c.lora, seed: c.seed)
        return (withDX ? try dx.read() : [], try da.read(), try db.read(), try dbias.read())
    }

    func testBackwardAgainstFloat64AndFiniteDifferences() throws {
        let ctx = try sharedContext()
        var rng = freshRandom(#function)
        for shape in Self.shapes {
            for p: Float in [0, 0.25] {
                let c = makeCase(shape, dropout: p, rng: &rng)
                let dy = rng.uniform(c.n * c.dout)
                let g = try runBackward(ctx, c, dy: dy)
                let xD = toDouble(c.x), wD = toDouble(c.w), aD = toDouble(c.a), bD = toDouble(c.b), dyD = toDouble(dy)
                let s = Double(c.lora.scale), mask = c.mask
                let ref = Reference.loraBackward(dy: dyD, x: xD, w: wD, a: aD, b: bD, n: c.n, din: c.din, dout: c.dout,
                                                 r: c.r, scale: s, mask: mask)
                // The same sums over |terms|: dX = dY·W + s·(dY·B)·A can cancel (at 1×1×1×1 it is
                // two products), so its float error is bounded by the magnitude of its terms, not of the result.
                let terms = Reference.loraBackward(dy: dyD.map(abs), x: xD.map(abs), w: wD.map(abs), a: aD.map(abs),
                                                   b: bD.map(abs), n: c.n, din: c.din, dout: c.dout, r: c.r,
                                                   scale: abs(s), mask: mask)
                let what = "\(shape) p=\(p)"
                assertClose(g.dx, ref.dx, floor: norm(terms.dx), "lora dX \(what)")
                assertClose(g.da, ref.da, floor: norm(terms.da), "lora dA \(what)")
                assertClose(g.db, ref.db, floor: norm(terms.db), "lora dB \(what)")
                assertClose(g.dbias, ref.dbias, floor: norm(terms.dbias), "lora dbias \(what)")
                // L = Σ y ⊙ dY with the same (fixed) dropout mask.
                func loss(x: [Double] = xD, a: [Double] = aD, b: [Double] = bD, bias: [Double]? = nil) -> Double {
                    dot(Reference.loraForward(x: x, w: wD, a: a, b: b, bias: bias, n: c.n, din: c.din, dout: c.dout,
                                              r: c.r, scale: s, mask: mask).y, dyD)
                }
                assertGradient(g.dx, at: xD, samples: 6, rng: &rng, "dX \(what)") { loss(x: $0) }
                assertGradient(g.da, at: aD, samples: 6, rng: &rng, "dA \(what)") { loss(a: $0) }
                assertGradient(g.db, at: bD, samples: 6, rng: &rng, "dB \(what)") { loss(b: $0) }
                assertGradient(g.dbias, at: toDouble(c.bias), samples: 4, rng: &rng, "dbias \(what)") { loss(bias: $0) }
            }
        }
    }

    /// Backward equals the unfused composition of matmul kernels (p = 0):
    /// g = s·dY·B, dB = s·dYᵀ·u, dA = gᵀ·x, dX = dY·W + g·A.
    func testBackwardEqualsUnfusedComposition() throws {
        let ctx = try sharedContext()
        var rng = freshRandom(#function)
        let c = makeCase((63, 129, 17, 16), dropout: 0, rng: &rng)
        let dy = rng.uniform(c.n * c.dout)
        let fused = try runBackward(ctx, c, dy: dy)
        let s = c.lora.scale
        let bdy = try ctx.buffer(dy), x = try ctx.buffer(c.x), w = try ctx.buffer(c.w)
        let a = try ctx.buffer(c.a), b = try ctx.buffer(c.b)
        let u = try ctx.buffer(count: c.n * c.r), g = try ctx.buffer(count: c.n * c.r)
        try ctx.matmul(u, x, a, m: c.n, n: c.r, k: c.din, transB: .transposed)
        try ctx.matmul(g, bdy, b, m: c.n, n: c.r, k: c.dout, alpha: s)
        let db = try ctx.buffer(count: c.dout * c.r), da = try ctx.buffer(count: c.r * c.din)
        let dx = try ctx.buffer(count: c.n * c.din)
        try ctx.matmul(db, bdy, u, m: c.dout, n: c.r, k: c.n, transA: .transposed, alpha: s)
        try ctx.matmul(da, g, x, m: c.r, n: c.din, k: c.n, transA: .transposed)
        try ctx.matmul(dx, bdy, w, m: c.n, n: c.din, k: c.dout)
        try ctx.matmul(dx, g, a, m: c.n, n: c.din, k: c.r, beta: 1)
        assertClose(fused.db, toDouble(try db.read()), "dB fused vs composed")
        assertClose(fused.da, toDouble(try da.read()), "dA fused vs composed")
        assertClose(fused.dx, toDouble(try dx.read()), "dX fused vs composed")
    }

    func testGradientAccumulationWithBeta() throws {
        let ctx = try sharedContext()
        var rng = freshRandom(#function)
        let c = makeCase((17, 63, 33, 8), dropout: 0.1, rng: &rng)
        let dy = rng.uniform(c.n * c.dout)
        let once = try runBackward(ctx, c, dy: dy)
        let base = try FrozenLinear(ctx, weight: try ctx.buffer(c.w), outFeatures: c.dout, inFeatures: c.din)
        let x = try ctx.buffer(c.x), a = try ctx.buffer(c.a), b = try ctx.buffer(c.b), bdy = try ctx.buffer(dy)
        let y = try ctx.buffer(count: c.n * c.dout), u = try ctx.buffer(count: c.n * c.r)
        try ctx.loraForward(y: y, u: u, x: x, base: base, a: a, b: b, bias: nil, tokens: c.n, lora: c.lora, seed: c.seed)
        let da = try ctx.buffer(count: c.r * c.din), db = try ctx.buffer(count: c.dout * c.r)
        for step in 0..<2 {
            try ctx.loraBackward(dx: nil, da: da, db: db, dbias: nil, dy: bdy, x: x, u: u, base: base, a: a, b: b,
                                 tokens: c.n, lora: c.lora, seed: c.seed, gradBeta: step == 0 ? 0 : 1)
        }
        assertClose(try da.read(), once.da.map { 2 * Double($0) }, "dA accumulated twice")
        assertClose(try db.read(), once.db.map { 2 * Double($0) }, "dB accumulated twice")
    }

    func testSettingsScale() {
        XCTAssertEqual(LoRASettings(rank: 16, alpha: 32).scale, 2)
        XCTAssertEqual(LoRASettings(rank: 16, alpha: 32, useRSLoRA: true).scale, 8)
    }
}
