// attention.cl — causal self-attention with grouped-query heads, never
// materialising the T×T score matrix: the forward keeps an online softmax per
// query row and saves only its log-sum-exp; the backward recomputes the
// probabilities from it (as flash attention does).
//
// q (B·T, NH, D), k/v (B·T, NKV, D), out (B·T, NH, D), lse (B, NH, T).
// Query head h reads KV head h / (NH/NKV). scale = 1/√D.
// lse[b,h,t] = log Σ_j exp(scale·q_t·k_j) over the keys t attends (natural log).
//
// Register tiles, as gemm_packed's (matmul.cl): sixteen keys (or queries) are
// the lanes of a float16, and a work-item keeps ATT_MQ query rows (forward) or
// ATT_MK key rows (backward) of scores in ATT_MQ / ATT_MK float16 registers,
// so each K/V (Q/dO) value loaded feeds that many FMAs. The operand scanned in
// lanes is first transposed to panels (B, heads, Tp/16, D, 16), Tp = T rounded
// up to 16, zero-padded, so a lane block is one contiguous vload16 and a block
// of 16 lanes one contiguous D×16 panel. The (rows × D)
// accumulators (out, dq, dk, dv) are updated in place, sixteen columns of all
// the rows at a time, once per block of 16 lanes: they stay in L1.
//
// Packed rows: when `packed` ≠ 0, seg (B·T) gives for each token the index
// (within its row) of the first token of its sample, and query t attends only
// keys j with seg[t] ≤ j ≤ t: attention never crosses a sample boundary.
// Samples are contiguous, so seg is non-decreasing along a row. Key blocks
// wholly before every row's seg are skipped. With packed = 0 seg is not read
// (the caller may pass any buffer) and every row is one sample (start 0).
//
// ATT_MQ, ATT_MK: build-time tile heights (KernelConfig.attentionQueryRows /
// attentionKeyRows, searched by the tuner).

#ifndef ATT_MQ
#define ATT_MQ 4
#endif
#ifndef ATT_MK
#define ATT_MK 6
#endif

// One panel: dst (D, 16)[d, l] = src[l·rs + d] for the n ≤ 16 rows present, 0 past them.
inline void att_panel(const __global float* src, size_t rs, int n, int D, __global float* dst) {
    for (int d = 0; d < D; d++) {
        float x[16];
        for (int l = 0; l < 16; l++) x[l] = l < n ? src[l * rs + d] : 0.0f;
        vstore16(vload16(0, x), d, dst);
    }
}

// Panels of 16 rows, transposed: dst (B, H, Tp/16, D, 16)[b, h, t/16, d, t%16]
// = src (B·T, H, D)[b·T + t, h, d]; 0 for t ≥ T. A block of 16 rows is one
// contiguous D×16 panel (gemm_packed's layout): no power-of-two strides.
// global (Tp/16, H, B): one panel per work-item.
__kernel void attention_transpose(int B, int T, int H, int D, int Tp,
                                  __global const float* src, __global float* dst) {
    int blk = get_global_id(0), h = get_global_id(1), b = get_global_id(2);
    if (blk * 16 >= Tp || h >= H || b >= B) return;
    int t0 = blk * 16;
    att_panel(src + (((size_t)b * T + t0) * H + h) * D, (size_t)H * D, min(16, T - t0), D,
              dst + (((size_t)b * H + h) * Tp + t0) * D);
}

inline float att_hsum16(float16 v) {
    float8 a = v.lo + v.hi; float4 b = a.lo + a.hi; float2 c = b.lo + b.hi;
    return c.x + c.y;
}

// max, not fmax: no NaN handling (scores are never NaN; masked lanes are -inf).
inline float att_hmax16(float16 v) {
    float8 a = max(v.lo, v.hi); float4 b = max(a.lo, a.hi); float2 c = max(b.lo, b.hi);
    return max(c.x, c.y);
}

#define ATT_LANES ((int16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15))

