import OpenCLRuntime

/// Tokens grouped by id, built on the host when a batch is made (ids are known
/// then): the deterministic, atomic-free layout of the embedding backward.
public struct TokenGroups {
    public let uniqueIDs: DeviceBuffer<Int32>   // (U)
    public let offsets: DeviceBuffer<Int32>     // (U+1)
    public let tokens: DeviceBuffer<Int32>      // (N), token positions grouped by id
    public let uniqueCount: Int

    /// `excluding`: an id left out of the groups (an embedding's padding_idx, whose row takes no gradient in PyTorch).
    public init(_ ctx: ComputeContext, ids: [Int32], excluding: Int32? = nil) throws {
        guard ids.count <= Int(Int32.max) else {
            throw OpError(op: "TokenGroups", detail: "\(ids.count) tokens exceed the kernels' 32-bit index range")
        }
        var byID: [Int32: [Int32]] = [:]
        for (n, id) in ids.enumerated() where id != excluding { byID[id, default: []].append(Int32(truncatingIfNeeded: n)) }
        let keys = byID.keys.sorted()
        var offsets: [Int32] = [0], tokens: [Int32] = []
        for k in keys {
            tokens += byID[k]!
            offsets.append(Int32(truncatingIfNeeded: tokens.count))  // ≤ ids.count
        }
        uniqueIDs = try DeviceBuffer(queue: ctx.queue, keys)
        self.offsets = try DeviceBuffer(queue: ctx.queue, offsets)
        self.tokens = try DeviceBuffer(queue: ctx.queue, tokens)
        uniqueCount = keys.count
    }
}

/// How a (rows, cols) table is laid out in memory: element (row, col) at
/// row·rowStride + col·colStride.
public struct TableLayout: Sendable {
    public let rowStride: Int
    public let colStride: Int
    public init(rowStride: Int, colStride: Int) { self.rowStride = rowStride; self.colStride = colStride }
    /// A row-major (rows, cols) table.
    public static func rows(cols: Int) -> TableLayout { TableLayout(rowStride: cols, colStride: 1) }
    /// The transpose view of a row-major (cols, rows) table (PEFT's lora_embedding_A (r, V)).
    public static func transposed(rows: Int) -> TableLayout { TableLayout(rowStride: 1, colStride: rows) }
}

extension ComputeContext {
    // MARK: embedding

    /// out (N,C)[n] = table[ids[n]] under `layout`.
    public func embeddingForward(out: DeviceBuffer<Float>, ids: DeviceBuffer<Int32>, table: DeviceBuffer<Float>,
                                 layout: TableLayout, tokens n: Int, cols c: Int) throws {
        opLock.lock(); defer { opLock.unlock() }
        try requireCount(out, atLeast: n * c, "embeddingForward", "out")
        try launch("embedding_forward", [i32(n), i32(c), .buffer(ids), .buffer(table), i32(layout.rowStride),
                                         i32(layout.colStride), .buffer(out)],
                   global: [c, n], local: [min(c, config.elementwiseLocal), 1])
    }

    /// dtable[id] = beta·dtable[id] + Σ_{n: ids[n]=id} dout[n] for the ids present.
    public func embeddingBackward(dtable: DeviceBuffer<Float>, layout: TableLayout, dout: DeviceBuffer<Float>,
                                  groups: TokenGroups, cols c: Int, beta: Float) throws {
        opLock.lock(); defer { opLock.unlock() }
        guard groups.uniqueCount > 0 else { return }   // every id excluded: nothing to add
        try launch("embedding_backward", [i32(groups.uniqueCount), i32(c), .buffer(groups.uniqueIDs),
                                          .buffer(groups.offsets), .buffer(groups.tokens), .buffer(dout),
                                          .float(beta), .buffer(dtable), i32(layout.rowStride), i32(layout.colStride)],
                   global: [c, groups.uniqueCount], local: [min(c, config.elementwiseLocal), 1])
    }

    // MARK: RoPE

