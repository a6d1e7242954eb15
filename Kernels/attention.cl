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

// Σ_d a[d]·b[d] over D, sixteen lanes at a time when D allows, else four.
inline float att_dot(const __global float* a, const __global float* b, int D) {
    if ((D & 15) == 0) {
        float16 acc = (float16)(0.0f);
        for (int d = 0; d < D; d += 16) acc = fma(vload16(0, a + d), vload16(0, b + d), acc);
        float8 h8 = acc.lo + acc.hi; float4 h4 = h8.lo + h8.hi; float2 h2 = h4.lo + h4.hi;
        return h2.x + h2.y;
    }
    float4 s4 = (float4)(0.0f);
    int d = 0;
    for (; d + 4 <= D; d += 4) s4 = fma(vload4(0, a + d), vload4(0, b + d), s4);
    float s = (s4.x + s4.y) + (s4.z + s4.w);
    for (; d < D; d++) s = fma(a[d], b[d], s);
    return s;
}

// acc[d] = acc[d]·keep + w·x[d] over D (private accumulator, global row).
inline void att_axpy(float* acc, float keep, float w, const __global float* x, int D) {
    if ((D & 15) == 0) {
        for (int d = 0; d < D; d += 16) vstore16(fma((float16)(w), vload16(0, x + d), vload16(0, acc + d) * keep), 0, acc + d);
        return;
    }
    int d = 0;
    for (; d + 4 <= D; d += 4) vstore4(fma((float4)(w), vload4(0, x + d), vload4(0, acc + d) * keep), 0, acc + d);
    for (; d < D; d++) acc[d] = fma(w, x[d], acc[d] * keep);
}

#define ATT_BLOCK 16

// global (T, NH, B): one work-item per query row. Keys are taken ATT_BLOCK
// at a time: the running max and the accumulator are rescaled once per
// block, so each key costs one exp.
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
    for (int j0 = 0; j0 <= t; j0 += ATT_BLOCK) {
        int jn = min(ATT_BLOCK, t + 1 - j0);
        float s[ATT_BLOCK];
        float bm = -INFINITY;
        for (int jj = 0; jj < jn; jj++) {
            const __global float* kj = k + (((size_t)b * T + j0 + jj) * NKV + kvh) * D;
            s[jj] = att_dot(qi, kj, D) * scale;
            bm = fmax(bm, s[jj]);
        }
        float m_new = fmax(m, bm);
        float corr = exp(m - m_new);
        l *= corr;
        for (int jj = 0; jj < jn; jj++) {
            const __global float* vj = v + (((size_t)b * T + j0 + jj) * NKV + kvh) * D;
            float p = exp(s[jj] - m_new);
            l += p;
            att_axpy(acc, jj == 0 ? corr : 1.0f, p, vj, D);
        }
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
        float p = exp(att_dot(q + qo, k + ko, D) * scale - L);
        float ds = p * (att_dot(dout + qo, v + ko, D) - Di) * scale;
        att_axpy(acc, 1.0f, ds, k + ko, D);
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
            size_t r = ((size_t)b * NH + h) * T + i;
            float p = exp(att_dot(q + qo, k + ko, D) * scale - lse[r]);
            float ds = p * (att_dot(dout + qo, v + ko, D) - delta[r]) * scale;
            att_axpy(ak, 1.0f, ds, q + qo, D);
            att_axpy(av, 1.0f, p, dout + qo, D);
        }
    }
    for (int d = 0; d < D; d++) { dk[ko + d] = ak[d]; dv[ko + d] = av[d]; }
}
