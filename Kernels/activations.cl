// activations.cl — SiLU and the SwiGLU product silu(gate) ⊙ up, elementwise.
// silu(x) = x·σ(x);  silu'(x) = σ(x)·(1 + x·(1 − σ(x))).
// All take n elements, global (n) rounded up to the local size.

inline float sigmoidf(float x) { return 1.0f / (1.0f + exp(-x)); }

__kernel void silu_forward(int n, __global const float* x, __global float* out) {
    int i = get_global_id(0);
    if (i >= n) return;
    float v = x[i];
    out[i] = v * sigmoidf(v);
}

__kernel void silu_backward(int n, __global const float* x, __global const float* dout,
                            __global float* dx) {
    int i = get_global_id(0);
    if (i >= n) return;
    float v = x[i], s = sigmoidf(v);
    dx[i] = dout[i] * s * (1.0f + v * (1.0f - s));
}

// out = silu(gate) ⊙ up
__kernel void swiglu_forward(int n, __global const float* gate, __global const float* up,
                             __global float* out) {
    int i = get_global_id(0);
    if (i >= n) return;
    float g = gate[i];
    out[i] = g * sigmoidf(g) * up[i];
}

// dgate = dout ⊙ up ⊙ silu'(gate), dup = dout ⊙ silu(gate)
__kernel void swiglu_backward(int n, __global const float* gate, __global const float* up,
                              __global const float* dout,
                              __global float* dgate, __global float* dup) {
    int i = get_global_id(0);
    if (i >= n) return;
    float g = gate[i], s = sigmoidf(g), d = dout[i];
    dgate[i] = d * up[i] * s * (1.0f + g * (1.0f - s));
    dup[i] = d * g * s;
}

// Inverted dropout: out = keep(seed, i) ? x / (1 − p) : 0.
__kernel void dropout_forward(int n, float p, uint seed,
                              __global const float* x, __global float* out) {
    int i = get_global_id(0);
    if (i >= n) return;
    out[i] = dropout_keep(seed, (ulong)i, p) ? x[i] / (1.0f - p) : 0.0f;
}
