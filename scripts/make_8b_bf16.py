#!/usr/bin/env python3
"""Make a Llama-3-8B-shaped Hugging Face checkpoint with random BF16 weights (issue 18's NF4 route of the scale proof).

The same shape as make_8b_q4_0.py (hidden 4096, 32 layers, intermediate 14336, 32 query heads over 8 KV heads,
vocabulary 128256, untied output), each matrix N(0, 0.02) in bfloat16, norms ones, written as transformers writes a
sharded checkpoint: config.json, model-0000K-of-0000N.safetensors (4 layers a shard) and
model.safetensors.index.json. No tokenizer: `lora-gpu train` reads pre-tokenized rows. About 16 GB.
`scripts/check-8b-nf4.sh` trains it with `--quantize nf4`.

usage: make_8b_bf16.py OUT_DIR [--layers N]   (run with /opt/lora-ref-venv/bin/python: torch and safetensors)
"""
import argparse
import json
import os

import torch
from safetensors.torch import save_file

H, I, NH, NKV, V = 4096, 14336, 32, 8, 128256
HD = H // NH


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--layers", type=int, default=32)
    a = ap.parse_args()
    L = a.layers
    os.makedirs(a.out, exist_ok=True)
    gen = torch.Generator().manual_seed(8)

    def matrix(rows, cols):
        return (torch.randn(rows, cols, generator=gen, dtype=torch.float32) * 0.02).to(torch.bfloat16)

    groups = [[("model.embed_tokens.weight", (V, H))]]
    for l0 in range(0, L, 4):
        g = []
        for l in range(l0, min(l0 + 4, L)):
            p = f"model.layers.{l}."
            g += [(p + "input_layernorm.weight", (H,)), (p + "post_attention_layernorm.weight", (H,)),
                  (p + "self_attn.q_proj.weight", (NH * HD, H)), (p + "self_attn.k_proj.weight", (NKV * HD, H)),
                  (p + "self_attn.v_proj.weight", (NKV * HD, H)), (p + "self_attn.o_proj.weight", (H, NH * HD)),
                  (p + "mlp.gate_proj.weight", (I, H)), (p + "mlp.up_proj.weight", (I, H)), (p + "mlp.down_proj.weight", (H, I))]
        groups.append(g)
    groups.append([("model.norm.weight", (H,)), ("lm_head.weight", (V, H))])
    n = len(groups)
    weight_map, total = {}, 0
    for k, g in enumerate(groups):
        name = f"model-{k + 1:05d}-of-{n:05d}.safetensors"
        tensors = {t: (torch.ones(s, dtype=torch.bfloat16) if len(s) == 1 else matrix(*s)) for t, s in g}
        save_file(tensors, os.path.join(a.out, name), metadata={"format": "pt"})
        for t, x in tensors.items():
            weight_map[t] = name
            total += x.numel() * 2
        print(name, len(tensors), "tensors", flush=True)
        del tensors
    with open(os.path.join(a.out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": H, "intermediate_size": I,
        "num_hidden_layers": L, "num_attention_heads": NH, "num_key_value_heads": NKV, "head_dim": HD,
        "vocab_size": V, "max_position_embeddings": 8192, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
        "hidden_act": "silu", "tie_word_embeddings": False, "attention_bias": False, "mlp_bias": False,
        "bos_token_id": 128000, "eos_token_id": 128001, "torch_dtype": "bfloat16",
    }
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)


if __name__ == "__main__":
    main()
