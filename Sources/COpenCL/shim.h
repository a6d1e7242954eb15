// Thin shim over the Khronos OpenCL headers (Debian: opencl-headers,
// ocl-icd-opencl-dev). We target the 1.2 API, which every ICD implements.
#ifndef LORA_GPU_COPENCL_SHIM_H
#define LORA_GPU_COPENCL_SHIM_H
#define CL_TARGET_OPENCL_VERSION 120
#define CL_USE_DEPRECATED_OPENCL_1_2_APIS
#include <CL/cl.h>
#endif
