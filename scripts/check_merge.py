#!/usr/bin/env python3
"""Merge fixtures and the end-to-end merge check, with real transformers + PEFT.

  check_merge.py make [CASE...]
      For every case below (or those named), the logits of PEFT's
      `PeftModel.from_pretrained(base, adapter).merge_and_unload()` on the case's input_ids ->
      Tests/Fixtures/merge/<case>.safetensors ("logits"), and the cases in Tests/Fixtures/merge/cases.json.
      Where the adapter unties a tied base (a LoRA or a trained copy on lm_head or embed_tokens), the logits
      are the UNMERGED PeftModel's: merge_and_unload folds both updates into the one shared matrix, so its
      model differs from the adapter (PEFT warns; lora-gpu writes the two sides apart instead). For the GGUF
      and tied cases it first makes the adapter when it is missing (PEFT, random A and B) under
      Tests/Fixtures/merge/<case>.adapter.

  check_merge.py verify OUT_ROOT
      Loads OUR merged checkpoints (OUT_ROOT/<case>, written by `lora-gpu merge`) with transformers'
      AutoModelForCausalLM (and AutoTokenizer when the output has a tokenizer), and checks that their logits
      equal PEFT's merged logits (relative error ||a-b||/||b|| <= 1e-5) and that the tokenizer gives the ids
      transformers' GGUF tokenizer gives. Exits non-zero on any mismatch. Make the outputs with e.g.:

        for c in $(python3 -c 'import json;print(" ".join(json.load(open("Tests/Fixtures/merge/cases.json"))))'); do
          .build/debug/lora-gpu merge --model <base of $c> --adapter <adapter of $c> --output /tmp/merged/$c
        done
      (`check_merge.py commands OUT_ROOT` prints those commands, plus bfloat16/float16 merges of two cases
      into OUT_ROOT/<case>@<dtype>, which verify checks bit for bit against torch's rounding of the float32 merge.)

Run with /opt/lora-ref-venv/bin/python.
"""
import json
import os
import sys

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
FIX = os.path.join(REPO, "Tests", "Fixtures")
OUT = os.path.join(FIX, "merge")

HF_CASES = ["llama_bias_all", "llama_modules_to_save", "llama_tied_rslora_regex", "mistral_embed_lm_head",
            "qwen2_bias_lora_only", "llama_layers_patterns", "llama_gqa_untied", "qwen3_qk_norm", "smollm3_nope", "phi3_fused_longrope",
            "gemma3_sliding", "gemma3_softcap"]
# GGUF base, its adapter's LoRA settings.
# Case gguf_<model> merges into Tests/Fixtures/gguf/<model>.gguf.
GGUF_CASES = {
    "gguf_llama_q": ("llama_q.gguf", dict(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "down_proj"])),
    # tied embeddings with LoRA on embed_tokens: the update lands on the shared matrix
    "gguf_llama_f16": ("llama_f16.gguf", dict(r=4, lora_alpha=16, use_rslora=True,
                                              target_modules=["q_proj", "v_proj", "embed_tokens"])),
    "gguf_llama_f32": ("llama_f32.gguf", dict(r=2, lora_alpha=4, target_modules=["o_proj", "gate_proj", "up_proj", "lm_head"])),
    "gguf_qwen2_f32": ("qwen2_f32.gguf", dict(r=4, lora_alpha=8, target_modules="all-linear", bias="all")),
}


# A tied Llama (the reference case's base) with a LoRA on its lm_head, its embedding, or both.
TIED_BASE = "llama_tied_rslora_regex"
TIED_CASES = {
    "tied_lm_head": dict(r=4, lora_alpha=8, target_modules=["lm_head"]),
    "tied_embed_tokens": dict(r=4, lora_alpha=8, target_modules=["embed_tokens"]),
    "tied_both": dict(r=4, lora_alpha=8, target_modules=["lm_head", "embed_tokens", "q_proj"]),
}


