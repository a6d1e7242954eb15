import Foundation
import LoraBase
import OpenCLRuntime

// The tuner's attention stage: ATT_MQ (query rows per work-item of the
// forward) and ATT_MK (key rows per tile of the backward), each timed on
// attention itself after a parity check against a float64 reference.

extension Tuner {
    /// What the attention stage times: SmolLM2-135M's heads (9 query heads over
    /// 3 KV heads of 64) at 4 rows of 256 tokens (its training batch; the
    /// backward runs one work-item per row and head, so fewer rows would leave
    /// a many-core device idle).
    var attentionShape: ComputeContext.AttentionShape {
        ComputeContext.AttentionShape(batch: 4, seq: 256, heads: 9, kvHeads: 3, headDim: 64)
    }

    /// Searches ATT_MQ on the forward, then ATT_MK on the backward, each over
    /// `space` with every other field at `winner`'s; a candidate is built
    /// (attention.cl only), checked (`attentionParityFailure`), then timed in
    /// interleaved rounds, and the fastest is set in `winner`. Returns GFLOP/s
    /// per candidate ("forward aq=4", "backward ak=2"); FLOPs as in the bench:
    /// 4·D per (query, key) pair forward, 10·D backward.
    func tuneAttention(_ winner: inout KernelConfig, space: [Int]) -> [String: Double]? {
        guard !space.isEmpty else { return nil }
        let s = attentionShape
        let pairs = Double(s.batch * s.heads) * Double(s.seq * (s.seq + 1) / 2)
        var rates: [String: Double] = [:]
        for forward in [true, false] {
            let key = forward ? "forward aq" : "backward ak"
            var ready: [(Int, ComputeContext, AttentionTuningBuffers)] = []
            for n in space {
                var c = winner
                if forward { c.attentionQueryRows = n } else { c.attentionKeyRows = n }
                do {
                    let ctx = try ComputeContext(device: device, config: c, origin: "tuner", kernelFiles: ["attention.cl"])
                    if let failure = try Self.attentionParityFailure(ctx) {
                        log("  attention \(key)=\(n) rejected: parity: \(failure)")
                        continue
                    }
                    ready.append((n, ctx, try AttentionTuningBuffers(ctx, shape: s)))
                } catch {
                    log("  attention \(key)=\(n) rejected: \(error)")
                }
            }
            let flops = (forward ? 4.0 : 10.0) * Double(s.headDim) * pairs
            var best: [Int: Double] = [:]
            usleep(quick ? 100_000 : 300_000)
            for _ in 0..<rounds {
                for (n, ctx, bufs) in ready {
                    if let t = try? time(ctx, { try bufs.run(ctx, forward: forward) }) { best[n] = max(best[n] ?? 0, flops / t / 1e9) }
                }
            }
            for (n, g) in best.sorted(by: { $0.key < $1.key }) {
                log(String(format: "  attention %@=%d (%@): %.1f GFLOP/s", key, n, "\(s.batch)x\(s.seq) h\(s.heads)/\(s.kvHeads) d\(s.headDim)", g))
                rates["\(key)=\(n)"] = g
            }
            if let top = best.max(by: { $0.value < $1.value || ($0.value == $1.value && $0.key > $1.key) }) {
                if forward { winner.attentionQueryRows = top.key } else { winner.attentionKeyRows = top.key }
            }
        }
        return rates
    }

    /// nil when `ctx`'s attention forward (out, lse) and backward (dq, dk, dv)
    /// match a float64 reference: T not a multiple of 16 nor of any tile
    /// height, GQA ratios 1 and 3, a head dim with a tail past 16, packed
    /// samples, outputs NaN-poisoned first; otherwise what failed.
    public static func attentionParityFailure(_ ctx: ComputeContext) throws -> String? {
        var rng = SplitMix64(seed: 0xa77e)
        // (batch, seq, heads, kvHeads, headDim, sample lengths per row or nil)
        let cases: [(Int, Int, Int, Int, Int, [Int]?)] = [
            (1, 1, 1, 1, 4, nil), (2, 17, 3, 1, 16, nil), (1, 35, 2, 2, 20, [10, 1, 24]), (1, 19, 3, 1, 64, [3, 16]),
        ]
        for (b, t, nh, nkv, d, lengths) in cases {
            let s = ComputeContext.AttentionShape(batch: b, seq: t, heads: nh, kvHeads: nkv, headDim: d)
            var ids: [Int]? = nil
            if let lengths {
                ids = (0..<b).flatMap { _ in lengths.enumerated().flatMap { [Int](repeating: $0.offset, count: $0.element) } }
            }
            let n = b * t, qn = n * nh * d, kn = n * nkv * d
            let q = rng.signedUnits(qn).map { $0 * 2 }, k = rng.signedUnits(kn).map { $0 * 2 }, v = rng.signedUnits(kn), dout = rng.signedUnits(qn)
            let seg = try ids.map { try DeviceBuffer(queue: ctx.queue, try s.segmentStarts(sequenceIDs: $0)) }
            func poisoned(_ count: Int) throws -> DeviceBuffer<Float> {
                let x = try ctx.buffer(count: count)
                try x.fill(.nan)
                return x
            }
            let out = try poisoned(qn), lse = try poisoned(b * nh * t), delta = try poisoned(b * nh * t)
            let dq = try poisoned(qn), dk = try poisoned(kn), dv = try poisoned(kn)
            let bq = try ctx.buffer(q), bk = try ctx.buffer(k), bv = try ctx.buffer(v)
            try ctx.attentionForward(out: out, lse: lse, q: bq, k: bk, v: bv, shape: s, segmentStarts: seg)
            try ctx.attentionBackward(dq: dq, dk: dk, dv: dv, delta: delta, dout: try ctx.buffer(dout), out: out, lse: lse,
                                      q: bq, k: bk, v: bv, shape: s, segmentStarts: seg)
            let ref = referenceAttention(q: q, k: k, v: v, dout: dout, shape: s, sequenceIDs: ids)
            let what = "attention b\(b) t\(t) h\(nh)/\(nkv) d\(d)" + (lengths.map { " samples \($0)" } ?? "")
            for (name, got, want) in [("out", out, ref.out), ("lse", lse, ref.lse), ("dq", dq, ref.dq),
                                      ("dk", dk, ref.dk), ("dv", dv, ref.dv)] {
                if let e = mismatch(try got.read(), want) { return "\(what) \(name): \(e)" }
            }
        }
        return nil
    }