// Forward. Work-item: query rows t0 … t0+ATT_MQ-1 of head h (rows past T
// repeat row T-1 and are never stored). Per block of 16 keys:
//   s (rows × 16) = q·kᵀ (float16 per row), masked, online softmax per row,
//   out (rows × D) = out·corr + p·v, sixteen columns at a time.
// out holds the unnormalised accumulator until the last block divides by l.
// global (ceil(T/ATT_MQ), NH, B). kt (B, NKV, Tp/16, D, 16).
__kernel void attention_forward(int B, int T, int NH, int NKV, int D, int Tp, float scale,
                                __global const float* q, __global const float* kt,
                                __global const float* v, int packed, __global const int* seg,
                                __global float* out, __global float* lse) {
    int t0 = get_global_id(0) * ATT_MQ, h = get_global_id(1), b = get_global_id(2);
    if (t0 >= T || h >= NH || b >= B) return;
    int g = h / (NH / NKV);
    int nrows = min(ATT_MQ, T - t0), tlast = t0 + nrows - 1;
    const __global float* qr[ATT_MQ];
    __global float* orow[ATT_MQ];
    int st[ATT_MQ];
    // Scores in log2 units (scale·log2(e) folded in, exp2 instead of exp); m the
    // running max, lsum the running Σ p kept per lane (summed once at the end).
    float m[ATT_MQ], corr[ATT_MQ];
    float16 lsum[ATT_MQ];
    int kfirst = T, klast = 0;
    #pragma unroll
    for (int r = 0; r < ATT_MQ; r++) {
        int t = min(t0 + r, tlast);
        size_t o = (((size_t)b * T + t) * NH + h) * D;
        qr[r] = q + o;
        orow[r] = out + o;
        st[r] = packed ? clamp(seg[(size_t)b * T + t], 0, t) : 0;   // clamped: never read outside the row
        kfirst = min(kfirst, st[r]);
        klast = max(klast, st[r]);
        m[r] = -INFINITY;
        lsum[r] = (float16)(0.0f);
    }
    const __global float* ktg = kt + ((size_t)b * NKV + g) * D * Tp;
    const __global float* vg = v + ((size_t)b * T * NKV + g) * D;   // key row j at j·NKV·D
    size_t vstride = (size_t)NKV * D;
    int D16 = D / 16 * 16;
    float scale2 = scale * M_LOG2E_F;
    float pw[ATT_MQ * 16];
    int jbegin = kfirst / 16 * 16;
    for (int j0 = jbegin; j0 <= tlast; j0 += 16) {
        float16 s[ATT_MQ];
        #pragma unroll
        for (int r = 0; r < ATT_MQ; r++) s[r] = (float16)(0.0f);
        for (int d = 0; d < D; d++) {
            float16 kv = vload16(d, ktg + (size_t)j0 * D);
            #pragma unroll
            for (int r = 0; r < ATT_MQ; r++) s[r] = fma((float16)(qr[r][d]), kv, s[r]);
        }
        // Interior block: every lane is a valid key of every row (no mask needed).
        int interior = j0 + 15 <= t0 && j0 >= klast;
        int16 j = ATT_LANES + j0;
        #pragma unroll
        for (int r = 0; r < ATT_MQ; r++) {
            int16 valid = (j <= (int16)(min(t0 + r, tlast))) & (j >= (int16)(st[r]));
            float16 sr = s[r] * scale2;
            if (!interior) sr = select((float16)(-INFINITY), sr, valid);
            float c = 1.0f;
            // Rescale only when a lane beats the running max (rare after the first blocks).
            if (any(isgreater(sr, (float16)(m[r])))) {
                float mn = max(m[r], att_hmax16(sr));
                c = m[r] == -INFINITY ? 0.0f : exp2(m[r] - mn);
                lsum[r] *= c;
                m[r] = mn;
            }
            // A row with no valid key yet (packed: its sample starts later) keeps m = -inf and p = 0.
            float16 p = exp2(sr - m[r]);
            if (!interior) p = select((float16)(0.0f), p, valid);
            lsum[r] += p;
            corr[r] = c;
            vstore16(p, r, pw);
        }
        int first = j0 == jbegin;   // out is not read before its first write (it may hold anything)
        int jlo = max(0, kfirst - j0), jhi = min(16, tlast + 1 - j0);
        for (int c = 0; c < D16; c += 16) {
            float16 a[ATT_MQ];
            #pragma unroll
            for (int r = 0; r < ATT_MQ; r++) a[r] = first ? (float16)(0.0f) : vload16(0, orow[r] + c) * corr[r];
            for (int jj = jlo; jj < jhi; jj++) {
                float16 vv = vload16(0, vg + (size_t)(j0 + jj) * vstride + c);
                #pragma unroll
                for (int r = 0; r < ATT_MQ; r++) a[r] = fma((float16)(pw[r * 16 + jj]), vv, a[r]);
            }
            // Rows past T alias row T-1: they were loaded above but are not stored.
            #pragma unroll
            for (int r = 0; r < ATT_MQ; r++) if (r < nrows) vstore16(a[r], 0, orow[r] + c);
        }
        for (int d = D16; d < D; d++) {
            for (int r = 0; r < nrows; r++) {
                float a = first ? 0.0f : orow[r][d] * corr[r];
                for (int jj = jlo; jj < jhi; jj++) a = fma(pw[r * 16 + jj], vg[(size_t)(j0 + jj) * vstride + d], a);
                orow[r][d] = a;
            }
        }
    }
    for (int r = 0; r < nrows; r++) {
        float l = att_hsum16(lsum[r]), inv = 1.0f / l;
        for (int c = 0; c < D16; c += 16) vstore16(vload16(0, orow[r] + c) * inv, 0, orow[r] + c);
        for (int d = D16; d < D; d++) orow[r][d] *= inv;
        lse[((size_t)b * NH + h) * T + t0 + r] = (m[r] + log2(l)) * M_LN2_F;
    }
}

