import Foundation
import LoraOps
import OpenCLRuntime
import Reference
import XCTest

final class DecodeKernelTests: XCTestCase {
    struct Case {
        let heads, kvHeads, headDim, maxTokens: Int
        /// Token counts appended one after the other (a prefill, then chunks or single decode steps).
        let steps: [Int]
    }

    static let cases: [Case] = [
        Case(heads: 1, kvHeads: 1, headDim: 2, maxTokens: 1, steps: [1]),
        Case(heads: 4, kvHeads: 2, headDim: 8, maxTokens: 37, steps: [5, 1, 1, 16, 1, 13]),   // capacity 48, filled to 37
        Case(heads: 6, kvHeads: 2, headDim: 6, maxTokens: 20, steps: [1, 1, 17, 1]),
        Case(heads: 3, kvHeads: 3, headDim: 17, maxTokens: 50, steps: [33, 1, 1]),             // a tail of 1 past one register block
        Case(heads: 2, kvHeads: 1, headDim: 64, maxTokens: 70, steps: [64, 1, 1, 1, 1]),
        Case(heads: 2, kvHeads: 1, headDim: 136, maxTokens: 19, steps: [3, 1, 15]),            // 8 register blocks + a tail of 8
        Case(heads: 1, kvHeads: 1, headDim: 256, maxTokens: 18, steps: [17, 1]),               // every register block
        Case(heads: 9, kvHeads: 3, headDim: 64, maxTokens: 200, steps: [150, 1, 1, 48]),       // SmolLM2's heads
    ]

