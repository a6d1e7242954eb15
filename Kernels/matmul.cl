// matmul.cl — C = alpha·op(A)·op(B) [+ ext] [+ bias] + beta·C, fp32 accumulation.
//
// op(B) is consumed in packed panels: Bp [ceil(N/16)][K][16], zero-padded past
// N. Packing is O(K·N) against the O(M·N·K) product; the frozen base weights
// are packed once and kept (see PackedMatrix), everything else is packed per
// call. Each work-item holds a GEMM_MR × 16 tile of C in float16 registers and
// streams one panel with explicit fma: no __local memory and no barriers,
// which pocl turns into straight AVX-512 loops.
//
// Panel storage (WS_F32 / WS_F16 / WS_BF16, ws_load16, ws_load1) and the gemm
// kernels' argument list (GEMM_KERNEL_ARGS) are in common.cl: the tiled gemm shares them.

// pack_b: Bp[p][k][c] = op(B)(k, 16p + c), where op(B)(k, n) = B[k·b_rs + n·b_cs].
// With dropout_p > 0 the element is also dropped/scaled by the mask of
// element index k·mask_ld + n (used to pack dropout(x) for dA = gᵀ·dropout(x)).
// One work-item writes one 16-float row of a panel. global (ceil(N/16), K)
__kernel void pack_b(int K, int N,
                     __global const float* B, int b_rs, int b_cs,
                     float dropout_p, uint seed, int mask_ld,
                     __global float* Bp) {
    int p = get_global_id(0);
    int k = get_global_id(1);
    if (p * 16 >= N || k >= K) return;
    int n0 = p * 16;
    const __global float* src = B + (size_t)k * b_rs + (size_t)n0 * b_cs;
    float16 v;
    if (n0 + 16 <= N && b_cs == 1) {
        v = vload16(0, src);
    } else {
        float t[16];
        for (int c = 0; c < 16; c++) t[c] = n0 + c < N ? src[(size_t)c * b_cs] : 0.0f;
        v = vload16(0, t);
    }
    if (dropout_p > 0.0f) {
        float m[16];
        float scale = 1.0f / (1.0f - dropout_p);
        ulong base = (ulong)k * (ulong)mask_ld + (ulong)n0;
        for (int c = 0; c < 16; c++) m[c] = dropout_keep(seed, base + c, dropout_p) ? scale : 0.0f;
        v *= vload16(0, m);
    }
    vstore16(v, 0, Bp + ((size_t)p * K + k) * 16);
}

// gemm_packed: C (M,N) row-major.
//   op(A)(m, k)  = A[m·a_rs + k·a_cs]          (NN/NT: a_rs = K, a_cs = 1; TN: a_rs = 1, a_cs = M)
//   Bp: panels of op(B) in the kernel's storage type (gemm_packed: float,
//     gemm_packed_f16: half, gemm_packed_bf16: ushort bf16), widened on load.
//   ext (K2 > 0): + alpha2 · op(A2)·op(B2), op(A2) (M,K2) strided like A, B2p packed like Bp
//     but always float (the LoRA panels).
//     ext_mask = 1: the ext term is multiplied elementwise by the dropout
//     mask of element m·mask_ld + n scaled by 1/(1-p) (dX of LoRA with dropout).
//   bias (has_bias = 1): + bias[n].
//   beta == 0 never reads C, so C may hold garbage (or NaN) on entry.
//   A block of columns of a wider matrix (a weight kept in parts, `FrozenLinear`): C has row
//     stride ldc ≥ N and the block starts at column col0 (a multiple of 16) of C, of the bias,
//     of the ext panels (packed over the whole width) and of the dropout mask; a_off is the
//     first element of A (a block of columns of dY).
// global (ceil(N/16), ceil(M/GEMM_MR)) rounded to the local size.
// The three kernels share this body and the argument list; only Bp's type differs.
#ifndef GEMM_BAND
#define GEMM_BAND 0   // row groups per band (0: no bands); a build option (KernelConfig)
#endif

