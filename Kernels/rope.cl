// rope.cl — rotary position embedding, Hugging Face `rotate_half` convention:
//   out[i]     = x[i]·cos[p,i]     − x[i+h]·sin[p,i]
//   out[i+h]   = x[i+h]·cos[p,i+h] + x[i]·sin[p,i+h],  h = head_dim/2
// with cos/sin (P, rotary_dim) tables (the two halves repeat the same
// frequencies), h = rotary_dim/2: partial rotary (Phi-3's partial_rotary_factor)
// rotates the first rotary_dim values of each head and leaves the rest.
// The rotation is orthogonal, so backward is the same kernel with
// sign = −1 (rotation by −θ).
// x (N, heads, head_dim) in place, positions (N). global (rotary_dim/2, heads, N)
__kernel void rope_apply(int N, int heads, int head_dim, int rotary_dim, __global const int* positions,
                         __global const float* cos_table, __global const float* sin_table,
                         float sign, __global float* x) {
    int i = get_global_id(0);
    int hh = get_global_id(1);
    int n = get_global_id(2);
    int half_d = rotary_dim / 2;
    if (i >= half_d || hh >= heads || n >= N) return;
    size_t base = ((size_t)n * heads + hh) * head_dim;
    size_t tb = (size_t)positions[n] * rotary_dim;
    float a = x[base + i], b = x[base + i + half_d];
    float c1 = cos_table[tb + i], s1 = sign * sin_table[tb + i];
    float c2 = cos_table[tb + i + half_d], s2 = sign * sin_table[tb + i + half_d];
    x[base + i] = a * c1 - b * s1;
    x[base + i + half_d] = b * c2 + a * s2;
}

// A column block of one row-major matrix into another (a fused projection's q|k|v or gate|up split
// into parts, and the parts' gradients joined back): dst[r·dst_stride + dst_off + c] = src[r·src_stride
// + src_off + c], r < rows, c < width. global (width, rows)
__kernel void copy_columns(int rows, int src_stride, int src_off, int dst_stride, int dst_off, int width,
                           __global const float* src, __global float* dst) {
    int c = get_global_id(0);
    int r = get_global_id(1);
    if (c >= width || r >= rows) return;
    dst[(size_t)r * dst_stride + dst_off + c] = src[(size_t)r * src_stride + src_off + c];
}
