import OpenCLRuntime

public enum Transpose: Sendable { case none, transposed }

/// The element type a frozen weight keeps on the device. The checkpoint's
/// dtype decides it: F16 → `.f16`, BF16 → `.bf16`, F32 → `.f32`; a GGUF file's
/// Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K blocks stay quantized (`.q8_0` …, re-blocked
/// into chunks of 16 columns × one block of rows, Kernels/common.cl "Quantized
/// panels") and its other types are dequantized to `.f32` at load. The kernels
/// widen (or dequantize, with ggml's fp32 operations) each element as they load
/// it, and accumulate in fp32: a product over any storage equals the product
/// over the fp32 values it holds.
public enum WeightStorage: String, Sendable, CaseIterable {
    case f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1
    /// QLoRA's NF4 (bitsandbytes' 4-bit NormalFloat, blocks of 64 with an fp32 absmax), made at load.
    case nf4
    /// GGUF's K-quants, kept as loaded (super-blocks of 256).
    case q4_k, q5_k, q6_k

    /// Kept in ggml blocks (K a multiple of 32).
    public var isQuantized: Bool { quantChunkBytes != nil }

    /// Bytes of one element of a 32/16-bit storage; a quantized one's element is a fraction of a byte:
    /// use `bytes(k:n:)`. Here it is what a dequantized copy takes (4).
    public var bytesPerElement: Int { self == .f16 || self == .bf16 ? 2 : 4 }

    /// Rows of one sub-block (one set of scale factors) of quantized panels: Kernels/common.cl's `WQ_SUB_BITS`
    /// (NF4 64, Q6_K 16, the others 32); a chunk holds whole sub-blocks.
    public var quantSubRows: Int { self == .nf4 ? 64 : self == .q6_k ? 16 : 32 }

    /// Panel rows per chunk of quantized panels (the block size along K): 32, or 64 for NF4.
    public var quantBlockRows: Int { self == .nf4 ? 64 : [.q4_k, .q5_k, .q6_k].contains(self) ? 256 : 32 }

    /// Bytes of one chunk (16 columns × `quantBlockRows` rows) of quantized panels; nil for the others.
    public var quantChunkBytes: Int? {
        switch self {
        case .f32, .f16, .bf16: return nil
        case .q8_0: return 544     // 16 half scales + 512 int8
        case .q4_0: return 288     // 16 half scales + 256 bytes of nibbles
        case .q4_1: return 320     // + 16 half mins
        case .q5_0: return 352     // + 64 bytes of fifth bits
        case .q5_1: return 384
        case .nf4: return 576      // 16 fp32 absmax + 512 bytes of nibbles (64 rows)
        case .q4_k: return 2304    // d, dmin, 16 × 12 scale bytes, nibbles (256 rows)
        case .q5_k: return 2816    // + fifth bits
        case .q6_k: return 3360    // d, 16 × 16 int8 scales, nibbles, 2-bit highs
        }
    }

    /// Device bytes of the panels of op(B) (K,N): ⌈N/16⌉·16·K elements, or ⌈N/16⌉·K/32 chunks.
    public func bytes(k: Int, n: Int) -> Int {
        let panels = (n + 15) / 16
        if let chunk = quantChunkBytes { return panels * ((k + quantBlockRows - 1) / quantBlockRows) * chunk }
        return panels * 16 * k * bytesPerElement
    }

    /// Appended to a kernel family's name for panels of this type
    /// (`gemm_packed`, `gemm_packed_f16`, `gemm_packed_bf16`, `gemm_packed_q4_0`, …;
    /// the same for `transpose_panels` and `panel_rows`). A variant family (e.g.
    /// `gemm_tiled`) follows the same convention.
    public var kernelSuffix: String { self == .f32 ? "" : "_" + rawValue }

    /// The ggml block type kept as this storage (the file's tensor type name), nil for 32/16-bit.
    public static func quantized(ggmlName: String) -> WeightStorage? {
        switch ggmlName {
        case "Q8_0": return .q8_0
        case "Q4_0": return .q4_0
        case "Q4_1": return .q4_1
        case "Q5_0": return .q5_0
        case "Q5_1": return .q5_1
        case "Q4_K": return .q4_k
        case "Q5_K": return .q5_k
        case "Q6_K": return .q6_k
        default: return nil
        }
    }

    /// Bytes of one source block (`quantBlockRows` elements of a row of W) `reblock_q` reads: ggml's block, or
    /// NF4's (fp32 absmax, 32 bytes of nibbles).
    public var sourceBlockBytes: Int {
        switch self {
        case .nf4: return 36
        case .q4_k: return 144
        case .q5_k: return 176
        case .q6_k: return 210
        case .q8_0: return 34
        case .q4_0: return 18
        case .q4_1: return 20
        case .q5_0: return 22
        case .q5_1: return 24
        default: return 0
        }
    }

