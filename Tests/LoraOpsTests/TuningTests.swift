import Foundation
@testable import LoraOps
import OpenCLRuntime
import Reference
import XCTest

/// The tuner's search space is safe (every value it may choose passes the
/// matmul and LoRA parity checks), its cache round-trips, and a config is
/// resolved flag > environment > cache > device default.
final class TuningTests: XCTestCase {
    func tempCachePath(_ name: String = #function) -> String {
        let dir = FileManager.default.temporaryDirectory
            .appendingPathComponent("lora-gpu-tuning-test-\(getpid())-\(name.filter(\.isLetter))")
        try? FileManager.default.removeItem(at: dir)
        return dir.appendingPathComponent("sub/tuning.json").path
    }

    // MARK: parity for every parameter set

    /// Every GEMM_MR the tuner may choose (and the rest up to the 16 that
    /// --kernel-config accepts), every gemm and pack local size, and every
    /// gemm_tiled tile it may choose on a GPU (forced here): the program is
    /// built with it and matmul (all transpose forms, awkward sizes, NaN-poisoned
    /// C, beta ≠ 0, a packed weight with bias) and LoRA forward/backward with
    /// dropout must match the float64 reference. (GemmVariantTests checks the
    /// tiles further: the ext term and its mask, 16-bit panels.)
    func testEveryTunerParameterSetPassesParity() throws {
        let device = try sharedContext().device
        var configs = Tuner.parameterSets(for: device, tiled: true)
        var base = KernelConfig.deviceDefault(device)
        base.gemm.variant = .packed
        for mr in 1...KernelConfig.maxRowsPerItem where !configs.contains(where: { $0.gemmRowsPerItem == mr && $0.gemm.variant == .packed }) {
            var c = base
            c.gemmRowsPerItem = mr
            configs.append(c)
        }
        let space = Tuner.searchSpace(for: device, quick: false, tiled: true)
        XCTAssertEqual(Set(configs.filter { $0.gemm.variant == .packed }.map(\.gemmRowsPerItem)), Set(1...KernelConfig.maxRowsPerItem))
        for t in space.tiles { XCTAssertTrue(configs.contains { $0.gemm == GemmChoice(variant: .tiled, tile: t) }, "tile \(t) untested") }
        XCTAssertFalse(space.tiles.isEmpty)
        for l in space.gemmLocals { XCTAssertTrue(configs.contains { $0.gemmLocal == l }, "local \(l) untested") }
        for p in space.packLocals { XCTAssertTrue(configs.contains { $0.packLocal == p }, "pack \(p) untested") }
        let quickSpace = Tuner.searchSpace(for: device, quick: true)
        XCTAssertTrue(quickSpace.rowsPerItem.allSatisfy(space.rowsPerItem.contains))
        XCTAssertTrue(quickSpace.gemmLocals.allSatisfy { q in space.gemmLocals.contains { $0 == q } })

        var rng = freshRandom(#function)
        // 293 rows: with `band`, several full bands of row groups and a partial last one.
        let shapes = [(1, 1, 1), (3, 17, 63), (17, 3, 1), (63, 129, 17), (37, 45, 70), (293, 45, 17)]
        for cfg in configs {
            let ctx = try ComputeContext(device: device, config: cfg, kernelFiles: ["matmul.cl", "matmul_tiled.cl", "activations.cl"])
            for (m, n, k) in shapes {
                for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
                    let a = rng.uniform(m * k), b = rng.uniform(k * n)
                    let c = try poisoned(ctx, m * n)
                    try ctx.matmul(c, try ctx.buffer(a), try ctx.buffer(b), m: m, n: n, k: k,
                                   transA: ta ? .transposed : .none, transB: tb ? .transposed : .none, alpha: 0.5)
                    assertClose(try c.read(), Reference.matmul(a, b, m: m, n: n, k: k, transA: ta, transB: tb, alpha: 0.5),
                                "\(cfg.spec) matmul \(m)x\(n)x\(k) tA=\(ta) tB=\(tb)")
                }
                let c0 = rng.uniform(m * n), a = rng.uniform(m * k), b = rng.uniform(k * n)
                let c = try ctx.buffer(c0)
                try ctx.matmul(c, try ctx.buffer(a), try ctx.buffer(b), m: m, n: n, k: k, beta: -0.75)
                // ‖|A|·|B| + 0.75·|C0|‖ bounds the error where the two terms cancel (a 1×1 result can).
                let betaTerms = Reference.matmul(a.map(abs), b.map(abs), c: c0.map(abs), m: m, n: n, k: k, beta: 0.75)
                assertClose(try c.read(), Reference.matmul(a, b, c: c0, m: m, n: n, k: k, beta: -0.75),
                            floor: betaTerms.reduce(0) { $0 + $1 * $1 }.squareRoot(), "\(cfg.spec) matmul β \(m)x\(n)x\(k)")
                let x = rng.uniform(m * k), w = rng.uniform(n * k), bias = rng.uniform(n)
                let y = try poisoned(ctx, m * n)
                let packed = try ctx.pack(try ctx.buffer(w), k: k, n: n, .transposed)
                try ctx.matmul(y, try ctx.buffer(x), packed: packed, m: m, bias: try ctx.buffer(bias))
                var ref = Reference.matmul(x, w, m: m, n: n, k: k, transB: true)
                var terms = Reference.matmul(x.map(abs), w.map(abs), m: m, n: n, k: k, transB: true)
                for i in 0..<m { for j in 0..<n { ref[i * n + j] += Double(bias[j]); terms[i * n + j] += Double(abs(bias[j])) } }
                assertClose(try y.read(), ref, floor: terms.reduce(0) { $0 + $1 * $1 }.squareRoot(),
                            "\(cfg.spec) x·Wᵀ+b \(m)x\(n)x\(k)")
            }
            try checkLoRA(ctx, rng: &rng)
        }
    }

