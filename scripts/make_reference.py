#!/usr/bin/env python3
"""Builds the parity fixtures with the real PyTorch + transformers + PEFT.

For each case: a tiny Llama-family model with random weights saved with
`save_pretrained` (some in bf16/f16, some sharded), wrapped with PEFT using
`init_lora_weights=False` (A and B both non-zero, so step 1 is not trivial);
the initial adapter; a fixed batch whose labels are partly -100; the logits and
loss before training; every trainable gradient at step 1 (named as PEFT saves
them); the per-step losses of a few AdamW steps; and the adapter after the last
step. Also `print(model)` and PEFT's trainable-parameter line, for `inspect`.

Run from the repository root, in a virtual environment outside it:
    python -m venv /opt/lora-ref-venv
    /opt/lora-ref-venv/bin/pip install torch transformers peft safetensors
    /opt/lora-ref-venv/bin/python scripts/make_reference.py Tests/Fixtures/reference [CASE ...]
"""
import contextlib
import io
import json
import os
import shutil
import sys

import torch
import transformers
import peft
from peft import LoraConfig, get_peft_model
from peft.utils import get_peft_model_state_dict
from safetensors.torch import save_file
from transformers import (AutoModelForCausalLM, Gemma3TextConfig, LlamaConfig, MistralConfig, Phi3Config, Qwen2Config, Qwen3Config,
                          SmolLM3Config)

OUT = sys.argv[1] if len(sys.argv) > 1 else "Tests/Fixtures/reference"

BASE = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=67, max_position_embeddings=64, rms_norm_eps=1e-5,
            rope_theta=10000.0, initializer_range=0.1, tie_word_embeddings=False)
TRAIN = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, steps=3)

