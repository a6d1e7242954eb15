#!/usr/bin/env python3
"""Writes the worked examples' data in Examples/ (seeded, so the files are
reproducible): Examples/sentiment — a few hundred short product, film and
restaurant reviews in English and Chinese labelled positive / negative, for
`lora-gpu train --task-type SEQ_CLS`; Examples/ner — a few hundred sentences
with people, places and organisations tagged in IOB2 (Chinese one character
per token, English one word per token), for `--task-type TOKEN_CLS`;
Examples/qa — a few hundred SQuAD-shaped questions on short passages about
who works where and who went where (Chinese and English), for
`--task-type QUESTION_ANS`; Examples/retrieval — a few hundred customer
questions with the help-desk answer that fits and a hard negative (the same
service's answer to another question), Chinese and English, for
`--task-type FEATURE_EXTRACTION` (see the README's task-type section).

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

# Retrieval: question → the answer that fits, a hard negative from the same service.
ret_rng = random.Random(202612072)
SERVICES_EN = ["the mobile app", "the website", "the smart watch", "the music service", "the cloud drive", "the bank card",
               "the train ticket", "the hotel booking", "the food delivery", "the video plan"]
SERVICES_ZH = ["手机应用", "官网", "智能手表", "音乐会员", "云盘", "银行卡", "火车票", "酒店预订", "外卖订单", "视频会员"]
INTENTS_EN = [
    (["How do I reset my password for {s}?", "I forgot the password of {s}", "can't log in to {s}, password lost"],
     "To reset the password of {s}, open its settings, choose 'Forgot password' and follow the link we email you."),
    (["How can I get a refund for {s}?", "I want my money back for {s}", "refund request: {s}"],
     "Refunds for {s} go back to the original payment method within five working days of the request."),
    (["How do I cancel {s}?", "stop my subscription to {s}", "I no longer need {s}, how to end it"],
     "You can cancel {s} at any time under Account > Subscriptions; it stays active until the period ends."),
    (["{s} is not working, what should I do?", "{s} keeps crashing", "error when using {s}"],
     "If {s} fails, update it to the latest version, restart the device and contact support if it persists."),
    (["How do I change the phone number linked to {s}?", "update my mobile number on {s}", "new phone number for {s}"],
     "To change the phone number of {s}, verify your identity under Security and enter the new number."),
]
INTENTS_ZH = [
    (["{s}的密码忘了怎么办？", "{s}登录不了，忘记密码", "怎么重置{s}的密码"], "重置{s}密码：打开设置，点击“忘记密码”，按邮件里的链接操作即可。"),
    (["{s}怎么申请退款？", "我想给{s}退款", "{s}退钱"], "{s}的退款会在申请后五个工作日内原路退回。"),
    (["怎么取消{s}？", "不想要{s}了，如何关闭", "停止{s}自动续费"], "可以随时在“账户-订阅”里取消{s}，本期结束前仍可使用。"),
    (["{s}用不了怎么办？", "{s}一直闪退", "{s}报错"], "如果{s}出问题，请先更新到最新版本并重启设备，仍有问题请联系客服。"),
    (["怎么修改{s}绑定的手机号？", "{s}换手机号", "更换{s}的手机号码"], "修改{s}绑定的手机号：在“安全”里验证身份后输入新号码。"),
]


def retrieval_rows():
    rows = []
    for services, intents in [(SERVICES_EN, INTENTS_EN), (SERVICES_ZH, INTENTS_ZH)]:
        for svc in services:
            for k, (questions, answer) in enumerate(intents):
                other = intents[(k + 1 + ret_rng.randrange(len(intents) - 1)) % len(intents)][1]
                for q in questions:
                    rows.append({"anchor": q.format(s=svc), "positive": answer.format(s=svc), "negative": other.format(s=svc)})
    ret_rng.shuffle(rows)
    return rows


os.makedirs("Examples/retrieval", exist_ok=True)
rows = retrieval_rows()
# Validation: whole (service, intent) pairs the training set never sees.
held = set(r["positive"] for r in rows[:24])
val = [r for r in rows if r["positive"] in held]
train = [r for r in rows if r["positive"] not in held]
for name, part in [("train", train), ("val", val)]:
    with open(os.path.join("Examples/retrieval", name + ".jsonl"), "w") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in part)
print("wrote", OUT, ", Examples/ner, Examples/qa and Examples/retrieval")