    /// The kernels' storage constant (WS_F32 … WS_Q5_1, Kernels/common.cl).
    var kernelConstant: Int32 { Int32(Self.allCases.firstIndex(of: self)!) }
}

/// op(B) (K,N) packed into panels [ceil(N/16)][K][16] for `gemm_packed`,
/// with elements of type `storage`. Frozen base weights are packed once and
/// kept (see `FrozenLinear`); everything else is packed per call, in fp32.
public final class PackedMatrix {
    /// The panels: a `DeviceBuffer<Float>` for `.f32`, 16-bit elements otherwise.
    public let memory: MemoryObject
    public let storage: WeightStorage
    public let k: Int
    public let n: Int
    init(buffer: DeviceBuffer<Float>, k: Int, n: Int) { memory = buffer; storage = .f32; self.k = k; self.n = n }
    init(memory: MemoryObject, storage: WeightStorage, k: Int, n: Int) {
        self.memory = memory; self.storage = storage; self.k = k; self.n = n
    }
    /// The fp32 panels (nil for 16-bit and quantized storage).
    public var buffer: DeviceBuffer<Float>? { storage == .f32 ? memory as? DeviceBuffer<Float> : nil }
    /// Elements of the panels, N padded to a multiple of 16.
    static func count(k: Int, n: Int) -> Int { (n + 15) / 16 * 16 * k }
    public var elementCount: Int { Self.count(k: k, n: n) }
    /// Device bytes the panels hold.
    public var deviceBytes: Int { storage.bytes(k: k, n: n) }
}

/// A strided view of op(A) (M,K): element (m, k) = buf[m·rowStride + k·colStride].
/// `offset`: the element of (0, 0) (a block of columns of a wider matrix).
struct StridedOperand {
    let buffer: DeviceBuffer<Float>
    let rowStride: Int
    let colStride: Int
    var offset = 0
    init(_ buffer: DeviceBuffer<Float>, rowStride: Int, colStride: Int, offset: Int = 0) {
        self.buffer = buffer; self.rowStride = rowStride; self.colStride = colStride; self.offset = offset
    }
    init(_ buffer: DeviceBuffer<Float>, rows m: Int, cols k: Int, _ t: Transpose) {
        self.buffer = buffer
        // none: stored (M,K); transposed: stored (K,M).
        (rowStride, colStride) = t == .none ? (k, 1) : (1, m)
    }
}

/// The second product that `gemm_packed` adds into the same tile: alpha2·op(A2)·op(B2),
/// optionally masked by the dropout mask of element (m, n) at m·maskLd + n.
struct GemmExtension {
    let a: StridedOperand
    let b: PackedMatrix
    let alpha: Float
    var dropout: (p: Float, seed: UInt32, maskLd: Int)? = nil
}

extension ComputeContext {
    /// Packs op(B) (K,N) into panels, where B is stored (K,N) for `.none` or
    /// (N,K) for `.transposed`. With `dropout`, element (k, n) is replaced by
    /// its inverted-dropout value under the mask of index k·maskLd + n.
    public func pack(_ b: DeviceBuffer<Float>, k: Int, n: Int, _ t: Transpose,
                     into dest: DeviceBuffer<Float>? = nil,
                     dropout: (p: Float, seed: UInt32, maskLd: Int)? = nil) throws -> PackedMatrix {
        opLock.lock(); defer { opLock.unlock() }
        try require(k >= 1 && n >= 1, "pack", "sizes must be ≥ 1 (K=\(k), N=\(n))")
        try requireCount(b, atLeast: k * n, "pack", "B")
        let out = try dest ?? buffer(count: PackedMatrix.count(k: k, n: n))
        try requireCount(out, atLeast: PackedMatrix.count(k: k, n: n), "pack", "destination")
        let (rs, cs) = t == .none ? (n, 1) : (1, k)
        try launch("pack_b", [
            i32(k), i32(n), .buffer(b), i32(rs), i32(cs),
            .float(dropout?.p ?? 0), .uint(dropout?.seed ?? 0), i32(dropout?.maskLd ?? 0),
            .buffer(out),
        ], global: [(n + 15) / 16, k], local: [1, config.packLocal])
        return PackedMatrix(buffer: out, k: k, n: n)
    }

