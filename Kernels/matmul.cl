// matmul.cl — C = alpha·op(A)·op(B) [+ ext] [+ bias] + beta·C, fp32.
//
// op(B) is consumed in packed panels: Bp [ceil(N/16)][K][16], zero-padded past
// N. Packing is O(K·N) against the O(M·N·K) product; the frozen base weights
// are packed once and kept (see PackedMatrix), everything else is packed per
// call. Each work-item holds a GEMM_MR × 16 tile of C in float16 registers and
// streams one panel with explicit fma: no __local memory and no barriers,
// which pocl turns into straight AVX-512 loops.

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
//   ext (K2 > 0): + alpha2 · op(A2)·op(B2), op(A2) (M,K2) strided like A, B2p packed like Bp.
//     ext_mask = 1: the ext term is multiplied elementwise by the dropout
//     mask of element m·mask_ld + n scaled by 1/(1-p) (dX of LoRA with dropout).
//   bias (has_bias = 1): + bias[n].
//   beta == 0 never reads C, so C may hold garbage (or NaN) on entry.
// global (ceil(N/16), ceil(M/GEMM_MR)) rounded to the local size.
__kernel void gemm_packed(int M, int N, int K, float alpha,
                          __global const float* A, int a_rs, int a_cs,
                          __global const float* Bp,
                          int K2, float alpha2,
                          __global const float* A2, int a2_rs, int a2_cs,
                          __global const float* B2p,
                          int ext_mask, float dropout_p, uint seed, int mask_ld,
                          int has_bias, __global const float* bias,
                          float beta, __global float* C) {
    int pj = get_global_id(0);
    int row0 = get_global_id(1) * GEMM_MR;
    int n0 = pj * 16;
    if (row0 >= M || n0 >= N) return;

    float16 acc[GEMM_MR];
    const __global float* ap[GEMM_MR];
    #pragma unroll
    for (int r = 0; r < GEMM_MR; r++) {
        acc[r] = (float16)(0.0f);
        // Rows past M read row M-1 (valid memory); their results are never stored.
        ap[r] = A + (size_t)min(row0 + r, M - 1) * a_rs;
    }
    const __global float* bp = Bp + (size_t)pj * K * 16;
    for (int k = 0; k < K; k++) {
        float16 b = vload16(k, bp);
        size_t ka = (size_t)k * a_cs;
        #pragma unroll
        for (int r = 0; r < GEMM_MR; r++) acc[r] = fma((float16)(ap[r][ka]), b, acc[r]);
    }
    #pragma unroll
    for (int r = 0; r < GEMM_MR; r++) acc[r] *= alpha;

    if (K2 > 0) {
        const __global float* b2p = B2p + (size_t)pj * K2 * 16;
        #pragma unroll
        for (int r = 0; r < GEMM_MR; r++) {
            const __global float* a2 = A2 + (size_t)min(row0 + r, M - 1) * a2_rs;
            float16 e = (float16)(0.0f);
            for (int k = 0; k < K2; k++) e = fma((float16)(a2[(size_t)k * a2_cs]), vload16(k, b2p), e);
            e *= alpha2;
            if (ext_mask) {
                float scale = 1.0f / (1.0f - dropout_p);
                float m[16];
                ulong base = (ulong)(row0 + r) * (ulong)mask_ld + (ulong)n0;
                for (int j = 0; j < 16; j++) m[j] = dropout_keep(seed, base + j, dropout_p) ? scale : 0.0f;
                e *= vload16(0, m);
            }
            acc[r] += e;
        }
    }

    float16 bv = (float16)(0.0f);
    if (has_bias) {
        if (n0 + 16 <= N) bv = vload16(0, bias + n0);
        else { float t[16]; for (int j = 0; j < 16; j++) t[j] = n0 + j < N ? bias[n0 + j] : 0.0f; bv = vload16(0, t); }
    }

    #pragma unroll
    for (int r = 0; r < GEMM_MR; r++) {
        int row = row0 + r;
        if (row >= M) break;
        __global float* c = C + (size_t)row * N + n0;
        float16 v = acc[r] + bv;
        if (n0 + 16 <= N) {
            if (beta != 0.0f) v = fma((float16)(beta), vload16(0, c), v);
            vstore16(v, 0, c);
        } else {
            float t[16];
            vstore16(v, 0, t);
            for (int j = 0; j < N - n0; j++) c[j] = beta != 0.0f ? fma(beta, c[j], t[j]) : t[j];
        }
    }
}

// colsum: out[n] = beta·out[n] + Σ_m X[m, n]   (dbias = Σ over tokens of dY)
// X (M,N). global (N)
__kernel void colsum(int M, int N, __global const float* X, float beta, __global float* out) {
    int n = get_global_id(0);
    if (n >= N) return;
    float s = 0.0f;
    for (int m = 0; m < M; m++) s += X[(size_t)m * N + n];
    out[n] = beta != 0.0f ? fma(beta, out[n], s) : s;
}
