import Foundation
import ReferenceBLAS
import LoraBase
import LoraModel
import LoraOps
import OpenCLRuntime
import Reference

/// One row of the `lora-gpu bench` table.
public struct BenchRow: Codable, Sendable {
    public var name: String
    public var shape: String
    public var kernelMs: Double
    /// GFLOP/s for products, GB/s for memory-bound kernels.
    public var kernelRate: Double
    public var unit: String
    public var blasMs: Double?
    public var blasRate: Double?
    /// kernel rate / OpenBLAS rate (higher is better for the kernel).
    public var ratio: Double?
}

public struct BenchReport: Codable, Sendable {
    public var device: String
    public var openblasCoretype: String
    public var runs: Int
    public var rows: [BenchRow]
    /// The kernel config's spec and the gemm kernel that ran ("gemm_tiled (tile 64x64x16, …)").
    public var kernelConfig: String?
    public var gemmKernel: String?
}

/// Times every kernel on one device after warm-up (median of `runs`), beside
/// OpenBLAS sgemm on the same shapes in the same process.
public final class KernelBench {
    let ctx: ComputeContext
    let runs: Int
    let warmup: Int
    var rng = SeededRandom(seed: 20261129)
    public internal(set) var rows: [BenchRow] = []
    let log: (String) -> Void

    public init(context: ComputeContext, runs: Int = 7, warmup: Int = 2, log: @escaping (String) -> Void) {
        ctx = context
        self.runs = max(runs, 1)
        self.warmup = warmup
        self.log = log
    }

    /// Training shapes: a 512×2048×2048 product, the projections of a small
    /// Llama (hidden 576, intermediate 1536, 3 KV heads of 64) at 1024 tokens,
    /// LoRA ranks 8, 16 and 64. `quick` uses small shapes (for smoke tests).
    /// Row groups that `only` can name.
    public static let groups = ["matmul", "frozen", "lora", "norm", "elementwise", "model", "attention", "step", "decode"]

