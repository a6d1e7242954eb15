#!/usr/bin/env python3
"""Tokenizer throughput: Python `tokenizers` side (run by scripts/bench_tokenizer.sh).

Builds a ~4 MB corpus of documents from text files on this machine (vim and
node.js docs: English prose, code, tables) plus generated multilingual documents
(Chinese, Japanese, Russian, emoji, accents), trains two realistic 32k
tokenizers on it with the real library (Qwen2-style byte-level BPE and
Llama-2-style BPE with byte_fallback), and times encode on every document.

Writes, under the output directory:
  corpus.bin                documents, each as a 4-byte little-endian length + UTF-8
  qwen2_32k/tokenizer.json, llama2_32k/tokenizer.json
  <name>/ids.bin            the ids of every document (count, then ids; uint32 LE)
  python.json               per tokenizer: seconds, tokens, MB
"""
import glob
import json
import os
import random
import struct
import sys
import time

import tokenizers
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

QWEN2_RE = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""


def corpus(target_bytes=4_000_000, doc_chars=2000):
    files = sorted(glob.glob("/usr/share/vim/vim90/doc/*.txt")) + sorted(glob.glob("/usr/share/doc/nodejs/api/*.md"))
    text = []
    size = 0
    for f in files:
        try:
            with open(f, encoding="utf-8", errors="replace") as fh:
                t = fh.read()
        except OSError:
            continue
        text.append(t)
        size += len(t.encode())
        if size > target_bytes * 0.9:
            break
    big = "\n".join(text)
    docs = [big[i:i + doc_chars] for i in range(0, len(big), doc_chars)]
    rng = random.Random(5)
    multi = ["我们今天学习自然语言处理，这是一个中文句子。", "これは日本語の文章です。東京は大きな都市です。",
             "Привет, как дела? Всё хорошо.", "café naïve résumé Ångström", "emoji 😀 👍🏽 👨\u200d👩\u200d👧 🇫🇷",
             "def f(x):\n\treturn x ** 2\n", "  spaced   out\t\ttext\r\n"]
    n_multi = len(docs) // 10
    for _ in range(n_multi):
        docs.append(" ".join(rng.choice(multi) for _ in range(rng.randint(10, 60))))
    rng.shuffle(docs)
    return [d.replace("\x00", "") for d in docs if d]


def train_qwen2(docs):
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_RE), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=32000, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(docs, trainer)
    return tok


def train_llama2(docs):
    tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never", split=True)
    trainer = trainers.BpeTrainer(vocab_size=32000, special_tokens=["<unk>", "<s>", "</s>"], limit_alphabet=1000,
                                  show_progress=False)
    tok.train_from_iterator(docs, trainer)
    j = json.loads(tok.to_str())
    vocab = j["model"]["vocab"]
    for b in range(256):
        vocab.setdefault("<0x%02X>" % b, len(vocab))
    tok = Tokenizer.from_str(json.dumps(j))
    # Llama-2 runs the whole normalized text through BPE as one word (no pre-tokenizer).
    tok.pre_tokenizer = None
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return tok


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/tokbench"
    os.makedirs(out, exist_ok=True)
    docs = corpus()
    with open(os.path.join(out, "corpus.bin"), "wb") as f:
        for d in docs:
            b = d.encode()
            f.write(struct.pack("<I", len(b)))
            f.write(b)
    mb = sum(len(d.encode()) for d in docs) / 1e6
    results = {"tokenizers_version": tokenizers.__version__, "documents": len(docs), "megabytes": mb}
    for name, train in [("qwen2_32k", train_qwen2), ("llama2_32k", train_llama2)]:
        t0 = time.time()
        tok = train(docs)
        print(f"{name}: trained in {time.time() - t0:.1f}s, vocab {tok.get_vocab_size()}", file=sys.stderr)
        os.makedirs(os.path.join(out, name), exist_ok=True)
        tok.save(os.path.join(out, name, "tokenizer.json"))
        tok = Tokenizer.from_file(os.path.join(out, name, "tokenizer.json"))  # fresh cache
        times = []
        cpu = []
        all_ids = None
        for _ in range(3):
            t0 = time.perf_counter()
            c0 = time.process_time()
            all_ids = [tok.encode(d).ids for d in docs]
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        tb = []
        for _ in range(2):
            t0 = time.perf_counter()
            tok.encode_batch(docs)
            tb.append(time.perf_counter() - t0)
        ntok = sum(len(x) for x in all_ids)
        results[name] = {"first_s": times[0], "best_s": min(times), "batch_best_s": min(tb), "tokens": ntok,
                         "cpu_first_s": cpu[0], "cpu_best_s": min(cpu)}
        with open(os.path.join(out, name, "ids.bin"), "wb") as f:
            for ids in all_ids:
                f.write(struct.pack("<I", len(ids)))
                f.write(struct.pack("<%dI" % len(ids), *ids))
        print(f"{name}: {ntok} tokens; encode one by one: first {mb / times[0]:.2f} MB/s, best {mb / min(times):.2f} MB/s "
              f"({ntok / min(times) / 1e6:.2f} M tokens/s); by CPU time best {mb / min(cpu):.2f} MB/s; encode_batch ({os.cpu_count()} threads) "
              f"{mb / min(tb):.2f} MB/s", file=sys.stderr)
    with open(os.path.join(out, "python.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