    /// The fused LoRA forward and backward (the gemm's second product and its
    /// dropout-masked form) on one awkward shape.
    func checkLoRA(_ ctx: ComputeContext, rng: inout SeededRandom) throws {
        let (n, din, dout, r) = (19, 37, 23, 5)
        let lora = LoRASettings(rank: r, alpha: 7, dropout: 0.2)
        let seed = UInt32.random(in: 0...UInt32.max, using: &rng)
        let x = rng.uniform(n * din), w = rng.uniform(dout * din), a = rng.uniform(r * din), b = rng.uniform(dout * r)
        let dyv = rng.uniform(n * dout)
        let mask = DropoutMask.multipliers(count: n * din, p: lora.dropout, seed: seed)
        let base = try FrozenLinear(ctx, weight: try ctx.buffer(w), outFeatures: dout, inFeatures: din)
        let xb = try ctx.buffer(x), ab = try ctx.buffer(a), bb = try ctx.buffer(b)
        let y = try poisoned(ctx, n * dout), u = try poisoned(ctx, n * r)
        try ctx.loraForward(y: y, u: u, x: xb, base: base, a: ab, b: bb, bias: nil, tokens: n, lora: lora, seed: seed)
        let fwd = Reference.loraForward(x: toDouble(x), w: toDouble(w), a: toDouble(a), b: toDouble(b), bias: nil,
                                        n: n, din: din, dout: dout, r: r, scale: Double(lora.scale), mask: mask)
        assertClose(try y.read(), fwd.y, "\(ctx.config.spec) lora forward y")
        let dx = try poisoned(ctx, n * din), da = try poisoned(ctx, r * din), db = try poisoned(ctx, dout * r)
        try ctx.loraBackward(dx: dx, da: da, db: db, dbias: nil, dy: try ctx.buffer(dyv), x: xb, u: u, base: base,
                             a: ab, b: bb, tokens: n, lora: lora, seed: seed)
        let bwd = Reference.loraBackward(dy: toDouble(dyv), x: toDouble(x), w: toDouble(w), a: toDouble(a),
                                         b: toDouble(b), n: n, din: din, dout: dout, r: r,
                                         scale: Double(lora.scale), mask: mask)
        assertClose(try dx.read(), bwd.dx, "\(ctx.config.spec) lora dX")
        assertClose(try da.read(), bwd.da, "\(ctx.config.spec) lora dA")
        assertClose(try db.read(), bwd.db, "\(ctx.config.spec) lora dB")
        // 16-bit frozen panels (gemm_packed_f16 / _bf16): bit-identical to fp32 panels of the same values.
        for storage in [WeightStorage.f16, .bf16] {
            let w16 = Storage16Tests.weights(dout * din, storage, rng: &rng)
            let half = try FrozenLinear(ctx, weight16: try DeviceBuffer<UInt16>(queue: ctx.queue, w16.bits), storage: storage,
                                        outFeatures: dout, inFeatures: din)
            let full = try FrozenLinear(ctx, weight: try ctx.buffer(w16.values), outFeatures: dout, inFeatures: din)
            var outs: [[Float]] = []
            for f in [half, full] {
                try ctx.loraForward(y: y, u: u, x: xb, base: f, a: ab, b: bb, bias: nil, tokens: n, lora: lora, seed: seed)
                try ctx.loraBackward(dx: dx, da: da, db: db, dbias: nil, dy: try ctx.buffer(dyv), x: xb, u: u, base: f,
                                     a: ab, b: bb, tokens: n, lora: lora, seed: seed)
                outs.append(try y.read() + dx.read())
            }
            XCTAssertEqual(outs[0], outs[1], "\(ctx.config.spec) \(storage) panels: y, dX differ from fp32")
            let ref = Reference.loraForward(x: toDouble(x), w: toDouble(w16.values), a: toDouble(a), b: toDouble(b), bias: nil,
                                            n: n, din: din, dout: dout, r: r, scale: Double(lora.scale), mask: mask)
            assertClose(Array(outs[0][0..<(n * dout)]), ref.y, "\(ctx.config.spec) \(storage) lora forward y")
        }
    }

    // MARK: config strings