    public func runAll(quick: Bool = false, only: Set<String>? = nil) throws -> BenchReport {
        func want(_ g: String) -> Bool { only?.contains(g) ?? true }
        let T = quick ? 64 : 1024
        let big = quick ? (64, 128, 96) : (512, 2048, 2048)
        let projections: [(String, Int, Int)] = quick
            ? [("q_proj", 96, 96), ("down_proj", 160, 96)]
            : [("q_proj", 576, 576), ("k_proj", 576, 192), ("gate_proj", 576, 1536), ("down_proj", 1536, 576)]
        if want("matmul") {
            // Forward x·Wᵀ with the frozen weight pre-packed once.
            try benchLinear("matmul NT packed (x·Wᵀ)", m: big.0, k: big.1, n: big.2)
            for (name, din, dout) in projections {
                try benchLinear("matmul NT packed \(name)", m: T, k: din, n: dout)
            }
            // Every transpose form through the general entry point (packs op(B) per call).
            for (ta, tb) in [(false, false), (false, true), (true, false)] {
                try benchMatmul(m: big.0, n: big.2, k: big.1, transA: ta, transB: tb)
            }
            try benchMatmul(m: T, n: projections[0].2, k: projections[0].1, transA: false, transB: false)
        }
        if want("frozen") {
            // Frozen linear forward and backward (dX = dY·W) per storage type; lm_head at a 256-row logits chunk.
            let shapes: [(String, Int, Int, Int)] = quick
                ? [("down_proj", T, 160, 96), ("lm_head", 32, 96, 300)]
                : [("gate_proj", T, 576, 1536), ("down_proj", T, 1536, 576), ("lm_head", 256, 576, 49152)]
            for (name, m, din, dout) in shapes { try benchFrozen(name, tokens: m, din: din, dout: dout) }
        }
        for rank in [8, 16, 64] where want("lora") {
            for (name, din, dout) in [(quick ? "q_proj" : "2048x2048", big.1, big.2)] + projections.map({ ($0.0, $0.1, $0.2) }) {
                let n = name == "2048x2048" ? big.0 : T
                try benchLoRA(name: name, tokens: n, din: din, dout: dout, rank: rank)
            }
        }
        if want("norm") { try benchRMSNorm(rows: T, cols: projections[0].1) }
        if want("elementwise") { try benchElementwise(count: T * (quick ? 160 : 1536)) }
        if want("model") { try benchModelKernels(quick: quick) }
        if want("attention") { try benchAttention(quick: quick) }
        if want("step") { try benchTrainingStep(quick: quick) }
        if want("decode") { try benchDecode(quick: quick) }
        return BenchReport(device: ctx.device.label,
                           openblasCoretype: ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] ?? "(unset)",
                           runs: runs, rows: rows, kernelConfig: ctx.config.spec, gemmKernel: ctx.gemmKernelDescription)
    }

    // MARK: timing

    /// The benchmarks' timer: settles first (see DeviceTimer).
    var timer: DeviceTimer { DeviceTimer(warmup: warmup, runs: runs, settleMicroseconds: 300_000) }

    /// Median wall time (s) of `body` + clFinish, after warm-up.
    func timeDevice(_ body: () throws -> Void) throws -> Double { try ctx.time(timer, body) }

    func timeHost(_ body: () -> Void) -> Double { try! timer.median(body, sync: {}) }  // body and sync never throw

    /// OpenBLAS time for a list of sgemm calls (m, n, k, transA, transB), on fresh host arrays.
    func blasTime(_ calls: [(Int, Int, Int, Bool, Bool)]) -> Double {
        let bufs = calls.map { (m, n, k, _, _) in
            (rng.uniform(m * k), rng.uniform(k * n), [Float](repeating: 0, count: m * n))
        }
        var cs = bufs.map { $0.2 }
        return timeHost {
            for (i, call) in calls.enumerated() {
                let (m, n, k, ta, tb) = call
                bufs[i].0.withUnsafeBufferPointer { a in
                    bufs[i].1.withUnsafeBufferPointer { b in
                        cs[i].withUnsafeMutableBufferPointer { c in
                            Reference.sgemm(a.baseAddress!, b.baseAddress!, c.baseAddress!, m: m, n: n, k: k,
                                            transA: ta, transB: tb)
                        }
                    }
                }
            }
        }
    }

    func record(_ name: String, _ shape: String, seconds: Double, flops: Double, blasSeconds: Double?) {
        let rate = flops / seconds / 1e9
        let blasRate = blasSeconds.map { flops / $0 / 1e9 }
        let row = BenchRow(name: name, shape: shape, kernelMs: seconds * 1e3, kernelRate: rate, unit: "GFLOP/s",
                           blasMs: blasSeconds.map { $0 * 1e3 }, blasRate: blasRate,
                           ratio: blasRate.map { rate / $0 })
        rows.append(row)
        log(Self.format(row))
    }

    func recordBandwidth(_ name: String, _ shape: String, seconds: Double, bytes: Double) {
        let row = BenchRow(name: name, shape: shape, kernelMs: seconds * 1e3, kernelRate: bytes / seconds / 1e9,
                           unit: "GB/s", blasMs: nil, blasRate: nil, ratio: nil)
        rows.append(row)
        log(Self.format(row))
    }

    public static var header: String {
        "kernel".padding(toLength: 34, withPad: " ", startingAt: 0) + "shape".padding(toLength: 28, withPad: " ", startingAt: 0)
            + "   ms      rate        |  BLAS ms   BLAS GFLOP/s  ratio"
    }

    public static func format(_ r: BenchRow) -> String {
        var s = r.name.padding(toLength: 34, withPad: " ", startingAt: 0)
            + r.shape.padding(toLength: 28, withPad: " ", startingAt: 0)
            + String(format: "%7.3f %7.1f %-7@", r.kernelMs, r.kernelRate, r.unit as NSString)
        if let bm = r.blasMs, let br = r.blasRate, let ratio = r.ratio {
            s += String(format: " | %8.3f %9.1f     %5.2fx", bm, br, ratio)
        }
        return s
    }

    // MARK: benches

    func benchLinear(_ name: String, m: Int, k: Int, n: Int) throws {
        let x = try ctx.buffer(rng.uniform(m * k)), w = try ctx.buffer(rng.uniform(n * k))
        let y = try ctx.buffer(count: m * n)
        let packed = try ctx.pack(w, k: k, n: n, .transposed)
        let t = try timeDevice { try ctx.matmul(y, x, packed: packed, m: m) }
        record(name, "\(m)x\(n)x\(k)", seconds: t, flops: 2.0 * Double(m * n * k),
               blasSeconds: blasTime([(m, n, k, false, true)]))
    }

    /// A frozen linear W (out, in) kept in each storage type: forward x·Wᵀ from
    /// the kept panels, backward dX = dY·W from panels made per call
    /// (`backwardPanels`: `.widened` fp32 or `.native` 16-bit; made afresh on
    /// every call, as for every layer but the chunked lm_head), beside the old
    /// layout's second fp32 copy packed as op(B) = W once.
    func benchFrozen(_ name: String, tokens m: Int, din: Int, dout: Int) throws {
        let wv = rng.uniform(dout * din, -0.05, 0.05)
        let x = try ctx.buffer(rng.uniform(m * din)), dy = try ctx.buffer(rng.uniform(m * dout))
        let y = try ctx.buffer(count: m * dout), dx = try ctx.buffer(count: m * din)
        let shape = "\(m)x\(dout)x\(din) \(name)", bshape = "\(m)x\(din)x\(dout) \(name)"
        let flops = 2.0 * Double(m * din * dout)
        let blasF = blasTime([(m, dout, din, false, true)]), blasB = blasTime([(m, din, dout, false, false)])
        let w32 = try ctx.buffer(wv)
        let old = try ctx.pack(w32, k: dout, n: din, .none)
        try ctx.finish()
        record("frozen bwd f32 2nd copy (old)", bshape, seconds: try timeDevice { try ctx.matmul(dx, dy, packed: old, m: m) },
               flops: flops, blasSeconds: blasB)
        var blockRNG = SplitMix64(seed: 0xb10c)
        for storage in WeightStorage.allCases where !storage.isQuantized || din % storage.quantBlockRows == 0 {
            let base: FrozenLinear
            if storage == .f32 {
                base = try FrozenLinear(ctx, weight: w32, outFeatures: dout, inFeatures: din)
            } else if storage.isQuantized {
                // Q8_0 / Q4_0 / NF4 quantized from W as --quantize makes them; the other block types from random blocks.
                let blocks = [.q8_0, .q4_0, .nf4].contains(storage)
                    ? wv.withUnsafeBufferPointer { QuantizedBlocks.quantize($0, storage: storage) }
                    : WeightStorage.randomSourceBlocks(storage, rows: dout, cols: din, rng: &blockRNG)
                base = FrozenLinear(forward: try ctx.packQuantized(try DeviceBuffer<UInt8>(queue: ctx.queue, blocks), storage: storage,
                                                                   rows: dout, cols: din))
            } else {
                let bits = storage == .f16 ? wv.map { Float16($0).bitPattern } : wv.map { UInt16(truncatingIfNeeded: $0.bitPattern >> 16) }
                base = try FrozenLinear(ctx, weight16: try DeviceBuffer<UInt16>(queue: ctx.queue, bits), storage: storage,
                                        outFeatures: dout, inFeatures: din)
            }
            let s = storage.rawValue
            if storage.isQuantized && m >= KernelConfig.quantStageMinRows {
                // Both forward paths on the same panels (the config's choice marked *): dequantized in registers ("reg")
                // by every row group, or staged (fp32 panels made once per call, the fp32 gemm on them).
                let chosen = ctx.quantStaged
                defer { ctx.quantStaged = chosen }
                for staged in [false, true] {
                    if staged { ctx.quantStaged.insert(storage) } else { ctx.quantStaged.remove(storage) }
                    let mark = chosen.contains(storage) == staged ? " *" : ""
                    record("frozen fwd \(s) \(staged ? "staged" : "reg mr\(ctx.config.rowsPerItem(storage))")\(mark)", shape,
                           seconds: try timeDevice { try ctx.frozenForward(y: y, x: x, base: base, tokens: m) },
                           flops: flops, blasSeconds: blasF)
                }
            } else {
                record("frozen fwd \(s)", shape, seconds: try timeDevice { try ctx.frozenForward(y: y, x: x, base: base, tokens: m) },
                       flops: flops, blasSeconds: blasF)
            }
            for mode in storage == .f32 || storage.isQuantized ? [BackwardPanels.widened] : [.widened, .native] {
                let label = storage == .f32 ? "frozen bwd f32 (transpose+gemm)" : "frozen bwd \(s) \(mode == .widened ? "→f32" : "native")"
                record(label, bshape, seconds: try timeDevice {
                    try ctx.matmul(dx, dy, packed: ctx.backwardPanels(base, mode, reuse: false), m: m)
                }, flops: flops, blasSeconds: blasB)
            }
            if storage == .bf16 {
                let t = try timeDevice { _ = try ctx.backwardPanels(base, .native, reuse: false) }
                recordBandwidth("  transpose_panels_u16 alone", "\(dout)x\(din)", seconds: t, bytes: 4.0 * Double(dout * din))
            }
        }
    }

    func benchMatmul(m: Int, n: Int, k: Int, transA: Bool, transB: Bool) throws {
        let form = (transA ? "T" : "N") + (transB ? "T" : "N")
        let a = try ctx.buffer(rng.uniform(m * k)), b = try ctx.buffer(rng.uniform(k * n))
        let c = try ctx.buffer(count: m * n)
        let t = try timeDevice {
            try ctx.matmul(c, a, b, m: m, n: n, k: k, transA: transA ? .transposed : .none,
                           transB: transB ? .transposed : .none)
        }
        record("matmul \(form) (pack op(B) + gemm)", "\(m)x\(n)x\(k)", seconds: t, flops: 2.0 * Double(m * n * k),
               blasSeconds: blasTime([(m, n, k, transA, transB)]))
    }

    func benchLoRA(name: String, tokens n: Int, din: Int, dout: Int, rank r: Int) throws {
        let lora = LoRASettings(rank: r, alpha: Float(2 * r), dropout: 0.05)
        let x = try ctx.buffer(rng.uniform(n * din)), w = try ctx.buffer(rng.uniform(dout * din, -0.05, 0.05))
        let a = try ctx.buffer(rng.uniform(r * din, -0.05, 0.05)), b = try ctx.buffer(rng.uniform(dout * r, -0.05, 0.05))
        let y = try ctx.buffer(count: n * dout), u = try ctx.buffer(count: n * r)
        let dy = try ctx.buffer(rng.uniform(n * dout)), dx = try ctx.buffer(count: n * din)
        let da = try ctx.buffer(count: r * din), db = try ctx.buffer(count: dout * r)
        let base = try FrozenLinear(ctx, weight: w, outFeatures: dout, inFeatures: din)
        let shape = "\(n)x\(dout)x\(din) r\(r)"
        let fwdFlops = 2.0 * Double(n) * (Double(din * dout) + Double(r * (din + dout)))
        let tf = try timeDevice {
            try ctx.loraForward(y: y, u: u, x: x, base: base, a: a, b: b, bias: nil, tokens: n, lora: lora, seed: 7)
        }
        // The unfused CPU composition: x·Wᵀ, u = x·Aᵀ, y += s·u·Bᵀ.
        let blasF = blasTime([(n, dout, din, false, true), (n, r, din, false, true), (n, dout, r, false, true)])
        record("lora forward (p=0.05)", shape, seconds: tf, flops: fwdFlops, blasSeconds: blasF)
        let bwdFlops = 2.0 * Double(n) * (Double(din * dout) + 2 * Double(r * dout) + 2 * Double(r * din))
        let tb = try timeDevice {
            try ctx.loraBackward(dx: dx, da: da, db: db, dbias: nil, dy: dy, x: x, u: u, base: base, a: a, b: b,
                                 tokens: n, lora: lora, seed: 7)
        }
        // g = dY·B, dB = dYᵀ·u, dA = gᵀ·x, dX = dY·W + g·A.
        let blasB = blasTime([(n, r, dout, false, false), (dout, r, n, true, false), (r, din, n, true, false),
                              (n, din, dout, false, false), (n, din, r, false, false)])
        record("lora backward (p=0.05)", shape, seconds: tb, flops: bwdFlops, blasSeconds: blasB)
    }

    func benchRMSNorm(rows n: Int, cols c: Int) throws {
        let x = try ctx.buffer(rng.uniform(n * c)), w = try ctx.buffer(rng.uniform(c))
        let y = try ctx.buffer(count: n * c), rstd = try ctx.buffer(count: n)
        let dy = try ctx.buffer(rng.uniform(n * c)), dx = try ctx.buffer(count: n * c), dw = try ctx.buffer(count: c)
        let tf = try timeDevice { try ctx.rmsnormForward(y: y, rstd: rstd, x: x, weight: w, rows: n, cols: c, eps: 1e-5) }
        let fwdElements: Int = 2 * n * c + c + n
        recordBandwidth("rmsnorm forward", "\(n)x\(c)", seconds: tf, bytes: 4.0 * Double(fwdElements))
        let tb = try timeDevice {
            try ctx.rmsnormBackward(dx: dx, dweight: dw, dy: dy, x: x, weight: w, rstd: rstd, rows: n, cols: c)
        }
        let bwdElements: Int = 5 * n * c + 2 * c + 2 * n
        recordBandwidth("rmsnorm backward (dx, dw)", "\(n)x\(c)", seconds: tb, bytes: 4.0 * Double(bwdElements))
    }

    func benchElementwise(count n: Int) throws {
        let g = try ctx.buffer(rng.uniform(n)), up = try ctx.buffer(rng.uniform(n)), d = try ctx.buffer(rng.uniform(n))
        let o1 = try ctx.buffer(count: n), o2 = try ctx.buffer(count: n)
        let t1 = try timeDevice { try ctx.siluForward(out: o1, x: g, count: n) }
        recordBandwidth("silu forward", "\(n)", seconds: t1, bytes: 8.0 * Double(n))
        let t2 = try timeDevice { try ctx.swigluForward(out: o1, gate: g, up: up, count: n) }
        recordBandwidth("swiglu forward", "\(n)", seconds: t2, bytes: 12.0 * Double(n))
        let t3 = try timeDevice { try ctx.swigluBackward(dgate: o1, dup: o2, gate: g, up: up, dout: d, count: n) }
        recordBandwidth("swiglu backward", "\(n)", seconds: t3, bytes: 20.0 * Double(n))
        let t4 = try timeDevice { try ctx.gatedForward(.geluTanh, out: o1, gate: g, up: up, count: n) }
        recordBandwidth("geglu_tanh forward", "\(n)", seconds: t4, bytes: 12.0 * Double(n))
        let t5 = try timeDevice { try ctx.gatedBackward(.geluTanh, dgate: o1, dup: o2, gate: g, up: up, dout: d, count: n) }
        recordBandwidth("geglu_tanh backward", "\(n)", seconds: t5, bytes: 20.0 * Double(n))
    }
}

