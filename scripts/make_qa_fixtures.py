#!/usr/bin/env python3
"""Extractive-QA fixtures (issue 16, item 4), from the real libraries:

- features: transformers' fast tokenizers run as the QA recipe (examples/pytorch/question-answering/
  run_qa.py) runs them — `tok(question.lstrip(), context, truncation="only_second", max_length=L,
  stride=S, return_overflowing_tokens=True, return_offsets_mapping=True)` — and the recipe's
  start/end positions (train features) and context-only offsets (validation features) computed
  from those encodings as the recipe does;
- predictions: the recipe's post-processing (utils_qa.postprocess_qa_predictions: n-best start and
  end indexes, valid spans of at most max_answer_length tokens, the null answer for SQuAD v2) on
  seeded random logits, re-implemented here from its published description (the transformers
  repository snapshot is over the fetch limit, so utils_qa.py cannot be run as is);
- scores: torchmetrics' SQuAD metric (the official SQuAD v1.1 evaluation: normalised exact match
  and token F1, best over the gold answers).

Offsets are stored as UTF-8 byte ranges (the library's are characters).

    /opt/lora-ref-venv/bin/python scripts/make_qa_fixtures.py Tests/Fixtures/qa/qa.json
"""
import collections
import json
import sys

import numpy as np
import tokenizers
import torchmetrics
import transformers
from torchmetrics.text import SQuAD
from transformers import PreTrainedTokenizerFast

OUT = sys.argv[1] if len(sys.argv) > 1 else "Tests/Fixtures/qa/qa.json"
ROOT = "Tests/Fixtures/text/tokenizers"
NAMES = ["llama2", "qwen2", "roberta", "llama3"]
SETTINGS = [(48, 4), (64, 8), (384, 128)]

EXAMPLES = [
    dict(id="en-1", question="Where do penguins live?",
         context="Penguins live almost exclusively in the Southern Hemisphere. Only one species, the Galápagos "
                 "penguin, is found north of the Equator. They spend about half of their lives on land and half "
                 "in the oceans.",
         answers=dict(text=["the Southern Hemisphere"], answer_start=[36])),
    dict(id="en-2", question="   How long do they spend on land?",
         context="Penguins live almost exclusively in the Southern Hemisphere. Only one species, the Galápagos "
                 "penguin, is found north of the Equator. They spend about half of their lives on land and half "
                 "in the oceans.",
         answers=dict(text=["about half of their lives", "half of their lives"], answer_start=[144, 150])),
    dict(id="zh-1", question="企鹅主要生活在哪里？",
         context="企鹅几乎只生活在南半球。只有一种企鹅，加拉帕戈斯企鹅，生活在赤道以北。它们一生大约一半时间在陆地上，一半时间在海洋中。",
         answers=dict(text=["南半球"], answer_start=[8])),
    dict(id="zh-2", question="哪种企鹅生活在赤道以北？",
         context="企鹅几乎只生活在南半球。只有一种企鹅，加拉帕戈斯企鹅，生活在赤道以北。它们一生大约一半时间在陆地上，一半时间在海洋中。",
         answers=dict(text=["加拉帕戈斯企鹅"], answer_start=[19])),
    dict(id="none-1", question="What colour is the sky on Mars?",
         context="Penguins live almost exclusively in the Southern Hemisphere.",
         answers=dict(text=[], answer_start=[])),
    dict(id="edge-1", question="Which word ends it?",
         context="A short context whose answer is the very last word: oceans",
         answers=dict(text=["oceans"], answer_start=[52])),
    # A single character the byte-level tokenizers split into byte pieces that share its offsets: the recipe's
    # start lands on its last piece and its end on its first (start > end).
    dict(id="zh-3", question="哪个字？", context="这里有一个罕见的字鼇，后面还有一些别的字。",
         answers=dict(text=["鼇"], answer_start=[9])),
    # The answer in the context's first token: with no separator after the question (ByteLevel-only
    # post-processors) the recipe's end walks back into the question.
    dict(id="edge-3", question="Who?", context="a b c", answers=dict(text=["a"], answer_start=[0])),
    # A one-token answer at the context's end: with a trailing special token (Roberta, Bert, an EOS template)
    # the recipe's start walks onto it.
    dict(id="edge-4", question="Last?", context="x y z w", answers=dict(text=["w"], answer_start=[6])),
    dict(id="edge-2", question="What opens it?",
         context="Emoji 🐧 open this context, then café and naïve words follow for a while longer.",
         answers=dict(text=["Emoji 🐧"], answer_start=[0])),
]
for e in EXAMPLES:
    for t, s in zip(e["answers"]["text"], e["answers"]["answer_start"]):
        assert e["context"][s:s + len(t)] == t, (e["id"], t)


