import LoraOps
import OpenCLRuntime

/// What one optimizer step measured.
public struct StepResult: Sendable {
    /// Mean cross-entropy over the trained tokens of the whole (accumulated) batch.
    public let loss: Float
    /// The global gradient norm before clipping.
    public let gradNorm: Float
    /// Tokens whose loss counted (labels ≠ -100 after the shift), over all micro-batches.
    public var trainedTokens: Int = 0
    /// False when the loss or the gradient norm was not finite: then nothing
    /// was updated (parameters, moments and the step count are as before).
    public var applied: Bool = true
}

extension LlamaLoRAModel {
    /// Backward of one decoder layer: dres holds dL/dx_out on entry, dL/dx_in on return.
    func layerBackward(_ l: Int, _ p: ActivationPlan, _ a: LayerActivations) throws {
        let L = layers[l], c = config, n = p.tokens, H = c.hiddenSize, s = stepSeed, I = c.intermediateSize
        // MLP: x_out = x_mid + down(act(gate(h2)) ⊙ up(h2)), h2 = norm(x_mid) (Gemma 3: + norm_m(down(…)))
        if let norm = L.mlpOutNorm, let m = a.mlpOut, let r = a.rstdM, let db = p.dbranch {
            try ctx.rmsnormBackward(dx: db, dweight: nil, dy: p.dres, x: m, weight: norm, rstd: r, rows: n, cols: H)
            try L.down.backward(ctx, dx: p.dact, dy: db, x: a.act, tokens: n, stepSeed: s)
        } else {
            try L.down.backward(ctx, dx: p.dact, dy: p.dres, x: a.act, tokens: n, stepSeed: s)
        }
        try ctx.gatedBackward(c.activation, dgate: p.dgate, dup: p.dup, gate: a.gate, up: a.up, dout: p.dact, count: n * I)
        if let gateUp = L.gateUp, let dfused = p.dfused {
            // Phi-3's gate|up: the parts' gradients joined, then one backward.
            try ctx.joinColumns([(p.dgate, I), (p.dup, I)], rows: n, into: dfused, width: 2 * I)
            try gateUp.backward(ctx, dx: p.dh, dy: dfused, x: a.h2, tokens: n, stepSeed: s)
        } else if let gate = L.gate, let up = L.up {
            try gate.backward(ctx, dx: p.dh, dy: p.dgate, x: a.h2, tokens: n, stepSeed: s)
            try up.backward(ctx, dx: p.dh, dy: p.dup, x: a.h2, tokens: n, stepSeed: s, dxBeta: 1)
        }
        try ctx.rmsnormBackward(dx: p.dres, dweight: nil, dy: p.dh, x: a.xMid, weight: L.postNorm, rstd: a.rstd2,
                                rows: n, cols: H, beta: 1)
        // Attention: x_mid = x_in + o(attn(rope(q(h1)), rope(k(h1)), v(h1))), h1 = norm(x_in)
        // (q(h1) = q_norm(q_proj(h1)) with per-head norms, k alike; q|k|v one fused projection on Phi-3)
        if let norm = L.attnOutNorm, let o = a.oOut, let r = a.rstdO, let db = p.dbranch {
            // Gemma 3: x_mid = x_in + norm_a(o(attn)).
            try ctx.rmsnormBackward(dx: db, dweight: nil, dy: p.dres, x: o, weight: norm, rstd: r, rows: n, cols: H)
            try L.o.backward(ctx, dx: p.dattn, dy: db, x: a.attn, tokens: n, stepSeed: s)
        } else {
            try L.o.backward(ctx, dx: p.dattn, dy: p.dres, x: a.attn, tokens: n, stepSeed: s)
        }
        try ctx.attentionBackward(dq: p.dq, dk: p.dk, dv: p.dv, delta: p.delta, dout: p.dattn, out: a.attn, lse: a.lse,
                                  q: a.q, k: a.k, v: a.v, shape: attentionShape, segmentStarts: attentionStarts(layer: l))
        try rotate(q: p.dq, k: p.dk, layer: l, positions: p.positions, tables: ropeTables(layer: l), tokens: n, inverse: true)
        // Per-head q/k norms (Qwen3): back through q_norm / k_norm (frozen weights) into p.dattn, free since
        // attention's backward; each part then goes to its projection's backward, or into the fused gradient.
        let qd = c.numHeads * c.headDim, kvd = c.numKVHeads * c.headDim, w = qd + 2 * kvd
        var dqIn = p.dq
        if let qn = L.qNorm, let qPre = a.qPre, let rq = a.rstdQ {
            try ctx.rmsnormBackward(dx: p.dattn, dweight: nil, dy: p.dq, x: qPre, weight: qn, rstd: rq,
                                    rows: n * c.numHeads, cols: c.headDim)
            dqIn = p.dattn
        }
        if L.qkv != nil, let dfused = p.dfused {
            try ctx.joinColumns([(dqIn, qd)], rows: n, into: dfused, width: w)
        } else if let q = L.q {
            try q.backward(ctx, dx: p.dh, dy: dqIn, x: a.h1, tokens: n, stepSeed: s)
        }
        var dkIn = p.dk
        if let kn = L.kNorm, let kPre = a.kPre, let rk = a.rstdK {
            try ctx.rmsnormBackward(dx: p.dattn, dweight: nil, dy: p.dk, x: kPre, weight: kn, rstd: rk,
                                    rows: n * c.numKVHeads, cols: c.headDim)
            dkIn = p.dattn
        }
        if let qkv = L.qkv, let dfused = p.dfused {
            // (q's part went in before k's norm backward reused p.dattn.)
            try ctx.joinColumns([(dkIn, kvd), (p.dv, kvd)], rows: n, into: dfused, width: w, offset: qd)
            try qkv.backward(ctx, dx: p.dh, dy: dfused, x: a.h1, tokens: n, stepSeed: s)
        } else if let k = L.k, let v = L.v {
            try k.backward(ctx, dx: p.dh, dy: dkIn, x: a.h1, tokens: n, stepSeed: s, dxBeta: 1)
            try v.backward(ctx, dx: p.dh, dy: p.dv, x: a.h1, tokens: n, stepSeed: s, dxBeta: 1)
        }
        try ctx.rmsnormBackward(dx: p.dres, dweight: nil, dy: p.dh, x: p.residual[l], weight: L.inputNorm, rstd: a.rstd1,
                                rows: n, cols: H, beta: 1)
    }

