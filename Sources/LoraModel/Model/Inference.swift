import LoraOps
import OpenCLRuntime

/// Errors of an inference session, naming the limit that was hit.
public enum InferenceError: Error, CustomStringConvertible, Equatable {
    case tooLong(tokens: Int, limit: Int, what: String)
    case tokenOutOfVocabulary(id: Int, vocabSize: Int)
    case empty
    case invalid(String)

    public var description: String {
        switch self {
        case .tooLong(let t, let limit, let what): return "inference: \(t) tokens exceed \(what) (\(limit))"
        case .tokenOutOfVocabulary(let id, let v): return "inference: token id \(id) is outside the vocabulary (size \(v))"
        case .empty: return "inference: no tokens to run"
        case .invalid(let s): return "inference: \(s)"
        }
    }
}

/// One sequence being generated on the device: a KV cache per layer for up to
/// `maxTokens` positions, and the activations of a chunk of `chunkTokens`
/// rows. `append` runs new tokens through the model (a prefill in chunks, or
/// one decode step) and returns the logits of the last one. The model's
/// weights and LoRA adapters are used as they are (unmerged), in eval mode
/// (no dropout); the LoRA A and B are packed once when the session is made
/// (`refreshAdapters` after they change). The session shares the model's
/// weights and its LoRA `u` buffers: do not interleave it with a training
/// step's forward and backward.
public final class InferenceSession {
    public let model: LlamaLoRAModel
    public let maxTokens: Int
    public let chunkTokens: Int
    /// The tokens whose keys and values are in the cache, in order.
    public private(set) var tokens: [Int] = []
    public var length: Int { tokens.count }

    let caches: [KVCache]
    let x, h: DeviceBuffer<Float>                    // (chunk, H) residual stream, normed input
    let q, attn: DeviceBuffer<Float>                 // (chunk, NH·D)
    let k, v: DeviceBuffer<Float>                    // (chunk, NKV·D)
    let gate, up, act: DeviceBuffer<Float>           // (chunk, I)
    let rstd: DeviceBuffer<Float>                    // (chunk)
    let headRstd: DeviceBuffer<Float>?               // (chunk·NH) per-head q/k norms (Qwen3), else nil
    let fused: DeviceBuffer<Float>?                  // (chunk, max(qd + 2·kvd, 2I)) a fused projection (Phi-3), else nil
    let branch: DeviceBuffer<Float>?                 // (chunk, H) o_proj's or down_proj's output before its sandwich norm (Gemma 3)
    let ids, positions: DeviceBuffer<Int32>          // (chunk)
    let embedAfterA: DeviceBuffer<Float>?            // (chunk, r) of the embedding LoRA
    let last, lastNormed, lastRstd, logits: DeviceBuffer<Float>  // (H), (H), (1), (V)
    var allLogits: DeviceBuffer<Float>?              // (chunk, V), made on first use
    var softcapTanh: DeviceBuffer<Float>?            // (rows, V) scratch of the final-logit soft-capping (Gemma), made on first use
    /// Packed A and B of every adapted linear layer, by the layer's identity.
    var packed: [ObjectIdentifier: PackedLoRA] = [:]
    /// u = x·Aᵀ (chunk, r) of each packed layer: the session's own, so that a training step's
    /// plan may resize Linear.u while a session lives.
    var u: [ObjectIdentifier: DeviceBuffer<Float>] = [:]

