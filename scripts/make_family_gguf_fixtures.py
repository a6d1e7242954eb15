#!/usr/bin/env python3
"""GGUFs written by llama.cpp's own converter for the newer families, and what transformers makes of the models
they came from.

qwen3: a tiny Qwen3ForCausalLM (hidden 32, 4 heads over 2 KV heads, an explicit head_dim 16, 2 layers, tied, every
norm weight perturbed so q_norm/k_norm are not all ones). Qwen3 has no q/k row permutation; head_dim travels as
qwen3.attention.key_length.
smollm3: a tiny SmolLM3ForCausalLM (4 layers, so the default no_rope_layers makes layer 3 a NoPE layer, GQA,
tied). llama.cpp permutes its q/k rows as Llama's and records no no_rope_layers: its smollm3 graph skips RoPE on
every 4th layer, SmolLM3Config's default.
phi3: a tiny Phi3ForCausalLM (fused qkv_proj and gate_up_proj, partial rotary 0.75, LongRoPE with
original_max_position_embeddings 8, so the 10-token inputs take the long factors and the attention factor √2). llama.cpp
keeps the projections fused (attn_qkv, ffn_up), writes the rotary part as rope.dimension_count and the factors as the
rope_factors_long/short tensors; its Phi-3 vocabulary path wants a GPT2Tokenizer class in tokenizer_config.json.
llama3: a tiny LlamaForCausalLM with Llama 3.x's RoPE scaling (rope_type llama3): llama.cpp writes it as the
rope_freqs.weight tensor (one divisor per frequency), which the reader must apply.
gemma3: a tiny Gemma3ForCausalLM (hidden 32, 4 heads over 2 KV heads, head_dim 16, 6 layers, tied). llama.cpp's gemma3
loader (src/models/gemma3.cpp) takes the layer pattern from no file key the converter writes: with a sliding_window it
makes every 6th layer full (set_swa_pattern(6): layer il slides iff il % 6 < 5), so 6 layers give transformers' own
default layer_types (sliding_window_pattern 6: layers 0-4 sliding, 5 full), window 4 against the 10-token inputs. Its
attention scale is 1/√head_dim (1/√(hidden/heads) only for the 62-layer 27B), not query_pre_attn_scalar^-0.5, so
query_pre_attn_scalar = head_dim. RoPE: the full layers take gemma3.rope.freq_base (1e6) with the linear scaling
(rope.scaling.type linear, factor 2: freq_scale 1/2); the sliding layers gemma3.rope.freq_base_swa (20000 here, not
llama.cpp's default 10000, so a reader that ignores the key fails) at scale 1. The converter adds 1 to every tensor
whose name ends in norm.weight (the four layer norms, q_norm, k_norm and the final norm: Gemma3RMSNorm's 1 + w) and
writes the token embedding unscaled (the graph multiplies by √hidden). Without a tokenizer.model it takes the generic
BPE vocabulary path (_set_vocab_gpt2), so the Qwen2 fixture tokenizer serves as for the others.
Each over the Qwen2 fixture tokenizer, saved with save_pretrained and converted by convert_hf_to_gguf.py
(--outtype f32). The tokenizer's pre-tokenizer hash is not one llama.cpp knows (a fixture tokenizer), so
get_vocab_base_pre is told "qwen2" — its regex is this tokenizer's.

Writes Tests/Fixtures/gguf/<family>_convert/:
  model.gguf              llama.cpp's output
  expected.safetensors    transformers' logits for input_ids, and a few weights (q_norm and k_norm among them)
  expected.json           input_ids, the config fields, and the HF tokenizer's ids for a few strings

    PYTHONHASHSEED=0 /opt/lora-ref-venv/bin/python scripts/make_family_gguf_fixtures.py [LLAMA_CPP_DIR] [FAMILY ...]
LLAMA_CPP_DIR: llama.cpp's source (default: the vendor/llama.cpp of llama-cpp-python 0.3.36's sdist under /tmp/llamacpp).
FAMILY: qwen3, smollm3, phi3, gemma3 to (re)make only those; all when none.
"""
import json
import os
import sys
import tempfile

