// convert.cl — checkpoint dtypes to fp32 on the device.
// vload_half is core OpenCL (no cl_khr_fp16 needed); bf16 is the top half of an fp32.
__kernel void f16_to_f32(int n, __global const half* src, __global float* dst) {
    int i = get_global_id(0);
    if (i < n) dst[i] = vload_half(i, src);
}

__kernel void bf16_to_f32(int n, __global const ushort* src, __global float* dst) {
    int i = get_global_id(0);
    if (i < n) dst[i] = as_float((uint)src[i] << 16);
}
