import LoraOps
import OpenCLRuntime

/// One decoder layer's saved activations for a (B, T) batch, N = B·T.
final class LayerActivations {
    let h1, xMid, h2: DeviceBuffer<Float>            // (N, H)
    let q, attn: DeviceBuffer<Float>                  // (N, NH·D), q after RoPE
    let k, v: DeviceBuffer<Float>                     // (N, NKV·D), k after RoPE
    let gate, up, act: DeviceBuffer<Float>            // (N, I)
    let rstd1, rstd2: DeviceBuffer<Float>             // (N)
    let lse: DeviceBuffer<Float>                      // (B, NH, T)
    /// With per-head q/k norms (Qwen3): the projections before the norm, q (N, NH·D) and k (N, NKV·D),
    /// and the norms' 1/rms per head row, (N·NH) and (N·NKV); nil otherwise.
    let qPre, kPre, rstdQ, rstdK: DeviceBuffer<Float>?
    /// With sandwich norms (Gemma 3): o_proj's and down_proj's outputs before their norms (N, H), and those
    /// norms' 1/rms (N); nil otherwise.
    let oOut, mlpOut, rstdO, rstdM: DeviceBuffer<Float>?

    init(_ ctx: ComputeContext, _ c: ModelConfig, batch: Int, seq: Int) throws {
        let n = batch * seq, H = c.hiddenSize, I = c.intermediateSize
        let qd = c.numHeads * c.headDim, kvd = c.numKVHeads * c.headDim
        h1 = try ctx.buffer(count: n * H); xMid = try ctx.buffer(count: n * H); h2 = try ctx.buffer(count: n * H)
        q = try ctx.buffer(count: n * qd); attn = try ctx.buffer(count: n * qd)
        k = try ctx.buffer(count: n * kvd); v = try ctx.buffer(count: n * kvd)
        gate = try ctx.buffer(count: n * I); up = try ctx.buffer(count: n * I); act = try ctx.buffer(count: n * I)
        rstd1 = try ctx.buffer(count: n); rstd2 = try ctx.buffer(count: n)
        lse = try ctx.buffer(count: batch * c.numHeads * seq)
        qPre = c.qkNorm ? try ctx.buffer(count: n * qd) : nil
        kPre = c.qkNorm ? try ctx.buffer(count: n * kvd) : nil
        rstdQ = c.qkNorm ? try ctx.buffer(count: n * c.numHeads) : nil
        rstdK = c.qkNorm ? try ctx.buffer(count: n * c.numKVHeads) : nil
        let sandwich = c.architecture.traits.sandwichNorms
        oOut = sandwich ? try ctx.buffer(count: n * H) : nil
        mlpOut = sandwich ? try ctx.buffer(count: n * H) : nil
        rstdO = sandwich ? try ctx.buffer(count: n) : nil
        rstdM = sandwich ? try ctx.buffer(count: n) : nil
    }
}

/// Every activation and gradient buffer of a step, planned once per batch
/// shape and reused between steps. With gradient checkpointing only the
/// layer inputs are kept per layer and one LayerActivations is recomputed.
final class ActivationPlan {
    let batch, seq, tokens: Int
    let checkpointing: Bool
    let residual: [DeviceBuffer<Float>]               // L+1 layer inputs (N, H)
    let layers: [LayerActivations]
    let ids, positions, targets: DeviceBuffer<Int32>
    let segmentStarts: DeviceBuffer<Int32>            // (N) first token of each token's sample
    /// With sliding-window layers: each token's first attended key, max(sample start, t − W + 1) (N).
    let windowStarts: DeviceBuffer<Int32>?
    var packed: Bool                                  // whether attention reads segmentStarts
    /// The batch's tokens grouped by id for the embedding's backward, without padding_idx (pad_token_id: PyTorch's
    /// nn.Embedding gives that row no gradient, nor PEFT's LoRA A column, nor a modules_to_save copy's row).
    var groups: TokenGroups
    var countedTokens: Int
    /// An extractive-QA batch's (start, end) positions per row (2B), else nil.
    var answerPositions: [Int32]?
    /// A contrastive batch's layout, else nil.
    var contrastive: TokenBatch.Contrastive?
    var head: HeadRows                                // the rows lm_head and the loss run on
    let hf, rstdF: DeviceBuffer<Float>                // final norm out (N,H), (N)
    let embedAfterA: DeviceBuffer<Float>?             // (N, r) of the embedding LoRA
    // gradients and scratch
    let dres, dh, dhf: DeviceBuffer<Float>            // (N, H)
    let dq, dattn: DeviceBuffer<Float>                // (N, NH·D)
    let dk, dv: DeviceBuffer<Float>                   // (N, NKV·D)
    let dgate, dup, dact: DeviceBuffer<Float>         // (N, I)
    let delta: DeviceBuffer<Float>                    // (B, NH, T)
    /// A fused projection's output and its gradient (N, max(qd + 2·kvd, 2I)), Phi-3 only.
    let fused, dfused: DeviceBuffer<Float>?
    /// The gradient at o_proj's or down_proj's output through a sandwich norm (N, H), Gemma 3 only.
    let dbranch: DeviceBuffer<Float>?
    let dAfterA: DeviceBuffer<Float>?
    let chunkRows: Int
    let hfChunk, dhfChunk, logitsChunk: DeviceBuffer<Float>
    /// With final-logit soft-capping (Gemma): the chunk's tanh(logits / cap), kept for the backward (chunk, V).
    let softcapTanh: DeviceBuffer<Float>?
    let losses: DeviceBuffer<Float>                   // (N)
    let scalars: DeviceBuffer<Float>                  // [0] Σ loss, [1] ‖grad‖²

