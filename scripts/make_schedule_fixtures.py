#!/usr/bin/env python3
"""Learning-rate fixtures from transformers' own get_scheduler.

For every scheduler type lora-gpu supports, over 37 optimizer steps with a
base rate of 2e-4 and a few warmup settings, records the rate each optimizer
step uses (param_groups[0]["lr"] before optimizer.step(), then
scheduler.step(), as Trainer runs them), and the warmup steps
TrainingArguments.get_warmup_steps derives from a fractional warmup_steps.

Run: /opt/lora-ref-venv/bin/python scripts/make_schedule_fixtures.py
Writes Tests/Fixtures/schedule/schedules.json.
"""
import json
import math
import os
import tempfile

import torch
import transformers
from transformers import TrainingArguments, get_scheduler

TOTAL = 37
BASE = 2e-4
OUT = os.path.join(os.path.dirname(__file__), "..", "Tests", "Fixtures", "schedule", "schedules.json")


def rates(kind, warmup, total):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=BASE)
    sched = get_scheduler(kind, opt, num_warmup_steps=warmup, num_training_steps=total)
    out = []
    for _ in range(total):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def main():
    cases = []
    for kind in ["linear", "cosine", "constant", "constant_with_warmup"]:
        for warmup in [0, 5]:
            if kind == "constant" and warmup:
                continue
            cases.append({"type": kind, "warmup_steps": warmup, "total_steps": TOTAL, "base_lr": BASE,
                          # repr strings: exact, whatever JSON number parser reads them
                          "lrs": [repr(x) for x in rates(kind, warmup, TOTAL)]})
    with tempfile.TemporaryDirectory() as d:
        warmups = []
        for w in [0.1, 0.25, 0.5, 3]:
            args = TrainingArguments(output_dir=d, warmup_steps=w, report_to=[])
            warmups.append({"warmup_steps": w, "total_steps": TOTAL, "resolved": args.get_warmup_steps(TOTAL)})
    doc = {"transformers_version": transformers.__version__, "torch_version": torch.__version__,
           "cases": cases, "warmups": warmups}
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"wrote {OUT}: {len(cases)} schedules, {len(warmups)} warmup cases")


if __name__ == "__main__":
    main()
