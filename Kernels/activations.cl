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
#define GELU_BETA 0.7978845608028654f   /* √(2/π) */
#define GELU_KAPPA 0.044715f

__kernel void geglu_tanh_forward(int n, __global const float* gate, __global const float* up,
                                 __global float* out) {
    int i = get_global_id(0);
    if (i >= n) return;
    float g = gate[i];
    float t = tanh(GELU_BETA * (g + GELU_KAPPA * g * g * g));
    out[i] = 0.5f * g * (1.0f + t) * up[i];
}

// dgate = dout ⊙ up ⊙ gelu'(gate), dup = dout ⊙ gelu(gate)
__kernel void geglu_tanh_backward(int n, __global const float* gate, __global const float* up,
                                  __global const float* dout,
                                  __global float* dgate, __global float* dup) {
    int i = get_global_id(0);
    if (i >= n) return;
    float g = gate[i], d = dout[i];
    float t = tanh(GELU_BETA * (g + GELU_KAPPA * g * g * g));
    float grad = 0.5f * (1.0f + t) + 0.5f * g * (1.0f - t * t) * GELU_BETA * (1.0f + 3.0f * GELU_KAPPA * g * g);
    dgate[i] = d * up[i] * grad;
    dup[i] = d * 0.5f * g * (1.0f + t);
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
