// matmul_tiled.cl — gemm_tiled: the product of gemm_packed (matmul.cl) in the
// shape GPUs want. Same arguments, same semantics:
//   C (M,N) = alpha·op(A)·op(B) [+ alpha2·op(A2)·op(B2) (· dropout mask)] [+ bias] + beta·C
// with op(B) in packed panels Bp [ceil(N/16)][K][16] and beta == 0 never reading C.
//
// A work-group computes a TILED_TM × TILED_TN tile of C. Per TILED_TK-deep
// step it stages the TM × TK block of op(A) and the TK × TN block of the
// panels in __local memory (every work-item loads a share: neighbouring
// work-items read neighbouring addresses, so the loads coalesce; a panel's TK
// rows are TK·16 contiguous floats), waits at a barrier, and each work-item
// accumulates a TILED_WM × TILED_WN register block from __local memory. Its
// outputs are strided by the group's extent (rows ty + i·LY, columns
// tx + j·LX), so neighbouring work-items store neighbouring columns.
//
// No early return anywhere: pocl 3.1 segfaults on a return before a barrier
// with ≥ 32 work-items per group (Benchmarks/NOTES.md). Out-of-range rows and
// columns stage zeros and skip only their stores.
//
// Three instances, one body: gemm_tiled (float panels), gemm_tiled_f16 (half
// panels, vload_half: no cl_khr_fp16 needed) and gemm_tiled_bf16 (ushort
// panels holding bfloat16 bits). Only the main B operand changes type; the
// ext term's B2p (LoRA panels) stays float. Accumulation is fp32 throughout.

#ifndef TILED_TM
#define TILED_TM 64        // rows of C per work-group
#endif
#ifndef TILED_TN
#define TILED_TN 64        // columns of C per work-group (a multiple of the 16-wide panel)
#endif
#ifndef TILED_TK
#define TILED_TK 16        // depth of one staged step
#endif
#ifndef TILED_WM
#define TILED_WM 4         // rows per work-item
#endif
#ifndef TILED_WN
#define TILED_WN 4         // columns per work-item
#endif

#if TILED_TN % 16 != 0 || TILED_TN % TILED_WN != 0 || TILED_TM % TILED_WM != 0
#error "gemm_tiled: TILED_TN must be a multiple of 16 and of TILED_WN, TILED_TM of TILED_WM"
#endif

#define TILED_LX (TILED_TN / TILED_WN)          // work-items along N (local size 0)
#define TILED_LY (TILED_TM / TILED_WM)          // work-items along M (local size 1)
#define TILED_WG (TILED_LX * TILED_LY)
// __local row strides: As is [TK][TM + 1] (the +1 spreads the k-major stores
// of row-major A over the banks); Bs is [TK][TN (+16)] so consecutive k rows
// start 16 banks apart.
#define TILED_AS (TILED_TM + 1)
#define TILED_BS (TILED_TN + ((TILED_TN % 32) ? 0 : 16))

// B panels are read with ws_load1 (common.cl): `kind` is WS_F32, WS_F16, WS_BF16 or a quantized WS_Q*.

