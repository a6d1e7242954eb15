import Foundation
import LoraBase
import OpenCLRuntime

/// The LoRA hyper-parameters of one adapted linear layer.
public struct LoRASettings: Sendable, Equatable {
    public var rank: Int
    /// s, the factor of the LoRA branch (`LoRAScale`).
    public var scale: Float
    public var dropout: Float

    public init(rank: Int, scale: Float, dropout: Float = 0) {
        self.rank = rank
        self.scale = scale
        self.dropout = dropout
    }

    public init(rank: Int, alpha: Float, dropout: Float = 0, useRSLoRA: Bool = false) {
        self.init(rank: rank, scale: Float(LoRAScale.of(alpha: Double(alpha), rank: rank, rsLoRA: useRSLoRA)), dropout: dropout)
    }
}

/// A frozen base weight W (out, in), kept on the device once: the forward
/// panels op(B) = Wᵀ (K = in, N = out) in the checkpoint's storage type
/// (`WeightStorage`: 2 bytes per element for a 16-bit checkpoint, 4 for fp32, GGUF blocks kept quantized).
/// The backward product dY·W needs op(B) = W; its panels are made per call
/// from these (`ComputeContext.backwardPanels`), so no second copy is kept.
///
/// A W larger than one device buffer may be (CL_DEVICE_MAX_MEM_ALLOC_SIZE:
/// the fp32 or dequantized-GGUF embedding of a 150k-vocabulary 72B model is
/// 5 GB) is kept in parts, each a block of rows of W — a block of output
/// columns of y = x·Wᵀ — in its own buffer (`splitRows`). Every product
/// runs once per part: the gemm writes y's columns of the part (row stride
/// `out`, first column the part's first row), and dX = Σ_parts dY[:, part]·W[part].
public final class FrozenLinear {
    /// Rows `rows` of W, as the panels of op(B) = W[rows]ᵀ (K = in, N = rows.count).
    public struct Part {
        public let rows: Range<Int>
        public let panels: PackedMatrix
        public init(rows: Range<Int>, panels: PackedMatrix) { self.rows = rows; self.panels = panels }
    }
    public let inFeatures: Int
    public let outFeatures: Int
    /// The parts in row order, covering 0..<outFeatures; one for any W that fits a buffer.
    public let parts: [Part]
    public var storage: WeightStorage { parts[0].panels.storage }
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
    public var deviceBytes: Int { parts.reduce(0) { $0 + $1.panels.deviceBytes } }
    /// The panels of the whole W when it is kept in one part (nil when split).
    public var forward: PackedMatrix? { parts.count == 1 ? parts[0].panels : nil }

    /// From an fp32 W (out, in) on the device (fp32 storage).
    public convenience init(_ ctx: ComputeContext, weight w: DeviceBuffer<Float>, outFeatures: Int, inFeatures: Int) throws {
        self.init(forward: try ctx.pack(w, k: inFeatures, n: outFeatures, .transposed))
    }

    /// From a 16-bit W (out, in) on the device (`storage` .f16 or .bf16), kept 16-bit.
    public convenience init(_ ctx: ComputeContext, weight16 w: DeviceBuffer<UInt16>, storage: WeightStorage,
                            outFeatures: Int, inFeatures: Int) throws {
        self.init(forward: try ctx.pack16(w, storage: storage, k: inFeatures, n: outFeatures, .transposed))
    }

    /// Shares panels already made (a tied lm_head reads the embedding table's).
    public convenience init(forward: PackedMatrix) {
        self.init(checkedParts: [Part(rows: 0..<forward.n, panels: forward)])
    }

    /// From parts as `splitRows` makes them: contiguous blocks in order, each
    /// starting at a multiple of 16 rows (whole panels of y's columns), one
    /// storage type, K = in each.
    public convenience init(parts: [Part]) throws {
        guard let first = parts.first else { throw OpError(op: "FrozenLinear", detail: "no parts") }
        var next = 0
        for p in parts {
            guard p.rows.lowerBound == next, p.rows.lowerBound % 16 == 0, p.rows.count == p.panels.n,
                  p.panels.k == first.panels.k, p.panels.storage == first.panels.storage, p.rows.count >= 1 else {
                throw OpError(op: "FrozenLinear", detail: "parts must be contiguous blocks of rows, each from a multiple of 16, "
                              + "with panels of one shape and type (part \(p.rows) after row \(next), "
                              + "panels \(p.panels.k)×\(p.panels.n) \(p.panels.storage.rawValue))")
            }
            next = p.rows.upperBound
        }
        self.init(checkedParts: parts)
    }