    init(model m: LlamaLoRAModel, batch b: TokenBatch) throws {
        let ctx = m.ctx, c = m.config
        batch = b.batch; seq = b.seq; tokens = b.tokens
        checkpointing = m.gradientCheckpointing
        let n = tokens, H = c.hiddenSize, I = c.intermediateSize
        let qd = c.numHeads * c.headDim, kvd = c.numKVHeads * c.headDim
        residual = try (0...c.numLayers).map { _ in try ctx.buffer(count: n * H) }
        let (bb, tt) = (b.batch, b.seq)
        layers = try (0..<(m.gradientCheckpointing ? 1 : c.numLayers)).map { _ in
            try LayerActivations(ctx, c, batch: bb, seq: tt)
        }
        ids = try DeviceBuffer(queue: ctx.queue, b.inputIDs)
        positions = try DeviceBuffer(queue: ctx.queue, b.positionIDs)
        segmentStarts = try DeviceBuffer(queue: ctx.queue, b.segmentStarts)
        windowStarts = c.slidingWindow != nil ? try DeviceBuffer(queue: ctx.queue, count: b.tokens) : nil
        packed = b.isPacked
        targets = try DeviceBuffer(queue: ctx.queue, b.targets)
        groups = try TokenGroups(ctx, ids: b.inputIDs, excluding: m.paddingIndex)
        countedTokens = b.countedTokens
        answerPositions = b.answerPositions
        contrastive = b.contrastive
        hf = try ctx.buffer(count: n * H); rstdF = try ctx.buffer(count: n)
        let er = m.embeddingLoRA?.settings.rank
        embedAfterA = try er.map { try ctx.buffer(count: n * $0) }
        dAfterA = try er.map { try ctx.buffer(count: n * $0) }
        dres = try ctx.buffer(count: n * H); dh = try ctx.buffer(count: n * H); dhf = try ctx.buffer(count: n * H)
        dq = try ctx.buffer(count: n * qd); dattn = try ctx.buffer(count: n * qd)
        dk = try ctx.buffer(count: n * kvd); dv = try ctx.buffer(count: n * kvd)
        dgate = try ctx.buffer(count: n * I); dup = try ctx.buffer(count: n * I); dact = try ctx.buffer(count: n * I)
        delta = try ctx.buffer(count: batch * c.numHeads * seq)
        fused = c.fusedProjections ? try ctx.buffer(count: n * c.fusedWidth) : nil
        dfused = c.fusedProjections ? try ctx.buffer(count: n * c.fusedWidth) : nil
        dbranch = c.architecture.traits.sandwichNorms ? try ctx.buffer(count: n * H) : nil
        chunkRows = Self.chunkRows(m, tokens: n)
        head = try HeadRows(ctx, batch: b, chunkRows: chunkRows)
        hfChunk = try ctx.buffer(count: chunkRows * H)
        dhfChunk = try ctx.buffer(count: chunkRows * H)
        logitsChunk = try ctx.buffer(count: chunkRows * c.headOutFeatures)
        softcapTanh = c.logitSoftcap != nil ? try ctx.buffer(count: chunkRows * c.headOutFeatures) : nil
        losses = try ctx.buffer(count: n)
        scalars = try ctx.buffer(count: 2)
        for lin in m.layers.flatMap(\.linears) + [m.lmHead] { try lin.plan(ctx, tokens: max(n, chunkRows)) }
    }

    static func chunkRows(_ m: LlamaLoRAModel, tokens n: Int) -> Int { max(1, min(m.logitsChunkRows, n)) }

    /// The batch's window starts, for the sliding-window layers' attention.
    func writeWindowStarts(_ b: TokenBatch, config c: ModelConfig) throws {
        guard let w = c.slidingWindow, let buffer = windowStarts else { return }
        let shape = ComputeContext.AttentionShape(batch: batch, seq: seq, heads: c.numHeads, kvHeads: c.numKVHeads, headDim: c.headDim)
        try buffer.write(try shape.windowStarts(b.isPacked ? b.segmentStarts : nil, window: w))
    }

    /// Whether this plan's buffers fit the batch and the model's current settings.
    func matches(_ b: TokenBatch, model m: LlamaLoRAModel) -> Bool {
        b.batch == batch && b.seq == seq && m.gradientCheckpointing == checkpointing
            && Self.chunkRows(m, tokens: b.tokens) == chunkRows
    }
}

