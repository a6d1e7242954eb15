import Foundation
import LoraBase
@testable import LoraModel
import LoraOps
import OpenCLRuntime
import Reference
import TestSupport
import XCTest

/// Frozen weights kept in their GGUF block type on the device (`WeightStorage` .q8_0 … .q5_1): every kernel
/// that reads them — both gemm variants forward, the widened backward panels, the row gather, W read back —
/// must give, bit for bit, what the fp32 path gives on the weights dequantized at load (`GGMLDequantize`,
/// checked against gguf-py by the quant_zoo fixture). Random blocks, awkward row counts, NaN-poisoned outputs.
final class QuantizedStorageTests: XCTestCase {
    static let formats: [WeightStorage] = [.q8_0, .q4_0, .q4_1, .q5_0, .q5_1, .nf4, .q4_k, .q5_k, .q6_k]
    /// (out, in): in a multiple of the block size (32, NF4's 64, the K-quants' 256); out 1, 17, 63, 129 (never a
    /// multiple of 16).
    static func shapes(_ s: WeightStorage) -> [(Int, Int)] {
        switch s.quantBlockRows {
        case 256: return [(1, 256), (17, 512), (63, 256)]
        case 64: return [(1, 64), (17, 128), (63, 192), (129, 64)]
        default: return [(1, 32), (17, 64), (63, 96), (129, 32), (40, 160)]
        }
    }
    static let tokens = [1, 3, 17, 63]

    /// Random source blocks for W (rows, cols): `WeightStorage.randomSourceBlocks` (the tuner's and the bench's
    /// generator) on a stream seeded from the test's fresh seed.
    static func blocks(_ storage: WeightStorage, rows: Int, cols: Int, rng: inout SeededRandom) -> [UInt8] {
        var stream = SplitMix64(seed: rng.next())
        return WeightStorage.randomSourceBlocks(storage, rows: rows, cols: cols, rng: &stream)
    }

    /// The quantized FrozenLinear, the fp32 one of the dequantized values, and those values.
    func pair(_ ctx: ComputeContext, _ storage: WeightStorage, rows: Int, cols: Int,
              rowSource: [Int32]? = nil, rng: inout SeededRandom) throws -> (q: FrozenLinear, f: FrozenLinear, w: [Float]) {
        let raw = Self.blocks(storage, rows: rows, cols: cols, rng: &rng)
        var w = raw.withUnsafeBytes { QuantizedBlocks.dequantize($0, storage: storage, count: rows * cols) }
        if let rowSource { w = (0..<rows).flatMap { r in w[(Int(rowSource[r]) * cols)..<((Int(rowSource[r]) + 1) * cols)] } }
        let staging = try DeviceBuffer<UInt8>(queue: ctx.queue, raw)
        let map = try rowSource.map { try DeviceBuffer<Int32>(queue: ctx.queue, $0) }
        let q = FrozenLinear(forward: try ctx.packQuantized(staging, storage: storage, rows: rows, cols: cols, rowSource: map))
        let f = try FrozenLinear(ctx, weight: try ctx.buffer(w), outFeatures: rows, inFeatures: cols)
        return (q, f, w)
    }

    func poisoned(_ ctx: ComputeContext, _ n: Int) throws -> DeviceBuffer<Float> {
        let b = try ctx.buffer(count: n)
        try b.fill(.nan)
        return b
    }

    func uniform(_ n: Int, _ rng: inout SeededRandom) -> [Float] { rng.uniform(n) }

