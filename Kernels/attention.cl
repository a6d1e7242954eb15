// attention.cl — causal self-attention with grouped-query heads, never
// materialising the T×T score matrix: the forward keeps an online softmax per
// query row and saves only its log-sum-exp; the backward recomputes the
// probabilities from it (as flash attention does).
//
// q (B·T, NH, D), k/v (B·T, NKV, D), out (B·T, NH, D), lse (B, NH, T).
// Query head h reads KV head h / (NH/NKV). scale = 1/√D.
//
// Sixteen keys (or queries) are scored at once as the lanes of a float16:
// the operand whose rows are scanned is first transposed to (B, heads, D, Tp)
// with Tp = T rounded up to 16, zero-padded, so lane j of a 16-block is one
// contiguous vload16. The softmax exps then run sixteen at a time too.
// Each work-item keeps its accumulator rows (D ≤ 256) in float16 registers.
//
// Packed rows: when `packed` ≠ 0, seg (B·T) gives for each token the index
// (within its row) of the first token of its sample, and query t attends only
// keys j with seg[t] ≤ j ≤ t: attention never crosses a sample boundary.
// Samples are contiguous, so seg is non-decreasing along a row. Key blocks
// wholly before seg[t] are skipped. With packed = 0 seg is not read (the
// caller may pass any buffer) and every row is one sample (start 0).

// dst (B, H, D, Tp)[b, h, d, t] = src (B·T, H, D)[b·T + t, h, d]; 0 for t ≥ T.
// global (Tp, H·D, B)
__kernel void attention_transpose(int B, int T, int H, int D, int Tp,
                                  __global const float* src, __global float* dst) {
    int t = get_global_id(0), hd = get_global_id(1), b = get_global_id(2);
    if (t >= Tp || hd >= H * D || b >= B) return;
    dst[((size_t)b * H * D + hd) * Tp + t] = t < T ? src[((size_t)b * T + t) * H * D + hd] : 0.0f;
}

// s16[l] = Σ_d x[d] · rows_t[d·Tp + l]: sixteen dot products against the lanes.
inline float16 att_scores16(const __global float* x, const __global float* rows_t, int D, int Tp) {
    float16 s = (float16)(0.0f);
    for (int d = 0; d < D; d++) s = fma((float16)(x[d]), vload16(0, rows_t + (size_t)d * Tp), s);
    return s;
}

inline float att_hsum16(float16 v) {
    float8 a = v.lo + v.hi; float4 b = a.lo + a.hi; float2 c = b.lo + b.hi;
    return c.x + c.y;
}

inline float att_hmax16(float16 v) {
    float8 a = fmax(v.lo, v.hi); float4 b = fmax(a.lo, a.hi); float2 c = fmax(b.lo, b.hi);
    return fmax(c.x, c.y);
}

// Lane l of a block starting at j0 is a valid key for query t when first ≤ j0 + l ≤ t.
inline float16 att_causal_mask(int j0, int first, int last) {
    float16 j = (float16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15) + (float)j0;
    return select((float16)(0.0f), (float16)(1.0f),
                  isless(j, (float16)((float)last + 0.5f)) & isgreater(j, (float16)((float)first - 0.5f)));
}

// The accumulator row (D ≤ 256) lives in sixteen float16 registers; blocks
// past D are skipped by uniform branches.
#define ATT_REG_FOREACH(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15)