extension LlamaLoRAModel {
    var attentionShape: ComputeContext.AttentionShape {
        ComputeContext.AttentionShape(batch: plan!.batch, seq: plan!.seq, heads: config.numHeads,
                                      kvHeads: config.numKVHeads, headDim: config.headDim, scale: config.attentionScale.map(Float.init))
    }

    /// The attention kernels' sample boundaries: nil when every row is one sample.
    var attentionSegments: DeviceBuffer<Int32>? { plan!.packed ? plan!.segmentStarts : nil }

    /// Layer `l`'s first attended keys: the window starts on a sliding-window layer, else the sample boundaries.
    func attentionStarts(layer l: Int) -> DeviceBuffer<Int32>? {
        config.window(layer: l) != nil ? plan!.windowStarts : attentionSegments
    }

    func prepare(_ b: TokenBatch) throws -> ActivationPlan {
        if let i = b.positionIDs.firstIndex(where: { Int($0) >= config.maxPositionEmbeddings }) {
            throw LoraError.batch("position id \(b.positionIDs[i]) (row \(i / b.seq), token \(i % b.seq)) is not below "
                                  + "max_position_embeddings \(config.maxPositionEmbeddings)")
        }
        if let i = b.positionIDs.firstIndex(where: { Int($0) >= ropePositions }) {
            throw LoraError.batch("position id \(b.positionIDs[i]) (row \(i / b.seq), token \(i % b.seq)) is not below the "
                                  + "\(ropePositions) positions this model's RoPE tables were made for (ropePositions)")
        }
        if let bad = b.inputIDs.first(where: { $0 < 0 || Int($0) >= config.vocabSize }) {
            throw LoraError.batch("token id \(bad) is outside the vocabulary (size \(config.vocabSize))")
        }
        try checkTargets(b)
        // LongRoPE (Phi-3): the long factors when the batch reaches past original_max_position_embeddings.
        ropeInUse = ropeTables(maxPosition: Int(b.positionIDs.max() ?? 0))
        if let p = plan, p.matches(b, model: self) {
            // Same shape: reuse every buffer, refresh the batch's ids and targets.
            try p.ids.write(b.inputIDs)
            try p.targets.write(b.targets)
            try p.positions.write(b.positionIDs)
            try p.segmentStarts.write(b.segmentStarts)
            p.packed = b.isPacked
            try p.writeWindowStarts(b, config: config)
            p.groups = try TokenGroups(ctx, ids: b.inputIDs, excluding: paddingIndex)
            p.countedTokens = b.countedTokens
            p.answerPositions = b.answerPositions
            p.contrastive = b.contrastive
            p.head = try HeadRows(ctx, batch: b, chunkRows: p.chunkRows)
            return p
        }
        // A new shape: release the old buffers before making the new ones, so the
        // two sets are never alive together (drivers that allocate eagerly would
        // hold both at the peak). A caller still holding the old plan keeps it alive.
        plan = nil
        let p = try ActivationPlan(model: self, batch: b)
        try p.writeWindowStarts(b, config: config)
        plan = p
        return p
    }

    /// The batch's targets fit the head: token ids for lm_head; for a classifier
    /// one read-out per row and class ids below num_labels, or num_labels reals
    /// per row for a regression or multi-label one.
    func checkTargets(_ b: TokenBatch) throws {
        if b.contrastive != nil && config.task.kind != .featureExtraction {
            throw LoraError.batch("a contrastive batch given to a \(config.task.peftTaskType) model (contrastive training is FEATURE_EXTRACTION's)")
        }
        switch config.task {
        case .featureExtraction:
            if b.readout != nil || b.tokenLabels || b.answerPositions != nil {
                throw LoraError.batch("a FEATURE_EXTRACTION model has no head: it takes a contrastive batch (TokenBatch.contrastive) "
                                      + "or plain rows (pooled hidden states)")
            }
        case .questionAnswering:
            guard b.answerPositions != nil else {
                throw LoraError.batch("an extractive-QA head (task_type QUESTION_ANS) takes answer spans: make the batch "
                                      + "with TokenBatch.questionAnswering")
            }
        case .causalLM:
            if b.readout != nil || b.tokenLabels || b.answerPositions != nil {
                throw LoraError.batch("a classification batch given to a causal LM (task_type CAUSAL_LM)")
            }
            if let bad = b.targets.first(where: { $0 != -100 && ($0 < 0 || Int($0) >= config.vocabSize) }) {
                throw LoraError.batch("label \(bad) is neither -100 nor a token id (vocabulary size \(config.vocabSize))")
            }
        case .tokenClassification(let cls):
            guard b.tokenLabels else {
                throw LoraError.batch("a token classifier (task_type TOKEN_CLS) takes a label per token: make the batch "
                                      + "with TokenBatch.tokenClassification")
            }
            if let bad = b.targets.first(where: { $0 != -100 && ($0 < 0 || Int($0) >= cls.numLabels) }) {
                throw LoraError.batch("label \(bad) is not a class id (num_labels \(cls.numLabels))")
            }
        case .sequenceClassification(let cls):
            guard b.readout != nil else {
                throw LoraError.batch("a token-labelled batch given to a sequence classifier (task_type SEQ_CLS): "
                                      + "make it with TokenBatch.sequenceClassification")
            }
            if cls.problemType == .singleLabel {
                if b.realTargets != nil {
                    throw LoraError.batch("real-valued labels given to a single_label_classification head (labels are class ids)")
                }
                if let bad = b.targets.first(where: { $0 != -100 && ($0 < 0 || Int($0) >= cls.numLabels) }) {
                    throw LoraError.batch("label \(bad) is not a class id (num_labels \(cls.numLabels))")
                }
            } else {
                guard let r = b.realTargets, r.count == b.countedTokens * cls.numLabels else {
                    throw LoraError.batch("a \(cls.problemType.rawValue) head takes \(cls.numLabels) real-valued label(s) per sample")
                }
            }
        }
    }

