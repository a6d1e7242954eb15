#!/usr/bin/env bash
# lora-gpu train against PyTorch + transformers + PEFT, side by side on this host, in one run.
#
#   Benchmarks/compare-peft.sh [--layers N] [--warmup W] [--steps N] [--work DIR] [--skip-build] [--profile]
#
# One configuration, the same for both: a SmolLM2-135M-shaped Llama with random weights
# (hidden 576, intermediate 1536, 9/3 heads, vocabulary 49152 tied; 30 layers unless
# --layers), made with transformers' save_pretrained in fp32; LoRA r=16, alpha=32, dropout
# 0.05 on all seven projections; AdamW, lr 1e-4, clipping 1.0; batch 4 × 256 tokens; fp32;
# PyTorch with threads = cores and SDPA attention. Two data shapes, the same pre-tokenized
# rows for both trainers: plain text (every token trained) and chat (the first 60 % of each
# row labelled -100: 40 % trained). Each trainer runs W warm-up steps and N timed steps
# (defaults 2 and 3), one process after the other (never at the same time).
#
# Printed: host CPU model, vector flags (avx2 / avx512f), load average, pocl's device name;
# then per data shape tokens/s of both (the timed steps: lora-gpu from its metrics.jsonl
# tokens_per_second, PyTorch timed the same way, per step around forward + backward +
# clipping + AdamW) and peak resident memory of both (wait4's ru_maxrss of each process),
# and the ratios. Everything lands in --work (default: a fresh temporary directory):
# summary.json, each run's log, lora-gpu's metrics.jsonl.
#
# Time: on an idle 2-core host one 30-layer step takes ≈ 15–20 s in either trainer (issue 8's
# figures), so the defaults (4 runs × 5 steps, plus loading) should take ≈ 7–9 minutes with
# the build done (an estimate). Measured: --layers 8 --warmup 1 --steps 3 took 6 min 12 s at a
# load average of ≈ 9 on 2 cores. Other processes on the host slow both trainers and make
# the ratios noisy: the load average is printed at the start and the end, and PyTorch's two
# figures (plain, chat) should agree, as it does the same work on both shapes.
#
# Python: $LORA_REF_PYTHON, else /opt/lora-ref-venv/bin/python, else a venv made once in
# ${XDG_CACHE_HOME:-~/.cache}/lora-gpu/peft-venv (torch from /opt/wheels when a CPU wheel
# for this Python is there, else PyPI's torch; then transformers, peft, safetensors).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LAYERS=30 WARMUP=2 STEPS=3 BATCH=4 SEQ=256 WORK="" BUILD=1 PROFILE=()
while [ $# -gt 0 ]; do
    case "$1" in
        --layers) LAYERS=$2; shift 2 ;;
        --warmup) WARMUP=$2; shift 2 ;;
        --steps) STEPS=$2; shift 2 ;;
        --work) WORK=$2; shift 2 ;;
        --skip-build) BUILD=0; shift ;;
        --profile) PROFILE=(--profile); shift ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "compare-peft.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
for v in LAYERS WARMUP STEPS; do
    [[ ${!v} =~ ^[0-9]+$ ]] || { echo "compare-peft.sh: --${v,,} needs a whole number, got '${!v}'" >&2; exit 2; }
done
[ "$STEPS" -ge 1 ] && [ "$LAYERS" -ge 1 ] || { echo "compare-peft.sh: --steps and --layers must be at least 1" >&2; exit 2; }
[ -n "$WORK" ] || WORK=$(mktemp -d "${TMPDIR:-/tmp}/lora-gpu-compare.XXXXXX")
mkdir -p "$WORK"
PYSIDE="$ROOT/Benchmarks/peft_baseline.py"
export HF_HUB_DISABLE_PROGRESS_BARS=1 TRANSFORMERS_VERBOSITY=error TOKENIZERS_PARALLELISM=false

# ---- the Python environment
need='import torch, transformers, peft, safetensors'
PY=${LORA_REF_PYTHON:-}
if [ -z "$PY" ] && [ -x /opt/lora-ref-venv/bin/python ] && /opt/lora-ref-venv/bin/python -c "$need" 2>/dev/null; then
    PY=/opt/lora-ref-venv/bin/python
