import OpenCLRuntime

/// One layer's key/value cache for one sequence on the device:
/// kt (NKV, D, C) keys transposed, v (NKV, C, D), capacity C = maxTokens
/// rounded up to 16. Zero-filled when made (see Kernels/decode.cl).
public final class KVCache {
    public let kvHeads: Int
    public let headDim: Int
    /// Positions the cache can hold.
    public let maxTokens: Int
    /// The row stride of kt: maxTokens rounded up to 16.
    public let capacity: Int
    public let keys: DeviceBuffer<Float>
    public let values: DeviceBuffer<Float>

    public init(_ ctx: ComputeContext, kvHeads: Int, headDim: Int, maxTokens: Int) throws {
        try require(kvHeads >= 1 && headDim >= 1 && maxTokens >= 1, "KVCache",
                    "kv heads (\(kvHeads)), head_dim (\(headDim)) and length (\(maxTokens)) must be ≥ 1")
        self.kvHeads = kvHeads
        self.headDim = headDim
        self.maxTokens = maxTokens
        capacity = (maxTokens + 15) / 16 * 16
        keys = try ctx.buffer(count: kvHeads * headDim * capacity)
        values = try ctx.buffer(count: kvHeads * capacity * headDim)
        try keys.fill(0)
        try values.fill(0)
    }
}

extension ComputeContext {
    /// Writes k, v (n, NKV, D) (k after RoPE) into `cache` at positions p0 … p0+n−1.
    public func kvCacheAppend(_ cache: KVCache, k: DeviceBuffer<Float>, v: DeviceBuffer<Float>, tokens n: Int,
                              position p0: Int) throws {
        opLock.lock(); defer { opLock.unlock() }
        let op = "kvCacheAppend", kvd = cache.kvHeads * cache.headDim
        try require(n >= 1, op, "tokens must be ≥ 1, got \(n)")
        try require(p0 >= 0 && p0 + n <= cache.maxTokens, op,
                    "positions \(p0)..<\(p0 + n) exceed the cache length \(cache.maxTokens)")
        try requireCount(k, atLeast: n * kvd, op, "k")
        try requireCount(v, atLeast: n * kvd, op, "v")
        try launch("kv_cache_append", [try i32(n), try i32(cache.kvHeads), try i32(cache.headDim), try i32(cache.capacity), try i32(p0),
                                       .buffer(k), .buffer(v), .buffer(cache.keys), .buffer(cache.values)],
                   global: [cache.headDim, cache.kvHeads, n], local: [1, 1, 1])
    }

    /// Keys per split of `decodeAttention` (a multiple of 16): enough splits that
    /// n·NH·S work-items fill the device (a few per core on pocl, ~1k on a GPU),
    /// never fewer than 16 keys each.
    public func decodeKeysPerSplit(queries n: Int, heads: Int, keys: Int) -> Int {
        let target = config.rowWorkGroup > 1 ? 1024 : 16
        let blocks = max(1, (keys + 15) / 16)
        let wantSplits = max(1, min(blocks, target / max(n * heads, 1)))
        return 16 * ((blocks + wantSplits - 1) / wantSplits)
    }

    /// Attention of n new queries q (n, NH, D) (after RoPE) at positions p0 … p0+n−1
    /// over the cached keys 0 … p0+i (the new keys already appended): out (n, NH, D).
    /// `keysPerSplit` (a multiple of 16) overrides the split size, for tests. With more
    /// than one split the partials live in scratch slots 40 (acc) and 41 (m, l).
    /// `window`: a sliding window W (query at position p attends keys j > p − W), nil for none.
    /// `scale`: the scores' scale, 1/√D unless given.
    public func decodeAttention(out: DeviceBuffer<Float>, q: DeviceBuffer<Float>, cache: KVCache, heads: Int,
                                tokens n: Int, position p0: Int, keysPerSplit: Int? = nil, window: Int? = nil,
                                scale given: Float? = nil) throws {
        opLock.lock(); defer { opLock.unlock() }
        let op = "decodeAttention", D = cache.headDim, NKV = cache.kvHeads
        try require(n >= 1, op, "tokens must be ≥ 1, got \(n)")
        try require(heads >= 1 && heads % NKV == 0, op, "heads \(heads) not a multiple of kv heads \(NKV)")
        try require(D <= 256, op, "head_dim \(D) > 256 is not supported")
        try require(p0 >= 0 && p0 + n <= cache.maxTokens, op,
                    "positions \(p0)..<\(p0 + n) exceed the cache length \(cache.maxTokens)")
        try requireCount(q, atLeast: n * heads * D, op, "q")
        try requireCount(out, atLeast: n * heads * D, op, "out")
        let total = p0 + n
        let split = keysPerSplit ?? decodeKeysPerSplit(queries: n, heads: heads, keys: total)
        try require(split >= 16 && split % 16 == 0, op, "keysPerSplit must be a positive multiple of 16, got \(split)")
        let S = (total + split - 1) / split
        let scale = given ?? 1 / Float(D).squareRoot()
        try require((window ?? 1) >= 1, op, "window must be ≥ 1, got \(window ?? 0)")
        let w = try i32(window ?? 0)
        if S == 1 {
            try launch("decode_attention_partial", [try i32(n), try i32(heads), try i32(NKV), try i32(D), try i32(cache.capacity), try i32(p0),
                                                    try i32(split), try i32(1), .float(scale), try i32(1), w, .buffer(q),
                                                    .buffer(cache.keys), .buffer(cache.values), .buffer(out), .buffer(out)],
                       global: [1, heads, n], local: [1, 1, 1])
            return
        }
        let acc = try scratch(40, count: n * heads * S * D)
        let ml = try scratch(41, count: n * heads * S * 2)
        try launch("decode_attention_partial", [try i32(n), try i32(heads), try i32(NKV), try i32(D), try i32(cache.capacity), try i32(p0),
                                                try i32(split), try i32(S), .float(scale), try i32(0), w, .buffer(q),
                                                .buffer(cache.keys), .buffer(cache.values), .buffer(acc), .buffer(ml)],
                   global: [S, heads, n], local: [1, 1, 1])
        try launch("decode_attention_combine", [try i32(n), try i32(heads), try i32(D), try i32(S), .buffer(acc), .buffer(ml), .buffer(out)],
                   global: [D, heads, n], local: [1, 1, 1])
    }
}

