import LoraBase
import LoraOps
import OpenCLRuntime

/// The LoRA pair of one adapted layer: A (r, in), B (out, r) and their gradients.
public struct LoRAPair {
    public let a: ParameterStore.Entry
    public let b: ParameterStore.Entry
    public let settings: LoRASettings
}

/// One `nn.Linear` of the model, y = x·Wᵀ (+ bias), with what PEFT may have
/// done to it: a LoRA adapter, a trainable bias, or (modules_to_save) a fully
/// trainable copy of the weight.
public final class Linear {
    public let path: String
    public let inFeatures: Int
    public let outFeatures: Int
    /// The frozen weight, packed once in the checkpoint's storage type (nil for a
    /// trained copy). Where W is needed whole it is read back from these panels
    /// (`ComputeContext.unpackWeight`); no unpacked copy is kept.
    let frozen: FrozenLinear?
    /// A fully trained copy of W (modules_to_save).
    public internal(set) var trainedWeight: ParameterStore.Entry?
    /// The base bias (frozen), or its trainable entry.
    var frozenBias: DeviceBuffer<Float>?
    public internal(set) var trainedBias: ParameterStore.Entry?
    public internal(set) var lora: LoRAPair?
    /// u = dropout(x)·Aᵀ (tokens, r), written by forward for backward: the training step's
    /// (ActivationPlan sizes it; an InferenceSession keeps its own per layer).
    var u: DeviceBuffer<Float>?
    let index: UInt32

    public var hasBias: Bool { frozenBias != nil || trainedBias != nil }
    var bias: DeviceBuffer<Float>? { trainedBias?.param ?? frozenBias }

    init(path: String, inFeatures: Int, outFeatures: Int, frozen: FrozenLinear?, bias: DeviceBuffer<Float>?, index: Int) {
        self.path = path
        self.inFeatures = inFeatures
        self.outFeatures = outFeatures
        self.frozen = frozen
        self.frozenBias = bias
        self.index = UInt32(index)
    }

    /// Sizes u for exactly `tokens` rows: a new batch shape grows it or shrinks it (the plan's
    /// other activations are remade too, and MemoryPlan counts u at the plan's size).
    func plan(_ ctx: ComputeContext, tokens: Int) throws {
        guard let lora else { return }
        let need = tokens * lora.settings.rank
        if u?.count != need {
            u = nil   // the old buffer goes first: never both alive at once
            u = try ctx.buffer(count: need)
        }
    }

    func seed(_ stepSeed: UInt32) -> UInt32 { mixSeed(stepSeed, index) }

    /// y (N,out) = x·Wᵀ + s·(dropout(x)·Aᵀ)·Bᵀ + bias (+ beta·y).
    func forward(_ ctx: ComputeContext, y: DeviceBuffer<Float>, x: DeviceBuffer<Float>, tokens n: Int,
                 training: Bool, stepSeed: UInt32, beta: Float = 0) throws {
        if let w = trainedWeight {
            try ctx.matmul(y, x, w.param, m: n, n: outFeatures, k: inFeatures, transB: .transposed, beta: beta, bias: bias)
            return
        }
        guard let frozen else { preconditionFailure("a linear layer without a weight") }
        if let lora {
            var s = lora.settings
            if !training { s.dropout = 0 }
            try ctx.loraForward(y: y, u: u!, x: x, base: frozen, a: lora.a.param, b: lora.b.param, bias: bias,
                                tokens: n, lora: s, seed: seed(stepSeed), beta: beta)
        } else {
            try ctx.frozenForward(y: y, x: x, base: frozen, tokens: n, beta: beta, bias: bias)
        }
    }

    /// Accumulates this layer's parameter gradients and writes dx (+ dxBeta·dx) when asked.
    func backward(_ ctx: ComputeContext, dx: DeviceBuffer<Float>?, dy: DeviceBuffer<Float>, x: DeviceBuffer<Float>,
                  tokens n: Int, stepSeed: UInt32, dxBeta: Float = 0) throws {
        if let w = trainedWeight {
            // dW += dYᵀ·x; dx = dY·W
            try ctx.matmul(w.grad, dy, x, m: outFeatures, n: inFeatures, k: n, transA: .transposed, beta: 1)
            if let dx { try ctx.matmul(dx, dy, w.param, m: n, n: inFeatures, k: outFeatures, beta: dxBeta) }
        } else if let lora, let frozen {
            try ctx.loraBackward(dx: dx, da: lora.a.grad, db: lora.b.grad, dbias: nil, dy: dy, x: x, u: u!,
                                 base: frozen, a: lora.a.param, b: lora.b.param, tokens: n, lora: lora.settings,
                                 seed: seed(stepSeed), gradBeta: 1, dxBeta: dxBeta)
        } else if let dx, let frozen {
            try ctx.frozenBackward(dx: dx, dy: dy, base: frozen, tokens: n, beta: dxBeta)
        }
        if let tb = trainedBias { try ctx.columnSum(tb.grad, dy, m: n, n: outFeatures, beta: 1) }
    }
}

/// A per-(step, module) dropout seed.
func mixSeed(_ a: UInt32, _ b: UInt32) -> UInt32 {
    UInt32(truncatingIfNeeded: SplitMix64.mix(UInt64(a) << 32 | UInt64(b)) >> 16)
}

extension LoraConfig {
    /// The kernels' settings for the adapter on `key` (`dropout`: PEFT applies none on embeddings).
    public func settings(for key: String, dropout: Bool = true) -> LoRASettings {
        LoRASettings(rank: rankAndAlpha(for: key).r, scale: Float(scale(for: key)), dropout: dropout ? Float(loraDropout) : 0)
    }
}