// The first panel (pj) and first row (row0) of C this work-item computes, MR rows a work-item.
inline void gemm_packed_origin(int MR, int* pj, int* row0) {
#if GEMM_BAND > 0
    // Bands of GEMM_BAND row groups: the work-groups, started in the order of
    // their linear id (dimension 0 fastest), walk every panel for one band of
    // rows before the next band, each panel taken by the band's row groups one
    // after another — so a panel is read from memory once per band, not once
    // per row group, while the band's rows of A stay in cache.
    int G0 = get_num_groups(0), G1 = get_num_groups(1);
    int L = get_group_id(1) * G0 + get_group_id(0);
    int band = L / (G0 * GEMM_BAND);
    int rows_in_band = min(GEMM_BAND, G1 - band * GEMM_BAND);
    int idx = L - band * G0 * GEMM_BAND;
    int g0 = idx / rows_in_band, g1 = band * GEMM_BAND + idx % rows_in_band;
    *pj = g0 * (int)get_local_size(0) + (int)get_local_id(0);
    *row0 = (g1 * (int)get_local_size(1) + (int)get_local_id(1)) * MR;
#else
    *pj = get_global_id(0);
    *row0 = get_global_id(1) * MR;
#endif
}

// The body is one function per row count (a macro, as OpenCL C has no templates): the fp32 and
// 16-bit kernels use GEMM_MR; each quantized format has its own GEMM_MR_<FORMAT> (a build option, the
// tuner's choice per format — dequantizing in registers takes some of the registers MR rows of
// accumulators would use), GEMM_MR where not given.
#define GEMM_PACKED_BODY(FN, MR)                                                                                      \
inline void FN(int M, int N, int K, float alpha,                                                                      \
                             __global const float* A, int a_rs, int a_cs,                                             \
                             const __global void* Bp, const int storage,                                              \
                             int K2, float alpha2,                                                                    \
                             __global const float* A2, int a2_rs, int a2_cs,                                          \
                             __global const float* B2p,                                                               \
                             int ext_mask, float dropout_p, uint seed, int mask_ld,                                   \
                             int has_bias, __global const float* bias,                                                \
                             float beta, __global float* C, int ldc, int col0, int a_off) {                           \
    int pj, row0;                                                                                                     \
    gemm_packed_origin(MR, &pj, &row0);                                                                               \
    int n0 = pj * 16;                                                                                                 \
    if (row0 >= M || n0 >= N) return;                                                                                 \
                                                                                                                      \
    float16 acc[MR];                                                                                                  \
    const __global float* ap[MR];                                                                                     \
    _Pragma("unroll")                                                                                                 \
    for (int r = 0; r < MR; r++) {                                                                                    \
        acc[r] = (float16)(0.0f);                                                                                     \
        /* Rows past M read row M-1 (valid memory); their results are never stored. */                                \
        ap[r] = A + a_off + (size_t)min(row0 + r, M - 1) * a_rs;                                                      \
    }                                                                                                                 \
    size_t bp = (size_t)pj * K;        /* panel pj, in 16-element rows */                                             \
    if (WS_IS_QUANT(storage)) {                                                                                       \
        /* Quantized panels: each sub-block's per-column factors formed once for its rows, each row's values */       \
        /* dequantized in registers (the same fp32 values as ws_load16's, the same fma order as below). */            \
        const int S = 1 << WQ_SUB_BITS(storage);                                                                      \
        for (int k0 = 0; k0 < K; k0 += S) {                                                                           \
            float16 fa, fb;                                                                                           \
            wq_params(bp + k0, (const __global uchar*)Bp, storage, &fa, &fb);                                         \
            for (int k = k0; k < k0 + S; k++) {                                                                       \
                float16 b = wq_apply(wq_values(bp + k, (const __global uchar*)Bp, storage), fa, fb, storage);         \
                size_t ka = (size_t)k * a_cs;                                                                         \
                _Pragma("unroll")                                                                                     \
                for (int r = 0; r < MR; r++) acc[r] = fma((float16)(ap[r][ka]), b, acc[r]);                           \
            }                                                                                                         \
        }                                                                                                             \
    } else {                                                                                                          \
        for (int k = 0; k < K; k++) {                                                                                 \
            float16 b = ws_load16(bp + k, Bp, storage);                                                               \
            size_t ka = (size_t)k * a_cs;                                                                             \
            _Pragma("unroll")                                                                                         \
            for (int r = 0; r < MR; r++) acc[r] = fma((float16)(ap[r][ka]), b, acc[r]);                               \
        }                                                                                                             \
    }                                                                                                                 \
    _Pragma("unroll")                                                                                                 \
    for (int r = 0; r < MR; r++) acc[r] *= alpha;                                                                     \
                                                                                                                      \
    if (K2 > 0) {                                                                                                     \
        const __global float* b2p = B2p + ((size_t)col0 + (size_t)pj * 16) * K2;                                      \
        _Pragma("unroll")                                                                                             \
        for (int r = 0; r < MR; r++) {                                                                                \
            const __global float* a2 = A2 + (size_t)min(row0 + r, M - 1) * a2_rs;                                     \
            float16 e = (float16)(0.0f);                                                                              \
            for (int k = 0; k < K2; k++) e = fma((float16)(a2[(size_t)k * a2_cs]), vload16(k, b2p), e);               \
            e *= alpha2;                                                                                              \
            if (ext_mask) {                                                                                           \
                float scale = 1.0f / (1.0f - dropout_p);                                                              \
                float m[16];                                                                                          \
                ulong base = (ulong)(row0 + r) * (ulong)mask_ld + (ulong)(col0 + n0);                                 \
                for (int j = 0; j < 16; j++) m[j] = dropout_keep(seed, base + j, dropout_p) ? scale : 0.0f;           \
                e *= vload16(0, m);                                                                                   \
            }                                                                                                         \
            acc[r] += e;                                                                                              \
        }                                                                                                             \
    }                                                                                                                 \
                                                                                                                      \
    float16 bv = (float16)(0.0f);                                                                                     \
    if (has_bias) {                                                                                                   \
        const __global float* bb = bias + col0;                                                                       \
        if (n0 + 16 <= N) bv = vload16(0, bb + n0);                                                                   \
        else { float t[16]; for (int j = 0; j < 16; j++) t[j] = n0 + j < N ? bb[n0 + j] : 0.0f; bv = vload16(0, t); } \
    }                                                                                                                 \
                                                                                                                      \
    _Pragma("unroll")                                                                                                 \
    for (int r = 0; r < MR; r++) {                                                                                    \
        int row = row0 + r;                                                                                           \
        if (row >= M) break;                                                                                          \
        __global float* c = C + (size_t)row * ldc + col0 + n0;                                                        \
        float16 v = acc[r] + bv;                                                                                      \
        if (n0 + 16 <= N) {                                                                                           \
            if (beta != 0.0f) v = fma((float16)(beta), vload16(0, c), v);                                             \
            vstore16(v, 0, c);                                                                                        \
        } else {                                                                                                      \
            float t[16];                                                                                              \
            vstore16(v, 0, t);                                                                                        \
            for (int j = 0; j < N - n0; j++) c[j] = beta != 0.0f ? fma(beta, c[j], t[j]) : t[j];                      \
        }                                                                                                             \
    }                                                                                                                 \
}

