#!/usr/bin/env python3
"""On a Llama (the ChatML fixture) and a Qwen2 model (tiny, random, made here with the Qwen2 fixture tokenizer):
SEQ_CLS and TOKEN_CLS adapters written by `lora-gpu train` load in the real
PEFT (AutoPeftModelFor{Sequence,Token}Classification, the labels.json settings
passed as config overrides) and give the logits `lora-gpu predict` prints, on
the tiny ChatML fixture model (a causal checkpoint: the head is made by
lora-gpu); `lora-gpu merge` writes a checkpoint transformers loads alone with
the same logits. Five runs: class names, text pairs with class ids,
multi-label lists, regression, NER tags (whose scores must equal
seqeval's), and extractive QA (AutoPeftModelForQuestionAnswering; contexts
longer than max_seq_len in windows, every window's start/end logits compared;
the exact match and F1 predict prints equal torchmetrics' SQuAD). The tokens
are transformers' tokenizer(text, text_pair, truncation=True, max_length),
tokenizer(words, is_split_into_words=True) and the QA recipe's
tokenizer(question, context, truncation="only_second", stride,
return_overflowing_tokens=True). Extractive QA runs twice: from the causal checkpoint (the head made by
lora-gpu; PeftModel on a base built by hand, since transformers names the QA trunk `transformer`) and from a
*ForQuestionAnswering checkpoint transformers saved (its qa_outputs kept; AutoPeftModelForQuestionAnswering
loads the adapter by itself). The output of the last run is committed in
Benchmarks/results/checks/check_peft_classifiers.txt.

    swift build && /opt/lora-ref-venv/bin/python scripts/check_peft_classifiers.py [.build/debug/lora-gpu]
"""
import json
import os
import random
import subprocess
import sys
import tempfile

import torch
from peft import (AutoPeftModelForFeatureExtraction, AutoPeftModelForQuestionAnswering, AutoPeftModelForSequenceClassification,
                  AutoPeftModelForTokenClassification, PeftModel)
from torchmetrics.text import SQuAD
from seqeval.metrics import f1_score as seqeval_f1
from transformers import (AutoModel, AutoModelForCausalLM, AutoModelForQuestionAnswering, AutoModelForSequenceClassification,
                          AutoModelForTokenClassification, AutoTokenizer, Qwen2Config, Qwen2ForCausalLM)

BIN = sys.argv[1] if len(sys.argv) > 1 else ".build/debug/lora-gpu"
LLAMA = os.path.abspath("Tests/Fixtures/generate/cli_chatml/model")
QWEN2_TOKENIZER = os.path.abspath("Tests/Fixtures/text/data/qwen2")
MAX_LEN = 24
QA_LEN = 64   # the fixture tokenizer's small vocabulary spends many tokens on a question

random.seed(7)
WORDS = ["the", "movie", "was", "food", "service", "这个", "电影", "我", "今天", "really", "quite", "good", "bad",
         "好", "差", "great", "awful"]


def text(n):
    return " ".join(random.choice(WORDS) for _ in range(n))


def rows(kind, n):
    out = []
    for _ in range(n):
        t = text(random.randint(2, 14))
        if kind == "names":
            out.append({"text": t, "label": random.choice(["正面", "负面", "neutral"])})
        elif kind == "pairs":
            out.append({"text": t, "text_pair": text(random.randint(1, 12)), "label": random.randint(0, 2)})
        elif kind == "tags":
            words = t.split()
            tags = [random.choice(["O", "O", "B-PER", "I-PER", "B-LOC"]) for _ in words]
            out.append({"tokens": words, "tags": tags})
        elif kind == "qa":
            words = text(random.randint(6, 30)).split()
            k = random.randrange(len(words))
            context = " ".join(words)
            start = len(" ".join(words[:k])) + (1 if k else 0)
            answers = {"text": [words[k]], "answer_start": [start]} if random.random() < 0.85 else {"text": [], "answer_start": []}
            out.append({"question": " " + text(random.randint(1, 2)) + "?", "context": context, "answers": answers})
        elif kind == "pairs_fe":
            out.append({"anchor": text(random.randint(2, 10)), "positive": text(random.randint(2, 12)),
                        "negative": text(random.randint(2, 12))})
        elif kind == "multi":
            out.append({"text": t, "label": [float(random.random() < 0.5) for _ in range(4)]})
        else:
            out.append({"text": t, "label": round(random.uniform(-2, 2), 3)})
    return out


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{r.stderr}{r.stdout}")
    return r


