import Foundation
import LoraBase
import OpenCLRuntime
import Reference

// The tuner's per-format stage (issue 18): `gemm_packed` over quantized panels dequantizes each
// block in registers, beside the MR rows of float16 accumulators, so the row count that is fastest
// for fp32 panels need not be for Q4_0 or Q6_K. For each format asked, the stage builds the winner
// with GEMM_MR_<FORMAT> set to each candidate count, checks the format's kernel against float64
// (on the values the panels hold), times the forward products x·Wᵀ over random blocks of that format,
// and keeps a count other than the shared one only when it is clearly (3 %) faster.

extension WeightStorage {
    /// Random source blocks (ggml's layout; NF4's) for W (rows, cols), `cols` a multiple of the block
    /// size: random quant bytes, scales and mins finite halves of a weight-like size (NF4: an fp32 absmax).
    public static func randomSourceBlocks(_ storage: WeightStorage, rows: Int, cols: Int, rng: inout SplitMix64) -> [UInt8] {
        precondition(storage.isQuantized && cols % storage.quantBlockRows == 0, "random blocks of \(storage) for \(cols) columns")
        let (be, bb) = (storage.quantBlockRows, storage.sourceBlockBytes)
        var out = [UInt8](repeating: 0, count: rows * cols / be * bb)
        for b in 0..<(rows * cols / be) {
            for j in 0..<bb { out[b * bb + j] = UInt8(truncatingIfNeeded: rng.next()) }
            func half(_ at: Int, _ v: Float) {
                let bits = Float16(v).bitPattern
                out[b * bb + at] = UInt8(bits & 0xFF)
                out[b * bb + at + 1] = UInt8(bits >> 8)
            }
            func u(_ scale: Double, _ shift: Double) -> Float { Float(Double(rng.next() % 20001) * scale - shift) }
            switch storage {
            case .nf4:
                let a = u(1e-4, 0)
                withUnsafeBytes(of: a.bitPattern.littleEndian) { for j in 0..<4 { out[b * bb + j] = $0[j] } }
            case .q4_k, .q5_k:   // d, dmin; the 6-bit scales and mins stay random
                half(0, u(1e-6, 0.01))
                half(2, u(1e-6, 0))
            case .q6_k:          // d after the quants and the int8 scales
                half(208, u(1e-6, 0.01))
            case .q4_1, .q5_1:
                half(0, u(1e-5, 0.1))
                half(2, u(1e-4, 1))
            default:
                half(0, u(1e-5, 0.1))
            }
        }
        return out
    }
}

extension Tuner {
    /// The row counts tried per format: the quick set of the device (and the shared winner's count).
    static func formatRows(_ space: SearchSpace, device: Device, quick: Bool, winner: Int) -> [Int] {
        let base = device.kind == .cpu ? (quick ? [3, 4, 6] : [2, 3, 4, 5, 6, 8]) : (quick ? [2, 4] : [1, 2, 4, 8])
        return ([winner] + base).reduce(into: [Int]()) { if !$0.contains($1) { $0.append($1) } }
    }

    /// The forward products x·Wᵀ of the tuning linears for panels of `storage` (the backward's dY·W reads fp32
    /// panels whatever the storage: not timed here), weighted by their count per layer; K rounded up to the
    /// format's block size where a linear's input is not a whole number of blocks (a K-quant's 256).
    func formatProducts(_ storage: WeightStorage) -> [TuningProduct] {
        let qk = storage.quantBlockRows
        var out: [TuningProduct] = []
        for l in linears {
            let k = (l.inFeatures + qk - 1) / qk * qk
            if let i = out.firstIndex(where: { $0.n == l.outFeatures && $0.k == k }) { out[i].count += l.count; continue }
            out.append(TuningProduct(name: "\(l.name) x·Wᵀ", m: tokens, n: l.outFeatures, k: k, count: l.count))
        }
        return out
    }