    // MARK: forward

    /// x0 = E[ids] (+ s·A_emb[:, ids]ᵀ·B_embᵀ) (+ NEFTune noise in training); with a scaled embedding (Gemma)
    /// both terms times √H (PEFT scales the LoRA term as the embedding scales its output).
    func embed(_ p: ActivationPlan, training: Bool = false) throws {
        let H = config.hiddenSize, n = p.tokens
        try embedTokens(out: p.residual[0], ids: p.ids, tokens: n)
        if let scale = embeddingScale { try ctx.scale(p.residual[0], by: scale, count: n * H) }
        if let e = embeddingLoRA, let after = p.embedAfterA {
            let r = e.settings.rank
            try ctx.embeddingForward(out: after, ids: p.ids, table: e.a.param, layout: .transposed(rows: config.vocabSize),
                                     tokens: n, cols: r)
            try ctx.matmul(p.residual[0], after, e.b.param, m: n, n: H, k: r, transB: .transposed,
                           alpha: e.settings.scale * (embeddingScale ?? 1), beta: 1)
        }
        if training, let alpha = neftuneNoiseAlpha, alpha > 0 {
            // transformers' neftune hook: magnitude alpha/√(seq·hidden) of the (B, T, H) output.
            try ctx.addUniformNoise(p.residual[0], count: n * H, magnitude: alpha / Float(p.seq * H).squareRoot(),
                                    seed: mixSeed(stepSeed, 0x4E45_4654))
        }
    }

    /// One decoder layer: x_out = x_mid + mlp(norm(x_mid)), x_mid = x_in + attn(norm(x_in)).
    /// With per-head q/k norms (Qwen3): q = rope(q_norm(q_proj(h1))) over each head's D values, k alike.
    /// With sandwich norms (Gemma 3): x_mid = x_in + norm_a(attn(…)), x_out = x_mid + norm_m(mlp(…)), and
    /// mlp(h) = down(act(gate(h)) ⊙ up(h)) with the family's activation.
    func layerForward(_ l: Int, _ p: ActivationPlan, _ a: LayerActivations, training: Bool) throws {
        let L = layers[l], c = config, n = p.tokens, H = c.hiddenSize
        let xIn = p.residual[l], xOut = p.residual[l + 1]
        let eps = Float(c.rmsNormEps), s = stepSeed
        try ctx.rmsnormForward(y: a.h1, rstd: a.rstd1, x: xIn, weight: L.inputNorm, rows: n, cols: H, eps: eps)
        let qd = c.numHeads * c.headDim, kvd = c.numKVHeads * c.headDim
        if let qkv = L.qkv, let fused = p.fused {
            // Phi-3: one q|k|v projection (N, qd + 2·kvd), split into its parts.
            try qkv.forward(ctx, y: fused, x: a.h1, tokens: n, training: training, stepSeed: s)
            try ctx.splitColumns(fused, rows: n, into: [(a.qPre ?? a.q, qd), (a.kPre ?? a.k, kvd), (a.v, kvd)])
        } else if let q = L.q, let k = L.k, let v = L.v {
            try q.forward(ctx, y: a.qPre ?? a.q, x: a.h1, tokens: n, training: training, stepSeed: s)
            try k.forward(ctx, y: a.kPre ?? a.k, x: a.h1, tokens: n, training: training, stepSeed: s)
            try v.forward(ctx, y: a.v, x: a.h1, tokens: n, training: training, stepSeed: s)
        }
        if let qn = L.qNorm, let kn = L.kNorm, let qPre = a.qPre, let kPre = a.kPre, let rq = a.rstdQ, let rk = a.rstdK {
            try ctx.rmsnormForward(y: a.q, rstd: rq, x: qPre, weight: qn, rows: n * c.numHeads, cols: c.headDim, eps: eps)
            try ctx.rmsnormForward(y: a.k, rstd: rk, x: kPre, weight: kn, rows: n * c.numKVHeads, cols: c.headDim, eps: eps)
        }
        try rotate(q: a.q, k: a.k, layer: l, positions: p.positions, tables: ropeTables(layer: l), tokens: n, inverse: false)
        try ctx.attentionForward(out: a.attn, lse: a.lse, q: a.q, k: a.k, v: a.v, shape: attentionShape,
                                 segmentStarts: attentionStarts(layer: l))
        try a.xMid.copy(from: xIn, count: n * H)
        if let norm = L.attnOutNorm, let o = a.oOut, let r = a.rstdO {
            try L.o.forward(ctx, y: o, x: a.attn, tokens: n, training: training, stepSeed: s)
            try ctx.rmsnormForward(y: a.xMid, rstd: r, x: o, weight: norm, rows: n, cols: H, eps: eps, beta: 1)
        } else {
            try L.o.forward(ctx, y: a.xMid, x: a.attn, tokens: n, training: training, stepSeed: s, beta: 1)
        }
        try ctx.rmsnormForward(y: a.h2, rstd: a.rstd2, x: a.xMid, weight: L.postNorm, rows: n, cols: H, eps: eps)
        let I = c.intermediateSize
        if let gateUp = L.gateUp, let fused = p.fused {
            // Phi-3: one gate|up projection (N, 2I), split (gate first, as .chunk(2) takes it).
            try gateUp.forward(ctx, y: fused, x: a.h2, tokens: n, training: training, stepSeed: s)
            try ctx.splitColumns(fused, rows: n, into: [(a.gate, I), (a.up, I)])
        } else if let gate = L.gate, let up = L.up {
            try gate.forward(ctx, y: a.gate, x: a.h2, tokens: n, training: training, stepSeed: s)
            try up.forward(ctx, y: a.up, x: a.h2, tokens: n, training: training, stepSeed: s)
        }
        try ctx.gatedForward(c.activation, out: a.act, gate: a.gate, up: a.up, count: n * c.intermediateSize)
        try xOut.copy(from: a.xMid, count: n * H)
        if let norm = L.mlpOutNorm, let m = a.mlpOut, let r = a.rstdM {
            try L.down.forward(ctx, y: m, x: a.act, tokens: n, training: training, stepSeed: s)
            try ctx.rmsnormForward(y: xOut, rstd: r, x: m, weight: norm, rows: n, cols: H, eps: eps, beta: 1)
        } else {
            try L.down.forward(ctx, y: xOut, x: a.act, tokens: n, training: training, stepSeed: s, beta: 1)
        }
    }