    /// Bands only reorder the work-groups: every band (one row group, a few, more
    /// than there are; local sizes over 1 in either dimension) gives the unbanded
    /// product bit for bit, with every element written (NaN-poisoned C).
    func testBandsGiveTheSameProductBitForBit() throws {
        let device = try sharedContext().device
        var rng = freshRandom(#function)
        for local in [(1, 4), (2, 2), (3, 1)] {
            var plain = KernelConfig.cpu
            plain.gemmLocal = local
            plain.gemmRowsPerItem = 4
            let reference = try ComputeContext(device: device, config: plain, kernelFiles: ["matmul.cl", "matmul_tiled.cl"])
            for band in [1, 2, 3, 16, 1024] {
                var banded = plain
                banded.gemmBand = band
                let ctx = try ComputeContext(device: device, config: banded, kernelFiles: ["matmul.cl", "matmul_tiled.cl"])
                for (m, n, k) in [(293, 45, 17), (97, 300, 33), (5, 17, 3)] {
                    let a = rng.uniform(m * k), b = rng.uniform(k * n)
                    func product(_ c: ComputeContext) throws -> [Float] {
                        let out = try c.buffer(count: m * n)
                        try out.fill(.nan)
                        try c.matmul(out, try c.buffer(a), try c.buffer(b), m: m, n: n, k: k, transB: .transposed)
                        return try out.read()
                    }
                    let got = try product(ctx)
                    XCTAssertFalse(got.contains { $0.isNaN }, "band \(band) local \(local) \(m)x\(n)x\(k): an element unwritten")
                    XCTAssertEqual(got, try product(reference), "band \(band) local \(local) \(m)x\(n)x\(k)")
                }
            }
        }
    }

    func testSpecRoundTripsAndBadStringsNameTheirOrigin() throws {
        for c in [KernelConfig.cpu, .gpu,
                  KernelConfig(gemmRowsPerItem: 5, gemmLocal: (2, 4), rowWorkGroup: 32, elementwiseLocal: 128, packLocal: 16),
                  KernelConfig(gemmRowsPerItem: 5, gemmLocal: (2, 4), rowWorkGroup: 32, elementwiseLocal: 128, packLocal: 16,
                               gemm: GemmChoice(variant: .tiled, tile: GemmTile(tm: 128, tn: 32, tk: 4, wm: 8, wn: 2)))] {
            XCTAssertEqual(try KernelConfig.parse(c.spec, base: .gpu, origin: "t"), c)
        }
        XCTAssertEqual(try KernelConfig.parse("CPU", base: .gpu, origin: "t"), .cpu)
        var expected = KernelConfig.cpu
        expected.gemmRowsPerItem = 6
        expected.rowWorkGroup = 4
        XCTAssertEqual(try KernelConfig.parse(" mr=6, row=4 ", base: .cpu, origin: "t"), expected)
        // band: 0 (none) or a row-group count; always in the spec, and round-trips.
        var banded = KernelConfig.cpu
        banded.gemmBand = 16
        XCTAssertTrue(banded.spec.contains(",band=16,"), banded.spec)
        XCTAssertEqual(try KernelConfig.parse("band=16", base: .cpu, origin: "t"), banded)
        XCTAssertEqual(try KernelConfig.parse(banded.spec, base: .cpu, origin: "t"), banded)
        XCTAssertEqual(try KernelConfig.parse("band=0", base: banded, origin: "t"), .cpu)
        XCTAssertTrue(banded.buildOptions.contains("-DGEMM_BAND=16"), banded.buildOptions)
        // Per-format rows (mr.<format>): in the spec sorted by format, round-trip, a build option each; only
        // quantized formats; the launch takes the format's count, every other storage the shared one.
        var perFormat = KernelConfig.cpu
        perFormat.quantRowsPerItem = [.q6_k: 3, .q4_0: 5]
        XCTAssertTrue(perFormat.spec.hasSuffix(",mr.q4_0=5,mr.q6_k=3"), perFormat.spec)
        XCTAssertEqual(try KernelConfig.parse(perFormat.spec, base: .gpu, origin: "t"), perFormat)
        XCTAssertEqual(try KernelConfig.parse("mr.q4_0=5, MR.Q6_K=3", base: .cpu, origin: "t"), perFormat)
        XCTAssertNotEqual(perFormat, .cpu)
        XCTAssertTrue(perFormat.buildOptions.hasSuffix(" -DGEMM_MR_Q4_0=5 -DGEMM_MR_Q6_K=3"), perFormat.buildOptions)
        XCTAssertEqual([WeightStorage.q4_0, .q6_k, .q8_0, .f16, .f32].map(perFormat.rowsPerItem), [5, 3, 8, 8, 8])
        // Staged formats (stage.<format>=1): spelled after the rows, round-trip, no build option (a host-side choice).
        perFormat.quantStaged = [.nf4, .q4_0]
        XCTAssertTrue(perFormat.spec.hasSuffix(",mr.q6_k=3,stage.nf4=1,stage.q4_0=1"), perFormat.spec)
        XCTAssertEqual(try KernelConfig.parse(perFormat.spec, base: .gpu, origin: "t"), perFormat)
        XCTAssertEqual(try KernelConfig.parse("stage.nf4=0, stage.q4_0=1", base: perFormat, origin: "t").quantStaged, [.q4_0])
        XCTAssertFalse(perFormat.buildOptions.contains("STAGE"), perFormat.buildOptions)
        for (bad, says) in [("mr.f16=4", "f16 is not a quantized format"), ("mr.q3_k=4", "q3_k is not a quantized format"),
                            ("mr.q4_0=0", "not a positive integer"), ("mr.q4_0=17", "mr.q4_0 must be 1…16"),
                            ("mr.q4_0=4,mr.q4_0=5", "given twice"), ("stage.q4_0=2", "stage.q4_0=2 is not 0 or 1"),
                            ("stage.f32=1", "f32 is not a quantized format")] {
            XCTAssertThrowsError(try KernelConfig.parse(bad, base: .cpu, origin: "--kernel-config"), bad) { error in
                XCTAssertTrue("\(error)".contains("--kernel-config") && "\(error)".contains(says), "\(error)")
            }
        }
        for bad in ["", "mr=0", "mr=17", "mr=x", "local=3", "local=0x4", "row=3", "speed=9", "mr=4,mr=5", "mr",
                    "band=-1", "band=x", "band=1025"] {
            XCTAssertThrowsError(try KernelConfig.parse(bad, base: .cpu, origin: "--kernel-config"), bad) { error in
                XCTAssertTrue("\(error)".contains("--kernel-config"), "\(error)")
            }
        }
    }

    // MARK: resolution order

    func testResolutionOrderFlagThenEnvironmentThenCacheThenDefault() throws {
        let device = try sharedContext().device
        let path = tempCachePath()
        defer { try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent) }
        var env = ["LORA_GPU_TUNING_CACHE": path, "LORA_GPU_AUTOTUNE": "0"]
        // Nothing set, no cache file: the device class, untuned.
        var r = try KernelConfig.resolve(device: device, environment: env)
        XCTAssertEqual(r.source, .deviceDefault)
        XCTAssertTrue(r.untuned)
        XCTAssertEqual(r.config, KernelConfig.deviceDefault(device))
        // Auto-tune off: resolveOrTune does not tune and writes nothing.
        r = try KernelConfig.resolveOrTune(device: device, environment: env) { XCTFail("unexpected log: \($0)") }
        XCTAssertEqual(r.source, .deviceDefault)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path))
        // A cache entry for this device wins over the default.
        var cached = KernelConfig.deviceDefault(device)
        cached.gemmRowsPerItem = 3
        cached.gemmLocal = (1, 2)
        var cache = TuningCache()
        cache.store(entry(key: TuningKey(device: device), config: cached))
        try cache.save(path: path)
        r = try KernelConfig.resolve(device: device, environment: env)
        XCTAssertEqual(r.source, .cache)
        XCTAssertEqual(r.config, cached)
        XCTAssertFalse(r.untuned)
        // The environment wins over the cache.
        env["LORA_GPU_KERNEL_CONFIG"] = "mr=7"
        r = try KernelConfig.resolve(device: device, environment: env)
        XCTAssertEqual(r.source, .environment)
        XCTAssertEqual(r.config.gemmRowsPerItem, 7)
        XCTAssertTrue(r.config.gemmLocal == KernelConfig.deviceDefault(device).gemmLocal, "unset keys take the device default")
        // The flag wins over the environment.
        r = try KernelConfig.resolve(device: device, explicit: "gpu", environment: env)
        XCTAssertEqual(r.source, .flag)
        XCTAssertEqual(r.config, .gpu)
        // Bad values throw, naming where they came from; a local size past the device limit too.
        XCTAssertThrowsError(try KernelConfig.resolve(device: device, explicit: "mr=99", environment: env)) {
            XCTAssertTrue("\($0)".contains("--kernel-config"), "\($0)")
        }
        env["LORA_GPU_KERNEL_CONFIG"] = "local=4096x4096"
        XCTAssertThrowsError(try KernelConfig.resolve(device: device, environment: env)) {
            XCTAssertTrue("\($0)".contains("LORA_GPU_KERNEL_CONFIG") && "\($0)".contains("work-group"), "\($0)")
        }
        // ComputeContext.shared builds with what resolve picks (here from the real environment).
        let ctx = try ComputeContext.shared(device: device)
        XCTAssertEqual(ctx.config, try KernelConfig.resolve(device: device).config)
    }

    /// A command whose model keeps quantized formats the cached entry has no figures for: the per-format stage runs
    /// for those formats alone (the rest of the config kept), its choice is used and stored with the rates; the next
    /// run finds them and tunes nothing; a format already there is not tuned again; a flag's config is used as given.
    func testFormatsOfTheModelAreTunedOnceIntoTheCachedEntry() throws {
        let device = try sharedContext().device
        let path = tempCachePath()
        defer { try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent) }
        let env = ["LORA_GPU_TUNING_CACHE": path, "LORA_GPU_AUTOTUNE": "1"]
        var cached = KernelConfig.deviceDefault(device)
        cached.gemmRowsPerItem = 6
        cached.quantRowsPerItem = [.q8_0: 3]
        var cache = TuningCache()
        var e = entry(key: TuningKey(device: device), config: cached)
        e.formatGflops = ["q8_0": ["mr=3": 1]]
        cache.store(e)
        try cache.save(path: path)
        var logs: [String] = []
        // A busy host: postponed, nothing written.
        let busy = try KernelConfig.resolveOrTune(device: device, environment: env, hostLoad: { 0.9 }, formats: [.q4_1]) { logs.append($0) }
        XCTAssertEqual(busy.config, cached)
        XCTAssertTrue(logs.count == 1 && logs[0].contains("90 % of the CPUs") && logs[0].contains("Q4_1"), "\(logs)")
        XCTAssertNil(try TuningCache.load(path: path).entry(for: TuningKey(device: device))?.formatGflops?["q4_1"])
        logs = []
        let r = try KernelConfig.resolveOrTune(device: device, environment: env, hostLoad: { 0 }, formats: [.q4_1, .q8_0],
                                               linears: [TuningLinear("w", in: 96, out: 40, count: 3)]) { logs.append($0) }
        XCTAssertTrue(logs.first?.contains("tuning the gemm over Q4_1 panels") ?? false, "\(logs)")
        XCTAssertEqual(r.source, .cache)
        XCTAssertEqual(r.config.gemmRowsPerItem, 6, "the shared config is kept")
        XCTAssertEqual(r.config.quantRowsPerItem[.q8_0], 3, "a format already tuned is kept")
        let stored = try XCTUnwrap(try TuningCache.load(path: path).entry(for: TuningKey(device: device)))
        XCTAssertEqual(try KernelConfig.parse(stored.config, base: .cpu, origin: "t"), r.config)
        let q41 = try XCTUnwrap(stored.formatGflops?["q4_1"])
        XCTAssertNotNil(q41["mr=6"], "\(q41)")
        XCTAssertNotNil(q41["staged"], "\(q41)")
        XCTAssertEqual(stored.formatGflops?["q8_0"], ["mr=3": 1], "the other format's figures kept")
        XCTAssertEqual(r.config.quantStaged.contains(.q4_1), q41["staged"]! > 1.03 * q41["in registers"]!)
        // Found next time: nothing tuned.
        let again = try KernelConfig.resolveOrTune(device: device, environment: env, hostLoad: { 0 }, formats: [.q4_1]) {
            XCTFail("tuned again: \($0)")
        }
        XCTAssertEqual(again.config, r.config)
        // A flag's config is used as given.
        let flag = try KernelConfig.resolveOrTune(device: device, explicit: "mr=4", environment: env, hostLoad: { 0 }, formats: [.q5_0]) {
            XCTFail("tuned under a flag: \($0)")
        }
        XCTAssertEqual(flag.config.gemmRowsPerItem, 4)
        XCTAssertTrue(flag.config.quantRowsPerItem.isEmpty && flag.config.quantStaged.isEmpty)
    }

    // MARK: the cache

    func entry(key: TuningKey, config: KernelConfig) -> TuningEntry {
        TuningEntry(key: key, config: config.spec, gflops: 42, defaultConfig: KernelConfig.cpu.spec, defaultGflops: 40,
                    mode: "full", date: "2026-01-01T00:00:00Z", tokens: 8, shapes: ["p 8x16x16"], packGBps: ["64": 3],
                    candidates: [TuningCandidate(config: config.spec, gflops: 42, perShape: [42], rejected: nil),
                                 TuningCandidate(config: "mr=2", gflops: nil, perShape: [], rejected: "parity")])
    }

    func testCacheRoundTripAtomicWriteAndCorruptFile() throws {
        let path = tempCachePath()
        let dir = (path as NSString).deletingLastPathComponent
        defer { try? FileManager.default.removeItem(atPath: dir) }
        XCTAssertEqual(try TuningCache.load(path: path).entries.count, 0, "an absent cache is empty")
        var cache = TuningCache()
        let k1 = TuningKey(device: "dev A", driver: "1.0", sourceHash: "aaaa")
        let k2 = TuningKey(device: "dev B", driver: "1.0", sourceHash: "aaaa")
        cache.store(entry(key: k1, config: .cpu))
        cache.store(entry(key: k2, config: .gpu))
        try cache.save(path: path)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["tuning.json"], "no temporary file left")
        var back = try TuningCache.load(path: path)
        XCTAssertEqual(back.entries.count, 2)
        XCTAssertEqual(back.entry(for: k1)?.config, KernelConfig.cpu.spec)
        XCTAssertEqual(back.entry(for: k1)?.candidates.map(\.gflops), [42, nil])
        XCTAssertEqual(back.entry(for: k2)?.config, KernelConfig.gpu.spec)
        // Another source hash or driver is another key.
        XCTAssertNil(back.entry(for: TuningKey(device: "dev A", driver: "1.0", sourceHash: "bbbb")))
        XCTAssertNil(back.entry(for: TuningKey(device: "dev A", driver: "1.1", sourceHash: "aaaa")))
        // A new tuning of the same device and driver replaces the stale one.
        back.store(entry(key: TuningKey(device: "dev A", driver: "1.0", sourceHash: "bbbb"), config: .gpu))
        XCTAssertEqual(back.entries.count, 2)
        XCTAssertNil(back.entry(for: k1))
        // The key hashes the kernel sources: a real hash, stable within the process.
        XCTAssertEqual(TuningKey.currentSourceHash.count, 16)
        XCTAssertNotEqual(TuningKey.fnv1a64("a"), TuningKey.fnv1a64("b"))
        XCTAssertEqual(TuningKey.fnv1a64(""), "cbf29ce484222325")
        // A corrupt file: load names it; resolve skips it and says so.
        try Data("{not json".utf8).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try TuningCache.load(path: path)) { XCTAssertTrue("\($0)".contains(path), "\($0)") }
        let device = try sharedContext().device
        let r = try KernelConfig.resolve(device: device, environment: ["LORA_GPU_TUNING_CACHE": path])
        XCTAssertEqual(r.source, .deviceDefault)
        XCTAssertFalse(r.untuned, "an unreadable cache is not overwritten by an automatic tune")
        XCTAssertTrue(r.origin.contains("cache skipped"), r.origin)
    }

    /// A cache entry measured with other kernel sources is stale: resolveOrTune
    /// runs the quick tune, which checks and times real candidates, and
    /// replaces the entry with one under the current hash. Taken under an
    /// artificial load, the entry records it and is tuned again once the host is idle.
    func testStaleSourceHashRetunes() throws {
        let device = try sharedContext().device
        let path = tempCachePath()
        defer { try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent) }
        var cache = TuningCache()
        var stale = TuningKey(device: device)
        stale.sourceHash = "0000000000000000"
        cache.store(entry(key: stale, config: KernelConfig(gemmRowsPerItem: 2, gemmLocal: (1, 1), rowWorkGroup: 1,
                                                           elementwiseLocal: 64, packLocal: 64)))
        try cache.save(path: path)
        let env = ["LORA_GPU_TUNING_CACHE": path, "LORA_GPU_AUTOTUNE": "1"]
        XCTAssertTrue(try KernelConfig.resolve(device: device, environment: env).untuned)
        var lines: [String] = []
        // Taken while other processes keep every CPU busy (an artificial load): the entry records it.
        // (Half the CPUs busy is far past the threshold and keeps this tune short.)
        let busy = try busyProcesses(max((HostLoadSample.allowedCPUs()?.count ?? ProcessInfo.processInfo.activeProcessorCount) / 2, 1))
        let underLoad = try KernelConfig.resolveOrTune(device: device, environment: env) { lines.append($0) }
        stop(busy)
        XCTAssertEqual(lines.count, 2, "one line before the tune, one after: \(lines)")
        XCTAssertTrue(lines.first?.contains("quick tune") ?? false, "\(lines)")
        XCTAssertEqual(underLoad.source, .cache)
        let loadedEntry = try XCTUnwrap(TuningCache.load(path: path).entry(for: TuningKey(device: device)))
        XCTAssertGreaterThan(loadedEntry.othersLoad ?? 0, TuneLoadPolicy.busyShare, loadedEntry.loadDescription)
        XCTAssertTrue(loadedEntry.measuredUnderLoad)
        XCTAssertTrue(lines.last?.hasSuffix("tuned again once the host is idle") ?? false, "\(lines)")
        // A busy host (as the probe says) postpones the redo; an idle one tunes again, one line saying why.
        _ = try KernelConfig.resolveOrTune(device: device, environment: env, hostLoad: { 0.9 }) { XCTFail("tuned while busy: \($0)") }
        lines = []
        let r = try KernelConfig.resolveOrTune(device: device, environment: env, hostLoad: { 0 }) { lines.append($0) }
        XCTAssertEqual(lines.count, 2, "one line before the tune, one after: \(lines)")
        XCTAssertTrue(lines.first?.hasPrefix("lora-gpu: the cached kernel tuning for \(device.name) was measured under load (other processes used ") ?? false,
                      "\(lines)")
        XCTAssertEqual(r.source, .cache)
        let back = try TuningCache.load(path: path)
        XCTAssertEqual(back.entries.count, 1, "the stale entry is replaced")
        let e = try XCTUnwrap(back.entry(for: TuningKey(device: device)))
        XCTAssertEqual(e.mode, "quick")
        XCTAssertEqual(try KernelConfig.parse(e.config, base: .cpu, origin: "t"), r.config)
        let measured = e.candidates.compactMap(\.gflops)
        XCTAssertFalse(measured.isEmpty)
        // The winner is the best of the set timed together last (the best MR at each quick local size).
        let finalists = try XCTUnwrap(e.playoff)
        // The best MR at the default and each quick local size, and (where searched) the best tile.
        let quickSpace = Tuner.searchSpace(for: device, quick: true)
        // The device default runs beside them (a winner must beat it beyond the rounds' spread).
        XCTAssertTrue(finalists.contains(KernelConfig.deviceDefault(device).spec), "\(finalists)")
        XCTAssertEqual(Set(finalists).count, finalists.count)
        XCTAssertLessThanOrEqual(finalists.count, 2 + quickSpace.gemmLocals.count + (quickSpace.tiles.isEmpty ? 0 : 1))
        XCTAssertNotNil(e.spread)
        XCTAssertNotNil(e.othersLoad, "/proc is read on Linux")
        // The band and attention stages (after the playoff) set only the band and the attention tile heights.
        var gemmPart = try KernelConfig.parse(e.config, base: .cpu, origin: "t")
        gemmPart.attentionQueryRows = KernelConfig.deviceDefault(device).attentionQueryRows
        gemmPart.attentionKeyRows = KernelConfig.deviceDefault(device).attentionKeyRows
        gemmPart.gemmBand = KernelConfig.deviceDefault(device).gemmBand
        XCTAssertTrue(finalists.contains(gemmPart.spec), "\(e.config) not among \(finalists)")
        XCTAssertEqual(e.attentionGflops?.count, 4, "aq and ak, two values each: \(String(describing: e.attentionGflops))")
        if gemmPart.gemm.variant == .packed {
            XCTAssertEqual(e.bandGflops.map { Set($0.keys) }, Set(quickSpace.bands.map(String.init)), "every quick band timed")
            XCTAssertTrue(quickSpace.bands.contains(try KernelConfig.parse(e.config, base: .cpu, origin: "t").gemmBand))
        }
        let playoffFigures = e.candidates.filter { finalists.contains($0.config) }.compactMap(\.gflops)
        XCTAssertTrue(playoffFigures.contains(e.gflops), "the winner's figure is from the playoff")
        XCTAssertGreaterThanOrEqual(e.gflops * (1 + max((e.spread ?? 0) / 2, 0.03)) + 1e-9, playoffFigures.max() ?? 0,
                                    "the default is kept only within the noise of the best")
        XCTAssertNotNil(e.finalGflops, "the final config timed on its own")
        XCTAssertTrue(e.candidates.allSatisfy { ($0.gflops == nil) != ($0.rejected == nil) })
        XCTAssertTrue(e.candidates.contains { $0.config == KernelConfig.deviceDefault(device).spec }, "the default is measured too")
        XCTAssertNotNil(e.defaultGflops)
        // Tuned now: the next resolution reads the cache without tuning.
        // (A busy host postpones the automatic check, so this does not depend on the machine's state.)
        let again = try KernelConfig.resolveOrTune(device: device, environment: env, hostLoad: { 1 }) { XCTFail("tuned again: \($0)") }
        XCTAssertEqual(again.config, r.config)
        XCTAssertEqual(again.source, .cache)
    }

    /// The per-format stage: each format's kernel is built with its own GEMM_MR_<FORMAT> and staged or not, checked (a wrong
    /// count still computes the right product; the check catches a wrong one: see QuantizedStorageTests),
    /// timed, and a count other than the shared one is kept only with a clear lead; the entry records the
    /// rates and the config spells the choice. Tiny shapes: this checks the stage, not the speed.
    func testPerFormatStageRecordsRatesAndAChoiceThatParses() throws {
        let dev = try sharedContext().device
        var lines: [String] = []
        let tuner = Tuner(device: dev, linears: [TuningLinear("w", in: 64, out: 40)], quick: true, tokens: 64, runs: 1, tiled: false,
                          lmHead: (64, 96, 1), formats: [.q4_0, .f16, .q4_k]) { lines.append($0) }
        XCTAssertEqual(tuner.formats, [.q4_0, .q4_k])
        // K-quants need K a multiple of 256: the stage's products round K up.
        XCTAssertEqual(tuner.formatProducts(.q4_k).map(\.k), [256])
        XCTAssertEqual(tuner.formatProducts(.q4_0).map { "\($0.m)x\($0.n)x\($0.k)" }, ["64x40x64"])
        let entry = try tuner.run()
        let rates = try XCTUnwrap(entry.formatGflops)
        XCTAssertEqual(Set(rates.keys), ["q4_0", "q4_k"])
        let config = try KernelConfig.parse(entry.config, base: .cpu, origin: "t")
        for f in [WeightStorage.q4_0, .q4_k] {
            let tried = try XCTUnwrap(rates[f.rawValue])
            XCTAssertTrue(tried.keys.contains("mr=\(config.gemmRowsPerItem)"), "\(tried)")
            // Staged against in registers (64 rows reach the staging threshold): staged only with a 3 % lead.
            let staged = try XCTUnwrap(tried["staged"]), inRegisters = try XCTUnwrap(tried["in registers"])
            XCTAssertEqual(config.quantStaged.contains(f), staged > 1.03 * inRegisters, "\(f): \(tried)")
            XCTAssertTrue(tried.values.allSatisfy { $0 > 0 && $0.isFinite }, "\(tried)")
            let chosen = config.rowsPerItem(f)
            XCTAssertNotNil(tried["mr=\(chosen)"], "\(f) chose \(chosen) of \(tried)")
            if chosen != config.gemmRowsPerItem {
                XCTAssertGreaterThan(tried["mr=\(chosen)"]!, 1.03 * tried["mr=\(config.gemmRowsPerItem)"]!)
            }
            XCTAssertTrue(lines.contains { $0.hasPrefix("  \(f.rawValue): ") && $0.contains("→ mr=\(chosen)") }, "\(lines)")
        }
        // The stage's parity check holds on the shared context for every format.
        for f in WeightStorage.allCases where f.isQuantized { XCTAssertNil(try Tuner.formatParityFailure(try sharedContext(), f), "\(f)") }
    }

    /// The tuner's own pre-timing check passes on the suite's context; equal
    /// product shapes of different layers are merged with their counts summed.
    func testParityCheckPassesForDefaultAndProductsMergeShapes() throws {
        let ctx = try sharedContext()
        XCTAssertNil(try Tuner.parityFailure(ctx))
        let p = Tuner.products([TuningLinear("a", in: 8, out: 16, count: 2), TuningLinear("b", in: 16, out: 8)], tokens: 4)
        // a: x·Wᵀ 4x16x8, dY·W 4x8x16; b: x·Wᵀ 4x8x16 (same as a's backward), dY·W 4x16x8 (same as a's forward).
        XCTAssertEqual(p.map { "\($0.m)x\($0.n)x\($0.k)×\($0.count)" }, ["4x16x8×3", "4x8x16×3"])
    }

    // MARK: tuning under load (Benchmarks/NOTES.md, "A tune taken under load")

    /// Starts `n` busy-looping shell processes: an artificial load from OTHER processes.
    func busyProcesses(_ n: Int) throws -> [Process] {
        try (0..<n).map { _ in
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/bin/sh")
            p.arguments = ["-c", "while :; do :; done"]
            try p.run()
            return p
        }
    }

    func stop(_ ps: [Process]) {
        for p in ps { p.terminate() }
        for p in ps { p.waitUntilExit() }
    }

    /// Other processes' CPU use is seen as such; this process's own work is not counted.
    func testHostLoadCountsOtherProcessesNotThisOne() throws {
        guard HostLoadSample.now() != nil, let allowed = HostLoadSample.allowedCPUs() else { throw XCTSkip("no /proc on this host") }
        let cpus = allowed.count
        let busy = try busyProcesses(cpus)
        usleep(200_000)
        let loaded = HostLoadSample.measureOthers(seconds: 1.0)
        stop(busy)
        XCTAssertGreaterThan(loaded ?? 0, 0.6, "\(cpus) busy processes on \(cpus) CPUs")
        // Spinning in this process for a second is not someone else's load.
        let a = try XCTUnwrap(HostLoadSample.now())
        let t0 = Date()
        var x = 0.0
        while Date().timeIntervalSince(t0) < 1.0 { x += sin(x + 1) }
        let b = try XCTUnwrap(HostLoadSample.now())
        // About 100 ticks of a second's spinning are this process's (what is subtracted from the busy time).
        XCTAssertGreaterThan(b.own - a.own, 50, "own CPU time counted (\(x))")
    }

    /// The winner must beat the device default by more than the rounds' spread (and 2 %);
    /// otherwise the default is kept.
    func testChooseKeepsTheDefaultUnlessTheLeadExceedsTheNoise() throws {
        let base = KernelConfig.cpu
        var other = base
        other.gemmRowsPerItem = base.gemmRowsPerItem == 5 ? 6 : 5
        func m(_ c: KernelConfig, _ rounds: [Double]) -> Tuner.Measured {
            Tuner.Measured(config: c, gflops: rounds.max(), perShape: [], rejected: nil, rounds: rounds)
        }
        // Steady rounds, a 10 % lead: the candidate wins.
        var r = try XCTUnwrap(Tuner.choose([m(other, [110, 109, 110]), m(base, [100, 99, 100])], default: base))
        XCTAssertEqual(r.winner.config, other)
        XCTAssertEqual(r.spread, 0.01, accuracy: 1e-12)
        // The same lead with both candidates' rounds spread 30 % and more (a load came and went): the default stays.
        r = try XCTUnwrap(Tuner.choose([m(other, [110, 77, 90]), m(base, [100, 65, 90])], default: base))
        XCTAssertEqual(r.winner.config, base)
        XCTAssertEqual(r.spread, 0.35, accuracy: 1e-12)
        // One steady candidate bounds the noise: the 10 % lead over a steady default counts.
        r = try XCTUnwrap(Tuner.choose([m(other, [110, 77, 90]), m(base, [100, 95, 99])], default: base))
        XCTAssertEqual(r.winner.config, other)
        // A lead under 3 % never displaces the default.
        r = try XCTUnwrap(Tuner.choose([m(other, [102.5]), m(base, [100])], default: base))
        XCTAssertEqual(r.winner.config, base)
        // The default slower by far: the candidate wins whatever the spread.
        r = try XCTUnwrap(Tuner.choose([m(other, [200, 150]), m(base, [100, 98])], default: base))
        XCTAssertEqual(r.winner.config, other)
        // Without the default in the set: the fastest.
        r = try XCTUnwrap(Tuner.choose([m(base, [1]), m(other, [3])], default: KernelConfig.gpu))
        XCTAssertEqual(r.winner.config, other)
        XCTAssertNil(Tuner.choose([], default: base))
    }

    /// What the automatic check does with a cached entry, branch by branch (the tunes it leads
    /// to run in testStaleSourceHashRetunes).
    func testCachedTuneCheckDecisions() throws {
        let key = TuningKey(device: "dev", driver: "1", sourceHash: TuningKey.currentSourceHash)
        var e = entry(key: key, config: KernelConfig.cpu)
        e.mode = "quick"
        e.othersLoad = 0.02
        e.spread = 0.03
        let path = "/c/tuning.json"
        func decide(_ e: TuningEntry, load: Double?, retime: Double) -> KernelConfig.CachedTuneDecision {
            KernelConfig.checkCachedTune(e, cachePath: path, hostLoad: { load }) { retime }
        }
        XCTAssertEqual(decide(e, load: 0, retime: 40), .confirm, "42 recorded, 40 now: reproduced")
        XCTAssertEqual(decide(e, load: nil, retime: 50), .confirm, "no load figure (not Linux): the speed alone decides")
        XCTAssertEqual(decide(e, load: 0, retime: 20),
                       .retune("lora-gpu: the cached kernel tuning \(e.config) was recorded at 42.0 GFLOP/s and re-times at 20.0: tuning again"))
        XCTAssertEqual(decide(e, load: 0, retime: 80),
                       .retune("lora-gpu: the cached kernel tuning \(e.config) was recorded at 42.0 GFLOP/s and re-times at 80.0: tuning again"),
                       "faster now than recorded: the record was taken under a load the probe missed")
        XCTAssertEqual(decide(e, load: 0.5, retime: 1), .keep, "a busy host postpones the check")
        var retimed = false
        XCTAssertEqual(KernelConfig.checkCachedTune(e, cachePath: path, hostLoad: { 0 }) {
            struct Broken: Error, CustomStringConvertible { var description = "parity: boom" }
            retimed = true
            throw Broken()
        }, .retune("lora-gpu: the cached kernel tuning \(e.config) failed its check (parity: boom): tuning again"))
        XCTAssertTrue(retimed)
        var loaded = e
        loaded.othersLoad = 0.62
        XCTAssertEqual(decide(loaded, load: 0.01, retime: 42),
                       .retune("lora-gpu: the cached kernel tuning for dev was measured under load (other processes used 62 % of the CPUs, "
                               + "the timing rounds spread 3 %): tuning again"))
        var unsteady = e
        unsteady.spread = 0.4
        XCTAssertFalse(unsteady.measuredUnderLoad, "with the load known, the rounds' own noise does not decide")
        unsteady.othersLoad = nil
        XCTAssertFalse(unsteady.measuredUnderLoad)
        unsteady.spread = 0.6
        XCTAssertTrue(unsteady.measuredUnderLoad, "no load figure: rounds spread 60 % count as disturbed")
        XCTAssertEqual(decide(unsteady, load: nil, retime: 42), .retune(
            "lora-gpu: the cached kernel tuning for dev was measured under load (the timing rounds spread 60 %): tuning again"))
        XCTAssertEqual(decide(loaded, load: 0.3, retime: 42), .keep, "still busy: wait")
        var confirmed = loaded
        confirmed.confirmed = true
        XCTAssertEqual(KernelConfig.checkCachedTune(confirmed, cachePath: path, hostLoad: { XCTFail("probed"); return 0 }) {
            XCTFail("re-timed"); return 0
        }, .keep, "a confirmed entry is not checked again")
        var full = loaded
        full.mode = "full"
        XCTAssertEqual(decide(full, load: 0, retime: 1),
                       .report("lora-gpu: the kernel tuning in /c/tuning.json was measured under load (other processes used 62 % of the CPUs, "
                               + "the timing rounds spread 3 %); run `lora-gpu tune --force` on an idle machine"))
        full.othersLoad = 0.01
        XCTAssertEqual(decide(full, load: 0, retime: 1), .keep, "a full tune taken on an idle host is not re-timed")
        var old = e
        old.othersLoad = nil
        old.spread = nil
        XCTAssertFalse(old.measuredUnderLoad, "entries from before the load was recorded are checked by speed")
        XCTAssertEqual(old.loadDescription, "no load figures recorded")
    }
}
