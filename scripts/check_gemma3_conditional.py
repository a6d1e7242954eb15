#!/usr/bin/env python3
"""Gemma3ForConditionalGeneration end to end: lora-gpu trains its language model, PEFT loads the adapter on that class,
and transformers loads `lora-gpu merge`'s output.

Trains 3 steps (r 8 on q_proj, down_proj and embed_tokens, pre-tokenized data) on the fixture
Tests/Fixtures/reference/gemma3_sliding/conditional_model (a tiny SigLIP tower around gemma3_sliding's text weights),
merges it, then checks with transformers + PEFT: PeftModel.from_pretrained(Gemma3ForConditionalGeneration, adapter)
finds every language-model LoRA tensor under the names lora-gpu wrote (model.language_model.…), and
AutoModelForCausalLM loads the merged directory as Gemma3ForCausalLM with the unmerged PeftModel's text-only logits.
Exits non-zero on a mismatch (relative error > 1e-5).

    /opt/lora-ref-venv/bin/python scripts/check_gemma3_conditional.py [LORA_GPU_BINARY]
"""
import json
import os
import random
import subprocess
import sys
import tempfile

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, Gemma3ForConditionalGeneration

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
BINARY = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, ".build", "debug", "lora-gpu")
BASE = os.path.join(ROOT, "Tests", "Fixtures", "reference", "gemma3_sliding", "conditional_model")

with tempfile.TemporaryDirectory() as tmp:
    random.seed(3)
    with open(os.path.join(tmp, "d.jsonl"), "w") as f:
        for _ in range(6):
            ids = [random.randrange(3, 67) for _ in range(random.randrange(6, 14))]
            f.write(json.dumps({"input_ids": ids, "labels": ids}) + "\n")
    out, merged = os.path.join(tmp, "out"), os.path.join(tmp, "merged")
    subprocess.run([BINARY, "train", "--model", BASE, "--data", os.path.join(tmp, "d.jsonl"), "--output-dir", out,
                    "--max-steps", "3", "--learning-rate", "0.05", "--target-modules", "q_proj,down_proj,embed_tokens",
                    "--lora-dropout", "0"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([BINARY, "merge", "--model", BASE, "--adapter", out, "--output", merged], check=True, stdout=subprocess.DEVNULL)
    ids = torch.tensor([[5, 17, 0, 42, 3, 9, 11, 30, 66, 1, 12, 40]])
    pm = PeftModel.from_pretrained(Gemma3ForConditionalGeneration.from_pretrained(BASE, dtype=torch.float32), out).eval()
    ours = json.load(open(os.path.join(out, "adapter_config.json")))
    text_lora = [n for n, _ in pm.named_parameters() if "lora" in n and "language_model" in n]
    with torch.no_grad():
        want = pm(input_ids=ids).logits[0]
        with pm.disable_adapter():
            base = pm(input_ids=ids).logits[0]
        m = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32).eval()
        got = m(input_ids=ids).logits[0]
    err = ((got - want).norm() / want.norm()).item()
    effect = ((want - base).norm() / base.norm()).item()
    print(f"adapter target_modules {ours['target_modules']}: PEFT found {len(text_lora)} language-model LoRA tensors")
    print(f"merged checkpoint loads as {type(m).__name__}; its logits vs the unmerged PeftModel on "
          f"Gemma3ForConditionalGeneration: relative error {err:.3g} (the adapter moves them by {effect:.3g})")
    sys.exit(0 if err <= 1e-5 and effect > 1e-3 and len(text_lora) == 2 * 5 else 1)
