#!/usr/bin/env python3
"""Reference llama.cpp adapter files (issue 19, item 1): llama.cpp's own convert_lora_to_gguf.py
(from llama-cpp-python 0.3.36's source distribution on PyPI, vendor/llama.cpp, with its gguf-py)
run on PEFT adapters of the reference fixtures; `lora-gpu export` must write the same tensors
(ExportGGUFTests). Writes Tests/Fixtures/export_gguf/<fixture>.<outtype>.gguf.

    /opt/lora-ref-venv/bin/python scripts/make_export_fixtures.py [LLAMA_CPP_DIR]
LLAMA_CPP_DIR: an unpacked llama.cpp tree (default: the sdist is fetched and unpacked under
/tmp/llamacpp).
"""
import os
import subprocess
import sys
import tarfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_gguf_vocab_suite import VERSION, sdist_archive  # noqa: E402
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
fixtures = os.path.join(root, "Tests", "Fixtures")
out_dir = os.path.join(fixtures, "export_gguf")


def llama_cpp(dest="/tmp/llamacpp"):
    """vendor/llama.cpp of the sdist check_gguf_vocab_suite.py reads (the same VERSION), unpacked under dest."""
    tree = os.path.join(dest, f"llama_cpp_python-{VERSION}", "vendor", "llama.cpp")
    if os.path.exists(os.path.join(tree, "convert_lora_to_gguf.py")):
        return tree
    with tarfile.open(sdist_archive(dest)) as tar:
        tar.extractall(dest)
    return tree


def main():
    tree = sys.argv[1] if len(sys.argv) > 1 else llama_cpp()
    os.makedirs(out_dir, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=os.path.join(tree, "gguf-py"))
    # llama (GQA, every projection), rank and alpha patterns, rsLoRA on a tied model; and F16, Q8_0.
    # q8_0: blocks of 32 where a tensor's rows allow (lora_a of the 32-wide inputs), F16 elsewhere.
    for name, outtype in [("llama_gqa_untied", "f32"), ("llama_gqa_untied", "f16"), ("llama_layers_patterns", "f32"),
                          ("llama_tied_rslora_regex", "f32"), ("llama_gqa_untied", "q8_0")]:
        base = os.path.join(fixtures, "reference", name)
        out = os.path.join(out_dir, f"{name}.{outtype}.gguf")
        subprocess.run([sys.executable, os.path.join(tree, "convert_lora_to_gguf.py"), "--base", os.path.join(base, "model"),
                        "--outfile", out, "--outtype", outtype, os.path.join(base, "adapter_final")], check=True, env=env)
        print(out, os.path.getsize(out))


if __name__ == "__main__":
    main()
