#!/usr/bin/env python3
"""Renders the saved `lora-gpu bench --json` tables as the README's markdown.

    python3 scripts/bench_table.py Benchmarks/results/pocl-cpu-coretype-unset.json \
        Benchmarks/results/pocl-cpu-coretype-haswell.json
"""
import json
import sys

reports = [json.load(open(p)) for p in sys.argv[1:]]
labels = [f"OPENBLAS_CORETYPE={r['openblasCoretype']}" for r in reports]
rows = {}
order = []
for i, r in enumerate(reports):
    for row in r["rows"]:
        key = (row["name"], row["shape"])
        if key not in rows:
            rows[key] = [None] * len(reports)
            order.append(key)
        rows[key][i] = row

print(f"Device: {reports[0]['device']}; median of {reports[0]['runs']} runs after 2 warm-ups, "
      "OpenBLAS measured in the same process on the same shapes.\n")
head = "| kernel | shape | " + " | ".join(f"{l}: kernel / OpenBLAS (ratio)" for l in labels) + " |"
print(head)
print("|" + "---|" * (2 + len(reports)))
for key in order:
    cells = []
    for row in rows[key]:
        if row is None:
            cells.append("")
        elif row.get("blasRate") is not None:
            cells.append(f"{row['kernelRate']:.0f} / {row['blasRate']:.0f} GFLOP/s ({row['ratio']:.2f}×)")
        else:
            cells.append(f"{row['kernelRate']:.1f} {row['unit']} ({row['kernelMs']:.1f} ms)")
    print(f"| {key[0]} | {key[1]} | " + " | ".join(cells) + " |")
