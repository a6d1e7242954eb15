#!/usr/bin/env python3
"""Issue 16, item 1: the LoRA write-up's LoraConfig, verbatim, trains with lora-gpu and PEFT loads
the adapter. For the YAML and the JSON form of

    LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, bias="none",
               target_modules=['up_proj', 'gate_proj', 'q_proj', 'o_proj', 'down_proj', 'v_proj', 'k_proj'],
               task_type=TaskType.CAUSAL_LM, inference_mode=False)

runs `lora-gpu train --config FILE` (10 steps on a fixture Llama made by transformers), loads the
adapter with PEFT (PeftModel.from_pretrained), checks PEFT's config and the trained B matrices, and
compares PEFT's logits with those of `lora-gpu merge`'s checkpoint loaded in transformers.

    /opt/lora-ref-venv/bin/python scripts/check_writeup_config.py [.build/debug/lora-gpu]
"""
import json
import os
import subprocess
import sys
import tempfile

import torch
from peft import PeftModel, TaskType
from transformers import AutoModelForCausalLM

binary = sys.argv[1] if len(sys.argv) > 1 else ".build/debug/lora-gpu"
model_dir = "Tests/Fixtures/reference/llama_gqa_untied/model"
data = "Tests/Fixtures/trainer/train.jsonl"
targets = ['up_proj', 'gate_proj', 'q_proj', 'o_proj', 'down_proj', 'v_proj', 'k_proj']
forms = {
    "writeup.yaml": "r: 16\nlora_alpha: 32\nlora_dropout: 0.05\nbias: \"none\"\n"
                    f"target_modules: {targets}\ntask_type: TaskType.CAUSAL_LM\ninference_mode: False\n",
    "writeup.json": json.dumps({"r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "bias": "none", "target_modules": targets,
                                "task_type": "CAUSAL_LM", "inference_mode": False}),
}
env = dict(os.environ, LORA_GPU_AUTOTUNE="0")
worst = 0.0
with tempfile.TemporaryDirectory() as tmp:
    for name, text in forms.items():
        cfg = os.path.join(tmp, name)
        open(cfg, "w").write(text)
        out = os.path.join(tmp, name + ".out")
        subprocess.run([binary, "train", "--config", cfg, "--model", model_dir, "--data", data, "--output-dir", out,
                        "--max-steps", "10", "--learning-rate", "5e-2", "--per-device-train-batch-size", "2",
                        "--logging-steps", "5", "--device", "cpu"], check=True, env=env, stdout=subprocess.DEVNULL)
        base = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32)
        peft_model = PeftModel.from_pretrained(base, out).eval()
        c = peft_model.peft_config["default"]
        assert (c.r, c.lora_alpha, c.lora_dropout, c.bias) == (16, 32, 0.05, "none"), c
        assert set(c.target_modules) == set(targets), c.target_modules
        assert c.task_type == TaskType.CAUSAL_LM, c.task_type
        n_b = sum(1 for k, v in peft_model.named_parameters() if "lora_B" in k and v.abs().max() > 0)
        merged = os.path.join(tmp, name + ".merged")
        subprocess.run([binary, "merge", "--model", model_dir, "--adapter", out, "--output", merged], check=True,
                       env=env, stdout=subprocess.DEVNULL)
        m = AutoModelForCausalLM.from_pretrained(merged, torch_dtype=torch.float32).eval()
        ids = torch.tensor([[1, 5, 9, 13, 2, 40, 7, 22, 3, 11]])
        with torch.no_grad():
            a, b = peft_model(input_ids=ids).logits, m(input_ids=ids).logits
        err = ((a - b).norm() / a.norm()).item()
        worst = max(worst, err)
        print(f"{name}: PEFT loads it (r {c.r}, alpha {c.lora_alpha}, dropout {c.lora_dropout}, {len(c.target_modules)} "
              f"target modules, {c.task_type}); {n_b} trained lora_B matrices non-zero; PeftModel vs lora-gpu merge "
              f"logits: relative error {err:.2e}")
print("OK" if worst < 1e-5 else "MISMATCH")
sys.exit(0 if worst < 1e-5 else 1)