    /// `maxTokens` ≤ max_position_embeddings; the cache keeps every position (a sliding-window layer attends
    /// its window of it).
    public init(model m: LlamaLoRAModel, maxTokens: Int, chunkTokens: Int = 128) throws {
        let c = m.config
        guard maxTokens >= 1, chunkTokens >= 1 else {
            throw InferenceError.invalid("maxTokens (\(maxTokens)) and chunkTokens (\(chunkTokens)) must be ≥ 1")
        }
        guard maxTokens <= c.maxPositionEmbeddings else {
            throw InferenceError.tooLong(tokens: maxTokens, limit: c.maxPositionEmbeddings, what: "max_position_embeddings")
        }
        guard maxTokens <= m.ropePositions else {
            throw InferenceError.tooLong(tokens: maxTokens, limit: m.ropePositions, what: "the positions the model's RoPE tables were made for")
        }
        model = m
        self.maxTokens = maxTokens
        let n = min(chunkTokens, maxTokens)
        self.chunkTokens = n
        let ctx = m.ctx, H = c.hiddenSize, I = c.intermediateSize
        let qd = c.numHeads * c.headDim, kvd = c.numKVHeads * c.headDim
        caches = try (0..<c.numLayers).map { _ in
            try KVCache(ctx, kvHeads: c.numKVHeads, headDim: c.headDim, maxTokens: maxTokens)
        }
        x = try ctx.buffer(count: n * H); h = try ctx.buffer(count: n * H)
        q = try ctx.buffer(count: n * qd); attn = try ctx.buffer(count: n * qd)
        k = try ctx.buffer(count: n * kvd); v = try ctx.buffer(count: n * kvd)
        gate = try ctx.buffer(count: n * I); up = try ctx.buffer(count: n * I); act = try ctx.buffer(count: n * I)
        rstd = try ctx.buffer(count: n)
        headRstd = c.qkNorm ? try ctx.buffer(count: n * c.numHeads) : nil
        fused = c.fusedProjections ? try ctx.buffer(count: n * c.fusedWidth) : nil
        branch = c.architecture.traits.sandwichNorms ? try ctx.buffer(count: n * H) : nil
        ids = try DeviceBuffer(queue: ctx.queue, count: n)
        positions = try DeviceBuffer(queue: ctx.queue, count: n)
        embedAfterA = try m.embeddingLoRA.map { try ctx.buffer(count: n * $0.settings.rank) }
        last = try ctx.buffer(count: H); lastNormed = try ctx.buffer(count: H)
        lastRstd = try ctx.buffer(count: 1); logits = try ctx.buffer(count: c.vocabSize)
        for lin in m.layers.flatMap(\.linears) + [m.lmHead] {
            if let pair = lin.lora, lin.frozen != nil, lin.trainedWeight == nil {
                packed[ObjectIdentifier(lin)] = try PackedLoRA(ctx, a: pair.a.param, b: pair.b.param, inFeatures: lin.inFeatures,
                                                               outFeatures: lin.outFeatures, settings: pair.settings)
                u[ObjectIdentifier(lin)] = try ctx.buffer(count: n * pair.settings.rank)
            }
        }
    }

    /// Repacks every LoRA A and B from the model (after training or loading an adapter).
    public func refreshAdapters() throws {
        for lin in model.layers.flatMap(\.linears) + [model.lmHead] {
            if let p = packed[ObjectIdentifier(lin)], let pair = lin.lora { try p.repack(model.ctx, a: pair.a.param, b: pair.b.param) }
        }
    }

    /// y (n, out) = lin(x) (+ beta·y): the packed LoRA forward, or the layer's own.
    func project(_ lin: Linear, y: DeviceBuffer<Float>, x: DeviceBuffer<Float>, tokens n: Int, beta: Float = 0) throws {
        if let p = packed[ObjectIdentifier(lin)], let frozen = lin.frozen, let u = u[ObjectIdentifier(lin)] {
            try model.ctx.loraInferenceForward(y: y, u: u, x: x, base: frozen, lora: p, bias: lin.bias, tokens: n, beta: beta)
        } else {
            try lin.forward(model.ctx, y: y, x: x, tokens: n, training: false, stepSeed: model.stepSeed, beta: beta)
        }
    }

    /// Forgets every token (the cache is overwritten from position 0).
    public func reset() { tokens = []; cacheUsesLongFactors = false }

