#!/usr/bin/env bash
# A weight larger than one OpenCL buffer (issue 9), end to end on the device at hand.
#
#   scripts/check-large-weights.sh [--work DIR] [--vocab V] [--hidden H] [--skip-build]
#
# Makes (transformers, fp32) a Llama whose tied embedding is a 72B model's — 152064 × 8192,
# 4.98 GB — over one small layer, then `lora-gpu train`s 2 steps of LoRA on 2 rows × 64 tokens.
# The embedding is past a 4 GiB CL_DEVICE_MAX_MEM_ALLOC_SIZE (Intel GPUs; pocl when the host's
# free memory is low), so the run only works when the frozen weight is kept in parts. pocl derives
# its limit from the host's free memory at start-up (4–8 GiB on a 24 GiB host), so the run plans
# against --max-alloc (default 4G) through LORA_GPU_DEVICE_MEMORY=<the device's global memory>,SIZE;
# the device's own limit still applies to every buffer made. The plan must show the parts.
# Checked: the run finishes and writes the adapter, and its first loss (B = 0: the base
# model's) equals PyTorch's loss on the same rows within 1e-4 (relative).
# Needs ≈ 12 GB of host memory for lora-gpu (pocl keeps device buffers in host memory) and
# ≈ 11 GB for the transformers side, one after the other, and ≈ 6 GB of disk in --work.
# Python: $LORA_REF_PYTHON, else /opt/lora-ref-venv/bin/python (torch, transformers, safetensors).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK="" VOCAB=152064 HIDDEN=8192 BUILD=1 MAXALLOC=4G
while [ $# -gt 0 ]; do
    case "$1" in
        --work) WORK=$2; shift 2 ;;
        --vocab) VOCAB=$2; shift 2 ;;
        --hidden) HIDDEN=$2; shift 2 ;;
        --max-alloc) MAXALLOC=$2; shift 2 ;;
        --skip-build) BUILD=0; shift ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "check-large-weights.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
PY=${LORA_REF_PYTHON:-/opt/lora-ref-venv/bin/python}
"$PY" -c 'import torch, transformers, safetensors' || { echo "check-large-weights.sh: $PY lacks torch/transformers" >&2; exit 1; }
[ -n "$WORK" ] || WORK=$(mktemp -d "${TMPDIR:-/tmp}/lora-gpu-large.XXXXXX")
mkdir -p "$WORK"
cd "$ROOT"
if [ "$BUILD" = 1 ]; then swift build -c release --product lora-gpu 2>&1 | tail -1; fi
BIN=$(swift build -c release --show-bin-path)/lora-gpu
MEM=$("$BIN" devices 2>/dev/null | grep -A3 '(default)' | grep -m1 'max allocation' | sed 's/^ *//')
echo "== device: $MEM"
GLOBAL=$(echo "$MEM" | sed -n 's/^global memory \([0-9]*\) MiB.*/\1/p')
export LORA_GPU_DEVICE_MEMORY=${LORA_GPU_DEVICE_MEMORY:-${GLOBAL:-65536}M,$MAXALLOC}
echo "== planning against LORA_GPU_DEVICE_MEMORY=$LORA_GPU_DEVICE_MEMORY"
echo "== model and data in $WORK"
[ -f "$WORK/model/config.json" ] || "$PY" scripts/check_large_weights.py model --out "$WORK/model" --vocab "$VOCAB" --hidden "$HIDDEN"
"$PY" scripts/check_large_weights.py data --out "$WORK/rows.jsonl" --vocab "$VOCAB"
echo "== PyTorch loss"
TORCH=$("$PY" scripts/check_large_weights.py loss --model "$WORK/model" --data "$WORK/rows.jsonl" | tail -1)
echo "$TORCH"
echo "== lora-gpu train"
rm -rf "$WORK/out"
start=$(date +%s)
/usr/bin/time -v "$BIN" train --model "$WORK/model" --data "$WORK/rows.jsonl" --output-dir "$WORK/out" \
    --per-device-train-batch-size 2 --max-seq-len 64 --max-steps 2 --logging-steps 1 --learning-rate 1e-4 \
    --r 8 --lora-alpha 16 --lora-dropout 0 --target-modules all-linear --seed 1 >"$WORK/train.log" 2>&1 \
    || { tail -30 "$WORK/train.log"; echo "check-large-weights.sh: lora-gpu train failed" >&2; exit 1; }
echo "train: $(( $(date +%s) - start )) s, peak RSS $(grep 'Maximum resident' "$WORK/train.log" | awk '{print $NF}') KiB"
grep -E "memory plan|weights  |total  |largest buffer|kept in parts" "$WORK/train.log" || true
grep -q "kept in parts" "$WORK/train.log" || { echo "check-large-weights.sh: nothing was kept in parts (limit $LORA_GPU_DEVICE_MEMORY)" >&2; exit 1; }
[ -f "$WORK/out/adapter_model.safetensors" ] || { echo "check-large-weights.sh: no adapter written" >&2; exit 1; }
"$PY" - "$WORK/out/metrics.jsonl" "$TORCH" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
first = next(r for r in rows if "loss" in r and r.get("step", 0) >= 1)
torch_loss = json.loads(sys.argv[2])["loss"]
rel = abs(first["loss"] - torch_loss) / abs(torch_loss)
print(f"first loss: lora-gpu {first['loss']:.6f}, PyTorch {torch_loss:.6f}, relative difference {rel:.2e}")
sys.exit(0 if rel <= 1e-4 else 1)
PY
echo "check-large-weights.sh: ok"