    /// Packs a 16-bit op(B) (K,N) into panels of the same type, bits moved
    /// unchanged: B (`.f16` or `.bf16` elements) is stored (K,N) for `.none`,
    /// (N,K) for `.transposed`.
    public func pack16(_ b: DeviceBuffer<UInt16>, storage: WeightStorage, k: Int, n: Int, _ t: Transpose) throws -> PackedMatrix {
        opLock.lock(); defer { opLock.unlock() }
        try require(storage != .f32, "pack16", "storage must be f16 or bf16")
        try require(k >= 1 && n >= 1, "pack16", "sizes must be ≥ 1 (K=\(k), N=\(n))")
        try require(b.count >= k * n, "pack16", "B has \(b.count) elements, needs \(k * n)")
        let out = try DeviceBuffer<UInt16>(queue: queue, count: PackedMatrix.count(k: k, n: n),
                                           label: "packed \(storage.rawValue) panels (\(k)×\(n))")
        let (rs, cs) = t == .none ? (n, 1) : (1, k)
        try launch("pack_b_u16", [i32(k), i32(n), .buffer(b), i32(rs), i32(cs), .buffer(out)],
                   global: [(n + 15) / 16, k], local: [1, config.packLocal])
        return PackedMatrix(memory: out, storage: storage, k: k, n: n)
    }

    /// Quantized panels of op(B) = Wᵀ (K = cols, N = rows) from a W (rows, cols) in ggml blocks of
    /// `storage`'s type: `blocks` holds rows of 32-element blocks (`cols / 32` a row), W's row r taken from
    /// row `rowSource[r]` of it (or row r). Re-blocked on the device (`reblock_q`), nothing widened.
    public func packQuantized(_ blocks: DeviceBuffer<UInt8>, storage: WeightStorage, rows: Int, cols: Int,
                              rowSource: DeviceBuffer<Int32>? = nil, label: String = "") throws -> PackedMatrix {
        opLock.lock(); defer { opLock.unlock() }
        try require(storage.isQuantized, "packQuantized", "storage \(storage.rawValue) is not a quantized type")
        let qk = storage.quantBlockRows
        try require(rows >= 1 && cols >= qk && cols % qk == 0, "packQuantized",
                    "W (\(rows), \(cols)): the row length must be a positive multiple of \(qk)")
        if let rowSource { try require(rowSource.count >= rows, "packQuantized", "row map of \(rowSource.count) rows for \(rows)") }
        else { try require(blocks.count >= rows * cols / qk * storage.sourceBlockBytes, "packQuantized",
                           "\(blocks.count) bytes of blocks for \(rows) rows of \(cols)") }
        let out = try DeviceBuffer<UInt8>(queue: queue, count: storage.bytes(k: cols, n: rows),
                                          label: label.isEmpty ? "\(storage.rawValue) panels (\(cols)×\(rows))" : label)
        try launch("reblock_q", [i32(rows), i32(cols / qk), .int(storage.kernelConstant), .buffer(blocks),
                                 .int(rowSource == nil ? 0 : 1), .buffer(rowSource ?? blocks), .buffer(out)],
                   global: [(rows + 15) / 16, cols / qk], local: [1, 1])
        return PackedMatrix(memory: out, storage: storage, k: cols, n: rows)
    }

    /// The panels of op(B)ᵀ (N,K) from those of op(B) (K,N), into `dest`
    /// (at least `PackedMatrix.count(k: n, n: k)` elements of the result's
    /// type). `widen`: fp32 panels from 16-bit ones; otherwise the result
    /// keeps `b`'s storage.
    /// `columns`: a block of op(B)'s columns (its lower bound a multiple of 16) to transpose, all of them when nil.
    func transposePanels(_ b: PackedMatrix, widen: Bool, into dest: MemoryObject, columns: Range<Int>? = nil) throws -> PackedMatrix {
        opLock.lock(); defer { opLock.unlock() }
        let cols = columns ?? 0..<b.n
        try require(cols.lowerBound % 16 == 0 && cols.lowerBound >= 0 && cols.upperBound <= b.n && !cols.isEmpty, "transposePanels",
                    "columns \(cols) of \(b.n) must start at a multiple of 16")
        try require(widen || !b.storage.isQuantized, "transposePanels", "quantized panels are transposed widened")
        let outStorage: WeightStorage = widen ? .f32 : b.storage
        let name = b.storage == .f32 ? "transpose_panels" : widen ? "transpose_panels" + b.storage.kernelSuffix
            : "transpose_panels_u16"
        try launch(name, [i32(b.k), i32(cols.count), i32(cols.lowerBound / 16), .buffer(b.memory), .buffer(dest)],
                   global: [(b.k + 15) / 16, (cols.count + 15) / 16], local: [1, 1])
        return PackedMatrix(memory: dest, storage: outStorage, k: cols.count, n: b.k)
    }

