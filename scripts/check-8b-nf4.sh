#!/usr/bin/env bash
# Issue 18's scale proof, the NF4 route: the Llama-3-8B-shaped model of check-8b-q4_0.sh as a BF16 safetensors
# checkpoint (scripts/make_8b_bf16.py, ≈ 16 GB, made once under WORK), quantized to NF4 at load (`--quantize nf4`,
# as bitsandbytes' quantize_4bit does it) and trained by `lora-gpu train` for 2 steps of r 16 on all linears at
# batch 1 × 512 tokens with gradient checkpointing; prints the memory plan, the steps and the peak resident memory.
# The output is kept in Benchmarks/results/checks/8b-nf4.txt.
#   usage: scripts/check-8b-nf4.sh [WORK]   (default /tmp/lora-8b; LAYERS=N for a smaller trial)
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-/tmp/lora-8b}
PY=${PYTHON:-/opt/lora-ref-venv/bin/python}
LAYERS=${LAYERS:-32}
mkdir -p "$WORK"
MODEL="$WORK/llama-8b-bf16-L$LAYERS"
[ -f "$MODEL/config.json" ] || "$PY" scripts/make_8b_bf16.py "$MODEL" --layers "$LAYERS"
"$PY" - "$WORK/data.jsonl" <<'PYEOF'
import json, random, sys
random.seed(18)
ids = [random.randrange(300, 128000) for _ in range(512)]
open(sys.argv[1], "w").write(json.dumps({"input_ids": ids, "labels": ids}) + "\n")
PYEOF
swift build -c release --product lora-gpu >/dev/null
BIN="$(swift build -c release --show-bin-path)/lora-gpu"
rm -rf "$WORK/out-nf4"
echo "# $(date -u +%F) $(uname -m), $(nproc) cores; model $MODEL ($(du -sh "$MODEL" | cut -f1), BF16 safetensors)"
/usr/bin/time -v "$BIN" train --model "$MODEL" --data "$WORK/data.jsonl" --quantize nf4 --r 16 --lora-alpha 32 \
    --target-modules all-linear --per-device-train-batch-size 1 --max-seq-len 512 --max-steps 2 --gradient-checkpointing \
    --logging-steps 1 --save-steps 1000 --output-dir "$WORK/out-nf4" 2>&1 \
    | grep -vE "^\s+(Average|Exit|File system|Socket|Signals|Swaps|Page size|Voluntary|Involuntary|Minor|Major|Percent)"
