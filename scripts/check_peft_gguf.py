#!/usr/bin/env python3
"""Trains a LoRA adapter with `lora-gpu train` on a GGUF base and loads it with the real PEFT on the
same model's Hugging Face safetensors: Tests/Fixtures/peft_gguf/, checked by
Tests/LoraTrainTests/PEFTGGUFTests.swift (our logits with that adapter, from the GGUF file and from
the HF directory, against PEFT's).

    swift build --build-tests        # or LORA_GPU=/path/to/lora-gpu
    /opt/lora-ref-venv/bin/python scripts/check_peft_gguf.py

Base: the tiny Llama of scripts/make_gguf_fixtures.py (hidden 32, 4 heads, 2 KV heads, 2 layers,
untied), random weights (seed 11), byte-level BPE tokenizer. Written twice from the same fp32 arrays:
  * hf_model/: LlamaForCausalLM.save_pretrained (config.json, model.safetensors, fp32);
  * model.gguf: F32 GGUF by make_gguf_fixtures.write_model (q and k permuted the llama.cpp way).
Data: pre-tokenized JSONL (random ids, seed 11). Settings: lora_dropout 0, every attention and MLP
projection adapted, r 4, a few steps at a learning rate that moves B well off zero.

Writes
  * adapter/: adapter_config.json and adapter_model.safetensors exactly as lora-gpu wrote them;
  * logits.safetensors: "logits" [2, T, vocab] float32 of PeftModel.from_pretrained(HF model, adapter)
    in eval mode on the batch "input_ids" of peft_gguf.json (no padding);
  * data.jsonl: the training data;
  * peft_gguf.json: input_ids, the settings, the library versions, and what this script checked:
      - adapter_keys: every key of adapter_model.safetensors is a PEFT/HF name
        (base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight, …), none a GGUF name (blk.N.attn_q);
      - loaded: PEFT's state dict after loading holds exactly the file's tensors, unchanged;
      - gguf_vs_hf_base: transformers' own GGUF loader against the safetensors model (same base);
      - peft_vs_base: how far the adapter moves the logits (it must, or the check proves nothing);
      - peft_on_gguf_vs_peft: PEFT with the adapter on transformers' GGUF-loaded model against PEFT on the
        safetensors model.
Exits 1 when a check fails.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import peft
import safetensors
import torch
import transformers
from peft import PeftModel, get_peft_model_state_dict
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import make_gguf_fixtures as mg  # noqa: E402  (the tiny model's shapes, weights and GGUF writer)

OUT = os.path.join(ROOT, "Tests", "Fixtures", "peft_gguf")
BIN = os.environ.get("LORA_GPU", os.path.join(ROOT, ".build", "debug", "lora-gpu"))
SEED = 11
SEQ = 16
ROWS = 8
SETTINGS = {"max_steps": 12, "per_device_train_batch_size": 2, "learning_rate": 3e-2, "r": 4, "lora_alpha": 8,
            "lora_dropout": 0, "seed": 5,
            "target_modules": "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"}
KEY = re.compile(r"^base_model\.model\.model\.layers\.(\d+)\."
                 r"(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)\.lora_(A|B)\.weight$")


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


def tokenizer():
    """make_gguf_fixtures' byte-level BPE, in the shape write_model takes."""
    tokens, merges, types = mg.bpe_tokenizer_tables()
    return {"kind": "gpt2", "pre": "llama-bpe", "tokens": tokens, "types": types, "merges": merges,
            "ids": {"bos_token_id": tokens.index("<|im_start|>"), "eos_token_id": tokens.index("<|im_end|>"),
                    "padding_token_id": tokens.index("<|endoftext|>")},
            "flags": {"add_bos_token": False}, "chat_template": mg.CHAT_TEMPLATE}


def hf_model(weights, vocab):
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=mg.H, intermediate_size=mg.I, num_hidden_layers=mg.L,
                      num_attention_heads=mg.NH, num_key_value_heads=mg.NKV, max_position_embeddings=mg.CTX,
                      rms_norm_eps=mg.EPS, rope_theta=mg.THETA, tie_word_embeddings=False, hidden_act="silu",
                      attention_bias=False, mlp_bias=False, bos_token_id=None, eos_token_id=None,
                      pad_token_id=None)
    model = LlamaForCausalLM(cfg).to(torch.float32)
    sd = {k: torch.from_numpy(v.copy()) for k, v in weights.items()}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if "rotary" not in k]
    if missing or unexpected:
        sys.exit(f"state dict mismatch: missing {missing}, unexpected {unexpected}")
    return model.eval()