CASES = [
    # GQA (4 query heads over 2 KV heads), untied, every projection, sharded fp32 checkpoint.
    dict(name="llama_gqa_untied", arch="llama", cfg={}, dtype="float32", shard="12KB",
         lora=dict(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj",
                                                       "gate_proj", "up_proj", "down_proj"]),
         max_grad_norm=0.0),
    # Tied embeddings, rsLoRA, a regex target_modules, explicit head_dim, llama3 rope scaling, bf16 weights.
    dict(name="llama_tied_rslora_regex", arch="llama",
         cfg=dict(tie_word_embeddings=True, head_dim=16, num_key_value_heads=4,
                  rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                                    high_freq_factor=4.0, original_max_position_embeddings=16)),
         dtype="bfloat16",
         lora=dict(r=4, lora_alpha=8, use_rslora=True, target_modules=r".*\.(q_proj|v_proj|down_proj)"),
         max_grad_norm=1.0),
    # layers_to_transform with rank_pattern and alpha_pattern.
    dict(name="llama_layers_patterns", arch="llama", cfg=dict(num_hidden_layers=3), dtype="float32",
         lora=dict(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "up_proj"], layers_to_transform=[1, 2],
                   rank_pattern={"v_proj": 4}, alpha_pattern={"up_proj": 4}),
         max_grad_norm=0.0),
    # Qwen2: q/k/v biases, trained with bias="lora_only"; all-linear; f16 weights; tied.
    dict(name="qwen2_bias_lora_only", arch="qwen2", cfg=dict(tie_word_embeddings=True, rope_theta=1000000.0),
         dtype="float16", lora=dict(r=8, lora_alpha=16, target_modules="all-linear", bias="lora_only"),
         max_grad_norm=0.0),
    # modules_to_save: a fully trained copy of lm_head.
    dict(name="llama_modules_to_save", arch="llama", cfg={}, dtype="float32",
         lora=dict(r=8, lora_alpha=8, target_modules=["q_proj", "v_proj"], modules_to_save=["lm_head"]),
         max_grad_norm=0.0),
    # LoRA on embed_tokens and lm_head (PEFT's embedding layout), Mistral architecture.
    dict(name="mistral_embed_lm_head", arch="mistral", cfg={}, dtype="float32",
         lora=dict(r=8, lora_alpha=16, target_modules=["embed_tokens", "lm_head", "q_proj"]),
         max_grad_norm=0.5),
    # Qwen3: per-head RMSNorm on q and k (q_norm, k_norm over head_dim) before RoPE, an explicit head_dim
    # (16, not hidden/heads = 8), no q/k/v bias, tied embeddings as Qwen3-0.6B; bf16 weights; all-linear.
    # Every norm weight is perturbed (transformers initialises them to 1, which would hide a missing norm weight).
    dict(name="qwen3_qk_norm", arch="qwen3", cfg=dict(head_dim=16, tie_word_embeddings=True, rope_theta=1000000.0),
         dtype="bfloat16", lora=dict(r=8, lora_alpha=16, target_modules="all-linear"), max_grad_norm=1.0,
         perturb_norms=True),
    # SmolLM3: RoPE skipped on the layers no_rope_layers marks 0 (NoPE; here the second of two), GQA, tied,
    # attention_bias with bias="lora_only", rank_pattern; fp16 weights.
    dict(name="smollm3_nope", arch="smollm3", cfg=dict(tie_word_embeddings=True, no_rope_layers=[1, 0], attention_bias=True,
                                                       pad_token_id=None, bos_token_id=None, eos_token_id=None,
                                                       rope_theta=5000000.0),
         dtype="float16", lora=dict(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "down_proj"],
                                    bias="lora_only", rank_pattern={"k_proj": 4}),
         max_grad_norm=1.0),
    # Phi-3 / Phi-4-mini: fused qkv_proj and gate_up_proj (LoRA on the fused modules), partial rotary (0.75 of
    # head_dim 8: 6 values rotate), LongRoPE with original_max_position_embeddings 16 and a 20-token batch (the long
    # factors and the attention factor √(1 + ln 4 / ln 16)), tied; no dropout (lora_dropout 0,
    # PEFT's default).
    dict(name="phi3_fused_longrope", arch="phi3",
         cfg=dict(tie_word_embeddings=True, pad_token_id=None, bos_token_id=None, eos_token_id=None,
                  original_max_position_embeddings=16,
                  rope_parameters=dict(rope_type="longrope", rope_theta=10000.0, partial_rotary_factor=0.75,
                                       original_max_position_embeddings=16,
                                       short_factor=[1.0, 1.25, 1.5], long_factor=[1.5, 3.0, 6.0])),
         dtype="float32", seq=20, lora=dict(r=8, lora_alpha=16, target_modules="all-linear"), max_grad_norm=1.0),
    # Phi-3-mini-4k/128k's layout: an untied lm_head (its own weight, LoRA on it as on the fused qkv_proj and
    # gate_up_proj, o_proj and down_proj), full rotary (partial_rotary_factor 1.0) with default RoPE as Phi-3-mini-4k;
    # bf16 weights as the Hub's checkpoints; no dropout (lora_dropout 0, as every case here).
    dict(name="phi3_untied_lm_head", arch="phi3",
         cfg=dict(tie_word_embeddings=False, pad_token_id=None, bos_token_id=None, eos_token_id=None),
         dtype="bfloat16",
         lora=dict(r=8, lora_alpha=16, target_modules=["qkv_proj", "o_proj", "gate_up_proj", "down_proj", "lm_head"]),
         max_grad_norm=1.0),
    # Sliding-window attention shorter than the sequence: Mistral's window of 3 on every layer (20-token batch),
    # and Qwen2's use_sliding_window on the layers from max_window_layers = 1 (the second of two), window 4.
    dict(name="mistral_sliding_window", arch="mistral", cfg=dict(sliding_window=3), dtype="float32", seq=20,
         lora=dict(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]),
         max_grad_norm=1.0),
    dict(name="qwen2_sliding_layers", arch="qwen2", cfg=dict(use_sliding_window=True, sliding_window=4, max_window_layers=1),
         dtype="float32", seq=20, lora=dict(r=8, lora_alpha=16, target_modules="all-linear"), max_grad_norm=0.0),
    # Gemma 3 text (Gemma3ForCausalLM): a sliding layer (window 4, shorter than the 20-token batch) then a full layer
    # (layer_types), RoPE per layer type (sliding: default with base 1e4; full: linear scaling by 2 with base 1e6),
    # attention scale query_pre_attn_scalar^-0.5 = 12^-0.5 (deliberately not head_dim 16), q_norm/k_norm, four norms per
    # layer, every RMSNorm computing x̂·(1 + w) over weights that transformers initialises to 0 (perturbed here so none
    # is 0), GELU-tanh MLP, an embedding scaled by √hidden, tied; no softcapping; bf16 weights. all-linear is a string
    # PEFT accepts only alone, so the list names every linear projection plus embed_tokens: PEFT 0.21.2's LoRA
    # Embedding multiplies its B·A output by the base layer's embed_scale too (_get_embed_scale, lora/layer.py), so the
    # embedding's update enters scaled by √32 as the base row does. pad_token_id 0 makes the embedding's padding_idx 0:
    # transformers zeroes that row at init and F.embedding passes no gradient to it, nor to lora_embedding_A's column 0
    # (token 0 is in the batch).
    dict(name="gemma3_sliding", arch="gemma3",
         cfg=dict(head_dim=16, layer_types=["sliding_attention", "full_attention"], sliding_window=4,
                  query_pre_attn_scalar=12, hidden_activation="gelu_pytorch_tanh", tie_word_embeddings=True,
                  attn_logit_softcapping=None, final_logit_softcapping=None,
                  rope_parameters=dict(full_attention=dict(rope_type="linear", factor=2.0, rope_theta=1000000.0),
                                       sliding_attention=dict(rope_type="default", rope_theta=10000.0))),
         dtype="bfloat16", seq=20,
         lora=dict(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                       "down_proj", "embed_tokens"]),
         max_grad_norm=1.0, perturb_norms=True),
    # Gemma 3 with final_logit_softcapping 1.0 (logits reach past ±1, so the tanh bends them) and attn_logit_softcapping
    # 50.0, which transformers' Gemma3Attention reads but never applies; three layers from the legacy
    # sliding_window_pattern 3 (the third full), rope_theta and rope_local_base_freq (the pre-rope_parameters keys),
    # untied with a LoRA on lm_head, default query_pre_attn_scalar 256; fp32 weights.
    dict(name="gemma3_softcap", arch="gemma3",
         cfg=dict(head_dim=16, num_hidden_layers=3, sliding_window_pattern=3, sliding_window=5, tie_word_embeddings=False,
                  final_logit_softcapping=1.0, attn_logit_softcapping=50.0, rope_theta=500000.0, rope_local_base_freq=5000.0),
         dtype="float32", seq=12,
         lora=dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj", "lm_head"]),
         max_grad_norm=1.0, perturb_norms=True),
    # attention_bias and mlp_bias with bias="all".
    dict(name="llama_bias_all", arch="llama", cfg=dict(attention_bias=True, mlp_bias=True), dtype="float32",
         lora=dict(r=8, lora_alpha=16, target_modules=["q_proj", "o_proj", "down_proj"], bias="all"),
         max_grad_norm=0.0),
]

