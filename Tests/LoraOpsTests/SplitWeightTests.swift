import Foundation
import LoraOps
import OpenCLRuntime
import Reference
import XCTest

/// A frozen W kept in parts (blocks of rows, each its own buffer) because it is
/// larger than one device buffer may be (CL_DEVICE_MAX_MEM_ALLOC_SIZE): every
/// product must give what the W kept whole gives. Each output element of a
/// forward product is the same sum over the same K, so forward results, the
/// embedding gather and the read-back are bit-identical; dX = Σ_parts dY·W[part]
/// adds the parts in another order, so it is compared within fp32 rounding,
/// and against float64.
final class SplitWeightTests: XCTestCase {
    /// The row unit of a split: whole panels of 16 columns of y.
    let unit = 16

    func testSplitRule() {
        func split(_ out: Int, _ k: Int, _ e: Int, _ limit: Int) -> [Range<Int>]? {
            FrozenLinear.splitRows(outFeatures: out, inFeatures: k, bytesPerElement: e, limitBytes: limit)
        }
        // Fits (100 rows pad to 112): one block; no limit: one block.
        XCTAssertEqual(split(100, 16, 4, 112 * 64), [0..<100])
        XCTAssertEqual(split(100, 16, 4, 0), [0..<100])
        XCTAssertEqual(split(100, 16, 4, 112 * 64 - 1), [0..<96, 96..<100])
        // 80 rows' worth of bytes: blocks of 80 (a multiple of 16), the last shorter.
        XCTAssertEqual(split(200, 16, 4, 80 * 64), [0..<80, 80..<160, 160..<200])
        // 16-bit elements: twice the rows per buffer (160 rows of 32 bytes in 5120).
        XCTAssertEqual(split(200, 16, 2, 80 * 64), [0..<160, 160..<200])
        // Rounded down to whole panels: 47 rows' worth → 32-row blocks.
        XCTAssertEqual(split(70, 16, 4, 47 * 64), [0..<32, 32..<64, 64..<70])
        // A row counts `in` rounded up to 16 (the backward panels): in = 10 sizes like 16.
        XCTAssertEqual(split(200, 10, 4, 80 * 64), split(200, 16, 4, 80 * 64))
        // Not even 16 rows fit.
        XCTAssertNil(split(200, 16, 4, 15 * 64))
        // A 72B model's fp32 embedding (152064 × 8192) under a 4 GiB limit: parts ≤ 4 GiB covering every row.
        let parts = split(152_064, 8192, 4, 4 << 30)!
        XCTAssertEqual(parts, [0..<131_072, 131_072..<152_064])
        for p in parts { XCTAssertLessThanOrEqual((p.count + 15) / 16 * 16 * 8192 * 4, 4 << 30) }
        // Past the kernels' 32-bit element count, even without a byte limit (or under a larger one).
        let big = split(300_000, 8192, 2, 0)!
        XCTAssertEqual(big.count, 2)
        for p in big { XCTAssertLessThanOrEqual(p.count * 8192, Int(Int32.max)) }
        XCTAssertEqual(split(300_000, 8192, 2, 1 << 40), big)
        XCTAssertThrowsError(try FrozenLinear(parts: []))
    }