    /// Embedding backward: LoRA on embed_tokens and/or a trained embedding copy.
    func embedBackward(_ p: ActivationPlan) throws {
        let H = config.hiddenSize, n = p.tokens
        // A scaled embedding (Gemma): x0 = √H·(E[ids] + LoRA), so both take √H·dx0.
        if let scale = embeddingScale { try ctx.scale(p.dres, by: scale, count: n * H) }
        if let e = embeddingLoRA, let after = p.embedAfterA, let dAfter = p.dAfterA {
            let r = e.settings.rank, s = e.settings.scale
            try ctx.matmul(e.b.grad, p.dres, after, m: H, n: r, k: n, transA: .transposed, alpha: s, beta: 1)
            try ctx.matmul(dAfter, p.dres, e.b.param, m: n, n: r, k: H, alpha: s)
            try ctx.embeddingBackward(dtable: e.a.grad, layout: .transposed(rows: config.vocabSize), dout: dAfter,
                                      groups: p.groups, cols: r, beta: 1)
        }
        if let t = trainedEmbedding {
            try ctx.embeddingBackward(dtable: t.grad, layout: .rows(cols: H), dout: p.dres, groups: p.groups, cols: H, beta: 1)
        }
    }

    /// Forward and backward of one batch, adding into the gradients (which the
    /// caller zeroes once per optimizer step). Nothing is read back.
    /// The loss is normalised by `normalizer` counted tokens (default: the batch's own).
    func forwardBackward(_ b: TokenBatch, normalizer: Int? = nil) throws -> ActivationPlan {
        guard trainable else { throw LoraError.batch("the LoRA config has inference_mode = true: nothing is trainable") }
        let p = try prepare(b)
        if let normalizer { p.countedTokens = normalizer }
        try trunkForward(p, training: true)
        try headForwardBackward(p, backward: true)
        try ctx.rmsnormBackward(dx: p.dres, dweight: nil, dy: p.dhf, x: p.residual[layers.count], weight: finalNorm,
                                rstd: p.rstdF, rows: p.tokens, cols: config.hiddenSize)
        // Below the lowest layer that trains anything, no parameter takes a gradient: stop there.
        for l in (lowestTrainedLayer..<layers.count).reversed() {
            let a = activations(p, layer: l)
            if p.checkpointing { try layerForward(l, p, a, training: true) }  // recompute, same dropout seeds
            try layerBackward(l, p, a)
        }
        if lowestTrainedLayer == 0 { try embedBackward(p) }
        return p
    }