extension KernelBench {
    /// Attention, RoPE, embedding, cross-entropy and AdamW at the shapes of a
    /// small Llama (9 heads over 3 KV heads of 64, vocabulary 49152) at 1024 tokens.
    func benchModelKernels(quick: Bool) throws {
        let (B, T, NH, NKV, D) = quick ? (1, 32, 4, 2, 16) : (1, 1024, 9, 3, 64)
        let V = quick ? 512 : 49152, H = quick ? 64 : 576
        let n = B * T
        let s = ComputeContext.AttentionShape(batch: B, seq: T, heads: NH, kvHeads: NKV, headDim: D)
        let q = try ctx.buffer(rng.uniform(n * NH * D)), k = try ctx.buffer(rng.uniform(n * NKV * D))
        let v = try ctx.buffer(rng.uniform(n * NKV * D)), out = try ctx.buffer(count: n * NH * D)
        let lse = try ctx.buffer(count: B * NH * T), delta = try ctx.buffer(count: B * NH * T)
        let dq = try ctx.buffer(count: n * NH * D), dk = try ctx.buffer(count: n * NKV * D), dv = try ctx.buffer(count: n * NKV * D)
        let dout = try ctx.buffer(rng.uniform(n * NH * D))
        let attnFlops = 2.0 * Double(B * NH) * Double(T * (T + 1) / 2) * Double(D) * 2
        let shape = "B\(B) T\(T) h\(NH)/\(NKV) d\(D)"
        let tf = try timeDevice { try ctx.attentionForward(out: out, lse: lse, q: q, k: k, v: v, shape: s) }
        record("attention forward (causal, GQA)", shape, seconds: tf, flops: attnFlops, blasSeconds: nil)
        let tb = try timeDevice {
            try ctx.attentionBackward(dq: dq, dk: dk, dv: dv, delta: delta, dout: dout, out: out, lse: lse, q: q, k: k, v: v, shape: s)
        }
        record("attention backward", shape, seconds: tb, flops: 2.5 * attnFlops, blasSeconds: nil)
        // The same rows packed with 4 samples of T/4 tokens each: attention stays within a sample.
        let sampleLen = T / 4
        let seg = try DeviceBuffer(queue: ctx.queue, try s.segmentStarts(sequenceIDs: (0..<n).map { ($0 % T) / sampleLen }))
        let packedFlops = 2.0 * Double(B * NH) * 4 * Double(sampleLen * (sampleLen + 1) / 2) * Double(D) * 2
        let packedShape = shape + " 4x\(sampleLen)"
        let tpf = try timeDevice {
            try ctx.attentionForward(out: out, lse: lse, q: q, k: k, v: v, shape: s, segmentStarts: seg)
        }
        record("attention forward (packed)", packedShape, seconds: tpf, flops: packedFlops, blasSeconds: nil)
        let tpb = try timeDevice {
            try ctx.attentionBackward(dq: dq, dk: dk, dv: dv, delta: delta, dout: dout, out: out, lse: lse, q: q, k: k, v: v,
                                      shape: s, segmentStarts: seg)
        }
        record("attention backward (packed)", packedShape, seconds: tpb, flops: 2.5 * packedFlops, blasSeconds: nil)

        let cfg = RopeSettings(theta: 10000, kind: .default).tables(positions: T, headDim: D)
        let cosB = try ctx.buffer(cfg.cos), sinB = try ctx.buffer(cfg.sin)
        let pos = try DeviceBuffer(queue: ctx.queue, (0..<n).map { Int32($0 % T) })
        let tr = try timeDevice {
            try ctx.rope(q, positions: pos, cos: cosB, sin: sinB, tokens: n, heads: NH, headDim: D, inverse: false)
        }
        recordBandwidth("rope", "\(n)x\(NH)x\(D)", seconds: tr, bytes: 4.0 * Double(2 * n * NH * D + n * D))
        // A fused q|k|v projection's q block split out (Phi-3's qkv_proj: NH·D of NH·D + 2·NKV·D columns).
        let fusedCols = NH * D + 2 * NKV * D
        let fused = try ctx.buffer(rng.uniform(n * fusedCols))
        let tcc = try timeDevice {
            try ctx.copyColumns(from: fused, sourceStride: fusedCols, to: q, destinationStride: NH * D, rows: n, width: NH * D)
        }
        recordBandwidth("copy columns (fused q split)", "\(n)x\(NH * D) of \(fusedCols)", seconds: tcc, bytes: 8.0 * Double(n * NH * D))

        let ids = (0..<n).map { _ in Int32.random(in: 0..<Int32(V), using: &rng) }
        let idsB = try DeviceBuffer(queue: ctx.queue, ids)
        let table = try ctx.buffer(rng.uniform(V * H)), emb = try ctx.buffer(count: n * H)
        let te = try timeDevice {
            try ctx.embeddingForward(out: emb, ids: idsB, table: table, layout: .rows(cols: H), tokens: n, cols: H)
        }
        recordBandwidth("embedding gather", "\(n)x\(H) of V\(V)", seconds: te, bytes: 8.0 * Double(n * H))
        let groups = try TokenGroups(ctx, ids: ids)
        let teb = try timeDevice {
            try ctx.embeddingBackward(dtable: table, layout: .rows(cols: H), dout: emb, groups: groups, cols: H, beta: 1)
        }
        recordBandwidth("embedding scatter-add", "\(n)x\(H) of V\(V)", seconds: teb, bytes: 12.0 * Double(n * H))

        let rows = min(256, n)
        let logits = try ctx.buffer(rng.uniform(rows * V, -4, 4)), losses = try ctx.buffer(count: n)
        let targets = try DeviceBuffer(queue: ctx.queue, (0..<n).map { _ in Int32.random(in: 0..<Int32(V), using: &rng) })
        let tc = try timeDevice {
            try ctx.crossEntropy(logits: logits, losses: losses, targets: targets, rowOffset: 0, rows: rows, vocab: V,
                                 countedTokens: n)
        }
        recordBandwidth("cross-entropy fwd+bwd (one chunk)", "\(rows)x\(V)", seconds: tc, bytes: 12.0 * Double(rows * V))
        // A classifier's pooled logits: one row per sample, a few labels (no BLAS counterpart).
        let (cr, cc) = quick ? (64, 4) : (4096, 16)
        let clsLogits = try ctx.buffer(rng.uniform(cr * cc, -4, 4)), clsTargets = try ctx.buffer(rng.uniform(cr * cc, 0, 1))
        let clsLosses = try ctx.buffer(count: cr)
        let tbce = try timeDevice {
            try ctx.realTargetLoss(.binaryCrossEntropyWithLogits, logits: clsLogits, losses: clsLosses, targets: clsTargets,
                                   rowOffset: 0, rows: cr, columns: cc, countedRows: cr)
        }
        recordBandwidth("multi-label BCE fwd+bwd", "\(cr)x\(cc)", seconds: tbce, bytes: 12.0 * Double(cr * cc))

        let P = quick ? 10_000 : 5_000_000
        let p = try ctx.buffer(rng.uniform(P)), g = try ctx.buffer(rng.uniform(P)), m = try ctx.buffer(count: P)
        let vv = try ctx.buffer(count: P), scal = try ctx.buffer(count: 2)
        let mask = try DeviceBuffer(queue: ctx.queue, [UInt8](repeating: 1, count: P))
        try m.fill(0); try vv.fill(0)
        let ta = try timeDevice {
            try ctx.sum(g, count: P, squares: true, into: scal, slot: 1)
            try ctx.adamw(params: p, grads: g, m: m, v: vv, decayMask: mask, count: P, step: 1,
                          hyper: .init(lr: 1e-4, weightDecay: 0.01, maxGradNorm: 1), gradSumSquares: scal, slot: 1)
        }
        recordBandwidth("grad norm + AdamW", "\(P) params", seconds: ta, bytes: 4.0 * Double(P) * 8)
    }

