#!/usr/bin/env bash
# lora-gpu on this machine's GPU, through the vendor's OpenCL driver:
#   1. finds the driver: an ICD file under /etc/OpenCL/vendors (or $OCL_ICD_VENDORS)
#      that is not pocl, else a vendor library named directly (NVIDIA ships
#      libnvidia-opencl.so.1 with its driver, often without an ICD file in
#      containers): then a temporary ICD directory points at it (OCL_ICD_VENDORS);
#   2. runs the kernel and model parity tests on the GPU (LORA_GPU_DEVICE=gpu)
#      with the GPU kernel config (gemm_tiled: LORA_GPU_KERNEL_CONFIG=gpu); the
#      kernel tests also build and check gemm_packed and every gemm_tiled tile;
#   3. `lora-gpu tune` (it searches gemm_tiled beside gemm_packed on a GPU) into
#      a private tuning cache, `lora-gpu bench` with the tuned config, and the
#      x·Wᵀ products with gemm_tiled and with gemm_packed forced, side by side;
#   4. a short `lora-gpu train` on the fixture model (pre-tokenized data), and,
#      with several GPUs and mpirun, the same run with one rank per GPU;
# and prints one table headed by the device's name. Where there is no GPU it
# says so and exits 0. Options: --quick (quick tune, bench --quick, one run).
# To check the script itself on a machine without a GPU: LORA_GPU_CHECK_KIND=cpu
# runs every step on the CPU device (pocl), LORA_GPU_CHECK_TESTS narrows the test filter.
set -uo pipefail
cd "$(dirname "$0")/.."
quick=0
[ "${1:-}" = "--quick" ] && quick=1
kind="${LORA_GPU_CHECK_KIND:-gpu}"
filter="${LORA_GPU_CHECK_TESTS:-LoraOpsTests|LoraModelTests}"
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

say() { echo "gpu-check: $*"; }
work="$(mktemp -d "${TMPDIR:-/tmp}/lora-gpu-check.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# ---- 1. the driver
vendors_dir="${OCL_ICD_VENDORS:-/etc/OpenCL/vendors}"
icds=()
if [ -d "$vendors_dir" ]; then
  for f in "$vendors_dir"/*.icd; do
    [ -f "$f" ] || continue
    grep -qi pocl "$f" && continue
    icds+=("$f")
  done
elif [ -f "$vendors_dir" ] && ! grep -qi pocl "$vendors_dir"; then
  icds+=("$vendors_dir")
fi
driver=""
if [ "$kind" != gpu ]; then
  driver="the installed ICDs ($kind run: checking the script, not a GPU)"
elif [ ${#icds[@]} -gt 0 ]; then
  driver="ICD ${icds[*]}: $(cat "${icds[@]}" | tr '\n' ' ')"
else
  # Vendor libraries named directly: NVIDIA, AMD (ROCm / legacy), Intel (NEO).
  libs=(libnvidia-opencl.so.1 libamdocl64.so libamdocl-orca64.so libigdrcl.so)
  dirs=(/usr/lib/x86_64-linux-gnu /usr/lib/aarch64-linux-gnu /usr/lib64 /usr/lib /usr/local/nvidia/lib64
        /usr/local/nvidia/lib /usr/lib/wsl/lib /opt/rocm/lib /opt/rocm/opencl/lib)
  found=""
  for l in "${libs[@]}"; do
    p="$( (ldconfig -p 2>/dev/null || /sbin/ldconfig -p 2>/dev/null) | awk -v l="$l" '$1 == l { print $NF; exit }')"
    if [ -z "$p" ]; then
      for d in "${dirs[@]}"; do [ -e "$d/$l" ] && { p="$d/$l"; break; }; done
    fi
    [ -n "$p" ] && { found="$p"; break; }
  done
  if [ -n "$found" ]; then
    mkdir -p "$work/vendors"
    echo "$found" > "$work/vendors/$(basename "$found" | sed 's/\.so.*//').icd"
    export OCL_ICD_VENDORS="$work/vendors"
    driver="$found (loaded directly through a temporary ICD file, OCL_ICD_VENDORS=$OCL_ICD_VENDORS)"
  fi
