#!/usr/bin/env bash
# Installs the Debian packages lora-gpu needs, only those that are missing:
# the OpenCL ICD loader and headers, OpenBLAS (the reference in tests and
# benchmarks) and pocl (the OpenCL CPU device used here and in CI).
set -euo pipefail
packages=(ocl-icd-opencl-dev opencl-headers libopenblas-dev pocl-opencl-icd)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
command -v swift >/dev/null || { echo "setup: Swift 6 is required (swift not on PATH)" >&2; exit 1; }