    /// A whole training step (forward, backward, AdamW) of a random-weight
    /// Llama loaded from safetensors: hidden 576, intermediate 1536, 9/3 heads,
    /// vocabulary 49152, 4 layers, LoRA r=16 on every projection, 2×512 tokens.
    func benchTrainingStep(quick: Bool) throws {
        let (H, I, L, NH, NKV, V, B, T) = quick ? (64, 96, 2, 4, 2, 512, 2, 16) : (576, 1536, 4, 9, 3, 49152, 2, 512)
        try withBenchModel(.llama, hidden: H, intermediate: I, layers: L, heads: NH, kvHeads: NKV, headDim: nil, vocab: V,
                           ropeTheta: 10000.0) { model in
            let ids = (0..<B).map { _ in (0..<T).map { _ in Int.random(in: 0..<V, using: &rng) } }
            let batch = try TokenBatch(inputIDs: ids)
            try timeStep(model, batch, name: "training step (fwd+bwd+AdamW)", shape: "L\(L) H\(H) V\(V) \(B)x\(T) r16",
                         profile: true)
            // Chat-shaped labels: the first 60 % of every row is prompt (-100), so lm_head and the
            // loss run on 40 % of the rows only.
            let chatLabels = ids.map { r in r.enumerated().map { $0.offset < r.count * 3 / 5 ? -100 : $0.element } }
            try timeStep(model, try TokenBatch(inputIDs: ids, labels: chatLabels), name: "training step (40 % trained)",
                         shape: "L\(L) H\(H) V\(V) \(B)x\(T) r16")
        }
        // The same model's frozen weights quantized at load (--quantize), against the fp32 row above (same run).
        for mode in [QuantizeMode.q8_0, .q4_0, .nf4] {
            try withBenchModel(.llama, hidden: H, intermediate: I, layers: L, heads: NH, kvHeads: NKV, headDim: nil, vocab: V,
                               ropeTheta: 10000.0, quantize: mode) { model in
                let ids = (0..<B).map { _ in (0..<T).map { _ in Int.random(in: 0..<V, using: &rng) } }
                try timeStep(model, try TokenBatch(inputIDs: ids), name: "training step, \(mode.rawValue) storage",
                             shape: "L\(L) H\(H) V\(V) \(B)x\(T) r16")
            }
        }
        try benchFamilyStep(.qwen3, quick: quick)
        try benchFamilyStep(.phi3, quick: quick)
        try benchFamilyStep(.smollm3, quick: quick)
        try benchFamilyStep(.gemma3, quick: quick)
    }

