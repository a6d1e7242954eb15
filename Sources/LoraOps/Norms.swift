import OpenCLRuntime

extension ComputeContext {
    /// y = beta·y + x · rstd · w, rstd[row] = 1/sqrt(mean(x[row]²) + eps).
    /// x, y (N,C), w (C), rstd (N) kept for backward. beta 0 (the default) never reads y; 1 adds the norm
    /// into y (a residual add).
    public func rmsnormForward(y: DeviceBuffer<Float>, rstd: DeviceBuffer<Float>,
                               x: DeviceBuffer<Float>, weight: DeviceBuffer<Float>,
                               rows n: Int, cols c: Int, eps: Float, beta: Float = 0) throws {
        opLock.lock(); defer { opLock.unlock() }
        let op = "rmsnormForward"
        try require(n >= 1 && c >= 1, op, "sizes must be ≥ 1 (N=\(n), C=\(c))")
        try requireCount(x, atLeast: n * c, op, "x")
        try requireCount(y, atLeast: n * c, op, "y")
        try requireCount(weight, atLeast: c, op, "weight")
        try requireCount(rstd, atLeast: n, op, "rstd")
        let wg = config.rowWorkGroup
        try launch("rmsnorm_forward", [
            i32(n), i32(c), .float(eps), .buffer(x), .buffer(weight), .float(beta), .buffer(y), .buffer(rstd),
        ], global: [n * wg], local: [wg])
    }

    /// dx = beta·dx + ∂L/∂x and, when `dweight` is given, dweight = dwBeta·dweight + ∂L/∂w.
    /// dy, x, dx (N,C), w (C), rstd (N) from the forward.
    public func rmsnormBackward(dx: DeviceBuffer<Float>, dweight: DeviceBuffer<Float>?,
                                dy: DeviceBuffer<Float>, x: DeviceBuffer<Float>,
                                weight: DeviceBuffer<Float>, rstd: DeviceBuffer<Float>,
                                rows n: Int, cols c: Int, beta: Float = 0, dwBeta: Float = 0) throws {
        opLock.lock(); defer { opLock.unlock() }
        let op = "rmsnormBackward"
        try require(n >= 1 && c >= 1, op, "sizes must be ≥ 1 (N=\(n), C=\(c))")
        for (b, name) in [(dx, "dx"), (dy, "dy"), (x, "x")] { try requireCount(b, atLeast: n * c, op, name) }
        try requireCount(weight, atLeast: c, op, "weight")
        try requireCount(rstd, atLeast: n, op, "rstd")
        let wg = config.rowWorkGroup
        try launch("rmsnorm_backward_dx", [
            i32(n), i32(c), .buffer(dy), .buffer(x), .buffer(weight), .buffer(rstd),
            .float(beta), .buffer(dx),
        ], global: [n * wg], local: [wg])
        if let dweight {
            try requireCount(dweight, atLeast: c, op, "dweight")
            try launch("rmsnorm_backward_dw", [
                i32(n), i32(c), .buffer(dy), .buffer(x), .buffer(rstd),
                .float(dwBeta), .buffer(dweight),
            ], global: [c], local: [config.elementwiseLocal])
        }
    }
}
