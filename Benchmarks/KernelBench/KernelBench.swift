import Foundation
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
}

/// Times every kernel on one device after warm-up (median of `runs`), beside
/// OpenBLAS sgemm on the same shapes in the same process.
public final class KernelBench {
    let ctx: ComputeContext
    let runs: Int
    let warmup: Int
    var rng = SeededRandom(seed: 20261129)
    public private(set) var rows: [BenchRow] = []
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
    public func runAll(quick: Bool = false) throws -> BenchReport {
        let T = quick ? 64 : 1024
        let big = quick ? (64, 128, 96) : (512, 2048, 2048)
        let projections: [(String, Int, Int)] = quick
            ? [("q_proj", 96, 96), ("down_proj", 160, 96)]
            : [("q_proj", 576, 576), ("k_proj", 576, 192), ("gate_proj", 576, 1536), ("down_proj", 1536, 576)]
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
        for rank in [8, 16, 64] {
            for (name, din, dout) in [(quick ? "q_proj" : "2048x2048", big.1, big.2)] + projections.map({ ($0.0, $0.1, $0.2) }) {
                let n = name == "2048x2048" ? big.0 : T
                try benchLoRA(name: name, tokens: n, din: din, dout: dout, rank: rank)
            }
        }
        try benchRMSNorm(rows: T, cols: projections[0].1)
        try benchElementwise(count: T * (quick ? 160 : 1536))
        return BenchReport(device: ctx.device.label,
                           openblasCoretype: ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] ?? "(unset)",
                           runs: runs, rows: rows)
    }

    // MARK: timing

    func median(_ xs: [Double]) -> Double { let s = xs.sorted(); return s[s.count / 2] }

    /// OpenBLAS's worker threads keep spinning for a while after a call and
    /// pocl's do too; measuring one right after the other would halve it.
    func settle() { usleep(300_000) }

    /// Median wall time (s) of `body` + clFinish, after warm-up.
    func timeDevice(_ body: () throws -> Void) throws -> Double {
        settle()
        for _ in 0..<warmup { try body(); try ctx.finish() }
        var ts: [Double] = []
        for _ in 0..<runs {
            let t0 = DispatchTime.now().uptimeNanoseconds
            try body()
            try ctx.finish()
            ts.append(Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9)
        }
        return median(ts)
    }

    func timeHost(_ body: () -> Void) -> Double {
        settle()
        for _ in 0..<warmup { body() }
        var ts: [Double] = []
        for _ in 0..<runs {
            let t0 = DispatchTime.now().uptimeNanoseconds
            body()
            ts.append(Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9)
        }
        return median(ts)
    }

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
        "kernel".padding(toLength: 34, withPad: " ", startingAt: 0) + "shape".padding(toLength: 24, withPad: " ", startingAt: 0)
            + "   ms      rate        |  BLAS ms   BLAS GFLOP/s  ratio"
    }

    public static func format(_ r: BenchRow) -> String {
        var s = r.name.padding(toLength: 34, withPad: " ", startingAt: 0)
            + r.shape.padding(toLength: 24, withPad: " ", startingAt: 0)
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
    }
}
