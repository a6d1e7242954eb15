#!/usr/bin/env bash
# The main job: installs what is missing, builds the release binary and runs
# it. Until the trainer lands, the main job is the kernel benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-debian.sh
swift build -c release --product lora-gpu
"$(swift build -c release --show-bin-path)/lora-gpu" bench "$@"
