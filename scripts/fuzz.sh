#!/usr/bin/env bash
# libFuzzer runs of the input parsers (issue 9).
#   scripts/fuzz.sh [TARGET...]     targets: safetensors gguf tokenizer_json jsonl_sample jinja (default: all)
#   FUZZ_SECONDS=N                  seconds per target (default 60)
# Two binaries are built with -sanitize=fuzzer,address: the LoraModel file-format sources
# (safetensors, GGUF) and all of LoraText (tokenizer.json, JSONL + chat template + masker, Jinja),
# each compiled with its Fuzz/<Model|Text>/*.swift harness into one module over LoraBase (a static
# library built first with the same flags); FUZZ_TARGET selects the
# target at run time. Each run starts from the committed seeds in Fuzz/corpus/<target>/ and grows a
# working corpus under .fuzz/corpus/<target>/; crashes, leaks and timeouts go to .fuzz/crashes/<target>/
# (gitignored). Exit status 1 when any target found a crash.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET="${FUZZ_SECONDS:-60}"
OUT=.fuzz
mkdir -p "$OUT/bin"
FLAGS=(-sanitize=fuzzer,address -parse-as-library -O -g)

# LoraBase (JSON, mapped files, …), which both harness modules import, as a static library.
BASE="$OUT/base"
build_base() {
    local newest
    newest=$(ls -t Sources/LoraBase/*.swift | head -1)
    if [[ ! -f "$BASE/libLoraBase.a" || "$newest" -nt "$BASE/libLoraBase.a" ]]; then
        echo "building $BASE/libLoraBase.a"
        mkdir -p "$BASE"
        (cd "$BASE" && swiftc -sanitize=fuzzer,address -O -g -parse-as-library -module-name LoraBase -emit-module \
            -emit-library -static "$OLDPWD"/Sources/LoraBase/*.swift -o libLoraBase.a)
    fi
}

build() {  # name, sources...
    local name=$1; shift
    local bin="$OUT/bin/fuzz-$name"
    local newest
    build_base
    newest=$(ls -t "$@" Sources/LoraBase/*.swift | head -1)
    if [[ ! -x "$bin" || "$newest" -nt "$bin" ]]; then
        echo "building $bin"
        swiftc "${FLAGS[@]}" -I "$BASE" -L "$BASE" -lLoraBase -module-name "Fuzz$name" "$@" -o "$bin"
    fi
}

targets=("$@")
[[ ${#targets[@]} -eq 0 ]] && targets=(safetensors gguf tokenizer_json jsonl_sample jinja)
need_model=0; need_text=0
for t in "${targets[@]}"; do
    case $t in
        safetensors|gguf) need_model=1 ;;
        tokenizer_json|jsonl_sample|jinja) need_text=1 ;;
        *) echo "unknown target $t" >&2; exit 2 ;;
    esac
done
if [[ $need_model == 1 ]]; then
    build Model Sources/LoraModel/Checkpoint/{SafeTensors,GGUF,GGUFTensors,GGUFTokenizer,ModelConfig}.swift \
        Sources/LoraModel/Adapter/LoraConfig.swift Fuzz/Model/*.swift
fi
if [[ $need_text == 1 ]]; then
    build Text $(find Sources/LoraText -name '*.swift' | sort) Fuzz/Text/*.swift
fi

# The file targets write each input to a file: in memory when /dev/shm is there.
scratch=/tmp
[[ -d /dev/shm && -w /dev/shm ]] && scratch=/dev/shm
export FUZZ_SCRATCH_DIR=$scratch

status=0
for t in "${targets[@]}"; do
    case $t in safetensors|gguf) bin=$OUT/bin/fuzz-Model ;; *) bin=$OUT/bin/fuzz-Text ;; esac
    mkdir -p "$OUT/corpus/$t" "$OUT/crashes/$t"
    echo "== $t: ${SECONDS_PER_TARGET}s"
    # -rss_limit_mb bounds a single input's memory; -timeout flags an input that takes over 10 s.
    if ! FUZZ_TARGET=$t ASAN_OPTIONS="malloc_context_size=128" LSAN_OPTIONS="suppressions=$PWD/Fuzz/lsan.supp:print_suppressions=0" "$bin" -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
            -max_len=65536 -print_final_stats=1 -artifact_prefix="$OUT/crashes/$t/" \
            "$OUT/corpus/$t" "Fuzz/corpus/$t" 2>&1 | tee "$OUT/$t.log" | grep -E "^(#[0-9]+ +DONE|stat::|==[0-9]+==ERROR|SUMMARY|artifact_prefix|Test unit written)" ; then
        :
    fi
    rm -f "$scratch"/lora-gpu-fuzz-*.safetensors "$scratch"/lora-gpu-fuzz-*.gguf
    if ls "$OUT/crashes/$t/"* >/dev/null 2>&1; then
        echo "   crashes in $OUT/crashes/$t/:"; ls "$OUT/crashes/$t/"; status=1
    fi
done
exit $status