    /// RoPE on layer `l`'s q (N, NH, D) and k (N, NKV, D) in place with `tables` (`inverse`: the backward's rotation
    /// back); nothing on a NoPE layer (SmolLM3), which attends without positions.
    func rotate(q: DeviceBuffer<Float>, k: DeviceBuffer<Float>, layer l: Int, positions: DeviceBuffer<Int32>,
                tables: (cos: DeviceBuffer<Float>, sin: DeviceBuffer<Float>), tokens n: Int, inverse: Bool) throws {
        let c = config
        guard c.usesRope(layer: l) else { return }
        for (x, heads) in [(q, c.numHeads), (k, c.numKVHeads)] {
            try ctx.rope(x, positions: positions, cos: tables.cos, sin: tables.sin, tokens: n, heads: heads,
                         headDim: c.headDim, rotaryDim: c.rotaryDim, inverse: inverse)
        }
    }

    /// Gemma's final-logit soft-capping on `rows` rows of head logits, in place (tanh kept in `tanh`); nothing without a cap.
    func capLogits(_ logits: DeviceBuffer<Float>, rows: Int, tanh: DeviceBuffer<Float>?) throws {
        guard let cap = config.logitSoftcap else { return }
        guard let tanh else { throw LoraError.batch("internal: soft-capped logits without their tanh buffer") }
        try ctx.softcapForward(logits, tanh: tanh, cap: cap, count: rows * config.headOutFeatures)
    }

    func activations(_ p: ActivationPlan, layer l: Int) -> LayerActivations { p.layers[p.checkpointing ? 0 : l] }

    var stepSeed: UInt32 { mixSeed(seed, UInt32(truncatingIfNeeded: step)) }

    /// Runs embedding, all layers and the final norm (hf).
    func trunkForward(_ p: ActivationPlan, training: Bool) throws {
        try embed(p, training: training)
        for l in 0..<layers.count { try layerForward(l, p, activations(p, layer: l), training: training) }
        try ctx.rmsnormForward(y: p.hf, rstd: p.rstdF, x: p.residual[layers.count], weight: finalNorm,
                               rows: p.tokens, cols: config.hiddenSize, eps: Float(config.rmsNormEps))
    }

    /// A classifier's pooled logits (B, num_labels) in eval mode: score on each row's read-out token.
    public func classifierLogits(_ b: TokenBatch) throws -> [Float] {
        guard let readout = b.readout, config.task.sequenceClassifier != nil else {
            throw LoraError.batch("classifierLogits needs a sequence classifier and a classification batch")
        }
        let p = try prepare(b)
        try trunkForward(p, training: false)
        let H = config.hiddenSize, C = config.headOutFeatures
        var out: [Float] = []
        let rows = readout.enumerated().map { Int32($0.offset * b.seq + $0.element) }
        for start in stride(from: 0, to: rows.count, by: p.chunkRows) {
            let chunk = Array(rows[start..<min(start + p.chunkRows, rows.count)])
            let ids = try DeviceBuffer(queue: ctx.queue, chunk)
            try ctx.embeddingForward(out: p.hfChunk, ids: ids, table: p.hf, layout: .rows(cols: H), tokens: chunk.count, cols: H)
            try lmHead.forward(ctx, y: p.logitsChunk, x: p.hfChunk, tokens: chunk.count, training: false, stepSeed: stepSeed)
            out += try p.logitsChunk.read(count: chunk.count * C)
        }
        return out
    }

