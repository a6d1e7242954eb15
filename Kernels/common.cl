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
#define WS_F32 0
#define WS_F16 1
#define WS_BF16 2

// Sixteen bf16 values at p + 16·i widened to float16 (the vload16 of bf16).
inline float16 vload_bf16x16(size_t i, const __global ushort* p) {
    return as_float16(convert_uint16(vload16(i, p)) << 16);
}

// Row i (16 elements) of the panels at p, widened to float16. `storage` is a
// literal at every call site, so the branches fold away after inlining.
inline float16 ws_load16(size_t i, const __global void* p, const int storage) {
    if (storage == WS_F16) return vload_half16(i, (const __global half*)p);
    if (storage == WS_BF16) return vload_bf16x16(i, (const __global ushort*)p);
    return vload16(i, (const __global float*)p);
}

// Element i of the panels at p, widened to float.
inline float ws_load1(size_t i, const __global void* p, const int storage) {
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