/// A LoRA pair packed once for inference: Aᵀ (in, r) and Bᵀ (r, out) as
/// `gemm_packed` panels, so a decode step does not repack them per layer and
/// token (training's `loraForward` packs them on every call, since they change
/// every step). `repack` refreshes the panels after A or B changed.
public final class PackedLoRA {
    public let rank: Int
    public let inFeatures: Int
    public let outFeatures: Int
    public let scale: Float
    let aT: PackedMatrix
    let bT: PackedMatrix
    /// The fp32 buffers behind aT and bT, refilled by `repack`.
    private let aBuffer: DeviceBuffer<Float>
    private let bBuffer: DeviceBuffer<Float>

    public init(_ ctx: ComputeContext, a: DeviceBuffer<Float>, b: DeviceBuffer<Float>, inFeatures: Int, outFeatures: Int,
                settings: LoRASettings) throws {
        rank = settings.rank
        self.inFeatures = inFeatures
        self.outFeatures = outFeatures
        scale = settings.scale
        aBuffer = try ctx.buffer(count: PackedMatrix.count(k: inFeatures, n: rank))
        bBuffer = try ctx.buffer(count: PackedMatrix.count(k: rank, n: outFeatures))
        aT = try ctx.pack(a, k: inFeatures, n: rank, .transposed, into: aBuffer)
        bT = try ctx.pack(b, k: rank, n: outFeatures, .transposed, into: bBuffer)
    }

    public func repack(_ ctx: ComputeContext, a: DeviceBuffer<Float>, b: DeviceBuffer<Float>) throws {
        ctx.opLock.lock(); defer { ctx.opLock.unlock() }
        _ = try ctx.pack(a, k: inFeatures, n: rank, .transposed, into: aBuffer)
        _ = try ctx.pack(b, k: rank, n: outFeatures, .transposed, into: bBuffer)
    }
}

extension ComputeContext {
    /// The LoRA linear forward without dropout, from packed A and B:
    ///   u = x·Aᵀ (N,r);  y = x·Wᵀ + s·u·Bᵀ (+ bias) (+ beta·y).
    /// The same two `gemm_packed` launches as `loraForward` (the same sums).
    public func loraInferenceForward(y: DeviceBuffer<Float>, u: DeviceBuffer<Float>, x: DeviceBuffer<Float>,
                                     base: FrozenLinear, lora: PackedLoRA, bias: DeviceBuffer<Float>?,
                                     tokens n: Int, beta: Float = 0) throws {
        opLock.lock(); defer { opLock.unlock() }
        let op = "loraInferenceForward", r = lora.rank, din = base.inFeatures
        try require(n >= 1, op, "tokens must be ≥ 1")
        try require(lora.inFeatures == din && lora.outFeatures == base.outFeatures, op,
                    "LoRA shape (\(lora.outFeatures), \(lora.inFeatures)) differs from the base (\(base.outFeatures), \(din))")
        try requireCount(x, atLeast: n * din, op, "x")
        try requireCount(u, atLeast: n * r, op, "u")
        try gemm(u, m: n, alpha: 1, a: StridedOperand(x, rows: n, cols: din, .none), b: lora.aT, ext: nil, bias: nil, beta: 0)
        try frozenProduct(y: y, x: x, base: base, tokens: n,
                          ext: GemmExtension(a: StridedOperand(u, rows: n, cols: r, .none), b: lora.bT, alpha: lora.scale),
                          bias: bias, beta: beta)
    }
}