fi
if [ -z "$driver" ]; then
  hint=""
  command -v nvidia-smi >/dev/null && hint=" (nvidia-smi is present: install the driver's OpenCL part, e.g. libnvidia-compute / nvidia-opencl-icd)"
  say "no GPU: no vendor OpenCL driver found (no ICD file other than pocl's in $vendors_dir, no libnvidia-opencl.so.1, libamdocl64.so or libigdrcl.so)$hint"
  exit 0
fi
say "driver: $driver"

# ---- build
if ! swift build --build-tests >"$work/build.log" 2>&1; then
  tail -30 "$work/build.log"; say "build failed"; exit 1
fi
bin="$(swift build --show-bin-path)/lora-gpu"
"$bin" devices >"$work/devices.txt" 2>&1 || true
if ! grep -q "\[$kind\]" "$work/devices.txt"; then
  cat "$work/devices.txt"
  say "no GPU: the OpenCL driver ($driver) lists no $kind device"
  exit 0
fi
device="$(grep -m1 "\[$kind\]" "$work/devices.txt" | sed -E "s/^ *device [0-9]+:[0-9]+: //; s/ \[$kind\].*//")"
ngpus="$(grep -c "\[$kind\]" "$work/devices.txt")"
say "device: $device ($ngpus $kind device(s))"
export LORA_GPU_DEVICE=$kind
# A private tuning cache: the tests see the device default, tune writes here,
# bench and train read what it chose; the user's cache is left alone.
export LORA_GPU_TUNING_CACHE="$work/tuning.json" LORA_GPU_AUTOTUNE=0
rows=()
row() { rows+=("$(printf '| %-44s | %-6s | %s |' "$1" "$2" "$3")"); }

# ---- 2. parity tests on the GPU, with the GPU kernel config (gemm_tiled)
t0=$(date +%s)
LORA_GPU_KERNEL_CONFIG=gpu swift test --skip-build --filter "$filter" >"$work/tests.log" 2>&1
test_rc=$?
summary="$(awk '/^Test Suite .Selected tests. (passed|failed)/{getline; print}' "$work/tests.log" | tail -1 | sed 's/^[[:space:]]*//')"
row "parity tests, config gpu (gemm_tiled)" "$([ $test_rc -eq 0 ] && echo ok || echo FAILED)" \
  "$filter: ${summary:-no summary, see log}, $(( $(date +%s) - t0 )) s"
[ $test_rc -eq 0 ] || grep -E 'error:|failed' "$work/tests.log" | head -20

# ---- 3. tune and bench
if "$bin" --help 2>/dev/null | sed -n '/SUBCOMMANDS/,$p' | grep -qE '^ +tune( |$)'; then
  tune_args=(tune --device "$kind" --force)
  # A GPU searches gemm_tiled anyway; a cpu check run asks for it (LORA_GPU_TUNE_TILED).
  [ "$kind" = gpu ] || export LORA_GPU_TUNE_TILED=1
  [ $quick -eq 1 ] && tune_args+=(--quick)
  t0=$(date +%s)
  "$bin" "${tune_args[@]}" >"$work/tune.log" 2>&1
  rc=$?
  row "lora-gpu tune" "$([ $rc -eq 0 ] && echo ok || echo FAILED)" "$(tail -1 "$work/tune.log" | sed "s|; stored in .*||"), $(( $(date +%s) - t0 )) s"
  # The best candidate of each gemm variant (aggregate GFLOP/s over the tuning products).
  for v in packed tiled; do
    best="$(awk -v v="gemm=$v" 'index($0, v) && /GFLOP\/s$/ { g = $(NF - 1) + 0; if (g > b) { b = g; c = $1 } } END { if (b > 0) printf "%.1f GFLOP/s (%s)", b, c }' "$work/tune.log")"
    row "tune: best gemm_$v" "$([ -n "$best" ] && echo ok || echo n/a)" "${best:-not searched on this device}"
  done
  [ $rc -eq 0 ] || tail -5 "$work/tune.log"
else
  row "lora-gpu tune" "n/a" "this build has no tune subcommand"
fi
bench_args=(--device "$kind" --json "$work/bench.json")
[ $quick -eq 1 ] && bench_args+=(--quick --runs 1)
"$bin" bench "${bench_args[@]}" >"$work/bench.txt" 2>&1
rc=$?
cat "$work/bench.txt"
row "lora-gpu bench" "$([ $rc -eq 0 ] && echo ok || echo FAILED)" \
  "$(sed -n 's/^gemm kernel: //p' "$work/bench.txt" | head -1); $(grep -c '' "$work/bench.txt") lines (above)"