def main():
    if not os.access(BIN, os.X_OK):
        sys.exit(f"{BIN} is not built: run `swift build --build-tests` (or set LORA_GPU)")
    ok = True
    tmp = tempfile.mkdtemp(prefix="peft-gguf-")
    try:
        tk = tokenizer()
        vocab = len(tk["tokens"])
        weights = mg.hf_weights(vocab, SEED)
        shutil.rmtree(OUT, ignore_errors=True)
        os.makedirs(OUT)

        hf_dir = os.path.join(OUT, "hf_model")
        hf_model(weights, vocab).save_pretrained(hf_dir, safe_serialization=True)
        gguf_path = os.path.join(OUT, "model.gguf")
        mg.write_model(gguf_path, weights, tk, lambda hf, arr: mg.Q.F32, tied=False)

        rng = np.random.default_rng(SEED)
        data = os.path.join(OUT, "data.jsonl")
        with open(data, "w") as f:
            for _ in range(ROWS):
                f.write(json.dumps({"input_ids": rng.integers(3, vocab, SEQ).tolist()}) + "\n")

        out = os.path.join(tmp, "out")
        args = ["train", "--model", gguf_path, "--data", data, "--output-dir", out, "--logging-steps", "4",
                "--save-steps", "1000", "--device", "cpu"]
        for k, v in SETTINGS.items():
            args += ["--" + k.replace("_", "-"), str(v)]
        lora_gpu(*args)

        adapter = os.path.join(OUT, "adapter")
        os.makedirs(adapter)
        for f in ["adapter_config.json", "adapter_model.safetensors"]:
            shutil.copyfile(os.path.join(out, f), os.path.join(adapter, f))

        # The adapter's keys: HF/PEFT module names, every projection of every layer, A and B.
        file = load_file(os.path.join(adapter, "adapter_model.safetensors"))
        matches = [KEY.match(k) for k in file]
        expected = {f"base_model.model.model.layers.{l}.{m}.lora_{ab}.weight"
                    for l in range(mg.L) for ab in "AB"
                    for m in ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                              "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]}
        keys = {"keys": sorted(file), "all_hf_peft_names": all(matches), "expected_set": set(file) == expected,
                "gguf_names": sorted(k for k in file if "blk." in k or "attn_q" in k or "ffn_" in k)}
        ok &= keys["all_hf_peft_names"] and keys["expected_set"] and not keys["gguf_names"]

        ids = torch.tensor(rng.integers(3, vocab, (2, 12)).tolist())

        base = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
        base_logits = logits_of(base, ids)
        gbase = AutoModelForCausalLM.from_pretrained(OUT, gguf_file="model.gguf", dtype=torch.float32).eval()
        gguf_vs_hf = differences(logits_of(gbase, ids), base_logits)
        ok &= gguf_vs_hf["relative_norm"] <= 1e-6

        model = PeftModel.from_pretrained(base, adapter).eval()
        peft_logits = logits_of(model, ids)

        theirs = get_peft_model_state_dict(model)
        loaded = {"file_tensors": len(file), "peft_tensors": len(theirs), "same_keys": sorted(file) == sorted(theirs),
                  "identical": all(k in theirs and torch.equal(theirs[k].float(), v.float()) for k, v in file.items())}
        loaded["lora_B_max_abs"] = max(v.abs().max().item() for k, v in file.items() if "lora_B" in k)
        loaded["adapted_modules"] = sorted({k.split(".")[-3] for k in file if "lora_A" in k})
        ok &= loaded["same_keys"] and loaded["identical"] and loaded["lora_B_max_abs"] > 1e-3

        moved = differences(peft_logits, base_logits)
        ok &= moved["max_abs_over_max_ref"] > 1e-2

        gpeft = PeftModel.from_pretrained(gbase, adapter).eval()
        peft_on_gguf = differences(logits_of(gpeft, ids), peft_logits)
        ok &= peft_on_gguf["relative_norm"] <= 1e-6

        save_file({"logits": peft_logits.contiguous()}, os.path.join(OUT, "logits.safetensors"))
        with open(os.path.join(OUT, "peft_gguf.json"), "w") as f:
            json.dump({"gguf": "model.gguf", "hf_model": "hf_model", "data": "data.jsonl", "settings": SETTINGS,
                       "vocab_size": vocab, "input_ids": ids.tolist(),
                       "versions": {"peft": peft.__version__, "transformers": transformers.__version__,
                                    "torch": torch.__version__, "safetensors": safetensors.__version__},
                       "adapter_keys": keys, "loaded": loaded, "gguf_vs_hf_base": gguf_vs_hf,
                       "peft_vs_base": moved, "peft_on_gguf_vs_peft": peft_on_gguf, "ok": bool(ok)},
                      f, indent=1)
            f.write("\n")
        for dirpath, _, names in os.walk(OUT):
            for n in names:
                os.chmod(os.path.join(dirpath, n), 0o644)
                print(f"{os.path.relpath(os.path.join(dirpath, n), OUT)}: {os.path.getsize(os.path.join(dirpath, n))} bytes")
        print(json.dumps({"adapter_keys": {k: v for k, v in keys.items() if k != "keys"}, "loaded": loaded,
                          "gguf_vs_hf_base": gguf_vs_hf, "peft_vs_base": moved,
                          "peft_on_gguf_vs_peft": peft_on_gguf}, indent=1))
        print("ok" if ok else "FAILED")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
