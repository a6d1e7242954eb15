import OpenCLRuntime

extension ComputeContext {
    private func elementwise(_ name: String, count n: Int, _ buffers: [DeviceBuffer<Float>],
                             _ names: [String], prefix: [KernelArgument] = []) throws {
        try require(n >= 1, name, "count must be ≥ 1")
        for (b, bn) in zip(buffers, names) { try requireCount(b, atLeast: n, name, bn) }
        try launch(name, [i32(n)] + prefix + buffers.map { .buffer($0) },
                   global: [n], local: [config.elementwiseLocal])
    }

    /// out = silu(x) = x·σ(x), n elements.
    public func siluForward(out: DeviceBuffer<Float>, x: DeviceBuffer<Float>, count n: Int) throws {
        opLock.lock(); defer { opLock.unlock() }
        try elementwise("silu_forward", count: n, [x, out], ["x", "out"])
    }

    /// dx = dout ⊙ silu'(x).
    public func siluBackward(dx: DeviceBuffer<Float>, x: DeviceBuffer<Float>, dout: DeviceBuffer<Float>, count n: Int) throws {
        opLock.lock(); defer { opLock.unlock() }
        try elementwise("silu_backward", count: n, [x, dout, dx], ["x", "dout", "dx"])
    }

    /// out = silu(gate) ⊙ up: `gatedForward(.silu, …)`.
    public func swigluForward(out: DeviceBuffer<Float>, gate: DeviceBuffer<Float>, up: DeviceBuffer<Float>, count n: Int) throws {
        try gatedForward(.silu, out: out, gate: gate, up: up, count: n)
    }

    /// dgate = dout ⊙ up ⊙ silu'(gate), dup = dout ⊙ silu(gate): `gatedBackward(.silu, …)`.
    public func swigluBackward(dgate: DeviceBuffer<Float>, dup: DeviceBuffer<Float>,
                               gate: DeviceBuffer<Float>, up: DeviceBuffer<Float>, dout: DeviceBuffer<Float>,
                               count n: Int) throws {
        try gatedBackward(.silu, dgate: dgate, dup: dup, gate: gate, up: up, dout: dout, count: n)
    }

    /// out = act(gate) ⊙ up: SwiGLU (silu) or GeGLU (tanh GELU).
    public func gatedForward(_ act: GatedActivation, out: DeviceBuffer<Float>, gate: DeviceBuffer<Float>,
                             up: DeviceBuffer<Float>, count n: Int) throws {
        opLock.lock(); defer { opLock.unlock() }
        try elementwise(act.kernel + "_forward", count: n, [gate, up, out], ["gate", "up", "out"])
    }

    /// dgate = dout ⊙ up ⊙ act'(gate), dup = dout ⊙ act(gate).
    public func gatedBackward(_ act: GatedActivation, dgate: DeviceBuffer<Float>, dup: DeviceBuffer<Float>,
                              gate: DeviceBuffer<Float>, up: DeviceBuffer<Float>, dout: DeviceBuffer<Float>,
                              count n: Int) throws {
        opLock.lock(); defer { opLock.unlock() }
        try elementwise(act.kernel + "_backward", count: n, [gate, up, dout, dgate, dup],
                        ["gate", "up", "dout", "dgate", "dup"])
    }

    /// Soft-capping in place: x = cap·tanh(x / cap), the tanh kept in `tanh` for the backward (n elements).
    public func softcapForward(_ x: DeviceBuffer<Float>, tanh t: DeviceBuffer<Float>, cap: Float, count n: Int) throws {
        opLock.lock(); defer { opLock.unlock() }
        try require(cap > 0, "softcapForward", "cap must be positive, got \(cap)")
        try elementwise("softcap_forward", count: n, [x, t], ["x", "tanh"], prefix: [.float(cap)])
    }

    /// The soft-capping's backward in place: dy ⊙= 1 − tanh².
    public func softcapBackward(_ dy: DeviceBuffer<Float>, tanh t: DeviceBuffer<Float>, count n: Int) throws {
        opLock.lock(); defer { opLock.unlock() }
        try elementwise("softcap_backward", count: n, [t, dy], ["tanh", "dy"])
    }

    /// x *= alpha, n elements in place.
    public func scale(_ x: DeviceBuffer<Float>, by alpha: Float, count n: Int) throws {
        opLock.lock(); defer { opLock.unlock() }
        try elementwise("scale_elements", count: n, [x], ["x"], prefix: [.float(alpha)])
    }

    /// Inverted dropout with the counter-based mask: out[i] = keep(seed, i) ? x[i]/(1−p) : 0.
    public func dropoutForward(out: DeviceBuffer<Float>, x: DeviceBuffer<Float>, count n: Int,
                               p: Float, seed: UInt32) throws {
        opLock.lock(); defer { opLock.unlock() }
        try require(p >= 0 && p < 1, "dropoutForward", "p must be in [0, 1), got \(p)")
        try elementwise("dropout_forward", count: n, [x, out], ["x", "out"], prefix: [.float(p), .uint(seed)])
    }
}

/// The MLP's gated activation: act(gate(x)) ⊙ up(x) (config.json's hidden_act / hidden_activation).
public enum GatedActivation: String, Sendable, CaseIterable {
    /// silu (Llama, Mistral, Qwen, Phi-3, SmolLM3).
    case silu
    /// gelu_pytorch_tanh: ½·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) (Gemma).
    case geluTanh = "gelu_pytorch_tanh"

    var kernel: String { self == .silu ? "swiglu" : "geglu_tanh" }
}