    /// Forward (bias, beta), backward dX, W read back and the row gather on one context.
    func checkAll(_ ctx: ComputeContext, rng: inout SeededRandom, _ tag: String, tokens: [Int] = QuantizedStorageTests.tokens) throws {
        for storage in Self.formats {
            for (out, din) in Self.shapes(storage) {
                let (q, f, w) = try pair(ctx, storage, rows: out, cols: din, rng: &rng)
                XCTAssertEqual(q.storage, storage)
                XCTAssertEqual(q.deviceBytes, (out + 15) / 16 * din / storage.quantBlockRows * storage.quantChunkBytes!, "\(storage) bytes")
                let back = try poisoned(ctx, out * din)
                try ctx.unpackWeight(q, into: back)
                XCTAssertEqual(try back.read(), w, "\(tag) \(storage) W read back (\(out)×\(din))")
                for n in tokens {
                    let x = try ctx.buffer(uniform(n * din, &rng)), bias = try ctx.buffer(uniform(out, &rng))
                    let y0 = uniform(n * out, &rng)
                    for (withBias, beta) in [(false, Float(0)), (true, 0.5)] {
                        func forward(_ base: FrozenLinear) throws -> [Float] {
                            let y = beta == 0 ? try poisoned(ctx, n * out) : try ctx.buffer(y0)
                            try ctx.frozenForward(y: y, x: x, base: base, tokens: n, beta: beta, bias: withBias ? bias : nil)
                            return try y.read()
                        }
                        let got = try forward(q)
                        XCTAssertFalse(got.contains { $0.isNaN }, "\(tag) \(storage) forward wrote every element")
                        XCTAssertEqual(got, try forward(f), "\(tag) \(storage) forward \(n)×\(din)·(\(out)×\(din))ᵀ bias \(withBias) beta \(beta)")
                    }
                    let dy = try ctx.buffer(uniform(n * out, &rng))
                    func backward(_ base: FrozenLinear) throws -> [Float] {
                        let dx = try poisoned(ctx, n * din)
                        try ctx.frozenBackward(dx: dx, dy: dy, base: base, tokens: n)
                        return try dx.read()
                    }
                    XCTAssertEqual(try backward(q), try backward(f), "\(tag) \(storage) dX \(n)×\(out)·(\(out)×\(din))")
                }
                let ids = (0..<5).map { _ in Int32(rng.next() % UInt64(out)) }
                func gather(_ base: FrozenLinear) throws -> [Float] {
                    let o = try poisoned(ctx, ids.count * din)
                    try ctx.panelRows(out: o, packed: base.parts[0].panels, ids: try DeviceBuffer<Int32>(queue: ctx.queue, ids), rows: ids.count)
                    return try o.read()
                }
                XCTAssertEqual(try gather(q), try gather(f), "\(tag) \(storage) rows \(ids)")
            }
        }
    }