    /// The lowest decoder layer with a trainable tensor (LoRA, a trained bias or a
    /// saved copy) — 0 when the embedding trains, `layers.count` when only the
    /// head does. The backward stops there: what lies below it is frozen, so
    /// dL/dx below it is never needed (with `layers_to_transform` on the upper
    /// layers, their backward is skipped whole).
    var lowestTrainedLayer: Int {
        if embeddingLoRA != nil || trainedEmbedding != nil { return 0 }
        return layers.firstIndex { layer in
            layer.linears.contains { $0.lora != nil || $0.trainedWeight != nil || $0.trainedBias != nil }
        } ?? layers.count
    }

    /// The gradients of one batch (zeroed first), for tests and tools; returns the loss.
    func computeGradients(_ b: TokenBatch) throws -> Float {
        try store.zeroGradients()
        let p = try forwardBackward(b)
        return try p.scalars.read()[0] / Float(max(b.countedTokens, 1))
    }

    /// Adds one micro-batch's gradients to the accumulated ones, its summed
    /// token losses divided by `normalizer`: the trained tokens of every
    /// micro-batch of the optimizer step (transformers' num_items_in_batch), so
    /// k micro-batches accumulate exactly the gradient of one batch of all their
    /// rows. Returns the micro-batch's summed (not divided) loss.
    public func accumulateGradients(_ b: TokenBatch, normalizer: Int) throws -> Float {
        if let lost = store.lostState { throw StepError.refused(lost) }
        let p = try forwardBackward(b, normalizer: max(normalizer, 1))
        if Self.injectStepFailure == .accumulation {
            throw StepError.injected("gradient accumulation (read of the micro-batch loss)")
        }
        return try p.scalars.read()[0]
    }

    /// Global norm, clipping and AdamW over the accumulated gradients. The norm
    /// is read back first: when it is not finite nothing is updated and
    /// `applied` is false. Returns the norm before clipping.
    ///
    /// A failed step leaves the state as it was, or says it is lost. OpenCL
    /// reports an enqueue error at once (the kernel never ran) but an error
    /// while a kernel runs only at the next blocking call. So: everything that
    /// fails before the AdamW launch (the forward, backward, norm and their
    /// reads) and the launch itself leave parameters, moments and `step`
    /// untouched (only the gradients, scratch of the step, are changed). After
    /// the launch the queue is finished here, inside the step, before `step` is
    /// advanced: an error there means the device may have applied part of the
    /// update, so it throws `StepError.stateLost` and every later step is
    /// refused until a resume restores the state (`restoreStep`).
    public func applyGradients(hyper: ComputeContext.AdamWHyper) throws -> (gradNorm: Float, applied: Bool) {
        if let lost = store.lostState { throw StepError.refused(lost) }
        guard let p = plan else { throw LoraError.batch("applyGradients before any gradient was accumulated") }
        // ‖g‖² over every group (one group: one sum; more: each added to the first's).
        for (i, g) in store.groups.enumerated() {
            try ctx.sum(g.grads, count: g.total, squares: true, into: p.scalars, slot: 1, accumulate: i > 0)
        }
        let norm = try p.scalars.read()[1].squareRoot()
        guard norm.isFinite else { return (norm, false) }
        let next = step + 1
        if Self.injectStepFailure == .adamwLaunch {
            throw StepError.injected("AdamW launch of step \(next)")
        }
        for g in store.groups {
            try ctx.adamw(params: g.params, grads: g.grads, m: g.m, v: g.v, decayMask: g.decayMask,
                          count: g.total, step: next, hyper: hyper, gradSumSquares: p.scalars, slot: 1)
        }
        do {
            if Self.injectStepFailure == .adamwCompletion {
                throw StepError.injected("completion of the AdamW update of step \(next)")
            }
            try ctx.queue.finish()
        } catch {
            let lost = StepError.Lost(step: next, reason: "\(error)")
            store.lostState = lost
            throw StepError.stateLost(lost)
        }
        step = next
        return (norm, true)
    }

