import Foundation
import OpenCLRuntime

/// The LoRA hyper-parameters of one adapted linear layer.
public struct LoRASettings: Sendable, Equatable {
    public var rank: Int
    public var alpha: Float
    public var dropout: Float
    public var useRSLoRA: Bool

    public init(rank: Int, alpha: Float, dropout: Float = 0, useRSLoRA: Bool = false) {
        self.rank = rank
        self.alpha = alpha
        self.dropout = dropout
        self.useRSLoRA = useRSLoRA
    }

    /// s = lora_alpha / r, or lora_alpha / √r with rsLoRA (PEFT's `scaling`).
    public var scale: Float { useRSLoRA ? alpha / Float(rank).squareRoot() : alpha / Float(rank) }
}

/// A frozen base weight W (out, in), kept on the device once: the forward
/// panels op(B) = Wᵀ (K = in, N = out) in the checkpoint's storage type
/// (`WeightStorage`: 2 bytes per element for a 16-bit checkpoint, 4 for fp32).
/// The backward product dY·W needs op(B) = W; its panels are made per call
/// from these (`ComputeContext.backwardPanels`), so no second copy is kept.
public final class FrozenLinear {
    public let inFeatures: Int
    public let outFeatures: Int
    public let forward: PackedMatrix   // op(B) = Wᵀ: K = in, N = out
    public var storage: WeightStorage { forward.storage }
    /// Process-unique: what the reuse of backward panels is keyed by (an address may be reused).
    let serial = FrozenLinear.nextSerial()
    private static let serialLock = NSLock()
    nonisolated(unsafe) private static var serialCounter: UInt64 = 0
    static func nextSerial() -> UInt64 {
        serialLock.lock(); defer { serialLock.unlock() }
        serialCounter += 1
        return serialCounter
    }
    /// Device bytes of the kept panels.
    public var deviceBytes: Int { forward.deviceBytes }

    /// From an fp32 W (out, in) on the device (fp32 storage).
    public init(_ ctx: ComputeContext, weight w: DeviceBuffer<Float>, outFeatures: Int, inFeatures: Int) throws {
        self.inFeatures = inFeatures
        self.outFeatures = outFeatures
        forward = try ctx.pack(w, k: inFeatures, n: outFeatures, .transposed)
    }

    /// From a 16-bit W (out, in) on the device (`storage` .f16 or .bf16), kept 16-bit.
    public init(_ ctx: ComputeContext, weight16 w: DeviceBuffer<UInt16>, storage: WeightStorage,
                outFeatures: Int, inFeatures: Int) throws {
        self.inFeatures = inFeatures
        self.outFeatures = outFeatures
        forward = try ctx.pack16(w, storage: storage, k: inFeatures, n: outFeatures, .transposed)
    }

    /// Shares panels already made (a tied lm_head reads the embedding table's).
    public init(forward: PackedMatrix) {
        self.forward = forward
        inFeatures = forward.k
        outFeatures = forward.n
    }
}

/// How `backwardPanels` makes op(B) = W from the forward panels (see
/// Benchmarks/NOTES.md, "fp16/bf16 frozen weights"): `.widened` transposes
/// into fp32 scratch panels and runs `gemm_packed`; `.native` keeps the 16-bit
/// type (half the scratch) and runs `gemm_packed_f16`/`_bf16`. The same sums
/// either way.
public enum BackwardPanels: Sendable { case widened, native }

extension ComputeContext {
    /// Scratch slot 9: the backward panels of the frozen linear being differentiated.
    static let backwardPanelsSlot = 9

