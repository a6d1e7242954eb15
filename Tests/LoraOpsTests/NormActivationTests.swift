import Foundation
import LoraOps
import OpenCLRuntime
import Reference
import XCTest

final class RMSNormTests: XCTestCase {
    static let shapes: [(Int, Int)] = [(1, 1), (3, 17), (17, 3), (63, 129), (129, 1000), (1, 576), (33, 64)]

    func testForwardAgainstFloat64() throws {
        let ctx = try sharedContext()
        var rng = freshRandom(#function)
        for (n, c) in Self.shapes {
            let x = rng.uniform(n * c, -3, 3), w = rng.uniform(c, 0.5, 1.5)
            let y = try poisoned(ctx, n * c), rstd = try poisoned(ctx, n)
            try ctx.rmsnormForward(y: y, rstd: rstd, x: try ctx.buffer(x), weight: try ctx.buffer(w),
                                   rows: n, cols: c, eps: 1e-5)
            let ref = Reference.rmsnormForward(x: x, w: w, rows: n, cols: c, eps: 1e-5)
            assertClose(try y.read(), ref.y, "rmsnorm y \(n)x\(c)")
            assertClose(try rstd.read(), ref.rstd, "rmsnorm rstd \(n)x\(c)")
        }
    }

    func testBackwardAgainstAnalyticAndFiniteDifferences() throws {
        let ctx = try sharedContext()
        var rng = freshRandom(#function)
        for (n, c) in Self.shapes {
            let x = rng.uniform(n * c, -3, 3), w = rng.uniform(c, 0.5, 1.5), dy = rng.uniform(n * c)
            let bx = try ctx.buffer(x), bw = try ctx.buffer(w)
            let y = try ctx.buffer(count: n * c), rstd = try ctx.buffer(count: n)
            try ctx.rmsnormForward(y: y, rstd: rstd, x: bx, weight: bw, rows: n, cols: c, eps: 1e-5)
            let dx = try poisoned(ctx, n * c), dw = try poisoned(ctx, c)
            try ctx.rmsnormBackward(dx: dx, dweight: dw, dy: try ctx.buffer(dy), x: bx, weight: bw, rstd: rstd,
                                    rows: n, cols: c)
            let ref = Reference.rmsnormBackward(dy: dy, x: x, w: w, rows: n, cols: c, eps: 1e-5)
            let gx = try dx.read(), gw = try dw.read()
            // dx is r·w⊙dy minus a projection of it; when C is tiny the two nearly
            // cancel, so fp32 is held to 1e-5 of the first term's size.
            let rs = Reference.rmsnormForward(x: x, w: w, rows: n, cols: c, eps: 1e-5).rstd
            let firstTerm = (0..<n * c).map { i in rs[i / c] * Double(w[i % c]) * Double(dy[i]) }
            let floor = firstTerm.reduce(0) { $0 + $1 * $1 }.squareRoot()
            assertClose(gx, ref.dx, tol: 1e-5, floor: floor, "rmsnorm dx \(n)x\(c)")
            assertClose(gw, ref.dw, tol: 1e-5, "rmsnorm dw \(n)x\(c)")
            // L = Σ y ⊙ dy, differentiated numerically in float64.
            let dyD = toDouble(dy), xD = toDouble(x), wD = toDouble(w)
            func loss(_ xs: [Double], _ ws: [Double]) -> Double {
                var total = 0.0
                for i in 0..<n {
                    var ss = 0.0
                    for j in 0..<c { ss += xs[i * c + j] * xs[i * c + j] }
                    let r = 1 / (ss / Double(c) + 1e-5).squareRoot()
                    for j in 0..<c { total += xs[i * c + j] * r * ws[j] * dyD[i * c + j] }
                }
                return total
            }
            assertGradient(gx, at: xD, samples: 12, rng: &rng, floor: firstTerm.map(abs).max()!, "rmsnorm dx \(n)x\(c)") { loss($0, wD) }
            assertGradient(gw, at: wD, samples: 12, rng: &rng, "rmsnorm dw \(n)x\(c)") { loss(xD, $0) }
        }
    }

    func testBackwardAccumulatesWithBeta() throws {
        let ctx = try sharedContext()
        var rng = freshRandom(#function)
        let (n, c) = (17, 63)
        let x = rng.uniform(n * c), w = rng.uniform(c), dy = rng.uniform(n * c), prior = rng.uniform(n * c)
        let bx = try ctx.buffer(x), bw = try ctx.buffer(w)
        let y = try ctx.buffer(count: n * c), rstd = try ctx.buffer(count: n)
        try ctx.rmsnormForward(y: y, rstd: rstd, x: bx, weight: bw, rows: n, cols: c, eps: 1e-6)
        let dx = try ctx.buffer(prior)
        try ctx.rmsnormBackward(dx: dx, dweight: nil, dy: try ctx.buffer(dy), x: bx, weight: bw, rstd: rstd,
                                rows: n, cols: c, beta: 1)
        let ref = Reference.rmsnormBackward(dy: dy, x: x, w: w, rows: n, cols: c, eps: 1e-6)
        assertClose(try dx.read(), zip(ref.dx, prior).map { $0 + Double($1) }, "rmsnorm dx += ")
    }

    /// The forward with beta 1 adds the norm into y (Gemma's sandwich norms before the residual add), exactly
    /// the plain forward's values added to y's; with beta 0 a NaN-poisoned y is never read.
    func testForwardAccumulatesWithBeta() throws {
        let ctx = try sharedContext()
        var rng = freshRandom(#function)
        for (n, c) in Self.shapes {
            let x = rng.uniform(n * c, -3, 3), w = rng.uniform(c, 0.5, 1.5), prior = rng.uniform(n * c, -5, 5)
            let bx = try ctx.buffer(x), bw = try ctx.buffer(w)
            let plain = try poisoned(ctx, n * c), rstd = try poisoned(ctx, n)
            try ctx.rmsnormForward(y: plain, rstd: rstd, x: bx, weight: bw, rows: n, cols: c, eps: 1e-6)
            let y = try ctx.buffer(prior), rstd2 = try poisoned(ctx, n)
            try ctx.rmsnormForward(y: y, rstd: rstd2, x: bx, weight: bw, rows: n, cols: c, eps: 1e-6, beta: 1)
            XCTAssertEqual(try y.read(), zip(try plain.read(), prior).map { $1 + $0 }, "rmsnorm y += \(n)x\(c)")
            XCTAssertEqual(try rstd2.read(), try rstd.read())
        }
    }
}

final class ActivationTests: XCTestCase {
    static let counts = [1, 3, 17, 63, 129, 1000, 4099]

    func testSiLUForwardBackward() throws {
        let ctx = try sharedContext()
        var rng = freshRandom(#function)
        for n in Self.counts {
            let x = rng.uniform(n, -8, 8), d = rng.uniform(n)
            let bx = try ctx.buffer(x)
            let out = try poisoned(ctx, n), dx = try poisoned(ctx, n)
            try ctx.siluForward(out: out, x: bx, count: n)
            try ctx.siluBackward(dx: dx, x: bx, dout: try ctx.buffer(d), count: n)
            assertClose(try out.read(), x.map { Reference.silu(Double($0)) }, "silu \(n)")
            let g = try dx.read()
            assertClose(g, zip(x, d).map { Reference.siluGrad(Double($0)) * Double($1) }, "silu' \(n)")
            let dD = toDouble(d)
            assertGradient(g, at: toDouble(x), samples: 8, rng: &rng, "silu dx \(n)") { xs in
                dot(xs.map(Reference.silu), dD)
            }
        }
    }

    /// A gated activation act(g) ⊙ u through `run` (forward into out, backward into dgate/dup, all NaN-poisoned first)
    /// against the float64 reference `f`, `fGrad` and finite differences, gates over ±8 (past saturation).
    /// Returns the inputs and the forward's output for the caller's own checks.
    func checkGated(_ ctx: ComputeContext, _ act: GatedActivation, count n: Int, rng: inout SeededRandom,
                    _ f: (Double) -> Double, _ fGrad: (Double) -> Double,
                    _ run: (_ out: DeviceBuffer<Float>, _ dgate: DeviceBuffer<Float>, _ dup: DeviceBuffer<Float>,
                            _ gate: DeviceBuffer<Float>, _ up: DeviceBuffer<Float>, _ dout: DeviceBuffer<Float>) throws -> Void)
        throws -> (gate: [Float], up: [Float], out: DeviceBuffer<Float>) {
        let g = rng.uniform(n, -8, 8), u = rng.uniform(n, -2, 2), d = rng.uniform(n)
        let out = try poisoned(ctx, n), dg = try poisoned(ctx, n), du = try poisoned(ctx, n)
        try run(out, dg, du, try ctx.buffer(g), try ctx.buffer(u), try ctx.buffer(d))
        let name = act.rawValue
        assertClose(try out.read(), zip(g, u).map { f(Double($0)) * Double($1) }, "\(name) \(n)")
        let gD = toDouble(g), uD = toDouble(u), dD = toDouble(d)
        let dgate = try dg.read(), dup = try du.read()
        assertClose(dgate, (0..<n).map { dD[$0] * uD[$0] * fGrad(gD[$0]) }, "\(name) dgate \(n)")
        assertClose(dup, (0..<n).map { dD[$0] * f(gD[$0]) }, "\(name) dup \(n)")
        func loss(_ gs: [Double], _ us: [Double]) -> Double { (0..<n).reduce(0) { $0 + f(gs[$1]) * us[$1] * dD[$1] } }
        assertGradient(dgate, at: gD, samples: 8, rng: &rng, "\(name) dgate \(n)") { loss($0, uD) }
        assertGradient(dup, at: uD, samples: 8, rng: &rng, "\(name) dup \(n)") { loss(gD, $0) }
        return (g, u, out)
    }

    func testSwiGLUForwardBackward() throws {
        let ctx = try sharedContext()
        var rng = freshRandom(#function)
        for n in Self.counts {
            let (g, u, out) = try checkGated(ctx, .silu, count: n, rng: &rng, Reference.silu, Reference.siluGrad) { out, dg, du, bg, bu, dout in
                try ctx.swigluForward(out: out, gate: bg, up: bu, count: n)
                try ctx.swigluBackward(dgate: dg, dup: du, gate: bg, up: bu, dout: dout, count: n)
            }
            let bg = try ctx.buffer(g)
            // Against the unfused composition silu(g) ⊙ u through the silu kernel.
            let s = try ctx.buffer(count: n)
            try ctx.siluForward(out: s, x: bg, count: n)
            let composed = zip(try s.read(), u).map { Double($0) * Double($1) }
            assertClose(try out.read(), composed, "swiglu vs silu⊙up \(n)")
        }
    }

    /// Soft-capping cap·tanh(x/cap) and its backward against float64 and finite differences, logits far past the
    /// cap (saturated) among them; NaN-poisoned outputs. The backward's 1 − t² is formed from the fp32 tanh (as
    /// PyTorch's tanh backward forms it), so its error is measured against ‖dy‖: near saturation 1 − t² is below fp32's
    /// resolution at 1.
    func testSoftcapForwardBackward() throws {
        let ctx = try sharedContext()
        var rng = freshRandom(#function)
        for n in Self.counts {
            for cap in [30.0, 0.7] as [Float] {
                let x = rng.uniform(n, -8 * cap, 8 * cap), d = rng.uniform(n)
                let b = try ctx.buffer(x), t = try poisoned(ctx, n)
                try ctx.softcapForward(b, tanh: t, cap: cap, count: n)
                let c = Double(cap), xD = toDouble(x), dD = toDouble(d)
                assertClose(try b.read(), xD.map { c * Foundation.tanh($0 / c) }, "softcap \(n) cap \(cap)")
                let dy = try ctx.buffer(d)
                try ctx.softcapBackward(dy, tanh: t, count: n)
                let g = try dy.read()
                assertClose(g, (0..<n).map { dD[$0] * (1 - Foundation.pow(Foundation.tanh(xD[$0] / c), 2)) }, tol: 1e-5,
                            floor: dot(dD, dD).squareRoot(),
                            "softcap' \(n) cap \(cap)")
                assertGradient(g, at: xD, samples: 8, rng: &rng, floor: 1, "softcap dx \(n) cap \(cap)") { xs in
                    dot(xs.map { c * Foundation.tanh($0 / c) }, dD)
                }
            }
        }
    }

    /// x *= alpha (Gemma's embedding scale √H), over the awkward counts.
    func testScaleInPlace() throws {
        let ctx = try sharedContext()
        var rng = freshRandom(#function)
        for n in Self.counts {
            let x = rng.uniform(n, -4, 4), b = try ctx.buffer(x)
            let alpha = Float(Double(48).squareRoot())
            try ctx.scale(b, by: alpha, count: n)
            XCTAssertEqual(try b.read(), x.map { $0 * alpha }, "scale \(n)")
        }
    }

    /// Gemma's GeGLU: gelu_pytorch_tanh(gate) ⊙ up, against the plain reference and finite differences,
    /// over gates past the tanh's saturation (±8) and the awkward counts; outputs start NaN-poisoned.
    func testGeGLUTanhForwardBackward() throws {
        let ctx = try sharedContext()
        var rng = freshRandom(#function)
        for n in Self.counts {
            let (g, u, _) = try checkGated(ctx, .geluTanh, count: n, rng: &rng, Reference.geluTanh, Reference.geluTanhGrad) { out, dg, du, bg, bu, dout in
                try ctx.gatedForward(.geluTanh, out: out, gate: bg, up: bu, count: n)
                try ctx.gatedBackward(.geluTanh, dgate: dg, dup: du, gate: bg, up: bu, dout: dout, count: n)
            }
            let bg = try ctx.buffer(g), bu = try ctx.buffer(u)
            // The SiLU variant through the same entry point equals the swiglu kernel.
            let s1 = try ctx.buffer(count: n), s2 = try ctx.buffer(count: n)
            try ctx.gatedForward(.silu, out: s1, gate: bg, up: bu, count: n)
            try ctx.swigluForward(out: s2, gate: bg, up: bu, count: n)
            XCTAssertEqual(try s1.read(), try s2.read(), "gatedForward(.silu) \(n)")
        }
        // PyTorch's gelu(approximate="tanh") at a few points (torch 2.x, fp64): the constants are its.
        for (x, y) in [(1.0, 0.8411919906082768), (-0.5, -0.15428599017485606), (3.0, 2.996362607918227)] {
            XCTAssertEqual(Reference.geluTanh(x), y, accuracy: 1e-12)
        }
    }
}
