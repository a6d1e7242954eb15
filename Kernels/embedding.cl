// embedding.cl — token gather and its deterministic scatter-add backward.
//
// A table is addressed with strides so the same kernels serve the token
// embedding E (V,C): row stride C, column stride 1, and PEFT's
// lora_embedding_A (r,V) read as its transpose: row stride 1, column stride V.

// out (N,C)[n, c] = table[ids[n]·row_stride + c·col_stride]. global (C, N)
__kernel void embedding_forward(int N, int C, __global const int* ids,
                                __global const float* table, int row_stride, int col_stride,
                                __global float* out) {
    int c = get_global_id(0);
    int n = get_global_id(1);
    if (c >= C || n >= N) return;
    out[(size_t)n * C + c] = table[(size_t)ids[n] * row_stride + (size_t)c * col_stride];
}

// dtable[u_id, c] (+)= Σ over the tokens n of that id of dout[n, c].
// The tokens are grouped by id on the host (ids are known when the batch is
// built): unique_ids (U), offsets (U+1), tokens (N) — so each output element
// is summed by one work-item, in a fixed order, without atomics.
// global (C, U)
__kernel void embedding_backward(int U, int C, __global const int* unique_ids,
                                 __global const int* offsets, __global const int* tokens,
                                 __global const float* dout, float beta,
                                 __global float* dtable, int row_stride, int col_stride) {
    int c = get_global_id(0);
    int u = get_global_id(1);
    if (c >= C || u >= U) return;
    float s = 0.0f;
    for (int i = offsets[u]; i < offsets[u + 1]; i++) s += dout[(size_t)tokens[i] * C + c];
    __global float* dst = dtable + (size_t)unique_ids[u] * row_stride + (size_t)c * col_stride;
    *dst = beta != 0.0f ? fma(beta, *dst, s) : s;
}

// NEFTune: x[i] += mag·u, u uniform in [−1, 1) from the counter hash of
// (seed, i) — a pure function, so a resumed run adds the same noise. global (n)
__kernel void add_uniform_noise(int n, float mag, uint seed, __global float* x) {
    int i = get_global_id(0);
    if (i >= n) return;
    float u = (float)(dropout_hash(seed, (ulong)i) >> 8) * (1.0f / 16777216.0f);
    x[i] += mag * (2.0f * u - 1.0f);
}
