import Foundation
import LoraBase
import OpenCLRuntime

/// A linear layer to tune for: W (out, in), used `count` times per model layer.
public struct TuningLinear: Sendable, Equatable {
    public var name: String
    public var inFeatures: Int
    public var outFeatures: Int
    public var count: Int
    public init(_ name: String, in i: Int, out o: Int, count: Int = 1) {
        self.name = name
        inFeatures = i
        outFeatures = o
        self.count = count
    }
}

/// One timed product: C (M,N) = A (M,K) · op(B) with op(B) packed, `count`
/// times per layer (its weight in the score).
public struct TuningProduct: Sendable, Equatable {
    public var name: String
    public var m, n, k: Int
    public var count: Int
    public var flops: Double { 2.0 * Double(m) * Double(n) * Double(k) }
    public var label: String { "\(name) \(m)x\(n)x\(k)" }
}

/// Searches `KernelConfig` on one device, in the manner of CLBlast's tuner:
/// every candidate's program is built, checked against a float64 reference on
/// awkward shapes (NaN-poisoned outputs, every transpose form), and only then
/// timed (median of several runs after warm-up) on the products of the given
/// linear layers; the fastest aggregate GFLOP/s wins.
///
/// Stages: `gemm_packed`'s GEMM_MR over `rows` at the device default's local
/// size; the local sizes for the two best MRs (quick: two local sizes for the
/// best MR); `gemm_tiled`'s tiles where the search includes it (GPUs, or
/// `tiled: true`); a playoff of the three best and the default timed together,
/// which decides (quick: the best MR at each quick local size and the best
/// tile); `pack_b`'s local size for the winner (full search only); `gemm_packed`'s
/// bands (`band`) for the winner, timed on the products plus a vocabulary-wide
/// lm_head; attention's tile heights. Row-reduction and elementwise local sizes are
/// not searched (pocl CPU: one thread per work-group, so they do not matter
/// there); they stay at the device default.
public final class Tuner {
    public let device: Device
    public let quick: Bool
    public let tokens: Int
    public let products: [TuningProduct]
    /// The linear layers the products come from (the per-format stage times their forward products alone).
    public let linears: [TuningLinear]
    /// Whether `gemm_tiled` is searched beside `gemm_packed` (default: on GPUs and other non-CPU devices).
    public let tiled: Bool
    /// The lm_head (hidden → vocabulary) and the layer count the band stage weighs
    /// it against (default: the standard model, SmolLM2-135M: 576 → 49152, 30 layers).
    public let lmHead: (hidden: Int, vocab: Int, layers: Int)
    let runs: Int
    let warmup: Int
    /// Interleaved timing rounds per stage; a candidate scores its best round.
    let rounds: Int
    /// Quantized formats whose `gemm_packed` rows per work-item are searched on their own (FormatTuning.swift).
    public let formats: [WeightStorage]
    /// The timed products' inputs by shape, made once.
    private var hostValues: [String: ([Float], [Float])] = [:]
    /// The per-format stage's inputs (activations, random source blocks) by format and shape, made once.
    var formatValues: [String: ([Float], [UInt8])] = [:]
    let log: (String) -> Void

    /// `tokens`: the representative token count M of the products (default 512, quick 256).
    /// `tiled`: search `gemm_tiled` too (default: where the device is not a CPU).
    /// `lmHead`: the model's hidden size, vocabulary and layer count for the band stage.
    /// `formats`: quantized formats to search `gemm_packed`'s rows per work-item for, each on its own.
    public init(device: Device, linears: [TuningLinear], quick: Bool, tokens: Int? = nil,
                runs: Int? = nil, tiled: Bool? = nil, lmHead: (hidden: Int, vocab: Int, layers: Int)? = nil,
                formats: [WeightStorage] = [], log: @escaping (String) -> Void = { _ in }) {
        self.formats = formats.filter(\.isQuantized)
        self.device = device
        self.lmHead = lmHead ?? (576, 49152, 30)
        self.quick = quick
        self.tiled = tiled ?? Self.searchesTiled(device)
        self.tokens = max(tokens ?? (quick ? 256 : 512), 1)
        self.products = Self.products(linears, tokens: self.tokens)
        self.linears = linears
        self.runs = max(runs ?? (quick ? 3 : 5), 1)
        warmup = quick ? 1 : 2
        rounds = quick ? 2 : 3
        self.log = log
    }

