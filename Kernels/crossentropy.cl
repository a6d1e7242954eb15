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
    int row = get_group_id(0);  // global = R·ROW_WG exactly: no guard (see common.cl)
    __global float* x = logits + (size_t)row * V;
    int t = targets[row_offset + row];
    float xt = t >= 0 ? x[t] : 0.0f;
#if ROW_WG == 1
    // One work-item sweeps the row sixteen lanes at a time (pocl).
    int v16 = V / 16 * 16;
    float16 mv = (float16)(-INFINITY);
    for (int c = 0; c < v16; c += 16) mv = fmax(mv, vload16(0, x + c));
    float8 m8 = fmax(mv.lo, mv.hi); float4 m4 = fmax(m8.lo, m8.hi); float2 m2 = fmax(m4.lo, m4.hi);
    float m = fmax(m2.x, m2.y);
    for (int c = v16; c < V; c++) m = fmax(m, x[c]);
    float16 sv = (float16)(0.0f);
    for (int c = 0; c < v16; c += 16) sv += exp(vload16(0, x + c) - m);
    float8 s8 = sv.lo + sv.hi; float4 s4 = s8.lo + s8.hi; float2 s2 = s4.lo + s4.hi;
    float s = s2.x + s2.y;
    for (int c = v16; c < V; c++) s += exp(x[c] - m);
    float lse = m + log(s);
    losses[row_offset + row] = t >= 0 ? lse - xt : 0.0f;
    float scale = t >= 0 ? inv_count : 0.0f;
    for (int c = 0; c < v16; c += 16) vstore16(exp(vload16(0, x + c) - lse) * scale, 0, x + c);
    for (int c = v16; c < V; c++) x[c] = exp(x[c] - lse) * scale;
    if (t >= 0) x[t] = (exp(xt - lse) - 1.0f) * inv_count;
#else
    int lid = get_local_id(0);
    float m = -INFINITY;
    for (int c = lid; c < V; c += ROW_WG) m = fmax(m, x[c]);
    m = row_max(m, red);
    float s = 0.0f;
    for (int c = lid; c < V; c += ROW_WG) s += exp(x[c] - m);
    float lse = m + log(row_sum(s, red));
    if (lid == 0) losses[row_offset + row] = t >= 0 ? lse - xt : 0.0f;
    barrier(CLK_GLOBAL_MEM_FENCE);  // every lane has read x[t] before it is overwritten
    for (int c = lid; c < V; c += ROW_WG) {
        float g = t >= 0 ? (exp(x[c] - lse) - (c == t ? 1.0f : 0.0f)) * inv_count : 0.0f;
        x[c] = g;
    }
#endif
}

// Losses with real-valued targets, for a sequence classifier's pooled logits
// (transformers' ForSequenceClassificationLoss): on a chunk of R rows of C
// logits, y (counted rows × C) the targets of the counted rows, row-major.
//   mode 0 (regression, MSELoss):               l = (x − y)²,                         dl/dx = 2(x − y)
//   mode 1 (multi-label, BCEWithLogitsLoss):    l = max(x, 0) − x·y + log(1 + e^−|x|),  dl/dx = σ(x) − y
//                                               (σ(x) − y formed without cancellation on either side of 0)
// Both are means over every element of the counted rows, so losses[row_offset + r]
// = Σ_c l / C (the caller divides Σ losses by the count) and the logits are
// overwritten with dl/dx · inv_count / C. One work-item per row. global (R)
__kernel void real_target_loss(int R, int C, int row_offset, int mode, __global const float* y, float inv_count,
                               __global float* logits, __global float* losses) {
    int row = get_global_id(0);
    __global float* x = logits + (size_t)row * C;
    __global const float* t = y + (size_t)(row_offset + row) * C;
    float scale = inv_count / (float)C, sum = 0.0f;
    for (int c = 0; c < C; c++) {
        float xv = x[c], yv = t[c], l, g;
        if (mode == 0) {
            float d = xv - yv;
            l = d * d;
            g = 2.0f * d;
        } else {
            // σ(x) − y without cancellation: for x ≥ 0 as (1 − y) − (1 − σ(x)), 1 − σ(x) = e^−x/(1 + e^−x)
            // computed directly (σ(x) − 1 in float32 would keep only a few bits once σ(x) nears 1).
            float e = exp(-fabs(xv));
            l = fmax(xv, 0.0f) - xv * yv + log1p(e);
            g = xv >= 0.0f ? (1.0f - yv) - e / (1.0f + e) : e / (1.0f + e) - yv;
        }
        sum += l;
        x[c] = g * scale;
    }
    losses[row_offset + row] = sum / (float)C;
}