def unties(case):
    """Whether the case's adapter makes a tied base's two embedding sides differ."""
    base, adapter, _ = case_paths(case)
    cfg = json.load(open(os.path.join(adapter, "adapter_config.json")))
    tmods = cfg.get("target_modules") or []
    sides = {"lm_head", "embed_tokens"}
    touched = (isinstance(tmods, list) and bool(sides & set(tmods))) or bool(sides & set(cfg.get("modules_to_save") or []))
    tied = load_base(case).config.tie_word_embeddings
    return bool(tied and touched)


def case_paths(case):
    """(base path for lora-gpu, adapter dir, input_ids)."""
    if case in TIED_CASES:
        d = os.path.join(FIX, "reference", TIED_BASE)
        ref = json.load(open(os.path.join(d, "reference.json")))
        return os.path.join(d, "model"), os.path.join(OUT, case + ".adapter"), ref["input_ids"]
    if case in HF_CASES:
        d = os.path.join(FIX, "reference", case)
        ref = json.load(open(os.path.join(d, "reference.json")))
        return os.path.join(d, "model"), os.path.join(d, "adapter_final"), ref["input_ids"]
    gguf_name, _ = GGUF_CASES[case]
    ids = json.load(open(os.path.join(FIX, "gguf", "expected.json")))["input_ids"]
    return os.path.join(FIX, "gguf", gguf_name), os.path.join(OUT, case + ".adapter"), ids


def load_base(case):
    from transformers import AutoModelForCausalLM

    base, _, _ = case_paths(case)
    if case in HF_CASES or case in TIED_CASES:
        return AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    return AutoModelForCausalLM.from_pretrained(os.path.dirname(base), gguf_file=os.path.basename(base),
                                                dtype=torch.float32)


def peft_merged_logits(case):
    from peft import PeftModel

    _, adapter, ids = case_paths(case)
    model = PeftModel.from_pretrained(load_base(case), adapter)
    if not unties(case):
        model = model.merge_and_unload()
    model.eval()
    with torch.no_grad():
        return model(torch.tensor(ids)).logits.numpy().astype(np.float32)


def make(only):
    from peft import LoraConfig, get_peft_model

    os.makedirs(OUT, exist_ok=True)
    made = {case: settings for case, (_, settings) in GGUF_CASES.items()}
    made.update(TIED_CASES)
    for case, settings in made.items():
        if os.path.exists(os.path.join(OUT, case + ".adapter", "adapter_config.json")) or (only and case not in only):
            continue
        torch.manual_seed(0)
        model = get_peft_model(load_base(case), LoraConfig(init_lora_weights=False, task_type="CAUSAL_LM", **settings))
        adir = os.path.join(OUT, case + ".adapter")
        model.save_pretrained(adir)
        # No absolute paths in committed fixtures.
        cfg_path = os.path.join(adir, "adapter_config.json")
        cfg = json.load(open(cfg_path))
        cfg["base_model_name_or_path"] = os.path.relpath(case_paths(case)[0], REPO)
        with open(cfg_path, "w") as f:
            json.dump(cfg, f, indent=2, sort_keys=True)
        os.remove(os.path.join(adir, "README.md"))
    cases = HF_CASES + list(GGUF_CASES) + list(TIED_CASES)
    for case in cases:
        if only and case not in only:
            continue
        save_file({"logits": peft_merged_logits(case)}, os.path.join(OUT, case + ".safetensors"))
        print(case, "ok")
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump(cases, f, indent=1)
        f.write("\n")