    /// Takes over `other`'s cached positions (a smaller session of the same model that this one
    /// replaces), so a conversation that outgrew its cache runs only its new tokens. The caches are
    /// re-laid on the host for this session's row stride (kt (NKV, D, C), v (NKV, C, D)).
    public func adoptCache(of other: InferenceSession) throws {
        let n = other.length
        guard other.model === model, n <= maxTokens else {
            throw LoraError.batch("cannot adopt a cache of \(n) positions from another model or into \(maxTokens)")
        }
        for (dst, src) in zip(caches, other.caches) where n > 0 {
            let rows = src.kvHeads * src.headDim, d = src.headDim
            let ks = try src.keys.read(), vs = try src.values.read()
            var kt = [Float](repeating: 0, count: rows * dst.capacity), vc = [Float](repeating: 0, count: src.kvHeads * dst.capacity * d)
            // Each key row's first n positions, and each head's first n value rows (n·D contiguous floats).
            for r in 0..<rows { kt[r * dst.capacity ..< r * dst.capacity + n] = ks[r * src.capacity ..< r * src.capacity + n] }
            for g in 0..<src.kvHeads {
                vc[g * dst.capacity * d ..< (g * dst.capacity + n) * d] = vs[g * src.capacity * d ..< (g * src.capacity + n) * d]
            }
            try dst.keys.write(kt)
            try dst.values.write(vc)
        }
        tokens = other.tokens
        cacheUsesLongFactors = other.cacheUsesLongFactors
    }

    /// Keeps only the first `count` tokens: the next append overwrites the rest
    /// (a conversation re-rendered with the same prefix reuses its cache). The kept tokens stay: a LongRoPE
    /// cache written with other factors than the next run needs is recomputed by that run.
    public func truncate(to count: Int) {
        if count < tokens.count { tokens.removeLast(tokens.count - max(count, 0)) }
    }

    /// Whether the cached keys were rotated with LongRoPE's long factors.
    var cacheUsesLongFactors = false

    /// Runs `newTokens` at positions length … length+n−1 and returns the logits (V)
    /// of the last one.
    @discardableResult
    public func append(_ newTokens: [Int]) throws -> [Float] {
        try run(newTokens, everyPosition: false)
        return try logits.read()
    }

    /// As `append`, but returns the logits of every new position (n, V): for tests.
    func appendReturningAllLogits(_ newTokens: [Int]) throws -> [Float] {
        try run(newTokens, everyPosition: true)
    }

    @discardableResult
    func run(_ newTokens: [Int], everyPosition: Bool) throws -> [Float] {
        let c = model.config
        guard !newTokens.isEmpty else { throw InferenceError.empty }
        guard tokens.count + newTokens.count <= maxTokens else {
            throw InferenceError.tooLong(tokens: tokens.count + newTokens.count, limit: maxTokens, what: "the session's length")
        }
        if let bad = newTokens.first(where: { $0 < 0 || $0 >= c.vocabSize }) {
            throw InferenceError.tokenOutOfVocabulary(id: bad, vocabSize: c.vocabSize)
        }
        // LongRoPE (Phi-3): the run's last position decides the factors, as transformers decides them; the first
        // run to pass original_max_position_embeddings recomputes the cached positions with the long factors
        // (transformers' Phi3ForCausalLM.prepare_inputs_for_generation drops its cache there), and a run on a
        // cache truncated back below it recomputes them with the short ones (as a fresh generate would).
        let long = model.config.rope.usesLongFactors(maxPosition: tokens.count + newTokens.count - 1)
        let rope = model.ropeTables(maxPosition: tokens.count + newTokens.count - 1)
        if long != cacheUsesLongFactors && !tokens.isEmpty {
            let cached = tokens
            tokens = []
            _ = try feed(cached, everyPosition: false, rope: rope)
        }
        cacheUsesLongFactors = long
        let out = try feed(newTokens, everyPosition: everyPosition, rope: rope)
        try lastLogits(row: (newTokens.count - 1) % chunkTokens)
        return out
    }