    /// One optimizer step over `micro` micro-batches (gradient accumulation):
    /// zero grads, forward+backward each (the loss averaged over all their
    /// trained tokens), then norm, clipping and AdamW on the device. Micro-batch
    /// i > 0 draws its own dropout masks. A non-finite loss or gradient norm
    /// updates nothing (see StepResult.applied).
    public func trainStep(_ micro: [TokenBatch], hyper: ComputeContext.AdamWHyper) throws -> StepResult {
        guard !micro.isEmpty else { throw LoraError.batch("a training step needs at least one micro-batch") }
        if let lost = store.lostState { throw StepError.refused(lost) }
        try store.zeroGradients()
        let total = micro.reduce(0) { $0 + $1.countedTokens }
        let base = seed
        defer { seed = base }
        var sum: Float = 0
        for (i, b) in micro.enumerated() {
            seed = i == 0 ? base : mixSeed(base, 0x8000_0000 | UInt32(truncatingIfNeeded: i))
            sum += try accumulateGradients(b, normalizer: total)
        }
        seed = base
        let loss = sum / Float(max(total, 1))
        guard loss.isFinite else { return StepResult(loss: loss, gradNorm: .nan, trainedTokens: total, applied: false) }
        let (norm, applied) = try applyGradients(hyper: hyper)
        return StepResult(loss: loss, gradNorm: norm, trainedTokens: total, applied: applied)
    }

    /// One optimizer step on one batch.
    public func trainStep(_ b: TokenBatch, hyper: ComputeContext.AdamWHyper) throws -> StepResult {
        try trainStep([b], hyper: hyper)
    }

    /// Sets the optimizer step count (AdamW's bias corrections and the dropout
    /// seeds depend on it), for resuming from a checkpoint. It is the last call
    /// of a resume (after `loadAdapter` and `store.restoreMoments`), so it also
    /// ends the refusal after a lost step (`StepError.stateLost`).
    public func restoreStep(_ s: Int) {
        step = max(0, s)
        store.lostState = nil
    }

    #if ENABLE_TEST_HOOKS
    /// Test hook (debug builds, ENABLE_TEST_HOOKS): make one stage of every optimizer step fail
    /// (nil: none; see StepFailureStage).
    nonisolated(unsafe) static var injectStepFailure: StepFailureStage? = nil
    #else
    static var injectStepFailure: StepFailureStage? { nil }
    #endif
}

/// Where the test hook `LlamaLoRAModel.injectStepFailure` makes a step fail.
enum StepFailureStage: Sendable {
    /// After a micro-batch's forward and backward were enqueued, at the read of
    /// its loss (where an error of those kernels would surface).
    case accumulation
    /// At the AdamW launch, as an enqueue error: the update never ran.
    case adamwLaunch
    /// After the AdamW launch, at the finish of the queue, as an error of the
    /// running kernel: the update ran (in full here; on a device, perhaps in part).
    case adamwCompletion
}

/// A failed optimizer step.
public enum StepError: Error, CustomStringConvertible, Equatable {
    public struct Lost: Sendable, Equatable {
        /// The step whose AdamW update failed (1-based).
        public let step: Int
        public let reason: String
    }

    /// The device reported an error after the AdamW update was launched: the
    /// trainable parameters and the moments may be partly updated.
    case stateLost(Lost)
    /// A step asked of a model whose state was lost (until a resume restores it).
    case refused(Lost)
    /// The test hook's failure.
    case injected(String)

    public var description: String {
        switch self {
        case .stateLost(let l):
            return "optimizer step \(l.step): the device failed after the AdamW update was launched (\(l.reason)); "
                + "the trainable parameters and AdamW moments may be partly updated, so the training state is lost: "
                + "resume from the last checkpoint"
        case .refused(let l):
            return "the training state was lost at optimizer step \(l.step) (\(l.reason)); no further step is taken "
                + "until it is restored (resume from the last checkpoint)"
        case .injected(let stage): return "injected failure (test hook) at the \(stage)"
        }
    }
}
