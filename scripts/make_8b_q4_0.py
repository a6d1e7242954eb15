#!/usr/bin/env python3
"""Make a Llama-3-8B-shaped GGUF with random weights quantized to Q4_0 by gguf-py (issue 18's scale proof).

Hidden 4096, 32 layers, intermediate 14336, 32 query heads over 8 KV heads, vocabulary 128256, untied output;
each matrix N(0, 0.02) quantized by gguf.quants.quantize(…, Q4_0) one tensor at a time (the whole model never sits
in memory as fp32), norms F32. A byte-level BPE tokenizer (the test fixtures' tables, padded with unused tokens
to the vocabulary) so `lora-gpu train` can read pre-tokenized rows. About 4.6 GB.

usage: make_8b_q4_0.py OUT.gguf [--layers N]   (run with /opt/lora-ref-venv/bin/python; scripts/check-8b-q4_0.sh runs it)
"""
import argparse

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q

import make_gguf_fixtures as mg

H, I, NH, NKV, V = 4096, 14336, 32, 8, 128256
HD = H // NH


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--layers", type=int, default=32)
    a = ap.parse_args()
    L = a.layers
    rng = np.random.default_rng(8)
    w = gguf.GGUFWriter(a.out, "llama")
    w.add_name("llama-3-8b-shaped-random-q4_0")
    w.add_context_length(8192)
    w.add_embedding_length(H)
    w.add_block_count(L)
    w.add_feed_forward_length(I)
    w.add_head_count(NH)
    w.add_head_count_kv(NKV)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(500000.0)
    w.add_rope_dimension_count(HD)
    w.add_vocab_size(V)
    w.add_file_type(2)  # MOSTLY_Q4_0
    tokens, merges, types = mg.bpe_tokenizer_tables()
    tokens = list(tokens) + [f"<|unused_{i}|>" for i in range(V - len(tokens))]
    types = list(types) + [int(gguf.TokenType.UNUSED)] * (V - len(types))
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt2")
    w.add_token_list(tokens)
    w.add_token_types([int(t) for t in types])
    w.add_token_merges(merges)
    w.add_uint32("tokenizer.ggml.bos_token_id", tokens.index("<|im_start|>"))
    w.add_uint32("tokenizer.ggml.eos_token_id", tokens.index("<|im_end|>"))
    w.add_chat_template(mg.CHAT_TEMPLATE)

    shapes = [("token_embd.weight", (V, H)), ("output.weight", (V, H)), ("output_norm.weight", (H,))]
    for l in range(L):
        p = f"blk.{l}."
        shapes += [(p + "attn_norm.weight", (H,)), (p + "ffn_norm.weight", (H,)),
                   (p + "attn_q.weight", (NH * HD, H)), (p + "attn_k.weight", (NKV * HD, H)),
                   (p + "attn_v.weight", (NKV * HD, H)), (p + "attn_output.weight", (H, NH * HD)),
                   (p + "ffn_gate.weight", (I, H)), (p + "ffn_up.weight", (I, H)), (p + "ffn_down.weight", (H, I))]

    def data(shape):
        if len(shape) == 1:
            return np.ones(shape, dtype=np.float32)
        out = []
        for r0 in range(0, shape[0], 4096):   # a block of rows at a time: bounded fp32 memory
            x = rng.standard_normal((min(4096, shape[0] - r0), shape[1]), dtype=np.float32) * np.float32(0.02)
            out.append(gguf.quants.quantize(x, Q.Q4_0))
        return np.concatenate(out)

    for name, shape in shapes:
        qt = Q.F32 if len(shape) == 1 else Q.Q4_0
        nbytes = int(np.prod(shape)) * 4 if qt == Q.F32 else int(np.prod(shape)) // 32 * 18
        w.add_tensor_info(name, shape if qt == Q.F32 else (shape[0], shape[1] // 32 * 18), np.dtype(np.float32 if qt == Q.F32 else np.uint8),
                          nbytes, raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for name, shape in shapes:
        w.write_tensor_data(data(shape))
        print(name, shape, flush=True)
    w.close()


if __name__ == "__main__":
    main()
