import Foundation
import LoraOps
import OpenCLRuntime
import Reference

extension KernelBench {
    /// Attention at SmolLM2-135M's heads (9 query heads over 3 KV heads of 64)
    /// for T = 256, 512, 1024 with B = 1024 / T (≈ 1024 tokens each), beside
    /// `gemm_packed` on the same tokens (q_proj, 1024×576×576) timed just before:
    /// attention's rate over the matmul's is the figure issue 8 item 3 asks for.
    ///
    /// FLOPs, counted the same way for every kernel version: a (query, key)
    /// pair that attention visits (causal: T(T+1)/2 per row and head) costs
    /// 2·D for q·k and 2·D for p·v, so forward = 4·D·pairs; backward = 2.5×
    /// that (10·D·pairs: q·k again, dO·v, pᵀ·dO, dsᵀ·q, ds·k). Work a kernel
    /// repeats (a second sweep recomputing the scores, masked lanes of a
    /// diagonal block) is not counted.
    func benchAttention(quick: Bool) throws {
        let (NH, NKV, D) = quick ? (4, 2, 16) : (9, 3, 64)
        let tokens = quick ? 128 : 1024
        let seqs = quick ? [32, 64] : [256, 512, 1024]
        let (gm, gk, gn) = quick ? (tokens, 96, 96) : (tokens, 576, 576)
        let x = try ctx.buffer(rng.uniform(gm * gk)), w = try ctx.buffer(rng.uniform(gn * gk))
        let y = try ctx.buffer(count: gm * gn)
        let packedW = try ctx.pack(w, k: gk, n: gn, .transposed)
        for T in seqs {
            let B = max(tokens / T, 1), n = B * T
            let s = ComputeContext.AttentionShape(batch: B, seq: T, heads: NH, kvHeads: NKV, headDim: D)
            let q = try ctx.buffer(rng.uniform(n * NH * D)), k = try ctx.buffer(rng.uniform(n * NKV * D))
            let v = try ctx.buffer(rng.uniform(n * NKV * D)), out = try ctx.buffer(count: n * NH * D)
            let lse = try ctx.buffer(count: B * NH * T), delta = try ctx.buffer(count: B * NH * T)
            let dq = try ctx.buffer(count: n * NH * D), dk = try ctx.buffer(count: n * NKV * D)
            let dv = try ctx.buffer(count: n * NKV * D), dout = try ctx.buffer(rng.uniform(n * NH * D))
            let pairs = Double(B * NH) * Double(T * (T + 1) / 2)
            let fwdFlops = 4.0 * Double(D) * pairs, bwdFlops = 2.5 * fwdFlops
            let shape = "B\(B) T\(T) h\(NH)/\(NKV) d\(D)"
            // Interleaved: each run times the matmul, the forward and the backward
            // back to back, so load that comes and goes on a shared host hits all three.
            let (tg, tf, tb) = try timeInterleaved(
                { try ctx.matmul(y, x, packed: packedW, m: gm) },
                { try ctx.attentionForward(out: out, lse: lse, q: q, k: k, v: v, shape: s) },
                { try ctx.attentionBackward(dq: dq, dk: dk, dv: dv, delta: delta, dout: dout, out: out, lse: lse,
                                            q: q, k: k, v: v, shape: s) })
            record("gemm_packed (reference)", "\(gm)x\(gn)x\(gk)", seconds: tg,
                   flops: 2.0 * Double(gm * gn * gk), blasSeconds: nil)
            record("attention forward (causal, GQA)", shape, seconds: tf, flops: fwdFlops, blasSeconds: nil)
            record("attention backward", shape, seconds: tb, flops: bwdFlops, blasSeconds: nil)
            let g = 2.0 * Double(gm * gn * gk) / tg
            log(String(format: "  T=%d: attention / gemm_packed in this run: forward %.2fx, backward %.2fx",
                       T, fwdFlops / tf / g, bwdFlops / tb / g))
        }
    }

    /// Median wall times (s) of three bodies (each + clFinish) timed in
    /// interleaved rounds after warm-up.
    func timeInterleaved(_ a: () throws -> Void, _ b: () throws -> Void, _ c: () throws -> Void) throws -> (Double, Double, Double) {
        let t = try withoutActuallyEscaping(a) { a in
            try withoutActuallyEscaping(b) { b in
                try withoutActuallyEscaping(c) { c in try timer.medians([a, b, c], sync: { try ctx.finish() }) }
            }
        }
        return (t[0], t[1], t[2])
    }
}
