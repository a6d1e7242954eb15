#!/usr/bin/env python3
"""Special tokens named only in tokenizer_config.json (issue 22, item 4), with transformers itself.

Tests/Fixtures/text/tokenizers/config_specials/: the gpt2 fixture's tokenizer.json with a
tokenizer_config.json naming tokens it lacks (bos, unk and pad tokens, additional_special_tokens,
an added_tokens_decoder entry) and one it has only in its vocabulary, not among added_tokens. transformers
adds the missing ones as special tokens with new ids; expected.json records what AutoTokenizer gives.

Run with /opt/lora-ref-venv/bin/python (transformers).
"""
import json
import os
import shutil

from transformers import AutoTokenizer

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "text", "tokenizers")
OUT = os.path.join(ROOT, "config_specials")
TEXTS = ["<|begin_of_text|>hi <tool> x<pad>", "a<unk_x>b<x_dec>c", "plain text", "<tool><tool>", "<|endoftext|>ab"]

os.makedirs(OUT, exist_ok=True)
shutil.copy(os.path.join(ROOT, "gpt2", "tokenizer.json"), os.path.join(OUT, "tokenizer.json"))
vocab = json.load(open(os.path.join(OUT, "tokenizer.json")))["model"]["vocab"]
in_vocab_only = next(t for t in sorted(vocab, key=vocab.get) if len(t) > 3 and t.isalpha())
config = {
    "bos_token": "<|begin_of_text|>", "eos_token": "<|endoftext|>", "pad_token": "<pad>", "unk_token": "<unk_x>",
    "additional_special_tokens": ["<tool>", "<|endoftext|>", in_vocab_only],
    "added_tokens_decoder": {"50300": {"content": "<x_dec>", "special": True, "lstrip": False, "rstrip": False,
                                       "normalized": False, "single_word": False}},
    "tokenizer_class": "PreTrainedTokenizerFast",
}
with open(os.path.join(OUT, "tokenizer_config.json"), "w") as f:
    json.dump(config, f, indent=2)
tok = AutoTokenizer.from_pretrained(OUT)
texts = TEXTS + [f"x{in_vocab_only}y"]
expected = {
    "transformers_len": len(tok),
    "token_ids": {t: tok.convert_tokens_to_ids(t) for t in ["<|begin_of_text|>", "<pad>", "<tool>", "<unk_x>", "<x_dec>",
                                                             "<|endoftext|>", in_vocab_only]},
    "encode": {t: tok(t, add_special_tokens=False)["input_ids"] for t in texts},
    "decode": {t: tok.decode(tok(t, add_special_tokens=False)["input_ids"]) for t in texts},
}
with open(os.path.join(OUT, "expected.json"), "w") as f:
    json.dump(expected, f, indent=1, ensure_ascii=False)
    f.write("\n")
print(json.dumps(expected, ensure_ascii=False))