    /// The projections of a small Llama (hidden 576, intermediate 1536, 9/3
    /// heads of 64: SmolLM2-135M's), per layer; the full set adds the bench's
    /// 2048×2048 weight.
    public static func standardLinears(quick: Bool) -> [TuningLinear] {
        var l = [TuningLinear("q_proj/o_proj", in: 576, out: 576, count: 2),
                 TuningLinear("k_proj/v_proj", in: 576, out: 192, count: 2),
                 TuningLinear("gate_proj/up_proj", in: 576, out: 1536, count: 2),
                 TuningLinear("down_proj", in: 1536, out: 576, count: 1)]
        if !quick { l.append(TuningLinear("2048x2048", in: 2048, out: 2048, count: 1)) }
        return l
    }

    /// Forward x·Wᵀ (M = tokens, K = in, N = out) and the input gradient dY·W
    /// (K = out, N = in) of each linear; equal shapes are merged, counts summed.
    public static func products(_ linears: [TuningLinear], tokens: Int) -> [TuningProduct] {
        var out: [TuningProduct] = []
        func add(_ name: String, _ m: Int, _ n: Int, _ k: Int, _ count: Int) {
            guard m >= 1, n >= 1, k >= 1, count >= 1 else { return }
            if let i = out.firstIndex(where: { $0.m == m && $0.n == n && $0.k == k }) {
                out[i].count += count
            } else {
                out.append(TuningProduct(name: name, m: m, n: n, k: k, count: count))
            }
        }
        for l in linears { add("\(l.name) x·Wᵀ", tokens, l.outFeatures, l.inFeatures, l.count) }
        for l in linears { add("\(l.name) dY·W", tokens, l.inFeatures, l.outFeatures, l.count) }
        return out
    }

    /// The values searched on `device`.
    public struct SearchSpace: Sendable {
        public var rowsPerItem: [Int]
        public var gemmLocals: [(Int, Int)]
        public var packLocals: [Int]
        /// `gemm_tiled`'s tiles (empty where the tiled variant is not searched).
        public var tiles: [GemmTile] = []
        /// Attention tile heights (ATT_MQ, ATT_MK), each searched on its own.
        public var attentionRows: [Int] = []
        /// `gemm_packed`'s row groups per band (0: none), searched on the products plus an lm_head.
        public var bands: [Int] = []
    }

    /// Whether the tuner searches `gemm_tiled` on `device` by default: on
    /// every device that is not a CPU (pocl on a CPU runs its barriers as
    /// loops over the work-items), unless LORA_GPU_TUNE_TILED is 1 (also on a
    /// CPU, e.g. to check the search on pocl) or 0 (never). `tiled:` arguments
    /// override both.
    public static func searchesTiled(_ device: Device,
                                     environment: [String: String] = ProcessInfo.processInfo.environment) -> Bool {
        switch environment[tiledEnvironmentVariable]?.lowercased() {
        case "1", "true", "on", "yes": return true
        case "0", "false", "off", "no": return false
        default: return device.kind != .cpu
        }
    }

    public static let tiledEnvironmentVariable = "LORA_GPU_TUNE_TILED"

    /// The tiles of `gemm_tiled` the tuner may try, before the device's limits
    /// filter them: 256 work-items each (16 × 16) of 2×2 to 8×8 outputs,
    /// 8- to 32-deep steps, 5–19 KB of __local memory.
    public static func tiledTiles(quick: Bool) -> [GemmTile] {
        let t = { (tm: Int, tn: Int, tk: Int, wm: Int, wn: Int) in GemmTile(tm: tm, tn: tn, tk: tk, wm: wm, wn: wn) }
        if quick { return [GemmChoice.defaultTile, t(128, 64, 16, 8, 4)] }
        return [GemmChoice.defaultTile, t(128, 64, 16, 8, 4), t(64, 128, 16, 4, 8), t(128, 128, 8, 8, 8),
                t(64, 64, 32, 4, 4), t(32, 64, 16, 2, 4), t(32, 32, 16, 2, 2)]
    }

