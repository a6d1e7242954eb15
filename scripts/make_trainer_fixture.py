#!/usr/bin/env python3
"""A short run of transformers' own Trainer, for lora-gpu train to match.

Base model and starting adapter: Tests/Fixtures/reference/llama_gqa_untied
(model/, adapter_initial/). Twelve pre-tokenized samples (written to
Tests/Fixtures/trainer/train.jsonl) are trained for three optimizer steps:
micro-batches of 2, gradient accumulation 2 (loss averaged over all trained
tokens of the step, num_items_in_batch), linear schedule with one warmup
step, weight decay 0.1 (HF's decay mask), clipping at max_grad_norm 0.5.

Only the sample order is lora-gpu's: the Trainer reads the samples in the
order LoraText's Batching.order gives for seed 42, epoch 0 (a SplitMix64
Fisher–Yates, re-implemented below), through a sequential sampler; batches are
right-padded with id 0 and label -100 as Batching pads them.

Run: /opt/lora-ref-venv/bin/python scripts/make_trainer_fixture.py
An evaluation set of five samples (val.jsonl, batches of 2, in file order as
transformers' evaluation loop reads them) is evaluated after every step.

Writes Tests/Fixtures/trainer/{train.jsonl, val.jsonl, trainer.json, adapter_final/}.
"""
import json
import os
import random
import tempfile

import torch
import transformers
from peft import PeftModel
from torch.utils.data import Dataset, SequentialSampler
from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

HERE = os.path.dirname(os.path.abspath(__file__))
REF = os.path.join(HERE, "..", "Tests", "Fixtures", "reference", "llama_gqa_untied")
OUT = os.path.join(HERE, "..", "Tests", "Fixtures", "trainer")
M = (1 << 64) - 1
SETTINGS = dict(learning_rate=5e-3, lr_scheduler_type="linear", warmup_steps=1, weight_decay=0.1, max_grad_norm=0.5,
                per_device_train_batch_size=2, gradient_accumulation_steps=2, max_steps=3, seed=42)


def batching_order(n, seed, epoch):
    """LoraText.Batching.order: Fisher–Yates driven by SplitMix64."""
    idx = list(range(n))
    state = (seed ^ ((epoch * 0x9E3779B97F4A7C15) & M)) & M
    for i in range(n - 1, 0, -1):
        state = (state + 0x9E3779B97F4A7C15) & M
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
        z ^= z >> 31
        j = z % (i + 1)
        idx[i], idx[j] = idx[j], idx[i]
    return idx


def samples(count=12, seed=1234):
    rng = random.Random(seed)
    out = []
    for i in range(count):
        n = rng.randint(4, 13)
        ids = [rng.randint(3, 66) for _ in range(n)]
        if i % 4 == 3:
            labels = list(ids)  # every token trained: label 0 is not a prediction target
        else:
            p = rng.randint(1, n - 1)
            labels = [-100] * p + ids[p:]
        out.append({"input_ids": ids, "labels": labels})
    return out


class Rows(Dataset):
    def __init__(self, rows):
        self.rows = rows

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return self.rows[i]


def collate(rows):
    t = max(len(r["input_ids"]) for r in rows)
    ids = [r["input_ids"] + [0] * (t - len(r["input_ids"])) for r in rows]
    labels = [r["labels"] + [-100] * (t - len(r["labels"])) for r in rows]
    mask = [[1] * len(r["input_ids"]) + [0] * (t - len(r["input_ids"])) for r in rows]
    return {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels), "attention_mask": torch.tensor(mask)}


class InOrder(Trainer):
    def _get_train_sampler(self, train_dataset=None):
        return SequentialSampler(train_dataset if train_dataset is not None else self.train_dataset)


def main():
    os.makedirs(OUT, exist_ok=True)
    rows = samples()
    with open(os.path.join(OUT, "train.jsonl"), "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    val = samples(5, seed=99)
    with open(os.path.join(OUT, "val.jsonl"), "w") as f:
        for r in val:
            f.write(json.dumps(r) + "\n")
    ordered = [rows[i] for i in batching_order(len(rows), SETTINGS["seed"], 0)]
    base = AutoModelForCausalLM.from_pretrained(os.path.join(REF, "model"), dtype=torch.float32)
    model = PeftModel.from_pretrained(base, os.path.join(REF, "adapter_initial"), is_trainable=True)
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(output_dir=tmp, report_to=[], logging_steps=1, save_strategy="no",
                                 eval_strategy="steps", eval_steps=1, per_device_eval_batch_size=2,
                                 dataloader_drop_last=False, remove_unused_columns=False, **SETTINGS)
        trainer = InOrder(model=model, args=args, train_dataset=Rows(ordered), eval_dataset=Rows(val), data_collator=collate)
        trainer.train()
        logs = [h for h in trainer.state.log_history if "loss" in h]
        evals = [h for h in trainer.state.log_history if "eval_loss" in h]
    model.save_pretrained(os.path.join(OUT, "adapter_final"))
    os.remove(os.path.join(OUT, "adapter_final", "README.md"))  # a model-card template, not needed
    doc = {"transformers_version": transformers.__version__, "settings": SETTINGS,
           "order": batching_order(len(rows), SETTINGS["seed"], 0),
           "steps": [{k: h[k] for k in ("step", "epoch", "loss", "grad_norm", "learning_rate")} for h in logs],
           "eval": [{"step": h["step"], "eval_loss": h["eval_loss"]} for h in evals]}
    # repr strings as well: Foundation's JSON number parser on Linux is not correctly rounded.
    doc["learning_rates_repr"] = [repr(h["learning_rate"]) for h in logs]
    with open(os.path.join(OUT, "trainer.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(json.dumps(doc["steps"], indent=1))


if __name__ == "__main__":
    main()
