// common.cl — helpers shared by every kernel family. All kernel files are
// concatenated into one program in file-name order with this file first.
//
// Tile sizes are build-time defines so each device gets its own (see
// KernelConfig.swift); the defaults below are the pocl-CPU ones.
#ifndef GEMM_MR
#define GEMM_MR 8          // rows of C per work-item (float16 accumulators each)
#endif
#ifndef ROW_WG
#define ROW_WG 1           // work-items cooperating on one row in row kernels
#endif

// Counter-based dropout RNG: the keep/drop decision for element `idx` is a
// pure function of (seed, idx), so backward regenerates the mask instead of
// storing it. The mixer is SplitMix64's finaliser; the host reference in
// Sources/Reference/Dropout.swift implements the identical function.
inline uint dropout_hash(uint seed, ulong idx) {
    ulong z = idx + ((ulong)seed << 32) + 0x9E3779B97F4A7C15UL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
    z = z ^ (z >> 31);
    return (uint)(z >> 32);
}

// Keep with probability 1 - p: the top 24 bits as a uniform in [0, 1).
inline int dropout_keep(uint seed, ulong idx, float p) {
    float u = (float)(dropout_hash(seed, idx) >> 8) * (1.0f / 16777216.0f);
    return u >= p;
}

// ---- Row reductions. Kernels that use them have no early `return` before a
// barrier: pocl 3.1 crashes (SIGSEGV) running such a kernel with 32 or more
// work-items per group, even when the return is uniform; their launchers size
// the global range exactly instead.
// One work-group of ROW_WG work-items per row: on pocl
// ROW_WG = 1 and rows are swept with float16 loads (no barriers); on GPUs
// ROW_WG > 1 reduces through __local memory.