    /// Rows of op(B)ᵀ (N,K) read back from the panels of op(B) as fp32:
    /// out (R,K)[i] = row ids[i] (R = `rows`), or rows 0..<N when `ids` is nil.
    /// For a frozen W (out, in) packed as op(B) = Wᵀ, the rows of W: the
    /// embedding gather from its table, or W itself, whole.
    /// `firstRow`: the panels hold rows firstRow..<firstRow + N of a matrix kept
    /// in parts (`FrozenLinear.parts`): with ids, an id outside them is left
    /// unwritten; without, the rows land at rows firstRow… of `out`.
    public func panelRows(out: DeviceBuffer<Float>, packed b: PackedMatrix, ids: DeviceBuffer<Int32>?, rows: Int,
                          firstRow: Int = 0) throws {
        opLock.lock(); defer { opLock.unlock() }
        try require(rows >= 1, "panelRows", "rows must be ≥ 1")
        try require(ids != nil || rows <= b.n, "panelRows", "\(rows) rows of a matrix with \(b.n)")
        if let ids { try require(ids.count >= rows, "panelRows", "ids has \(ids.count) elements, needs \(rows)") }
        try require(firstRow >= 0 && firstRow % 16 == 0, "panelRows", "first row \(firstRow) is not a multiple of 16")
        try requireCount(out, atLeast: (ids == nil ? firstRow + rows : rows) * b.k, "panelRows", "out")
        try launch("panel_rows" + b.storage.kernelSuffix,
                   [i32(rows), i32(b.k), .int(ids == nil ? 0 : 1), .buffer(ids ?? out), i32(firstRow), i32(b.n),
                    .buffer(b.memory), .buffer(out)],
                   global: [b.k, rows], local: [min(b.k, config.elementwiseLocal), 1])
    }

    /// C (M,N) = alpha·op(A)·op(B) [+ bias] + beta·C, all row-major fp32.
    /// A is stored (M,K) for `.none`, (K,M) for `.transposed`; B (K,N) or (N,K).
    /// beta = 0 never reads C.
    public func matmul(_ c: DeviceBuffer<Float>, _ a: DeviceBuffer<Float>, _ b: DeviceBuffer<Float>,
                       m: Int, n: Int, k: Int, transA: Transpose = .none, transB: Transpose = .none,
                       alpha: Float = 1, beta: Float = 0, bias: DeviceBuffer<Float>? = nil) throws {
        opLock.lock(); defer { opLock.unlock() }
        try require(m >= 1 && n >= 1 && k >= 1, "matmul", "sizes must be ≥ 1 (M=\(m), N=\(n), K=\(k))")
        try requireCount(a, atLeast: m * k, "matmul", "A")
        let packed = try pack(b, k: k, n: n, transB, into: scratch(0, count: PackedMatrix.count(k: k, n: n)))
        try matmul(c, a, packed: packed, m: m, transA: transA, alpha: alpha, beta: beta, bias: bias)
    }

    /// C (M,N) = alpha·op(A)·op(B) [+ bias] + beta·C with op(B) already packed.
    public func matmul(_ c: DeviceBuffer<Float>, _ a: DeviceBuffer<Float>, packed b: PackedMatrix,
                       m: Int, transA: Transpose = .none, alpha: Float = 1, beta: Float = 0,
                       bias: DeviceBuffer<Float>? = nil) throws {
        opLock.lock(); defer { opLock.unlock() }
        try require(m >= 1, "matmul", "M must be ≥ 1")
        try requireCount(a, atLeast: m * b.k, "matmul", "A")
        try gemm(c, m: m, alpha: alpha, a: StridedOperand(a, rows: m, cols: b.k, transA), b: b,
                 ext: nil, bias: bias, beta: beta)
    }

