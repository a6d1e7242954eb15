#!/usr/bin/env python3
"""Loads adapters written by lora-gpu with the real PEFT and compares them with
PEFT's own after the same training (the parity fixtures).

    LORA_GPU_KEEP_ADAPTERS=/tmp/ours swift test --filter AdapterIOTests/testSavedAdapterMatchesPEFTsLayout
    /opt/lora-ref-venv/bin/python scripts/check_peft_load.py /tmp/ours
"""
import json
import os
import sys

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

ours_root = sys.argv[1]
ref_root = sys.argv[2] if len(sys.argv) > 2 else "Tests/Fixtures/reference"
worst = 0.0
for name in sorted(os.listdir(ours_root)):
    ref = json.load(open(os.path.join(ref_root, name, "reference.json")))
    ids = torch.tensor(ref["input_ids"])
    logits = {}
    for which, adapter in [("lora-gpu", os.path.join(ours_root, name)),
                           ("peft", os.path.join(ref_root, name, "adapter_final"))]:
        base = AutoModelForCausalLM.from_pretrained(os.path.join(ref_root, name, "model"), torch_dtype=torch.float32)
        model = PeftModel.from_pretrained(base, adapter).eval()
        with torch.no_grad():
            logits[which] = model(input_ids=ids).logits
    err = ((logits["lora-gpu"] - logits["peft"]).norm() / logits["peft"].norm()).item()
    worst = max(worst, err)
    print(f"{name}: PEFT loaded the lora-gpu adapter; logits vs PEFT-trained adapter: relative error {err:.2e}")
print(f"worst {worst:.2e}")
sys.exit(0 if worst < 1e-4 else 1)
