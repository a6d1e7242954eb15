#!/usr/bin/env python3
"""Gemma 3 activations past fp16's range (transformers#39972), and what transformers makes of them.

Takes the gemma3_sliding fixture model (Tests/Fixtures/reference/gemma3_sliding/model), multiplies embed_tokens by
2^16 (exact in bf16; tied, so lm_head too) and saves it as Tests/Fixtures/reference/gemma3_sliding/large_activations/
model. The residual stream then holds values past 65504, fp16's largest: transformers' fp32 forward stays finite,
its fp16 forward does not. Writes beside the model:
  expected.safetensors  the fp32 logits for the fixture's first input row
  expected.json         the input ids, the largest |residual| per layer boundary in fp32, and whether the fp16
                        forward's logits were all finite (they are not: that is what this fixture is for)

    /opt/lora-ref-venv/bin/python scripts/make_gemma3_fp16_fixture.py
"""
import json
import os

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
CASE = os.path.join(ROOT, "Tests", "Fixtures", "reference", "gemma3_sliding")
OUT = os.path.join(CASE, "large_activations")
FACTOR = 2.0 ** 16

torch.manual_seed(0)
model = AutoModelForCausalLM.from_pretrained(os.path.join(CASE, "model"), dtype=torch.bfloat16)
with torch.no_grad():
    model.model.embed_tokens.weight.mul_(FACTOR)
os.makedirs(OUT, exist_ok=True)
model.save_pretrained(os.path.join(OUT, "model"))

ids = torch.tensor([json.load(open(os.path.join(CASE, "reference.json")))["input_ids"][0]])
m32 = AutoModelForCausalLM.from_pretrained(os.path.join(OUT, "model"), dtype=torch.float32).eval()
with torch.no_grad():
    out = m32(input_ids=ids, output_hidden_states=True)
# hidden_states: the embedding output, then each layer's output (the last one after the final norm).
residual_max = [h.abs().max().item() for h in out.hidden_states[:-1]]
m16 = AutoModelForCausalLM.from_pretrained(os.path.join(OUT, "model"), dtype=torch.float16).eval()
with torch.no_grad():
    out16 = m16(input_ids=ids, output_hidden_states=True)
fp16_finite = bool(torch.isfinite(out16.logits).all().item())
fp16_hidden_finite = [bool(torch.isfinite(h).all().item()) for h in out16.hidden_states]
save_file({"logits": out.logits[0].float().contiguous()}, os.path.join(OUT, "expected.safetensors"))
with open(os.path.join(OUT, "expected.json"), "w") as f:
    json.dump(dict(input_ids=ids[0].tolist(), factor=FACTOR, residual_max_fp32=residual_max, fp16_logits_finite=fp16_finite,
                   fp16_hidden_states_finite=fp16_hidden_finite,
                   versions=dict(torch=torch.__version__)), f, indent=1)
print("residual max", residual_max, "fp16 logits finite:", fp16_finite, fp16_hidden_finite)
