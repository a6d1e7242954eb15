// attention.cl — causal self-attention with grouped-query heads, never
// materialising the T×T score matrix: the forward keeps an online softmax per
// query row and saves only its log-sum-exp; the backward recomputes the
// probabilities from it (as flash attention does).
//
// q (B·T, NH, D), k/v (B·T, NKV, D), out (B·T, NH, D), lse (B, NH, T).
// Query head h reads KV head h / (NH/NKV). scale = 1/√D.
#ifndef ATT_MAX_D
#define ATT_MAX_D 256
#endif

// global (T, NH, B): one work-item per query row.
__kernel void attention_forward(int B, int T, int NH, int NKV, int D, float scale,
                                __global const float* q, __global const float* k,
                                __global const float* v,
                                __global float* out, __global float* lse) {
    int t = get_global_id(0), h = get_global_id(1), b = get_global_id(2);
    if (t >= T || h >= NH || b >= B) return;
    int kvh = h / (NH / NKV);
    const __global float* qi = q + (((size_t)b * T + t) * NH + h) * D;
    float acc[ATT_MAX_D];
    for (int d = 0; d < D; d++) acc[d] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    for (int j = 0; j <= t; j++) {
        const __global float* kj = k + (((size_t)b * T + j) * NKV + kvh) * D;
        const __global float* vj = v + (((size_t)b * T + j) * NKV + kvh) * D;
        float s = 0.0f;
        for (int d = 0; d < D; d++) s = fma(qi[d], kj[d], s);
        s *= scale;
        float m_new = fmax(m, s);
        float corr = exp(m - m_new);
        float p = exp(s - m_new);
        l = l * corr + p;
        for (int d = 0; d < D; d++) acc[d] = fma(p, vj[d], acc[d] * corr);
        m = m_new;
    }
    __global float* oi = out + (((size_t)b * T + t) * NH + h) * D;
    float inv = 1.0f / l;
    for (int d = 0; d < D; d++) oi[d] = acc[d] * inv;
    lse[((size_t)b * NH + h) * T + t] = m + log(l);
}

// delta[b,h,t] = Σ_d dout·out (the softmax-backward row term). global (T, NH, B)
__kernel void attention_backward_delta(int B, int T, int NH, int D,
                                       __global const float* dout, __global const float* out,
                                       __global float* delta) {
    int t = get_global_id(0), h = get_global_id(1), b = get_global_id(2);
    if (t >= T || h >= NH || b >= B) return;
    size_t o = (((size_t)b * T + t) * NH + h) * D;
    float s = 0.0f;
    for (int d = 0; d < D; d++) s = fma(dout[o + d], out[o + d], s);
    delta[((size_t)b * NH + h) * T + t] = s;
}

// dq[i] = scale · Σ_{j≤i} p_ij (dout_i·v_j − delta_i) k_j. global (T, NH, B)
__kernel void attention_backward_dq(int B, int T, int NH, int NKV, int D, float scale,
                                    __global const float* q, __global const float* k,
                                    __global const float* v, __global const float* dout,
                                    __global const float* lse, __global const float* delta,
                                    __global float* dq) {
    int t = get_global_id(0), h = get_global_id(1), b = get_global_id(2);
    if (t >= T || h >= NH || b >= B) return;
    int kvh = h / (NH / NKV);
    size_t qo = (((size_t)b * T + t) * NH + h) * D;
    float L = lse[((size_t)b * NH + h) * T + t], Di = delta[((size_t)b * NH + h) * T + t];
    float acc[ATT_MAX_D];
    for (int d = 0; d < D; d++) acc[d] = 0.0f;
    for (int j = 0; j <= t; j++) {
        size_t ko = (((size_t)b * T + j) * NKV + kvh) * D;
        float s = 0.0f, dp = 0.0f;
        for (int d = 0; d < D; d++) { s = fma(q[qo + d], k[ko + d], s); dp = fma(dout[qo + d], v[ko + d], dp); }
        float p = exp(s * scale - L);
        float ds = p * (dp - Di) * scale;
        for (int d = 0; d < D; d++) acc[d] = fma(ds, k[ko + d], acc[d]);
    }
    for (int d = 0; d < D; d++) dq[qo + d] = acc[d];
}

// For key/value row j of KV head g, over every query head of the group and i ≥ j:
//   dk_j = scale · Σ p_ij (dout_i·v_j − delta_i) q_i,   dv_j = Σ p_ij dout_i.
// global (T, NKV, B)
__kernel void attention_backward_dkv(int B, int T, int NH, int NKV, int D, float scale,
                                     __global const float* q, __global const float* k,
                                     __global const float* v, __global const float* dout,
                                     __global const float* lse, __global const float* delta,
                                     __global float* dk, __global float* dv) {
    int j = get_global_id(0), g = get_global_id(1), b = get_global_id(2);
    if (j >= T || g >= NKV || b >= B) return;
    int group = NH / NKV;
    size_t ko = (((size_t)b * T + j) * NKV + g) * D;
    float ak[ATT_MAX_D], av[ATT_MAX_D];
    for (int d = 0; d < D; d++) { ak[d] = 0.0f; av[d] = 0.0f; }
    for (int h = g * group; h < (g + 1) * group; h++) {
        for (int i = j; i < T; i++) {
            size_t qo = (((size_t)b * T + i) * NH + h) * D;
            float s = 0.0f, dp = 0.0f;
            for (int d = 0; d < D; d++) { s = fma(q[qo + d], k[ko + d], s); dp = fma(dout[qo + d], v[ko + d], dp); }
            size_t r = ((size_t)b * NH + h) * T + i;
            float p = exp(s * scale - lse[r]);
            float ds = p * (dp - delta[r]) * scale;
            for (int d = 0; d < D; d++) { ak[d] = fma(ds, q[qo + d], ak[d]); av[d] = fma(p, dout[qo + d], av[d]); }
        }
    }
    for (int d = 0; d < D; d++) { dk[ko + d] = ak[d]; dv[ko + d] = av[d]; }
}
