#!/usr/bin/env python3
"""A tokenizer.json that lists its byte-fallback pieces (<0x00>…<0xFF>) among added_tokens, as some
converted tokenizers do (issue 16, item 7): the real `tokenizers` library trains a small byte-fallback
BPE and saves it; expected.json holds the library's ids and offsets for a few texts.

    /opt/lora-ref-venv/bin/python scripts/make_byte_fallback_added_fixture.py
writes Tests/Fixtures/text/tokenizers/byte_fallback_added/.
"""
import json
import os

import tokenizers
from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, trainers

out = os.path.join(os.path.dirname(__file__), "..", "Tests", "Fixtures", "text", "tokenizers", "byte_fallback_added")
os.makedirs(out, exist_ok=True)
tok = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>"))
tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)])
pieces = [f"<0x{i:02X}>" for i in range(256)]
trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<s>", "</s>"] + pieces)
tok.train_from_iterator(["hello world this is a test of the tokenizer", "another line with words"] * 50, trainer)
tok.add_tokens([AddedToken(p, special=False, normalized=False) for p in pieces])
tok.save(os.path.join(out, "tokenizer.json"))
template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
    json.dump({"eos_token": "</s>", "bos_token": "<s>", "unk_token": "<unk>", "chat_template": template}, f)
texts = ["hello [world] 你好", "user: hi [x]\nassistant: hello [world]\n", "<0x5B> literally, then [", "qzx ~ é 🙂"]
cases = []
for t in texts:
    e = tok.encode(t, add_special_tokens=False)
    cases.append({"text": t, "ids": e.ids, "tokens": e.tokens, "offsets": [list(o) for o in e.offsets]})
with open(os.path.join(out, "expected.json"), "w") as f:
    json.dump({"tokenizers_version": tokenizers.__version__, "cases": cases}, f, ensure_ascii=False, indent=1)