    public static func searchSpace(for device: Device, quick: Bool, tiled: Bool? = nil) -> SearchSpace {
        let limit = device.maxWorkGroupSize > 0 ? device.maxWorkGroupSize : Int.max
        var s: SearchSpace
        if device.kind == .cpu {
            // 16 vector registers (AVX2) hold about 3–6 float16 rows (two
            // registers each) beside the B row; 32 (AVX-512) about 8–12.
            s = SearchSpace(rowsPerItem: quick ? [3, 4, 5, 6, 8] : Array(1...12),
                            gemmLocals: quick ? [(1, 8), (2, 4)] : [(1, 1), (1, 2), (1, 4), (1, 8), (2, 2), (2, 4), (4, 1)],
                            packLocals: [16, 64, 256])
        } else {
            s = SearchSpace(rowsPerItem: quick ? [2, 4, 8] : [1, 2, 3, 4, 6, 8],
                            gemmLocals: quick ? [(8, 8), (16, 8)] : [(16, 4), (8, 8), (16, 8), (32, 4), (16, 16), (64, 4)],
                            packLocals: [16, 64, 128])
        }
        s.gemmLocals = s.gemmLocals.filter { $0.0 * $0.1 <= limit }
        s.packLocals = s.packLocals.filter { $0 <= limit }
        if tiled ?? searchesTiled(device) {
            s.tiles = tiledTiles(quick: quick).filter { GemmChoice(variant: .tiled, tile: $0).fits(device) }
        }
        s.attentionRows = quick ? [4, 6] : device.kind == .cpu ? [1, 2, 3, 4, 6, 8] : [1, 2, 4, 8]
        s.bands = quick ? [0, 16] : [0, 4, 8, 16, 32]
        return s
    }

    /// Every parameter value the tuner may choose on `device`, each in at least
    /// one config (the rest at the device default): what the parity tests run.
    /// `gemm_packed`'s values run as packed, each tile as tiled; `tiled: true`
    /// adds the tiles on a CPU too.
    public static func parameterSets(for device: Device, tiled: Bool? = nil) -> [KernelConfig] {
        let base = KernelConfig.deviceDefault(device)
        let s = searchSpace(for: device, quick: false, tiled: tiled)
        var packed = base
        packed.gemm.variant = .packed
        var out: [KernelConfig] = []
        func add(_ c: KernelConfig) { if !out.contains(c) { out.append(c) } }
        for mr in s.rowsPerItem { var c = packed; c.gemmRowsPerItem = mr; add(c) }
        for l in s.gemmLocals { var c = packed; c.gemmLocal = l; add(c) }
        for p in s.packLocals { var c = base; c.packLocal = p; add(c) }
        for t in s.tiles { var c = base; c.gemm = GemmChoice(variant: .tiled, tile: t); add(c) }
        for n in s.attentionRows { var c = base; c.attentionQueryRows = n; c.attentionKeyRows = n; add(c) }
        for b in s.bands { var c = packed; c.gemmBand = b; add(c) }
        return out
    }

    // MARK: the search

    struct Measured {
        let config: KernelConfig
        let gflops: Double?
        let perShape: [Double]
        let rejected: String?
        /// The aggregate GFLOP/s of each interleaved round (`gflops` is the best).
        var rounds: [Double] = []
        /// (best − worst) / best over the rounds: how steady the timing was.
        var spread: Double {
            guard let hi = rounds.max(), let lo = rounds.min(), hi > 0 else { return 0 }
            return (hi - lo) / hi
        }
    }

    /// The winner among candidates timed together: the fastest, but the device default only
    /// yields to it when the lead exceeds the noise of a best-of-rounds figure — half the smaller
    /// of the two candidates' round spreads, at least 3 % — so a choice made while the host was
    /// unsteady keeps the default instead of caching a chance winner (an idle pocl host's rounds
    /// already spread 10–30 %, so a whole spread as margin would keep the default almost always).
    /// Returns the winner and the set's largest spread.
    static func choose(_ pool: [Measured], default base: KernelConfig) -> (winner: Measured, spread: Double)? {
        let timed = pool.filter { $0.gflops != nil }.sorted { $0.gflops! > $1.gflops! }
        guard let top = timed.first else { return nil }
        let spread = timed.map(\.spread).max() ?? 0
        if let d = timed.first(where: { $0.config == base }), d.config != top.config {
            let noise = max(min(top.spread, d.spread) / 2, 0.03)
            if top.gflops! <= d.gflops! * (1 + noise) { return (d, spread) }
        }
        return (top, spread)
    }