def rel(a, b):
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def verify(root):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    expected_gguf = json.load(open(os.path.join(FIX, "gguf", "expected.json")))
    failures = 0
    for case in json.load(open(os.path.join(OUT, "cases.json"))):
        d = os.path.join(root, case)
        if not os.path.isdir(d):
            print(f"{case}: MISSING {d}")
            failures += 1
            continue
        _, _, ids = case_paths(case)
        ours = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32)
        ours.eval()
        with torch.no_grad():
            logits = ours(torch.tensor(ids)).logits.numpy()
        peft_live = peft_merged_logits(case)
        fixture = load_file(os.path.join(OUT, case + ".safetensors"))["logits"]
        e, e_fix = rel(logits, peft_live), rel(logits, fixture)
        ok = e <= 1e-5 and e_fix <= 1e-5
        what = "the unmerged PeftModel (the adapter unties a tied base)" if unties(case) else "PEFT merge_and_unload"
        line = f"{case}: our merged checkpoint in transformers vs {what}: rel err {e:.3g} (fixture {e_fix:.3g})"
        if os.path.exists(os.path.join(d, "tokenizer.json")) and case in GGUF_CASES:
            gguf_model = GGUF_CASES[case][0].removesuffix(".gguf")
            tok = AutoTokenizer.from_pretrained(d)
            want = expected_gguf["models"][gguf_model]["token_ids"]
            bad = [s for s, v in want.items() if tok(s)["input_ids"] != v]
            # A SentencePiece vocabulary keeps its dummy prefix on every text, as sentencepiece and llama.cpp do
            # ("  x" -> "▁▁▁x"); transformers' GGUF conversion (Metaspace, prepend_scheme "first") skips it when the
            # text already starts with a space. lora-gpu follows the original (GGUFTests), so those strings differ
            # by exactly one leading "▁" token: shown, not counted.
            sp = json.load(open(os.path.join(d, "tokenizer.json")))["normalizer"] is not None
            prefix = tok.convert_tokens_to_ids("\u2581") if sp else None
            known = [s for s in bad if sp and s.startswith(" ")
                     and tok(s)["input_ids"] == want[s][:1] + [prefix] + want[s][1:]]
            bad = [s for s in bad if s not in known]
            line += f"; tokenizer ids {'match' if not bad else 'DIFFER for ' + repr(bad)} on {len(want) - len(known)} strings"
            if known:
                line += f" (+{len(known)} with a leading space: one more dummy-prefix '▁', as sentencepiece)"
            ok = ok and not bad
        print(("OK   " if ok else "FAIL ") + line)
        failures += 0 if ok else 1
        # Half-precision outputs of the same merge (OUT_ROOT/<case>@bfloat16, @float16) must be torch's rounding of ours.
        for dtype in ("bfloat16", "float16"):
            h = f"{d}@{dtype}"
            if not os.path.isdir(h):
                continue
            from safetensors.torch import load_file as load_torch

            def tensors(path):
                out = {}
                for fn in sorted(os.listdir(path)):
                    if fn.endswith(".safetensors"):
                        out.update(load_torch(os.path.join(path, fn)))
                return out

            full, half = tensors(d), tensors(h)
            dt = getattr(torch, dtype)
            bad = [k for k in full if k not in half or not torch.equal(full[k].to(dt).view(torch.int16), half[k].view(torch.int16))]
            print(("OK   " if not bad else "FAIL ") + f"{case}@{dtype}: {len(full)} tensors bit-equal to torch's .to({dtype})"
                  + (f" except {bad}" if bad else ""))
            failures += 1 if bad else 0
    sys.exit(1 if failures else 0)


def commands(root):
    for case in json.load(open(os.path.join(OUT, "cases.json"))):
        base, adapter, _ = case_paths(case)
        args = f".build/debug/lora-gpu merge --model {os.path.relpath(base, REPO)} --adapter {os.path.relpath(adapter, REPO)}"
        print(f"{args} --output {root}/{case}")
        if case in ("mistral_embed_lm_head", "gguf_llama_q"):
            for dtype in ("bfloat16", "float16"):
                print(f"{args} --dtype {dtype} --output {root}/{case}@{dtype}")


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "make":
        make(set(sys.argv[2:]))
    elif len(sys.argv) == 3 and sys.argv[1] == "verify":
        verify(sys.argv[2])
    elif len(sys.argv) == 3 and sys.argv[1] == "commands":
        commands(sys.argv[2])
    else:
        print(__doc__)
        sys.exit(2)