    /// A training step of a model shaped as a family's small member, 4 layers, the same vocabulary and batch as
    /// the Llama row, LoRA r=16 on every projection. Qwen3: Qwen3-0.6B's head layout (16 query heads over 8 KV
    /// heads of head_dim 128 on hidden 1024, so D·NH = 2H; per-head q/k RMSNorm). Phi-3: Phi-4-mini's (24 heads
    /// over 8 of 128 on hidden 3072 is too large for this row: hidden 1024, 8 heads over 4 of 128, partial rotary
    /// 0.75, fused qkv_proj and gate_up_proj). SmolLM3: SmolLM3-3B's head layout (16 heads over 4 of 128, hidden
    /// 2048, is too large: hidden 1024, 8 heads over 2 of 128), a NoPE layer every 4th (the 4th here). Gemma 3:
    /// Gemma-3-1B's head layout (4 heads over 1 of 256 on hidden 1152; its MLP of 6912 cut to 3072), four norms a
    /// layer, GeGLU, three sliding layers (window 256 of the 512 tokens) then a full one, q/k norms.
    func benchFamilyStep(_ arch: Architecture, quick: Bool) throws {
        let (H, I, L, NH, NKV, D, V, B, T) = quick ? (64, 96, 2, 4, 2, 32, 512, 2, 16)
            : arch == .gemma3 ? (1152, 3072, 4, 4, 1, 256, 49152, 2, 512)
            : arch == .phi3 ? (1024, 3072, 4, 8, 4, 128, 49152, 2, 512)
            : arch == .smollm3 ? (1024, 3072, 4, 8, 2, 128, 49152, 2, 512) : (1024, 3072, 4, 16, 8, 128, 49152, 2, 512)
        try withBenchModel(arch, hidden: H, intermediate: I, layers: L, heads: NH, kvHeads: NKV, headDim: D, vocab: V,
                           ropeTheta: 1000000.0) { model in
            let batch = try TokenBatch(inputIDs: (0..<B).map { _ in (0..<T).map { _ in Int.random(in: 0..<V, using: &rng) } })
            try timeStep(model, batch, name: "training step, \(arch.prefix) shape", shape: "L\(L) H\(H) \(NH)x\(D) V\(V) \(B)x\(T)")
        }
    }