    /// Logits (B·T, V) in eval mode (no dropout), for inspection and tests.
    /// On the device only `chunkRows` rows of logits exist at a time (the plan's
    /// logits chunk, as in training): row r of the result is lm_head(hf[r]),
    /// each row's product independent of the others, so the values do not
    /// depend on the chunking. (The host array is B·T × V, as asked.)
    public func logits(_ b: TokenBatch) throws -> [Float] {
        if config.task.sequenceClassifier != nil { return try classifierLogits(b) }
        if b.contrastive != nil { return try lossAndCountedLogits(b).logits }   // the scaled similarities (B, M)
        let p = try prepare(b)
        try trunkForward(p, training: false)
        let H = config.hiddenSize, V = config.headOutFeatures
        var out: [Float] = []
        out.reserveCapacity(p.tokens * V)
        for start in stride(from: 0, to: p.tokens, by: p.chunkRows) {
            let rows = min(p.chunkRows, p.tokens - start)
            try p.hfChunk.copy(from: p.hf, count: rows * H, sourceOffset: start * H)
            try lmHead.forward(ctx, y: p.logitsChunk, x: p.hfChunk, tokens: rows, training: false, stepSeed: stepSeed)
            try capLogits(p.logitsChunk, rows: rows, tanh: p.softcapTanh)
            out += try p.logitsChunk.read(count: rows * V)
        }
        return out
    }

    /// The eval-mode loss (as `loss`) and the head's logits (counted rows × head rows:
    /// a sequence classifier's labelled read-outs, a token classifier's labelled
    /// tokens, in batch order; extractive QA's (2B, T) start and end rows) from one
    /// forward: a classifier's evaluation.
    public func lossAndCountedLogits(_ b: TokenBatch) throws -> (loss: Float, logits: [Float]) {
        let p = try prepare(b)
        try trunkForward(p, training: false)
        var logits: [Float] = []
        try headForwardBackward(p, backward: false) { logits += $0 }
        return (try p.scalars.read()[0] / Float(max(b.countedTokens, 1)), logits)
    }

    /// A contrastive batch in eval mode, one forward: the loss (as `loss`) and the L2-normalised vectors
    /// of its anchors (B, H) and candidates (positives, then negatives: M, H).
    public func contrastiveLossAndVectors(_ b: TokenBatch) throws -> (loss: Float, anchors: [Float], candidates: [Float]) {
        guard let c = b.contrastive else { throw LoraError.batch("contrastiveLossAndVectors takes a contrastive batch") }
        let p = try prepare(b)
        try trunkForward(p, training: false)
        var vectors: ([Float], [Float]) = ([], [])
        try contrastiveForwardBackward(p, c, backward: false, onVectors: { vectors = ($0, $1) })
        return (try p.scalars.read()[0] / Float(max(b.countedTokens, 1)), vectors.0, vectors.1)
    }

    /// Mean cross-entropy over the counted tokens, in eval mode.
    public func loss(_ b: TokenBatch) throws -> Float {
        let p = try prepare(b)
        try trunkForward(p, training: false)
        try headForwardBackward(p, backward: false)
        return try p.scalars.read()[0] / Float(max(b.countedTokens, 1))
    }

    /// lm_head and cross-entropy on the counted rows only (`p.head`), `chunkRows`
    /// rows of logits at a time; with `backward` also dlogits → lm_head
    /// gradients and dhf (zero on the rows whose target is not counted, as
    /// their dlogits would be). Gathering the counted rows first skips the
    /// largest matmul on every masked prompt token.
    /// Extractive QA: qa_outputs on every token gives logits (N, 2); gathered as
    /// (2B, T) rows — row 2b the start logits of sample b, row 2b+1 its end logits
    /// (the embedding gather with strides (1, 2)) — they take the cross-entropy
    /// over positions against the answer's start and end, whose mean over the
    /// counted rows is transformers' (start_loss + end_loss) / 2; backward scatters
    /// the gradient back to (N, 2) and through qa_outputs into dhf.
    /// `onLogits` gets the (2B, T) rows: row 2b the start logits of sample b, row 2b+1 its end logits.
    func answerSpanForwardBackward(_ p: ActivationPlan, _ positions: [Int32], backward: Bool,
                                   onLogits: (([Float]) throws -> Void)? = nil) throws {
        let N = p.tokens, B = p.batch, T = p.seq
        let logits = try ctx.buffer(count: N * 2), rows = try ctx.buffer(count: 2 * B * T)
        try lmHead.forward(ctx, y: logits, x: p.hf, tokens: N, training: backward, stepSeed: stepSeed)
        let ids = (0..<(2 * B)).map { Int32(($0 / 2) * 2 * T + $0 % 2) }
        let byColumn = TableLayout(rowStride: 1, colStride: 2)
        try ctx.embeddingForward(out: rows, ids: try DeviceBuffer(queue: ctx.queue, ids), table: logits, layout: byColumn,
                                 tokens: 2 * B, cols: T)
        let targets = try DeviceBuffer(queue: ctx.queue, positions), losses = try ctx.buffer(count: 2 * B)
        if let onLogits { try onLogits(try rows.read(count: 2 * B * T)) }
        try ctx.crossEntropy(logits: rows, losses: losses, targets: targets, rowOffset: 0, rows: 2 * B, vocab: T,
                             countedTokens: p.countedTokens)
        if backward {
            try ctx.embeddingBackward(dtable: logits, layout: byColumn, dout: rows, groups: try TokenGroups(ctx, ids: ids),
                                      cols: T, beta: 0)
            try lmHead.backward(ctx, dx: p.dhf, dy: logits, x: p.hf, tokens: N, stepSeed: stepSeed)
        }
        try ctx.sum(losses, count: 2 * B, squares: false, into: p.scalars, slot: 0)
    }

