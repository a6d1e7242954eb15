#!/usr/bin/env python3
"""Writes the worked examples' data in Examples/ (seeded, so the files are
reproducible): Examples/sentiment — a few hundred short product, film and
restaurant reviews in English and Chinese labelled positive / negative, for
`lora-gpu train --task-type SEQ_CLS`; Examples/ner — a few hundred sentences
with people, places and organisations tagged in IOB2 (Chinese one character
per token, English one word per token), for `--task-type TOKEN_CLS`;
Examples/qa — a few hundred SQuAD-shaped questions on short passages about
who works where and who went where (Chinese and English), for
`--task-type QUESTION_ANS` (see the README's task-type section).

    python3 scripts/make_examples.py
"""
import json
import os
import random

random.seed(20261207)
OUT = "Examples/sentiment"

SUBJECTS_EN = ["The food", "The service", "This phone", "The hotel room", "The movie", "The delivery", "This laptop",
               "The staff", "The battery life", "The plot", "The coffee", "The app", "The price", "The screen"]
SUBJECTS_ZH = ["这家餐厅的菜", "服务", "这部手机", "酒店房间", "这部电影", "快递", "这台笔记本", "店员", "电池续航", "剧情",
               "咖啡", "这个应用", "价格", "屏幕"]
POS_EN = ["was excellent", "was wonderful", "exceeded my expectations", "was great value", "made my day", "is fantastic",
          "was really good", "works perfectly", "was delightful", "is the best I have tried"]
NEG_EN = ["was terrible", "was awful", "was a huge disappointment", "was overpriced", "ruined my evening", "is broken",
          "was really bad", "stopped working after a day", "was rude and slow", "is the worst I have tried"]
POS_ZH = ["非常好", "让人惊喜", "超出预期", "物超所值", "特别棒", "很满意", "真不错", "无可挑剔", "令人愉快", "是我用过最好的"]
NEG_ZH = ["太差了", "让人失望", "非常糟糕", "贵得离谱", "简直是灾难", "一天就坏了", "很不满意", "又慢又差", "令人生气", "是我用过最差的"]
TAILS_EN = ["", "", " I would recommend it.", " Never again.", " Five stars.", " One star.", " Honestly.", ""]
TAILS_ZH = ["", "", "推荐！", "再也不来了。", "五星好评。", "差评。", "说实话。", ""]


def review():
    label = random.choice(["positive", "negative"])
    if random.random() < 0.5:
        phrase = random.choice(POS_EN if label == "positive" else NEG_EN)
        tail = random.choice(TAILS_EN)
        # A tail that contradicts the label would make the example noisy: keep the neutral ones then.
        if (label == "positive" and tail in (" Never again.", " One star.")) or \
           (label == "negative" and tail in (" I would recommend it.", " Five stars.")):
            tail = ""
        return {"text": f"{random.choice(SUBJECTS_EN)} {phrase}.{tail}", "label": label}
    phrase = random.choice(POS_ZH if label == "positive" else NEG_ZH)
    tail = random.choice(TAILS_ZH)
    if (label == "positive" and tail in ("再也不来了。", "差评。")) or (label == "negative" and tail in ("推荐！", "五星好评。")):
        tail = ""
    return {"text": f"{random.choice(SUBJECTS_ZH)}{phrase}。{tail}", "label": label}


def unique(n, seen):
    out = []
    while len(out) < n:
        r = review()
        if r["text"] not in seen:
            seen.add(r["text"])
            out.append(r)
    return out


PEOPLE_ZH = ["张伟", "王芳", "李娜", "刘洋", "陈静", "杨磊", "赵敏", "黄勇"]
PLACES_ZH = ["北京", "上海", "广州", "深圳", "成都", "杭州", "武汉", "西安"]
ORGS_ZH = ["清华大学", "华为公司", "中国银行", "人民医院", "腾讯", "北京大学"]
PEOPLE_EN = [["Alice", "Smith"], ["John"], ["Maria", "Garcia"], ["Wei", "Zhang"], ["Tom", "Brown"], ["Priya"]]
PLACES_EN = [["London"], ["New", "York"], ["Paris"], ["San", "Francisco"], ["Berlin"], ["Tokyo"]]
ORGS_EN = [["Google"], ["the", "United", "Nations"], ["Oxford", "University"], ["Acme", "Corp"], ["the", "BBC"]]
FRAMES_ZH = [("{P}在{L}的{O}工作。"), ("{P}昨天去了{L}。"), ("{O}位于{L}。"), ("{P}和{P2}在{L}见面。"), ("{P}加入了{O}。")]
FRAMES_EN = [["{P}", "works", "at", "{O}", "in", "{L}", "."], ["{P}", "flew", "to", "{L}", "yesterday", "."],
             ["{O}", "opened", "an", "office", "in", "{L}", "."], ["{P}", "met", "{P2}", "in", "{L}", "."],
             ["{P}", "joined", "{O}", "last", "year", "."]]


