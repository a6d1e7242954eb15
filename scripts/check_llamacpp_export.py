#!/usr/bin/env python3
"""Real llama.cpp applies `lora-gpu export`'s adapters as PEFT does (issue 19, items 1 and 4).

For each reference fixture (a tiny Llama made by transformers and a PEFT adapter trained on it):
  1. the base as a GGUF (gguf-py; llama.cpp's tensor names, q/k rows in its rotary order as
     convert_hf_to_gguf.py permutes them; no vocabulary: llama-export-lora needs none);
  2. `lora-gpu export` → ours.gguf, and llama.cpp's convert_lora_to_gguf.py → theirs.gguf;
  3. llama.cpp's `llama-export-lora` merges each into the base;
  4. `lora-gpu merge` (PEFT's W + s·B·A, checked against PeftModel by scripts/check_merge.py) is the
     reference: every merged tensor compared (relative error ‖x − y‖ / ‖y‖, worst over tensors).

    /opt/lora-ref-venv/bin/python scripts/check_llamacpp_export.py LLAMA_CPP_TREE LLAMA_BUILD_DIR [lora-gpu]
LLAMA_CPP_TREE: vendor/llama.cpp of llama-cpp-python 0.3.36's sdist (scripts/make_export_fixtures.py
fetches it); LLAMA_BUILD_DIR: a cmake build of it with the llama-export-lora target.
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

tree, build = sys.argv[1], sys.argv[2]
binary = sys.argv[3] if len(sys.argv) > 3 else ".build/debug/lora-gpu"
sys.path.insert(0, os.path.join(tree, "gguf-py"))
import gguf  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

root = "Tests/Fixtures/reference"
export_lora = os.path.join(build, "bin", "llama-export-lora")
env = dict(os.environ, LORA_GPU_AUTOTUNE="0", PYTHONPATH=os.path.join(tree, "gguf-py"))
NAMES = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
         "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
         "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}


def permute(w, heads):
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def load_hf(d):
    files = [f for f in os.listdir(d) if f.endswith(".safetensors")]
    out = {}
    for f in files:
        out.update({k: v.float().numpy() for k, v in load_file(os.path.join(d, f)).items()})
    return out


def to_gguf(hf, cfg):
    """HF tensor name → (llama.cpp name, array in llama.cpp's layout)."""
    out = {}
    for k, v in hf.items():
        v = v.astype(np.float32)
        if k == "model.embed_tokens.weight":
            out["token_embd.weight"] = v
        elif k == "model.norm.weight":
            out["output_norm.weight"] = v
        elif k == "lm_head.weight":
            out["output.weight"] = v
        else:
            p = k.split(".")
            mod = ".".join(p[3:-1])
            n = f"blk.{p[2]}.{NAMES[mod]}.{p[-1]}"
            if mod == "self_attn.q_proj":
                v = permute(v, cfg["num_attention_heads"])
            elif mod == "self_attn.k_proj":
                v = permute(v, cfg.get("num_key_value_heads", cfg["num_attention_heads"]))
            out[n] = v
    return out


def main():
    worst_ours = 0.0
    for name in ["llama_gqa_untied", "llama_layers_patterns", "llama_tied_rslora_regex"]:
        model, adapter = os.path.join(root, name, "model"), os.path.join(root, name, "adapter_final")
        cfg = json.load(open(os.path.join(model, "config.json")))
        with tempfile.TemporaryDirectory() as tmp:
            base = os.path.join(tmp, "base.gguf")
            w = gguf.GGUFWriter(base, "llama")
            w.add_block_count(cfg["num_hidden_layers"])
            for n, v in to_gguf(load_hf(model), cfg).items():
                w.add_tensor(n, v)
            w.write_header_to_file()
            w.write_kv_data_to_file()
            w.write_tensors_to_file()
            w.close()
            ours, theirs = os.path.join(tmp, "ours.gguf"), os.path.join(tmp, "theirs.gguf")
            subprocess.run([binary, "export", "--adapter", adapter, "--model", model, "--output", ours], check=True, env=env,
                           stdout=subprocess.DEVNULL)
            subprocess.run([sys.executable, os.path.join(tree, "convert_lora_to_gguf.py"), "--base", model, "--outfile", theirs,
                            "--outtype", "f32", adapter], check=True, env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            merged_hf = os.path.join(tmp, "merged")
            subprocess.run([binary, "merge", "--model", model, "--adapter", adapter, "--output", merged_hf], check=True,
                           env=env, stdout=subprocess.DEVNULL)
            ref = to_gguf(load_hf(merged_hf), json.load(open(os.path.join(merged_hf, "config.json"))))
            errs = {}
            for which, lora in [("lora-gpu export", ours), ("convert_lora_to_gguf.py", theirs)]:
                merged = os.path.join(tmp, which.split()[0] + ".merged.gguf")
                subprocess.run([export_lora, "-m", base, "--lora", lora, "-o", merged], check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                r = gguf.GGUFReader(merged)
                worst = 0.0
                for t in r.tensors:
                    x = np.array(t.data, dtype=np.float32).reshape(ref[t.name].shape)
                    y = ref[t.name]
                    worst = max(worst, float(np.linalg.norm(x - y) / max(np.linalg.norm(y), 1e-30)))
                errs[which] = worst
            worst_ours = max(worst_ours, errs["lora-gpu export"])
            print(f"{name}: llama-export-lora with lora-gpu's file vs lora-gpu merge: {errs['lora-gpu export']:.2e}; "
                  f"with convert_lora_to_gguf.py's file: {errs['convert_lora_to_gguf.py']:.2e}")
    print("OK" if worst_ours < 1e-5 else "MISMATCH")
    return 0 if worst_ours < 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())
