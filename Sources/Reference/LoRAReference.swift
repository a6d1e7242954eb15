/// float64 references of the fused LoRA linear, written as the math reads.
extension Reference {
    /// y = x·Wᵀ + s·(dropout(x)·Aᵀ)·Bᵀ (+ bias). x (N,in), W (out,in), A (r,in), B (out,r).
    /// `mask` holds the inverted-dropout multipliers of x (N·in), nil for none.
    public static func loraForward(x: [Double], w: [Double], a: [Double], b: [Double], bias: [Double]?,
                                   n: Int, din: Int, dout: Int, r: Int, scale s: Double, mask: [Double]?)
        -> (y: [Double], u: [Double]) {
        var u = [Double](repeating: 0, count: n * r)
        for i in 0..<n {
            for j in 0..<r {
                var acc = 0.0
                for p in 0..<din { acc += x[i * din + p] * (mask?[i * din + p] ?? 1) * a[j * din + p] }
                u[i * r + j] = acc
            }
        }
        var y = [Double](repeating: 0, count: n * dout)
        for i in 0..<n {
            for o in 0..<dout {
                var base = 0.0
                for p in 0..<din { base += x[i * din + p] * w[o * din + p] }
                var low = 0.0
                for j in 0..<r { low += u[i * r + j] * b[o * r + j] }
                y[i * dout + o] = base + s * low + (bias?[o] ?? 0)
            }
        }
        return (y, u)
    }

    /// The analytic backward: dX, dA, dB, dbias for dY (N,out).
    public static func loraBackward(dy: [Double], x: [Double], w: [Double], a: [Double], b: [Double],
                                    n: Int, din: Int, dout: Int, r: Int, scale s: Double, mask: [Double]?)
        -> (dx: [Double], da: [Double], db: [Double], dbias: [Double]) {
        let (_, u) = loraForward(x: x, w: w, a: a, b: b, bias: nil, n: n, din: din, dout: dout, r: r,
                                 scale: s, mask: mask)
        var g = [Double](repeating: 0, count: n * r)  // g = s·dY·B
        for i in 0..<n { for j in 0..<r {
            var acc = 0.0
            for o in 0..<dout { acc += dy[i * dout + o] * b[o * r + j] }
            g[i * r + j] = s * acc
        } }
        var db = [Double](repeating: 0, count: dout * r)
        for o in 0..<dout { for j in 0..<r {
            var acc = 0.0
            for i in 0..<n { acc += dy[i * dout + o] * u[i * r + j] }
            db[o * r + j] = s * acc
        } }
        var da = [Double](repeating: 0, count: r * din)
        for j in 0..<r { for p in 0..<din {
            var acc = 0.0
            for i in 0..<n { acc += g[i * r + j] * x[i * din + p] * (mask?[i * din + p] ?? 1) }
            da[j * din + p] = acc
        } }
        var dx = [Double](repeating: 0, count: n * din)
        for i in 0..<n { for p in 0..<din {
            var base = 0.0
            for o in 0..<dout { base += dy[i * dout + o] * w[o * din + p] }
            var low = 0.0
            for j in 0..<r { low += g[i * r + j] * a[j * din + p] }
            dx[i * din + p] = base + (mask?[i * din + p] ?? 1) * low
        } }
        var dbias = [Double](repeating: 0, count: dout)
        for i in 0..<n { for o in 0..<dout { dbias[o] += dy[i * dout + o] } }
        return (dx, da, db, dbias)
    }
}
