#!/usr/bin/env python3
"""llama.cpp's tokenizer test suite against `lora-gpu data tokenize FILE.gguf --no-special-tokens`.

llama.cpp ships real vocabularies as models/ggml-vocab-NAME.gguf with test inputs (.inp, separated by
"\\n__ggml_vocab_test__\\n") and the ids the model's original Hugging Face tokenizer gives (.out, one line
of space-separated ids per input, add_special_tokens=False). The files come with the source
distribution of llama-cpp-python on PyPI (vendor/llama.cpp/models):

    pip download --no-deps --no-binary :all: --no-build-isolation llama-cpp-python -d DIR   # needs cmake
    scripts/check_gguf_vocab_suite.py DIR/llama_cpp_python-*/vendor/llama.cpp/models [lora-gpu binary]

Prints per vocabulary the inputs whose ids equal the original's, and the first differences.
"""
import glob
import json
import os
import subprocess
import sys

SEP = "\n__ggml_vocab_test__\n"


def cases(inp, out):
    texts = open(inp, encoding="utf-8").read().split(SEP)
    if texts and texts[-1] == "":
        texts.pop()
    lines = open(out, encoding="utf-8").read().split("\n")
    want = [[int(x) for x in l.split()] for l in lines[:len(texts)]]
    return texts, want


def main():
    models = sys.argv[1]
    binary = sys.argv[2] if len(sys.argv) > 2 else ".build/debug/lora-gpu"
    total = ok_total = 0
    for gguf in sorted(glob.glob(os.path.join(models, "ggml-vocab-*.gguf"))):
        name = os.path.basename(gguf)[len("ggml-vocab-"):-len(".gguf")]
        if not os.path.exists(gguf + ".inp"):
            continue
        texts, want = cases(gguf + ".inp", gguf + ".out")
        stdin = "".join(json.dumps(t, ensure_ascii=False) + "\n" for t in texts)
        r = subprocess.run([binary, "data", "tokenize", gguf, "--no-special-tokens"], input=stdin.encode(),
                           capture_output=True)
        if r.returncode != 0:
            print(f"{name}: does not load: {r.stderr.decode(errors='replace').strip()[:200]}")
            total += len(texts)
            continue
        got = [json.loads(l) for l in r.stdout.decode().splitlines()]
        bad = [(t, g, w) for t, g, w in zip(texts, got, want) if g != w]
        ok = len(texts) - len(bad)
        total += len(texts)
        ok_total += ok
        print(f"{name}: {ok}/{len(texts)}")
        for t, g, w in bad[:3]:
            print(f"    {t!r}: got {g}, want {w}")
    print(f"all: {ok_total}/{total}")


if __name__ == "__main__":
    main()
