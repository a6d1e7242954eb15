import OpenCLRuntime

extension ComputeContext {
    /// x[i] += magnitude·u_i with u_i uniform in [−1, 1), a pure function of
    /// (seed, i) (the dropout hash): NEFTune's noise on the embedding output.
    public func addUniformNoise(_ x: DeviceBuffer<Float>, count n: Int, magnitude: Float, seed: UInt32) throws {
        opLock.lock(); defer { opLock.unlock() }
        try requireCount(x, atLeast: n, "addUniformNoise", "x")
        try launch("add_uniform_noise", [try i32(n), .float(magnitude), .uint(seed), .buffer(x)],
                   global: [n], local: [config.elementwiseLocal])
    }
}
