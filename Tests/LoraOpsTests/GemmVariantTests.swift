import Foundation
@testable import LoraOps
import OpenCLRuntime
import Reference
import XCTest

/// The gemm variants (GemmVariants.swift): every tile of `gemm_tiled` the
/// tuner may choose, forced on pocl, computes exactly what `gemm_packed` does
/// (the full argument list: strided op(A), the ext term with and without its
/// dropout mask, bias, alpha/beta, NaN-poisoned C with beta = 0) against the
/// float64 reference; its 16-bit panel instances too; and the variant is
/// chosen by device class, overridden by a config string, searched by the tuner.
final class GemmVariantTests: XCTestCase {
    /// 1, 3, 17, 63, 129 and 1000 in every position: never multiples of a tile side.
    static let shapes: [(m: Int, n: Int, k: Int)] = [
        (1, 1, 1), (3, 17, 63), (17, 3, 1), (63, 129, 17), (129, 63, 129),
        (1000, 3, 17), (3, 1000, 17), (17, 3, 1000),
    ]
    /// The files TuningTests builds too: with the same configs, pocl's kernel cache serves the second build.
    static let kernelFiles: Set<String> = ["matmul.cl", "matmul_tiled.cl", "activations.cl"]

    /// The tiled configs the tuner may choose on a GPU, built here on pocl.
    func tiledConfigs(_ device: Device) -> [KernelConfig] {
        let configs = Tuner.parameterSets(for: device, tiled: true).filter { $0.gemm.variant == .tiled }
        let tiles = Tuner.searchSpace(for: device, quick: false, tiled: true).tiles
        XCTAssertFalse(tiles.isEmpty)
        XCTAssertEqual(configs.count, tiles.count, "every tile in one config")
        for t in tiles { XCTAssertTrue(configs.contains { $0.gemm.tile == t }, "tile \(t) untested") }
        XCTAssertTrue(Tuner.tiledTiles(quick: true).allSatisfy(tiles.contains), "the quick tiles are among the full ones")
        XCTAssertTrue(configs.contains { $0.gemm == KernelConfig.gpu.gemm }, "the gpu preset's tile")
        return configs
    }

    /// Runs `body` with launch profiling on and returns the kernel names launched.
    func kernelsLaunched(_ ctx: ComputeContext, _ body: () throws -> Void) throws -> Set<String> {
        _ = try ctx.takeKernelProfile()
        ctx.profileLaunches = true
        defer { ctx.profileLaunches = false }
        try body()
        try ctx.finish()
        return Set(try ctx.takeKernelProfile().map(\.kernel))
    }