// global (T, NH, B): one work-item per query row. kt (B, NKV, D, Tp).
__kernel void attention_forward(int B, int T, int NH, int NKV, int D, int Tp, float scale,
                                __global const float* q, __global const float* kt,
                                __global const float* v, int packed, __global const int* seg,
                                __global float* out, __global float* lse) {
    int t = get_global_id(0), h = get_global_id(1), b = get_global_id(2);
    if (t >= T || h >= NH || b >= B) return;
    int start = packed ? clamp(seg[(size_t)b * T + t], 0, t) : 0;   // clamped: never read outside the row
    int g = h / (NH / NKV);
    const __global float* qi = q + (((size_t)b * T + t) * NH + h) * D;
    const __global float* ktg = kt + ((size_t)b * NKV + g) * D * Tp;
    const __global float* vg = v + ((size_t)b * T * NKV + g) * D;   // row j at j·NKV·D
    size_t vstride = (size_t)NKV * D;
    int D16 = D / 16 * 16;
#define DECL(i) float16 a##i = (float16)(0.0f);
    ATT_REG_FOREACH(DECL)
    float tail[16];
    for (int d = 0; d < 16; d++) tail[d] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    for (int j0 = start / 16 * 16; j0 <= t; j0 += 16) {
        float16 s = att_scores16(qi, ktg + j0, D, Tp) * scale;
        float16 valid = att_causal_mask(j0, start, t);
        s = select((float16)(-INFINITY), s, isnotequal(valid, (float16)(0.0f)));
        float m_new = fmax(m, att_hmax16(s));
        float corr = exp(m - m_new);
        float16 p = exp(s - m_new);
        l = l * corr + att_hsum16(p);
#define RESCALE(i) if (16 * (i) < D16) a##i *= corr;
        ATT_REG_FOREACH(RESCALE)
        for (int d = 0; d < D - D16; d++) tail[d] *= corr;
        float w[16];
        vstore16(p, 0, w);
        int n = min(16, t + 1 - j0);
        for (int jj = max(0, start - j0); jj < n; jj++) {
            const __global float* r = vg + (size_t)(j0 + jj) * vstride;
            float16 wl = (float16)(w[jj]);
#define ACCUM(i) if (16 * (i) < D16) a##i = fma(wl, vload16(i, r), a##i);
            ATT_REG_FOREACH(ACCUM)
            for (int d = D16; d < D; d++) tail[d - D16] = fma(w[jj], r[d], tail[d - D16]);
        }
        m = m_new;
    }
    __global float* oi = out + (((size_t)b * T + t) * NH + h) * D;
    float inv = 1.0f / l;
#define STORE(i) if (16 * (i) < D16) vstore16(a##i * inv, i, oi);
    ATT_REG_FOREACH(STORE)
    for (int d = D16; d < D; d++) oi[d] = tail[d - D16] * inv;
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

// dq_i = scale · Σ_{seg[i] ≤ j ≤ i} p_ij (dout_i·v_j − delta_i) k_j.
// kt, vt (B, NKV, D, Tp); k row-major. global (T, NH, B)
__kernel void attention_backward_dq(int B, int T, int NH, int NKV, int D, int Tp, float scale,
                                    __global const float* q, __global const float* k,
                                    __global const float* kt, __global const float* vt,
                                    __global const float* dout,
                                    __global const float* lse, __global const float* delta,
                                    int packed, __global const int* seg, __global float* dq) {
    int t = get_global_id(0), h = get_global_id(1), b = get_global_id(2);
    if (t >= T || h >= NH || b >= B) return;
    int start = packed ? clamp(seg[(size_t)b * T + t], 0, t) : 0;   // clamped: never read outside the row
    int g = h / (NH / NKV);
    size_t qo = (((size_t)b * T + t) * NH + h) * D;
    const __global float* ktg = kt + ((size_t)b * NKV + g) * D * Tp;
    const __global float* vtg = vt + ((size_t)b * NKV + g) * D * Tp;
    const __global float* kg = k + ((size_t)b * T * NKV + g) * D;
    size_t kstride = (size_t)NKV * D;
    float L = lse[((size_t)b * NH + h) * T + t], Di = delta[((size_t)b * NH + h) * T + t];
    int D16 = D / 16 * 16;
    ATT_REG_FOREACH(DECL)
    float tail[16];
    for (int d = 0; d < 16; d++) tail[d] = 0.0f;
    for (int j0 = start / 16 * 16; j0 <= t; j0 += 16) {
        float16 sc = att_scores16(q + qo, ktg + j0, D, Tp) * scale;
        // Keys past t (or before start) get p = 0 by select, never by multiplying: their exp may overflow.
        float16 p = select((float16)(0.0f), exp(sc - L), isnotequal(att_causal_mask(j0, start, t), (float16)(0.0f)));
        float16 dp = att_scores16(dout + qo, vtg + j0, D, Tp);
        float w[16];
        vstore16(p * (dp - Di) * scale, 0, w);
        int n = min(16, t + 1 - j0);
        for (int jj = max(0, start - j0); jj < n; jj++) {
            const __global float* r = kg + (size_t)(j0 + jj) * kstride;
            float16 wl = (float16)(w[jj]);
            ATT_REG_FOREACH(ACCUM)
            for (int d = D16; d < D; d++) tail[d - D16] = fma(w[jj], r[d], tail[d - D16]);
        }
    }
    __global float* oi = dq + qo;
#define STORE_DQ(i) if (16 * (i) < D16) vstore16(a##i, i, oi);
    ATT_REG_FOREACH(STORE_DQ)
    for (int d = D16; d < D; d++) oi[d] = tail[d - D16];
}

// For key/value row j of KV head g, over every query head of the group and
// every query i ≥ j of j's sample (seg[i] ≤ j):
//   dk_j = scale · Σ p_ij (dout_i·v_j − delta_i) q_i,   dv_j = Σ p_ij dout_i.
// qt, dot (B, NH, D, Tp); q, dout row-major. global (T, NKV, B)
__kernel void attention_backward_dkv(int B, int T, int NH, int NKV, int D, int Tp, float scale,
                                     __global const float* q, __global const float* k,
                                     __global const float* v, __global const float* dout,
                                     __global const float* qt, __global const float* dot_t,
                                     __global const float* lse, __global const float* delta,
                                     int packed, __global const int* seg,
                                     __global float* dk, __global float* dv) {
    int j = get_global_id(0), g = get_global_id(1), b = get_global_id(2);
    if (j >= T || g >= NKV || b >= B) return;
    const __global int* segb = seg + (size_t)b * T;
    int group = NH / NKV;
    size_t ko = (((size_t)b * T + j) * NKV + g) * D;
    size_t qstride = (size_t)NH * D;
    int D16 = D / 16 * 16;
#define DECL2(i) float16 ak##i = (float16)(0.0f), av##i = (float16)(0.0f);
    ATT_REG_FOREACH(DECL2)
    float tk[16], tv[16];
    for (int d = 0; d < 16; d++) { tk[d] = 0.0f; tv[d] = 0.0f; }
    float16 lanes = (float16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (int h = g * group; h < (g + 1) * group; h++) {
        const __global float* qth = qt + ((size_t)b * NH + h) * D * Tp;
        const __global float* dth = dot_t + ((size_t)b * NH + h) * D * Tp;
        const __global float* qh = q + ((size_t)b * T * NH + h) * D;       // row i at i·NH·D
        const __global float* dh = dout + ((size_t)b * T * NH + h) * D;
        const __global float* Lh = lse + ((size_t)b * NH + h) * T;
        const __global float* Dh = delta + ((size_t)b * NH + h) * T;
        // Blocks whose first query starts a later sample (seg > j) end the scan.
        for (int i0 = j / 16 * 16; i0 < T && (!packed || segb[i0] <= j); i0 += 16) {
            int n = min(16, T - i0);
            float Lb[16], Db[16], Sb[16];
            for (int l = 0; l < 16; l++) {
                Lb[l] = l < n ? Lh[i0 + l] : INFINITY; Db[l] = l < n ? Dh[i0 + l] : 0.0f;
                Sb[l] = packed && l < n ? (float)segb[i0 + l] : 0.0f;
            }
            // valid lanes: i = i0 + l with j ≤ i < T and seg[i] ≤ j
            float16 valid = select((float16)(0.0f), (float16)(1.0f),
                                   isgreaterequal(lanes + (float)i0, (float16)((float)j))
                                   & islessequal(vload16(0, Sb), (float16)((float)j)));
            float16 sc = att_scores16(k + ko, qth + i0, D, Tp) * scale;
            float16 p = select((float16)(0.0f), exp(sc - vload16(0, Lb)), isnotequal(valid, (float16)(0.0f)));
            float16 dp = att_scores16(v + ko, dth + i0, D, Tp);
            float ws[16], wp[16];
            vstore16(p * (dp - vload16(0, Db)) * scale, 0, ws);
            vstore16(p, 0, wp);
            // Only lanes [lo, hi) can be valid: i ≥ j, and the sample of j ends before hi.
            int lo = max(0, j - i0), hi = n;
            while (packed && hi > lo && Sb[hi - 1] > (float)j) hi--;
            for (int l = lo; l < hi; l++) {
                const __global float* qr = qh + (size_t)(i0 + l) * qstride;
                const __global float* dr = dh + (size_t)(i0 + l) * qstride;
                float16 s16 = (float16)(ws[l]), p16 = (float16)(wp[l]);
#define ACCUM2(i) if (16 * (i) < D16) { ak##i = fma(s16, vload16(i, qr), ak##i); av##i = fma(p16, vload16(i, dr), av##i); }
                ATT_REG_FOREACH(ACCUM2)
                for (int d = D16; d < D; d++) { tk[d - D16] = fma(ws[l], qr[d], tk[d - D16]); tv[d - D16] = fma(wp[l], dr[d], tv[d - D16]); }
            }
        }
    }
    __global float* dko = dk + ko;
    __global float* dvo = dv + ko;
#define STORE2(i) if (16 * (i) < D16) { vstore16(ak##i, i, dko); vstore16(av##i, i, dvo); }
    ATT_REG_FOREACH(STORE2)
    for (int d = D16; d < D; d++) { dko[d] = tk[d - D16]; dvo[d] = tv[d - D16]; }
}