// acc[i][j] += Σ_k op(A)(m0 + ty + i·LY, k) · op(B)(k, n0 + tx + j·LX) over k < K,
// op(A)(m, k) = A[m·a_rs + k·a_cs], op(B) packed (panels from p0, `kind` storage).
// Every work-item of the group must call it (it holds barriers).
inline void tiled_product(int M, int K, int m0, int p0, int npanels,
                          __global const float* A, int a_rs, int a_cs,
                          __global const void* Bp, int kind,
                          __local float* As, __local float* Bs,
                          float acc[TILED_WM][TILED_WN]) {
    int tx = get_local_id(0), ty = get_local_id(1);
    int lid = ty * TILED_LX + tx;
    for (int k0 = 0; k0 < K; k0 += TILED_TK) {
        // op(A) block: k fastest when k is contiguous in memory (NN/NT), else m (TN).
        for (int i = lid; i < TILED_TK * TILED_TM; i += TILED_WG) {
            int kk = a_cs == 1 ? i % TILED_TK : i / TILED_TM;
            int mm = a_cs == 1 ? i / TILED_TK : i % TILED_TM;
            int m = m0 + mm, k = k0 + kk;
            As[kk * TILED_AS + mm] = m < M && k < K ? A[(size_t)m * a_rs + (size_t)k * a_cs] : 0.0f;
        }
        // Panel block: panel pp's rows k0… are contiguous, 16 floats each.
        for (int i = lid; i < TILED_TK * TILED_TN; i += TILED_WG) {
            int c = i % 16, kk = (i / 16) % TILED_TK, pp = i / (16 * TILED_TK);
            int p = p0 + pp, k = k0 + kk;
            Bs[kk * TILED_BS + pp * 16 + c] =
                p < npanels && k < K ? ws_load1(((size_t)p * K + k) * 16 + c, Bp, kind) : 0.0f;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int kk = 0; kk < TILED_TK; kk++) {
            float a[TILED_WM], b[TILED_WN];
            #pragma unroll
            for (int i = 0; i < TILED_WM; i++) a[i] = As[kk * TILED_AS + ty + i * TILED_LY];
            #pragma unroll
            for (int j = 0; j < TILED_WN; j++) b[j] = Bs[kk * TILED_BS + tx + j * TILED_LX];
            #pragma unroll
            for (int i = 0; i < TILED_WM; i++) {
                #pragma unroll
                for (int j = 0; j < TILED_WN; j++) acc[i][j] = fma(a[i], b[j], acc[i][j]);
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
}

// The whole kernel for B storage `kind`; As/Bs are the caller's __local tiles.
inline void gemm_tiled_body(int M, int N, int K, float alpha,
                            __global const float* A, int a_rs, int a_cs,
                            __global const void* Bp, int kind,
                            int K2, float alpha2,
                            __global const float* A2, int a2_rs, int a2_cs,
                            __global const float* B2p,
                            int ext_mask, float dropout_p, uint seed, int mask_ld,
                            int has_bias, __global const float* bias,
                            float beta, __global float* C, int ldc, int col0, int a_off,
                            __local float* As, __local float* Bs) {
    int tx = get_local_id(0), ty = get_local_id(1);
    int n0 = get_group_id(0) * TILED_TN, m0 = get_group_id(1) * TILED_TM;
    int npanels = (N + 15) / 16;
    float acc[TILED_WM][TILED_WN], ext[TILED_WM][TILED_WN];
    #pragma unroll
    for (int i = 0; i < TILED_WM; i++) {
        #pragma unroll
        for (int j = 0; j < TILED_WN; j++) { acc[i][j] = 0.0f; ext[i][j] = 0.0f; }
    }
    tiled_product(M, K, m0, n0 / 16, npanels, A + a_off, a_rs, a_cs, Bp, kind, As, Bs, acc);
    // The ext term (K2 = 0: no step, no barrier — uniform over the group).
    tiled_product(M, K2, m0, n0 / 16, npanels, A2, a2_rs, a2_cs,
                  (__global const void*)(B2p + (size_t)col0 * K2), WS_F32, As, Bs, ext);
    float scale = 1.0f / (1.0f - dropout_p);
    #pragma unroll
    for (int i = 0; i < TILED_WM; i++) {
        int m = m0 + ty + i * TILED_LY;
        #pragma unroll
        for (int j = 0; j < TILED_WN; j++) {
            int n = n0 + tx + j * TILED_LX;
            if (m < M && n < N) {
                // The order of gemm_packed: alpha·acc + (alpha2·ext)·mask + bias, then beta·C.
                float v = acc[i][j] * alpha;
                if (K2 > 0) {
                    float e = ext[i][j] * alpha2;
                    if (ext_mask) e *= dropout_keep(seed, (ulong)m * (ulong)mask_ld + (ulong)(col0 + n), dropout_p) ? scale : 0.0f;
                    v += e;
                }
                if (has_bias) v += bias[col0 + n];
                __global float* c = C + (size_t)m * ldc + col0 + n;
                *c = beta != 0.0f ? fma(beta, *c, v) : v;
            }
        }
    }
}

// GEMM_KERNEL_ARGS (common.cl), as gemm_packed; global (ceil(N/TN)·LX, ceil(M/TM)·LY), local (LX, LY).
#define GEMM_TILED_KERNEL(NAME, BTYPE, KIND)                                                      \
__kernel __attribute__((reqd_work_group_size(TILED_LX, TILED_LY, 1)))                              \
void NAME(GEMM_KERNEL_ARGS(BTYPE)) {                                                             \
    __local float As[TILED_TK * TILED_AS];                                                         \
    __local float Bs[TILED_TK * TILED_BS];                                                         \
    gemm_tiled_body(M, N, K, alpha, A, a_rs, a_cs, (__global const void*)Bp, KIND, K2, alpha2,     \
                    A2, a2_rs, a2_cs, B2p, ext_mask, dropout_p, seed, mask_ld, has_bias, bias,     \
                    beta, C, ldc, col0, a_off, As, Bs);                                            \
}

GEMM_TILED_KERNEL(gemm_tiled, float, WS_F32)
GEMM_TILED_KERNEL(gemm_tiled_f16, half, WS_F16)
GEMM_TILED_KERNEL(gemm_tiled_bf16, ushort, WS_BF16)
GEMM_TILED_KERNEL(gemm_tiled_q8_0, uchar, WS_Q8_0)
GEMM_TILED_KERNEL(gemm_tiled_q4_0, uchar, WS_Q4_0)
GEMM_TILED_KERNEL(gemm_tiled_q4_1, uchar, WS_Q4_1)
GEMM_TILED_KERNEL(gemm_tiled_q5_0, uchar, WS_Q5_0)
GEMM_TILED_KERNEL(gemm_tiled_q5_1, uchar, WS_Q5_1)
GEMM_TILED_KERNEL(gemm_tiled_nf4, uchar, WS_NF4)
GEMM_TILED_KERNEL(gemm_tiled_q4_k, uchar, WS_Q4_K)
GEMM_TILED_KERNEL(gemm_tiled_q5_k, uchar, WS_Q5_K)
GEMM_TILED_KERNEL(gemm_tiled_q6_k, uchar, WS_Q6_K)
