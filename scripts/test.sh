#!/usr/bin/env bash
# The test command: installs what is missing, builds, runs the whole suite on
# the OpenCL device (pocl in CI), then smoke-runs the CLI.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-debian.sh
swift build --build-tests
swift test --skip-build
# Again with the GPU kernel configuration (cooperative row reductions through
# __local memory, GPU tile and local sizes), so those paths are proven on pocl.
LORA_GPU_KERNEL_CONFIG=gpu swift test --skip-build
swift build --product lora-gpu
bin="$(swift build --show-bin-path)/lora-gpu"
"$bin" devices
"$bin" bench --quick --runs 1 --json "${TMPDIR:-/tmp}/lora-gpu-bench-smoke.json"