CONFIGS = {"llama": LlamaConfig, "qwen2": Qwen2Config, "mistral": MistralConfig, "qwen3": Qwen3Config,
           "smollm3": SmolLM3Config, "phi3": Phi3Config, "gemma3": Gemma3TextConfig}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def batch(vocab, seq=7):
    g = torch.Generator().manual_seed(1234)
    ids = torch.randint(0, vocab, (2, seq), generator=g)
    labels = ids.clone()
    labels[0, :3] = -100      # a prompt that is not trained on
    labels[1, 2] = -100
    labels[1, 5] = -100
    return ids, labels


def tensors(d):
    return {k: v.detach().to(torch.float32).contiguous() for k, v in d.items()}


def make_case(case):
    torch.manual_seed(42)
    root = os.path.join(OUT, case["name"])
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    cfg = CONFIGS[case["arch"]](**{**BASE, **case["cfg"]})
    model = AutoModelForCausalLM.from_config(cfg, torch_dtype=torch.float32)
    # transformers initialises biases to zero; trained checkpoints (Qwen2's q/k/v) have real ones.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias"):
                p.normal_(0.0, 0.1)
            if case.get("perturb_norms") and name.endswith("norm.weight"):
                p.add_(torch.randn_like(p) * 0.1)
    model = model.to(DTYPES[case["dtype"]])
    model.save_pretrained(os.path.join(root, "model"), safe_serialization=True,
                          max_shard_size=case.get("shard", "1GB"))
    # The reference runs in fp32 on exactly the weights that were saved.
    model = AutoModelForCausalLM.from_pretrained(os.path.join(root, "model"), torch_dtype=torch.float32)
    with open(os.path.join(root, "print_model.txt"), "w") as f:
        f.write(str(model) + "\n")

    lcfg = LoraConfig(task_type="CAUSAL_LM", init_lora_weights=False, lora_dropout=0.0, **case["lora"])
    pm = get_peft_model(model, lcfg)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        pm.print_trainable_parameters()
    pm.save_pretrained(os.path.join(root, "adapter_initial"))

    ids, labels = batch(cfg.vocab_size, case.get("seq", 7))
    params = [(n, p) for n, p in pm.named_parameters() if p.requires_grad]
    opt = torch.optim.AdamW([p for _, p in params], lr=TRAIN["lr"], betas=TRAIN["betas"], eps=TRAIN["eps"],
                            weight_decay=TRAIN["weight_decay"])
    pm.train()
    losses, grad_norms = [], []
    for step in range(TRAIN["steps"]):
        opt.zero_grad()
        out = pm(input_ids=ids, labels=labels)
        out.loss.backward()
        if step == 0:
            save_file({"logits": out.logits.detach().float().contiguous()}, os.path.join(root, "logits_step0.safetensors"))
            grads = {n: p.grad for n, p in params}
            save_file(tensors(get_peft_model_state_dict(pm, state_dict=grads)),
                      os.path.join(root, "grads_step0.safetensors"))
        total = torch.sqrt(sum((p.grad.double() ** 2).sum() for _, p in params)).item()
        grad_norms.append(total)
        if case["max_grad_norm"] > 0:
            torch.nn.utils.clip_grad_norm_([p for _, p in params], case["max_grad_norm"])
        opt.step()
        losses.append(out.loss.item())
    pm.save_pretrained(os.path.join(root, "adapter_final"))
    final32 = {k: v.double() for k, v in get_peft_model_state_dict(pm).items()}
    final64 = train_float64(root, cfg, ids, labels, case)
    save_file({k: v.contiguous() for k, v in final64.items()}, os.path.join(root, "adapter_final_f64.safetensors"))
    # How far PyTorch's own fp32 run lands from the fp64 run, per tensor: Adam
    # turns gradient elements near eps into large relative differences, so a
    # tensor holding one is ill-conditioned for every fp32 implementation.
    fp32_error = {k: ((final32[k] - final64[k]).norm() / final64[k].norm()).item() for k in final64}
    ref = dict(
        versions=dict(torch=torch.__version__, transformers=transformers.__version__, peft=peft.__version__),
        input_ids=ids.tolist(), labels=labels.tolist(), losses=losses, grad_norms=grad_norms,
        train=dict(TRAIN, max_grad_norm=case["max_grad_norm"]),
        trainable_line=buf.getvalue().strip(),
        trainable_names=[n for n, _ in params],
        torch_fp32_vs_fp64=fp32_error,
    )
    with open(os.path.join(root, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1)
    print(case["name"], "losses", losses, "|", ref["trainable_line"])


def train_float64(root, cfg, ids, labels, case):
    """The same training in float64 from the same initial adapter: the exact answer."""
    from peft import PeftModel
    model = AutoModelForCausalLM.from_pretrained(os.path.join(root, "model"), torch_dtype=torch.float64)
    pm = PeftModel.from_pretrained(model, os.path.join(root, "adapter_initial"), is_trainable=True).to(torch.float64)
    params = [p for _, p in pm.named_parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=TRAIN["lr"], betas=TRAIN["betas"], eps=TRAIN["eps"],
                            weight_decay=TRAIN["weight_decay"])
    pm.train()
    for _ in range(TRAIN["steps"]):
        opt.zero_grad()
        pm(input_ids=ids, labels=labels).loss.backward()
        if case["max_grad_norm"] > 0:
            torch.nn.utils.clip_grad_norm_(params, case["max_grad_norm"])
        opt.step()
    return {k: v.detach().double() for k, v in get_peft_model_state_dict(pm).items()}


if __name__ == "__main__":
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    only = sys.argv[2:]   # case names to (re)make; all when none
    for c in CASES:
        if not only or c["name"] in only:
            make_case(c)