    /// op(B) = W (K = out, N = in) panels of `base` for dX = dY·W, made from
    /// the forward panels into scratch slot 9 (valid until the next call).
    /// With `reuse`, panels still held from the previous call for the same
    /// weight are returned as they are (the frozen weights never change): the
    /// lm_head's backward runs once per chunk of logits rows and transposes once.
    public func backwardPanels(_ base: FrozenLinear, _ mode: BackwardPanels = .native, reuse: Bool = true) throws -> PackedMatrix {
        opLock.lock(); defer { opLock.unlock() }
        let count = PackedMatrix.count(k: base.outFeatures, n: base.inFeatures)
        let widen = mode == .widened && base.storage != .f32
        let bytes = widen ? 4 : base.storage.bytesPerElement
        // The scratch slots hold floats: 16-bit panels take half as many.
        let floats = (count * bytes + 3) / 4
        // A slot about to grow: drop the held panels first, so the old buffer is freed
        // before the larger one is made (never both alive at once).
        if let held = backwardPanelsHeld, held.buffer.count < floats { backwardPanelsHeld = nil }
        let dest = try scratch(Self.backwardPanelsSlot, count: floats)
        if reuse, let held = backwardPanelsHeld, held.serial == base.serial, held.widened == widen, held.buffer === dest {
            return PackedMatrix(memory: dest, storage: widen ? .f32 : base.storage, k: base.outFeatures, n: base.inFeatures)
        }
        backwardPanelsHeld = nil
        let panels = try transposePanels(base.forward, widen: widen, into: dest)
        backwardPanelsHeld = (base.serial, widen, dest)
        return panels
    }

    /// dX (N,in) = dY·W (+ dxBeta·dX) for a frozen W without an adapter.
    public func frozenBackward(dx: DeviceBuffer<Float>, dy: DeviceBuffer<Float>, base: FrozenLinear,
                               tokens n: Int, beta: Float = 0) throws {
        opLock.lock(); defer { opLock.unlock() }
        try require(n >= 1, "frozenBackward", "tokens must be ≥ 1")
        try requireCount(dy, atLeast: n * base.outFeatures, "frozenBackward", "dY")
        try matmul(dx, dy, packed: backwardPanels(base), m: n, beta: beta)
    }

    /// W (out, in) as fp32, read back from the kept panels into `out`.
    public func unpackWeight(_ base: FrozenLinear, into out: DeviceBuffer<Float>) throws {
        try panelRows(out: out, packed: base.forward, ids: nil, rows: base.outFeatures)
    }
}

extension ComputeContext {
    /// Fused LoRA linear forward:
    ///   y = x·Wᵀ + s·(dropout(x)·Aᵀ)·Bᵀ (+ bias)
    /// x (N,in), A (r,in), B (out,r), bias (out), y (N,out); u (N,r) = dropout(x)·Aᵀ
    /// is written for backward. The base product and the low-rank product are
    /// accumulated in the same register tile (one launch); B·A is never formed.
    /// `beta` = 1 adds into y (a residual connection).
    public func loraForward(y: DeviceBuffer<Float>, u: DeviceBuffer<Float>,
                            x: DeviceBuffer<Float>, base: FrozenLinear,
                            a: DeviceBuffer<Float>, b: DeviceBuffer<Float>, bias: DeviceBuffer<Float>?,
                            tokens n: Int, lora: LoRASettings, seed: UInt32, beta: Float = 0) throws {
        opLock.lock(); defer { opLock.unlock() }
        let op = "loraForward", r = lora.rank, din = base.inFeatures, dout = base.outFeatures
        try require(n >= 1 && r >= 1, op, "tokens and rank must be ≥ 1")
        try require(lora.dropout >= 0 && lora.dropout < 1, op, "dropout must be in [0, 1)")
        try requireCount(x, atLeast: n * din, op, "x")
        try requireCount(a, atLeast: r * din, op, "lora_A")
        try requireCount(b, atLeast: dout * r, op, "lora_B")
        try requireCount(u, atLeast: n * r, op, "u")
        // u = dropout(x)·Aᵀ  (N,r)
        var xd = x
        if lora.dropout > 0 {
            xd = try scratch(1, count: n * din)
            try dropoutForward(out: xd, x: x, count: n * din, p: lora.dropout, seed: seed)
        }
        let aT = try pack(a, k: din, n: r, .transposed, into: scratch(2, count: PackedMatrix.count(k: din, n: r)))
        try gemm(u, m: n, alpha: 1, a: StridedOperand(xd, rows: n, cols: din, .none), b: aT,
                 ext: nil, bias: nil, beta: 0)
        // y = x·Wᵀ + s·u·Bᵀ + bias
        let bT = try pack(b, k: r, n: dout, .transposed, into: scratch(3, count: PackedMatrix.count(k: r, n: dout)))
        try gemm(y, m: n, alpha: 1, a: StridedOperand(x, rows: n, cols: din, .none), b: base.forward,
                 ext: GemmExtension(a: StridedOperand(u, rows: n, cols: r, .none), b: bT, alpha: lora.scale),
                 bias: bias, beta: beta)
    }

