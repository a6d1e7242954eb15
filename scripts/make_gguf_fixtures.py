#!/usr/bin/env python3
"""Make the GGUF fixtures under Tests/Fixtures/gguf with the real libraries.

Run with /opt/lora-ref-venv/bin/python (torch, transformers, tokenizers, sentencepiece, gguf).

Writes, for a tiny Llama (hidden 32, 4 heads, 2 KV heads, 2 layers):
  llama_f32.gguf   F32 weights, untied (an `output` tensor), byte-level BPE tokenizer ("gpt2", pre "llama-bpe")
  llama_f16.gguf   F16 weights, tied (no `output`), SentencePiece BPE tokenizer ("llama", byte fallback)
  llama_q.gguf     Q8_0 embedding and output, Q4_0 q/k/v/gate/up, Q4_1 o/down, F32 norms; tokenizer "gpt2", pre "gpt2"
  mistral_q5.gguf  arch "llama" named "tiny-mistral" (transformers: LlamaForCausalLM), Q5_0/Q5_1 linears, pre "qwen2"
  qwen2_f32.gguf   arch "qwen2" (q/k/v biases, no rotary permutation), tied
  quant_zoo.gguf   one (2, 256) tensor of every supported type, plus metadata of every value type
and for each model `<name>.expected.safetensors` holding what transformers makes of it:
`logits` for `input_ids` (in expected.json), and the dequantized `model.embed_tokens.weight`,
`model.layers.0.self_attn.q_proj.weight`, `model.layers.1.self_attn.k_proj.weight`,
`model.layers.0.mlp.down_proj.weight`. `quant_zoo.expected.safetensors` holds gguf-py's dequantization
of every zoo tensor. `<name>.tokenizer/` holds AutoTokenizer(gguf_file=...).save_pretrained output,
and expected.json the ids AutoTokenizer gives for a few strings.
"""
import json
import os
import shutil
import sys
import tempfile

import numpy as np
import torch
import gguf
from gguf import GGMLQuantizationType as Q
from safetensors.numpy import save_file

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "gguf")
ROOT = os.path.normpath(ROOT)

H, NH, NKV, L, I = 32, 4, 2, 2, 64
HD = H // NH
CTX = 64
EPS = 1e-5
THETA = 10000.0

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello world! Hello there, how are you doing today?",
    "LoRA fine-tuning adapts low-rank matrices: W' = W + s * B @ A.",
    "Numbers like 12345 and 3.14159 appear in text; so do symbols #$%&*.",
    "Café naïve façade — unicode: 日本語, emoji 🙂.",
    "def main():\n    print('hi')\n    return 0\n",
    "Training on a CPU through OpenCL is slow but it works.",
    "the theory of the thing is that the other thing then there",
] * 4

TEST_STRINGS = [
    "Hello world!",
    "The quick brown fox.",
    "  leading spaces and 12345 digits",
    "Café 日本 🙂",
    "<|im_start|>user\nhi<|im_end|>",
]