    /// Appends every step's keys and values, then checks the attention of the
    /// step's queries against float64, with the automatic split and with 16-
    /// and 48-key splits (many partials, and a split that ends mid-sequence);
    /// and through a sliding window W (Mistral, Qwen2's sliding layers: the query at position p attends
    /// keys j > p − W only) of 1, shorter than a split and than a 16-key block, and longer than the cache,
    /// where splits wholly before the window contribute nothing.
    func testAgainstFloat64AcrossPrefillAndDecodeSteps() throws {
        let ctx = try sharedContext()
        var rng = freshRandom(#function)
        for (i, c) in Self.cases.enumerated() {
            let total = c.steps.reduce(0, +)
            precondition(total <= c.maxTokens)
            let kvd = c.kvHeads * c.headDim, qd = c.heads * c.headDim
            let k = rng.uniform(total * kvd, -2, 2), v = rng.uniform(total * kvd)
            let cache = try KVCache(ctx, kvHeads: c.kvHeads, headDim: c.headDim, maxTokens: c.maxTokens)
            let windows: [Int?] = [1, 4, 7].contains(i) ? [nil, 1, 3, 16, 21, 1000] : [nil]
            var p0 = 0
            for n in c.steps {
                let kb = try ctx.buffer(Array(k[(p0 * kvd)..<((p0 + n) * kvd)]))
                let vb = try ctx.buffer(Array(v[(p0 * kvd)..<((p0 + n) * kvd)]))
                try ctx.kvCacheAppend(cache, k: kb, v: vb, tokens: n, position: p0)
                let q = rng.uniform(n * qd, -2, 2)
                let qb = try ctx.buffer(q)
                for window in windows {
                    // Gemma 3's scale (query_pre_attn_scalar^-½, 12 here) in place of 1/√D with the window of 3.
                    let scale: Float? = window == 3 ? 1 / Float(12).squareRoot() : nil
                    let ref = Reference.decodeAttention(q: toDouble(q), k: toDouble(Array(k[0..<((p0 + n) * kvd)])),
                                                        v: toDouble(Array(v[0..<((p0 + n) * kvd)])), tokens: n, position: p0,
                                                        heads: c.heads, kvHeads: c.kvHeads, headDim: c.headDim, window: window,
                                                        scale: scale.map(Double.init))
                    for split in [nil, 16, 48] as [Int?] {
                        let out = try poisoned(ctx, n * qd)
                        try ctx.decodeAttention(out: out, q: qb, cache: cache, heads: c.heads, tokens: n, position: p0,
                                                keysPerSplit: split, window: window, scale: scale)
                        assertClose(try out.read(), ref, "decode \(c) at p0=\(p0) n=\(n) window=\(window.map(String.init) ?? "none") "
                                    + "split=\(split.map(String.init) ?? "auto")")
                    }
                }
                p0 += n
            }
        }
    }

    /// A whole-sequence prefill from position 0 is the training attention kernel's forward.
    func testFullPrefillEqualsTrainingAttention() throws {
        let ctx = try sharedContext()
        var rng = freshRandom(#function)
        for (T, NH, NKV, D) in [(1, 2, 1, 8), (33, 4, 2, 16), (100, 9, 3, 64)] {
            let q = rng.uniform(T * NH * D, -2, 2), k = rng.uniform(T * NKV * D, -2, 2), v = rng.uniform(T * NKV * D)
            let qb = try ctx.buffer(q), kb = try ctx.buffer(k), vb = try ctx.buffer(v)
            let s = ComputeContext.AttentionShape(batch: 1, seq: T, heads: NH, kvHeads: NKV, headDim: D)
            let full = try poisoned(ctx, T * NH * D), lse = try poisoned(ctx, NH * T)
            try ctx.attentionForward(out: full, lse: lse, q: qb, k: kb, v: vb, shape: s)
            let cache = try KVCache(ctx, kvHeads: NKV, headDim: D, maxTokens: T + 3)
            try ctx.kvCacheAppend(cache, k: kb, v: vb, tokens: T, position: 0)
            let out = try poisoned(ctx, T * NH * D)
            try ctx.decodeAttention(out: out, q: qb, cache: cache, heads: NH, tokens: T, position: 0)
            assertClose(try out.read(), toDouble(try full.read()), "prefill vs attention_forward T=\(T) \(NH)/\(NKV) d\(D)")
        }
    }

    func testSplitSizesCoverTheKeysAndErrorsNameTheOperand() throws {
        let ctx = try sharedContext()
        for (n, heads, keys) in [(1, 9, 1), (1, 9, 1024), (1, 1, 4096), (300, 9, 300), (7, 4, 33)] {
            let split = ctx.decodeKeysPerSplit(queries: n, heads: heads, keys: keys)
            XCTAssertTrue(split >= 16 && split % 16 == 0, "split \(split) for n=\(n) heads=\(heads) keys=\(keys)")
            XCTAssertGreaterThanOrEqual(split * 1024, keys, "at most 1024 splits")
        }
        let cache = try KVCache(ctx, kvHeads: 2, headDim: 8, maxTokens: 10)
        let k = try ctx.buffer(count: 4 * 16), q = try ctx.buffer(count: 4 * 32)
        XCTAssertThrowsError(try ctx.kvCacheAppend(cache, k: k, v: k, tokens: 4, position: 7)) { e in
            XCTAssertTrue("\(e)".contains("exceed the cache length 10"), "\(e)")
        }
        XCTAssertThrowsError(try ctx.decodeAttention(out: q, q: q, cache: cache, heads: 3, tokens: 1, position: 0)) { e in
            XCTAssertTrue("\(e)".contains("not a multiple of kv heads"), "\(e)")
        }
        XCTAssertThrowsError(try ctx.decodeAttention(out: q, q: q, cache: cache, heads: 4, tokens: 2, position: 0,
                                                     keysPerSplit: 24)) { e in
            XCTAssertTrue("\(e)".contains("multiple of 16"), "\(e)")
        }
        XCTAssertThrowsError(try ctx.decodeAttention(out: q, q: k, cache: cache, heads: 4, tokens: 4, position: 0)) { e in
            XCTAssertTrue("\(e)".contains("q has 64 elements, needs 128"), "\(e)")
        }
    }
}

final class PackedLoRATests: XCTestCase {
    /// The packed inference forward equals float64 (and training's loraForward
    /// without dropout), with a bias and with beta = 1; repack follows new A, B.
    func testPackedInferenceForwardAgainstFloat64() throws {
        let ctx = try sharedContext()
        var rng = freshRandom(#function)
        for (n, din, dout, r) in [(1, 5, 7, 1), (1, 96, 48, 8), (3, 17, 33, 4), (40, 64, 130, 16)] {
            let x = rng.uniform(n * din), w = rng.uniform(dout * din, -0.3, 0.3)
            var a = rng.uniform(r * din, -0.3, 0.3), b = rng.uniform(dout * r, -0.3, 0.3)
            let bias = rng.uniform(dout), prior = rng.uniform(n * dout)
            let settings = LoRASettings(rank: r, alpha: Float(2 * r) + 0.5)
            let base = try FrozenLinear(ctx, weight: try ctx.buffer(w), outFeatures: dout, inFeatures: din)
            let ab = try ctx.buffer(a), bb = try ctx.buffer(b)
            let packed = try PackedLoRA(ctx, a: ab, b: bb, inFeatures: din, outFeatures: dout, settings: settings)
            for round in 0..<2 {
                if round == 1 {   // new adapter values, repacked in place
                    a = rng.uniform(r * din, -0.3, 0.3); b = rng.uniform(dout * r, -0.3, 0.3)
                    try ab.write(a); try bb.write(b)
                    try packed.repack(ctx, a: ab, b: bb)
                }
                let ref = Reference.loraForward(x: toDouble(x), w: toDouble(w), a: toDouble(a), b: toDouble(b),
                                                bias: toDouble(bias), n: n, din: din, dout: dout, r: r,
                                                scale: Double(settings.scale), mask: nil)
                let y = try ctx.buffer(prior), u = try poisoned(ctx, n * r)
                try ctx.loraInferenceForward(y: y, u: u, x: try ctx.buffer(x), base: base, lora: packed,
                                             bias: try ctx.buffer(bias), tokens: n, beta: 1)
                assertClose(try y.read(), zip(ref.y, prior).map { $0 + Double($1) }, "packed LoRA \(n)x\(din)→\(dout) r\(r) round \(round)")
                assertClose(try u.read(), ref.u, "packed LoRA u \(n)x\(din) r\(r) round \(round)")
                let y2 = try poisoned(ctx, n * dout), u2 = try poisoned(ctx, n * r)
                try ctx.loraForward(y: y2, u: u2, x: try ctx.buffer(x), base: base, a: ab, b: bb, bias: try ctx.buffer(bias),
                                    tokens: n, lora: settings, seed: 1)
                let y1 = try poisoned(ctx, n * dout)
                try ctx.loraInferenceForward(y: y1, u: u, x: try ctx.buffer(x), base: base, lora: packed,
                                             bias: try ctx.buffer(bias), tokens: n)
                XCTAssertEqual(try y1.read(), try y2.read(), "the same sums as training's loraForward")
            }
        }
        let base = try FrozenLinear(ctx, weight: try ctx.buffer(count: 6), outFeatures: 2, inFeatures: 3)
        let p = try PackedLoRA(ctx, a: try ctx.buffer(count: 4), b: try ctx.buffer(count: 4), inFeatures: 4, outFeatures: 2,
                               settings: LoRASettings(rank: 1, alpha: 1))
        XCTAssertThrowsError(try ctx.loraInferenceForward(y: try ctx.buffer(count: 2), u: try ctx.buffer(count: 1),
                                                          x: try ctx.buffer(count: 3), base: base, lora: p, bias: nil,
                                                          tokens: 1)) { e in
            XCTAssertTrue("\(e)".contains("differs from the base"), "\(e)")
        }
    }
}
