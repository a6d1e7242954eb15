#!/usr/bin/env python3
"""llama.cpp's tokenizer test suite against `lora-gpu data tokenize FILE.gguf --no-special-tokens`.

llama.cpp ships real vocabularies as models/ggml-vocab-NAME.gguf with test inputs (.inp, separated by
"\\n__ggml_vocab_test__\\n") and the ids the model's original Hugging Face tokenizer gives (.out, one line
of space-separated ids per input, add_special_tokens=False). The files come with the source
distribution of llama-cpp-python on PyPI (vendor/llama.cpp/models):

    scripts/check_gguf_vocab_suite.py --fetch [DIR] [lora-gpu binary]
        downloads llama-cpp-python 0.3.36's source distribution from PyPI into DIR (default
        /tmp/llama-cpp-vocab), unpacks vendor/llama.cpp/models, and runs the suite on it;
    scripts/check_gguf_vocab_suite.py MODELS_DIR [lora-gpu binary]
        runs it on a models/ directory already there.

Prints per vocabulary the inputs whose ids equal the original's, and the first differences.
"""
import glob
import json
import os
import subprocess
import sys
import tarfile
import urllib.request

VERSION = "0.3.36"

SEP = "\n__ggml_vocab_test__\n"


def cases(inp, out):
    texts = open(inp, encoding="utf-8").read().split(SEP)
    if texts and texts[-1] == "":
        texts.pop()
    lines = open(out, encoding="utf-8").read().split("\n")
    want = [[int(x) for x in l.split()] for l in lines[:len(texts)]]
    return texts, want


def sdist_archive(dest):
    """llama-cpp-python VERSION's source distribution from PyPI, downloaded once into dest; its path."""
    # PyPI's simple index in its JSON form (PEP 691).
    req = urllib.request.Request("https://pypi.org/simple/llama-cpp-python/",
                                 headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    files = json.load(urllib.request.urlopen(req))["files"]
    url = next(f["url"] for f in files if f["filename"] == f"llama_cpp_python-{VERSION}.tar.gz")
    os.makedirs(dest, exist_ok=True)
    archive = os.path.join(dest, os.path.basename(url))
    if not os.path.exists(archive):
        print(f"downloading {url}", file=sys.stderr)
        tmp = archive + ".part"
        urllib.request.urlretrieve(url, tmp)
        os.rename(tmp, archive)
    return archive


def fetch(dest):
    """vendor/llama.cpp/models of llama-cpp-python's sdist on PyPI, unpacked under dest."""
    models = os.path.join(dest, "models")
    if glob.glob(os.path.join(models, "ggml-vocab-*.gguf.inp")):
        return models
    archive = sdist_archive(dest)
    os.makedirs(models, exist_ok=True)
    with tarfile.open(archive) as tar:
        for m in tar.getmembers():
            parts = m.name.split("/")
            if m.isfile() and parts[1:4] == ["vendor", "llama.cpp", "models"] and len(parts) == 5 \
                    and parts[4].startswith("ggml-vocab-"):
                with tar.extractfile(m) as src, open(os.path.join(models, parts[4]), "wb") as out:
                    out.write(src.read())
    return models


def main():
    args = sys.argv[1:]
    if args and args[0] == "--fetch":
        args = args[1:]
        # The next argument is DIR unless it is the binary (an executable file).
        is_binary = bool(args) and os.path.isfile(args[0]) and os.access(args[0], os.X_OK)
        dest = args.pop(0) if args and not is_binary else "/tmp/llama-cpp-vocab"
        models = fetch(dest)
    else:
        models = args.pop(0)
    binary = args[0] if args else ".build/debug/lora-gpu"
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
