#!/usr/bin/env python3
"""A Gemma3ForConditionalGeneration checkpoint around the gemma3_sliding reference model, with the real transformers.

Gemma 3 ships its 4B/12B/27B checkpoints as the multimodal Gemma3ForConditionalGeneration (model_type "gemma3"): the
text model's settings nest under config.json's "text_config" and its weights sit under a prefix of the vision model's
checkpoint. This builds one whose language model holds exactly the weights of
Tests/Fixtures/reference/gemma3_sliding/model (made by scripts/make_reference.py) and whose vision side is a tiny
random SigLIP (hidden 16, one layer, 16×16 images in 8×8 patches, mm_tokens_per_image 4), saves it with
save_pretrained (bf16, as the text checkpoint: its weights are bf16 values, so nothing is rounded), and records what a
reader of it needs to know, in Tests/Fixtures/reference/gemma3_sliding/:
  conditional_model/          config.json (+ generation_config.json) and model.safetensors
  conditional_expected.json   the safetensors names of the text weights as saved (language_model.model.<x>, the
                              Hub's layout, though transformers 5 holds them as model.language_model.<x>) and the
                              Gemma3ForCausalLM name each corresponds to; config.json's nesting; the text-only logits (eval mode, fp32) of the
                              reference's two input_ids rows, and their largest difference from Gemma3ForCausalLM's
                              eval logits on the same rows (0: the same model)

Run from the repository root, after make_reference.py gemma3_sliding:
    PYTHONHASHSEED=0 /opt/lora-ref-venv/bin/python scripts/make_gemma3_conditional.py
"""
import json
import os
import shutil

import torch
import transformers
from safetensors import safe_open
from transformers import (AutoModelForCausalLM, Gemma3Config, Gemma3ForConditionalGeneration, Gemma3TextConfig,
                          SiglipVisionConfig)

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
CASE = os.path.join(ROOT, "Tests", "Fixtures", "reference", "gemma3_sliding")
OUT = os.path.join(CASE, "conditional_model")
VISION = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=16,
              patch_size=8, num_channels=3)
MM_TOKENS = 4   # a 2×2 grid pooled from the 2×2 patches


def main():
    torch.manual_seed(3)
    causal = AutoModelForCausalLM.from_pretrained(os.path.join(CASE, "model"), dtype=torch.float32).eval()
    text_cfg = Gemma3TextConfig.from_pretrained(os.path.join(CASE, "model"))
    # image/boi/eoi token indices keep their defaults (262144, 255999, 256000): outside the 67-token vocabulary, so no
    # reference id is ever taken for an image placeholder.
    cfg = Gemma3Config(text_config=text_cfg.to_dict(), vision_config=SiglipVisionConfig(**VISION).to_dict(),
                       mm_tokens_per_image=MM_TOKENS, tie_word_embeddings=True)
    cond = Gemma3ForConditionalGeneration(cfg).eval()
    # The causal model's "model.<x>" is the conditional model's "model.language_model.<x>"; lm_head is tied in both.
    missing, unexpected = cond.model.language_model.load_state_dict(causal.model.state_dict(), strict=True)
    assert not missing and not unexpected
    assert cond.lm_head.weight.data_ptr() == cond.model.language_model.embed_tokens.weight.data_ptr()

    shutil.rmtree(OUT, ignore_errors=True)
    cond.to(torch.bfloat16).save_pretrained(OUT, safe_serialization=True)
    saved = Gemma3ForConditionalGeneration.from_pretrained(OUT, dtype=torch.float32).eval()

    ids = torch.tensor(json.load(open(os.path.join(CASE, "reference.json")))["input_ids"][:2])
    with torch.no_grad():
        want = causal(input_ids=ids).logits
        got = saved(input_ids=ids).logits
    diff = (got - want).abs().max().item()
    assert diff < 1e-5, diff

    with safe_open(os.path.join(OUT, "model.safetensors"), "pt") as f:
        names = sorted(f.keys())
    # transformers 5 keeps the text model at model.language_model.<x> in memory but writes the checkpoint in the
    # Hub's layout (its conversion mapping, reversed on save): language_model.model.<x>, as google/gemma-3-*-it ship.
    prefix = "language_model.model."
    text_names = [n for n in names if n.startswith(prefix)]
    causal_names = sorted(n for n in causal.state_dict() if n != "lm_head.weight")
    assert sorted("model." + n[len(prefix):] for n in text_names) == causal_names, names
    in_memory = sorted(n for n in saved.state_dict() if n.startswith("model.language_model."))
    assert sorted("model." + n[len("model.language_model."):] for n in in_memory) == causal_names, in_memory
    config_json = json.load(open(os.path.join(OUT, "config.json")))
    expected = dict(
        versions=dict(torch=torch.__version__, transformers=transformers.__version__),
        architectures=config_json["architectures"], model_type=config_json["model_type"],
        text_config_key="text_config", text_model_type=config_json["text_config"]["model_type"],
        config_top_level_keys=sorted(config_json), text_config=config_json["text_config"],
        text_weight_prefix=prefix, text_weight_prefix_in_memory="model.language_model.",
        # name as saved here -> name of the same tensor in the gemma3_sliding Gemma3ForCausalLM checkpoint
        text_weights={n: "model." + n[len(prefix):] for n in text_names},
        other_weights=[n for n in names if not n.startswith(prefix)],
        lm_head_saved="lm_head.weight" in names or "language_model.lm_head.weight" in names,
        input_ids=ids.tolist(),
        text_only_logits=got.tolist(),
        max_abs_diff_vs_causal_eval_logits=diff,
    )
    with open(os.path.join(CASE, "conditional_expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
    size = sum(os.path.getsize(os.path.join(OUT, n)) for n in os.listdir(OUT))
    print("conditional_model", size, "bytes; text weights", len(text_names), "others", len(expected["other_weights"]),
          "max |Δlogits|", diff)


if __name__ == "__main__":
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    main()
