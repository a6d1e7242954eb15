import OpenCLRuntime

public enum Transpose: Sendable { case none, transposed }

/// op(B) (K,N) packed into panels [ceil(N/16)][K][16] for `gemm_packed`.
/// Frozen base weights are packed once and kept; see `ComputeContext.pack`.
public final class PackedMatrix {
    public let buffer: DeviceBuffer<Float>
    public let k: Int
    public let n: Int
    init(buffer: DeviceBuffer<Float>, k: Int, n: Int) { self.buffer = buffer; self.k = k; self.n = n }
    static func count(k: Int, n: Int) -> Int { (n + 15) / 16 * 16 * k }
}

/// A strided view of op(A) (M,K): element (m, k) = buf[m·rowStride + k·colStride].
struct StridedOperand {
    let buffer: DeviceBuffer<Float>
    let rowStride: Int
    let colStride: Int
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

    /// The one launcher of `gemm_packed`.
    func gemm(_ c: DeviceBuffer<Float>, m: Int, alpha: Float, a: StridedOperand, b: PackedMatrix,
              ext: GemmExtension?, bias: DeviceBuffer<Float>?, beta: Float) throws {
        let n = b.n, k = b.k
        try require(m >= 1, "gemm", "M must be ≥ 1")
        try requireCount(c, atLeast: m * n, "gemm", "C")
        if let bias { try requireCount(bias, atLeast: n, "gemm", "bias") }
        if let ext {
            try require(ext.b.n == n, "gemm", "extension N \(ext.b.n) differs from N \(n)")
        }
        let shape = gemmLaunch(m: m, n: n)
        try launch(shape.kernel, [
            i32(m), i32(n), i32(k), .float(alpha),
            .buffer(a.buffer), i32(a.rowStride), i32(a.colStride),
            .buffer(b.buffer),
            i32(ext?.b.k ?? 0), .float(ext?.alpha ?? 0),
            .buffer(ext?.a.buffer ?? a.buffer), i32(ext?.a.rowStride ?? 0), i32(ext?.a.colStride ?? 0),
            .buffer(ext?.b.buffer ?? b.buffer),
            .int(ext?.dropout == nil ? 0 : 1), .float(ext?.dropout?.p ?? 0), .uint(ext?.dropout?.seed ?? 0),
            i32(ext?.dropout?.maskLd ?? 0),
            .int(bias == nil ? 0 : 1), .buffer(bias ?? c),
            .float(beta), .buffer(c),
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
