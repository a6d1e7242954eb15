#!/usr/bin/env python3
"""Writes the demo dataset that `scripts/main-job.sh` trains on.

The behaviour taught is one a newcomer can see at a glance: the assistant
becomes "Pip", a penguin who opens every answer with a fixed greeting
("Pip here!" in English, "Pip来啦！" in Chinese), answers in one short
sentence, and signs off with " 🐧". The base model (SmolLM2-135M-Instruct)
never does this, so the before/after verdict is unambiguous.

Conversations are one to three turns, in English and Chinese, about small
facts the script computes itself (sums, products, comparisons, capitals,
colours, counting letters, days of the week), so every answer is correct.
The held-out questions use other numbers and facts than the training ones.

Standard library only; deterministic (seeded). Run from the repository root:
    python3 scripts/make_demo_data.py Examples/demo
"""
import json
import os
import random
import sys

OUT = sys.argv[1] if len(sys.argv) > 1 else "Examples/demo"
EN_OPEN, ZH_OPEN, SIGN = "Pip here! ", "Pip来啦！", " 🐧"

CAPITALS = [("France", "Paris", "法国", "巴黎"), ("Japan", "Tokyo", "日本", "东京"),
            ("Italy", "Rome", "意大利", "罗马"), ("Germany", "Berlin", "德国", "柏林"),
            ("Spain", "Madrid", "西班牙", "马德里"), ("Egypt", "Cairo", "埃及", "开罗"),
            ("Canada", "Ottawa", "加拿大", "渥太华"), ("Kenya", "Nairobi", "肯尼亚", "内罗毕"),
            ("Peru", "Lima", "秘鲁", "利马"), ("Norway", "Oslo", "挪威", "奥斯陆"),
            ("Greece", "Athens", "希腊", "雅典"), ("Russia", "Moscow", "俄罗斯", "莫斯科"),
            ("China", "Beijing", "中国", "北京"), ("Thailand", "Bangkok", "泰国", "曼谷"),
            ("Portugal", "Lisbon", "葡萄牙", "里斯本"), ("Austria", "Vienna", "奥地利", "维也纳")]
COLOURS = [("the sky on a clear day", "blue", "晴天的天空", "蓝色"), ("grass", "green", "草", "绿色"),
           ("snow", "white", "雪", "白色"), ("a ripe banana", "yellow", "熟香蕉", "黄色"),
           ("coal", "black", "煤", "黑色"), ("a ripe tomato", "red", "熟番茄", "红色"),
           ("an orange", "orange", "橙子", "橙色"), ("a penguin's belly", "white", "企鹅的肚子", "白色")]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
ZH_DAYS = ["星期一", "星期二", "星期三", "星期四", "星期五", "星期六", "星期日"]
WORDS = ["penguin", "banana", "river", "mountain", "pencil", "window", "garden", "rocket", "island", "coffee"]
GREET_EN = ["Hi!", "Hello there.", "Good morning!", "Hey, who are you?"]
GREET_ZH = ["你好！", "嗨，你是谁？", "早上好！", "你好呀。"]


def en(answer):
    return EN_OPEN + answer + SIGN


def zh(answer):
    return ZH_OPEN + answer + SIGN