#ifndef GEMM_MR_Q8_0
#define GEMM_MR_Q8_0 GEMM_MR
#endif
#ifndef GEMM_MR_Q4_0
#define GEMM_MR_Q4_0 GEMM_MR
#endif
#ifndef GEMM_MR_Q4_1
#define GEMM_MR_Q4_1 GEMM_MR
#endif
#ifndef GEMM_MR_Q5_0
#define GEMM_MR_Q5_0 GEMM_MR
#endif
#ifndef GEMM_MR_Q5_1
#define GEMM_MR_Q5_1 GEMM_MR
#endif
#ifndef GEMM_MR_NF4
#define GEMM_MR_NF4 GEMM_MR
#endif
#ifndef GEMM_MR_Q4_K
#define GEMM_MR_Q4_K GEMM_MR
#endif
#ifndef GEMM_MR_Q5_K
#define GEMM_MR_Q5_K GEMM_MR
#endif
#ifndef GEMM_MR_Q6_K
#define GEMM_MR_Q6_K GEMM_MR
#endif
GEMM_PACKED_BODY(gemm_packed_body, GEMM_MR)
GEMM_PACKED_BODY(gemm_packed_body_q8_0, GEMM_MR_Q8_0)
GEMM_PACKED_BODY(gemm_packed_body_q4_0, GEMM_MR_Q4_0)
GEMM_PACKED_BODY(gemm_packed_body_q4_1, GEMM_MR_Q4_1)
GEMM_PACKED_BODY(gemm_packed_body_q5_0, GEMM_MR_Q5_0)
GEMM_PACKED_BODY(gemm_packed_body_q5_1, GEMM_MR_Q5_1)
GEMM_PACKED_BODY(gemm_packed_body_nf4, GEMM_MR_NF4)
GEMM_PACKED_BODY(gemm_packed_body_q4_k, GEMM_MR_Q4_K)
GEMM_PACKED_BODY(gemm_packed_body_q5_k, GEMM_MR_Q5_K)
GEMM_PACKED_BODY(gemm_packed_body_q6_k, GEMM_MR_Q6_K)