fi
if [ -z "$PY" ]; then
    VENV=${XDG_CACHE_HOME:-$HOME/.cache}/lora-gpu/peft-venv
    if ! "$VENV/bin/python" -c "$need" 2>/dev/null; then
        echo "== making a Python venv with torch, transformers, peft in $VENV (once)"
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install -q --upgrade pip
        tag=$("$VENV/bin/python" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
        wheel=$(ls /opt/wheels/torch-*+cpu-"$tag"-*.whl 2>/dev/null | head -1 || true)
        if [ -n "$wheel" ]; then "$VENV/bin/pip" install -q "$wheel"; else "$VENV/bin/pip" install -q torch; fi
        "$VENV/bin/pip" install -q transformers peft safetensors
    fi
    PY=$VENV/bin/python
fi

# ---- lora-gpu
cd "$ROOT"
if [ "$BUILD" = 1 ]; then
    echo "== swift build -c release --product lora-gpu"
    swift build -c release --product lora-gpu 2>&1 | tail -2
fi
BIN=$(swift build -c release --show-bin-path)/lora-gpu
[ -x "$BIN" ] || { echo "compare-peft.sh: $BIN is missing (run without --skip-build)" >&2; exit 1; }

# ---- the host
CORES=$(nproc)
CPU=$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
FLAGS=$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -xE 'avx2|avx512f|avx512_bf16|amx_tile|fma' | sort | paste -sd' ' || true)
DEVICE=$("$BIN" devices 2>/dev/null | grep -m1 '(default)' | sed 's/^ *device [0-9:]*: //' || true)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
VERSIONS=$("$PY" -c 'import torch, transformers, peft; print(f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}")')
HOST="CPU: $CPU, $CORES cores; flags: ${FLAGS:-none of avx2/avx512f}; pocl device: ${DEVICE:-?}; $VERSIONS"
echo "== host"
echo "CPU:          $CPU ($CORES cores)"
echo "vector flags: ${FLAGS:-none of avx2/avx512f}"
echo "pocl device:  ${DEVICE:-? (lora-gpu devices printed none)}"
echo "python side:  $VERSIONS, $CORES threads"
echo "load average: $LOAD_START (1/5/15 min) at the start"
echo "config:       $LAYERS layers, batch $BATCH × $SEQ, $WARMUP warm-up + $STEPS timed steps per run; work dir $WORK"

# ---- model and data (the same for both)
TOTAL=$((WARMUP + STEPS))
echo "== model and data"
"$PY" "$PYSIDE" model --out "$WORK/model" --layers "$LAYERS"
"$PY" "$PYSIDE" data --out "$WORK" --samples $((BATCH * TOTAL)) --seq "$SEQ"

# ---- the runs: for each data shape PyTorch, then lora-gpu
# logged NAME PATTERN CMD...: runs CMD under `measure`, its output to $WORK/NAME.log, the lines matching PATTERN shown.
logged() {
    local name=$1 pattern=$2; shift 2
    if ! "$PY" "$PYSIDE" measure --out "$WORK/measure-$name.json" -- "$@" >"$WORK/$name.log" 2>&1; then
        tail -20 "$WORK/$name.log"
        echo "compare-peft.sh: the $name run failed (log: $WORK/$name.log)" >&2
        exit 1
    fi
    grep -E "$pattern" "$WORK/$name.log" || true
}
for shape in plain chat; do
    echo "== $shape: PyTorch + transformers + PEFT"
    logged "torch-$shape" '^(torch|measure)' \
        "$PY" "$PYSIDE" torch --model "$WORK/model" --data "$WORK/$shape.jsonl" --out "$WORK/torch-$shape.json" \
        --batch "$BATCH" --warmup "$WARMUP" --steps "$STEPS" --threads "$CORES"
    echo "== $shape: lora-gpu train"
    rm -rf "$WORK/lora-$shape"
    logged "lora-$shape" '^(step|measure|profile|data|warning)' \
        "$BIN" train --model "$WORK/model" --data "$WORK/$shape.jsonl" --output-dir "$WORK/lora-$shape" \
        --per-device-train-batch-size "$BATCH" --max-seq-len "$SEQ" --max-steps "$TOTAL" --logging-steps 1 \
        --save-steps 1000000 --learning-rate 1e-4 --weight-decay 0 --max-grad-norm 1.0 \
        --r 16 --lora-alpha 32 --lora-dropout 0.05 --target-modules all-linear --seed 42 "${PROFILE[@]}"
done

echo "== load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (at the start: $LOAD_START)"
echo "== $HOST"
"$PY" "$PYSIDE" report --work "$WORK" --warmup "$WARMUP" --batch "$BATCH" --seq "$SEQ" --host "$HOST"