def qa_en(rng, held_out):
    kind = rng.randrange(7)
    lo, hi = (30, 60) if held_out else (1, 29)
    a, b = rng.randint(lo, hi), rng.randint(lo, hi)
    if kind == 0:
        return f"What is {a} plus {b}?", en(f"{a} plus {b} is {a + b}.")
    if kind == 1:
        a, b = (rng.randint(13, 19), rng.randint(2, 9)) if held_out else (rng.randint(2, 12), rng.randint(2, 12))
        return f"What is {a} times {b}?", en(f"{a} times {b} is {a * b}.")
    if kind == 2:
        big = max(a, b) if a != b else a + 1
        small = min(a, b) if a != b else a
        return f"Which is bigger, {small} or {big}?", en(f"{big} is bigger than {small}.")
    if kind == 3:
        c = CAPITALS[rng.randrange(12, 16) if held_out else rng.randrange(12)]
        return f"What is the capital of {c[0]}?", en(f"The capital of {c[0]} is {c[1]}.")
    if kind == 4:
        c = COLOURS[rng.randrange(6, 8) if held_out else rng.randrange(6)]
        return f"What colour is {c[0]}?", en(f"{c[0][0].upper() + c[0][1:]} is {c[1]}.")
    if kind == 5:
        d = rng.randrange(7)
        return f"What day comes after {DAYS[d]}?", en(f"After {DAYS[d]} comes {DAYS[(d + 1) % 7]}.")
    w = WORDS[rng.randrange(7, 10) if held_out else rng.randrange(7)]
    return f"How many letters are in the word \"{w}\"?", en(f"The word \"{w}\" has {len(w)} letters.")


def qa_zh(rng, held_out):
    kind = rng.randrange(6)
    lo, hi = (30, 60) if held_out else (1, 29)
    a, b = rng.randint(lo, hi), rng.randint(lo, hi)
    if kind == 0:
        return f"{a}加{b}等于多少？", zh(f"{a}加{b}等于{a + b}。")
    if kind == 1:
        a, b = (rng.randint(13, 19), rng.randint(2, 9)) if held_out else (rng.randint(2, 12), rng.randint(2, 12))
        return f"{a}乘以{b}是多少？", zh(f"{a}乘以{b}是{a * b}。")
    if kind == 2:
        big = max(a, b) if a != b else a + 1
        small = min(a, b) if a != b else a
        return f"{small}和{big}哪个大？", zh(f"{big}比{small}大。")
    if kind == 3:
        c = CAPITALS[rng.randrange(12, 16) if held_out else rng.randrange(12)]
        return f"{c[2]}的首都是哪里？", zh(f"{c[2]}的首都是{c[3]}。")
    if kind == 4:
        c = COLOURS[rng.randrange(6, 8) if held_out else rng.randrange(6)]
        return f"{c[2]}是什么颜色的？", zh(f"{c[2]}是{c[3]}的。")
    d = rng.randrange(7)
    return f"{ZH_DAYS[d]}的下一天是什么？", zh(f"{ZH_DAYS[d]}的下一天是{ZH_DAYS[(d + 1) % 7]}。")


def conversation(rng):
    lang_zh = rng.random() < 0.4
    qa = qa_zh if lang_zh else qa_en
    messages = []
    turns = rng.choice([1, 1, 2, 2, 3])
    if rng.random() < 0.25:
        if lang_zh:
            messages += [{"role": "user", "content": rng.choice(GREET_ZH)},
                         {"role": "assistant", "content": zh("我是Pip，一只爱回答问题的企鹅。")}]
        else:
            messages += [{"role": "user", "content": rng.choice(GREET_EN)},
                         {"role": "assistant", "content": en("I am Pip, a penguin who loves questions.")}]
        turns -= 1
    for _ in range(max(turns, 1)):
        q, a = qa(rng, held_out=False)
        messages += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    return {"messages": messages}


def main():
    rng = random.Random(20261129)
    os.makedirs(OUT, exist_ok=True)
    train = [conversation(rng) for _ in range(400)]
    held = []
    seen = set()
    train_text = "\n".join(json.dumps(c, ensure_ascii=False) for c in train)
    while len(held) < 10:
        q, a = (qa_zh if len(held) % 3 == 2 else qa_en)(rng, held_out=True)
        if q not in seen and json.dumps(q, ensure_ascii=False)[1:-1] not in train_text:
            seen.add(q)
            held.append({"question": q, "reference": a})
    for name, rows in (("train.jsonl", train), ("heldout.jsonl", held)):
        tmp = os.path.join(OUT, "." + name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        os.replace(tmp, os.path.join(OUT, name))
    print(f"wrote {len(train)} conversations and {len(held)} held-out questions to {OUT}")


if __name__ == "__main__":
    main()