import torch
from safetensors.torch import save_file
from transformers import (AutoTokenizer, Gemma3ForCausalLM, Gemma3TextConfig, LlamaConfig, LlamaForCausalLM, Phi3Config,
                          Phi3ForCausalLM, Qwen3Config, Qwen3ForCausalLM, SmolLM3Config, SmolLM3ForCausalLM)

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
FAMILY_NAMES = ["qwen3", "smollm3", "phi3", "gemma3", "llama3"]
ONLY = [a for a in sys.argv[1:] if a in FAMILY_NAMES]   # families to (re)make; all when none
_dirs = [a for a in sys.argv[1:] if a not in FAMILY_NAMES]
LLAMA_CPP = _dirs[0] if _dirs else "/tmp/llamacpp/llama_cpp_python-0.3.36/vendor/llama.cpp"
STRINGS = ["Hello world!", "你好，世界", "<|im_start|>user\nhi<|im_end|>\n"]

sys.path.insert(0, os.path.join(LLAMA_CPP, "gguf-py"))
sys.path.insert(0, LLAMA_CPP)
import conversion.base as base  # noqa: E402  (llama.cpp's converter package)
import convert_hf_to_gguf  # noqa: E402

base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "qwen2"
tok = AutoTokenizer.from_pretrained(os.path.join(ROOT, "Tests", "Fixtures", "text", "data", "qwen2"))


def make(family, seed, model, config, extra_keep=()):
    out = os.path.join(ROOT, "Tests", "Fixtures", "gguf", family + "_convert")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.add_(torch.randn_like(p) * 0.1)
    model.eval()
    os.makedirs(out, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        if family == "phi3":
            tc = json.load(open(os.path.join(tmp, "tokenizer_config.json")))
            tc["tokenizer_class"] = "GPT2Tokenizer"
            json.dump(tc, open(os.path.join(tmp, "tokenizer_config.json"), "w"))
        sys.argv = ["convert_hf_to_gguf.py", tmp, "--outtype", "f32", "--outfile", os.path.join(out, "model.gguf")]
        convert_hf_to_gguf.main()
    ids = [[5, 17, 42, 99, 3, 250, 7, 64, 128, 11], [300, 2, 2, 511, 77, 19, 400, 8, 1, 60]]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor(ids)).logits
    sd = model.state_dict()
    keep = [k for k in ["model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight", "model.layers.1.self_attn.k_proj.weight",
                        "model.layers.0.self_attn.q_norm.weight", "model.layers.1.self_attn.k_norm.weight",
                        "model.layers.0.mlp.down_proj.weight", "model.layers.0.self_attn.qkv_proj.weight",
                        "model.layers.1.mlp.gate_up_proj.weight", *extra_keep] if k in sd]
    save_file({"logits": logits.contiguous(), **{k: sd[k].contiguous() for k in keep}}, os.path.join(out, "expected.safetensors"))
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(dict(input_ids=ids, config=config,
                       token_ids={s: tok(s, add_special_tokens=False)["input_ids"] for s in STRINGS}), f, indent=1, ensure_ascii=False)
    print("wrote", out, os.path.getsize(os.path.join(out, "model.gguf")), "bytes")




def qwen3():
    make("qwen3", 5, Qwen3ForCausalLM(Qwen3Config(num_hidden_layers=2, head_dim=16, rope_theta=1000000.0, **common)),
         dict(architectures="Qwen3ForCausalLM", head_dim=16, hidden_size=32, num_key_value_heads=2, vocab_size=len(tok),
              tie_word_embeddings=True, rms_norm_eps=1e-6, num_hidden_layers=2))


def smollm3():
    make("smollm3", 6, SmolLM3ForCausalLM(SmolLM3Config(num_hidden_layers=4, rope_theta=5000000.0, **common)),
         dict(architectures="SmolLM3ForCausalLM", head_dim=8, hidden_size=32, num_key_value_heads=2, vocab_size=len(tok),
              tie_word_embeddings=True, rms_norm_eps=1e-6, num_hidden_layers=4, no_rope_layers=[1, 1, 1, 0]))