#define GEMM_PACKED_KERNEL(NAME, BODY, BT, STORAGE)                                             \
__kernel void NAME(GEMM_KERNEL_ARGS(BT)) {                                                     \
    BODY(M, N, K, alpha, A, a_rs, a_cs, (const __global void*)Bp, STORAGE,          \
                     K2, alpha2, A2, a2_rs, a2_cs, B2p, ext_mask, dropout_p, seed, mask_ld,     \
                     has_bias, bias, beta, C, ldc, col0, a_off);                                \
}
GEMM_PACKED_KERNEL(gemm_packed, gemm_packed_body, float, WS_F32)
GEMM_PACKED_KERNEL(gemm_packed_f16, gemm_packed_body, half, WS_F16)
GEMM_PACKED_KERNEL(gemm_packed_bf16, gemm_packed_body, ushort, WS_BF16)
GEMM_PACKED_KERNEL(gemm_packed_q8_0, gemm_packed_body_q8_0, uchar, WS_Q8_0)
GEMM_PACKED_KERNEL(gemm_packed_q4_0, gemm_packed_body_q4_0, uchar, WS_Q4_0)
GEMM_PACKED_KERNEL(gemm_packed_q4_1, gemm_packed_body_q4_1, uchar, WS_Q4_1)
GEMM_PACKED_KERNEL(gemm_packed_q5_0, gemm_packed_body_q5_0, uchar, WS_Q5_0)
GEMM_PACKED_KERNEL(gemm_packed_q5_1, gemm_packed_body_q5_1, uchar, WS_Q5_1)
GEMM_PACKED_KERNEL(gemm_packed_nf4, gemm_packed_body_nf4, uchar, WS_NF4)
GEMM_PACKED_KERNEL(gemm_packed_q4_k, gemm_packed_body_q4_k, uchar, WS_Q4_K)
GEMM_PACKED_KERNEL(gemm_packed_q5_k, gemm_packed_body_q5_k, uchar, WS_Q5_K)
GEMM_PACKED_KERNEL(gemm_packed_q6_k, gemm_packed_body_q6_k, uchar, WS_Q6_K)

