// CBLAS from OpenBLAS (Debian: libopenblas-dev). Used as the reference in
// tests and benchmarks only — never as a fallback inside the trainer.
#ifndef LORA_GPU_CBLAS_SHIM_H
#define LORA_GPU_CBLAS_SHIM_H
#include <cblas.h>
#endif
