#!/usr/bin/env python3
"""Expected ids of text pairs with truncation, as transformers' fast tokenizers
give them: `tok(text, text_pair, truncation=True, max_length=L)["input_ids"]`
(and the single-text case), for the tokenizer fixtures whose post-processors
differ (TemplateProcessing pair templates, a Sequence of ByteLevel + template,
ByteLevel alone, BertProcessing, RobertaProcessing).

    /opt/lora-ref-venv/bin/python scripts/make_pair_fixtures.py Tests/Fixtures/text/pairs.json
"""
import json
import sys

import tokenizers
import transformers
from transformers import PreTrainedTokenizerFast

OUT = sys.argv[1] if len(sys.argv) > 1 else "Tests/Fixtures/text/pairs.json"
ROOT = "Tests/Fixtures/text/tokenizers"
NAMES = ["llama2", "llama3", "qwen2", "roberta", "misc_suffix", "gpt2"]
TEXTS = [
    ("这部电影真好看，演员的表演很自然。", "我会推荐给朋友。"),
    ("The service was slow and the food arrived cold, but the staff apologised twice.", "Would you come back?"),
    ("Short.", "A much longer second text that goes on and on about nothing in particular, to be cut."),
    ("同一个问题", None),
    ("", "only the second"),
    # Equal lengths: which side keeps the odd token.
    ("one two three four five six seven", "one two three four five six seven"),
]
LENGTHS = [4, 7, 8, 12, 20, 512]

cases = []
for name in NAMES:
    tok = PreTrainedTokenizerFast(tokenizer_file=f"{ROOT}/{name}/tokenizer.json")
    for a, b in TEXTS:
        for L in LENGTHS:
            enc = tok(a, b, truncation=True, max_length=L) if b is not None else tok(a, truncation=True, max_length=L)
            cases.append(dict(tokenizer=name, text=a, text_pair=b, max_length=L, ids=enc["input_ids"]))
with open(OUT, "w") as f:
    json.dump(dict(versions=dict(tokenizers=tokenizers.__version__, transformers=transformers.__version__),
                   cases=cases), f, ensure_ascii=False, indent=0)
print(len(cases), "cases")