def qwen2_model(path):
    """A tiny random Qwen2ForCausalLM (seeded) with the Qwen2 fixture tokenizer: attention biases, GQA."""
    torch.manual_seed(11)
    tok = AutoTokenizer.from_pretrained(QWEN2_TOKENIZER)
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      intermediate_size=64, max_position_embeddings=256, tie_word_embeddings=False,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=None)
    Qwen2ForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def qa_checkpoint(causal, path):
    """A *ForQuestionAnswering checkpoint as transformers saves one: the causal trunk under `transformer.`,
    qa_outputs initialised by transformers (seeded). lora-gpu keeps its head; PEFT's AutoPeftModelForQuestionAnswering
    loads it from adapter_config.json's base_model_name_or_path."""
    torch.manual_seed(13)
    qa = AutoModelForQuestionAnswering.from_pretrained(causal, torch_dtype=torch.float32)
    qa.transformer.load_state_dict(AutoModelForCausalLM.from_pretrained(causal, torch_dtype=torch.float32).model.state_dict())
    qa.save_pretrained(path)
    AutoTokenizer.from_pretrained(causal).save_pretrained(path)
    return path


worst = 0.0
with tempfile.TemporaryDirectory() as tmp:
  for family, MODEL in [("llama", LLAMA), ("qwen2", qwen2_model(os.path.join(tmp, "qwen2_model")))]:
    QA_BASE = qa_checkpoint(MODEL, os.path.join(tmp, family + "_qa_model"))
    print(f"== {family}: {MODEL}")
    for kind in ["names", "pairs", "multi", "regression", "tags", "qa", "qa_base", "pairs_fe"]:
        task = {"tags": "TOKEN_CLS", "qa": "QUESTION_ANS", "qa_base": "QUESTION_ANS", "pairs_fe": "FEATURE_EXTRACTION"}.get(kind, "SEQ_CLS")
        base_model = QA_BASE if kind == "qa_base" else MODEL
        kind_rows = "qa" if kind == "qa_base" else kind
        train, test = os.path.join(tmp, family + kind + "_train.jsonl"), os.path.join(tmp, family + kind + "_test.jsonl")
        for path, n in [(train, 24), (test, 9)]:
            with open(path, "w") as f:
                f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows(kind_rows, n))
        out = os.path.join(tmp, family + kind + "_adapter")
        run([BIN, "train", "--model", base_model, "--data", train, "--task-type", task, "--output-dir", out,
             "--max-steps", "6", "--per-device-train-batch-size", "4", "--learning-rate", "1e-2", "--r", "4",
             "--lora-alpha", "8", "--target-modules", "q_proj,v_proj,down_proj", "--max-seq-len", str(QA_LEN if kind_rows == "qa" else MAX_LEN),
             "--save-steps", "1000", "--device", "cpu"] + (["--doc-stride", "4", "--version-2-with-negative"] if kind_rows == "qa" else []))
        if kind == "pairs_fe":
            # The embedder: lora-gpu embed with the adapter vs AutoPeftModelForFeatureExtraction's pooled
            # hidden states, and the merged checkpoint through AutoModel.
            lines = [json.loads(l) for l in open(test)]
            texts = [l[k] for l in lines for k in ("anchor", "positive")]
            tpath = os.path.join(tmp, family + "fe_texts.jsonl")
            with open(tpath, "w") as f:
                f.writelines(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts)
            tok = AutoTokenizer.from_pretrained(MODEL)
            model = AutoPeftModelForFeatureExtraction.from_pretrained(out, torch_dtype=torch.float32).eval()
            merged = os.path.join(tmp, family + kind + "_merged")
            run([BIN, "merge", "--model", base_model, "--adapter", out, "--output", merged])
            mm = AutoModel.from_pretrained(merged, torch_dtype=torch.float32).eval()
            enc = tok(texts, truncation=True, max_length=MAX_LEN, padding=True, return_tensors="pt")
            m = enc["attention_mask"]
            for pooling in ["mean", "last"]:
                emb = torch.tensor([json.loads(l)["embedding"] for l in run([BIN, "embed", "--model", MODEL, "--adapter", out,
                    "--data", tpath, "--max-seq-len", str(MAX_LEN), "--pooling", pooling, "--normalize", "--device", "cpu"]).stdout.splitlines()])
                refs = []
                for net in (model, mm):
                    with torch.no_grad():
                        h = net(**enc).last_hidden_state
                    pooled = (h[torch.arange(h.shape[0]), m.sum(1) - 1] if pooling == "last"
                              else (h * m[..., None]).sum(1) / m.sum(1, keepdim=True))
                    refs.append(torch.nn.functional.normalize(pooled, dim=-1))
                err, merr = (emb - refs[0]).abs().max().item(), (refs[1] - refs[0]).abs().max().item()
                worst = max(worst, err, merr)
                print(f"{family} {kind}: FEATURE_EXTRACTION, {len(texts)} texts, --pooling {pooling}: max |lora-gpu − PEFT| = {err:.2e}; "
                      f"merged (AutoModel) vs PEFT {merr:.2e}")
            continue
        predicted = run([BIN, "predict", "--model", base_model, "--adapter", out, "--data", test,
                         "--max-seq-len", str(QA_LEN if kind_rows == "qa" else MAX_LEN), "--batch-size", "4", "--device", "cpu"]
                        + (["--logits"] if kind_rows == "qa" else []))
        preds = [json.loads(l) for l in predicted.stdout.splitlines()]
        if kind_rows == "qa":
            lines = [json.loads(l) for l in open(test)]
            tok = AutoTokenizer.from_pretrained(MODEL)
            # transformers names Llama's QA trunk "transformer", so from this causal checkpoint ("model.…") it loads
            # an untrained trunk (all "MISSING"), and AutoPeftModelForQuestionAnswering with it: the base is built
            # by hand (the trunk's weights copied in), then PEFT puts the adapter on it.
            # From a *ForQuestionAnswering checkpoint (qa_base) PEFT's own loader is used: AutoPeftModelForQuestionAnswering
            # builds the base from adapter_config.json's base_model_name_or_path, qa_outputs included.
            if kind == "qa_base":
                model = AutoPeftModelForQuestionAnswering.from_pretrained(out, torch_dtype=torch.float32).eval()
                head = AutoModelForQuestionAnswering.from_pretrained(QA_BASE, torch_dtype=torch.float32).qa_outputs.weight
                assert not torch.equal(model.base_model.model.qa_outputs.modules_to_save["default"].weight, head), \
                    "the trained qa_outputs was not loaded"
            else:
                base = AutoModelForQuestionAnswering.from_pretrained(MODEL, torch_dtype=torch.float32)
                base.transformer.load_state_dict(AutoModelForCausalLM.from_pretrained(MODEL, torch_dtype=torch.float32).model.state_dict())
                model = PeftModel.from_pretrained(base, out).eval()
            enc = tok([l["question"].lstrip() for l in lines], [l["context"] for l in lines], truncation="only_second",
                      max_length=QA_LEN, stride=4, return_overflowing_tokens=True, padding=True, return_tensors="pt")
            mapping = enc.pop("overflow_to_sample_mapping").tolist()
            with torch.no_grad():
                o = model(**enc)
            merged = os.path.join(tmp, family + kind + "_merged")
            run([BIN, "merge", "--model", base_model, "--adapter", out, "--output", merged])
            mm = AutoModelForQuestionAnswering.from_pretrained(merged, torch_dtype=torch.float32).eval()
            with torch.no_grad():
                mo = mm(**enc)
            ref = torch.cat([o.start_logits, o.end_logits])
            merr = ((torch.cat([mo.start_logits, mo.end_logits]) - ref).abs().max() / ref.abs().max()).item()
            err, seen, windows = 0.0, {}, 0
            for i, q in enumerate(mapping):
                w = seen.get(q, 0)
                seen[q] = w + 1
                n = int(enc["attention_mask"][i].sum())
                ours = preds[q]["windows"][w]
                for name, theirs in [("start_logits", o.start_logits[i, :n]), ("end_logits", o.end_logits[i, :n])]:
                    assert len(ours[name]) == n, (q, w, len(ours[name]), n)
                    err = max(err, ((torch.tensor(ours[name]) - theirs).abs().max() / ref.abs().max()).item())
                windows += 1
            assert all(len(p["windows"]) == seen[k] for k, p in enumerate(preds)), "window counts differ"
            r = SQuAD()([dict(prediction_text=p["prediction_text"], id=str(k)) for k, p in enumerate(preds)],
                        [dict(answers=dict(answer_start=l["answers"]["answer_start"], text=l["answers"]["text"] or [""]), id=str(k))
                         for k, l in enumerate(lines)])
            printed = predicted.stderr.split("exact match ")[-1]
            em, f1 = float(printed.split(",")[0]), float(printed.split("F1 ")[1].split(" ")[0])
            assert abs(em - float(r["exact_match"])) < 0.01 and abs(f1 - float(r["f1"])) < 0.01, (em, f1, r)
            worst = max(worst, err, merr)
            print(f"{family} {kind}: extractive QA, {len(lines)} questions in {windows} windows: max |lora-gpu − PEFT| / max |PEFT| = "
                  f"{err:.2e}; merged ({type(mm).__name__}) vs PEFT {merr:.2e}; exact match {em:.2f}, F1 {f1:.2f} = torchmetrics' SQuAD")
            continue
        labels = json.load(open(os.path.join(out, "labels.json")))
        id2label = {int(k): v for k, v in labels["id2label"].items()}
        lines = [json.loads(l) for l in open(test)]
        tok = AutoTokenizer.from_pretrained(MODEL)
        if kind == "tags":
            model = AutoPeftModelForTokenClassification.from_pretrained(
                out, num_labels=labels["num_labels"], id2label=id2label, label2id=labels["label2id"], torch_dtype=torch.float32).eval()
            enc = tok([l["tokens"] for l in lines], is_split_into_words=True, truncation=True, max_length=MAX_LEN,
                      padding=True, return_tensors="pt")
            with torch.no_grad():
                ref = model(**enc).logits
            err = 0.0
            for k, p in enumerate(preds):
                ours = torch.tensor(p["logits"])   # every token's logits (predict keeps them all)
                err = max(err, ((ours - ref[k, :len(ours)]).abs().max() / ref.abs().max()).item())
            merged = os.path.join(tmp, family + kind + "_merged")
            run([BIN, "merge", "--model", base_model, "--adapter", out, "--output", merged])
            mm = AutoModelForTokenClassification.from_pretrained(merged, torch_dtype=torch.float32).eval()
            with torch.no_grad():
                merr = ((mm(**enc).logits - ref).abs().max() / ref.abs().max()).item()
            # The scores predict prints equal seqeval's on the same predictions.
            # Words predict could not read (cut by truncation) are null on both sides' lists; score the rest, as predict does.
            kept = [[(t, q) for t, q in zip(p["label"], p["prediction"]) if t is not None and q is not None] for p in preds]
            f1 = seqeval_f1([[t for t, _ in k] for k in kept], [[q for _, q in k] for k in kept])
            printed = float(predicted.stderr.split("F1 ")[-1])
            assert abs(printed - f1) < 1e-4, (printed, f1)
            worst = max(worst, err, merr)
            print(f"{family} {kind}: token classification, {labels['num_labels']} tags, {len(lines)} lines: "
                  f"max |lora-gpu − PEFT| / max |PEFT| = {err:.2e}; merged ({type(mm).__name__}) vs PEFT {merr:.2e}; "
                  f"entity F1 {printed:.4f} = seqeval {f1:.4f}")
            continue
        model = AutoPeftModelForSequenceClassification.from_pretrained(
            out, num_labels=labels["num_labels"], id2label=id2label,
            label2id=labels["label2id"], problem_type=labels["problem_type"], pad_token_id=labels["pad_token_id"],
            torch_dtype=torch.float32).eval()
        enc = tok([l["text"] for l in lines], [l["text_pair"] for l in lines] if kind == "pairs" else None,
                  truncation=True, max_length=MAX_LEN, padding=True, return_tensors="pt")
        with torch.no_grad():
            ref = model(**enc).logits
        ours = torch.tensor([p["logits"] for p in preds])
        err = ((ours - ref).abs().max() / ref.abs().max()).item()
        # lora-gpu merge: a *ForSequenceClassification checkpoint that transformers loads alone.
        merged = os.path.join(tmp, family + kind + "_merged")
        run([BIN, "merge", "--model", base_model, "--adapter", out, "--output", merged])
        mm = AutoModelForSequenceClassification.from_pretrained(merged, torch_dtype=torch.float32).eval()
        with torch.no_grad():
            merged_logits = mm(**enc).logits
        merr = ((merged_logits - ref).abs().max() / ref.abs().max()).item()
        worst = max(worst, err, merr)
        if kind == "names":
            # lora-gpu embed with this adapter: the hidden states PEFT's model computes, pooled.
            for pooling in ["last", "mean"]:
                emb = [json.loads(l)["embedding"] for l in run([BIN, "embed", "--model", MODEL, "--adapter", out, "--data", test,
                                                                  "--max-seq-len", str(MAX_LEN), "--pooling", pooling,
                                                                  "--normalize", "--device", "cpu"]).stdout.splitlines()]
                single = tok([l["text"] for l in lines], truncation=True, max_length=MAX_LEN, padding=True, return_tensors="pt")
                with torch.no_grad():
                    h = model.base_model.model.model(**single).last_hidden_state
                m = single["attention_mask"]
                pooled = (h[torch.arange(h.shape[0]), m.sum(1) - 1] if pooling == "last"
                          else (h * m[..., None]).sum(1) / m.sum(1, keepdim=True))
                eerr = (torch.tensor(emb) - torch.nn.functional.normalize(pooled, dim=-1)).abs().max().item()
                worst = max(worst, eerr)
                print(f"embed --pooling {pooling} --normalize with this adapter vs PEFT's hidden states: max |Δ| = {eerr:.2e}")
        print(f"{family} {kind}: {labels['problem_type']}, {labels['num_labels']} label(s), {len(lines)} lines: "
              f"max |lora-gpu − PEFT| / max |PEFT| = {err:.2e}; merged ({type(mm).__name__}) vs PEFT {merr:.2e}")
print(f"worst {worst:.2e}")
sys.exit(0 if worst < 1e-4 else 1)