def phi3():
    make("phi3", 7, Phi3ForCausalLM(Phi3Config(num_hidden_layers=2, original_max_position_embeddings=8,
                                               rope_parameters=dict(rope_type="longrope", rope_theta=10000.0, partial_rotary_factor=0.75,
                                                                    original_max_position_embeddings=8, short_factor=[1.0, 1.25, 1.5],
                                                                    long_factor=[1.5, 3.0, 6.0]), **common)),
         dict(architectures="Phi3ForCausalLM", head_dim=8, hidden_size=32, num_key_value_heads=2, vocab_size=len(tok),
              tie_word_embeddings=True, rms_norm_eps=1e-6, num_hidden_layers=2, rotary_dim=6))


def gemma3():
    # No layer_types: transformers derives them from sliding_window_pattern 6 as llama.cpp does from its default 6.
    rope = dict(full_attention=dict(rope_type="linear", factor=2.0, rope_theta=1000000.0),
                sliding_attention=dict(rope_type="default", rope_theta=20000.0))
    cfg = Gemma3TextConfig(num_hidden_layers=6, head_dim=16, query_pre_attn_scalar=16, sliding_window=4, rope_parameters=rope,
                           hidden_activation="gelu_pytorch_tanh", attn_logit_softcapping=None, final_logit_softcapping=None,
                           **common)
    assert cfg.layer_types == ["sliding_attention"] * 5 + ["full_attention"], cfg.layer_types
    make("gemma3", 8, Gemma3ForCausalLM(cfg),
         dict(architectures="Gemma3ForCausalLM", head_dim=16, hidden_size=32, num_key_value_heads=2, vocab_size=len(tok),
              tie_word_embeddings=True, rms_norm_eps=1e-6, num_hidden_layers=6, layer_types=cfg.layer_types,
              sliding_window=4, query_pre_attn_scalar=16, rope_parameters=rope, embed_scale=32 ** 0.5,
              hidden_activation="gelu_pytorch_tanh"),
         extra_keep=["model.norm.weight", "model.layers.0.input_layernorm.weight", "model.layers.0.post_attention_layernorm.weight",
                     "model.layers.0.pre_feedforward_layernorm.weight", "model.layers.0.post_feedforward_layernorm.weight"])


def llama3():
    # Llama 3.x's RoPE scaling (rope_type llama3), which llama.cpp's converter writes as no scaling keys but a
    # rope_freqs.weight tensor of per-frequency divisors. head_dim 16 and original_max_position_embeddings 16 put the
    # frequencies on all three sides of the remap (kept, smoothed, divided by 8), so the 10-token inputs see it.
    rope = dict(rope_type="llama3", rope_theta=10000.0, factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                original_max_position_embeddings=16)
    cfg = LlamaConfig(num_hidden_layers=2, rope_parameters=rope, **{**common, "num_attention_heads": 2, "num_key_value_heads": 1})
    make("llama3", 9, LlamaForCausalLM(cfg),
         dict(architectures="LlamaForCausalLM", head_dim=16, hidden_size=32, num_key_value_heads=1, vocab_size=len(tok),
              tie_word_embeddings=True, rms_norm_eps=1e-6, num_hidden_layers=2, rope_parameters=rope))


common = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=48, num_attention_heads=4, num_key_value_heads=2,
              max_position_embeddings=64, rms_norm_eps=1e-6, tie_word_embeddings=True, initializer_range=0.1,
              bos_token_id=None, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
# (family, seed drawn before its model is built, builder)
FAMILIES = [("qwen3", 5, qwen3), ("smollm3", 6, smollm3), ("phi3", 7, phi3), ("gemma3", 8, gemma3), ("llama3", 9, llama3)]
for name, seed, build in FAMILIES:
    if not ONLY or name in ONLY:
        torch.manual_seed(seed)
        build()
