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