    /// Runs the search and returns the cache entry (not yet stored).
    public func run() throws -> TuningEntry {
        let base = KernelConfig.deviceDefault(device)
        let space = Self.searchSpace(for: device, quick: quick, tiled: tiled)
        log("tuning \(device.name) (\(device.driverVersion)), \(quick ? "quick" : "full") search"
            + (space.tiles.isEmpty ? "" : " (gemm_packed and \(space.tiles.count) gemm_tiled tiles)") + ", \(tokens) tokens, "
            + "\(products.count) products, median of \(runs) after \(warmup) warm-up, best of \(rounds) interleaved rounds")
        var measured: [Measured] = []
        let loadAtStart = HostLoadSample.now()
        /// Builds and checks the new candidates, then times them in
        /// interleaved rounds (so a load change on a shared host hits all of
        /// them alike); a candidate's score is its best round.
        func evaluate(_ configs: [KernelConfig], again: Bool = false, rounds: Int = rounds) {
            var fresh: [KernelConfig] = []
            for c in configs where (again || !measured.contains(where: { $0.config == c })) && !fresh.contains(c) { fresh.append(c) }
            measured.removeAll { fresh.contains($0.config) }
            var ready: [(KernelConfig, ComputeContext)] = []
            for c in fresh {
                switch prepare(c) {
                case .success(let ctx): ready.append((c, ctx))
                case .failure(let reason):
                    measured.append(Measured(config: c, gflops: nil, perShape: [], rejected: reason.description))
                    log("  \(c.spec)  rejected: \(reason)")
                }
            }
            var best: [Int: (Double, [Double])] = [:]
            var roundRates: [Int: [Double]] = [:]
            var failed: [Int: String] = [:]
            // OpenBLAS's and pocl's worker threads keep spinning for a while
            // after a call (Benchmarks/NOTES.md): let them settle before timing.
            usleep(quick ? 100_000 : 300_000)
            for _ in 0..<rounds {
                for (i, (_, ctx)) in ready.enumerated() where failed[i] == nil {
                    do {
                        let (g, per) = try timeProducts(ctx)
                        roundRates[i, default: []].append(g)
                        if g > best[i]?.0 ?? -1 { best[i] = (g, per) }
                    } catch {
                        failed[i] = "\(error)"
                    }
                }
            }
            for (i, (c, _)) in ready.enumerated() {
                if let reason = failed[i] {
                    measured.append(Measured(config: c, gflops: nil, perShape: [], rejected: reason))
                    log("  \(c.spec)  rejected: \(reason)")
                } else if let (g, per) = best[i] {
                    let m = Measured(config: c, gflops: g, perShape: per, rejected: nil, rounds: roundRates[i] ?? [])
                    measured.append(m)
                    log(String(format: "  %@  %7.1f GFLOP/s  (rounds ±%.0f %%)",
                               c.spec.padding(toLength: max(c.spec.count, 72), withPad: " ", startingAt: 0), g, 100 * m.spread))
                }
            }
        }
        // Stage 1: gemm_packed's rows per work-item, at the default local sizes (the default itself included).
        var packedBase = base
        packedBase.gemm.variant = .packed
        var rows = space.rowsPerItem
        if !rows.contains(base.gemmRowsPerItem) { rows.append(base.gemmRowsPerItem) }
        evaluate(rows.map { mr in
            var c = packedBase
            c.gemmRowsPerItem = mr
            return c
        })
        func ranked(_ variant: GemmVariant? = nil) -> [Measured] {
            measured.filter { $0.gflops != nil && (variant == nil || $0.config.gemm.variant == variant) }
                .sorted { $0.gflops! > $1.gflops! }
        }
        // gemm_tiled's tiles (where searched), the rest at the default.
        if !space.tiles.isEmpty {
            log("  gemm_tiled:")
            evaluate(space.tiles.map { t in
                var c = base
                c.gemm = GemmChoice(variant: .tiled, tile: t)
                return c
            })
        }
        // Stage 2: local sizes for the two best row counts (quick: the two
        // quick local sizes for the best one, timed again beside it).
        var playoff: [String]? = nil
        if quick {
            if let top = ranked(.packed).first?.config {
                var set = [top] + space.gemmLocals.map { l -> KernelConfig in
                    var c = top
                    c.gemmLocal = l
                    return c
                }
                if let tiledTop = ranked(.tiled).first?.config { set.append(tiledTop) }
                // The default runs beside them: a winner must beat it beyond the rounds' spread.
                if !set.contains(base) { set.append(base) }
                evaluate(set, again: true, rounds: rounds + 1)
                playoff = set.map(\.spec)
            }
        } else {
            evaluate(ranked(.packed).prefix(2).flatMap { top in
                space.gemmLocals.map { l in
                    var c = top.config
                    c.gemmLocal = l
                    return c
                }
            })
            // Playoff: the stages ran at different times, and a shared host's
            // load moves in between; the three best and the default run again
            // together, and decide.
            log("  playoff:")
            let finalists = ranked().prefix(3).map(\.config) + (ranked().prefix(3).contains { $0.config == base } ? [] : [base])
            evaluate(finalists, again: true, rounds: rounds + 2)
            playoff = finalists.map(\.spec)
        }
        // Only the figures of the last set timed together compare fairly: the winner is its best.
        let pool = ranked().filter { m in playoff.map { $0.contains(m.config.spec) } ?? true }
        guard let (best, spread) = Self.choose(pool.isEmpty ? ranked() : pool, default: base) else {
            throw OpError(op: "tune", detail: "no candidate passed the parity check on \(device.name): "
                          + measured.map { "\($0.config.spec): \($0.rejected ?? "?")" }.joined(separator: "; "))
        }
        var winner = best.config
        // Stage 3: pack_b's local size, by its own bandwidth (it only moves memory).
        // pack_b is ≈ 2 % of a step: keep the current value unless another is clearly (5 %) faster.
        var packRates: [String: Double]? = nil
        if !quick {
            packRates = searchOne(space.packLocals, in: &winner, \.packLocal, margin: 1.05,
                                  format: "  pack_b local %@: %.1f GB/s", settle: 300_000) { try self.timePack($0) }
        }
        // Stage 4: gemm_packed's bands, on the products and a vocabulary-wide lm_head (where a
        // panel set far larger than the caches is read once per row group without bands),
        // weighed as in a step: the per-layer products × the layer count, the lm_head once.
        // Quick: the lm_head at 64 rows (many row groups are not needed to see a band's effect,
        // and the automatic tune stays a few seconds). Keep the current band unless another is
        // clearly (3 %) faster.
        var bandRates: [String: Double]? = nil
        if winner.gemm.variant == .packed && space.bands.count > 1 {
            let layers = max(lmHead.layers, 1), headRows = quick ? min(tokens, 64) : tokens
            // A shorter lm_head counts tokens / headRows times: its share of a step's work at `tokens` rows.
            let bandProducts = products.map { p -> TuningProduct in var q = p; q.count *= layers; return q }
                + Self.products([TuningLinear("lm_head", in: lmHead.hidden, out: lmHead.vocab, count: max(tokens / headRows, 1))],
                                tokens: headRows)
            bandRates = searchOne(space.bands, in: &winner, \.gemmBand, margin: 1.03, format: "  band %@: %.1f GFLOP/s",
                                  settle: quick ? 100_000 : 300_000) { try self.timeProducts($0, bandProducts).0 }
        }
        // Stage 5: attention's tile heights, on attention itself (AttentionTuning.swift).
        let attentionRates = tuneAttention(&winner, space: space.attentionRows)
        // Stage 6: gemm_packed's rows per work-item for each quantized format asked (FormatTuning.swift).
        let formatRates = tuneFormats(&winner, space: space)
        let def = measured.first { $0.config == base }
        // The final config (band and attention stages included) timed on its own, as the automatic
        // check re-times it (`retime`): the figure a later run compares with.
        let finalRate = try? retime(winner)
        let fmt = ISO8601DateFormatter()
        fmt.formatOptions = [.withInternetDateTime]
        return TuningEntry(
            key: TuningKey(device: device), config: winner.spec, gflops: best.gflops ?? 0,
            defaultConfig: base.spec, defaultGflops: def?.gflops, mode: quick ? "quick" : "full",
            date: fmt.string(from: Date()), tokens: tokens, shapes: products.map(\.label), packGBps: packRates,
            candidates: measured.map {
                TuningCandidate(config: $0.config.spec, gflops: $0.gflops, perShape: $0.perShape, rejected: $0.rejected)
            }, playoff: playoff, attentionGflops: attentionRates, bandGflops: bandRates,
            othersLoad: loadAtStart.flatMap { a in HostLoadSample.now().flatMap { a.othersLoad(until: $0) } },
            spread: spread, finalGflops: finalRate, formatGflops: formatRates)
    }