    /// A random-weight bench model of `arch` written to a temporary directory and loaded with LoRA r=16 on every
    /// projection (dropout 0.05), given to `body`; the directory is removed after.
    func withBenchModel(_ arch: Architecture, hidden H: Int, intermediate I: Int, layers L: Int, heads NH: Int, kvHeads NKV: Int,
                        headDim: Int?, vocab V: Int, ropeTheta: Double, quantize: QuantizeMode = .auto,
                        _ body: (LlamaLoRAModel) throws -> Void) throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lora-gpu-bench-\(arch.traits.ggufName)-\(getpid())")
        defer { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try writeBenchModel(dir, hidden: H, intermediate: I, layers: L, heads: NH, kvHeads: NKV, vocab: V, ropeTheta: ropeTheta,
                            architecture: arch, headDim: headDim)
        let lora = LoraConfig(r: 16, loraAlpha: 32, loraDropout: 0.05, targetModules: .allLinear)
        let (config, checkpoint) = try ModelSource.open(dir.path, quantize: quantize)
        try body(try LlamaLoRAModel(config: config, checkpoint: checkpoint, lora: lora, context: ctx))
    }

    /// Where `body`'s device time goes, by kernel (event profiling): a heading made from the total milliseconds,
    /// then the `top` kernels with their time (`decimals` places), share and launches.
    func logKernelProfile(top: Int, decimals: Int, heading: (Double) -> String, _ body: () throws -> Void) throws {
        ctx.profileLaunches = true
        try body()
        ctx.profileLaunches = false
        let kernels = try ctx.takeKernelProfile()
        let total = kernels.reduce(0) { $0 + $1.seconds }
        log("  " + heading(total * 1e3) + ":")
        for p in kernels.prefix(top) {
            log("    " + p.kernel.padding(toLength: 26, withPad: " ", startingAt: 0)
                + String(format: "%8.\(decimals)f ms %5.1f%%  (%d launches)", p.seconds * 1e3, 100 * p.seconds / total, p.launches))
        }
    }