def to_bytes(text, offsets):
    at = [0]
    for ch in text:
        at.append(at[-1] + len(ch.encode("utf-8")))
    return [None if o is None else [at[o[0]], at[o[1]]] for o in offsets]


def features(tok, examples, max_length, stride):
    """The recipe's train features (start/end positions) and validation features (offsets of
    the context's tokens only), one list: each with its example index."""
    enc = tok([e["question"].lstrip() for e in examples], [e["context"] for e in examples], truncation="only_second",
              max_length=max_length, stride=stride, return_overflowing_tokens=True, return_offsets_mapping=True)
    out = []
    for i, ids in enumerate(enc["input_ids"]):
        offsets = enc["offset_mapping"][i]
        seq = enc.sequence_ids(i)
        ex = enc["overflow_to_sample_mapping"][i]
        e = examples[ex]
        cls_index = 0   # the recipe: the CLS token, else BOS, else 0 — position 0 for these tokenizers
        if tok.cls_token_id in ids:
            cls_index = ids.index(tok.cls_token_id)
        elif tok.bos_token_id in ids:
            cls_index = ids.index(tok.bos_token_id)
        answers = e["answers"]
        if len(answers["answer_start"]) == 0:
            start = end = cls_index
            kept = [cls_index, cls_index]
        else:
            start_char = answers["answer_start"][0]
            end_char = start_char + len(answers["text"][0])
            ts = 0
            while seq[ts] != 1:
                ts += 1
            te = len(ids) - 1
            while seq[te] != 1:
                te -= 1
            if not (offsets[ts][0] <= start_char and offsets[te][1] >= end_char):
                start = end = cls_index
                kept = [cls_index, cls_index]
            else:
                first, last = ts, te
                while ts < len(offsets) and offsets[ts][0] <= start_char:
                    ts += 1
                start = ts - 1
                try:
                    # The recipe's end walk is unbounded: into the question, then (Python's negative indexes)
                    # round the end of the list until it raises. None: the recipe fails on this window.
                    while offsets[te][1] >= end_char:
                        te -= 1
                    end = te + 1
                except IndexError:
                    start = end = None
                # lora-gpu's positions: the same walks kept inside the context, then a crossed pair swapped.
                ts, te = first, last
                while ts <= last and offsets[ts][0] <= start_char:
                    ts += 1
                while te >= first and offsets[te][1] >= end_char:
                    te -= 1
                kept = sorted([ts - 1, te + 1])
        context_offsets = [o if seq[k] == 1 else None for k, o in enumerate(offsets)]
        out.append(dict(example=ex, input_ids=ids, start_position=start, end_position=end, lora_gpu_positions=kept,
                        offsets=to_bytes(e["context"], context_offsets)))
    return out, enc


def postprocess(examples, feats, char_offsets, start_logits, end_logits, v2, n_best, max_answer_length):
    """utils_qa.postprocess_qa_predictions, from its description: see the module docstring."""
    per_example = collections.defaultdict(list)
    for i, f in enumerate(feats):
        per_example[f["example"]].append(i)
    preds = {}
    for ex_index, e in enumerate(examples):
        min_null = None
        prelim = []
        for fi in per_example[ex_index]:
            sl, el, om = start_logits[fi], end_logits[fi], char_offsets[fi]
            null = sl[0] + el[0]
            if min_null is None or min_null["score"] > null:
                min_null = dict(offsets=(0, 0), score=null, start_logit=sl[0], end_logit=el[0])
            for s in np.argsort(sl)[-1:-n_best - 1:-1].tolist():
                for t in np.argsort(el)[-1:-n_best - 1:-1].tolist():
                    if s >= len(om) or t >= len(om) or om[s] is None or om[t] is None:
                        continue
                    if t < s or t - s + 1 > max_answer_length:
                        continue
                    prelim.append(dict(offsets=(om[s][0], om[t][1]), score=sl[s] + el[t], start_logit=sl[s], end_logit=el[t]))
        if v2:
            prelim.append(min_null)
            null_score = min_null["score"]
        ranked = sorted(prelim, key=lambda x: x["score"], reverse=True)[:n_best]
        if v2 and not any(p["offsets"] == (0, 0) for p in ranked):
            ranked.append(min_null)
        for p in ranked:
            o = p.pop("offsets")
            p["text"] = e["context"][o[0]:o[1]]
        if len(ranked) == 0 or (len(ranked) == 1 and ranked[0]["text"] == ""):
            ranked.insert(0, dict(text="empty", start_logit=0.0, end_logit=0.0, score=0.0))
        if not v2:
            preds[e["id"]] = ranked[0]["text"]
        else:
            i = 0
            while ranked[i]["text"] == "":
                i += 1
            best = ranked[i]
            diff = null_score - best["start_logit"] - best["end_logit"]
            preds[e["id"]] = "" if diff > 0.0 else best["text"]
    return preds