def bpe_tokenizer_tables():
    """A small byte-level BPE trained with `tokenizers`: tokens (by id), merges, token types."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers, decoders

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(vocab_size=330, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    state = json.loads(tok.to_str())
    vocab = state["model"]["vocab"]
    merges = state["model"]["merges"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in merges]
    tokens = [None] * len(vocab)
    for t, i in vocab.items():
        tokens[i] = t
    types = [gguf.TokenType.CONTROL if t in specials else gguf.TokenType.NORMAL for t in tokens]
    return tokens, merges, types


def spm_tokenizer_tables(workdir):
    """A small SentencePiece BPE with byte fallback, converted the way llama.cpp converts one."""
    import sentencepiece as spm

    corpus = os.path.join(workdir, "corpus.txt")
    with open(corpus, "w") as f:
        f.write("\n".join(CORPUS))
    prefix = os.path.join(workdir, "sp")
    spm.SentencePieceTrainer.train(input=corpus, model_prefix=prefix, model_type="bpe", vocab_size=400,
                                   byte_fallback=True, character_coverage=1.0, bos_id=1, eos_id=2, unk_id=0,
                                   minloglevel=2)
    sp = spm.SentencePieceProcessor(model_file=prefix + ".model")
    tokens, scores, types = [], [], []
    for i in range(sp.vocab_size()):
        tokens.append(sp.id_to_piece(i))
        scores.append(sp.get_score(i))
        if sp.is_unknown(i):
            types.append(gguf.TokenType.UNKNOWN)
        elif sp.is_control(i):
            types.append(gguf.TokenType.CONTROL)
        elif sp.is_unused(i):
            types.append(gguf.TokenType.UNUSED)
        elif sp.is_byte(i):
            types.append(gguf.TokenType.BYTE)
        else:
            types.append(gguf.TokenType.NORMAL)
    return tokens, scores, types


def llama_cpp_permute(w, n_head, n_head_kv):
    """What llama.cpp's convert_hf_to_gguf does to q and k (transformers' reverse_permute_weights undoes it)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def hf_weights(vocab, seed, biases=False):
    rng = np.random.default_rng(seed)
    f = lambda *s, scale=0.2: (rng.standard_normal(s) * scale).astype(np.float32)
    w = {"model.embed_tokens.weight": f(vocab, H, scale=0.5), "model.norm.weight": 1 + f(H, scale=0.1),
         "lm_head.weight": f(vocab, H)}
    for l in range(L):
        p = f"model.layers.{l}."
        w[p + "input_layernorm.weight"] = 1 + f(H, scale=0.1)
        w[p + "post_attention_layernorm.weight"] = 1 + f(H, scale=0.1)
        w[p + "self_attn.q_proj.weight"] = f(NH * HD, H)
        w[p + "self_attn.k_proj.weight"] = f(NKV * HD, H)
        w[p + "self_attn.v_proj.weight"] = f(NKV * HD, H)
        w[p + "self_attn.o_proj.weight"] = f(H, NH * HD)
        w[p + "mlp.gate_proj.weight"] = f(I, H)
        w[p + "mlp.up_proj.weight"] = f(I, H)
        w[p + "mlp.down_proj.weight"] = f(H, I)
        if biases:  # Qwen2: q, k, v carry biases
            w[p + "self_attn.q_proj.bias"] = f(NH * HD)
            w[p + "self_attn.k_proj.bias"] = f(NKV * HD)
            w[p + "self_attn.v_proj.bias"] = f(NKV * HD)
    return w


GGUF_NAMES = {
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
}


def gguf_name(hf):
    if hf == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf == "model.norm.weight":
        return "output_norm.weight"
    if hf == "lm_head.weight":
        return "output.weight"
    parts = hf.split(".")  # model.layers.N.<mod...>.weight|bias
    return f"blk.{parts[2]}.{GGUF_NAMES['.'.join(parts[3:-1])]}.{parts[-1]}"