// The sum (or max) of one value per work-item over the ROW_WG work-items of a row.
inline float row_reduce(float partial, __local float* red, int take_max) {
#if ROW_WG > 1
    int lid = get_local_id(0);
    red[lid] = partial;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = ROW_WG / 2; s > 0; s >>= 1) {
        if (lid < s) red[lid] = take_max ? fmax(red[lid], red[lid + s]) : red[lid] + red[lid + s];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    float total = red[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return total;
#else
    return partial;
#endif
}

inline float row_sum(float partial, __local float* red) { return row_reduce(partial, red, 0); }
inline float row_max(float partial, __local float* red) { return row_reduce(partial, red, 1); }

// Σ_c a[c]·b[c] over this work-item's share of the row: on pocl (ROW_WG = 1)
// the whole row in float16 sweeps; on GPUs lane l takes c = l, l + ROW_WG, …
// so neighbouring lanes read neighbouring floats.
inline float row_dot_partial(int C, const __global float* a, const __global float* b) {
#if ROW_WG == 1
    float16 acc = (float16)(0.0f);
    int c = 0;
    for (; c + 16 <= C; c += 16) acc = fma(vload16(0, a + c), vload16(0, b + c), acc);
    float s = 0.0f;
    for (; c < C; c++) s = fma(a[c], b[c], s);
    float8 h8 = acc.lo + acc.hi; float4 h4 = h8.lo + h8.hi; float2 h2 = h4.lo + h4.hi;
    return s + h2.x + h2.y;
#else
    float s = 0.0f;
    for (int c = get_local_id(0); c < C; c += ROW_WG) s = fma(a[c], b[c], s);
    return s;
#endif
}

// Panel storage (WeightStorage on the host): the frozen weights keep the
// checkpoint's 16-bit type on the device and are widened to fp32 as they are
// loaded, so one kernel body serves three element types:
//   WS_F32  float
//   WS_F16  IEEE half, read with core OpenCL vload_half16 (no cl_khr_fp16)
//   WS_BF16 ushort, the top half of an fp32 (widened with << 16)
// Widening is exact, so a 16-bit panel gives the same sums as its fp32 copy.
// The quantized storages (WS_Q8_0 …) are described below.
#define WS_F32 0
#define WS_F16 1
#define WS_BF16 2

// Quantized panels: a frozen W kept in a block type (WeightStorage .q8_0 … .nf4 on the host): a GGUF file's
// Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K as loaded, or NF4 (QLoRA) made at load.
// The panels of op(B) = Wᵀ (K = in, N = out) are cut in chunks of 16 columns (rows of W) by R panel rows (one
// block of each of those rows: R = 32, 64 for NF4, 256 for the K-quants' super-blocks, K a multiple of R):
// chunk p·(K/R) + kb holds panel rows k = R·kb … R·kb + R − 1 of panel p, so panel row i (16 elements) is in
// chunk i / R, at row i % R — the index arithmetic of the 16/32-bit panels. The blocks are re-blocked into chunks
// once, at load (`reblock_q`), never widened in memory. Within a block, rows come in sub-blocks of S rows sharing
// one scale (and min) per column: S = 32 (16 for Q6_K, 64 for NF4). Chunk layouts, in bytes (column c = 0…15,
// row kk = 0…R−1); "nibbles" is uchar[R][8], byte (kk, j) holding column j in its low nibble and j + 8 in its
// high one; "fifth bits" is ushort[R], bit c column c's:
//   Q8_0  d half[16] @0, qs char[32][16] @32                                              544 bytes (34 per 32)
//   Q4_0  d @0, nibbles @32                                                               288 (18)
//   Q4_1  d @0, m half[16] @32, nibbles @64                                               320 (20)
//   Q5_0  d @0, nibbles @32, fifth bits @288                                              352 (22)
//   Q5_1  d @0, m @32, nibbles @64, fifth bits @320                                       384 (24)
//   NF4   absmax float[16] @0, nibbles (64 rows) @64                                      576 (36 per 64)
//   Q4_K  d @0, dmin half[16] @32, scales uchar[16][12] (ggml's packed 6-bit scale/min pairs) @64,
//         nibbles (256 rows) @256                                                         2304 (144 per 256)
//   Q5_K  as Q4_K, fifth bits (256 rows) @2304                                            2816 (176)
//   Q6_K  d @0, scales char[16 sub-blocks][16] @32, nibbles (low 4 bits) @288,
//         high bits uint[256] @2336 (bits 2c, 2c + 1: column c's top two)                 3360 (210)
// The value is ggml's, with its fp32 operations in its order (gguf-py's `dequantize`, bitsandbytes' for NF4):
//   Q8_0 q·d   Q4_0 d·(q − 8)   Q5_0 d·(q − 16)   Q4_1/Q5_1 d·q + m   NF4 code[q]·absmax
//   Q4_K/Q5_K (d·sc)·q − dmin·m   Q6_K (d·sc)·(q − 32)
// never contracted to an fma, so a product over these panels equals, bit for bit, the same product over the fp32
// weights dequantized at load. A sub-block's per-column factors (wq_params) are formed once for its S rows.
#define WS_Q8_0 3
#define WS_Q4_0 4
#define WS_Q4_1 5
#define WS_Q5_0 6
#define WS_Q5_1 7
#define WS_NF4 8
#define WS_Q4_K 9
#define WS_Q5_K 10
#define WS_Q6_K 11
#define WS_IS_QUANT(s) ((s) >= WS_Q8_0)
#define WQ_IS_K(s) ((s) >= WS_Q4_K)
#define WQ_CHUNK_BYTES(s) ((s) == WS_Q8_0 ? 544 : (s) == WS_Q4_0 ? 288 : (s) == WS_Q4_1 ? 320 : (s) == WS_Q5_0 ? 352 \
                           : (s) == WS_Q5_1 ? 384 : (s) == WS_NF4 ? 576 : (s) == WS_Q4_K ? 2304 : (s) == WS_Q5_K ? 2816 : 3360)
// log2 of the rows of a chunk (R) and of a sub-block (S).
#define WQ_ROW_BITS(s) ((s) == WS_NF4 ? 6 : WQ_IS_K(s) ? 8 : 5)
#define WQ_SUB_BITS(s) ((s) == WS_NF4 ? 6 : (s) == WS_Q6_K ? 4 : 5)
#define WQ_HAS_MIN(s) ((s) == WS_Q4_1 || (s) == WS_Q5_1)
#define WQ_HAS_HIGH(s) ((s) == WS_Q5_0 || (s) == WS_Q5_1 || (s) == WS_Q5_K)
// Offsets of the nibbles and of the fifth bits (Q6_K: its high bits).
#define WQ_QS(s) ((s) == WS_NF4 || WQ_HAS_MIN(s) ? 64 : (s) == WS_Q4_K || (s) == WS_Q5_K ? 256 : (s) == WS_Q6_K ? 288 : 32)
#define WQ_QH(s) ((s) == WS_Q5_0 ? 288 : (s) == WS_Q5_1 ? 320 : (s) == WS_Q5_K ? 2304 : 2336)