    /// The aggregate GFLOP/s of `config` on this tuner's products now (built and checked as a
    /// candidate; best of the interleaved rounds): how the automatic tune checks that a cached
    /// figure is reproduced.
    public func retime(_ config: KernelConfig) throws -> Double {
        let ctx: ComputeContext
        switch prepare(config) {
        case .success(let c): ctx = c
        case .failure(let reason): throw OpError(op: "tune", detail: "\(config.spec): \(reason)")
        }
        usleep(quick ? 100_000 : 300_000)
        var best = 0.0
        for _ in 0..<rounds { best = max(best, try timeProducts(ctx).0) }
        return best
    }

    /// Builds one candidate's program and runs the parity check on it.
    func prepare(_ c: KernelConfig) -> Result<ComputeContext, TuneRejection> {
        guard c.fits(device) else { return .failure(TuneRejection("local size exceeds the device's work-group limit")) }
        do {
            let ctx = try ComputeContext(device: device, config: c, origin: "tuner", kernelFiles: ["matmul.cl", "matmul_tiled.cl"])
            if let failure = try Self.parityFailure(ctx) { return .failure(TuneRejection("parity: " + failure)) }
            return .success(ctx)
        } catch {
            return .failure(TuneRejection("\(error)"))
        }
    }

    /// Aggregate GFLOP/s (Σ count·flops / Σ count·time) over the products and
    /// each product's GFLOP/s; each time is a median of `runs` after warm-up.
    /// One parameter of `winner` searched on its own, the rest kept: each value's
    /// program built and checked (`prepare`; a rejection is logged), timed by
    /// `rate` in interleaved rounds after `settle` µs (a value scores its best
    /// round), each rate logged with `format`; the winner's value is replaced
    /// only by one at least `margin` times as fast. Returns the rates by value.
    func searchOne(_ values: [Int], in winner: inout KernelConfig, _ key: WritableKeyPath<KernelConfig, Int>,
                   margin: Double, format: String, settle: useconds_t,
                   rate: (ComputeContext) throws -> Double) -> [String: Double] {
        var ready: [(Int, ComputeContext)] = []
        for v in values {
            var c = winner
            c[keyPath: key] = v
            switch prepare(c) {
            case .success(let ctx): ready.append((v, ctx))
            case .failure(let reason): log("  \(c.spec)  rejected: \(reason)")
            }
        }
        var rates: [String: Double] = [:]
        usleep(settle)
        for _ in 0..<rounds {
            for (v, ctx) in ready {
                if let r = try? rate(ctx) { rates["\(v)"] = max(rates["\(v)"] ?? 0, r) }
            }
        }
        for (v, r) in rates.sorted(by: { Int($0.key)! < Int($1.key)! }) { log(String(format: format, v, r)) }
        let current = rates["\(winner[keyPath: key])"] ?? 0
        if let best = rates.max(by: { $0.value < $1.value }), let v = Int(best.key), best.value > margin * current {
            winner[keyPath: key] = v
        }
        return rates
    }