    func testPackedGemmIsBitIdenticalToTheDequantizedPath() throws {
        var rng = SeededRandom(seed: freshSeed(#function))
        try checkAll(try ComputeContext.shared(), rng: &rng, "packed")
    }

    /// Rows per work-item chosen per format (`mr.q4_0=…`, the tuner's per-format stage): every format's
    /// kernel at a count other than the shared one, and at 1 and 16, stays bit-identical.
    func testPerFormatRowCountsAreBitIdentical() throws {
        var rng = SeededRandom(seed: freshSeed(#function))
        let counts = [1, 3, 5, 16, 2, 7, 4, 6, 12]
        var cfg = KernelConfig.cpu
        for (f, mr) in zip(Self.formats, counts) { cfg.quantRowsPerItem[f] = mr }
        let ctx = try ComputeContext(device: try ComputeContext.shared().device, config: cfg, kernelFiles: ["matmul.cl", "matmul_tiled.cl"])
        XCTAssertEqual(Self.formats.map(ctx.config.rowsPerItem), counts)
        try checkAll(ctx, rng: &rng, "per-format rows")
    }

    /// The staged forward (every format staged, blocks of one and of two panels): at 64 rows and more it runs
    /// (`widen_panels_*` launched), below it does not, and either way every product is bit-identical.
    func testStagedForwardIsBitIdentical() throws {
        var rng = SeededRandom(seed: freshSeed(#function))
        var cfg = KernelConfig.cpu
        cfg.quantStaged = Set(Self.formats)
        let ctx = try ComputeContext(device: try ComputeContext.shared().device, config: cfg, kernelFiles: ["matmul.cl", "matmul_tiled.cl"])
        for limit in [1, 2 * 16 * 256 * 4] {
            ctx.stagedPanelBytesLimit = limit
            ctx.profileLaunches = true
            try checkAll(ctx, rng: &rng, "staged, \(limit) bytes", tokens: [64, 97, 5])
            ctx.profileLaunches = false
            let widened = Set(try ctx.takeKernelProfile().map(\.kernel).filter { $0.hasPrefix("widen_panels") })
            XCTAssertEqual(widened, Set(Self.formats.map { "widen_panels_" + $0.rawValue }))
        }
    }

    func testTiledGemmIsBitIdenticalToTheDequantizedPath() throws {
        var rng = SeededRandom(seed: freshSeed(#function))
        var cfg = KernelConfig.gpu
        cfg.gemm.variant = .tiled
        let ctx = try ComputeContext(device: try ComputeContext.shared().device, config: cfg, kernelFiles: ["matmul.cl", "matmul_tiled.cl"])
        try checkAll(ctx, rng: &rng, "tiled")
    }

    /// The rows of W taken through a row map (llama.cpp's rotary order undone at load).
    func testRowMapPicksTheSourceRows() throws {
        let ctx = try ComputeContext.shared()
        var rng = SeededRandom(seed: freshSeed(#function))
        for storage in Self.formats {
            let rows = 24, cols = storage.quantBlockRows == 256 ? 256 : 64
            let map = (0..<rows).map { Int32(($0 * 7 + 3) % rows) }
            let (q, _, w) = try pair(ctx, storage, rows: rows, cols: cols, rowSource: map, rng: &rng)
            let back = try poisoned(ctx, rows * cols)
            try ctx.unpackWeight(q, into: back)
            XCTAssertEqual(try back.read(), w, "\(storage) mapped rows")
        }
    }

    /// Sizes that cannot be kept are refused with the reason.
    func testBadShapesAreRefused() throws {
        let ctx = try ComputeContext.shared()
        let staging = try DeviceBuffer<UInt8>(queue: ctx.queue, [UInt8](repeating: 0, count: 340))
        assertError({ _ = try ctx.packQuantized(staging, storage: .q8_0, rows: 2, cols: 48) }, contains: ["multiple of 32"])
        assertError({ _ = try ctx.packQuantized(staging, storage: .q8_0, rows: 20, cols: 32) }, contains: ["340 bytes", "20 rows"])
        assertError({ _ = try ctx.packQuantized(staging, storage: .f16, rows: 2, cols: 32) }, contains: ["not a quantized type"])
        assertError({ _ = try ctx.packQuantized(staging, storage: .nf4, rows: 1, cols: 32) }, contains: ["multiple of 64"])
    }

    func freshSeed(_ test: String) -> UInt64 {
        let seed = ProcessInfo.processInfo.environment["LORA_GPU_TEST_SEED"].flatMap(UInt64.init) ?? UInt64.random(in: 1...UInt64.max)
        print("[\(test)] seed \(seed)")
        return seed
    }
}

/// The quantizers of `--quantize q8_0|q4_0|nf4` against the real ones (scripts/make_quantize_fixture.py): gguf-py's
/// `quantize` for Q8_0 / Q4_0 and bitsandbytes' `quantize_4bit` / `dequantize_4bit` for NF4, byte for byte, on
/// matrices with an all-zero block, a negative largest value, exact rounding ties, tiny and huge blocks.
final class QuantizerFixtureTests: XCTestCase {
    let file = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/quantize/reference.safetensors").path

    func bytes(_ f: SafeTensorsFile, _ name: String) throws -> [UInt8] {
        let info = try XCTUnwrap(f.tensors[name], name)
        return Array(f.bytes(info))
    }

    func testGGMLQuantizersMatchGGUFPy() throws {
        let f = try SafeTensorsFile(path: file)
        for i in 0..<3 {
            let (shape, w) = try f.floats("m\(i)")
            XCTAssertEqual(shape.count, 2)
            for (type, key) in [(GGMLType.q8_0, "q8_0"), (.q4_0, "q4_0")] {
                let ours = w.withUnsafeBufferPointer { GGMLQuantize.quantize($0, type: type) }
                let theirs = try bytes(f, "m\(i).\(key)")
                XCTAssertEqual(ours.count, theirs.count, "m\(i) \(key) size")
                let diff = zip(ours, theirs).enumerated().first { $0.element.0 != $0.element.1 }
                XCTAssertNil(diff, "m\(i) \(key): first differing byte \(diff.map { "\($0.offset): \($0.element)" } ?? "")")
            }
        }
    }

    func testNF4MatchesBitsandbytes() throws {
        let f = try SafeTensorsFile(path: file)
        XCTAssertEqual(try f.floats("nf4.code").values, NF4Quantize.code, "the NF4 code table, bit for bit")
        for i in 0..<3 {
            let (_, w) = try f.floats("m\(i)")
            let ours = w.withUnsafeBufferPointer { NF4Quantize.quantize($0) }
            let packed = try bytes(f, "m\(i).nf4"), absmax = try f.floats("m\(i).nf4.absmax").values
            XCTAssertEqual(ours.count, absmax.count * 36)
            for b in 0..<absmax.count {
                let a = ours[(b * 36)..<(b * 36 + 4)].withUnsafeBytes { Float(bitPattern: UInt32(littleEndian: $0.loadUnaligned(as: UInt32.self))) }
                XCTAssertEqual(a.bitPattern, absmax[b].bitPattern, "m\(i) block \(b) absmax")
                XCTAssertEqual(Array(ours[(b * 36 + 4)..<(b * 36 + 36)]), Array(packed[(b * 32)..<(b * 32 + 32)]), "m\(i) block \(b) codes")
            }
            let dq = ours.withUnsafeBytes { NF4Quantize.dequantize($0, count: w.count) }
            XCTAssertEqual(dq, try f.floats("m\(i).nf4.dq").values, "m\(i): dequantize_4bit's values")
        }
    }
}
