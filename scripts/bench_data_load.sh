#!/bin/bash
# Dataset-load throughput (issue 22, item 2): `lora-gpu data preview` on 100,000 conversations and on
# single conversations of 500-10,000 exchanges, no max_seq_len. Data and tokenizer from
# scripts/make_load_bench_data.py (the real `tokenizers` library, /opt/lora-ref-venv).
# Usage: scripts/bench_data_load.sh [workdir] [BASELINE_BINARY]
#   With a baseline binary (another build of lora-gpu), both run in the same session, and their
#   `data preview --json` outputs (every sample's ids and labels) are compared byte for byte.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/loadbench}
old=${2:-}
new=.build/release/lora-gpu
[ -x "$new" ] || swift build -c release --product lora-gpu
[ -f "$out/conversations.jsonl" ] || /opt/lora-ref-venv/bin/python scripts/make_load_bench_data.py "$out"
head -20000 "$out/conversations.jsonl" > "$out/c20k.jsonl"
bins=(NEW)
if [ -n "$old" ]; then
  bins=(OLD NEW)
  for f in c20k long500 long1000 long2000; do
    "$old" data preview --tokenizer "$out/tok" --data "$out/$f.jsonl" --json > "$out/old.json"
    "$new" data preview --tokenizer "$out/tok" --data "$out/$f.jsonl" --json > "$out/new.json"
    cmp "$out/old.json" "$out/new.json" && echo "$f: identical ids and labels ($(wc -l < "$out/new.json") samples)"
  done
fi
run() { local b=$1; shift; if [ "$b" = OLD ]; then "$old" "$@"; else "$new" "$@"; fi; }
for n in 500 1000 2000 10000; do
  for b in "${bins[@]}"; do
    [ "$b" = OLD ] && [ "$n" = 10000 ] && continue   # minutes on the quadratic baseline
    /usr/bin/time -f "$b $n exchanges: %e s" bash -c "$(declare -f run); old='$old' new='$new' run $b data preview --tokenizer '$out/tok' --data '$out/long$n.jsonl' --n 0 > /dev/null"
  done
done
for b in "${bins[@]}"; do
  /usr/bin/time -f "$b 100,000 conversations, all CPUs: %e s wall, %U s user" \
    bash -c "$(declare -f run); old='$old' new='$new' run $b data preview --tokenizer '$out/tok' --data '$out/conversations.jsonl' --n 0 | grep '^tokens'"
done
/usr/bin/time -f "NEW 100,000 conversations, one CPU (taskset -c 0): %e s wall" taskset -c 0 "$new" data preview \
  --tokenizer "$out/tok" --data "$out/conversations.jsonl" --n 0 > /dev/null
grep -m1 "model name" /proc/cpuinfo