    func testEveryTiledConfigMatchesTheReference() throws {
        let device = try sharedContext().device
        var rng = freshRandom(#function)
        for cfg in tiledConfigs(device) {
            let ctx = try ComputeContext(device: device, config: cfg, kernelFiles: Self.kernelFiles)
            let launched = try kernelsLaunched(ctx) {
                for (m, n, k) in Self.shapes { try checkAllArguments(ctx, m: m, n: n, k: k, rng: &rng) }
            }
            XCTAssertEqual(launched.filter { $0.hasPrefix("gemm") }, ["gemm_tiled"], cfg.spec)
        }
    }

    /// The packed variant passes the same checks (the argument list is shared:
    /// a wrong launcher argument would show up here as well as in the tiled one).
    func testPackedVariantMatchesTheReferenceOnTheSameChecks() throws {
        let device = try sharedContext().device
        var rng = freshRandom(#function)
        var cfg = KernelConfig.gpu
        cfg.gemm.variant = .packed
        let ctx = try ComputeContext(device: device, config: cfg, kernelFiles: Self.kernelFiles)
        let launched = try kernelsLaunched(ctx) {
            for (m, n, k) in Self.shapes { try checkAllArguments(ctx, m: m, n: n, k: k, rng: &rng) }
        }
        XCTAssertEqual(launched.filter { $0.hasPrefix("gemm") }, ["gemm_packed"])
    }

    /// ‖Σ_t |term_t|‖: what fp32 can promise its error relative to when the
    /// terms cancel (a 1×1 result of a product, the ext term and bias can
    /// come out much smaller than each of them).
    func magnitude(_ terms: [Double]...) -> Double {
        var s = 0.0
        for i in 0..<(terms.first?.count ?? 0) {
            let t = terms.reduce(0) { $0 + abs($1[i]) }
            s += t * t
        }
        return s.squareRoot()
    }

    /// |alpha|·|op(A)|·|op(B)| elementwise: the magnitude of a product's terms.
    func absProduct(_ a: [Float], _ b: [Float], m: Int, n: Int, k: Int, transA: Bool = false, transB: Bool = false,
                    alpha: Float) -> [Double] {
        Reference.matmul(a.map(abs), b.map(abs), m: m, n: n, k: k, transA: transA, transB: transB, alpha: Double(abs(alpha)))
    }

    /// For one shape, every transpose form of op(A) and op(B) with fresh random
    /// inputs: (1) alpha, beta = 0 on NaN-poisoned C; (2) beta ≠ 0 with bias;
    /// (3) + the ext term alpha2·op(A2)·op(B2) (K2 = 5) without mask; (4) with
    /// its dropout mask at a leading dimension wider than N, and bias.
    func checkAllArguments(_ ctx: ComputeContext, m: Int, n: Int, k: Int, rng: inout SeededRandom) throws {
        let k2 = 5
        for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
            let what = "\(ctx.config.spec) \(m)x\(n)x\(k) tA=\(ta) tB=\(tb)"
            let a = rng.uniform(m * k), b = rng.uniform(k * n), bias = rng.uniform(n)
            let alpha = Float.random(in: -2...2, using: &rng), beta = Float.random(in: 0.25...1.5, using: &rng)
            let ab = try ctx.buffer(a), biasb = try ctx.buffer(bias)
            let op = StridedOperand(ab, rows: m, cols: k, ta ? .transposed : .none)
            let packed = try ctx.pack(try ctx.buffer(b), k: k, n: n, tb ? .transposed : .none)
            let base = Reference.matmul(a, b, m: m, n: n, k: k, transA: ta, transB: tb, alpha: Double(alpha))
            let baseTerms = absProduct(a, b, m: m, n: n, k: k, transA: ta, transB: tb, alpha: alpha)
            let biasRows = (0..<m * n).map { Double(bias[$0 % n]) }

            let c1 = try poisoned(ctx, m * n)
            try ctx.gemm(c1, m: m, alpha: alpha, a: op, b: packed, ext: nil, bias: nil, beta: 0)
            assertClose(try c1.read(), base, floor: magnitude(baseTerms), "\(what) α=\(alpha) β=0")

            let c0 = rng.uniform(m * n)
            let c2 = try ctx.buffer(c0)
            try ctx.gemm(c2, m: m, alpha: alpha, a: op, b: packed, ext: nil, bias: biasb, beta: beta)
            var ref2 = base
            for i in 0..<m { for j in 0..<n { ref2[i * n + j] += Double(bias[j]) + Double(beta) * Double(c0[i * n + j]) } }
            assertClose(try c2.read(), ref2, floor: magnitude(baseTerms, biasRows, c0.map { Double(beta) * Double($0) }),
                        "\(what) β=\(beta) + bias")

            // The ext term: op(A2) (M,K2) strided like A, op(B2) (K2,N) packed like B.
            let a2 = rng.uniform(m * k2), b2 = rng.uniform(k2 * n)
            let alpha2 = Float.random(in: -2...2, using: &rng)
            let ext = GemmExtension(a: StridedOperand(try ctx.buffer(a2), rows: m, cols: k2, ta ? .none : .transposed),
                                    b: try ctx.pack(try ctx.buffer(b2), k: k2, n: n, tb ? .none : .transposed),
                                    alpha: alpha2)
            let extRef = Reference.matmul(a2, b2, m: m, n: n, k: k2, transA: !ta, transB: !tb, alpha: Double(alpha2))
            let extTerms = absProduct(a2, b2, m: m, n: n, k: k2, transA: !ta, transB: !tb, alpha: alpha2)
            let c3 = try poisoned(ctx, m * n)
            try ctx.gemm(c3, m: m, alpha: alpha, a: op, b: packed, ext: ext, bias: nil, beta: 0)
            assertClose(try c3.read(), zip(base, extRef).map(+), floor: magnitude(baseTerms, extTerms), "\(what) + ext")

            var masked = ext
            let p = Float.random(in: 0.1...0.5, using: &rng), seed = UInt32.random(in: 0...UInt32.max, using: &rng)
            let maskLd = n + 3
            masked.dropout = (p, seed, maskLd)
            let mask = DropoutMask.multipliers(count: m * maskLd, p: p, seed: seed)
            let c4 = try poisoned(ctx, m * n)
            try ctx.gemm(c4, m: m, alpha: alpha, a: op, b: packed, ext: masked, bias: biasb, beta: 0)
            var ref4 = base
            for i in 0..<m {
                for j in 0..<n { ref4[i * n + j] += extRef[i * n + j] * mask[i * maskLd + j] + Double(bias[j]) }
            }
            let maskedTerms = (0..<m * n).map { extTerms[$0] * mask[($0 / n) * maskLd + $0 % n] }
            assertClose(try c4.read(), ref4, floor: magnitude(baseTerms, maskedTerms, biasRows),
                        "\(what) + ext·mask(p=\(p), seed=\(seed)) + bias")
        }
    }

    // MARK: 16-bit panels

    /// fp32 → IEEE half bits (round to nearest even) and back.
    static func half(_ x: Float) -> UInt16 { Float16(x).bitPattern }
    static func fromHalf(_ h: UInt16) -> Float { Float(Float16(bitPattern: h)) }
    /// fp32 → bfloat16 bits (the top 16, round to nearest even) and back.
    static func bfloat(_ x: Float) -> UInt16 {
        let u = x.bitPattern
        return UInt16(truncatingIfNeeded: (u &+ 0x7fff &+ ((u >> 16) & 1)) >> 16)
    }
    static func fromBfloat(_ h: UInt16) -> Float { Float(bitPattern: UInt32(h) << 16) }

    /// gemm_tiled_f16 and gemm_tiled_bf16 read 16-bit panels (filled here from
    /// the fp32 packing, host-side converted) and accumulate in fp32: they
    /// match the float64 product of the values the panels hold, with the ext
    /// term (fp32 panels), its mask, bias and beta.
    func testTiledSixteenBitPanelInstances() throws {
        let device = try sharedContext().device
        var rng = freshRandom(#function)
        let tiles = [GemmChoice.defaultTile, GemmTile(tm: 32, tn: 64, tk: 16, wm: 2, wn: 4)]
        for tile in tiles {
            var cfg = KernelConfig.gpu
            cfg.gemm = GemmChoice(variant: .tiled, tile: tile)
            let ctx = try ComputeContext(device: device, config: cfg, kernelFiles: Self.kernelFiles)
            for (m, n, k) in [(1, 1, 1), (63, 129, 17), (17, 3, 1000), (129, 63, 129)] {
                for (storage, encode, decode) in [(WeightStorage.f16, Self.half, Self.fromHalf), (.bf16, Self.bfloat, Self.fromBfloat)] {
                    let suffix = storage.kernelSuffix
                    let what = "\(cfg.spec) gemm_tiled\(suffix) \(m)x\(n)x\(k)"
                    // B stored (N,K) (a weight), packed fp32, then narrowed.
                    let a = rng.uniform(m * k), w = rng.uniform(n * k), bias = rng.uniform(n), c0 = rng.uniform(m * n)
                    let panels = try XCTUnwrap(ctx.pack(try ctx.buffer(w), k: k, n: n, .transposed).buffer).read()
                    let bits = panels.map(encode)
                    let b16 = try DeviceBuffer<UInt16>(queue: ctx.queue, bits)
                    // The reference sees the values the panels hold: op(B)(k, j) = panel[j/16][k][j%16].
                    var held = [Float](repeating: 0, count: k * n)
                    for kk in 0..<k { for j in 0..<n { held[kk * n + j] = decode(bits[((j / 16) * k + kk) * 16 + j % 16]) } }
                    let k2 = 3, a2 = rng.uniform(m * k2), b2 = rng.uniform(k2 * n)
                    let p: Float = 0.3, seed = UInt32.random(in: 0...UInt32.max, using: &rng)
                    let a2p = try ctx.pack(try ctx.buffer(b2), k: k2, n: n, .none)
                    for beta: Float in [0, 0.5] {
                        let c = beta == 0 ? try poisoned(ctx, m * n) : try ctx.buffer(c0)
                        let shape = ctx.gemmLaunch(m: m, n: n, storage: storage)
                        XCTAssertEqual(shape.kernel, "gemm_tiled" + suffix)
                        try ctx.launch(shape.kernel, [
                            .int(Int32(m)), .int(Int32(n)), .int(Int32(k)), .float(1.25),
                            .buffer(try ctx.buffer(a)), .int(Int32(k)), .int(1),
                            .buffer(b16),
                            .int(Int32(k2)), .float(-0.5),
                            .buffer(try ctx.buffer(a2)), .int(Int32(k2)), .int(1),
                            .buffer(a2p.memory),
                            .int(1), .float(p), .uint(seed), .int(Int32(n)),
                            .int(1), .buffer(try ctx.buffer(bias)),
                            .float(beta), .buffer(c), .int(Int32(n)), .int(0), .int(0),
                        ], global: shape.global, local: shape.local)
                        let base = Reference.matmul(a, held, m: m, n: n, k: k, alpha: 1.25)
                        let ext = Reference.matmul(a2, b2, m: m, n: n, k: k2, alpha: -0.5)
                        let mask = DropoutMask.multipliers(count: m * n, p: p, seed: seed)
                        var ref = base
                        for i in 0..<m * n {
                            ref[i] += ext[i] * mask[i] + Double(bias[i % n]) + Double(beta) * Double(c0[i])
                        }
                        let terms = magnitude(absProduct(a, held, m: m, n: n, k: k, alpha: 1.25),
                                              zip(absProduct(a2, b2, m: m, n: n, k: k2, alpha: -0.5), mask).map(*),
                                              (0..<m * n).map { abs(Double(bias[$0 % n])) + Double(beta) * Double(abs(c0[$0])) })
                        assertClose(try c.read(), ref, floor: terms, "\(what) β=\(beta)")
                    }
                    // The narrowing is real: the held values differ from fp32 (else the test proves nothing).
                    XCTAssertTrue(k * n < 4 || zip(panels, bits).contains { $0 != decode($1) }, what)
                }
            }
        }
    }

    // MARK: choice and override

    func testVariantKeysParseAndRoundTrip() throws {
        let c = try KernelConfig.parse("gemm=tiled,tile=32x64x8,wpt=2x4", base: .cpu, origin: "t")
        XCTAssertEqual(c.gemm, GemmChoice(variant: .tiled, tile: GemmTile(tm: 32, tn: 64, tk: 8, wm: 2, wn: 4)))
        XCTAssertEqual(c.gemmRowsPerItem, KernelConfig.cpu.gemmRowsPerItem, "other keys from the base")
        XCTAssertEqual(c.gemm.tile.localSize.0, 16)
        XCTAssertEqual(c.gemm.tile.localSize.1, 16)
        XCTAssertTrue(c.spec.contains("gemm=tiled,tile=32x64x8,wpt=2x4"), c.spec)
        XCTAssertEqual(try KernelConfig.parse(c.spec, base: .gpu, origin: "t"), c)
        XCTAssertTrue(c.buildOptions.contains("-DTILED_TM=32 -DTILED_TN=64 -DTILED_TK=8 -DTILED_WM=2 -DTILED_WN=4"), c.buildOptions)
        // A preset first, then keys over it.
        var gpuPacked = KernelConfig.gpu
        gpuPacked.gemm.variant = .packed
        XCTAssertEqual(try KernelConfig.parse("gpu,gemm=packed", base: .cpu, origin: "t"), gpuPacked)
        XCTAssertEqual(try KernelConfig.parse("cpu, gemm=tiled", base: .gpu, origin: "t").gemm, .tiledDefault)
        for bad in ["gemm=fast", "gemm=", "tile=64x64", "tile=64x40x16", "tile=64x64x0", "wpt=3x4", "wpt=9x8",
                    "tile=512x64x16", "gemm=tiled,gemm=packed", "gpu,cpu", "tile=axbxc"] {
            XCTAssertThrowsError(try KernelConfig.parse(bad, base: .cpu, origin: "--kernel-config"), bad) { error in
                XCTAssertTrue("\(error)".contains("--kernel-config") && "\(error)".contains(bad), "\(error)")
            }
        }
    }

    /// The device class picks the variant (a CPU such as pocl's: packed; the
    /// gpu preset, which every other device gets: tiled); LORA_GPU_KERNEL_CONFIG
    /// and the flag override it, and the context then launches that kernel.
    func testDeviceClassChoiceAndOverride() throws {
        let device = try sharedContext().device
        XCTAssertEqual(KernelConfig.deviceDefault(device).gemm.variant, device.kind == .cpu ? .packed : .tiled)
        XCTAssertEqual(KernelConfig.gpu.gemm.variant, .tiled)
        XCTAssertEqual(KernelConfig.cpu.gemm.variant, .packed)
        let env = ["LORA_GPU_AUTOTUNE": "0", "LORA_GPU_TUNING_CACHE": "/nonexistent/lora-gpu/tuning.json",
                   "LORA_GPU_KERNEL_CONFIG": "gemm=tiled,tile=32x32x16,wpt=2x2"]
        let r = try KernelConfig.resolve(device: device, environment: env)
        XCTAssertEqual(r.source, .environment)
        XCTAssertEqual(r.config.gemm.variant, .tiled)
        let flag = try KernelConfig.resolve(device: device, explicit: "gemm=packed", environment: env)
        XCTAssertEqual(flag.config.gemm.variant, .packed)
        // A tile whose work-group exceeds the device's limit is refused, naming the origin.
        XCTAssertThrowsError(try KernelConfig.resolve(device: device, explicit: "gemm=tiled,tile=256x256x16,wpt=1x1",
                                                      environment: env)) {
            XCTAssertTrue("\($0)".contains("--kernel-config") && "\($0)".contains("work-group"), "\($0)")
            XCTAssertTrue("\($0)".contains("gemm tile 256x256x16/1x1 needs a work-group of 65536 work-items"), "\($0)")
        }
        let ctx = try ComputeContext(device: device, config: r.config, origin: r.origin, kernelFiles: Self.kernelFiles)
        XCTAssertEqual(ctx.gemmKernelDescription, "gemm_tiled (tile 32x32x16, 2x2 per work-item, local 16x16)")
        let shape = ctx.gemmLaunch(m: 33, n: 65)
        XCTAssertEqual(shape.kernel, "gemm_tiled")
        XCTAssertEqual(shape.global, [3 * 16, 2 * 16])
        XCTAssertEqual(shape.local, [16, 16])
        let launched = try kernelsLaunched(ctx) {
            try ctx.matmul(try ctx.buffer(count: 33 * 65), try ctx.buffer(count: 33 * 7), try ctx.buffer(count: 7 * 65),
                           m: 33, n: 65, k: 7)
        }
        XCTAssertTrue(launched.contains("gemm_tiled") && !launched.contains("gemm_packed"), "\(launched)")
        let packed = try ComputeContext(device: device, config: .cpu, kernelFiles: Self.kernelFiles)
        XCTAssertTrue(packed.gemmKernelDescription.hasPrefix("gemm_packed (8x16 per work-item"), packed.gemmKernelDescription)
        XCTAssertEqual(packed.gemmLaunch(m: 17, n: 33).kernel, "gemm_packed")
    }

    /// The tuner leaves gemm_tiled out on a CPU by default (and searches it
    /// elsewhere); forced, it builds, checks and times every quick tile beside
    /// gemm_packed, and the best tile is in the final playoff.
    func testTunerSearchesTiledWhereAskedAndTimesItBesidePacked() throws {
        let device = try sharedContext().device
        XCTAssertEqual(Tuner.searchesTiled(device), device.kind != .cpu)
        XCTAssertTrue(Tuner.searchesTiled(device, environment: ["LORA_GPU_TUNE_TILED": "1"]))
        XCTAssertFalse(Tuner.searchesTiled(device, environment: ["LORA_GPU_TUNE_TILED": "off"]))
        XCTAssertEqual(Tuner.searchSpace(for: device, quick: false).tiles.isEmpty, device.kind == .cpu)
        XCTAssertEqual(Tuner.parameterSets(for: device).allSatisfy { $0.gemm.variant == .packed }, device.kind == .cpu)
        let fitting = Tuner.tiledTiles(quick: false).filter { GemmChoice(variant: .tiled, tile: $0).fits(device) }
        XCTAssertEqual(Tuner.searchSpace(for: device, quick: false, tiled: true).tiles, fitting)
        if device.kind == .cpu { XCTAssertEqual(fitting, Tuner.tiledTiles(quick: false), "pocl fits every tile") }
        var lines: [String] = []
        let tuner = Tuner(device: device, linears: [TuningLinear("t", in: 96, out: 80)], quick: true, tokens: 48,
                          runs: 1, tiled: true) { lines.append($0) }
        let e = try tuner.run()
        let tiled = e.candidates.filter { $0.config.contains("gemm=tiled") }
        XCTAssertEqual(tiled.count, Tuner.tiledTiles(quick: true).count, "\(lines)")
        XCTAssertTrue(tiled.allSatisfy { $0.gflops != nil && $0.rejected == nil }, "\(tiled.map(\.rejected))")
        XCTAssertTrue(e.candidates.contains { $0.config.contains("gemm=packed") && $0.gflops != nil })
        let finalists = try XCTUnwrap(e.playoff)
        XCTAssertTrue(finalists.contains { $0.contains("gemm=tiled") }, "\(finalists)")
        XCTAssertTrue(lines.first?.contains("gemm_tiled") ?? false, "\(lines)")
    }
}
