// crossentropy.cl — softmax cross-entropy over the vocabulary, fused forward
// and backward, on a chunk of rows at a time (the caller keeps only a chunk
// of logits alive). targets[r] < 0 (−100) marks an ignored row: loss 0, grad 0.
// The mean is over the counted rows of the whole batch: inv_count = 1/count.
//
// logits (R,V) in; overwritten with dlogits = (softmax − onehot)·inv_count.
// losses[row_offset + r] = lse − logit[target] (unscaled); targets indexed likewise. global (R·ROW_WG), local (ROW_WG)
__kernel void cross_entropy_fused(int R, int V, int row_offset, __global const int* targets, float inv_count,
                                  __global float* logits, __global float* losses) {
    __local float red[ROW_WG];
    int row = get_group_id(0);
    if (row >= R) return;
    int lid = get_local_id(0);
    __global float* x = logits + (size_t)row * V;
    float m = -INFINITY;
    for (int c = lid; c < V; c += ROW_WG) m = fmax(m, x[c]);
    m = row_max(m, red);
    float s = 0.0f;
    for (int c = lid; c < V; c += ROW_WG) s += exp(x[c] - m);
    float lse = m + log(row_sum(s, red));
    int t = targets[row_offset + row];
    if (lid == 0) losses[row_offset + row] = t >= 0 ? lse - x[t] : 0.0f;
    barrier(CLK_GLOBAL_MEM_FENCE);  // x[t] is read before it is overwritten
    for (int c = lid; c < V; c += ROW_WG) {
        float g = t >= 0 ? (exp(x[c] - lse) - (c == t ? 1.0f : 0.0f)) * inv_count : 0.0f;
        x[c] = g;
    }
}