// Backward, one sweep: the work-item of query head h (batch b) visits each
// pair (query i, key j) of its head once, in tiles of ATT_MK keys × 16 queries:
//   s = scale·k_j·q_i, p = exp(s − lse_i), dp = v_j·dout_i, ds = scale·p·(dp − delta_i),
//   dv_j += p·dout_i,  dk_j += ds·q_i,  dq_i += ds·k_j.
// First, for its own rows (b, ·, h), the work-item computes delta_i = dout_i·out_i,
// zeroes dq, and transposes q and dout into panels qt, dot_t (scratch); dq
// and those rows belong to this work-item alone.
// dk/dv go to dkp/dvp (B·T, NH, D), this head's partial sums; the caller sums
// a group's heads (attention_backward_reduce), or passes dk/dv themselves when
// NH = NKV. qt, dot_t (B, NH, Tp/16, D, 16); q, k, v, dout row-major. global (NH, B)
__kernel void attention_backward(int B, int T, int NH, int NKV, int D, int Tp, float scale,
                                 __global const float* q, __global const float* k,
                                 __global const float* v, __global const float* dout,
                                 __global float* qt, __global float* dot_t,
                                 __global const float* out, __global const float* lse, __global float* delta,
                                 int packed, __global const int* seg,
                                 __global float* dq, __global float* dkp, __global float* dvp) {
    int h = get_global_id(0), b = get_global_id(1);
    if (h >= NH || b >= B) return;
    int g = h / (NH / NKV);
    const __global int* segb = seg + (size_t)b * T;
    const __global float* qth = qt + ((size_t)b * NH + h) * D * Tp;
    const __global float* dth = dot_t + ((size_t)b * NH + h) * D * Tp;
    size_t qstride = (size_t)NH * D, kstride = (size_t)NKV * D;
    const __global float* qh = q + ((size_t)b * T * NH + h) * D;       // query row i at i·NH·D
    const __global float* dh = dout + ((size_t)b * T * NH + h) * D;
    __global float* dqh = dq + ((size_t)b * T * NH + h) * D;
    const __global float* Lh = lse + ((size_t)b * NH + h) * T;
    const __global float* Dh = delta + ((size_t)b * NH + h) * T;
    int D16 = D / 16 * 16;
    for (int t0 = 0; t0 < T; t0 += 16) {
        att_panel(qh + (size_t)t0 * qstride, qstride, min(16, T - t0), D, qt + ((size_t)b * NH + h) * D * Tp + (size_t)t0 * D);
        att_panel(dh + (size_t)t0 * qstride, qstride, min(16, T - t0), D, dot_t + ((size_t)b * NH + h) * D * Tp + (size_t)t0 * D);
    }
    {
        __global float* deltah = delta + ((size_t)b * NH + h) * T;
        const __global float* oh = out + ((size_t)b * T * NH + h) * D;
        for (int t = 0; t < T; t++) {
            size_t o = (size_t)t * qstride;
            float16 acc = (float16)(0.0f);
            for (int c = 0; c < D16; c += 16) {
                acc = fma(vload16(0, dh + o + c), vload16(0, oh + o + c), acc);
                vstore16((float16)(0.0f), 0, dqh + o + c);
            }
            float x = att_hsum16(acc);
            for (int d = D16; d < D; d++) { x = fma(dh[o + d], oh[o + d], x); dqh[o + d] = 0.0f; }
            deltah[t] = x;
        }
    }
    float pw[ATT_MK * 16], sw[ATT_MK * 16];
    for (int j0 = 0; j0 < T; j0 += ATT_MK) {
        int nk = min(ATT_MK, T - j0), jlast = j0 + nk - 1;
        const __global float* kr[ATT_MK];
        const __global float* vr[ATT_MK];
        __global float* dkr[ATT_MK];
        __global float* dvr[ATT_MK];
        #pragma unroll
        for (int r = 0; r < ATT_MK; r++) {
            int j = min(j0 + r, jlast);
            kr[r] = k + ((size_t)b * T + j) * kstride + (size_t)g * D;
            vr[r] = v + ((size_t)b * T + j) * kstride + (size_t)g * D;
            dkr[r] = dkp + (((size_t)b * T + j) * NH + h) * D;
            dvr[r] = dvp + (((size_t)b * T + j) * NH + h) * D;
        }
        int ibegin = j0 / 16 * 16;
        // Blocks whose first query starts a later sample than every key here end the sweep.
        // seg is read clamped to [0, i] as the forward reads it, whatever the caller passed.
        for (int i0 = ibegin; i0 < T && (!packed || clamp(segb[i0], 0, i0) <= jlast); i0 += 16) {
            float16 Lv, Dv;
            int16 sv = (int16)(0);
            if (i0 + 16 <= T) {
                Lv = vload16(0, Lh + i0);
                Dv = vload16(0, Dh + i0);
                if (packed) sv = vload16(0, segb + i0);
            } else {
                float Lb[16], Db[16];
                int Sb[16];
                for (int x = 0; x < 16; x++) {
                    int in = i0 + x < T;
                    Lb[x] = in ? Lh[i0 + x] : INFINITY;
                    Db[x] = in ? Dh[i0 + x] : 0.0f;
                    Sb[x] = in && packed ? segb[i0 + x] : 0;
                }
                Lv = vload16(0, Lb);
                Dv = vload16(0, Db);
                sv = vload16(0, Sb);
            }
            int16 iv = ATT_LANES + i0;
            if (packed) sv = clamp(sv, (int16)(0), iv);
            float16 s[ATT_MK];
            #pragma unroll
            for (int r = 0; r < ATT_MK; r++) s[r] = (float16)(0.0f);
            for (int d = 0; d < D; d++) {
                float16 qv = vload16(d, qth + (size_t)i0 * D);
                #pragma unroll
                for (int r = 0; r < ATT_MK; r++) s[r] = fma((float16)(kr[r][d]), qv, s[r]);
            }
            #pragma unroll
            for (int r = 0; r < ATT_MK; r++) {
                // Lane i is a query of key j = j0 + r when j ≤ i < T and seg[i] ≤ j; a key row past T has none.
                int16 valid = (iv >= (int16)(j0 + r)) & (iv < (int16)(T)) & (sv <= (int16)(j0 + r));
                // p = 0 by select, never by multiplying: a masked lane's exp may overflow.
                s[r] = select((float16)(0.0f), exp(s[r] * scale - Lv), valid);
                vstore16(s[r], r, pw);
            }
            float16 dp[ATT_MK];
            #pragma unroll
            for (int r = 0; r < ATT_MK; r++) dp[r] = (float16)(0.0f);
            for (int d = 0; d < D; d++) {
                float16 ov = vload16(d, dth + (size_t)i0 * D);
                #pragma unroll
                for (int r = 0; r < ATT_MK; r++) dp[r] = fma((float16)(vr[r][d]), ov, dp[r]);
            }
            #pragma unroll
            for (int r = 0; r < ATT_MK; r++) vstore16(vload16(r, pw) * (dp[r] - Dv) * scale, r, sw);
            int first = i0 == ibegin;   // dk/dv rows are not read before their first write
            int ilo = max(0, j0 - i0), ihi = min(16, T - i0);
            for (int c = 0; c < D16; c += 16) {
                float16 a[ATT_MK];
                // dv_j += p·dout_i
                #pragma unroll
                for (int r = 0; r < ATT_MK; r++) a[r] = first ? (float16)(0.0f) : vload16(0, dvr[r] + c);
                for (int x = ilo; x < ihi; x++) {
                    float16 ov = vload16(0, dh + (size_t)(i0 + x) * qstride + c);
                    #pragma unroll
                    for (int r = 0; r < ATT_MK; r++) a[r] = fma((float16)(pw[r * 16 + x]), ov, a[r]);
                }
                // Key rows past T alias row T-1: loaded above, never stored.
                #pragma unroll
                for (int r = 0; r < ATT_MK; r++) if (r < nk) vstore16(a[r], 0, dvr[r] + c);
                // dk_j += ds·q_i
                #pragma unroll
                for (int r = 0; r < ATT_MK; r++) a[r] = first ? (float16)(0.0f) : vload16(0, dkr[r] + c);
                for (int x = ilo; x < ihi; x++) {
                    float16 qv = vload16(0, qh + (size_t)(i0 + x) * qstride + c);
                    #pragma unroll
                    for (int r = 0; r < ATT_MK; r++) a[r] = fma((float16)(sw[r * 16 + x]), qv, a[r]);
                }
                #pragma unroll
                for (int r = 0; r < ATT_MK; r++) if (r < nk) vstore16(a[r], 0, dkr[r] + c);
                // dq_i += ds·k_j (rows past T have ds = 0)
                #pragma unroll
                for (int r = 0; r < ATT_MK; r++) a[r] = vload16(0, kr[r] + c);
                for (int x = ilo; x < ihi; x++) {
                    __global float* dqi = dqh + (size_t)(i0 + x) * qstride + c;
                    float16 acc = vload16(0, dqi);
                    #pragma unroll
                    for (int r = 0; r < ATT_MK; r++) acc = fma((float16)(sw[r * 16 + x]), a[r], acc);
                    vstore16(acc, 0, dqi);
                }
            }
            for (int d = D16; d < D; d++) {
                for (int r = 0; r < nk; r++) {
                    float av = first ? 0.0f : dvr[r][d], ak = first ? 0.0f : dkr[r][d];
                    for (int x = ilo; x < ihi; x++) {
                        av = fma(pw[r * 16 + x], dh[(size_t)(i0 + x) * qstride + d], av);
                        ak = fma(sw[r * 16 + x], qh[(size_t)(i0 + x) * qstride + d], ak);
                    }
                    dvr[r][d] = av;
                    dkr[r][d] = ak;
                }
                for (int x = ilo; x < ihi; x++) {
                    float acc = dqh[(size_t)(i0 + x) * qstride + d];
                    for (int r = 0; r < nk; r++) acc = fma(sw[r * 16 + x], kr[r][d], acc);
                    dqh[(size_t)(i0 + x) * qstride + d] = acc;
                }
            }
        }
    }
}

