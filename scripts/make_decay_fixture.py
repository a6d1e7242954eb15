#!/usr/bin/env python3
"""Which trainable tensors HF Trainer decays, from transformers itself.

For each reference fixture (tiny model + PEFT adapter config under
Tests/Fixtures/reference/*), wraps the model with PEFT as the fixture's
adapter_config.json says, asks Trainer.get_decay_parameter_names, and records
for every trainable parameter its saved (adapter_model.safetensors) key and
whether it decays.

Run: /opt/lora-ref-venv/bin/python scripts/make_decay_fixture.py
Writes Tests/Fixtures/decay/decay.json.
"""
import json
import os
import tempfile

import torch
import transformers
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

ROOT = os.path.join(os.path.dirname(__file__), "..", "Tests", "Fixtures")
CASES = ["llama_bias_all", "llama_modules_to_save", "mistral_embed_lm_head", "qwen2_bias_lora_only"]


def saved_key(name):
    # PEFT drops the adapter name ("default") and, for modules_to_save, the wrapper in saved keys.
    return name.replace(".modules_to_save.default.", ".").replace(".default.", ".").replace(".default", "")


def main():
    out = {"transformers_version": transformers.__version__, "cases": {}}
    for case in CASES:
        d = os.path.join(ROOT, "reference", case)
        model = AutoModelForCausalLM.from_pretrained(os.path.join(d, "model"), dtype=torch.float32)
        cfg = LoraConfig.from_pretrained(os.path.join(d, "adapter_initial"))
        cfg.inference_mode = False
        peft_model = get_peft_model(model, cfg)
        with tempfile.TemporaryDirectory() as tmp:
            trainer = Trainer(model=peft_model, args=TrainingArguments(output_dir=tmp, report_to=[]))
            decay = set(trainer.get_decay_parameter_names(peft_model))
        rows = {}
        for name, p in peft_model.named_parameters():
            if p.requires_grad:
                rows[saved_key(name)] = name in decay
        out["cases"][case] = rows
        print(case, sum(rows.values()), "decayed of", len(rows))
    path = os.path.join(ROOT, "decay", "decay.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)
        f.write("\n")
    print("wrote", path)


if __name__ == "__main__":
    main()
