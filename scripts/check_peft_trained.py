#!/usr/bin/env python3
"""Trains a LoRA adapter with `lora-gpu train` (the built binary) on the ChatML fixture model and
loads it with the real PEFT: Tests/Fixtures/peft_trained/, checked by
Tests/LoraTrainTests/PEFTTrainedTests.swift (our logits with that adapter against PEFT's).

    swift build --build-tests        # or LORA_GPU=/path/to/lora-gpu
    /opt/lora-ref-venv/bin/python scripts/check_peft_trained.py

Base: Tests/Fixtures/generate/cli_chatml/model (scripts/make_generate_fixtures.py); data:
Tests/Fixtures/e2e/chat.jsonl (scripts/make_e2e_fixtures.py). Settings: lora_dropout 0, every
attention and MLP projection adapted, r 4, a few steps at a learning rate that moves B well off zero.

Writes
  * adapter/: adapter_config.json and adapter_model.safetensors exactly as lora-gpu wrote them;
  * logits.safetensors: "logits" [2, T, vocab] float32 of PeftModel.from_pretrained(base, adapter)
    in eval mode on the batch "input_ids" of peft_trained.json (two rows of the chat data, no padding);
  * peft_trained.json: input_ids, the settings, the library versions, and what this script checked:
      - every tensor of adapter_model.safetensors is in PEFT's state dict after loading, unchanged
        (and PEFT has no LoRA tensor the file lacks);
      - peft_vs_base: how far the adapter moves the logits (it must, or the check proves nothing);
      - merged_vs_peft: `lora-gpu merge` of the adapter loaded by plain transformers, against PEFT's
        logits (max abs difference, max abs difference / max |PEFT logit|, and ‖Δ‖/‖PEFT‖).
Exits 1 when a check fails.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import peft
import safetensors
import torch
import transformers
from peft import PeftModel, get_peft_model_state_dict
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
MODEL = os.path.join(ROOT, "Tests", "Fixtures", "generate", "cli_chatml", "model")
DATA = os.path.join(ROOT, "Tests", "Fixtures", "e2e", "chat.jsonl")
EXPECTED = os.path.join(ROOT, "Tests", "Fixtures", "e2e", "expected.json")
OUT = os.path.join(ROOT, "Tests", "Fixtures", "peft_trained")
BIN = os.environ.get("LORA_GPU", os.path.join(ROOT, ".build", "debug", "lora-gpu"))
SEQ = 24
SETTINGS = {"max_steps": 16, "per_device_train_batch_size": 2, "learning_rate": 3e-2, "r": 4, "lora_alpha": 8,
            "lora_dropout": 0, "seed": 5,
            "target_modules": "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"}


def lora_gpu(*args):
    r = subprocess.run([BIN, *args], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"lora-gpu {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r.stdout


def differences(a, b):
    d = (a - b).abs()
    return {"max_abs": d.max().item(), "max_abs_over_max_ref": (d.max() / b.abs().max()).item(),
            "relative_norm": ((a - b).norm() / b.norm()).item()}


def logits_of(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits.float()


def main():
    if not os.access(BIN, os.X_OK):
        sys.exit(f"{BIN} is not built: run `swift build --build-tests` (or set LORA_GPU)")
    ok = True
    tmp = tempfile.mkdtemp(prefix="peft-trained-")
    try:
        out = os.path.join(tmp, "out")
        args = ["train", "--model", MODEL, "--data", DATA, "--output-dir", out, "--logging-steps", "4",
                "--save-steps", "1000", "--device", "cpu"]
        for k, v in SETTINGS.items():
            args += ["--" + k.replace("_", "-"), str(v)]
        lora_gpu(*args)

        adapter = os.path.join(OUT, "adapter")
        shutil.rmtree(OUT, ignore_errors=True)
        os.makedirs(adapter)
        for f in ["adapter_config.json", "adapter_model.safetensors"]:
            shutil.copyfile(os.path.join(out, f), os.path.join(adapter, f))

        samples = json.load(open(EXPECTED))["samples"]
        ids = torch.tensor([samples[0]["input_ids"][:SEQ], samples[1]["input_ids"][:SEQ]])

        base = AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32).eval()
        base_logits = logits_of(base, ids)
        model = PeftModel.from_pretrained(base, adapter).eval()
        peft_logits = logits_of(model, ids)

        # Every tensor of the file is what PEFT holds after loading.
        theirs = {k: v for k, v in get_peft_model_state_dict(model).items()}
        file = load_file(os.path.join(adapter, "adapter_model.safetensors"))
        loaded = {"file_tensors": len(file), "peft_tensors": len(theirs),
                  "same_keys": sorted(file) == sorted(theirs),
                  "identical": all(k in theirs and torch.equal(theirs[k].float(), v.float()) for k, v in file.items())}
        lora_b = [v for k, v in file.items() if "lora_B" in k]
        loaded["lora_B_max_abs"] = max(v.abs().max().item() for v in lora_b)
        modules = sorted({k.split(".")[-3] for k in file if "lora_A" in k})
        loaded["adapted_modules"] = modules
        ok &= loaded["same_keys"] and loaded["identical"] and loaded["lora_B_max_abs"] > 1e-3
        ok &= {"gate_proj", "up_proj", "down_proj", "q_proj", "v_proj"} <= set(modules)

        moved = differences(peft_logits, base_logits)
        ok &= moved["max_abs_over_max_ref"] > 1e-2

        merged_dir = os.path.join(tmp, "merged")
        lora_gpu("merge", "--model", MODEL, "--adapter", adapter, "--output", merged_dir)
        merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32).eval()
        merged_vs_peft = differences(logits_of(merged, ids), peft_logits)
        ok &= merged_vs_peft["relative_norm"] <= 1e-5

        save_file({"logits": peft_logits.contiguous()}, os.path.join(OUT, "logits.safetensors"))
        os.chmod(os.path.join(OUT, "logits.safetensors"), 0o644)
        with open(os.path.join(OUT, "peft_trained.json"), "w") as f:
            json.dump({"base_model": "generate/cli_chatml/model", "data": "e2e/chat.jsonl", "settings": SETTINGS,
                       "input_ids": ids.tolist(),
                       "versions": {"peft": peft.__version__, "transformers": transformers.__version__,
                                    "torch": torch.__version__, "safetensors": safetensors.__version__},
                       "loaded": loaded, "peft_vs_base": moved, "merged_vs_peft": merged_vs_peft, "ok": bool(ok)},
                      f, indent=1)
            f.write("\n")
        print(json.dumps({"loaded": loaded, "peft_vs_base": moved, "merged_vs_peft": merged_vs_peft}, indent=1))
        print("ok" if ok else "FAILED")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
