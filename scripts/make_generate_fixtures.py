#!/usr/bin/env python3
"""Greedy generation fixtures made with the real transformers + PEFT `generate`.

For a few of the tiny reference models (Tests/Fixtures/reference/<case>/model)
with their trained PEFT adapter (adapter_final): transformers' greedy
`generate` (do_sample=False) from a few prompt id sequences, once without any
EOS (max_new_tokens tokens) and once with a chosen EOS id (the token greedy
decoding emits at step 5 of the first prompt, so generation must stop there);
for the first prompt also the raw logits of every step (output_logits=True),
and the same generation after `merge_and_unload()` (W + s·B·A merged).
Also transformers' own sampling warpers (temperature → top-k → top-p, in the
order `generate` applies them) on a few logit rows, some with ties.

Run from the repository root (after scripts/make_reference.py):
    /opt/lora-ref-venv/bin/python scripts/make_generate_fixtures.py Tests/Fixtures/generate
"""
import json
import os
import sys

import peft
import torch
import transformers
from peft import PeftModel
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

REF = "Tests/Fixtures/reference"
OUT = sys.argv[1] if len(sys.argv) > 1 else "Tests/Fixtures/generate"
CASES = ["llama_gqa_untied", "qwen2_bias_lora_only", "mistral_embed_lm_head", "llama_tied_rslora_regex"]
MAX_NEW = 20
EOS_STEP = 5


def prompts(vocab):
    g = torch.Generator().manual_seed(7)
    # A one-token prompt, a short one, and one longer than 16 (a second key block).
    return [[3], torch.randint(0, vocab, (5,), generator=g).tolist(), torch.randint(0, vocab, (23,), generator=g).tolist()]


def load(case):
    model = AutoModelForCausalLM.from_pretrained(os.path.join(REF, case, "model"), torch_dtype=torch.float32)
    pm = PeftModel.from_pretrained(model, os.path.join(REF, case, "adapter_final"))
    pm.eval()
    return pm


def greedy(pm, ids, eos, logits=False):
    # No EOS at all (eos=None) or exactly the given one; no pad warnings.
    gc = transformers.GenerationConfig(do_sample=False, max_new_tokens=MAX_NEW, eos_token_id=eos,
                                       pad_token_id=0, bos_token_id=None)
    with torch.no_grad():
        out = pm.generate(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                          generation_config=gc, return_dict_in_generate=True, output_logits=logits)
    new = out.sequences[0, len(ids):].tolist()
    return new, (torch.cat(out.logits, 0).float().contiguous() if logits else None)


def make(case):
    torch.manual_seed(0)
    pm = load(case)
    vocab = pm.config.vocab_size
    ps = prompts(vocab)
    runs = []
    first_logits = None
    for i, p in enumerate(ps):
        new, lg = greedy(pm, p, None, logits=(i == 0))
        if i == 0:
            first_logits = lg
        runs.append(dict(prompt=p, eos=None, expected=new))
    eos = runs[0]["expected"][EOS_STEP]
    stopped, _ = greedy(pm, ps[0], eos)
    runs.append(dict(prompt=ps[0], eos=eos, expected=stopped))
    merged = pm.merge_and_unload()
    merged_new, _ = greedy(merged, ps[0], None)
    root = os.path.join(OUT, case)
    os.makedirs(root, exist_ok=True)
    save_file({"logits": first_logits}, os.path.join(root, "logits_first_prompt.safetensors"))
    ref = dict(versions=dict(torch=torch.__version__, transformers=transformers.__version__, peft=peft.__version__),
               model=os.path.join(REF, case, "model"), adapter=os.path.join(REF, case, "adapter_final"),
               max_new_tokens=MAX_NEW, runs=runs, merged_expected=merged_new)
    with open(os.path.join(root, "generate.json"), "w") as f:
        json.dump(ref, f, indent=1)
    print(case, [r["expected"] for r in runs], "merged", merged_new)


# (temperature, top_k, top_p); None leaves the warper out, as generate does for 1.0 / 0 / 1.0.
WARPS = [(0.7, None, None), (1.0, 5, None), (1.0, None, 0.9), (0.8, 10, 0.95), (1.3, 3, 0.5), (1.0, 1, None),
         (0.5, None, 0.3), (1.0, 67, 0.999)]


def make_warpers():
    from transformers.generation.logits_process import (LogitsProcessorList, TemperatureLogitsWarper,
                                                         TopKLogitsWarper, TopPLogitsWarper)
    g = torch.Generator().manual_seed(11)
    rows = torch.randn(4, 67, generator=g) * 3
    rows[1, 10:14] = rows[1].max()           # ties at the top
    rows[2, ::7] = 0.25                      # ties in the middle
    out = {"logits": rows.contiguous()}
    combos = []
    for i, (t, k, p) in enumerate(WARPS):
        procs = LogitsProcessorList()
        if t is not None and t != 1.0:
            procs.append(TemperatureLogitsWarper(t))
        if k is not None:
            procs.append(TopKLogitsWarper(k))
        if p is not None:
            procs.append(TopPLogitsWarper(p))
        out[f"warped_{i}"] = procs(None, rows.clone()).contiguous()
        combos.append(dict(temperature=t, top_k=k, top_p=p))
    os.makedirs(OUT, exist_ok=True)
    save_file(out, os.path.join(OUT, "warpers.safetensors"))
    with open(os.path.join(OUT, "warpers.json"), "w") as f:
        json.dump(dict(transformers=transformers.__version__, combos=combos), f, indent=1)


if __name__ == "__main__":
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    for c in CASES:
        make(c)
    make_warpers()