// dk/dv (B·T, NKV, D)[t, g] = Σ over the group's query heads h of dkp/dvp (B·T, NH, D)[t, h].
// global (NKV, B·T): one row per work-item.
__kernel void attention_backward_reduce(int N, int NH, int NKV, int D,
                                        __global const float* dkp, __global const float* dvp,
                                        __global float* dk, __global float* dv) {
    int g = get_global_id(0), n = get_global_id(1);
    if (g >= NKV || n >= N) return;
    int group = NH / NKV, D16 = D / 16 * 16;
    size_t o = ((size_t)n * NKV + g) * D, p0 = ((size_t)n * NH + (size_t)g * group) * D;
    for (int c = 0; c < D16; c += 16) {
        float16 sk = (float16)(0.0f), sv = (float16)(0.0f);
        for (int h = 0; h < group; h++) {
            sk += vload16(0, dkp + p0 + (size_t)h * D + c);
            sv += vload16(0, dvp + p0 + (size_t)h * D + c);
        }
        vstore16(sk, 0, dk + o + c);
        vstore16(sv, 0, dv + o + c);
    }
    for (int d = D16; d < D; d++) {
        float sk = 0.0f, sv = 0.0f;
        for (int h = 0; h < group; h++) { sk += dkp[p0 + (size_t)h * D + d]; sv += dvp[p0 + (size_t)h * D + d]; }
        dk[o + d] = sk;
        dv[o + d] = sv;
    }
}