    /// Fused LoRA linear backward (W frozen: no dW). With g = s·dY·B (N,r):
    ///   dB = s·dYᵀ·u,  dA = gᵀ·dropout(x),  dX = dY·W + mask/(1−p) ⊙ (g·A),  dbias = Σ_n dY.
    /// dY (N,out), x (N,in), u (N,r) from forward. The dropout mask is regenerated
    /// from `seed`. `gradBeta` = 1 accumulates dA, dB, dbias (gradient accumulation);
    /// dX is overwritten, or accumulated with `dxBeta` = 1. Pass nil for what is not needed.
    public func loraBackward(dx: DeviceBuffer<Float>?, da: DeviceBuffer<Float>, db: DeviceBuffer<Float>,
                             dbias: DeviceBuffer<Float>?,
                             dy: DeviceBuffer<Float>, x: DeviceBuffer<Float>, u: DeviceBuffer<Float>,
                             base: FrozenLinear, a: DeviceBuffer<Float>, b: DeviceBuffer<Float>,
                             tokens n: Int, lora: LoRASettings, seed: UInt32,
                             gradBeta: Float = 0, dxBeta: Float = 0) throws {
        opLock.lock(); defer { opLock.unlock() }
        let op = "loraBackward", r = lora.rank, din = base.inFeatures, dout = base.outFeatures
        try require(n >= 1 && r >= 1, op, "tokens and rank must be ≥ 1")
        try requireCount(dy, atLeast: n * dout, op, "dY")
        try requireCount(x, atLeast: n * din, op, "x")
        try requireCount(u, atLeast: n * r, op, "u")
        try requireCount(da, atLeast: r * din, op, "dA")
        try requireCount(db, atLeast: dout * r, op, "dB")
        let s = lora.scale
        // g = s·dY·B  (N,r)
        let g = try scratch(4, count: n * r)
        let bNN = try pack(b, k: dout, n: r, .none, into: scratch(5, count: PackedMatrix.count(k: dout, n: r)))
        try gemm(g, m: n, alpha: s, a: StridedOperand(dy, rows: n, cols: dout, .none), b: bNN,
                 ext: nil, bias: nil, beta: 0)
        // dB = s·dYᵀ·u  (out,r)
        let uP = try pack(u, k: n, n: r, .none, into: scratch(6, count: PackedMatrix.count(k: n, n: r)))
        try gemm(db, m: dout, alpha: s, a: StridedOperand(dy, rows: dout, cols: n, .transposed), b: uP,
                 ext: nil, bias: nil, beta: gradBeta)
        // dA = gᵀ·dropout(x)  (r,in) — the mask is applied while packing x.
        let mask = lora.dropout > 0 ? (p: lora.dropout, seed: seed, maskLd: din) : nil
        let xP = try pack(x, k: n, n: din, .none, into: scratch(7, count: PackedMatrix.count(k: n, n: din)),
                          dropout: mask)
        try gemm(da, m: r, alpha: 1, a: StridedOperand(g, rows: r, cols: n, .transposed), b: xP,
                 ext: nil, bias: nil, beta: gradBeta)
        // dX = dY·W + mask/(1−p) ⊙ (g·A)  (N,in)
        if let dx {
            try requireCount(dx, atLeast: n * din, op, "dX")
            let aP = try pack(a, k: r, n: din, .none, into: scratch(8, count: PackedMatrix.count(k: r, n: din)))
            var ext = GemmExtension(a: StridedOperand(g, rows: n, cols: r, .none), b: aP, alpha: 1)
            ext.dropout = mask
            try gemm(dx, m: n, alpha: 1, a: StridedOperand(dy, rows: n, cols: dout, .none), b: backwardPanels(base),
                     ext: ext, bias: nil, beta: dxBeta)
        }
        if let dbias { try columnSum(dbias, dy, m: n, n: dout, beta: gradBeta) }
    }
}