    /// W (out, in) whole and in parts of `unitsPerPart` units, in `storage`; W's exact fp32 values.
    func pair(_ ctx: ComputeContext, out: Int, in din: Int, storage: WeightStorage, unitsPerPart: Int,
              rng: inout SeededRandom) throws -> (whole: FrozenLinear, split: FrozenLinear, w: [Float]) {
        let xs = rng.uniform(out * din)
        var bits: [UInt16] = [], w = xs
        switch storage {
        case .f16: bits = xs.map { Float16($0).bitPattern }; w = bits.map { Float(Float16(bitPattern: $0)) }
        case .bf16: bits = xs.map { UInt16(truncatingIfNeeded: $0.bitPattern >> 16) }; w = bits.map { Float(bitPattern: UInt32($0) << 16) }
        default: break
        }
        func frozen(_ rows: Range<Int>) throws -> FrozenLinear {
            let r = (rows.lowerBound * din)..<(rows.upperBound * din)
            if storage == .f32 {
                return try FrozenLinear(ctx, weight: try ctx.buffer(Array(w[r])), outFeatures: rows.count, inFeatures: din)
            }
            return try FrozenLinear(ctx, weight16: try DeviceBuffer<UInt16>(queue: ctx.queue, Array(bits[r])), storage: storage,
                                    outFeatures: rows.count, inFeatures: din)
        }
        // A limit just under unitsPerPart + 1 units' panels.
        let u = unit, limit = (unitsPerPart + 1) * u * ((din + 15) / 16 * 16) * storage.bytesPerElement - 1
        let blocks = try XCTUnwrap(FrozenLinear.splitRows(outFeatures: out, inFeatures: din, bytesPerElement: storage.bytesPerElement,
                                                          limitBytes: limit))
        XCTAssertEqual(blocks.first?.count, unitsPerPart * u)
        let split = try FrozenLinear(parts: blocks.map { FrozenLinear.Part(rows: $0, panels: try frozen($0).parts[0].panels) })
        XCTAssertGreaterThanOrEqual(split.parts.count, 3)
        for p in split.parts { XCTAssertLessThanOrEqual(p.panels.deviceBytes, limit, "a part past the limit") }
        XCTAssertEqual(split.outFeatures, out)
        // Parts must start at whole panels.
        if let p = split.parts.first, p.rows.count > 8 {
            XCTAssertThrowsError(try FrozenLinear(parts: [FrozenLinear.Part(rows: 0..<8, panels: try frozen(0..<8).parts[0].panels),
                                                          FrozenLinear.Part(rows: 8..<out, panels: try frozen(8..<out).parts[0].panels)]))
        }
        XCTAssertEqual(split.inFeatures, din)
        XCTAssertNil(split.forward)
        return (try frozen(0..<out), split, w)
    }