rng = np.random.default_rng(16)
cases = []
for name in NAMES:
    tok = PreTrainedTokenizerFast(tokenizer_file=f"{ROOT}/{name}/tokenizer.json")
    for max_length, stride in SETTINGS:
        feats, enc = features(tok, EXAMPLES, max_length, stride)
        char_offsets = [[o if enc.sequence_ids(i)[k] == 1 else None for k, o in enumerate(enc["offset_mapping"][i])]
                        for i in range(len(feats))]
        # Logits in float32, as the model gives them; a few tokens made large so that spans win.
        start_logits = [rng.standard_normal(len(f["input_ids"])).astype(np.float32) for f in feats]
        end_logits = [rng.standard_normal(len(f["input_ids"])).astype(np.float32) for f in feats]
        post = []
        for v2, n_best, max_answer_length in [(False, 20, 30), (True, 20, 30), (False, 3, 2), (True, 5, 4)]:
            preds = postprocess(EXAMPLES, feats, char_offsets, start_logits, end_logits, v2, n_best, max_answer_length)
            post.append(dict(version_2_with_negative=v2, n_best_size=n_best, max_answer_length=max_answer_length,
                             predictions=[preds[e["id"]] for e in EXAMPLES]))
        cases.append(dict(tokenizer=name, max_length=max_length, stride=stride, features=feats,
                          start_logits=[x.tolist() for x in start_logits], end_logits=[x.tolist() for x in end_logits],
                          postprocess=post))

# SQuAD scores: torchmetrics on (prediction, gold answers) pairs; percentages as the metric gives them.
PAIRS = [
    ("the Southern Hemisphere", ["the Southern Hemisphere"]),
    ("Southern Hemisphere.", ["the Southern Hemisphere"]),
    ("in the Southern Hemisphere", ["the Southern Hemisphere"]),
    ("half", ["about half of their lives", "half of their lives"]),
    ("An  apple, a DAY!", ["apple a day"]),
    ("南半球", ["南半球"]),
    ("在南半球", ["南半球"]),
    ("加拉帕戈斯 企鹅", ["加拉帕戈斯企鹅"]),
    ("", ["something"]),
    ("empty", ["Equator"]),
    ("north of the Equator", ["the Equator", "north of the Equator"]),
    ("the the the", ["the"]),
    ("café naïve", ["Café naïve."]),
]
squad = SQuAD()
scores = []
for pred, golds in PAIRS:
    r = squad([dict(prediction_text=pred, id="x")], [dict(answers=dict(answer_start=[0] * len(golds), text=golds), id="x")])
    scores.append(dict(prediction=pred, answers=golds, exact_match=float(r["exact_match"]), f1=float(r["f1"])))
r = squad([dict(prediction_text=p, id=str(i)) for i, (p, _) in enumerate(PAIRS)],
          [dict(answers=dict(answer_start=[0] * len(g), text=g), id=str(i)) for i, (_, g) in enumerate(PAIRS)])

with open(OUT, "w") as f:
    json.dump(dict(versions=dict(tokenizers=tokenizers.__version__, transformers=transformers.__version__,
                                 torchmetrics=torchmetrics.__version__),
                   examples=EXAMPLES, cases=cases, squad_pairs=scores,
                   squad_all=dict(exact_match=float(r["exact_match"]), f1=float(r["f1"]))),
              f, ensure_ascii=False, separators=(",", ":"))
print(len(cases), "cases;", sum(len(c["features"]) for c in cases), "features; squad", r)
