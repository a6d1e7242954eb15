#!/usr/bin/env python3
"""Expected ids and word ids of pre-split words, as transformers' fast
tokenizers give them for token classification:
`tok(words, is_split_into_words=True, truncation=True, max_length=L)` with
`.word_ids()` (the NER recipe labels a word's first sub-token). Tokenizers
that refuse pre-split words (byte-level ones without add_prefix_space) are
recorded with the error transformers raises.

    /opt/lora-ref-venv/bin/python scripts/make_word_fixtures.py Tests/Fixtures/text/words.json
"""
import json
import sys

import tokenizers
import transformers
from transformers import PreTrainedTokenizerFast

OUT = sys.argv[1] if len(sys.argv) > 1 else "Tests/Fixtures/text/words.json"
ROOT = "Tests/Fixtures/text/tokenizers"
NAMES = ["llama2", "llama2_metaspace", "llama3", "qwen2", "roberta", "misc_suffix", "gpt2", "metaspace_always"]
WORDS = [
    ["张", "三", "在", "北", "京", "工", "作", "。"],
    ["John", "Smith", "lives", "in", "New", "York", "."],
    ["Unbelievably", "long-winded", "words", ",", "don't", "they", "?"],
    ["混合", "text", "与", "English", "123"],
]
LENGTHS = [5, 9, 512]

cases = []
for name in NAMES:
    tok = PreTrainedTokenizerFast(tokenizer_file=f"{ROOT}/{name}/tokenizer.json")
    for words in WORDS:
        for L in LENGTHS:
            try:
                enc = tok(words, is_split_into_words=True, truncation=True, max_length=L)
                cases.append(dict(tokenizer=name, words=words, max_length=L, ids=enc["input_ids"], word_ids=enc.word_ids()))
            except Exception as e:  # noqa: BLE001 — recorded as the expected refusal
                cases.append(dict(tokenizer=name, words=words, max_length=L, error=f"{type(e).__name__}: {e}"))
with open(OUT, "w") as f:
    json.dump(dict(versions=dict(tokenizers=tokenizers.__version__, transformers=transformers.__version__),
                   cases=cases), f, ensure_ascii=False, indent=0)
print(len(cases), "cases;", sum("error" in c for c in cases), "refused")
