// decode.cl — attention against a KV cache, for generation: n new queries at
// positions p0 … p0+n−1 of one sequence attend causally to the cached keys
// 0 … p0+i (the cache already holds the n new keys). n > 1 is a prefill
// (or a chunk of one), n = 1 a decode step. Grouped-query heads as in
// attention.cl: query head h reads KV head h / (NH/NKV); scale = 1/√D.
//
// Cache layout, per layer, capacity C (a multiple of 16):
//   kt (NKV, D, C)   keys transposed, so sixteen keys are one vload16
//   vc (NKV, C, D)   values row-major
// Slots past the written length are never read as values and are masked as
// keys (they are zero-filled when the cache is made, so no NaN pattern leaks).
//
// A decode step has only NH query rows, too few work-items for a long context
// on a GPU, so the keys are split (flash-decoding): work-item (s, h, i) runs
// the online softmax over keys [s·split, (s+1)·split) ∩ [0, p0+i] and leaves
// its unnormalised accumulator with (m, l); `decode_attention_combine` merges
// the S partials: M = max m_s, out = Σ e^(m_s−M)·acc_s / Σ e^(m_s−M)·l_s.
// With S = 1 the partial kernel normalises and writes the output directly.

// s16[l] = Σ_d x[d] · rows_t[d·C + l]: sixteen keys scored at once.
inline float16 dec_scores16(const __global float* x, const __global float* rows_t, int D, int C) {
    float16 s = (float16)(0.0f);
    for (int d = 0; d < D; d++) s = fma((float16)(x[d]), vload16(0, rows_t + (size_t)d * C), s);
    return s;
}

inline float dec_hsum16(float16 v) {
    float8 a = v.lo + v.hi; float4 b = a.lo + a.hi; float2 c = b.lo + b.hi;
    return c.x + c.y;
}

inline float dec_hmax16(float16 v) {
    float8 a = fmax(v.lo, v.hi); float4 b = fmax(a.lo, a.hi); float2 c = fmax(b.lo, b.hi);
    return fmax(c.x, c.y);
}

// The accumulator row (D ≤ 256) lives in sixteen float16 registers; blocks
// past D are skipped by uniform branches, the last D mod 16 in `tail`.
#define DEC_REG_FOREACH(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15)
#define DEC_DECL(i) float16 a##i = (float16)(0.0f);
#define DEC_RESCALE(i) if (16 * (i) < D16) a##i *= corr;
#define DEC_ACCUM(i) if (16 * (i) < D16) a##i = fma(wl, vload16(i, r), a##i);
#define DEC_STORE(i) if (16 * (i) < D16) vstore16(a##i * inv, i, oi);

// kt[g, d, p0+i] = k[i, g, d]; vc[g, p0+i, d] = v[i, g, d].
// k, v (n, NKV, D). global (D, NKV, n)
__kernel void kv_cache_append(int n, int NKV, int D, int C, int p0,
                              __global const float* k, __global const float* v,
                              __global float* kt, __global float* vc) {
    int d = get_global_id(0), g = get_global_id(1), i = get_global_id(2);
    if (d >= D || g >= NKV || i >= n) return;
    size_t src = ((size_t)i * NKV + g) * D + d;
    int p = p0 + i;
    kt[((size_t)g * D + d) * C + p] = k[src];
    vc[((size_t)g * C + p) * D + d] = v[src];
}

