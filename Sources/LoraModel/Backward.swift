import LoraOps
import OpenCLRuntime

/// What one optimizer step measured.
public struct StepResult: Sendable {
    public let loss: Float
    public let gradNorm: Float
}

extension LlamaLoRAModel {
    /// Backward of one decoder layer: dres holds dL/dx_out on entry, dL/dx_in on return.
    func layerBackward(_ l: Int, _ p: ActivationPlan, _ a: LayerActivations) throws {
        let L = layers[l], c = config, n = p.tokens, H = c.hiddenSize, s = stepSeed
        // MLP: x_out = x_mid + down(silu(gate(h2)) ⊙ up(h2)), h2 = norm(x_mid)
        try L.down.backward(ctx, dx: p.dact, dy: p.dres, x: a.act, tokens: n, stepSeed: s)
        try ctx.swigluBackward(dgate: p.dgate, dup: p.dup, gate: a.gate, up: a.up, dout: p.dact, count: n * c.intermediateSize)
        try L.gate.backward(ctx, dx: p.dh, dy: p.dgate, x: a.h2, tokens: n, stepSeed: s)
        try L.up.backward(ctx, dx: p.dh, dy: p.dup, x: a.h2, tokens: n, stepSeed: s, dxBeta: 1)
        try ctx.rmsnormBackward(dx: p.dres, dweight: nil, dy: p.dh, x: a.xMid, weight: L.postNorm, rstd: a.rstd2,
                                rows: n, cols: H, beta: 1)
        // Attention: x_mid = x_in + o(attn(rope(q(h1)), rope(k(h1)), v(h1))), h1 = norm(x_in)
        try L.o.backward(ctx, dx: p.dattn, dy: p.dres, x: a.attn, tokens: n, stepSeed: s)
        try ctx.attentionBackward(dq: p.dq, dk: p.dk, dv: p.dv, delta: p.delta, dout: p.dattn, out: a.attn, lse: a.lse,
                                  q: a.q, k: a.k, v: a.v, shape: attentionShape, segmentStarts: attentionSegments)
        try ctx.rope(p.dq, positions: p.positions, cos: rope.cos, sin: rope.sin, tokens: n, heads: c.numHeads,
                     headDim: c.headDim, inverse: true)
        try ctx.rope(p.dk, positions: p.positions, cos: rope.cos, sin: rope.sin, tokens: n, heads: c.numKVHeads,
                     headDim: c.headDim, inverse: true)
        try L.q.backward(ctx, dx: p.dh, dy: p.dq, x: a.h1, tokens: n, stepSeed: s)
        try L.k.backward(ctx, dx: p.dh, dy: p.dk, x: a.h1, tokens: n, stepSeed: s, dxBeta: 1)
        try L.v.backward(ctx, dx: p.dh, dy: p.dv, x: a.h1, tokens: n, stepSeed: s, dxBeta: 1)
        try ctx.rmsnormBackward(dx: p.dres, dweight: nil, dy: p.dh, x: p.residual[l], weight: L.inputNorm, rstd: a.rstd1,
                                rows: n, cols: H, beta: 1)
    }

    /// Embedding backward: LoRA on embed_tokens and/or a trained embedding copy.
    func embedBackward(_ p: ActivationPlan) throws {
        let H = config.hiddenSize, n = p.tokens
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
    func forwardBackward(_ b: TokenBatch) throws -> ActivationPlan {
        guard trainable else { throw LoraError.batch("the LoRA config has inference_mode = true: nothing is trainable") }
        let p = try prepare(b)
        try trunkForward(p, training: true)
        try headForwardBackward(p, backward: true)
        try ctx.rmsnormBackward(dx: p.dres, dweight: nil, dy: p.dhf, x: p.residual[layers.count], weight: finalNorm,
                                rstd: p.rstdF, rows: p.tokens, cols: config.hiddenSize)
        for l in (0..<layers.count).reversed() {
            let a = activations(p, layer: l)
            if p.checkpointing { try layerForward(l, p, a, training: true) }  // recompute, same dropout seeds
            try layerBackward(l, p, a)
        }
        try embedBackward(p)
        return p
    }

    /// The gradients of one batch (zeroed first), for tests and tools; returns the loss.
    public func computeGradients(_ b: TokenBatch) throws -> Float {
        try store.zeroGradients()
        let p = try forwardBackward(b)
        return try p.scalars.read()[0] / Float(max(b.countedTokens, 1))
    }

    /// One optimizer step on one batch: zero grads, forward, backward, global
    /// norm, clipping and AdamW on the device; only the loss and norm are read.
    public func trainStep(_ b: TokenBatch, hyper: ComputeContext.AdamWHyper) throws -> StepResult {
        try store.zeroGradients()
        let p = try forwardBackward(b)
        try ctx.sum(store.grads, count: store.total, squares: true, into: p.scalars, slot: 1)
        step += 1
        try ctx.adamw(params: store.params, grads: store.grads, m: store.m, v: store.v, decayMask: store.decayMask,
                      count: store.total, step: step, hyper: hyper, gradSumSquares: p.scalars, slot: 1)
        let s = try p.scalars.read()
        return StepResult(loss: s[0] / Float(max(b.countedTokens, 1)), gradNorm: s[1].squareRoot())
    }
}