    /// nil when `ctx`'s `gemm_packed` over panels of `storage` equals float64 on the values the panels
    /// hold (read back by `panel_rows`, itself checked against gguf-py by the test suite): awkward row
    /// counts, M not a multiple of any MR, NaN-poisoned outputs, a bias.
    /// `rows`: the products' largest M (the staged path runs from `KernelConfig.quantStageMinRows` rows).
    static func formatParityFailure(_ ctx: ComputeContext, _ storage: WeightStorage, rows: Int = 29) throws -> String? {
        var rng = SplitMix64(seed: 0xf0e7)
        let qk = storage.quantBlockRows
        for (m, n, k) in [(1, 17, qk), (13, 37, 2 * qk), (rows, 16, qk), (rows, 53, qk)] {
            let blocks = WeightStorage.randomSourceBlocks(storage, rows: n, cols: k, rng: &rng)
            let packed = try ctx.packQuantized(try DeviceBuffer<UInt8>(queue: ctx.queue, blocks), storage: storage, rows: n, cols: k)
            let held = try ctx.buffer(count: n * k)
            try ctx.panelRows(out: held, packed: packed, ids: nil, rows: n)
            let w = try held.read()
            let x = rng.signedUnits(m * k), bias = rng.signedUnits(n)
            let y = try ctx.buffer(count: m * n)
            try y.fill(.nan)
            try ctx.matmul(y, try ctx.buffer(x), packed: packed, m: m, bias: try ctx.buffer(bias))
            let ref = zip(Reference.matmul(x, w, m: m, n: n, k: k, transB: true), (0..<m * n).map { bias[$0 % n] })
                .map { $0 + Double($1) }
            if let e = mismatch(try y.read(), ref) { return "\(storage.rawValue) x·Wᵀ + b \(m)x\(n)x\(k): \(e)" }
        }
        return nil
    }

    /// Aggregate GFLOP/s of the forward products over random panels of `storage` (the panels made
    /// once per context and shape).
    func timeFormat(_ ctx: ComputeContext, _ storage: WeightStorage) throws -> Double {
        var totalFlops = 0.0, totalTime = 0.0
        var rng = SplitMix64(seed: 0x9f0)
        for p in formatProducts(storage) {
            let key = "\(storage.rawValue) \(p.m)x\(p.n)x\(p.k)"
            if formatValues[key] == nil {
                formatValues[key] = (rng.signedUnits(p.m * p.k),
                                     WeightStorage.randomSourceBlocks(storage, rows: p.n, cols: p.k, rng: &rng))
            }
            let (av, blocks) = formatValues[key]!
            let packed = try ctx.packQuantized(try DeviceBuffer<UInt8>(queue: ctx.queue, blocks), storage: storage, rows: p.n, cols: p.k)
            let a = try ctx.buffer(av), c = try ctx.buffer(count: p.m * p.n)
            let t = try time(ctx) { try ctx.matmul(c, a, packed: packed, m: p.m) }
            totalFlops += p.flops * Double(p.count)
            totalTime += t * Double(p.count)
        }
        return totalFlops / totalTime / 1e9
    }