    /// Runs `newTokens` chunk by chunk with the given RoPE tables; every new position's logits when `everyPosition`.
    func feed(_ newTokens: [Int], everyPosition: Bool, rope: (cos: DeviceBuffer<Float>, sin: DeviceBuffer<Float>)) throws -> [Float] {
        var out: [Float] = []
        var start = 0
        while start < newTokens.count {
            let n = min(chunkTokens, newTokens.count - start)
            let chunk = Array(newTokens[start..<(start + n)])
            try forwardChunk(chunk, rope: rope)
            tokens += chunk
            if everyPosition { out += try chunkLogits(rows: n) }
            start += n
        }
        return out
    }

    /// Embedding and every layer for n ≤ chunkTokens tokens at positions p0 = length …
    func forwardChunk(_ chunk: [Int], rope: (cos: DeviceBuffer<Float>, sin: DeviceBuffer<Float>)) throws {
        let m = model, c = m.config, ctx = m.ctx, n = chunk.count, p0 = tokens.count
        let H = c.hiddenSize, eps = Float(c.rmsNormEps)
        var idRow = chunk.map { Int32($0) }, posRow = (0..<n).map { Int32(p0 + $0) }
        idRow += [Int32](repeating: 0, count: chunkTokens - n)
        posRow += [Int32](repeating: 0, count: chunkTokens - n)
        try ids.write(idRow)
        try positions.write(posRow)
        // x0 = E[ids] (+ s·A_emb[:, ids]ᵀ·B_embᵀ), as in training's embed().
        try m.embedTokens(out: x, ids: ids, tokens: n)
        if let scale = m.embeddingScale { try ctx.scale(x, by: scale, count: n * H) }
        if let e = m.embeddingLoRA, let after = embedAfterA {
            let r = e.settings.rank
            try ctx.embeddingForward(out: after, ids: ids, table: e.a.param, layout: .transposed(rows: c.vocabSize),
                                     tokens: n, cols: r)
            try ctx.matmul(x, after, e.b.param, m: n, n: H, k: r, transB: .transposed,
                           alpha: e.settings.scale * (m.embeddingScale ?? 1), beta: 1)
        }
        for (l, L) in m.layers.enumerated() {
            // x += o(attn(norm(x))) over the cache; x += down(act(gate) ⊙ up)(norm(x)) (Gemma 3: each branch normed first).
            try ctx.rmsnormForward(y: h, rstd: rstd, x: x, weight: L.inputNorm, rows: n, cols: H, eps: eps)
            let qd = c.numHeads * c.headDim, kvd = c.numKVHeads * c.headDim
            if let qkv = L.qkv, let fused {
                // Phi-3: one q|k|v projection, split into its parts.
                try project(qkv, y: fused, x: h, tokens: n)
                try ctx.splitColumns(fused, rows: n, into: [(q, qd), (k, kvd), (v, kvd)])
            } else if let qp = L.q, let kp = L.k, let vp = L.v {
                if let qn = L.qNorm, let kn = L.kNorm, let headRstd {
                    // Per-head q/k norms (Qwen3), the projection in attn (free until attention) then normed into q / k.
                    try project(qp, y: attn, x: h, tokens: n)
                    try ctx.rmsnormForward(y: q, rstd: headRstd, x: attn, weight: qn, rows: n * c.numHeads, cols: c.headDim, eps: eps)
                    try project(kp, y: attn, x: h, tokens: n)
                    try ctx.rmsnormForward(y: k, rstd: headRstd, x: attn, weight: kn, rows: n * c.numKVHeads, cols: c.headDim, eps: eps)
                } else {
                    try project(qp, y: q, x: h, tokens: n)
                    try project(kp, y: k, x: h, tokens: n)
                }
                try project(vp, y: v, x: h, tokens: n)
            }
            // The run's tables (LongRoPE's long or short factors), or the sliding layers' own (Gemma 3).
            try m.rotate(q: q, k: k, layer: l, positions: positions, tables: c.usesSlidingRope(layer: l) ? (m.ropeSliding ?? rope) : rope,
                         tokens: n, inverse: false)
            try ctx.kvCacheAppend(caches[l], k: k, v: v, tokens: n, position: p0)
            try ctx.decodeAttention(out: attn, q: q, cache: caches[l], heads: c.numHeads, tokens: n, position: p0,
                                    window: c.window(layer: l), scale: c.attentionScale.map(Float.init))
            if let norm = L.attnOutNorm, let branch {
                try project(L.o, y: branch, x: attn, tokens: n)
                try ctx.rmsnormForward(y: x, rstd: rstd, x: branch, weight: norm, rows: n, cols: H, eps: eps, beta: 1)
            } else {
                try project(L.o, y: x, x: attn, tokens: n, beta: 1)
            }
            try ctx.rmsnormForward(y: h, rstd: rstd, x: x, weight: L.postNorm, rows: n, cols: H, eps: eps)
            let I = c.intermediateSize
            if let gateUp = L.gateUp, let fused {
                try project(gateUp, y: fused, x: h, tokens: n)
                try ctx.splitColumns(fused, rows: n, into: [(gate, I), (up, I)])
            } else if let gp = L.gate, let upp = L.up {
                try project(gp, y: gate, x: h, tokens: n)
                try project(upp, y: up, x: h, tokens: n)
            }
            try ctx.gatedForward(c.activation, out: act, gate: gate, up: up, count: n * c.intermediateSize)
            if let norm = L.mlpOutNorm, let branch {
                try project(L.down, y: branch, x: act, tokens: n)
                try ctx.rmsnormForward(y: x, rstd: rstd, x: branch, weight: norm, rows: n, cols: H, eps: eps, beta: 1)
            } else {
                try project(L.down, y: x, x: act, tokens: n, beta: 1)
            }
        }
    }