// reblock_q: quantized panels (common.cl, "Quantized panels") from a W (rows, K) in source blocks, row r of W
// read from row row_src[r] of src (use_map = 1: llama.cpp's rotary order of q/k rows undone) or row r. Rows past
// `rows` (the last panel's padding) get all-zero bytes. Each work-item writes one chunk (zeroed, then filled).
// Source blocks (bytes), as ggml stores them: Q8_0 d, qs·i8[32]; Q4_0 d, qs[16]; Q4_1 d, m, qs[16];
// Q5_0 d, qh·u32, qs[16]; Q5_1 d, m, qh, qs — element j < 16 the low nibble of qs[j], j ≥ 16 the high nibble of
// qs[j − 16], its fifth bit bit j of qh; Q4_K d, dmin, scales[12], qs[128] — element e of sub-block s = e / 32 in
// byte 32·(s / 2) + e % 32 of qs, the low nibble for even s; Q5_K d, dmin, scales[12], qh[32], qs[128], the fifth
// bit bit s of qh[e % 32]; Q6_K ql[128], qh[64], scales·i8[16], d — element e (h = e / 128, r = e % 128): low
// bits (ql[64h + r % 64] >> 4·(r / 64)) & 15, high bits (qh[32h + r % 32] >> 2·(r / 32)) & 3, sub-block e / 16.
// NF4 (made on the host, `NF4Quantize`): absmax·f32, then bitsandbytes' packing, element 2j in the high nibble of
// byte j and 2j + 1 in its low nibble. global (ceil(rows/16), K/R)
__kernel void reblock_q(int rows, int kblocks, int storage, __global const uchar* src, int use_map,
                        __global const int* row_src, __global uchar* dst) {
    int t = get_global_id(0), kb = get_global_id(1);
    if (t * 16 >= rows || kb >= kblocks) return;
    const int bb = storage == WS_Q8_0 ? 34 : storage == WS_Q4_0 ? 18 : storage == WS_Q4_1 ? 20 : storage == WS_Q5_0 ? 22
                 : storage == WS_Q5_1 ? 24 : storage == WS_NF4 ? 36 : storage == WS_Q4_K ? 144 : storage == WS_Q5_K ? 176 : 210;
    const int cb = WQ_CHUNK_BYTES(storage), qo = WQ_QS(storage), ho = WQ_QH(storage);
    const int R = 1 << WQ_ROW_BITS(storage);
    __global uchar* ch = dst + ((size_t)t * kblocks + kb) * cb;
    for (int j = 0; j < cb; j++) ch[j] = 0;
    for (int c = 0; c < 16; c++) {
        int r = t * 16 + c;
        if (r >= rows) break;
        int sr = use_map ? row_src[r] : r;
        const __global uchar* b = src + ((size_t)sr * kblocks + kb) * bb;
        // Row kk's 4-bit value q of column c into the nibbles; its fifth bit into the fifth bits.
        #define PUT_NIBBLE(kk, q) (ch[qo + (kk) * 8 + (c & 7)] |= (uchar)(c < 8 ? (q) : (q) << 4))
        #define PUT_FIFTH(kk) (ch[ho + 2 * (kk) + (c >> 3)] |= (uchar)(1u << (c & 7)))
        if (storage == WS_NF4) {
            for (int j = 0; j < 4; j++) ch[4 * c + j] = b[j];
            for (int kk = 0; kk < 64; kk++) PUT_NIBBLE(kk, kk % 2 == 0 ? b[4 + kk / 2] >> 4 : b[4 + kk / 2] & 0x0F);
            continue;
        }
        if (storage == WS_Q6_K) {
            ch[2 * c] = b[208]; ch[2 * c + 1] = b[209];
            for (int sub = 0; sub < 16; sub++) ch[32 + sub * 16 + c] = b[192 + sub];
            for (int e = 0; e < 256; e++) {
                int h = e / 128, rr = e % 128;
                uint lo = (b[h * 64 + rr % 64] >> (4 * (rr / 64))) & 0x0F;
                uint hi = (b[128 + h * 32 + rr % 32] >> (2 * (rr / 32))) & 0x03;
                PUT_NIBBLE(e, lo);
                ch[ho + 4 * e + (c >> 2)] |= (uchar)(hi << (2 * (c & 3)));
            }
            continue;
        }
        if (storage == WS_Q4_K || storage == WS_Q5_K) {
            ch[2 * c] = b[0]; ch[2 * c + 1] = b[1];
            ch[32 + 2 * c] = b[2]; ch[32 + 2 * c + 1] = b[3];
            for (int j = 0; j < 12; j++) ch[64 + 12 * c + j] = b[4 + j];
            int qs = storage == WS_Q5_K ? 48 : 16;
            for (int e = 0; e < 256; e++) {
                int sb = e / 32, j = e % 32;
                uint byte = b[qs + 32 * (sb / 2) + j];
                PUT_NIBBLE(e, sb % 2 == 0 ? byte & 0x0F : byte >> 4);
                if (storage == WS_Q5_K && ((b[16 + j] >> sb) & 1)) PUT_FIFTH(e);
            }
            continue;
        }
        ch[2 * c] = b[0]; ch[2 * c + 1] = b[1];
        if (WQ_HAS_MIN(storage)) { ch[32 + 2 * c] = b[2]; ch[32 + 2 * c + 1] = b[3]; }
        if (storage == WS_Q8_0) {
            for (int kk = 0; kk < 32; kk++) ch[32 + kk * 16 + c] = b[2 + kk];
            continue;
        }
        int o = WQ_HAS_MIN(storage) ? 4 : 2;
        uint qh = 0;
        if (WQ_HAS_HIGH(storage)) { qh = (uint)b[o] | (uint)b[o + 1] << 8 | (uint)b[o + 2] << 16 | (uint)b[o + 3] << 24; o += 4; }
        for (int kk = 0; kk < R; kk++) {
            PUT_NIBBLE(kk, kk < 16 ? (b[o + kk] & 0x0F) : (b[o + kk - 16] >> 4));
            if (WQ_HAS_HIGH(storage) && ((qh >> kk) & 1u)) PUT_FIFTH(kk);
        }
        #undef PUT_NIBBLE
        #undef PUT_FIFTH
    }
}