def tagged(kind, words):
    return words, ["B-" + kind] + ["I-" + kind] * (len(words) - 1)


def ner_sentence():
    tokens, tags = [], []
    if random.random() < 0.5:
        frame = random.choice(FRAMES_ZH)
        fills = {"{P}": ("PER", random.choice(PEOPLE_ZH)), "{P2}": ("PER", random.choice(PEOPLE_ZH)),
                 "{L}": ("LOC", random.choice(PLACES_ZH)), "{O}": ("ORG", random.choice(ORGS_ZH))}
        i = 0
        while i < len(frame):
            key = next((k for k in fills if frame.startswith(k, i)), None)
            if key:
                w, t = tagged(fills[key][0], list(fills[key][1]))
                tokens += w; tags += t; i += len(key)
            else:
                tokens.append(frame[i]); tags.append("O"); i += 1
    else:
        fills = {"{P}": ("PER", random.choice(PEOPLE_EN)), "{P2}": ("PER", random.choice(PEOPLE_EN)),
                 "{L}": ("LOC", random.choice(PLACES_EN)), "{O}": ("ORG", random.choice(ORGS_EN))}
        for w in random.choice(FRAMES_EN):
            if w in fills:
                ws, ts = tagged(fills[w][0], fills[w][1])
                tokens += ws; tags += ts
            else:
                tokens.append(w); tags.append("O")
    return {"tokens": tokens, "tags": tags}


def unique_ner(n, seen):
    out = []
    while len(out) < n:
        r = ner_sentence()
        key = " ".join(r["tokens"])
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


os.makedirs(OUT, exist_ok=True)
seen = set()
for name, n in [("train", 320), ("val", 120)]:
    with open(os.path.join(OUT, name + ".jsonl"), "w") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in unique(n, seen))
os.makedirs("Examples/ner", exist_ok=True)
seen = set()
for name, n in [("train", 300), ("val", 100)]:
    with open(os.path.join("Examples/ner", name + ".jsonl"), "w") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in unique_ner(n, seen))

# Extractive QA: a passage of two or three facts, a question about one of them, its answer a span of the passage.
qa_rng = random.Random(202612071)


def qa_example():
    r = qa_rng
    if r.random() < 0.5:
        p, p2 = r.sample(PEOPLE_ZH, 2)
        l, l2 = r.sample(PLACES_ZH, 2)
        o = r.choice(ORGS_ZH)
        facts = [(f"{p}在{l}的{o}工作。", [(f"{p}在哪个城市工作？", l), (f"{p}在哪里工作？", o), (f"谁在{o}工作？", p)]),
                 (f"{p2}昨天去了{l2}。", [(f"{p2}昨天去了哪里？", l2), (f"谁昨天去了{l2}？", p2)])]
        r.shuffle(facts)
        context = "".join(f for f, _ in facts) + r.choice(["", "天气很好。", "大家都很忙。"])
    else:
        p, p2 = [" ".join(x) for x in r.sample(PEOPLE_EN, 2)]
        l, l2 = [" ".join(x) for x in r.sample(PLACES_EN, 2)]
        o = " ".join(r.choice(ORGS_EN))
        facts = [(f"{p} works at {o} in {l}.", [(f"Where does {p} work?", o), (f"In which city does {p} work?", l),
                                                  (f"Who works at {o}?", p)]),
                 (f"{p2} flew to {l2} yesterday.", [(f"Where did {p2} fly yesterday?", l2), (f"Who flew to {l2}?", p2)])]
        r.shuffle(facts)
        context = " ".join(f for f, _ in facts) + r.choice(["", " The weather was fine.", " Everyone was busy."])
    fact, questions = r.choice(facts)
    q, a = r.choice(questions)
    start = context.index(fact) + fact.index(a)
    assert context[start:start + len(a)] == a
    return {"question": q, "context": context, "answers": {"text": [a], "answer_start": [start]}}


os.makedirs("Examples/qa", exist_ok=True)
seen = set()
for name, n in [("train", 320), ("val", 100)]:
    rows = []
    while len(rows) < n:
        e = qa_example()
        if (e["question"], e["context"]) not in seen:
            seen.add((e["question"], e["context"]))
            e["id"] = f"{name}-{len(rows)}"
            rows.append(e)
    with open(os.path.join("Examples/qa", name + ".jsonl"), "w") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
print("wrote", OUT, ", Examples/ner and Examples/qa")
