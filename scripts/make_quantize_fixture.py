#!/usr/bin/env python3
"""Make Tests/Fixtures/quantize/reference.safetensors: what the real quantizers make of a few fp32 matrices.

Run with /opt/lora-ref-venv/bin/python (numpy, gguf, torch, bitsandbytes).

For each matrix `m<i>` (F32, rows × cols, cols a multiple of 64), with edge cases planted: an all-zero block,
a block whose largest magnitude is negative, values that land exactly on a rounding tie, tiny and huge blocks:
  m<i>            the fp32 values
  m<i>.q8_0       gguf-py's quantize(..., Q8_0): ggml blocks (U8, rows × cols/32 × 34 bytes)
  m<i>.q4_0       gguf-py's quantize(..., Q4_0): (rows × cols/32 × 18 bytes)
  m<i>.nf4        bitsandbytes' quantize_4bit(blocksize=64, quant_type="nf4") packed bytes (U8, first element in the
                  high nibble)
  m<i>.nf4.absmax its absmax per block of 64 (F32)
  m<i>.nf4.dq     bitsandbytes' dequantize_4bit of them (F32)
and `nf4.code`, bitsandbytes' 16 NF4 code values (F32).
"""
import os

import numpy as np
import torch
import gguf
from gguf import GGMLQuantizationType as Q
import bitsandbytes.functional as BF
from bitsandbytes.backends.utils import _get_4bit_code
from safetensors.numpy import save_file

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "quantize")


def matrices():
    rng = np.random.default_rng(20261207)
    out = []
    for rows, cols in [(3, 64), (17, 128), (5, 192)]:
        m = rng.standard_normal((rows, cols)).astype(np.float32)
        out.append(m)
    m = out[1]
    m[0, :64] = 0                                   # an all-zero block (d = 0: q = 0, not NaN)
    m[1, :32] = rng.uniform(-0.5, 0.5, 32)
    m[1, 7] = -3.0                                  # the largest magnitude negative (Q4_0's signed max)
    m[2, :32] = np.arange(-16, 16, dtype=np.float32) * (1 / 8)   # x·id on exact .5 ties for Q8_0's roundf
    m[3, :64] *= 1e-6                               # tiny
    m[4, :64] *= 1e4                                # huge
    m[5, :64] = np.float32(0.25)                    # constant block (every value on the absmax)
    return out


def main():
    os.makedirs(ROOT, exist_ok=True)
    tensors = {"nf4.code": _get_4bit_code("nf4", torch.device("cpu")).float().numpy()}
    for i, m in enumerate(matrices()):
        name = f"m{i}"
        tensors[name] = m
        tensors[name + ".q8_0"] = gguf.quants.quantize(m, Q.Q8_0).reshape(-1)
        tensors[name + ".q4_0"] = gguf.quants.quantize(m, Q.Q4_0).reshape(-1)
        packed, state = BF.quantize_4bit(torch.from_numpy(m), blocksize=64, quant_type="nf4")
        tensors[name + ".nf4"] = packed.reshape(-1).numpy().astype(np.uint8)
        tensors[name + ".nf4.absmax"] = state.absmax.float().numpy()
        tensors[name + ".nf4.dq"] = BF.dequantize_4bit(packed, state).float().numpy()
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, os.path.join(ROOT, "reference.safetensors"))
    print("wrote", os.path.join(ROOT, "reference.safetensors"), "with", len(tensors), "tensors")


if __name__ == "__main__":
    main()
