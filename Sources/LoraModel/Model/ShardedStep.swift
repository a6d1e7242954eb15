import LoraOps
import OpenCLRuntime

extension LlamaLoRAModel {
    /// One optimizer step of which this process computes a share (data
    /// parallel): `shard` holds this process's micro-batches with their index i
    /// in the whole accumulated set (micro-batch i draws the dropout seeds it
    /// would draw in a one-process `trainStep` over the whole set), each loss
    /// divided by `globalTokens` (the trained tokens of the whole set, every
    /// process's). After the local backward, `reduce(grads, count, lossSum)`
    /// must sum the flat gradient buffer [count] over the processes in place
    /// and return the summed loss sum; then every process takes the same norm,
    /// clipping and AdamW step. A non-finite loss or norm updates nothing.
    /// The step count is the model's own (`applyGradients` advances it): a
    /// failure before the AdamW launch — in a micro-batch, in `reduce` —
    /// leaves parameters, moments and step as they were; one after it is
    /// `StepError.stateLost`, as in `trainStep`.
    public func trainStep(shard: [(index: Int, batch: TokenBatch)], globalTokens: Int,
                          hyper: ComputeContext.AdamWHyper,
                          reduce: (_ grads: [(buffer: DeviceBuffer<Float>, count: Int)], _ lossSum: Float) throws -> Float) throws -> StepResult {
        guard trainable else { throw LoraError.batch("the LoRA config has inference_mode = true: nothing is trainable") }
        if let lost = store.lostState { throw StepError.refused(lost) }
        try store.zeroGradients()
        let base = seed
        defer { seed = base }
        var local: Float = 0
        for (i, b) in shard {
            seed = i == 0 ? base : mixSeed(base, 0x8000_0000 | UInt32(truncatingIfNeeded: i))
            local += try accumulateGradients(b, normalizer: max(globalTokens, 1))
        }
        seed = base
        let sum = try reduce(store.groups.map { ($0.grads, $0.total) }, local)
        let loss = sum / Float(max(globalTokens, 1))
        guard loss.isFinite else { return StepResult(loss: loss, gradNorm: .nan, trainedTokens: globalTokens, applied: false) }
        guard plan != nil else {
            throw LoraError.batch("this process has had no micro-batch yet: the first optimizer step needs at least one "
                + "micro-batch per process (fewer ranks, or more data per step)")
        }
        let (norm, applied) = try applyGradients(hyper: hyper)
        return StepResult(loss: loss, gradNorm: norm, trainedTokens: globalTokens, applied: applied)
    }
}
