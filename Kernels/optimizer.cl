// optimizer.cl — reductions, the global gradient norm and AdamW over the one
// flat buffer that holds every trainable tensor.

// partial[g] = Σ over this work-item's stride of x[i] (or x[i]² when square).
// global (G) with G fixed by the host; deterministic for a given G.
__kernel void sum_partial(int n, int square, __global const float* x, __global float* partial) {
    int g = get_global_id(0), G = get_global_size(0);
    float s = 0.0f;
    for (int i = g; i < n; i += G) { float v = x[i]; s = square ? fma(v, v, s) : s + v; }
    partial[g] = s;
}

// out[slot] = Σ partial[0..G) (accumulate = 1: out[slot] += it). One work-item; a fixed order.
__kernel void sum_finalize(int G, __global const float* partial, int slot, int accumulate, __global float* out) {
    if (get_global_id(0) != 0) return;
    float s = 0.0f;
    for (int i = 0; i < G; i++) s += partial[i];
    out[slot] = accumulate ? out[slot] + s : s;
}

// AdamW (decoupled weight decay, bias correction), as torch.optim.AdamW:
//   p ← p − lr·wd·p;  m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²
//   p ← p − (lr/bc1) · m / (√v/√bc2 + eps)
// with g = grad · clip, clip = min(1, max_norm/(‖grad‖ + 1e-6)) when
// max_norm > 0, ‖grad‖² read from sumsq[sumsq_slot] (computed on the device, no host
// round trip). decay_mask[i] = 0 exempts an element from weight decay.
__kernel void adamw_step(int n, __global float* p, __global const float* grad,
                         __global float* m, __global float* v,
                         __global const uchar* decay_mask,
                         float lr, float beta1, float beta2, float eps, float wd,
                         float bc1, float bc2_sqrt, float max_norm,
                         __global const float* sumsq, int sumsq_slot) {
    int i = get_global_id(0);
    if (i >= n) return;
    float clip = 1.0f;
    if (max_norm > 0.0f) clip = fmin(1.0f, max_norm / (sqrt(sumsq[sumsq_slot]) + 1e-6f));
    float g = grad[i] * clip;
    float pi = p[i];
    if (decay_mask[i]) pi = pi * (1.0f - lr * wd);
    float mi = beta1 * m[i] + (1.0f - beta1) * g;
    float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    p[i] = pi - (lr / bc1) * mi / (sqrt(vi) / bc2_sqrt + eps);
}