    func timeProducts(_ ctx: ComputeContext, _ set: [TuningProduct]? = nil) throws -> (Double, [Double]) {
        var rng = SplitMix64(seed: 0x5eed)
        var totalFlops = 0.0, totalTime = 0.0
        var per: [Double] = []
        for p in set ?? products {
            // Host values made once per shape and kept (the band stage's lm_head is 28 M floats).
            let key = "\(p.m)x\(p.n)x\(p.k)"
            if hostValues[key] == nil { hostValues[key] = (rng.signedUnits(p.m * p.k), rng.signedUnits(p.k * p.n)) }
            let (av, bv) = hostValues[key]!
            let a = try ctx.buffer(av), b = try ctx.buffer(bv)
            let cbuf = try ctx.buffer(count: p.m * p.n)
            let packed = try ctx.pack(b, k: p.k, n: p.n, .none)
            let t = try time(ctx) { try ctx.matmul(cbuf, a, packed: packed, m: p.m) }
            per.append(p.flops / t / 1e9)
            totalFlops += p.flops * Double(p.count)
            totalTime += t * Double(p.count)
        }
        return (totalFlops / totalTime / 1e9, per)
    }

    /// pack_b GB/s (read + write) on the largest activation (tokens × widest input).
    func timePack(_ ctx: ComputeContext) throws -> Double {
        let widest = products.map(\.k).max() ?? 1
        var rng = SplitMix64(seed: 0x9ac)
        let (k, n) = (tokens, widest)
        let b = try ctx.buffer(rng.signedUnits(k * n))
        let dest = try ctx.buffer(count: (n + 15) / 16 * 16 * k)
        let t = try time(ctx) { _ = try ctx.pack(b, k: k, n: n, .none, into: dest) }
        return 8.0 * Double(k * n) / t / 1e9
    }

    func time(_ ctx: ComputeContext, _ body: () throws -> Void) throws -> Double {
        max(try ctx.time(DeviceTimer(warmup: warmup, runs: runs), body), 1e-9)
    }
}

struct TuneRejection: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}