    /// Rotates x (N, heads, headDim) in place by the angles of `positions`;
    /// `inverse` rotates back (the backward).
    /// x (N, heads, D) rotated in place by the (P, rotaryDim) tables: the first rotaryDim values of
    /// each head (all of them by default; fewer with partial rotary), the rest unchanged.
    public func rope(_ x: DeviceBuffer<Float>, positions: DeviceBuffer<Int32>, cos: DeviceBuffer<Float>,
                     sin: DeviceBuffer<Float>, tokens n: Int, heads: Int, headDim d: Int, rotaryDim: Int? = nil,
                     inverse: Bool) throws {
        opLock.lock(); defer { opLock.unlock() }
        let r = rotaryDim ?? d
        try require(d % 2 == 0, "rope", "head_dim must be even, got \(d)")
        try require(r % 2 == 0 && r >= 2 && r <= d, "rope", "rotary_dim must be even and in 2…\(d), got \(r)")
        try requireCount(x, atLeast: n * heads * d, "rope", "x")
        try launch("rope_apply", [i32(n), i32(heads), i32(d), i32(r), .buffer(positions), .buffer(cos), .buffer(sin),
                                  .float(inverse ? -1 : 1), .buffer(x)],
                   global: [r / 2, heads, n], local: [1, 1, 1])
    }

    /// A fused (rows, Σ widths) matrix's column blocks into their own (rows, width) matrices, in order: a fused
    /// projection's output split into its parts (q|k|v, gate|up).
    public func splitColumns(_ fused: DeviceBuffer<Float>, rows: Int, into parts: [(DeviceBuffer<Float>, Int)]) throws {
        let total = parts.reduce(0) { $0 + $1.1 }
        var offset = 0
        for (part, width) in parts {
            try copyColumns(from: fused, sourceStride: total, sourceOffset: offset, to: part, destinationStride: width, rows: rows, width: width)
            offset += width
        }
    }

    /// splitColumns' inverse: the parts' columns, in order, into a (rows, `width`) fused matrix from column `offset`
    /// on (the parts' gradients joined for the fused projection's backward).
    public func joinColumns(_ parts: [(DeviceBuffer<Float>, Int)], rows: Int, into fused: DeviceBuffer<Float>, width total: Int,
                            offset: Int = 0) throws {
        var column = offset
        for (part, width) in parts {
            try copyColumns(from: part, sourceStride: width, to: fused, destinationStride: total, destinationOffset: column, rows: rows, width: width)
            column += width
        }
    }

    /// dst[r·dstStride + dstOffset + c] = src[r·srcStride + srcOffset + c] for r < rows, c < width: a column
    /// block of one (rows, ·) matrix into another — a fused projection's output (q|k|v, gate|up) split into
    /// its parts, and their gradients joined back. Nothing else of dst is written.
    public func copyColumns(from src: DeviceBuffer<Float>, sourceStride: Int, sourceOffset: Int = 0,
                            to dst: DeviceBuffer<Float>, destinationStride: Int, destinationOffset: Int = 0,
                            rows: Int, width: Int) throws {
        opLock.lock(); defer { opLock.unlock() }
        let op = "copyColumns"
        try require(rows >= 1 && width >= 1, op, "sizes must be ≥ 1 (rows=\(rows), width=\(width))")
        try require(sourceOffset >= 0 && sourceOffset + width <= sourceStride, op,
                    "source columns \(sourceOffset)..<\(sourceOffset + width) past its stride \(sourceStride)")
        try require(destinationOffset >= 0 && destinationOffset + width <= destinationStride, op,
                    "destination columns \(destinationOffset)..<\(destinationOffset + width) past its stride \(destinationStride)")
        try requireCount(src, atLeast: rows * sourceStride, op, "src")
        try requireCount(dst, atLeast: rows * destinationStride, op, "dst")
        try launch("copy_columns", [i32(rows), i32(sourceStride), i32(sourceOffset), i32(destinationStride), i32(destinationOffset),
                                    i32(width), .buffer(src), .buffer(dst)],
                   global: [width, rows], local: [1, 1])
    }

    // MARK: attention

    public struct AttentionShape: Sendable {
        public let batch, seq, heads, kvHeads, headDim: Int
        /// The scores' scale: 1/√D unless given (Gemma 3's query_pre_attn_scalar^-½).
        public let scale: Float
        public init(batch: Int, seq: Int, heads: Int, kvHeads: Int, headDim: Int, scale: Float? = nil) {
            self.batch = batch; self.seq = seq; self.heads = heads; self.kvHeads = kvHeads; self.headDim = headDim
            self.scale = scale ?? 1 / Float(headDim).squareRoot()
        }
        var tokens: Int { batch * seq }