// q (n, NH, D). acc (n, NH, S, D), ml (n, NH, S, 2) = (m, l) per split; when
// `normalize` (S = 1) acc is the output (n, NH, D) and ml is not written.
// global (S, NH, n)
__kernel void decode_attention_partial(int n, int NH, int NKV, int D, int C, int p0, int split, int S,
                                       float scale, int normalize, int window,
                                       __global const float* q, __global const float* kt,
                                       __global const float* vc,
                                       __global float* acc, __global float* ml) {
    int s = get_global_id(0), h = get_global_id(1), i = get_global_id(2);
    if (s >= S || h >= NH || i >= n) return;
    int g = h / (NH / NKV);
    int j_begin = s * split;
    int j_end = min(j_begin + split, p0 + i + 1);        // exclusive; the causal limit
    // A sliding window W (> 0): only keys j > p0 + i − W; whole 16-key blocks below it are skipped, the rest masked.
    int w_begin = window > 0 ? max(0, p0 + i - window + 1) : 0;
    // The first block holds w_begin (so every block run has a valid key); a split wholly before the window runs none.
    int j_first = w_begin >= j_end ? j_end : max(j_begin, w_begin / 16 * 16);
    const __global float* qi = q + ((size_t)i * NH + h) * D;
    const __global float* ktg = kt + (size_t)g * D * C;
    const __global float* vg = vc + (size_t)g * C * D;
    int D16 = D / 16 * 16;
    DEC_REG_FOREACH(DEC_DECL)
    float tail[16];
    for (int d = 0; d < 16; d++) tail[d] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    float16 lanes = (float16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    // split is a multiple of 16, so j0 stays 16-aligned and vload16 stays inside C.
    for (int j0 = j_first; j0 < j_end; j0 += 16) {
        float16 sc = dec_scores16(qi, ktg + j0, D, C) * scale;
        // lanes j0 + l in [w_begin, j_end) are keys of this split that the query may see
        float16 pos = lanes + (float)j0;
        sc = select((float16)(-INFINITY), sc, isless(pos, (float16)((float)j_end - 0.5f)) & isgreater(pos, (float16)((float)w_begin - 0.5f)));
        float m_new = fmax(m, dec_hmax16(sc));
        float corr = exp(m - m_new);
        float16 p = exp(sc - m_new);
        l = l * corr + dec_hsum16(p);
        DEC_REG_FOREACH(DEC_RESCALE)
        for (int d = 0; d < D - D16; d++) tail[d] *= corr;
        float w[16];
        vstore16(p, 0, w);
        int cnt = min(16, j_end - j0);
        for (int jj = max(0, w_begin - j0); jj < cnt; jj++) {
            const __global float* r = vg + (size_t)(j0 + jj) * D;
            float16 wl = (float16)(w[jj]);
            DEC_REG_FOREACH(DEC_ACCUM)
            for (int d = D16; d < D; d++) tail[d - D16] = fma(w[jj], r[d], tail[d - D16]);
        }
        m = m_new;
    }
    size_t row = ((size_t)i * NH + h) * S + s;
    __global float* oi = acc + row * D;
    // An empty split (all its keys after the query) has l = 0 and contributes nothing.
    float inv = normalize ? 1.0f / l : 1.0f;
    DEC_REG_FOREACH(DEC_STORE)
    for (int d = D16; d < D; d++) oi[d] = tail[d - D16] * inv;
    if (!normalize) {
        ml[row * 2] = m;
        ml[row * 2 + 1] = l;
    }
}

// out (n, NH, D)[i, h, d] = Σ_s e^(m_s−M) acc_s[d] / Σ_s e^(m_s−M) l_s. Split 0
// always holds key 0, so M is finite. global (D, NH, n)
__kernel void decode_attention_combine(int n, int NH, int D, int S,
                                       __global const float* acc, __global const float* ml,
                                       __global float* out) {
    int d = get_global_id(0), h = get_global_id(1), i = get_global_id(2);
    if (d >= D || h >= NH || i >= n) return;
    size_t row0 = ((size_t)i * NH + h) * S;
    float M = -INFINITY;
    for (int s = 0; s < S; s++) M = fmax(M, ml[(row0 + s) * 2]);
    float num = 0.0f, den = 0.0f;
    for (int s = 0; s < S; s++) {
        float ms = ml[(row0 + s) * 2];
        if (ms == -INFINITY) continue;     // an empty split
        float w = exp(ms - M);
        num = fma(w, acc[(row0 + s) * D + d], num);
        den = fma(w, ml[(row0 + s) * 2 + 1], den);
    }
    out[((size_t)i * NH + h) * D + d] = num / den;
}
