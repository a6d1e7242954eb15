import Foundation
import LoraOps
import OpenCLRuntime
import Reference
import XCTest

/// Frozen weights kept 16-bit on the device (`WeightStorage` .f16 / .bf16):
/// the `gemm_packed_f16` / `_bf16` products against float64, the backward
/// panels made from the forward ones, and the read-back of W. A 16-bit value
/// widened to fp32 is exact, so every result must also equal, bit for bit,
/// the fp32 path run on the widened weight.
final class Storage16Tests: XCTestCase {
    /// Awkward sizes (tokens, in, out): 1, 3, 17, 63, 129, never multiples of 16 or of GEMM_MR.
    static let shapes: [(Int, Int, Int)] = [
        (1, 1, 1), (3, 17, 1), (17, 3, 63), (63, 129, 17), (129, 63, 129), (1, 129, 3), (17, 1, 129),
    ]

    /// Random 16-bit weights: the bits, and their exact fp32 values.
    static func weights(_ count: Int, _ storage: WeightStorage, rng: inout SeededRandom) -> (bits: [UInt16], values: [Float]) {
        let xs = rng.uniform(count)
        switch storage {
        case .f16:
            let bits = xs.map { Float16($0).bitPattern }
            return (bits, bits.map { Float(Float16(bitPattern: $0)) })
        case .bf16:
            let bits = xs.map { UInt16(truncatingIfNeeded: $0.bitPattern >> 16) }
            return (bits, bits.map { Float(bitPattern: UInt32($0) << 16) })
        default:
            preconditionFailure("16-bit storage only")
        }
    }

    /// The 16-bit FrozenLinear of W (out, in) and the fp32 one of its widened values.
    func frozenPair(_ ctx: ComputeContext, _ w: (bits: [UInt16], values: [Float]), _ storage: WeightStorage,
                    out: Int, in din: Int) throws -> (half: FrozenLinear, full: FrozenLinear) {
        let raw = try DeviceBuffer<UInt16>(queue: ctx.queue, w.bits)
        let half = try FrozenLinear(ctx, weight16: raw, storage: storage, outFeatures: out, inFeatures: din)
        let full = try FrozenLinear(ctx, weight: try ctx.buffer(w.values), outFeatures: out, inFeatures: din)
        return (half, full)
    }

