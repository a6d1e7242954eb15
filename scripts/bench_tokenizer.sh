#!/bin/bash
# Tokenizer throughput, Swift vs Python `tokenizers`, on the same documents and tokenizers.
# Usage: scripts/bench_tokenizer.sh [workdir]   (default /tmp/tokbench)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/tokbench}
mkdir -p "$out"
/opt/lora-ref-venv/bin/python scripts/bench_tokenizer.py "$out"
root="$PWD"
# Compiled inside $out so that no build product lands in the repository.
# LoraBase first (the tokenizer reads tokenizer.json with its JSON), as a static library.
(cd "$out" && swiftc -O -wmo -parse-as-library -module-name LoraBase -emit-module -emit-library -static \
  "$root"/Sources/LoraBase/*.swift -o libLoraBase.a)
(cd "$out" && swiftc -O -wmo -I . -L . -lLoraBase -module-name TokenizerBench "$root"/Sources/LoraText/Tokenizer/*.swift \
  "$root"/scripts/tokenizer_bench/main.swift -o "$out/bench")
"$out/bench" "$out"
grep -m1 "model name" /proc/cpuinfo
