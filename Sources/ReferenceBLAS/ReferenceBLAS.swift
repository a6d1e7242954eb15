import CBLAS
import Reference

// OpenBLAS sgemm beside the float64 references: the speed yardstick of the
// benchmarks and a second opinion in the parity tests. Tests and benchmarks only.

extension Reference {
    /// OpenBLAS sgemm, row-major, C (M,N) overwritten/accumulated as BLAS does.
    public static func sgemm(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>,
                             m: Int, n: Int, k: Int, transA: Bool = false, transB: Bool = false,
                             alpha: Float = 1, beta: Float = 0) {
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(transA ? m : k), b, Int32(transB ? k : n),
                    beta, c, Int32(n))
    }

    public static func sgemm(_ a: [Float], _ b: [Float], c: [Float]? = nil, m: Int, n: Int, k: Int,
                             transA: Bool = false, transB: Bool = false, alpha: Float = 1, beta: Float = 0) -> [Float] {
        var out = c ?? [Float](repeating: 0, count: m * n)
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                out.withUnsafeMutableBufferPointer { pc in
                    sgemm(pa.baseAddress!, pb.baseAddress!, pc.baseAddress!, m: m, n: n, k: k,
                          transA: transA, transB: transB, alpha: alpha, beta: beta)
                }
            }
        }
        return out
    }
}