    func testStorageSizesAndKernelNames() throws {
        XCTAssertEqual(WeightStorage.f32.bytesPerElement, 4)
        XCTAssertEqual(WeightStorage.f16.bytesPerElement, 2)
        XCTAssertEqual(WeightStorage.bf16.bytesPerElement, 2)
        XCTAssertEqual(WeightStorage.allCases.map(\.kernelSuffix), ["", "_f16", "_bf16", "_q8_0", "_q4_0", "_q4_1", "_q5_0", "_q5_1", "_nf4", "_q4_k", "_q5_k", "_q6_k"])
        let ctx = try sharedContext()
        var rng = freshRandom(#function)
        for storage in [WeightStorage.f16, .bf16] {
            let (half, full) = try frozenPair(ctx, Self.weights(17 * 63, storage, rng: &rng), storage, out: 17, in: 63)
            XCTAssertEqual(half.storage, storage)
            XCTAssertEqual(full.storage, .f32)
            // One copy, padded to 16 columns: 32 × 63 elements.
            XCTAssertEqual(half.deviceBytes, 32 * 63 * 2)
            XCTAssertEqual(full.deviceBytes, 32 * 63 * 4)
        }
    }

    /// y = alpha·x·Wᵀ (+ bias) (+ beta·y) through gemm_packed_f16 / _bf16.
    func testPackedProductAgainstFloat64AndFP32() throws {
        let ctx = try sharedContext()
        var rng = freshRandom(#function)
        for storage in [WeightStorage.f16, .bf16] {
            for (n, din, dout) in Self.shapes {
                let w = Self.weights(dout * din, storage, rng: &rng)
                let (half, full) = try frozenPair(ctx, w, storage, out: dout, in: din)
                let x = rng.uniform(n * din), bias = rng.uniform(dout), y0 = rng.uniform(n * dout)
                let xb = try ctx.buffer(x), bb = try ctx.buffer(bias)
                for (withBias, beta) in [(false, Float(0)), (true, 0), (false, 0.75), (true, -1.25)] {
                    let alpha = Float.random(in: -2...2, using: &rng)
                    func run(_ f: FrozenLinear) throws -> [Float] {
                        // beta = 0 on a NaN-poisoned y: every element written, y never read.
                        let y = beta == 0 ? try poisoned(ctx, n * dout) : try ctx.buffer(y0)
                        try ctx.matmul(y, xb, packed: f.parts[0].panels, m: n, alpha: alpha, beta: beta, bias: withBias ? bb : nil)
                        return try y.read()
                    }
                    let got = try run(half)
                    var ref = Reference.matmul(x, w.values, c: beta == 0 ? nil : y0, m: n, n: dout, k: din,
                                               transB: true, alpha: Double(alpha), beta: Double(beta))
                    if withBias { for i in 0..<n { for j in 0..<dout { ref[i * dout + j] += Double(bias[j]) } } }
                    let what = "\(storage) \(n)x\(dout)x\(din) bias=\(withBias) β=\(beta)"
                    assertClose(got, ref, "gemm_packed\(storage.kernelSuffix) \(what)")
                    XCTAssertEqual(got, try run(full), "\(what): differs from the fp32 panels of the same values")
                }
            }
        }
    }

    /// The fused LoRA forward (the ext term, always fp32 panels) over 16-bit base panels.
    func testLoRAForwardWithExtension() throws {
        let ctx = try sharedContext()
        var rng = freshRandom(#function)
        for storage in [WeightStorage.f16, .bf16] {
            for (n, din, dout) in Self.shapes {
                let r = Int.random(in: 1...9, using: &rng)
                let w = Self.weights(dout * din, storage, rng: &rng)
                let (half, full) = try frozenPair(ctx, w, storage, out: dout, in: din)
                let x = rng.uniform(n * din), a = rng.uniform(r * din), b = rng.uniform(dout * r), bias = rng.uniform(dout)
                let lora = LoRASettings(rank: r, alpha: 3, dropout: 0)
                func run(_ f: FrozenLinear, withBias: Bool) throws -> [Float] {
                    let y = try poisoned(ctx, n * dout), u = try poisoned(ctx, n * r)
                    try ctx.loraForward(y: y, u: u, x: try ctx.buffer(x), base: f, a: try ctx.buffer(a), b: try ctx.buffer(b),
                                        bias: withBias ? try ctx.buffer(bias) : nil, tokens: n, lora: lora, seed: 1)
                    return try y.read()
                }
                for withBias in [false, true] {
                    let got = try run(half, withBias: withBias)
                    let ref = Reference.loraForward(x: toDouble(x), w: toDouble(w.values), a: toDouble(a), b: toDouble(b),
                                                    bias: withBias ? toDouble(bias) : nil, n: n, din: din, dout: dout, r: r,
                                                    scale: Double(lora.scale), mask: nil)
                    assertClose(got, ref.y, "lora forward \(storage) \(n)x\(dout)x\(din) r\(r) bias=\(withBias)")
                    XCTAssertEqual(got, try run(full, withBias: withBias), "lora forward \(storage): differs from fp32")
                }
            }
        }
    }

    /// dX = dY·W through the backward panels made per call from the forward
    /// ones, in both modes, with and without the LoRA term and dropout.
    /// A frozen W's backward panels in blocks of rows when they would pass `backwardPanelBytesLimit` (issue 18: bounded
    /// scratch): dX = Σ_blocks dY[:, block]·W[block, :] against float64 and the unblocked product (the block sums add
    /// in another order: within 1e-6), for fp32, f16 and bf16 storage, with β 0 (poisoned dX) and 1; the block rule.
    func testBackwardInBlocksOfRowsWithinTheScratchLimit() throws {
        let ctx = try sharedContext()
        let saved = ctx.backwardPanelBytesLimit
        defer { ctx.backwardPanelBytesLimit = saved }
        XCTAssertEqual(ComputeContext.backwardBlockRows(rows: 70, inFeatures: 33, bytes: 4, limitBytes: 1 << 20), 70)
        XCTAssertEqual(ComputeContext.backwardBlockRows(rows: 70, inFeatures: 33, bytes: 4, limitBytes: 48 * 4 * 35), 32)
        XCTAssertEqual(ComputeContext.backwardBlockRows(rows: 70, inFeatures: 33, bytes: 2, limitBytes: 1), 16)
        XCTAssertEqual(ComputeContext.backwardBlockRows(rows: 10, inFeatures: 33, bytes: 2, limitBytes: 1), 10, "a part under 16 rows")
        XCTAssertEqual(ComputeContext.backwardBlockRows(rows: 70, inFeatures: 33, bytes: 4, limitBytes: 0), 70, "0: no limit")
        var rng = freshRandom(#function)
        let (n, din, dout) = (5, 33, 70)
        for storage in [WeightStorage.f16, .bf16] {
            let w = Self.weights(dout * din, storage, rng: &rng)
            let (half, full) = try frozenPair(ctx, w, storage, out: dout, in: din)
            let dy = rng.uniform(n * dout), dx0 = rng.uniform(n * din)
            let dyb = try ctx.buffer(dy)
            for (f, bytes) in [(half, 2), (full, 4)] {
                for beta: Float in [0, 1] {
                    func run() throws -> [Float] {
                        let dx = beta == 0 ? try poisoned(ctx, n * din) : try ctx.buffer(dx0)
                        try ctx.frozenBackward(dx: dx, dy: dyb, base: f, tokens: n, beta: beta)
                        return try dx.read()
                    }
                    ctx.backwardPanelBytesLimit = saved
                    let whole = try run()
                    ctx.backwardPanelBytesLimit = 48 * bytes * 16   // blocks of 16 rows: 16, 16, 16, 16, 6
                    let blocked = try run()
                    let ref = Reference.matmul(dy, w.values, c: beta == 0 ? nil : dx0, m: n, n: din, k: dout, beta: Double(beta))
                    assertClose(blocked, ref, "blocked dX \(storage) \(bytes)-byte panels β=\(beta)")
                    XCTAssertLessThanOrEqual(relativeError(blocked, whole.map(Double.init)), 1e-6, "blocked vs whole \(storage) β=\(beta)")
                }
            }
        }
    }

    func testBackwardProductThroughTransposedPanels() throws {
        let ctx = try sharedContext()
        var rng = freshRandom(#function)
        for storage in [WeightStorage.f16, .bf16] {
            for (n, din, dout) in Self.shapes {
                let w = Self.weights(dout * din, storage, rng: &rng)
                let (half, full) = try frozenPair(ctx, w, storage, out: dout, in: din)
                let dy = rng.uniform(n * dout), dx0 = rng.uniform(n * din)
                let dyb = try ctx.buffer(dy)
                // Plain frozen backward, beta 0 (poisoned) and 1.
                for beta: Float in [0, 1] {
                    func run(_ f: FrozenLinear) throws -> [Float] {
                        let dx = beta == 0 ? try poisoned(ctx, n * din) : try ctx.buffer(dx0)
                        try ctx.frozenBackward(dx: dx, dy: dyb, base: f, tokens: n, beta: beta)
                        return try dx.read()
                    }
                    let got = try run(half)
                    let ref = Reference.matmul(dy, w.values, c: beta == 0 ? nil : dx0, m: n, n: din, k: dout,
                                               beta: Double(beta))
                    assertClose(got, ref, "frozen dX \(storage) \(n)x\(din)x\(dout) β=\(beta)")
                    XCTAssertEqual(got, try run(full), "frozen dX \(storage): differs from fp32")
                }
                // Both ways of making the panels give the same product.
                for mode in [BackwardPanels.widened, .native] {
                    let p = try ctx.backwardPanels(half, mode)
                    XCTAssertEqual(p.storage, mode == .widened ? .f32 : storage)
                    XCTAssertEqual(p.k, dout)
                    XCTAssertEqual(p.n, din)
                    let dx = try poisoned(ctx, n * din)
                    try ctx.matmul(dx, dyb, packed: p, m: n)
                    assertClose(try dx.read(), Reference.matmul(dy, w.values, m: n, n: din, k: dout), "dX via \(mode) panels")
                }
                // The fused LoRA backward's dX (ext term with dropout).
                let r = 3, settings = LoRASettings(rank: r, alpha: 5, dropout: 0.25)
                let x = rng.uniform(n * din), a = rng.uniform(r * din), b = rng.uniform(dout * r)
                func loraDX(_ f: FrozenLinear) throws -> [Float] {
                    let xb = try ctx.buffer(x), ab = try ctx.buffer(a), bb = try ctx.buffer(b)
                    let y = try ctx.buffer(count: n * dout), u = try ctx.buffer(count: n * r)
                    try ctx.loraForward(y: y, u: u, x: xb, base: f, a: ab, b: bb, bias: nil, tokens: n, lora: settings, seed: 9)
                    let dx = try poisoned(ctx, n * din)
                    try ctx.loraBackward(dx: dx, da: try ctx.buffer(count: r * din), db: try ctx.buffer(count: dout * r),
                                         dbias: nil, dy: dyb, x: xb, u: u, base: f, a: ab, b: bb, tokens: n, lora: settings, seed: 9)
                    return try dx.read()
                }
                let got = try loraDX(half)
                let mask = DropoutMask.multipliers(count: n * din, p: settings.dropout, seed: 9)
                let ref = Reference.loraBackward(dy: toDouble(dy), x: toDouble(x), w: toDouble(w.values), a: toDouble(a),
                                                 b: toDouble(b), n: n, din: din, dout: dout, r: r,
                                                 scale: Double(settings.scale), mask: mask)
                assertClose(got, ref.dx, "lora dX \(storage) \(n)x\(din)x\(dout)")
                XCTAssertEqual(got, try loraDX(full), "lora dX \(storage): differs from fp32")
            }
        }
    }

    /// Backward panels still held for the same weight are reused (no transpose
    /// launch); another weight, another mode or `reuse: false` makes them afresh,
    /// and the products stay right whichever way the calls interleave.
    func testBackwardPanelsReusedOnlyForTheSameWeight() throws {
        let shared = try sharedContext()
        let ctx = try ComputeContext(device: shared.device, config: shared.config, kernelFiles: ["matmul.cl", "matmul_tiled.cl"])
        var rng = freshRandom(#function)
        let (n, din, dout) = (5, 37, 41)
        let w1 = Self.weights(dout * din, .bf16, rng: &rng), w2 = Self.weights(dout * din, .bf16, rng: &rng)
        let (a, _) = try frozenPair(ctx, w1, .bf16, out: dout, in: din)
        let (b, _) = try frozenPair(ctx, w2, .bf16, out: dout, in: din)
        let dy = rng.uniform(n * dout), dyb = try ctx.buffer(dy)
        ctx.profileLaunches = true
        _ = try ctx.takeKernelProfile()
        func transposes(_ body: () throws -> Void) throws -> Int {
            try body()
            try ctx.finish()
            return try ctx.takeKernelProfile().filter { $0.kernel.hasPrefix("transpose_panels") }.reduce(0) { $0 + $1.launches }
        }
        func check(_ f: FrozenLinear, _ w: [Float], _ what: String) throws {
            let dx = try poisoned(ctx, n * din)
            try ctx.frozenBackward(dx: dx, dy: dyb, base: f, tokens: n)
            assertClose(try dx.read(), Reference.matmul(dy, w, m: n, n: din, k: dout), what)
        }
        XCTAssertEqual(try transposes { try check(a, w1.values, "A first") }, 1)
        XCTAssertEqual(try transposes { try check(a, w1.values, "A again") }, 0, "same weight: panels reused")
        XCTAssertEqual(try transposes { try check(b, w2.values, "B") }, 1, "another weight")
        XCTAssertEqual(try transposes { try check(a, w1.values, "A after B") }, 1, "A's panels were overwritten")
        XCTAssertEqual(try transposes { _ = try ctx.backwardPanels(a, .widened) }, 1, "another mode")
        XCTAssertEqual(try transposes { _ = try ctx.backwardPanels(a, .widened, reuse: false) }, 1, "reuse off")
        XCTAssertEqual(try transposes { try check(a, w1.values, "A native after widened") }, 1)
    }

    /// fp32 backward panels made from the forward ones equal packing W directly (the old second copy).
    func testTransposedPanelsEqualDirectPacking() throws {
        let ctx = try sharedContext()
        var rng = freshRandom(#function)
        for (_, din, dout) in Self.shapes {
            let w = rng.uniform(dout * din)
            let wb = try ctx.buffer(w)
            let base = try FrozenLinear(ctx, weight: wb, outFeatures: dout, inFeatures: din)
            let direct = try ctx.pack(wb, k: dout, n: din, .none)
            let made = try ctx.backwardPanels(base)
            let count = direct.elementCount
            guard let a = direct.buffer, let b = made.buffer else { return XCTFail("fp32 panels expected") }
            XCTAssertEqual(Array(try b.read()[0..<count]), try a.read(), "panels of W (\(dout), \(din))")
        }
    }

    /// W read back from the panels (whole, and gathered by row ids) is the widened W exactly.
    func testReadBackAndGather() throws {
        let ctx = try sharedContext()
        var rng = freshRandom(#function)
        for storage in [WeightStorage.f16, .bf16] {
            for (_, din, dout) in Self.shapes {
                let w = Self.weights(dout * din, storage, rng: &rng)
                let (half, full) = try frozenPair(ctx, w, storage, out: dout, in: din)
                for f in [half, full] {
                    let out = try poisoned(ctx, dout * din)
                    try ctx.unpackWeight(f, into: out)
                    XCTAssertEqual(try out.read(), w.values, "W read back (\(f.storage), \(dout)×\(din))")
                }
                let ids = (0..<(2 * dout + 1)).map { _ in Int32.random(in: 0..<Int32(dout), using: &rng) }
                let rows = try poisoned(ctx, ids.count * din)
                try ctx.panelRows(out: rows, packed: half.parts[0].panels, ids: try DeviceBuffer(queue: ctx.queue, ids), rows: ids.count)
                let expect = ids.flatMap { w.values[(Int($0) * din)..<(Int($0) * din + din)] }
                XCTAssertEqual(try rows.read(), expect, "gathered rows (\(storage))")
            }
        }
    }
}