# The two variants on the same products, each forced: GFLOP/s of the x·Wᵀ rows.
for cfg in gpu "gpu,gemm=packed"; do
  variant_args=(--device "$kind" --only matmul --kernel-config "$cfg")
  [ $quick -eq 1 ] && variant_args+=(--quick --runs 1)
  "$bin" bench "${variant_args[@]}" >"$work/bench-$cfg.txt" 2>&1
  rc=$?
  # A row: name, shape, ms, rate, unit, "|", BLAS ms, BLAS GFLOP/s, ratio: "shape rate" from the end.
  rates="$(awk '/^matmul NT packed/ && NF >= 9 { printf "%s%s %s", sep, $(NF - 7), $(NF - 5); sep = ", " }' "$work/bench-$cfg.txt")"
  kernel="$(sed -n 's/^gemm kernel: \([a-z_]*\).*/\1/p' "$work/bench-$cfg.txt" | head -1)"
  row "bench x*W^T, --kernel-config $cfg" "$([ $rc -eq 0 ] && echo ok || echo FAILED)" "${kernel:-?}: GFLOP/s ${rates:-none}"
  [ $rc -eq 0 ] || tail -5 "$work/bench-$cfg.txt"
done

# ---- 4. a short train on the fixture model
# 64 pre-tokenized rows (ids 3…66, a prompt of 1…n/2 tokens masked with -100); awk, so no Python is needed.
awk 'BEGIN { srand(7); for (r = 0; r < 64; r++) {
  n = 8 + int(rand() * 24); p = 1 + int(rand() * int(n / 2)); ids = ""; lab = ""
  for (i = 0; i < n; i++) { t = 3 + int(rand() * 64); ids = ids (i ? ", " : "") t; lab = lab (i ? ", " : "") (i < p ? -100 : t) }
  printf "{\"input_ids\": [%s], \"labels\": [%s]}\n", ids, lab } }' >"$work/data.jsonl"
train_args=(train --model Tests/Fixtures/reference/llama_gqa_untied/model --data "$work/data.jsonl"
            --per-device-train-batch-size 8 --learning-rate 1e-2 --max-steps 20 --logging-steps 5 --save-steps 100
            --target-modules all-linear)
t0=$(date +%s.%N)
"$bin" "${train_args[@]}" --gradient-accumulation-steps 2 --output-dir "$work/train1" >"$work/train1.log" 2>&1
rc=$?
t1=$(date +%s.%N)
last="$(tail -1 "$work/train1/metrics.jsonl" 2>/dev/null)"
row "train (fixture, 20 steps, 1 device)" "$([ $rc -eq 0 ] && echo ok || echo FAILED)" \
  "$(secs "$t0" "$t1") s; last: ${last:-no metrics}"
[ $rc -eq 0 ] || tail -5 "$work/train1.log"
if [ "$ngpus" -gt 1 ] && command -v mpirun >/dev/null; then
  root=(); [ "$(id -u)" -eq 0 ] && root=(--allow-run-as-root)
  t0=$(date +%s.%N)
  # One rank per GPU (each rank picks GPU local_rank mod count); accumulation halved: the same global batch.
  mpirun -np 2 "${root[@]}" "$bin" "${train_args[@]}" --gradient-accumulation-steps 1 \
    --output-dir "$work/train2" >"$work/train2.log" 2>&1
  rc=$?
  t1=$(date +%s.%N)
  last="$(tail -1 "$work/train2/metrics.jsonl" 2>/dev/null)"
  row "train (fixture, 20 steps, 2 ranks)" "$([ $rc -eq 0 ] && echo ok || echo FAILED)" \
    "$(secs "$t0" "$t1") s; last: ${last:-no metrics}"
fi

echo
echo "lora-gpu on $device — driver: $driver"
printf '| %-44s | %-6s | %s |\n' check result detail
echo "|----------------------------------------------|--------|--------|"
printf '%s\n' "${rows[@]}"
grep -q 'FAILED' <<<"${rows[*]}" && exit 1
exit 0