    private init(checkedParts: [Part]) {
        parts = checkedParts
        inFeatures = checkedParts[0].panels.k
        outFeatures = checkedParts.last!.rows.upperBound
    }

    /// `splitRows(outFeatures:inFeatures:bytesPerElement:limitBytes:)` for W kept as `storage`. A quantized W is
    /// kept in the blocks its fp32 copy would be (`--quantize none`): every product then adds the same parts in the
    /// same order, so the run stays bit-identical to the dequantized one under a buffer limit too; only where not even
    /// 16 fp32 rows fit a buffer are its own chunk bytes (16 rows by `in`) counted against `limitBytes`, and its
    /// elements against 2³¹−1 (its backward panels are widened in blocks within `backwardPanelBytesLimit`).
    public static func splitRows(outFeatures out: Int, inFeatures k: Int, storage: WeightStorage, limitBytes: Int) -> [Range<Int>]? {
        let asFP32 = splitRows(outFeatures: out, inFeatures: k, bytesPerElement: storage.bytesPerElement, limitBytes: limitBytes)
        guard storage.isQuantized, asFP32 == nil else { return asFP32 }
        guard out >= 1, k >= 1 else { return [0..<max(out, 0)] }
        let limit = limitBytes > 0 ? limitBytes : Int.max
        let bytes16 = storage.bytes(k: k, n: 16), elements16 = 16 * ((k + 15) / 16 * 16)
        let panels = (out + 15) / 16
        let (wholeBytes, o1) = panels.multipliedReportingOverflow(by: bytes16)
        let (wholeElements, o2) = panels.multipliedReportingOverflow(by: elements16)
        if !o1 && !o2 && wholeBytes <= limit && wholeElements <= Int(Int32.max) { return [0..<out] }
        let height = min(limit / bytes16, Int(Int32.max) / elements16) * 16
        guard height >= 16 else { return nil }
        return stride(from: 0, to: out, by: height).map { $0..<min($0 + height, out) }
    }