        /// The attention kernels' segment starts (B·T) from per-token sample ids
        /// (B·T): for token t of a row, the index of the first token of the run of
        /// equal ids that holds t. Each id must form one contiguous run within its
        /// row (a sample cannot resume after another); ids may repeat across rows.
        public func segmentStarts(sequenceIDs ids: [Int]) throws -> [Int32] {
            try require(ids.count == tokens, "attention", "sequence ids have \(ids.count) elements, expected \(batch)×\(seq)")
            try require(seq <= Int(Int32.max), "attention", "sequence length \(seq) does not fit the kernels' int")
            var starts = [Int32](repeating: 0, count: tokens)
            for b in 0..<batch {
                var seen = Set<Int>(), start = 0
                for t in 0..<seq {
                    let id = ids[b * seq + t]
                    if t > 0 && id != ids[b * seq + t - 1] {
                        start = t
                        try require(!seen.contains(id), "attention",
                                    "sequence id \(id) of row \(b) reappears at token \(t) after another sample: samples must be contiguous")
                    }
                    seen.insert(id)
                    starts[b * seq + t] = Int32(truncatingIfNeeded: start)   // start < seq ≤ Int32.max
                }
            }
            return starts
        }

        /// The first key each query may attend under a sliding window W (transformers: key j with t − j < W),
        /// within its sample: max(sample start, t − W + 1). Still non-decreasing along a row, so the attention
        /// kernels take it as sample starts: no kernel of their own needed. `starts`: the sample starts (nil: 0).
        public func windowStarts(_ starts: [Int32]?, window: Int) throws -> [Int32] {
            try require(window >= 1, "attention", "sliding window must be ≥ 1, got \(window)")
            var out = [Int32](repeating: 0, count: tokens)
            for b in 0..<batch {
                for t in 0..<seq {
                    out[b * seq + t] = Int32(max(Int(starts?[b * seq + t] ?? 0), t - window + 1))
                }
            }
            return out
        }
    }

    private func checkAttention(_ s: AttentionShape) throws {
        try require(s.heads % s.kvHeads == 0, "attention", "heads \(s.heads) not a multiple of kv heads \(s.kvHeads)")
        try require(s.headDim <= 256, "attention", "head_dim \(s.headDim) > 256 is not supported")
    }

    /// x (B·T, H, D) → panels (B, H, Tp/16, D, 16) in scratch `slot`, Tp = T rounded up to 16, zero-padded.
    private func transposeHeads(_ x: DeviceBuffer<Float>, heads: Int, shape s: AttentionShape, slot: Int) throws -> DeviceBuffer<Float> {
        let tp = (s.seq + 15) / 16 * 16
        let out = try scratch(slot, count: s.batch * heads * s.headDim * tp)
        try launch("attention_transpose", [i32(s.batch), i32(s.seq), i32(heads), i32(s.headDim), i32(tp), .buffer(x), .buffer(out)],
                   global: [tp / 16, heads, s.batch], local: [1, 1, 1])
        return out
    }

    /// The kernels' (packed, seg) arguments: with no segment starts every row is
    /// one sample and the kernels never read the buffer (q stands in for it).
    private func segmentArguments(_ segmentStarts: DeviceBuffer<Int32>?, standIn: DeviceBuffer<Float>,
                                  shape s: AttentionShape) throws -> [KernelArgument] {
        guard let seg = segmentStarts else { return [.int(0), .buffer(standIn)] }
        try require(seg.count >= s.tokens, "attention", "segmentStarts has \(seg.count) elements, needs \(s.tokens)")
        return [.int(1), .buffer(seg)]
    }

    /// Causal GQA attention: out (B·T, NH, D), lse (B, NH, T) kept for backward.
    /// `segmentStarts` (B·T), for packed rows: per token the index within its row
    /// of its sample's first token; query t then attends keys segmentStarts[t]…t
    /// only. Samples must be contiguous (starts non-decreasing along a row, each
    /// start ≤ its token's index: the caller builds them, see TokenBatch).
    /// One work-item per `config.attentionQueryRows` query rows of a head.
    public func attentionForward(out: DeviceBuffer<Float>, lse: DeviceBuffer<Float>, q: DeviceBuffer<Float>,
                                 k: DeviceBuffer<Float>, v: DeviceBuffer<Float>, shape s: AttentionShape,
                                 segmentStarts: DeviceBuffer<Int32>? = nil) throws {
        opLock.lock(); defer { opLock.unlock() }
        try checkAttention(s)
        let seg = try segmentArguments(segmentStarts, standIn: q, shape: s)
        let kt = try transposeHeads(k, heads: s.kvHeads, shape: s, slot: 30)
        let tp = (s.seq + 15) / 16 * 16
        let mq = config.attentionQueryRows
        try launch("attention_forward", [i32(s.batch), i32(s.seq), i32(s.heads), i32(s.kvHeads), i32(s.headDim), i32(tp),
                                         .float(s.scale), .buffer(q), .buffer(kt), .buffer(v)] + seg + [.buffer(out), .buffer(lse)],
                   global: [(s.seq + mq - 1) / mq, s.heads, s.batch], local: [1, 1, 1])
    }