    /// The per-format stage on `winner`: sets `winner.quantRowsPerItem[f]` where another count is at least
    /// 3 % faster for f than the shared `gemmRowsPerItem` (gemm_packed only: `gemm_tiled` runs every format
    /// with its one tile), then puts f in `winner.quantStaged` where the staged forward (fp32 panels made
    /// once per call) is at least 3 % faster than the in-register one at the tuning rows — both timed on the
    /// chosen count's program (staging is the context's host-side switch: no build of its own). Returns each
    /// format's GFLOP/s per count tried and for both paths ("q4_0" → "mr=4", "staged", "in registers" → …);
    /// a format none of whose candidates passed its check is left out (not tuned: its shared settings kept,
    /// with a line saying so).
    func tuneFormats(_ winner: inout KernelConfig, space: SearchSpace) -> [String: [String: Double]]? {
        guard !formats.isEmpty else { return nil }
        let packed = winner.gemm.variant == .packed
        if !packed { log("  formats: gemm_tiled runs every format with its one tile (per-format rows are gemm_packed's)") }
        var out: [String: [String: Double]] = [:]
        for storage in formats where storage.isQuantized {
            let rows = packed ? Self.formatRows(space, device: device, quick: quick, winner: winner.gemmRowsPerItem)
                : [winner.gemmRowsPerItem]
            let checkRows = max(29, KernelConfig.quantStageMinRows + 3)
            var ready: [(Int, ComputeContext)] = []
            for mr in rows {
                var c = winner
                if packed { c.quantRowsPerItem[storage] = mr }
                c.quantStaged.remove(storage)
                do {
                    let ctx = try ComputeContext(device: device, config: c, origin: "tuner",
                                                 kernelFiles: ["matmul.cl", "matmul_tiled.cl"])
                    if let failure = try Self.formatParityFailure(ctx, storage, rows: checkRows) {
                        log("  \(storage.rawValue) mr=\(mr)  rejected: parity: \(failure)")
                        continue
                    }
                    ready.append((mr, ctx))
                } catch {
                    log("  \(storage.rawValue) mr=\(mr)  rejected: \(error)")
                }
            }
            var rates: [Int: Double] = [:]
            usleep(quick ? 100_000 : 300_000)
            for _ in 0..<rounds {
                for (mr, ctx) in ready {
                    if let r = try? timeFormat(ctx, storage) { rates[mr] = max(rates[mr] ?? 0, r) }
                }
            }
            guard !rates.isEmpty else {
                log("  \(storage.rawValue): no candidate passed its check; the shared settings are kept and the format is not "
                    + "recorded as tuned (--quantize none dequantizes it at load)")
                continue
            }
            let shared = rates[winner.gemmRowsPerItem] ?? 0
            var chosen = winner.gemmRowsPerItem
            if packed, let best = rates.max(by: { $0.value < $1.value }), best.value > 1.03 * shared || shared == 0 { chosen = best.key }
            if chosen != winner.gemmRowsPerItem { winner.quantRowsPerItem[storage] = chosen }
            else { winner.quantRowsPerItem[storage] = nil }
            var record = packed ? Dictionary(uniqueKeysWithValues: rates.map { ("mr=\($0.key)", $0.value) }) : [:]
            // Staged (W dequantized once per call into fp32 panels, the fp32 gemm on them) against the chosen
            // in-register count, timed together on its program; only where the products' rows reach the threshold
            // (the parity check above ran both paths: its largest product has that many rows).
            var staged = false
            if tokens >= KernelConfig.quantStageMinRows, let ctx = ready.first(where: { $0.0 == chosen })?.1 {
                var pairRates: [Bool: Double] = [:]
                do {
                    ctx.quantStaged.insert(storage)
                    defer { ctx.quantStaged.remove(storage) }
                    if let failure = try Self.formatParityFailure(ctx, storage, rows: checkRows) {
                        log("  \(storage.rawValue) staged  rejected: parity: \(failure)")
                    } else {
                        usleep(quick ? 100_000 : 300_000)
                        for _ in 0..<rounds {
                            for isStaged in [false, true] {
                                if isStaged { ctx.quantStaged.insert(storage) } else { ctx.quantStaged.remove(storage) }
                                if let r = try? timeFormat(ctx, storage) { pairRates[isStaged] = max(pairRates[isStaged] ?? 0, r) }
                            }
                        }
                    }
                } catch {
                    log("  \(storage.rawValue) staged  rejected: \(error)")
                }
                if let s = pairRates[true], s > 1.03 * (pairRates[false] ?? 0) { staged = true }
                if let s = pairRates[true] { record["staged"] = s }
                if let r = pairRates[false] { record["in registers"] = r }
            }
            if staged { winner.quantStaged.insert(storage) } else { winner.quantStaged.remove(storage) }
            log("  \(storage.rawValue): " + (packed ? rates.sorted { $0.key < $1.key }
                .map { String(format: "mr=%d %.1f", $0.key, $0.value) }.joined(separator: ", ")
                + " GFLOP/s → mr=\(chosen)" + (chosen == winner.gemmRowsPerItem ? " (the shared count)" : "") : "gemm_tiled")
                + (record["staged"].map { String(format: "; staged fp32 panels %.1f against %.1f in registers → %@", $0,
                                                 record["in registers"] ?? 0, staged ? "staged" : "in registers") } ?? ""))
            out[storage.rawValue] = record
        }
        return out
    }
}