    /// The blocks of rows a W (out, in) of `bytesPerElement` is kept in so that
    /// no part's panels exceed `limitBytes` (≤ 0: no byte limit) nor 2³¹−1
    /// elements (the kernels' 32-bit sizes) — its forward panels (rows padded
    /// to 16) nor its backward ones (`in` padded to 16, scratch slot 9), so a
    /// row counts `in` rounded up to 16: one block when the whole fits;
    /// otherwise blocks of equal height, a multiple of 16 rows (whole panels),
    /// the last one shorter. nil when not even 16 rows fit.
    public static func splitRows(outFeatures out: Int, inFeatures k: Int, bytesPerElement: Int,
                                 limitBytes: Int) -> [Range<Int>]? {
        guard out >= 1, k >= 1, bytesPerElement >= 1 else { return [0..<max(out, 0)] }
        let (cap, o0) = Int(Int32.max).multipliedReportingOverflow(by: bytesPerElement)
        let limit = limitBytes > 0 ? min(limitBytes, o0 ? Int.max : cap) : (o0 ? Int.max : cap)
        let (rowBytes, o1) = ((k + 15) / 16 * 16).multipliedReportingOverflow(by: bytesPerElement)
        if o1 { return nil }
        let (whole, o2) = ((out + 15) / 16 * 16).multipliedReportingOverflow(by: rowBytes)
        if !o2 && whole <= limit { return [0..<out] }
        let height = limit / rowBytes / 16 * 16
        guard height >= 16 else { return nil }
        return stride(from: 0, to: out, by: height).map { $0..<min($0 + height, out) }
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

    /// op(B) = W[part] (K = the part's rows, N = in) panels of `base` for
    /// dX = dY·W, made from the forward panels into scratch slot 9 (valid until
    /// the next call). With `reuse`, panels still held from the previous call
    /// for the same weight and part are returned as they are (the frozen weights
    /// never change): the lm_head's backward runs once per chunk of logits rows
    /// and, kept in one part, transposes once.
    /// `rows`: a block of the part's rows (from a multiple of 16), the whole part when nil.
    public func backwardPanels(_ base: FrozenLinear, part: Int = 0, _ mode: BackwardPanels = .native,
                               reuse: Bool = true, rows block: Range<Int>? = nil) throws -> PackedMatrix {
        opLock.lock(); defer { opLock.unlock() }
        try require(base.parts.indices.contains(part), "backwardPanels", "part \(part) of \(base.parts.count)")
        let forward = base.parts[part].panels
        let rows = block ?? 0..<forward.n
        let count = PackedMatrix.count(k: rows.count, n: forward.k)
        // Quantized panels are always widened (no kernel reads quantized backward panels).
        let widen = (mode == .widened || base.storage.isQuantized) && base.storage != .f32
        let bytes = widen ? 4 : base.storage.bytesPerElement
        // The scratch slots hold floats: 16-bit panels take half as many.
        let floats = (count * bytes + 3) / 4
        // A slot about to grow: drop the held panels first, so the old buffer is freed
        // before the larger one is made (never both alive at once).
        if let held = backwardPanelsHeld, held.buffer.count < floats { backwardPanelsHeld = nil }
        let dest = try scratch(Self.backwardPanelsSlot, count: floats)
        if reuse, let held = backwardPanelsHeld, held.serial == base.serial, held.part == part, held.rows == rows,
           held.widened == widen, held.buffer === dest {
            return PackedMatrix(memory: dest, storage: widen ? .f32 : base.storage, k: rows.count, n: forward.k)
        }
        backwardPanelsHeld = nil
        let panels = try transposePanels(forward, widen: widen, into: dest, columns: rows)
        backwardPanelsHeld = (base.serial, part, rows, widen, dest)
        return panels
    }

    /// Rows of W per block of backward panels: all `rows` when their panels (over `inFeatures`, `bytes` an element)
    /// fit `limitBytes` (or the limit is ≤ 0: none), else the most multiple-of-16 rows that do (at least 16).
    public static func backwardBlockRows(rows: Int, inFeatures: Int, bytes: Int, limitBytes: Int) -> Int {
        let perRow = max(1, (inFeatures + 15) / 16 * 16 * bytes)
        guard limitBytes > 0, rows * perRow > limitBytes else { return rows }
        return min(rows, max(16, limitBytes / perRow / 16 * 16))
    }

    /// y (N,out) = x·Wᵀ [+ ext] [+ bias] + beta·y: one gemm per part of W, each
    /// writing its block of y's columns (row stride out, from the part's first
    /// row). `ext` is an fp32 term over all `out` columns (the LoRA s·u·Bᵀ,
    /// its panels read from the same column).
    func frozenProduct(y: DeviceBuffer<Float>, x: DeviceBuffer<Float>, base: FrozenLinear, tokens n: Int,
                       ext: GemmExtension?, bias: DeviceBuffer<Float>?, beta: Float) throws {
        // Checked whole before the first part writes anything.
        try requireCount(y, atLeast: n * base.outFeatures, "frozenProduct", "y")
        if let bias { try requireCount(bias, atLeast: base.outFeatures, "frozenProduct", "bias") }
        if let ext { try require(ext.b.n == base.outFeatures, "frozenProduct", "LoRA panels of \(ext.b.n) columns for \(base.outFeatures)") }
        let a = StridedOperand(x, rows: n, cols: base.inFeatures, .none)
        for part in base.parts {
            try gemm(y, m: n, alpha: 1, a: a, b: part.panels, ext: ext, bias: bias, beta: beta,
                     ldc: base.outFeatures, col0: part.rows.lowerBound)
        }
    }

    /// dX (N,in) = dY·W [+ ext] (+ beta·dX), W frozen: Σ over the parts of
    /// dY[:, part]·W[part] (dY read from the part's first column, row stride
    /// out), the first with `beta` and `ext`, the rest added.
    func frozenTransposedProduct(dx: DeviceBuffer<Float>, dy: DeviceBuffer<Float>, base: FrozenLinear, tokens n: Int,
                                 ext: GemmExtension?, beta: Float) throws {
        try requireCount(dy, atLeast: n * base.outFeatures, "frozenTransposedProduct", "dY")
        try requireCount(dx, atLeast: n * base.inFeatures, "frozenTransposedProduct", "dX")
        // Each part, in blocks of rows whose transposed panels fit backwardPanelBytesLimit (one block for most weights):
        // dX = Σ_blocks dY[:, block]·W[block, :].
        var first = true
        for (i, part) in base.parts.enumerated() {
            let step = Self.backwardBlockRows(rows: part.rows.count, inFeatures: base.inFeatures, bytes: base.storage.bytesPerElement,
                                              limitBytes: backwardPanelBytesLimit)
            for r0 in stride(from: 0, to: part.rows.count, by: step) {
                let rows = r0..<min(r0 + step, part.rows.count)
                let a = StridedOperand(dy, rowStride: base.outFeatures, colStride: 1, offset: part.rows.lowerBound + r0)
                try gemm(dx, m: n, alpha: 1, a: a, b: backwardPanels(base, part: i, rows: step == part.rows.count ? nil : rows),
                         ext: first ? ext : nil, bias: nil, beta: first ? beta : 1)
                first = false
            }
        }
    }

    /// y (N,out) = x·Wᵀ (+ bias) (+ beta·y) for a frozen W without an adapter.
    public func frozenForward(y: DeviceBuffer<Float>, x: DeviceBuffer<Float>, base: FrozenLinear, tokens n: Int,
                              alpha: Float = 1, beta: Float = 0, bias: DeviceBuffer<Float>? = nil) throws {
        opLock.lock(); defer { opLock.unlock() }
        try require(n >= 1, "frozenForward", "tokens must be ≥ 1")
        try requireCount(x, atLeast: n * base.inFeatures, "frozenForward", "x")
        try frozenProduct(y: y, x: x, base: base, tokens: n, ext: nil, bias: bias, beta: beta)
    }

    /// dX (N,in) = dY·W (+ dxBeta·dX) for a frozen W without an adapter.
    public func frozenBackward(dx: DeviceBuffer<Float>, dy: DeviceBuffer<Float>, base: FrozenLinear,
                               tokens n: Int, beta: Float = 0) throws {
        opLock.lock(); defer { opLock.unlock() }
        try require(n >= 1, "frozenBackward", "tokens must be ≥ 1")
        try requireCount(dy, atLeast: n * base.outFeatures, "frozenBackward", "dY")
        try requireCount(dx, atLeast: n * base.inFeatures, "frozenBackward", "dX")
        try frozenTransposedProduct(dx: dx, dy: dy, base: base, tokens: n, ext: nil, beta: beta)
    }

    /// W (out, in) as fp32, read back from the kept panels into `out`, part by part.
    public func unpackWeight(_ base: FrozenLinear, into out: DeviceBuffer<Float>) throws {
        opLock.lock(); defer { opLock.unlock() }
        try requireCount(out, atLeast: base.outFeatures * base.inFeatures, "unpackWeight", "out")
        for part in base.parts {
            try panelRows(out: out, packed: part.panels, ids: nil, rows: part.rows.count, firstRow: part.rows.lowerBound)
        }
    }

    /// out (R, in)[i] = W[ids[i]]: the embedding gather from a frozen table,
    /// one launch per part (each writes the rows whose id falls in it).
    /// Ids must lie in 0..<out (the caller's check, as for the embedding).
    public func gatherRows(out: DeviceBuffer<Float>, table base: FrozenLinear, ids: DeviceBuffer<Int32>, rows: Int) throws {
        opLock.lock(); defer { opLock.unlock() }
        for part in base.parts {
            try panelRows(out: out, packed: part.panels, ids: ids, rows: rows, firstRow: part.rows.lowerBound)
        }
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
        try frozenProduct(y: y, x: x, base: base, tokens: n,
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
            try frozenTransposedProduct(dx: dx, dy: dy, base: base, tokens: n, ext: ext, beta: dxBeta)
        }
        if let dbias { try columnSum(dbias, dy, m: n, n: dout, beta: gradBeta) }
    }
}