def write_model(path, weights, tokenizer, qtype_for, tied, name="tiny-llama", arch="llama"):
    w = gguf.GGUFWriter(path, arch)
    w.add_name(name)
    w.add_context_length(CTX)
    w.add_embedding_length(H)
    w.add_block_count(L)
    w.add_feed_forward_length(I)
    w.add_head_count(NH)
    w.add_head_count_kv(NKV)
    w.add_layer_norm_rms_eps(EPS)
    w.add_rope_freq_base(THETA)
    w.add_rope_dimension_count(HD)
    w.add_file_type(0)
    kind = tokenizer["kind"]
    w.add_tokenizer_model(kind)
    if "pre" in tokenizer:
        w.add_tokenizer_pre(tokenizer["pre"])
    w.add_token_list(tokenizer["tokens"])
    w.add_token_types([int(t) for t in tokenizer["types"]])
    if "scores" in tokenizer:
        w.add_token_scores(tokenizer["scores"])
    if "merges" in tokenizer:
        w.add_token_merges(tokenizer["merges"])
    for key, value in tokenizer["ids"].items():
        w.add_uint32(f"tokenizer.ggml.{key}", value)
    for key, value in tokenizer.get("flags", {}).items():
        w.add_bool(f"tokenizer.ggml.{key}", value)
    if "chat_template" in tokenizer:
        w.add_chat_template(tokenizer["chat_template"])
    for hf, arr in weights.items():
        if hf == "lm_head.weight" and tied:
            continue
        if arch == "llama" and (hf.endswith("q_proj.weight") or hf.endswith("q_proj.bias")):
            arr = llama_cpp_permute(arr, NH, NH)
        elif arch == "llama" and (hf.endswith("k_proj.weight") or hf.endswith("k_proj.bias")):
            arr = llama_cpp_permute(arr, NH, NKV)
        qt = qtype_for(hf, arr)
        if qt == Q.F32:
            w.add_tensor(gguf_name(hf), arr.astype(np.float32))
        elif qt == Q.F16:
            w.add_tensor(gguf_name(hf), arr.astype(np.float16))
        else:
            w.add_tensor(gguf_name(hf), gguf.quants.quantize(arr, qt), raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


CHAT_TEMPLATE = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
                 "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def reference(path, tmp, input_ids, vocab):
    """transformers' view of one GGUF: logits and some dequantized weights; tokenizer files and ids."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    d = os.path.dirname(path)
    f = os.path.basename(path)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
    model.eval()
    sd = model.state_dict()
    with torch.no_grad():
        logits = model(torch.tensor(input_ids)).logits
    out = {"logits": logits.numpy().astype(np.float32)}
    for k in ["model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
              "model.layers.1.self_attn.k_proj.weight", "model.layers.0.mlp.down_proj.weight",
              "model.layers.0.self_attn.q_proj.bias", "model.layers.1.self_attn.k_proj.bias"]:
        if k in sd:
            out[k] = sd[k].numpy().astype(np.float32).copy()
    cfg = model.config
    config = {"tie_word_embeddings": bool(cfg.tie_word_embeddings), "vocab_size": cfg.vocab_size,
              "hidden_size": cfg.hidden_size, "num_key_value_heads": cfg.num_key_value_heads,
              "head_dim": getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads, "rms_norm_eps": cfg.rms_norm_eps,
              "max_position_embeddings": cfg.max_position_embeddings, "architectures": model.__class__.__name__}
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    tok_dir = os.path.join(tmp, "tok")
    if os.path.exists(tok_dir):
        shutil.rmtree(tok_dir)
    tok.save_pretrained(tok_dir)
    ids = {s: tok(s)["input_ids"] for s in TEST_STRINGS}
    return out, config, tok_dir, ids


def main():
    os.makedirs(ROOT, exist_ok=True)
    tmp = tempfile.mkdtemp()
    expected = {"input_ids": [[5, 17, 42, 99, 3, 250, 7, 64, 128, 11]], "test_strings": TEST_STRINGS, "models": {}}

    bpe_tokens, merges, bpe_types = bpe_tokenizer_tables()
    sp_tokens, sp_scores, sp_types = spm_tokenizer_tables(tmp)
    bpe = lambda pre: {"kind": "gpt2", "pre": pre, "tokens": bpe_tokens, "types": bpe_types, "merges": merges,
                       "ids": {"bos_token_id": bpe_tokens.index("<|im_start|>"),
                               "eos_token_id": bpe_tokens.index("<|im_end|>"),
                               "padding_token_id": bpe_tokens.index("<|endoftext|>")},
                       "flags": {"add_bos_token": False}, "chat_template": CHAT_TEMPLATE}
    sp = {"kind": "llama", "pre": "default", "tokens": sp_tokens, "types": sp_types, "scores": sp_scores,
          "ids": {"bos_token_id": 1, "eos_token_id": 2, "unknown_token_id": 0},
          "flags": {"add_bos_token": True, "add_eos_token": False}}

    def all_f32(hf, arr):
        return Q.F32

    def all_f16(hf, arr):
        return Q.F32 if arr.ndim == 1 else Q.F16

    def quantized(hf, arr):
        if arr.ndim == 1:
            return Q.F32
        if hf in ("model.embed_tokens.weight", "lm_head.weight"):
            return Q.Q8_0
        if hf.endswith(("o_proj.weight", "down_proj.weight")):
            return Q.Q4_1
        return Q.Q4_0

    def q5(hf, arr):
        if arr.ndim == 1:
            return Q.F32
        if hf in ("model.embed_tokens.weight", "lm_head.weight"):
            return Q.Q8_0
        return Q.Q5_1 if hf.endswith(("o_proj.weight", "down_proj.weight")) else Q.Q5_0

    # (file, tokenizer, tensor types, tied, seed, general.name, general.architecture, q/k/v biases)
    cases = [("llama_f32", bpe("llama-bpe"), all_f32, False, 1, "tiny-llama", "llama", False),
             ("llama_f16", sp, all_f16, True, 2, "tiny-llama", "llama", False),
             ("llama_q", bpe("gpt2"), quantized, False, 3, "tiny-llama", "llama", False),
             # llama.cpp stores Mistral as "llama"; transformers loads such a file as Llama (its rule for general.name
             # == "mistral" needs a gguf-py model type that does not exist, so that name fails to load).
             ("mistral_q5", bpe("qwen2"), q5, False, 4, "tiny-mistral", "llama", False),
             ("qwen2_f32", bpe("qwen2"), all_f32, True, 5, "tiny-qwen2", "qwen2", True)]
    for name, tk, qt, tied, seed, model_name, arch, biases in cases:
        vocab = len(tk["tokens"])
        weights = hf_weights(vocab, seed, biases)
        path = os.path.join(tmp, name + ".gguf")
        write_model(path, weights, tk, qt, tied, model_name, arch)
        out, config, tok_dir, ids = reference(path, tmp, expected["input_ids"], vocab)
        shutil.copy(path, os.path.join(ROOT, name + ".gguf"))
        save_file(out, os.path.join(ROOT, name + ".expected.safetensors"))
        dst = os.path.join(ROOT, name + ".tokenizer")
        if os.path.exists(dst):
            shutil.rmtree(dst)
        os.makedirs(dst)
        for fn in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(os.path.join(tok_dir, fn), os.path.join(dst, fn))
        expected["models"][name] = {"config": config, "token_ids": ids}
        os.remove(path)

    # Every tensor type, and every metadata value type.
    rng = np.random.default_rng(7)
    zoo = os.path.join(ROOT, "quant_zoo.gguf")
    w = gguf.GGUFWriter(zoo, "llama")
    w.add_custom_alignment(64)
    w.add_uint8("test.u8", 200)
    w.add_int8("test.i8", -100)
    w.add_uint16("test.u16", 60000)
    w.add_int16("test.i16", -30000)
    w.add_uint32("test.u32", 4000000000)
    w.add_int32("test.i32", -2000000000)
    w.add_float32("test.f32", 1.5)
    w.add_uint64("test.u64", 2**63 + 5)
    w.add_int64("test.i64", -(2**62))
    w.add_float64("test.f64", 2.718281828459045)
    w.add_bool("test.bool", True)
    w.add_string("test.string", "héllo")
    w.add_array("test.array_i32", [1, -2, 3])
    w.add_array("test.array_str", ["a", "bc", ""])
    w.add_key_value("test.array_f32", [0.5, -0.25], gguf.GGUFValueType.ARRAY, sub_type=gguf.GGUFValueType.FLOAT32)
    w.add_key_value("test.array_nested", [[1, 2], [3]], gguf.GGUFValueType.ARRAY)
    dense = (rng.standard_normal((2, 256)) * 0.3).astype(np.float32)
    zoo_expected = {}

    def kblocks(qt, n):
        """Random K-quant blocks whose f16 scale fields are sane (random bytes could be NaN)."""
        bs, ts = gguf.GGML_QUANT_SIZES[qt]
        raw = rng.integers(0, 256, size=(n, ts), dtype=np.uint8)
        f16 = lambda: np.array([rng.uniform(0.001, 0.05)], dtype=np.float16).view(np.uint8)
        if qt in (Q.Q4_K, Q.Q5_K):
            raw[:, 0:2] = np.stack([f16() for _ in range(n)])
            raw[:, 2:4] = np.stack([f16() for _ in range(n)])
        else:  # Q6_K: d is last
            raw[:, ts - 2:ts] = np.stack([f16() for _ in range(n)])
        return raw

    for qt in [Q.F32, Q.F16, Q.BF16, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q8_0, Q.Q4_K, Q.Q5_K, Q.Q6_K]:
        name = "t." + qt.name.lower()
        if qt == Q.F32:
            data = dense
            w.add_tensor(name, data)
        elif qt == Q.F16:
            data = dense.astype(np.float16)
            w.add_tensor(name, data)
        elif qt in (Q.Q4_K, Q.Q5_K, Q.Q6_K):
            data = kblocks(qt, 2).reshape(2, -1)
            w.add_tensor(name, data, raw_dtype=qt)
        else:
            data = gguf.quants.quantize(dense, qt)
            w.add_tensor(name, data, raw_dtype=qt)
        zoo_expected[name] = np.asarray(gguf.quants.dequantize(data if qt != Q.F16 else data.view(np.uint8).view(np.float16), qt),
                                        dtype=np.float32).reshape(2, 256)
    # A tensor of a type we do not load, to test the error.
    w.add_tensor("t.iq4_nl", gguf.quants.quantize(dense, Q.IQ4_NL) if hasattr(gguf.quants, "IQ4_NL") and False
                 else rng.integers(0, 256, size=(2, 8 * 18), dtype=np.uint8), raw_dtype=Q.IQ4_NL)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    save_file(zoo_expected, os.path.join(ROOT, "quant_zoo.expected.safetensors"))

    with open(os.path.join(ROOT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, ensure_ascii=False, sort_keys=True)
        f.write("\n")
    shutil.rmtree(tmp)
    for fn in sorted(os.listdir(ROOT)):
        p = os.path.join(ROOT, fn)
        if os.path.isfile(p):
            print(f"{fn}: {os.path.getsize(p)} bytes")


if __name__ == "__main__":
    main()