    /// Causal GQA attention and its gradients in float64, straight from the
    /// definitions (query t attends keys of its sample up to t).
    static func referenceAttention(q: [Float], k: [Float], v: [Float], dout: [Float],
                                   shape s: ComputeContext.AttentionShape, sequenceIDs ids: [Int]?)
        -> (out: [Double], lse: [Double], dq: [Double], dk: [Double], dv: [Double]) {
        let (B, T, NH, NKV, D) = (s.batch, s.seq, s.heads, s.kvHeads, s.headDim)
        let scale = 1 / Double(D).squareRoot()
        var out = [Double](repeating: 0, count: B * T * NH * D), lse = [Double](repeating: 0, count: B * NH * T)
        var dq = out, dk = [Double](repeating: 0, count: B * T * NKV * D), dv = dk
        func qi(_ b: Int, _ t: Int, _ h: Int) -> Int { ((b * T + t) * NH + h) * D }
        func ki(_ b: Int, _ t: Int, _ g: Int) -> Int { ((b * T + t) * NKV + g) * D }
        for b in 0..<B {
            for h in 0..<NH {
                let g = h / (NH / NKV)
                for t in 0..<T {
                    var first = t
                    while first > 0, let ids, ids[b * T + first - 1] == ids[b * T + t] { first -= 1 }
                    if ids == nil { first = 0 }
                    let keys = Array(first...t)
                    let sc = keys.map { j in (0..<D).reduce(0.0) { $0 + Double(q[qi(b, t, h) + $1]) * Double(k[ki(b, j, g) + $1]) } * scale }
                    let m = sc.max()!
                    let l = sc.reduce(0.0) { $0 + exp($1 - m) }
                    let p = sc.map { exp($0 - m) / l }
                    lse[(b * NH + h) * T + t] = m + Foundation.log(l)
                    for (n, j) in keys.enumerated() { for x in 0..<D { out[qi(b, t, h) + x] += p[n] * Double(v[ki(b, j, g) + x]) } }
                    let dp = keys.map { j in (0..<D).reduce(0.0) { $0 + Double(dout[qi(b, t, h) + $1]) * Double(v[ki(b, j, g) + $1]) } }
                    let deltaT = zip(p, dp).reduce(0.0) { $0 + $1.0 * $1.1 }
                    for (n, j) in keys.enumerated() {
                        let ds = p[n] * (dp[n] - deltaT) * scale
                        for x in 0..<D {
                            dq[qi(b, t, h) + x] += ds * Double(k[ki(b, j, g) + x])
                            dk[ki(b, j, g) + x] += ds * Double(q[qi(b, t, h) + x])
                            dv[ki(b, j, g) + x] += p[n] * Double(dout[qi(b, t, h) + x])
                        }
                    }
                }
            }
        }
        return (out, lse, dq, dk, dv)
    }
}

/// Inputs and outputs of one attention shape, for timing.
struct AttentionTuningBuffers {
    let s: ComputeContext.AttentionShape
    let q, k, v, out, lse, delta, dq, dk, dv, dout: DeviceBuffer<Float>

    init(_ ctx: ComputeContext, shape s: ComputeContext.AttentionShape) throws {
        self.s = s
        var rng = SplitMix64(seed: 0xa11)
        let n = s.tokens, qn = n * s.heads * s.headDim, kn = n * s.kvHeads * s.headDim
        q = try ctx.buffer(rng.signedUnits(qn))
        k = try ctx.buffer(rng.signedUnits(kn))
        v = try ctx.buffer(rng.signedUnits(kn))
        dout = try ctx.buffer(rng.signedUnits(qn))
        out = try ctx.buffer(count: qn)
        dq = try ctx.buffer(count: qn)
        dk = try ctx.buffer(count: kn)
        dv = try ctx.buffer(count: kn)
        lse = try ctx.buffer(count: s.batch * s.heads * s.seq)
        delta = try ctx.buffer(count: s.batch * s.heads * s.seq)
        try ctx.attentionForward(out: out, lse: lse, q: q, k: k, v: v, shape: s)
    }

    func run(_ ctx: ComputeContext, forward: Bool) throws {
        if forward {
            try ctx.attentionForward(out: out, lse: lse, q: q, k: k, v: v, shape: s)
        } else {
            try ctx.attentionBackward(dq: dq, dk: dk, dv: dv, delta: delta, dout: dout, out: out, lse: lse,
                                      q: q, k: k, v: v, shape: s)
        }
    }
}
