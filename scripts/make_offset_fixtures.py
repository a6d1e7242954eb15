#!/usr/bin/env python3
"""Token offsets as transformers' fast tokenizers report them, for every tokenizer
fixture: `tok(text, add_special_tokens=..., return_offsets_mapping=True)`, on the
tokenizer fixtures' test texts, a slice of the multilingual corpus and the data
fixtures' rendered conversations. The library counts characters; the fixture
stores UTF-8 byte offsets (what Tokenizer.encodeWithOffsets returns).

    /opt/lora-ref-venv/bin/python scripts/make_offset_fixtures.py Tests/Fixtures/text/offsets.json
"""
import json
import os
import sys

import tokenizers
import transformers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_tokenizer_fixtures import test_texts, training_text  # noqa: E402

OUT = sys.argv[1] if len(sys.argv) > 1 else "Tests/Fixtures/text/offsets.json"
TOK_ROOT = "Tests/Fixtures/text/tokenizers"
DATA_ROOT = "Tests/Fixtures/text/data"


def load(d, auto=True):
    """transformers' loading of the directory (tokens the config adds included), or with
    `auto` false the tokenizer.json pipeline as `tokenizers` runs it (transformers 5 rebuilds
    a Llama tokenizer's normalizer from its class: the tokenizer fixtures pin tokenizer.json's).
    A tokenizer_config.json transformers cannot read (an old dict-valued special token)
    falls back to tokenizer.json alone."""
    if auto:
        try:
            return AutoTokenizer.from_pretrained(d)
        except (TypeError, ValueError):
            pass
    return PreTrainedTokenizerFast(tokenizer_file=os.path.join(d, "tokenizer.json"))


def byte_offsets(text, offsets):
    at = [0]
    for ch in text:
        at.append(at[-1] + len(ch.encode("utf-8")))
    return [[at[a], at[b]] for a, b in offsets]


def cases_for(tok, texts):
    out = []
    for text in texts:
        case = dict(text=text)
        for special in (False, True):
            enc = tok(text, add_special_tokens=special, return_offsets_mapping=True)
            key = "special" if special else "plain"
            case[key] = dict(ids=enc["input_ids"], offsets=byte_offsets(text, enc["offset_mapping"]))
        out.append(case)
    return out


corpus = [t for i, t in enumerate(dict.fromkeys(training_text())) if i < 30]
tokenizers_out = {}
for name in sorted(os.listdir(TOK_ROOT)):
    d = os.path.join(TOK_ROOT, name)
    if not os.path.isdir(d):
        continue
    # config_specials is about the tokens tokenizer_config.json adds: transformers' loading.
    tok = load(d, auto=name == "config_specials")
    tokenizers_out[name] = cases_for(tok, test_texts() + corpus)

masks = json.load(open(os.path.join(DATA_ROOT, "masks.json")))
families = {}
for name, f in masks["families"].items():
    tok = load(os.path.join(DATA_ROOT, name))
    texts = [c["rendered"] for c in f["cases"] if "rendered" in c][:4]
    families[name] = cases_for(tok, texts)

with open(OUT, "w") as f:
    json.dump(dict(versions=dict(tokenizers=tokenizers.__version__, transformers=transformers.__version__),
                   tokenizers=tokenizers_out, data=families), f, ensure_ascii=False, separators=(",", ":"))
print(sum(len(v) for v in tokenizers_out.values()), "tokenizer cases,", sum(len(v) for v in families.values()), "data cases")