    /// dq, dk, dv from dout; `delta` (B, NH, T) is scratch; `segmentStarts` as in the forward.
    /// One work-item per query head sweeps every (query, key) pair of it once (dq, dk, dv
    /// together, `config.attentionKeyRows` keys × 16 queries per tile); with grouped KV
    /// heads each head's dk/dv go to scratch and are summed per group.
    public func attentionBackward(dq: DeviceBuffer<Float>, dk: DeviceBuffer<Float>, dv: DeviceBuffer<Float>,
                                  delta: DeviceBuffer<Float>, dout: DeviceBuffer<Float>, out: DeviceBuffer<Float>,
                                  lse: DeviceBuffer<Float>, q: DeviceBuffer<Float>, k: DeviceBuffer<Float>,
                                  v: DeviceBuffer<Float>, shape s: AttentionShape,
                                  segmentStarts: DeviceBuffer<Int32>? = nil) throws {
        opLock.lock(); defer { opLock.unlock() }
        try checkAttention(s)
        let seg = try segmentArguments(segmentStarts, standIn: q, shape: s)
        let tp = (s.seq + 15) / 16 * 16
        // The sweep writes q and dout as panels here itself (each work-item its own head's rows).
        let qt = try scratch(32, count: s.batch * s.heads * s.headDim * tp)
        let dt = try scratch(33, count: s.batch * s.heads * s.headDim * tp)
        let grouped = s.heads != s.kvHeads
        let partial = s.tokens * s.heads * s.headDim
        let dkp = grouped ? try scratch(34, count: partial) : dk
        let dvp = grouped ? try scratch(35, count: partial) : dv
        try launch("attention_backward", [i32(s.batch), i32(s.seq), i32(s.heads), i32(s.kvHeads), i32(s.headDim), i32(tp),
                                          .float(s.scale), .buffer(q), .buffer(k), .buffer(v), .buffer(dout),
                                          .buffer(qt), .buffer(dt), .buffer(out), .buffer(lse), .buffer(delta)] + seg
                                            + [.buffer(dq), .buffer(dkp), .buffer(dvp)],
                   global: [s.heads, s.batch], local: [1, 1])
        if grouped {
            try launch("attention_backward_reduce", [i32(s.tokens), i32(s.heads), i32(s.kvHeads), i32(s.headDim),
                                                     .buffer(dkp), .buffer(dvp), .buffer(dk), .buffer(dv)],
                       global: [s.kvHeads, s.tokens], local: [1, 1])
        }
    }

    // MARK: cross-entropy

    /// On rows [rowOffset, rowOffset+R) of the batch: logits (R,V) are replaced by
    /// dlogits = (softmax − onehot)/count; losses[rowOffset + r] = lse − logit[target].
    public func crossEntropy(logits: DeviceBuffer<Float>, losses: DeviceBuffer<Float>, targets: DeviceBuffer<Int32>,
                             rowOffset: Int, rows r: Int, vocab v: Int, countedTokens: Int) throws {
        opLock.lock(); defer { opLock.unlock() }
        try requireCount(logits, atLeast: r * v, "crossEntropy", "logits")
        let wg = config.rowWorkGroup
        try launch("cross_entropy_fused", [i32(r), i32(v), i32(rowOffset), .buffer(targets),
                                           .float(countedTokens > 0 ? 1 / Float(countedTokens) : 0),
                                           .buffer(logits), .buffer(losses)],
                   global: [r * wg], local: [wg])
    }

    /// The losses of real-valued targets (a classifier's regression or
    /// multi-label head), on rows [rowOffset, rowOffset+R): logits (R, C) are
    /// replaced by dl/dx / (count·C), losses[rowOffset + r] = Σ_c l / C; `targets`
    /// holds C values per counted row. See crossentropy.cl's real_target_loss.
    public enum RealTargetLoss: Int32, Sendable { case meanSquaredError = 0, binaryCrossEntropyWithLogits = 1 }