// NF4 (QLoRA's 4-bit NormalFloat, as bitsandbytes defines it): bitsandbytes' 16 code values, bit for bit.
__constant float NF4_CODE[16] = {
    -0x1.0p+0f, -0x1.647362p-1f, -0x1.0cd66p-1f, -0x1.94654p-2f, -0x1.23449ap-2f, -0x1.7a6a7ep-3f, -0x1.74f0e2p-4f, 0.0f,
    0x1.45f5fep-4f, 0x1.4995c6p-3f, 0x1.f809bap-3f, 0x1.5a0674p-2f, 0x1.c3497p-2f, 0x1.200f56p-1f, 0x1.722766p-1f, 0x1.0p+0f,
};

inline const __global uchar* wq_chunk(size_t i, const __global uchar* p, const int s) {
    return p + (i >> WQ_ROW_BITS(s)) * (size_t)WQ_CHUNK_BYTES(s);
}

// ggml's K-quant scale and min of sub-block j (0…7) from a column's 12 scale bytes q (get_scale_min_k4).
inline void wq_k_scale_min(int j, const __global uchar* q, float* sc, float* m) {
    if (j < 4) { *sc = (float)(q[j] & 63); *m = (float)(q[j + 4] & 63); }
    else {
        *sc = (float)((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4));
        *m = (float)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

// The per-column factors of the sub-block holding panel row i: a (the scale) and b (the min, 0 where none).
inline void wq_params(size_t i, const __global uchar* p, const int s, float16* a, float16* b) {
    #pragma OPENCL FP_CONTRACT OFF
    const __global uchar* ch = wq_chunk(i, p, s);
    int kk = (int)(i & ((1 << WQ_ROW_BITS(s)) - 1));
    *b = (float16)(0.0f);
    if (s == WS_NF4) { *a = vload16(0, (const __global float*)ch); return; }
    float16 d = vload_half16(0, (const __global half*)ch);
    if (WQ_HAS_MIN(s)) *b = vload_half16(1, (const __global half*)ch);
    if (s == WS_Q6_K) {
        *a = d * convert_float16(vload16(kk >> 4, (const __global char*)(ch + 32)));
    } else if (WQ_IS_K(s)) {
        float16 dmin = vload_half16(1, (const __global half*)ch);
        float sc[16], m[16];
        for (int c = 0; c < 16; c++) wq_k_scale_min(kk >> 5, ch + 64 + 12 * c, &sc[c], &m[c]);
        *a = d * vload16(0, sc);
        *b = dmin * vload16(0, m);
    } else {
        *a = d;
    }
}

// The 16 quantized values of panel row i, as the format's integer (offset applied; NF4: its code value).
inline float16 wq_values(size_t i, const __global uchar* p, const int s) {
    const __global uchar* ch = wq_chunk(i, p, s);
    int kk = (int)(i & ((1 << WQ_ROW_BITS(s)) - 1));
    if (s == WS_Q8_0) return convert_float16(vload16(kk, (const __global char*)(ch + 32)));
    uchar8 n = vload8(kk, ch + WQ_QS(s));
    uchar16 q = (uchar16)(n & (uchar8)(0x0F), n >> (uchar8)(4));
    if (s == WS_NF4) {
        // A 16-entry table lookup in registers: shuffle picks code[q[c]] for each lane.
        const float16 code = (float16)(NF4_CODE[0], NF4_CODE[1], NF4_CODE[2], NF4_CODE[3], NF4_CODE[4], NF4_CODE[5],
                                       NF4_CODE[6], NF4_CODE[7], NF4_CODE[8], NF4_CODE[9], NF4_CODE[10], NF4_CODE[11],
                                       NF4_CODE[12], NF4_CODE[13], NF4_CODE[14], NF4_CODE[15]);
        return shuffle(code, convert_uint16(q));
    }
    if (WQ_HAS_HIGH(s)) {
        ushort16 h = (ushort16)(((const __global ushort*)(ch + WQ_QH(s)))[kk]);
        ushort16 bit = (h >> (ushort16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)) & (ushort16)(1);
        q |= convert_uchar16(bit) << (uchar16)(4);
    }
    if (s == WS_Q6_K) {
        uint16 h = (uint16)(((const __global uint*)(ch + WQ_QH(s)))[kk]);
        uint16 two = (h >> (uint16)(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30)) & (uint16)(3);
        q |= convert_uchar16(two) << (uchar16)(4);
        return convert_float16(q) - 32.0f;
    }
    float16 v = convert_float16(q);
    if (s == WS_Q4_0) return v - 8.0f;
    if (s == WS_Q5_0) return v - 16.0f;
    return v;
}

// The values of a row from its integers v and its sub-block's factors (a, b): ggml's order, never fused.
inline float16 wq_apply(float16 v, float16 a, float16 b, const int s) {
    #pragma OPENCL FP_CONTRACT OFF
    if (WQ_HAS_MIN(s)) { float16 t = a * v; return t + b; }
    if (s == WS_Q4_K || s == WS_Q5_K) { float16 t = a * v; return t - b; }
    return v * a;
}

// Panel row i of quantized panels at p, dequantized to float16.
inline float16 wq_load16(size_t i, const __global uchar* p, const int s) {
    float16 a, b;
    wq_params(i, p, s, &a, &b);
    return wq_apply(wq_values(i, p, s), a, b, s);
}

// Element e (= 16·i + c: row i, column c) of quantized panels at p, dequantized: column c's factors only, in the
// order of wq_params / wq_values / wq_apply (the tiled gemm and panel_rows read one element per work-item).
inline float wq_load1(size_t e, const __global uchar* p, const int s) {
    #pragma OPENCL FP_CONTRACT OFF
    size_t i = e >> 4;
    int c = (int)(e & 15);
    const __global uchar* ch = wq_chunk(i, p, s);
    int kk = (int)(i & ((1 << WQ_ROW_BITS(s)) - 1));
    float v;
    if (s == WS_Q8_0) {
        v = (float)((const __global char*)(ch + 32))[kk * 16 + c];
    } else {
        uchar b = ch[WQ_QS(s) + kk * 8 + (c & 7)];
        uint q = c < 8 ? (b & 0x0F) : (b >> 4);
        if (s == WS_NF4) return NF4_CODE[q] * ((const __global float*)ch)[c];
        if (WQ_HAS_HIGH(s)) q |= ((((const __global ushort*)(ch + WQ_QH(s)))[kk] >> c) & 1u) << 4;
        if (s == WS_Q6_K) q |= ((((const __global uint*)(ch + WQ_QH(s)))[kk] >> (2 * c)) & 3u) << 4;
        v = (float)q;
        if (s == WS_Q4_0) v -= 8.0f;
        else if (s == WS_Q5_0) v -= 16.0f;
        else if (s == WS_Q6_K) v -= 32.0f;
    }
    float d = vload_half(c, (const __global half*)ch);
    if (s == WS_Q6_K) {
        float a = d * (float)((const __global char*)(ch + 32))[(kk >> 4) * 16 + c];
        return v * a;
    }
    if (WQ_IS_K(s)) {
        float sc, m;
        wq_k_scale_min(kk >> 5, ch + 64 + 12 * c, &sc, &m);
        float a = d * sc, b = vload_half(16 + c, (const __global half*)ch) * m;
        float t = a * v;
        return t - b;
    }
    if (WQ_HAS_MIN(s)) {
        float t = d * v;
        return t + vload_half(16 + c, (const __global half*)ch);
    }
    return v * d;
}

// Sixteen bf16 values at p + 16·i widened to float16 (the vload16 of bf16).
inline float16 vload_bf16x16(size_t i, const __global ushort* p) {
    return as_float16(convert_uint16(vload16(i, p)) << 16);
}

// Row i (16 elements) of the panels at p, widened to float16. `storage` is a
// literal at every call site, so the branches fold away after inlining.
inline float16 ws_load16(size_t i, const __global void* p, const int storage) {
    if (WS_IS_QUANT(storage)) return wq_load16(i, (const __global uchar*)p, storage);
    if (storage == WS_F16) return vload_half16(i, (const __global half*)p);
    if (storage == WS_BF16) return vload_bf16x16(i, (const __global ushort*)p);
    return vload16(i, (const __global float*)p);
}

// Element i of the panels at p, widened to float.
inline float ws_load1(size_t i, const __global void* p, const int storage) {
    if (WS_IS_QUANT(storage)) return wq_load1(i, (const __global uchar*)p, storage);
    if (storage == WS_F16) return vload_half(i, (const __global half*)p);
    if (storage == WS_BF16) return as_float((uint)((const __global ushort*)p)[i] << 16);
    return ((const __global float*)p)[i];
}

// The argument list every gemm kernel (gemm_packed*, gemm_tiled*) takes, with
// Bp's element type BT (float, half or ushort): the host launches either by name.
#define GEMM_KERNEL_ARGS(BT)                                                    \
    int M, int N, int K, float alpha,                                           \
    __global const float* A, int a_rs, int a_cs,                                \
    __global const BT* Bp,                                                      \
    int K2, float alpha2,                                                       \
    __global const float* A2, int a2_rs, int a2_cs,                             \
    __global const float* B2p,                                                  \
    int ext_mask, float dropout_p, uint seed, int mask_ld,                      \
    int has_bias, __global const float* bias,                                   \
    float beta, __global float* C, int ldc, int col0, int a_off
