// activations.cl — SiLU, the SwiGLU product silu(gate) ⊙ up and the GeGLU one gelu_tanh(gate) ⊙ up, elementwise.
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

// GeGLU with the tanh GELU (Gemma's gelu_pytorch_tanh): out = gelu(gate) ⊙ up,
// gelu(x) = ½·x·(1 + tanh(u)), u = √(2/π)·(x + 0.044715·x³);
// gelu'(x) = ½·(1 + t) + ½·x·(1 − t²)·√(2/π)·(1 + 3·0.044715·x²), t = tanh(u).
// Computed through ½·(1 + tanh(u)) = σ(2u) (and 1 − t² = 4·σ(2u)·(1 − σ(2u))): exp instead of tanh, which
// pocl's CPU path runs about five times slower (Benchmarks/NOTES.md, 2026-12-07).
#define GELU_BETA 0.7978845608028654f   /* √(2/π) */
#define GELU_KAPPA 0.044715f

inline float gelu_gate(float g) {   // σ(2u) = ½·(1 + tanh(u))
    return 1.0f / (1.0f + exp(-2.0f * GELU_BETA * (g + GELU_KAPPA * g * g * g)));
}

__kernel void geglu_tanh_forward(int n, __global const float* gate, __global const float* up,
                                 __global float* out) {
    int i = get_global_id(0);
    if (i >= n) return;
    float g = gate[i];
    out[i] = g * gelu_gate(g) * up[i];
}

// dgate = dout ⊙ up ⊙ gelu'(gate), dup = dout ⊙ gelu(gate);
// gelu'(x) = s + 2·x·s·(1 − s)·√(2/π)·(1 + 3·0.044715·x²), s = σ(2u).
__kernel void geglu_tanh_backward(int n, __global const float* gate, __global const float* up,
                                  __global const float* dout,
                                  __global float* dgate, __global float* dup) {
    int i = get_global_id(0);
    if (i >= n) return;
    float g = gate[i], d = dout[i], s = gelu_gate(g);
    float grad = s + 2.0f * g * s * (1.0f - s) * GELU_BETA * (1.0f + 3.0f * GELU_KAPPA * g * g);
    dgate[i] = d * up[i] * grad;
    dup[i] = d * g * s;
}

// Final-logit soft-capping (Gemma's final_logit_softcapping): t = tanh(x / cap), x = cap·t in place; t is kept
// for the backward, dx = dy·(1 − t²) (d(cap·tanh(x/cap))/dx = 1 − t²).
__kernel void softcap_forward(int n, float cap, __global float* x, __global float* t) {
    int i = get_global_id(0);
    if (i >= n) return;
    float v = tanh(x[i] / cap);
    t[i] = v;
    x[i] = cap * v;
}

__kernel void softcap_backward(int n, __global const float* t, __global float* dy) {
    int i = get_global_id(0);
    if (i >= n) return;
    float v = t[i];
    dy[i] *= 1.0f - v * v;
}

// x *= alpha, in place (Gemma's embedding scale √H).
__kernel void scale_elements(int n, float alpha, __global float* x) {
    int i = get_global_id(0);
    if (i >= n) return;
    x[i] *= alpha;
}

// Inverted dropout: out = keep(seed, i) ? x / (1 − p) : 0.
__kernel void dropout_forward(int n, float p, uint seed,
                              __global const float* x, __global float* out) {
    int i = get_global_id(0);
    if (i >= n) return;
    out[i] = dropout_keep(seed, (ulong)i, p) ? x[i] / (1.0f - p) : 0.0f;
}