    /// logits (V) = lm_head(norm(x[row])) of the last chunk's `row`.
    func lastLogits(row: Int) throws {
        let m = model, c = m.config, H = c.hiddenSize
        try last.copy(from: x, count: H, sourceOffset: row * H)
        try m.ctx.rmsnormForward(y: lastNormed, rstd: lastRstd, x: last, weight: m.finalNorm, rows: 1, cols: H,
                                 eps: Float(c.rmsNormEps))
        try project(m.lmHead, y: logits, x: lastNormed, tokens: 1)
        try capLogits(logits, rows: 1)
    }

    /// The final-logit soft-capping (Gemma) on `rows` rows of logits, in place.
    func capLogits(_ buffer: DeviceBuffer<Float>, rows: Int) throws {
        guard model.config.logitSoftcap != nil else { return }
        // Sized for the rows asked (one in decoding; a chunk's for every position's logits), grown when more are.
        let need = rows * model.config.vocabSize
        let t = try softcapTanh.flatMap { $0.count >= need ? $0 : nil } ?? model.ctx.buffer(count: need)
        softcapTanh = t
        try model.capLogits(buffer, rows: rows, tanh: t)
    }

    /// Logits (rows, V) of every row of the chunk just run.
    func chunkLogits(rows n: Int) throws -> [Float] {
        let m = model, c = m.config, H = c.hiddenSize, V = c.vocabSize
        let buf = try allLogits ?? m.ctx.buffer(count: chunkTokens * V)
        allLogits = buf
        try m.ctx.rmsnormForward(y: h, rstd: rstd, x: x, weight: m.finalNorm, rows: n, cols: H, eps: Float(c.rmsNormEps))
        try project(m.lmHead, y: buf, x: h, tokens: n)
        try capLogits(buf, rows: n)
        return Array(try buf.read()[0..<(n * V)])
    }
}