// pack_b_u16: pack_b for 16-bit elements (f16 or bf16 bits, moved unchanged;
// zero bits are 0.0 in both), no dropout. global (ceil(N/16), K)
__kernel void pack_b_u16(int K, int N, __global const ushort* B, int b_rs, int b_cs, __global ushort* Bp) {
    int p = get_global_id(0);
    int k = get_global_id(1);
    if (p * 16 >= N || k >= K) return;
    int n0 = p * 16;
    const __global ushort* src = B + (size_t)k * b_rs + (size_t)n0 * b_cs;
    ushort t[16];
    for (int c = 0; c < 16; c++) t[c] = n0 + c < N ? src[(size_t)c * b_cs] : (ushort)0;
    vstore16(vload16(0, t), 0, Bp + ((size_t)p * K + k) * 16);
}

// transpose_panels: the panels of op(B)ᵀ from those of op(B). Src holds op(B)
// (K,N) as [ceil(N/16)][K][16]; Dst gets op(B)ᵀ (N,K) as [ceil(K/16)][N][16]:
//   Dst[q][n][c] = Src[n/16][16q + c][n%16]   (0 for 16q + c ≥ K).
// The frozen weights keep only the forward panels (op(B) = Wᵀ); backward's
// dX = dY·W takes these per call (see ComputeContext.backwardPanels).
// Work-item (q, nb) moves one 16×16 block: it loads the 256 contiguous
// elements Src[nb][16q…16q+15][0…15] with sixteen vector loads into a
// private block, and writes the 16 rows n = 16nb … of panel q (contiguous
// too) from its columns, widening 16-bit sources to float (the _f16/_bf16
// kernels) or keeping the element type (transpose_panels, _u16). Measured
// ~1.8× faster on pocl than gathering each row from global memory.
// p0: the first Src panel moved (a block of op(B)'s columns n = 16·p0 …, N of them: a row block of a frozen W,
// transposed block by block to bound the scratch).
// global (ceil(K/16), ceil(N/16))
#define TRANSPOSE_PANELS_KERNEL(NAME, ST, DT, LOAD16)                                            \
__kernel void NAME(int K, int N, int p0, __global const ST* Src, __global DT* Dst) {            \
    int q = get_global_id(0), nb = get_global_id(1);                                            \
    if (q * 16 >= K || nb * 16 >= N) return;                                                   \
    int rows = min(16, N - nb * 16), cols = min(16, K - q * 16);                                \
    DT blk[256];                                                                                \
    const __global ST* s = Src + ((size_t)(p0 + nb) * K + (size_t)q * 16) * 16;                 \
    for (int c = 0; c < 16; c++) vstore16(c < cols ? LOAD16(c, s) : (DT##16)(0), c, blk);       \
    for (int nn = 0; nn < rows; nn++) {                                                         \
        DT t[16];                                                                               \
        for (int c = 0; c < 16; c++) t[c] = blk[c * 16 + nn];                                   \
        vstore16(vload16(0, t), 0, Dst + ((size_t)q * N + (size_t)nb * 16 + nn) * 16);          \
    }                                                                                           \
}
TRANSPOSE_PANELS_KERNEL(transpose_panels, float, float, vload16)
TRANSPOSE_PANELS_KERNEL(transpose_panels_u16, ushort, ushort, vload16)
TRANSPOSE_PANELS_KERNEL(transpose_panels_f16, half, float, vload_half16)
TRANSPOSE_PANELS_KERNEL(transpose_panels_bf16, ushort, float, vload_bf16x16)

// transpose_panels for quantized Src (K a multiple of the block size), widened to float: as above, Src's rows read with
// ws_load16 by index. global (ceil(K/16), ceil(N/16))
#define TRANSPOSE_PANELS_Q_KERNEL(NAME, STORAGE)                                                 \
__kernel void NAME(int K, int N, int p0, __global const uchar* Src, __global float* Dst) {      \
    int q = get_global_id(0), nb = get_global_id(1);                                            \
    if (q * 16 >= K || nb * 16 >= N) return;                                                   \
    int rows = min(16, N - nb * 16), cols = min(16, K - q * 16);                                \
    float blk[256];                                                                             \
    size_t s = (size_t)(p0 + nb) * K + (size_t)q * 16;                                          \
    for (int c = 0; c < 16; c++)                                                                \
        vstore16(c < cols ? ws_load16(s + c, Src, STORAGE) : (float16)(0.0f), c, blk);          \
    for (int nn = 0; nn < rows; nn++) {                                                         \
        float t[16];                                                                            \
        for (int c = 0; c < 16; c++) t[c] = blk[c * 16 + nn];                                   \
        vstore16(vload16(0, t), 0, Dst + ((size_t)q * N + (size_t)nb * 16 + nn) * 16);          \
    }                                                                                           \
}
TRANSPOSE_PANELS_Q_KERNEL(transpose_panels_q8_0, WS_Q8_0)
TRANSPOSE_PANELS_Q_KERNEL(transpose_panels_q4_0, WS_Q4_0)
TRANSPOSE_PANELS_Q_KERNEL(transpose_panels_q4_1, WS_Q4_1)
TRANSPOSE_PANELS_Q_KERNEL(transpose_panels_q5_0, WS_Q5_0)
TRANSPOSE_PANELS_Q_KERNEL(transpose_panels_q5_1, WS_Q5_1)
TRANSPOSE_PANELS_Q_KERNEL(transpose_panels_nf4, WS_NF4)
TRANSPOSE_PANELS_Q_KERNEL(transpose_panels_q4_k, WS_Q4_K)
TRANSPOSE_PANELS_Q_KERNEL(transpose_panels_q5_k, WS_Q5_K)
TRANSPOSE_PANELS_Q_KERNEL(transpose_panels_q6_k, WS_Q6_K)

// widen_panels_*: fp32 panels from a block of quantized ones, the same layout: Dst[p][k][c] = the value
// panel p0 + p of Src holds at (k, c) (ws_load16's values: each sub-block's factors formed once, as in
// the gemm). The forward's staged path (ComputeContext.gemm, KernelConfig.quantStaged): at many rows, a
// quantized W dequantized once per call into fp32 panels the fp32 gemm streams, instead of once per row
// group in registers. global (P, K / sub-block rows)
#define WIDEN_PANELS_Q_KERNEL(NAME, STORAGE)                                                     \
__kernel void NAME(int K, int P, int p0, __global const uchar* Src, __global float* Dst) {      \
    const int S = 1 << WQ_SUB_BITS(STORAGE);                                                    \
    int p = get_global_id(0), sb = get_global_id(1);                                            \
    if (p >= P || sb * S >= K) return;                                                          \
    size_t i = (size_t)(p0 + p) * K + (size_t)sb * S;                                           \
    float16 fa, fb;                                                                             \
    wq_params(i, Src, STORAGE, &fa, &fb);                                                       \
    __global float* d = Dst + ((size_t)p * K + (size_t)sb * S) * 16;                            \
    for (int k = 0; k < S; k++) vstore16(wq_apply(wq_values(i + k, Src, STORAGE), fa, fb, STORAGE), k, d); \
}
WIDEN_PANELS_Q_KERNEL(widen_panels_q8_0, WS_Q8_0)
WIDEN_PANELS_Q_KERNEL(widen_panels_q4_0, WS_Q4_0)
WIDEN_PANELS_Q_KERNEL(widen_panels_q4_1, WS_Q4_1)
WIDEN_PANELS_Q_KERNEL(widen_panels_q5_0, WS_Q5_0)
WIDEN_PANELS_Q_KERNEL(widen_panels_q5_1, WS_Q5_1)
WIDEN_PANELS_Q_KERNEL(widen_panels_nf4, WS_NF4)
WIDEN_PANELS_Q_KERNEL(widen_panels_q4_k, WS_Q4_K)
WIDEN_PANELS_Q_KERNEL(widen_panels_q5_k, WS_Q5_K)
WIDEN_PANELS_Q_KERNEL(widen_panels_q6_k, WS_Q6_K)

// panel_rows: rows of op(B)ᵀ (N,K) read back from the panels of op(B), widened
// to float: out[i, k] = Bp[n/16][k][n%16] with n = ids[i] (use_ids = 1) or
// n = i. For a frozen W packed as op(B) = Wᵀ these are rows of W: the token
// embedding gather from the (tied) table, and the fp32 weight where it is
// needed whole (a trained copy's start, a saved adapter's base layer).
// A matrix kept in parts (rows row0 ≤ id < row0 + nrows of W in this part's
// panels): with ids, an id outside the part is left for another part's launch;
// without, the part's rows i < R are read into rows row0 + i of out. global (K, R)
#define PANEL_ROWS_KERNEL(NAME, BT, STORAGE)                                                    \
__kernel void NAME(int R, int K, int use_ids, __global const int* ids,                          \
                   int row0, int nrows, __global const BT* Bp, __global float* out) {           \
    int k = get_global_id(0), i = get_global_id(1);                                             \
    if (k >= K || i >= R) return;                                                               \
    int n = use_ids ? ids[i] - row0 : i;                                                        \
    if (n < 0 || n >= nrows) return;                                                            \
    size_t s = ((size_t)(n / 16) * K + k) * 16 + n % 16;                                        \
    out[((size_t)(use_ids ? 0 : row0) + i) * K + k] = ws_load1(s, (const __global void*)Bp, STORAGE); \
}
PANEL_ROWS_KERNEL(panel_rows, float, WS_F32)
PANEL_ROWS_KERNEL(panel_rows_f16, half, WS_F16)
PANEL_ROWS_KERNEL(panel_rows_bf16, ushort, WS_BF16)
PANEL_ROWS_KERNEL(panel_rows_q8_0, uchar, WS_Q8_0)
PANEL_ROWS_KERNEL(panel_rows_q4_0, uchar, WS_Q4_0)
PANEL_ROWS_KERNEL(panel_rows_q4_1, uchar, WS_Q4_1)
PANEL_ROWS_KERNEL(panel_rows_q5_0, uchar, WS_Q5_0)
PANEL_ROWS_KERNEL(panel_rows_q5_1, uchar, WS_Q5_1)
PANEL_ROWS_KERNEL(panel_rows_nf4, uchar, WS_NF4)
PANEL_ROWS_KERNEL(panel_rows_q4_k, uchar, WS_Q4_K)
PANEL_ROWS_KERNEL(panel_rows_q5_k, uchar, WS_Q5_K)
PANEL_ROWS_KERNEL(panel_rows_q6_k, uchar, WS_Q6_K)

// colsum: out[n] = beta·out[n] + Σ_m X[m, n]   (dbias = Σ over tokens of dY)
// X (M,N). global (N)
__kernel void colsum(int M, int N, __global const float* X, float beta, __global float* out) {
    int n = get_global_id(0);
    if (n >= N) return;
    float s = 0.0f;
    for (int m = 0; m < M; m++) s += X[(size_t)m * N + n];
    out[n] = beta != 0.0f ? fma(beta, out[n], s) : s;
}