    /// The one launcher of the `gemm_packed` family: the kernel is chosen by
    /// the panels' storage (`gemm_packed` + `WeightStorage.kernelSuffix`);
    /// every member takes the same arguments.
    /// A block of N columns of a wider matrix (a weight kept in parts): `ldc`
    /// is C's row stride (default N) and the block starts at column `col0` (a
    /// multiple of 16) of C, of the bias, of the extension's panels (packed
    /// over the whole width) and of its dropout mask.
    func gemm(_ c: DeviceBuffer<Float>, m: Int, alpha: Float, a: StridedOperand, b: PackedMatrix,
              ext: GemmExtension?, bias: DeviceBuffer<Float>?, beta: Float, ldc: Int? = nil, col0: Int = 0) throws {
        let n = b.n, k = b.k, ldc = ldc ?? b.n
        try require(m >= 1, "gemm", "M must be ≥ 1")
        try require(col0 >= 0 && col0 % 16 == 0, "gemm", "first column \(col0) is not a multiple of 16")
        try require(ldc >= col0 + n, "gemm", "row stride \(ldc) of C is below its columns \(col0) + \(n)")
        try requireCount(c, atLeast: (m - 1) * ldc + col0 + n, "gemm", "C")
        if let bias { try requireCount(bias, atLeast: col0 + n, "gemm", "bias") }
        if let ext {
            // A whole matrix: the same N; a block of columns: panels over the whole width.
            try require(ldc == n ? ext.b.n == n : ext.b.n >= col0 + n, "gemm",
                        "extension N \(ext.b.n) does not match columns \(col0)..<\(col0 + n)")
        }
        try require(ext?.b.storage ?? .f32 == .f32, "gemm", "extension panels must be fp32")
        try require(ext?.a.offset ?? 0 == 0, "gemm", "the extension's A has no offset")
        // The last element each strided operand is read at (rows past M read row M−1).
        func reach(_ o: StridedOperand, cols: Int) -> Int { o.offset + (m - 1) * o.rowStride + (cols - 1) * o.colStride + 1 }
        try require(a.offset >= 0, "gemm", "A's offset \(a.offset) is negative")
        try requireCount(a.buffer, atLeast: reach(a, cols: k), "gemm", "A")
        if let ext { try requireCount(ext.a.buffer, atLeast: reach(ext.a, cols: ext.b.k), "gemm", "the extension's A") }
        if b.storage.isQuantized && quantStaged.contains(b.storage) && m >= KernelConfig.quantStageMinRows {
            // Staged: W dequantized once into fp32 panels, a block of columns at a time, each block multiplied by
            // the fp32 gemm into its columns of C (same values, same order: bit-identical to the in-register path).
            let perPanel = k * 16, panels = (n + 15) / 16
            let blockPanels = max(1, min(panels, stagedPanelBytesLimit / (4 * perPanel)))
            let dest = try scratch(Self.stagedPanelsSlot, count: blockPanels * perPanel)
            let sub = b.storage.quantSubRows
            try require(k % sub == 0, "gemm", "K \(k) is not a whole number of \(b.storage.rawValue) sub-blocks (\(sub) rows)")
            for p0 in stride(from: 0, to: panels, by: blockPanels) {
                let np = min(blockPanels, panels - p0)
                try launch("widen_panels" + b.storage.kernelSuffix, [i32(k), i32(np), i32(p0), .buffer(b.memory), .buffer(dest)],
                           global: [np, k / sub], local: [1, 1])
                try gemm(c, m: m, alpha: alpha, a: a, b: PackedMatrix(memory: dest, storage: .f32, k: k, n: min(np * 16, n - p0 * 16)),
                         ext: ext, bias: bias, beta: beta, ldc: ldc, col0: col0 + p0 * 16)
            }
            return
        }
        let shape = gemmLaunch(m: m, n: n, storage: b.storage)
        try launch(shape.kernel, [
            i32(m), i32(n), i32(k), .float(alpha),
            .buffer(a.buffer), i32(a.rowStride), i32(a.colStride),
            .buffer(b.memory),
            i32(ext?.b.k ?? 0), .float(ext?.alpha ?? 0),
            .buffer(ext?.a.buffer ?? a.buffer), i32(ext?.a.rowStride ?? 0), i32(ext?.a.colStride ?? 0),
            .buffer(ext?.b.memory ?? a.buffer),
            .int(ext?.dropout == nil ? 0 : 1), .float(ext?.dropout?.p ?? 0), .uint(ext?.dropout?.seed ?? 0),
            i32(ext?.dropout?.maskLd ?? 0),
            .int(bias == nil ? 0 : 1), .buffer(bias ?? c),
            .float(beta), .buffer(c), i32(ldc), i32(col0), i32(a.offset),
        ], global: shape.global, local: shape.local)
    }

    /// out[n] = beta·out[n] + Σ_m X[m, n], X (M,N). The bias gradient.
    public func columnSum(_ out: DeviceBuffer<Float>, _ x: DeviceBuffer<Float>, m: Int, n: Int, beta: Float = 0) throws {
        opLock.lock(); defer { opLock.unlock() }
        try requireCount(x, atLeast: m * n, "columnSum", "X")
        try requireCount(out, atLeast: n, "columnSum", "out")
        try launch("colsum", [i32(m), i32(n), .buffer(x), .float(beta), .buffer(out)],
                   global: [n], local: [config.elementwiseLocal])
    }
}
