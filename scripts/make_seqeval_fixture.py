#!/usr/bin/env python3
"""Entity scores of random tag sequences as seqeval computes them (default
mode: lenient chunking of IOB2, IOB1 and IOBES tags), and scikit-learn's
accuracy and F1 (macro and micro) of random class predictions: the figures
lora-gpu's evaluation and `predict` print must equal.

    /opt/lora-ref-venv/bin/python scripts/make_seqeval_fixture.py Tests/Fixtures/tasks/scores.json
"""
import json
import random
import sys

import seqeval
import sklearn
from seqeval.metrics import accuracy_score, f1_score, precision_score, recall_score
from seqeval.metrics.sequence_labeling import get_entities
from sklearn.metrics import accuracy_score as sk_accuracy, f1_score as sk_f1

OUT = sys.argv[1] if len(sys.argv) > 1 else "Tests/Fixtures/tasks/scores.json"
random.seed(3)
TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "E-LOC", "S-PER", "I-MISC", "B-MISC"]
tagging = []
for _ in range(40):
    n = random.randint(1, 6)
    truth = [[random.choice(TAGS) for _ in range(random.randint(1, 9))] for _ in range(n)]
    pred = [[t if random.random() < 0.6 else random.choice(TAGS) for t in s] for s in truth]
    tagging.append(dict(truth=truth, predicted=pred, entities=[[list(e) for e in get_entities(s)] for s in truth],
                        accuracy=accuracy_score(truth, pred), precision=precision_score(truth, pred),
                        recall=recall_score(truth, pred), f1=f1_score(truth, pred)))
classes = []
for _ in range(30):
    k = random.randint(2, 6)
    y = [random.randrange(k) for _ in range(random.randint(1, 25))]
    p = [t if random.random() < 0.5 else random.randrange(k) for t in y]
    classes.append(dict(classes=k, truth=y, predicted=p, accuracy=sk_accuracy(y, p),
                        macro_f1=sk_f1(y, p, average="macro", zero_division=0)))
with open(OUT, "w") as f:
    json.dump(dict(versions=dict(seqeval=getattr(seqeval, "__version__", "?"), sklearn=sklearn.__version__),
                   tagging=tagging, classes=classes), f)
print(len(tagging), "tagging cases,", len(classes), "class cases")
