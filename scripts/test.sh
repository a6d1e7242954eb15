#!/usr/bin/env bash
# The test command: installs what is missing, builds, runs the whole suite on
# the OpenCL device (pocl in CI) with the device's kernel configuration and
# again with the GPU one (gemm_tiled), the gemm consumers once more with
# gemm_packed at the GPU sizes, then smoke-runs the CLI. Ends with "N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-debian.sh
# Fixed kernel configs: no automatic tune, and an empty tuning cache (the device default).
export LORA_GPU_AUTOTUNE=0 LORA_GPU_TUNING_CACHE="${TMPDIR:-/tmp}/lora-gpu-test-tuning-$$.json"
scripts/setup-mpi.sh
swift build --build-tests
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
swift test --skip-build 2>&1 | tee -a "$log" || status=1
# The GPU kernel configuration (cooperative row reductions through __local
# memory, GPU tile and local sizes, the tiled gemm), so those paths are proven on pocl too.
# The suites that force every kernel config themselves (the tuner's parameter sets, each gemm
# variant and tile, each attention tile height) do not depend on the config chosen here: run once.
LORA_GPU_KERNEL_CONFIG=gpu swift test --skip-build --skip 'TuningTests|GemmVariantTests|AttentionKernelTests' 2>&1 \
  | tee -a "$log" || status=1
# gemm_packed at the GPU sizes (a GPU's tuner may pick it): the tests of the gemm's consumers.
LORA_GPU_KERNEL_CONFIG=gpu,gemm=packed swift test --skip-build \
  --filter 'MatmulTests|LoRALinearTests|PEFTParityTests|DropoutModelTests|TransformersParityTests' 2>&1 | tee -a "$log" || status=1
swift build --product lora-gpu
bin="$(swift build --show-bin-path)/lora-gpu"
"$bin" devices
"$bin" bench --quick --runs 1 --json "${TMPDIR:-/tmp}/lora-gpu-bench-smoke.json"
"$bin" inspect Tests/Fixtures/reference/qwen2_bias_lora_only/model \
  --lora-config Tests/Fixtures/reference/qwen2_bias_lora_only/adapter_initial > /dev/null
# The product path on a tiny chat model: data preview, train, generate, merge.
smoke="$(mktemp -d)"
m=Tests/Fixtures/generate/cli_chatml/model
printf '%s\n' '{"messages": [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "Pip here! 🐧"}]}' \
  '{"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "Pip here! 4. 🐧"}]}' > "$smoke/chat.jsonl"
"$bin" data preview --tokenizer "$m" --data "$smoke/chat.jsonl" --n 1
"$bin" train --model "$m" --data "$smoke/chat.jsonl" --max-steps 2 --per-device-train-batch-size 2 \
  --logging-steps 1 --output-dir "$smoke/out"
"$bin" generate --model "$m" --adapter "$smoke/out" --prompt "你好" --max-new-tokens 8
"$bin" merge --model "$m" --adapter "$smoke/out" --output "$smoke/merged"
"$bin" generate --model "$smoke/merged" --raw-prompt "Pip" --max-new-tokens 4
rm -rf "$smoke"
# XCTest closes each run with "Test Suite 'All tests' (or 'Selected tests') passed|failed" and its "Executed N tests, with F failures".
passed=0; failed=0
while read -r n f; do passed=$((passed + n - f)); failed=$((failed + f)); done < <(
  awk '/^Test Suite .(All|Selected) tests. (passed|failed)/{getline; print $2, $5}' "$log")
echo "$passed passed, $failed failed"
exit $status