    /// One training step (forward, backward, AdamW) timed as a row; with `profile`, where its device time goes
    /// (event profiling of one more step).
    func timeStep(_ model: LlamaLoRAModel, _ batch: TokenBatch, name: String, shape: String, profile: Bool = false) throws {
        let hyper = ComputeContext.AdamWHyper(lr: 1e-4, weightDecay: 0.01, maxGradNorm: 1)
        let t = try timeDevice { _ = try model.trainStep(batch, hyper: hyper) }
        if profile {
            try logKernelProfile(top: 8, decimals: 1, heading: { "training step device time by kernel (one step, \(String(format: "%.0f", $0)) ms in kernels)" }) {
                _ = try model.trainStep(batch, hyper: hyper)
            }
        }
        let row = BenchRow(name: name, shape: shape, kernelMs: t * 1e3, kernelRate: Double(batch.tokens) / t, unit: "tokens/s",
                           blasMs: nil, blasRate: nil, ratio: nil)
        rows.append(row)
        log(Self.format(row))
    }
}

extension KernelBench {
    /// The benchmarks' small tied Llama models: config.json and random weights (U(±0.05), unit norms)
    /// in model.safetensors, drawn from the bench's generator.
    /// `architecture` Qwen3ForCausalLM adds q_norm/k_norm (unit weights over `headDim`).
    func writeBenchModel(_ dir: URL, hidden H: Int, intermediate I: Int, layers L: Int, heads NH: Int, kvHeads NKV: Int,
                         vocab V: Int, ropeTheta: Double, architecture: Architecture = .llama, headDim: Int? = nil) throws {
        var config: JSONValue = [
            "architectures": [.string(architecture.rawValue)], "hidden_size": .int(H), "intermediate_size": .int(I), "num_hidden_layers": .int(L),
            "num_attention_heads": .int(NH), "num_key_value_heads": .int(NKV), "vocab_size": .int(V), "max_position_embeddings": 2048,
            "rms_norm_eps": 1e-5, "rope_theta": .double(ropeTheta), "tie_word_embeddings": true, "hidden_act": "silu",
        ]
        let D = headDim ?? H / NH
        if let headDim, case .object(var o) = config { o["head_dim"] = .int(headDim); config = .object(o) }
        // Phi-4-mini's partial rotary: three quarters of each head rotate.
        if architecture == .phi3, case .object(var o) = config { o["partial_rotary_factor"] = 0.75; config = .object(o) }
        // Gemma 3: GeGLU, sliding layers with a window of half a 512-token row, the last layer full.
        if architecture == .gemma3, case .object(var o) = config {
            o["hidden_act"] = nil
            o["hidden_activation"] = "gelu_pytorch_tanh"
            o["sliding_window"] = 256
            o["layer_types"] = .array((0..<L).map { .string($0 == L - 1 ? "full_attention" : "sliding_attention") })
            config = .object(o)
        }
        try Data(config.serialized().utf8).write(to: dir.appendingPathComponent("config.json"))
        var tensors: [(name: String, shape: [Int], values: [Float])] = [
            ("model.embed_tokens.weight", [V, H], rng.uniform(V * H, -0.05, 0.05)),
            ("model.norm.weight", [H], [Float](repeating: architecture.traits.normPlusOne ? 0 : 1, count: H)),
        ]
        for l in 0..<L {
            let p = "model.layers.\(l)."
            let projections = architecture.traits.fusedProjections
                ? [("self_attn.qkv_proj", NH * D + 2 * NKV * D, H), ("self_attn.o_proj", H, NH * D), ("mlp.gate_up_proj", 2 * I, H),
                   ("mlp.down_proj", H, I)]
                : [("self_attn.q_proj", NH * D, H), ("self_attn.k_proj", NKV * D, H), ("self_attn.v_proj", NKV * D, H),
                   ("self_attn.o_proj", H, NH * D), ("mlp.gate_proj", I, H), ("mlp.up_proj", I, H), ("mlp.down_proj", H, I)]
            for (name, o, i) in projections {
                tensors.append((p + name + ".weight", [o, i], rng.uniform(o * i, -0.05, 0.05)))
            }
            // Unit norms: w = 1, or w = 0 where the norm multiplies by 1 + w (Gemma).
            let unit: Float = architecture.traits.normPlusOne ? 0 : 1
            let norms = ["input_layernorm", "post_attention_layernorm"]
                + (architecture.traits.sandwichNorms ? ["pre_feedforward_layernorm", "post_feedforward_layernorm"] : [])
            for n in norms { tensors.append((p + n + ".weight", [H], [Float](repeating: unit, count: H))) }
            if architecture.traits.qkNorm {
                for n in ["self_attn.q_norm.weight", "self_attn.k_norm.weight"] { tensors.append((p + n, [D], [Float](repeating: unit, count: D))) }
            }
        }
        try SafeTensorsWriter.write(tensors, to: dir.appendingPathComponent("model.safetensors").path)
    }
}
