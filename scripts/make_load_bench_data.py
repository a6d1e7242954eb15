#!/usr/bin/env python3
"""Data for the dataset-load throughput check (issue 22, item 2): `lora-gpu data preview` on
100,000 conversations with a realistic tokenizer. Run by scripts/bench_data_load.sh.

Writes under the output directory (default /tmp/loadbench):
  tok/tokenizer.json          qwen2_32k of scripts/bench_tokenizer.py (byte-level BPE, Qwen2 split,
                              trained by `tokenizers` on English docs + multilingual text)
  tok/tokenizer_config.json   ChatML template, <|im_end|> as eos
  conversations.jsonl         100,000 conversations: optional system turn, 1-4 user/assistant
                              exchanges, English and Chinese text, seeded
  long{N}.jsonl               one conversation of N = 500, 1,000, 2,000, 10,000 exchanges
"""
import json
import os
import random
import sys

sys.path.insert(0, os.path.dirname(__file__))
import bench_tokenizer  # noqa: E402

CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")

EN = ["How do I read a file line by line in Python?", "Use a with-statement and iterate over the file object.",
      "What is the capital of France?", "Paris is the capital of France.", "Summarise the text below in one sentence.",
      "The report says sales rose by 12 % in the third quarter, mostly in Europe.",
      "Write a haiku about autumn.", "Leaves drift on cold wind / the river carries them home / dusk settles in gold."]
ZH = ["请用一句话解释什么是低秩适配。", "低秩适配冻结预训练权重，只训练两个小矩阵。", "北京今天的天气怎么样？",
      "今天北京晴，最高气温十五度，适合出门散步。", "帮我把这句话翻译成英文：我们明天开会。", "We will have a meeting tomorrow.",
      "给我讲一个关于猫的小故事。", "从前有一只小猫，它每天都在窗台上晒太阳，看着街上的行人。"]


def sentence(rng):
    pool = EN if rng.random() < 0.5 else ZH
    return " ".join(rng.choice(pool) for _ in range(rng.randint(1, 4)))


def conversation(rng, exchanges):
    msgs = []
    if rng.random() < 0.3:
        msgs.append({"role": "system", "content": "You are a helpful assistant. 你是一个乐于助人的助手。"})
    for _ in range(exchanges):
        msgs.append({"role": "user", "content": sentence(rng)})
        msgs.append({"role": "assistant", "content": sentence(rng)})
    return {"messages": msgs}


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/loadbench"
    os.makedirs(os.path.join(out, "tok"), exist_ok=True)
    docs = bench_tokenizer.corpus()
    tok = bench_tokenizer.train_qwen2(docs)
    tok.add_special_tokens(["<|im_start|>", "<|im_end|>"])
    tok.save(os.path.join(out, "tok", "tokenizer.json"))
    with open(os.path.join(out, "tok", "tokenizer_config.json"), "w") as f:
        json.dump({"eos_token": "<|im_end|>", "pad_token": "<|im_end|>", "chat_template": CHATML,
                   "tokenizer_class": "PreTrainedTokenizerFast"}, f, ensure_ascii=False)
    rng = random.Random(22)
    with open(os.path.join(out, "conversations.jsonl"), "w") as f:
        for _ in range(100_000):
            f.write(json.dumps(conversation(rng, rng.randint(1, 4)), ensure_ascii=False) + "\n")
    for n in (500, 1000, 2000, 10000):
        with open(os.path.join(out, f"long{n}.jsonl"), "w") as f:
            f.write(json.dumps(conversation(rng, n), ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
