// rmsnorm.cl — RMSNorm as Llama uses it: y = x · rstd · w, rstd = 1/sqrt(mean(x²) + eps).
// One work-group of ROW_WG work-items per row (row_sum etc. in common.cl).

// x (N,C), w (C) -> y (N,C) = beta·y + x·rstd·w, rstd (N). global (N·ROW_WG), local (ROW_WG)
// beta = 1 adds the norm into y (Gemma's sandwich norms: x_mid = x_in + norm(o)); beta = 0 never reads y.
__kernel void rmsnorm_forward(int N, int C, float eps,
                              __global const float* x, __global const float* w,
                              float beta, __global float* y, __global float* rstd) {
    __local float red[ROW_WG];
    int row = get_group_id(0);  // global = N·ROW_WG exactly: no guard (see common.cl)
    const __global float* xr = x + (size_t)row * C;
    float ss = row_sum(row_dot_partial(C, xr, xr), red);
    float r = rsqrt(ss / (float)C + eps);
    if (get_local_id(0) == 0) rstd[row] = r;
    __global float* yr = y + (size_t)row * C;
    for (int c = get_local_id(0); c < C; c += ROW_WG) {
        float v = xr[c] * r * w[c];
        yr[c] = beta != 0.0f ? fma(beta, yr[c], v) : v;
    }
}

// dx = beta·dx + r·w⊙dy − (r³/C)·x·Σ_j(w_j·dy_j·x_j)
// dy, x (N,C), w (C), rstd (N) -> dx (N,C). global (N·ROW_WG), local (ROW_WG)
__kernel void rmsnorm_backward_dx(int N, int C,
                                  __global const float* dy, __global const float* x,
                                  __global const float* w, __global const float* rstd,
                                  float beta, __global float* dx) {
    __local float red[ROW_WG];
    int row = get_group_id(0);  // global = N·ROW_WG exactly: no guard (see common.cl)
    const __global float* xr = x + (size_t)row * C;
    const __global float* dyr = dy + (size_t)row * C;
    float part = 0.0f;
    for (int c = get_local_id(0); c < C; c += ROW_WG) part = fma(w[c] * dyr[c], xr[c], part);
    float dot = row_sum(part, red);
    float r = rstd[row];
    float k = r * r * r * dot / (float)C;
    __global float* dxr = dx + (size_t)row * C;
    for (int c = get_local_id(0); c < C; c += ROW_WG) {
        float g = r * w[c] * dyr[c] - k * xr[c];
        dxr[c] = beta != 0.0f ? fma(beta, dxr[c], g) : g;
    }
}

// dw[c] = beta·dw[c] + Σ_n dy[n,c]·x[n,c]·rstd[n].  global (C)
__kernel void rmsnorm_backward_dw(int N, int C,
                                  __global const float* dy, __global const float* x,
                                  __global const float* rstd,
                                  float beta, __global float* dw) {
    int c = get_global_id(0);
    if (c >= C) return;
    float s = 0.0f;
    for (int n = 0; n < N; n++) s = fma(dy[(size_t)n * C + c] * x[(size_t)n * C + c], rstd[n], s);
    dw[c] = beta != 0.0f ? fma(beta, dw[c], s) : s;
}