    /// Contrastive (FEATURE_EXTRACTION), from existing ops: pooled = P·hf with the pooling matrix
    /// (a one-hot at each sample's last token, or 1/length over its tokens), split into anchors A
    /// (B, H) and candidates C (M, H) — the positives, then any negatives; each row L2-normalised
    /// (RMSNorm with weight 1/√H, as F.normalize); sim = s·Â·Ĉᵀ (B, M); cross-entropy of row i
    /// towards column i. Backward: dÂ = s·dsim·Ĉ, dĈ = s·dsimᵀ·Â, through the norms, then
    /// dhf = Pᵀ·dpooled. `onLogits` gets sim (B, M).
    func contrastiveForwardBackward(_ p: ActivationPlan, _ c: TokenBatch.Contrastive, backward: Bool,
                                    onLogits: (([Float]) throws -> Void)? = nil,
                                    onVectors: (([Float], [Float]) throws -> Void)? = nil) throws {
        let H = config.hiddenSize, N = p.tokens, T = p.seq, B = c.anchors, R = p.batch, M = R - B
        guard M >= 1 else { throw LoraError.batch("a contrastive batch needs candidates (positives) besides its anchors") }
        let pa = try poolingMatrix(rows: 0..<B, lengths: c.lengths, seq: T, pooling: c.pooling)
        let pc = try poolingMatrix(rows: B..<R, lengths: c.lengths, seq: T, pooling: c.pooling)
        let pooledA = try ctx.buffer(count: B * H), pooledC = try ctx.buffer(count: M * H)
        try ctx.matmul(pooledA, pa, p.hf, m: B, n: H, k: N)
        try ctx.matmul(pooledC, pc, p.hf, m: M, n: H, k: N)
        let a = try ctx.buffer(count: B * H), cand = try ctx.buffer(count: M * H)
        let rstdA = try ctx.buffer(count: B), rstdC = try ctx.buffer(count: M)
        try l2Normalize(y: a, rstd: rstdA, x: pooledA, rows: B)
        try l2Normalize(y: cand, rstd: rstdC, x: pooledC, rows: M)
        if let onVectors { try onVectors(try a.read(), try cand.read()) }
        let sim = try ctx.buffer(count: B * M)
        try ctx.matmul(sim, a, cand, m: B, n: M, k: H, transB: .transposed, alpha: c.scale)
        if let onLogits { try onLogits(try sim.read()) }
        let targets = try DeviceBuffer(queue: ctx.queue, (0..<B).map { Int32($0) }), losses = try ctx.buffer(count: B)
        // sim becomes dL/dsim (each row's softmax − one-hot, over the counted anchors).
        try ctx.crossEntropy(logits: sim, losses: losses, targets: targets, rowOffset: 0, rows: B, vocab: M,
                             countedTokens: p.countedTokens)
        if backward {
            let da = try ctx.buffer(count: B * H), dc = try ctx.buffer(count: M * H)
            try ctx.matmul(da, sim, cand, m: B, n: H, k: M, alpha: c.scale)
            try ctx.matmul(dc, sim, a, m: M, n: H, k: B, transA: .transposed, alpha: c.scale)
            let dpa = try ctx.buffer(count: B * H), dpc = try ctx.buffer(count: M * H)
            let unit = try l2NormalizeWeight()
            try ctx.rmsnormBackward(dx: dpa, dweight: nil, dy: da, x: pooledA, weight: unit, rstd: rstdA, rows: B, cols: H)
            try ctx.rmsnormBackward(dx: dpc, dweight: nil, dy: dc, x: pooledC, weight: unit, rstd: rstdC, rows: M, cols: H)
            try ctx.matmul(p.dhf, pa, dpa, m: N, n: H, k: B, transA: .transposed)
            try ctx.matmul(p.dhf, pc, dpc, m: N, n: H, k: M, transA: .transposed, beta: 1)
        }
        try ctx.sum(losses, count: B, squares: false, into: p.scalars, slot: 0)
    }