    func testProductsOfASplitWeightEqualTheWholeOnes() throws {
        let ctx = try sharedContext()
        var rng = freshRandom(#function)
        let u = 2 * unit
        // (tokens, in, rows of W): W's rows span several parts and end in a short one.
        let shapes = [(1, 37, 3 * u + 5), (17, 5, 5 * u + 1), (33, 64, 4 * u - 7)]
        // The 32/16-bit storages here; quantized weights in parts: QuantizedModelTests.testKeptBlocksInPartsEqualTheDequantizedRun.
        for storage in [WeightStorage.f32, .f16, .bf16] {
            for (n, din, dout) in shapes {
                let what = "\(storage.rawValue) n=\(n) in=\(din) out=\(dout)"
                let (whole, split, w) = try pair(ctx, out: dout, in: din, storage: storage, unitsPerPart: 1, rng: &rng)
                let x = try ctx.buffer(rng.uniform(n * din)), bias = try ctx.buffer(rng.uniform(dout))
                let y0 = rng.uniform(n * dout)

                // y = x·Wᵀ (+ bias) (+ beta·y): poisoned outputs, every element written.
                for (b, beta) in [(nil, Float(0)), (bias, 0), (bias, 0.75)] as [(DeviceBuffer<Float>?, Float)] {
                    let yw = try beta == 0 ? poisoned(ctx, n * dout) : ctx.buffer(y0)
                    let ys = try beta == 0 ? poisoned(ctx, n * dout) : ctx.buffer(y0)
                    try ctx.frozenForward(y: yw, x: x, base: whole, tokens: n, beta: beta, bias: b)
                    try ctx.frozenForward(y: ys, x: x, base: split, tokens: n, beta: beta, bias: b)
                    let got = try ys.read()
                    XCTAssertFalse(got.contains { $0.isNaN }, "\(what): an element of y left unwritten")
                    XCTAssertEqual(got, try yw.read(), "\(what): frozen forward beta \(beta) bias \(b != nil)")
                }

                // The fused LoRA forward and backward, with dropout.
                let r = 3
                let a = try ctx.buffer(rng.uniform(r * din)), bm = try ctx.buffer(rng.uniform(dout * r))
                let lora = LoRASettings(rank: r, alpha: 6, dropout: 0.25)
                let seed = UInt32.random(in: 0...UInt32.max, using: &rng)
                let uw = try poisoned(ctx, n * r), us = try poisoned(ctx, n * r)
                let yw = try poisoned(ctx, n * dout), ys = try poisoned(ctx, n * dout)
                try ctx.loraForward(y: yw, u: uw, x: x, base: whole, a: a, b: bm, bias: bias, tokens: n, lora: lora, seed: seed)
                try ctx.loraForward(y: ys, u: us, x: x, base: split, a: a, b: bm, bias: bias, tokens: n, lora: lora, seed: seed)
                XCTAssertEqual(try ys.read(), try yw.read(), "\(what): LoRA forward y")
                XCTAssertEqual(try us.read(), try uw.read(), "\(what): LoRA forward u")

                let dyv = rng.uniform(n * dout), dy = try ctx.buffer(dyv)
                let grads = try (0..<4).map { _ in try ctx.buffer(count: max(r * din, dout * r)) }
                for g in grads { try g.fill(0) }
                let dxw = try poisoned(ctx, n * din), dxs = try poisoned(ctx, n * din)
                try ctx.loraBackward(dx: dxw, da: grads[0], db: grads[1], dbias: nil, dy: dy, x: x, u: uw, base: whole,
                                     a: a, b: bm, tokens: n, lora: lora, seed: seed)
                try ctx.loraBackward(dx: dxs, da: grads[2], db: grads[3], dbias: nil, dy: dy, x: x, u: us, base: split,
                                     a: a, b: bm, tokens: n, lora: lora, seed: seed)
                XCTAssertEqual(try grads[2].read(), try grads[0].read(), "\(what): dA")
                XCTAssertEqual(try grads[3].read(), try grads[1].read(), "\(what): dB")
                assertClose(try dxs.read(), toDouble(try dxw.read()), "\(what): LoRA dX split vs whole")

                // dX = dY·W alone, against float64, and accumulated (beta 1).
                let wd = toDouble(w), dyd = toDouble(dyv)
                var ref = [Double](repeating: 0, count: n * din)
                for i in 0..<n { for p in 0..<din {
                    var s = 0.0
                    for o in 0..<dout { s += dyd[i * dout + o] * wd[o * din + p] }
                    ref[i * din + p] = s
                } }
                let dx = try poisoned(ctx, n * din)
                try ctx.frozenBackward(dx: dx, dy: dy, base: split, tokens: n)
                assertClose(try dx.read(), ref, "\(what): dX = dY·W against float64")
                try ctx.frozenBackward(dx: dx, dy: dy, base: split, tokens: n, beta: 1)
                assertClose(try dx.read(), ref.map { 2 * $0 }, "\(what): dX accumulated")

                // The decode path's forward from packed A and B.
                let packed = try PackedLoRA(ctx, a: a, b: bm, inFeatures: din, outFeatures: dout, settings: lora)
                let yiw = try poisoned(ctx, n * dout), yis = try poisoned(ctx, n * dout)
                try ctx.loraInferenceForward(y: yiw, u: uw, x: x, base: whole, lora: packed, bias: nil, tokens: n)
                try ctx.loraInferenceForward(y: yis, u: us, x: x, base: split, lora: packed, bias: nil, tokens: n)
                XCTAssertEqual(try yis.read(), try yiw.read(), "\(what): inference forward")

                // Rows of W: the embedding gather (ids in every part, repeated, the last row) and the read-back.
                var ids = (0..<(2 * n + 3)).map { _ in Int32.random(in: 0..<Int32(dout), using: &rng) }
                ids += [Int32(dout - 1), 0, Int32(split.parts.last!.rows.lowerBound)]
                let rows = try poisoned(ctx, ids.count * din)
                try ctx.gatherRows(out: rows, table: split, ids: try DeviceBuffer(queue: ctx.queue, ids), rows: ids.count)
                XCTAssertEqual(try rows.read(), ids.flatMap { w[(Int($0) * din)..<(Int($0) * din + din)] }, "\(what): gathered rows")
                let all = try poisoned(ctx, dout * din)
                try ctx.unpackWeight(split, into: all)
                XCTAssertEqual(try all.read(), w, "\(what): W read back")
            }
        }
    }

    /// A view of a view is made from the root buffer at the summed offset.
    func testSubBufferOfASubBuffer() throws {
        let ctx = try sharedContext()
        let a = max(ctx.device.baseAddressAlignmentBytes / 4, 1)
        let values = (0..<(8 * a)).map(Float.init)
        let root = try ctx.buffer(values)
        let view = try root.subBuffer(offset: 2 * a, count: 5 * a)
        let inner = try view.subBuffer(offset: a, count: 3 * a)
        XCTAssertEqual(try inner.read(), Array(values[(3 * a)..<(6 * a)]))
        try inner.fill(-1)
        XCTAssertEqual(try root.read(count: a, offset: 3 * a), [Float](repeating: -1, count: a))
        XCTAssertThrowsError(try view.subBuffer(offset: 4 * a, count: 2 * a), "past the view's end")
    }
}
