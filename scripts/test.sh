#!/usr/bin/env bash
# The test command: installs what is missing, builds, runs the whole suite on
# the OpenCL device (pocl in CI) with the device's kernel configuration and
# again with the GPU one, then smoke-runs the CLI. Ends with "N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-debian.sh
scripts/setup-mpi.sh
swift build --build-tests
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
swift test --skip-build 2>&1 | tee -a "$log" || status=1
# The GPU kernel configuration (cooperative row reductions through __local
# memory, GPU tile and local sizes), so those paths are proven on pocl too.
LORA_GPU_KERNEL_CONFIG=gpu swift test --skip-build 2>&1 | tee -a "$log" || status=1
swift build --product lora-gpu
bin="$(swift build --show-bin-path)/lora-gpu"
"$bin" devices
"$bin" bench --quick --runs 1 --json "${TMPDIR:-/tmp}/lora-gpu-bench-smoke.json"
"$bin" inspect Tests/Fixtures/reference/qwen2_bias_lora_only/model \
  --lora-config Tests/Fixtures/reference/qwen2_bias_lora_only/adapter_initial > /dev/null
# XCTest closes each run with "Test Suite 'All tests' passed|failed" and its "Executed N tests, with F failures".
passed=0; failed=0
while read -r n f; do passed=$((passed + n - f)); failed=$((failed + f)); done < <(
  awk '/^Test Suite .All tests. (passed|failed)/{getline; print $2, $5}' "$log")
echo "$passed passed, $failed failed"
exit $status