    func headForwardBackward(_ p: ActivationPlan, backward: Bool, onLogits: (([Float]) throws -> Void)? = nil) throws {
        if let positions = p.answerPositions {
            return try answerSpanForwardBackward(p, positions, backward: backward, onLogits: onLogits)
        }
        if let c = p.contrastive { return try contrastiveForwardBackward(p, c, backward: backward, onLogits: onLogits) }
        if config.task.kind == .featureExtraction {
            throw LoraError.batch("a FEATURE_EXTRACTION model has no head to score plain rows: train it with TokenBatch.contrastive")
        }
        let H = config.hiddenSize, V = config.headOutFeatures, head = p.head
        let realLoss: ComputeContext.RealTargetLoss? = switch config.task.sequenceClassifier?.problemType {
        case .regression?: .meanSquaredError
        case .multiLabel?: .binaryCrossEntropyWithLogits
        default: nil
        }
        if backward { try p.dhf.fill(0) }
        for chunk in head.chunks {
            // hfChunk[i] = hf[row_i]: the embedding gather over the hidden states.
            try ctx.embeddingForward(out: p.hfChunk, ids: chunk.rows.uniqueIDs, table: p.hf, layout: .rows(cols: H),
                                     tokens: chunk.count, cols: H)
            // The dropout mask indexes elements within the chunk: each chunk gets its own seed.
            let chunkSeed = mixSeed(stepSeed, UInt32(chunk.start))
            // A token classifier's dropout on the hidden states before score (training only);
            // its backward is the same mask on dhf.
            let headDropout = backward ? Float(config.task.tokenClassifier?.dropout ?? 0) : 0
            let dropoutSeed = mixSeed(chunkSeed, 0xD209)
            if headDropout > 0 {
                try ctx.dropoutForward(out: p.hfChunk, x: p.hfChunk, count: chunk.count * H, p: headDropout, seed: dropoutSeed)
            }
            try lmHead.forward(ctx, y: p.logitsChunk, x: p.hfChunk, tokens: chunk.count, training: backward, stepSeed: chunkSeed)
            try capLogits(p.logitsChunk, rows: chunk.count, tanh: p.softcapTanh)
            if let onLogits { try onLogits(try p.logitsChunk.read(count: chunk.count * V)) }
            if let realLoss, let y = head.realTargets {
                try ctx.realTargetLoss(realLoss, logits: p.logitsChunk, losses: p.losses, targets: y, rowOffset: chunk.start,
                                       rows: chunk.count, columns: V, countedRows: p.countedTokens)
            } else {
                try ctx.crossEntropy(logits: p.logitsChunk, losses: p.losses, targets: head.targets, rowOffset: chunk.start,
                                     rows: chunk.count, vocab: V, countedTokens: p.countedTokens)
            }
            if backward {
                if let t = p.softcapTanh { try ctx.softcapBackward(p.logitsChunk, tanh: t, count: chunk.count * V) }
                try lmHead.backward(ctx, dx: p.dhfChunk, dy: p.logitsChunk, x: p.hfChunk, tokens: chunk.count, stepSeed: chunkSeed)
                if headDropout > 0 {
                    try ctx.dropoutForward(out: p.dhfChunk, x: p.dhfChunk, count: chunk.count * H, p: headDropout, seed: dropoutSeed)
                }
                // dhf[row_i] = dhfChunk[i]: the embedding scatter, one row per group.
                try ctx.embeddingBackward(dtable: p.dhf, layout: .rows(cols: H), dout: p.dhfChunk, groups: chunk.rows,
                                          cols: H, beta: 0)
            }
        }
        if head.count > 0 {
            try ctx.sum(p.losses, count: head.count, squares: false, into: p.scalars, slot: 0)
        } else {
            try p.scalars.fill(0)
        }
    }
}

/// The rows of a batch whose target is counted (≠ −100), in order, split in
/// chunks of at most `chunkRows`: only these reach lm_head and the loss.
struct HeadRows {
    struct Chunk {
        let start: Int          // index of the chunk's first row among the counted rows
        let count: Int
        /// uniqueIDs = the chunk's row indices in the batch (ascending), tokens = 0..<count.
        let rows: TokenGroups
    }
    let count: Int
    let targets: DeviceBuffer<Int32>   // (count) the counted rows' targets
    /// (count, C) a regression or multi-label classifier's targets, else nil.
    let realTargets: DeviceBuffer<Float>?
    let chunks: [Chunk]

    init(_ ctx: ComputeContext, batch b: TokenBatch, chunkRows: Int) throws {
        let all = b.targets
        let rows = all.indices.filter { all[$0] >= 0 }
        count = rows.count
        targets = try DeviceBuffer(queue: ctx.queue, rows.map { all[$0] })
        realTargets = try b.realTargets.map { try DeviceBuffer(queue: ctx.queue, $0) }
        chunks = try stride(from: 0, to: rows.count, by: chunkRows).map { start in
            let slice = rows[start..<min(start + chunkRows, rows.count)]
            return Chunk(start: start, count: slice.count, rows: try TokenGroups(ctx, ids: slice.map { Int32($0) }))
        }
    }
}

