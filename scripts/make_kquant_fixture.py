#!/usr/bin/env python3
"""Make Tests/Fixtures/gguf/llama_kquant.gguf: a tiny Llama (hidden 256 — one K-quant super-block per row —
intermediate 256, 4 heads of 64, 2 KV heads, 1 layer) whose matrices are ggml's K-quants, quantized by llama.cpp's
own ggml (`ggml_quantize_chunk`, through ctypes): Q4_K q/k/gate, Q5_K v/up, Q6_K o/down and the embedding, Q8_0
output. gguf-py has no K-quant quantizer; its dequantizer (what transformers loads a GGUF with) reads them.
`llama_kquant.expected.safetensors` holds transformers' logits for expected.json's input_ids.

Run with /opt/lora-ref-venv/bin/python; LIBGGML names libggml-base.so of a llama.cpp build (PyPI's llama-cpp-python
sdist, vendor/llama.cpp, built with cmake), default /tmp/llamacpp/build/bin/libggml-base.so.
"""
import ctypes
import json
import os
import shutil
import tempfile

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q
from safetensors.numpy import save_file

import make_gguf_fixtures as mg

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "gguf")
LIB = os.environ.get("LIBGGML", "/tmp/llamacpp/build/bin/libggml-base.so")


def ggml_quantize(arr, qtype):
    lib = ctypes.CDLL(LIB)
    lib.ggml_quantize_init(ctypes.c_int(int(qtype)))
    lib.ggml_row_size.restype = ctypes.c_size_t
    rows, cols = arr.shape
    row_bytes = lib.ggml_row_size(ctypes.c_int(int(qtype)), ctypes.c_int64(cols))
    out = np.zeros(rows * row_bytes, dtype=np.uint8)
    src = np.ascontiguousarray(arr, dtype=np.float32)
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    n = lib.ggml_quantize_chunk(ctypes.c_int(int(qtype)), src.ctypes.data_as(ctypes.c_void_p), out.ctypes.data_as(ctypes.c_void_p),
                                ctypes.c_int64(0), ctypes.c_int64(rows), ctypes.c_int64(cols), ctypes.c_void_p(0))
    assert n == out.size, (n, out.size)
    return out.reshape(rows, row_bytes)


def main():
    mg.H, mg.I, mg.NH, mg.NKV, mg.HD, mg.L = 256, 256, 4, 2, 64, 1
    qtypes = {"q_proj": Q.Q4_K, "k_proj": Q.Q4_K, "gate_proj": Q.Q4_K, "v_proj": Q.Q5_K, "up_proj": Q.Q5_K,
              "o_proj": Q.Q6_K, "down_proj": Q.Q6_K}

    def qtype_for(hf, arr):
        if arr.ndim == 1:
            return Q.F32
        if hf == "model.embed_tokens.weight":
            return Q.Q6_K
        if hf == "lm_head.weight":
            return Q.Q8_0
        return qtypes[hf.split(".")[-2]]

    real_quantize = gguf.quants.quantize
    gguf.quants.quantize = lambda arr, qt: ggml_quantize(arr, qt) if qt in (Q.Q4_K, Q.Q5_K, Q.Q6_K) else real_quantize(arr, qt)
    tmp = tempfile.mkdtemp()
    bpe_tokens, merges, bpe_types = mg.bpe_tokenizer_tables()
    tk = {"kind": "gpt2", "pre": "gpt2", "tokens": bpe_tokens, "types": bpe_types, "merges": merges,
          "ids": {"bos_token_id": bpe_tokens.index("<|im_start|>"), "eos_token_id": bpe_tokens.index("<|im_end|>"),
                  "padding_token_id": bpe_tokens.index("<|endoftext|>")},
          "flags": {"add_bos_token": False}, "chat_template": mg.CHAT_TEMPLATE}
    weights = mg.hf_weights(len(bpe_tokens), 7)
    for k in list(weights):
        if weights[k].ndim == 2:
            weights[k] = weights[k] * np.float32(0.5)
    path = os.path.join(tmp, "llama_kquant.gguf")
    mg.write_model(path, weights, tk, qtype_for, False, "tiny-llama-kquant", "llama")
    with open(os.path.join(ROOT, "expected.json")) as f:
        input_ids = json.load(f)["input_ids"]
    from transformers import AutoModelForCausalLM
    import torch
    model = AutoModelForCausalLM.from_pretrained(tmp, gguf_file="llama_kquant.gguf", torch_dtype=torch.float32)
    with torch.no_grad():
        logits = model(torch.tensor(input_ids)).logits.float().numpy()
    shutil.copy(path, os.path.join(ROOT, "llama_kquant.gguf"))
    save_file({"logits": np.ascontiguousarray(logits)}, os.path.join(ROOT, "llama_kquant.expected.safetensors"))
    reader = gguf.GGUFReader(path)
    print("wrote llama_kquant.gguf:", sorted({(t.name.split(".")[-2], t.tensor_type.name) for t in reader.tensors}))


if __name__ == "__main__":
    main()
