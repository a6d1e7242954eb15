#!/usr/bin/env python3
"""Makes Tests/Fixtures/e2e/: a small multi-turn chat dataset (English and Chinese) for the
end-to-end CLI test (Tests/LoraTrainTests/EndToEndTests.swift), and the ids and loss masks the
real libraries give it on the ChatML fixture model of scripts/make_generate_fixtures.py
(Tests/Fixtures/generate/cli_chatml/model: a tiny random Llama, vocab 400, byte-level BPE,
ChatML template).

Run with the reference environment:  /opt/lora-ref-venv/bin/python scripts/make_e2e_fixtures.py

  * chat.jsonl: one {"messages": [...]} conversation a line;
  * expected.json, per line:
      - input_ids = transformers' apply_chat_template(messages, tokenize=True) of the fixture tokenizer;
      - labels from HAND-MARKED pieces: in ChatML an assistant turn trains its content and the
        end-of-turn text the template writes after it ("<|im_end|>\\n"), nothing of
        "<|im_start|>assistant\\n" nor of system / user turns. The pieces are located in the
        rendered text turn by turn; a token is trained iff its start offset (from the Python
        tokenizer's offsets) lies inside a piece. Nothing here runs our Swift code.
      - prompt_ids: apply_chat_template of one user turn with add_generation_prompt=True
        (what `lora-gpu generate --prompt` must feed the model), for PROMPT below.
"""
import json
import os

from transformers import AutoTokenizer

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
MODEL = os.path.join(ROOT, "Tests", "Fixtures", "generate", "cli_chatml", "model")
OUT = os.path.join(ROOT, "Tests", "Fixtures", "e2e")

PROMPT = "Who are you?"
CONVERSATIONS = [
    [{"role": "system", "content": "You are Pip, a cheerful penguin."},
     {"role": "user", "content": "Who are you?"},
     {"role": "assistant", "content": "Pip here! I am a penguin."},
     {"role": "user", "content": "What is 2 plus 3?"},
     {"role": "assistant", "content": "Pip here! It is 5."}],
    [{"role": "user", "content": "你好！"},
     {"role": "assistant", "content": "Pip来啦！我是企鹅。"},
     {"role": "user", "content": "意大利的首都是哪里？"},
     {"role": "assistant", "content": "Pip来啦！是罗马。"}],
    [{"role": "user", "content": "Name a colour."},
     {"role": "assistant", "content": "Pip here! Blue, like the sea."}],
    [{"role": "user", "content": "谢谢"},
     {"role": "assistant", "content": "Pip来啦！不客气。"},
     {"role": "user", "content": "Bye!"},
     {"role": "assistant", "content": "Pip here! Bye bye."}],
    [{"role": "system", "content": "Answer briefly."},
     {"role": "user", "content": "Is ice cold?"},
     {"role": "assistant", "content": "Pip here! Yes, very."}],
    [{"role": "user", "content": "你会游泳吗？"},
     {"role": "assistant", "content": "Pip来啦！会，游得很快。"}],
    [{"role": "user", "content": "Count to three."},
     {"role": "assistant", "content": "Pip here! One, two, three."},
     {"role": "user", "content": "And back?"},
     {"role": "assistant", "content": "Pip here! Three, two, one."}],
    [{"role": "user", "content": "Where do you live?"},
     {"role": "assistant", "content": "Pip here! On the ice, 南极."}],
]


def labels_for(tok, messages, ids):
    rendered = tok.apply_chat_template(messages, tokenize=False)
    # The hand-marked trained pieces of the ChatML template, located turn by turn.
    pieces, pos = [], 0
    for m in messages:
        head = "<|im_start|>" + m["role"] + "\n"
        at = rendered.index(head, pos)
        start = at + len(head)
        tail = m["content"] + "<|im_end|>\n"
        assert rendered[start:start + len(tail)] == tail, (rendered, m)
        if m["role"] == "assistant":
            pieces.append((start, start + len(tail)))
        pos = start + len(tail)
    enc = tok(rendered, add_special_tokens=False, return_offsets_mapping=True)
    assert enc["input_ids"] == ids, "rendered text tokenizes to the template's ids"
    return [i if any(a <= s < b for a, b in pieces) else -100 for i, (s, _) in zip(ids, enc["offset_mapping"])]


def ids_of(x):
    return list(x["input_ids"]) if hasattr(x, "keys") else list(x)


def main():
    tok = AutoTokenizer.from_pretrained(MODEL)
    os.makedirs(OUT, exist_ok=True)
    lines, expected = [], []
    for messages in CONVERSATIONS:
        ids = ids_of(tok.apply_chat_template(messages, tokenize=True))
        labels = labels_for(tok, messages, ids)
        assert any(l != -100 for l in labels) and any(l == -100 for l in labels)
        lines.append(json.dumps({"messages": messages}, ensure_ascii=False))
        expected.append({"input_ids": ids, "labels": labels})
    with open(os.path.join(OUT, "chat.jsonl"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    prompt_ids = ids_of(tok.apply_chat_template([{"role": "user", "content": PROMPT}], tokenize=True,
                                                add_generation_prompt=True))
    with open(os.path.join(OUT, "expected.json"), "w", encoding="utf-8") as f:
        json.dump({"model": "generate/cli_chatml/model", "samples": expected, "prompt": PROMPT,
                   "prompt_ids": prompt_ids,
                   "im_end": tok.convert_tokens_to_ids("<|im_end|>")}, f)
        f.write("\n")
    print(f"wrote {len(lines)} conversations; {sum(len(e['input_ids']) for e in expected)} tokens")


if __name__ == "__main__":
    main()