    public func realTargetLoss(_ kind: RealTargetLoss, logits: DeviceBuffer<Float>, losses: DeviceBuffer<Float>,
                               targets: DeviceBuffer<Float>, rowOffset: Int, rows r: Int, columns c: Int,
                               countedRows: Int) throws {
        opLock.lock(); defer { opLock.unlock() }
        try requireCount(logits, atLeast: r * c, "realTargetLoss", "logits")
        try requireCount(targets, atLeast: (rowOffset + r) * c, "realTargetLoss", "targets")
        try requireCount(losses, atLeast: rowOffset + r, "realTargetLoss", "losses")
        guard r > 0 else { return }
        try launch("real_target_loss", [i32(r), i32(c), i32(rowOffset), .int(kind.rawValue), .buffer(targets),
                                        .float(countedRows > 0 ? 1 / Float(countedRows) : 0),
                                        .buffer(logits), .buffer(losses)],
                   global: [r], local: [1])
    }

    // MARK: reductions and the optimizer

    static let reductionWidth = 256

    /// out[slot] = Σ x (or Σ x² when `squares`), on the device, deterministic.
    /// `accumulate`: out[slot] += the sum (a sum over several buffers).
    public func sum(_ x: DeviceBuffer<Float>, count n: Int, squares: Bool, into out: DeviceBuffer<Float>, slot: Int = 0,
                    accumulate: Bool = false) throws {
        opLock.lock(); defer { opLock.unlock() }
        let g = Self.reductionWidth
        let partial = try scratch(20, count: g)
        try launch("sum_partial", [i32(n), i32(squares ? 1 : 0), .buffer(x), .buffer(partial)], global: [g], local: [1])
        try launch("sum_finalize", [i32(g), .buffer(partial), i32(slot), i32(accumulate ? 1 : 0), .buffer(out)],
                   global: [1], local: [1])
    }

    public struct AdamWHyper: Sendable {
        public var lr: Float, beta1: Float, beta2: Float, eps: Float, weightDecay: Float
        /// 0 disables clipping.
        public var maxGradNorm: Float
        public init(lr: Float, beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-8, weightDecay: Float = 0,
                    maxGradNorm: Float = 0) {
            self.lr = lr; self.beta1 = beta1; self.beta2 = beta2; self.eps = eps; self.weightDecay = weightDecay
            self.maxGradNorm = maxGradNorm
        }
    }

    /// One AdamW step (1-based `step`) over the flat parameter buffer; the
    /// gradient norm squared is read from `gradSumSquares[slot]` on the device.
    public func adamw(params: DeviceBuffer<Float>, grads: DeviceBuffer<Float>, m: DeviceBuffer<Float>,
                      v: DeviceBuffer<Float>, decayMask: DeviceBuffer<UInt8>, count n: Int, step: Int,
                      hyper h: AdamWHyper, gradSumSquares: DeviceBuffer<Float>, slot: Int = 0) throws {
        opLock.lock(); defer { opLock.unlock() }
        // torch computes the bias corrections in Python (double) from the decimal betas.
        let b1 = Double(String(h.beta1))!, b2 = Double(String(h.beta2))!
        let bc1 = Float(1 - b1.power(step))
        let bc2 = 1 - b2.power(step)
        try launch("adamw_step", [i32(n), .buffer(params), .buffer(grads), .buffer(m), .buffer(v), .buffer(decayMask),
                                  .float(h.lr), .float(h.beta1), .float(h.beta2), .float(h.eps), .float(h.weightDecay),
                                  .float(bc1), .float(Float(bc2.squareRoot())), .float(h.maxGradNorm),
                                  .buffer(gradSumSquares), i32(slot)],
                   global: [n], local: [config.elementwiseLocal])
    }

    // MARK: elementwise

    /// fp16 / bf16 bits (n) → fp32 on the device.
    public func convertHalf(_ src: DeviceBuffer<UInt16>, to dst: DeviceBuffer<Float>, count n: Int, bfloat: Bool) throws {
        opLock.lock(); defer { opLock.unlock() }
        try launch(bfloat ? "bf16_to_f32" : "f16_to_f32", [i32(n), .buffer(src), .buffer(dst)],
                   global: [n], local: [config.elementwiseLocal])
    }
}

extension Double {
    func power(_ n: Int) -> Double { (0..<n).reduce(1.0) { acc, _ in acc * self } }
}
