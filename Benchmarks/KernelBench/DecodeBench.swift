import Foundation
import LoraBase
import LoraModel
import LoraOps
import OpenCLRuntime

extension KernelBench {
    /// KV-cache attention (one decode step and a 128-token prefill chunk over a
    /// 1024-token context, SmolLM2's 9/3 heads of 64) and the tokens/s of a whole
    /// SmolLM2-135M-shaped model (30 layers, hidden 576, vocabulary 49152, tied,
    /// LoRA r=16 on every projection, unmerged): one decode step at position 256
    /// and a 256-token prefill. Shapes: s = keys per split, @p = the step's position.
    func benchDecode(quick: Bool) throws {
        let (NH, NKV, D, ctxLen) = quick ? (4, 2, 16, 64) : (9, 3, 64, 1024)
        let cache = try KVCache(ctx, kvHeads: NKV, headDim: D, maxTokens: ctxLen)
        let kv = try ctx.buffer(rng.uniform(ctxLen * NKV * D))
        try ctx.kvCacheAppend(cache, k: kv, v: kv, tokens: ctxLen, position: 0)
        let cacheBytes = 4.0 * Double(2 * NKV * D)  // per cached position
        for n in [1, quick ? 8 : 128] {
            let q = try ctx.buffer(rng.uniform(n * NH * D)), out = try ctx.buffer(count: n * NH * D)
            let p0 = ctxLen - n
            let t = try timeDevice { try ctx.decodeAttention(out: out, q: q, cache: cache, heads: NH, tokens: n, position: p0) }
            let split = ctx.decodeKeysPerSplit(queries: n, heads: NH, keys: ctxLen)
            let shape = "n\(n) ctx\(ctxLen) h\(NH)/\(NKV) d\(D) s\(split)"
            if n == 1 {
                // A decode step streams the whole cache once: memory-bound.
                recordBandwidth("decode attention (KV cache)", shape, seconds: t, bytes: cacheBytes * Double(ctxLen))
            } else {
                let pairs = Double(n) * Double(p0) + Double(n * (n + 1) / 2)
                record("prefill attention (KV cache)", shape, seconds: t, flops: 4.0 * Double(NH * D) * pairs, blasSeconds: nil)
            }
        }
        try benchDecodeModel(quick: quick)
    }

    func benchDecodeModel(quick: Bool) throws {
        let (H, I, L, NH, NKV, V) = quick ? (64, 96, 2, 4, 2, 512) : (576, 1536, 30, 9, 3, 49152)
        let (prompt, maxLen) = quick ? (16, 64) : (256, 512)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lora-gpu-bench-decode-\(getpid())")
        defer { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try writeBenchModel(dir, hidden: H, intermediate: I, layers: L, heads: NH, kvHeads: NKV, vocab: V, ropeTheta: 100000.0)
        let lora = LoraConfig(r: 16, loraAlpha: 32, targetModules: .allLinear)
        let model = try LlamaLoRAModel(modelDirectory: dir.path, lora: lora, context: ctx)
        let session = try InferenceSession(model: model, maxTokens: maxLen)
        let ids = (0..<prompt).map { _ in Int.random(in: 0..<V, using: &rng) }
        let shape = "L\(L) H\(H) V\(V)"
        let tp = try timeDevice {
            session.reset()
            try session.append(ids)
        }
        appendRate("prefill (model, KV cache)", "\(prompt) tok " + shape, seconds: tp, tokens: prompt)
        // One step at position `prompt`: the cache keeps the prompt, the step's slot is overwritten each run.
        let td = try timeDevice {
            session.truncate(to: prompt)
            try session.append([ids[0]])
        }
        appendRate("decode step (model, KV cache)", "@\(prompt) " + shape, seconds: td, tokens: 1)
        // Where a decode step's device time goes, from event profiling of one more step.
        try logKernelProfile(top: 6, decimals: 2, heading: { "decode step device time by kernel (\(String(format: "%.1f", $0)) ms in kernels)" }) {
            session.truncate(to: prompt)
            try session.append([ids[0]])
        }
    }

    private func appendRate(_ name: String, _ shape: String, seconds t: Double, tokens: Int) {
        let row = BenchRow(name: name, shape: shape, kernelMs: t * 1e3, kernelRate: Double(tokens) / t, unit: "tokens/s",
                           blasMs: nil, blasRate: nil, ratio: nil)
        rows.append(row)
        log(Self.format(row))
    }
}
