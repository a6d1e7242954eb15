// rope.cl — rotary position embedding, Hugging Face `rotate_half` convention:
//   out[i]     = x[i]·cos[p,i]     − x[i+h]·sin[p,i]
//   out[i+h]   = x[i+h]·cos[p,i+h] + x[i]·sin[p,i+h],  h = head_dim/2
// with cos/sin (P, head_dim) tables (the two halves repeat the same
// frequencies). The rotation is orthogonal, so backward is the same kernel
// with sign = −1 (rotation by −θ).
// x (N, heads, head_dim) in place, positions (N). global (head_dim/2, heads, N)
__kernel void rope_apply(int N, int heads, int head_dim, __global const int* positions,
                         __global const float* cos_table, __global const float* sin_table,
                         float sign, __global float* x) {
    int i = get_global_id(0);
    int hh = get_global_id(1);
    int n = get_global_id(2);
    int half_d = head_dim / 2;
    if (i >= half_d || hh >= heads || n >= N) return;
    size_t base = ((size_t)n * heads + hh) * head_dim;
    size_t tb = (size_t)positions[n] * head_dim;
    float a = x[base + i], b = x[base + i + half_d];
    float c1 = cos_table[tb + i], s1 = sign * sin_table[tb + i];
    float c2 = cos_table[tb + i + half_d], s2 = sign * sin_table[tb + i + half_d];
    x[base + i] = a * c1 - b * s1;
    x[base + i + half_d] = b * c2 + a * s2;
}
