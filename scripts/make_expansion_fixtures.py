#!/usr/bin/env python3
"""Per-turn samples of templates that rewrite earlier turns (Qwen3, Qwen3.5), made with transformers.

For each template, conversation and assistant turn k: the sample transformers' apply_chat_template gives for
messages[:k+1] (tokenize=True, the conversation's tools and the chat-template kwargs passed), and the tokens to
train: those whose offset (tokenizer(..., return_offsets_mapping=True)) starts inside F minus P, with
F = apply_chat_template(messages[:k+1]) and P = apply_chat_template(messages[:k], add_generation_prompt=True) —
turn k's reply and its end-of-turn, as the template renders it when the turn is the last. The script checks that
F starts with P and that the trained text ends with the end-of-turn "<|im_end|>\\n" and holds the reply. (QwQ's
generation prompt opens "<think>\\n" that its rendered reply lacks: no split exists, and lora-gpu says so.)

    /opt/lora-ref-venv/bin/python scripts/make_expansion_fixtures.py   → Tests/Fixtures/text/expansion.json
"""
import datetime
import json
import os

from transformers import AutoTokenizer
import transformers.utils.chat_template_utils as chat_template_utils

# SmolLM3's template prints today's date (strftime_now): the fixture is rendered on a fixed day, 2026-12-07
# (UTC midnight, 1796644800), the day PerTurnExpansionTests gives the interpreter (ChatTemplate.fixedNowUTC).
FIXED_NOW = datetime.datetime.fromtimestamp(1_796_644_800, tz=datetime.timezone.utc).replace(tzinfo=None)


class _FixedDateTime(datetime.datetime):
    @classmethod
    def now(cls, tz=None):
        return FIXED_NOW


chat_template_utils.datetime = _FixedDateTime

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
TEMPLATES = json.load(open(os.path.join(ROOT, "Tests", "Fixtures", "text", "templates", "chat_templates.json")))["templates"]
TOKENIZER = os.path.join(ROOT, "Tests", "Fixtures", "text", "data", "qwen2")

WEATHER = [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                               "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                              "required": ["city"]}}}]
CONVERSATIONS = {
    "plain_zh": dict(messages=[
        {"role": "user", "content": "你好"}, {"role": "assistant", "content": "你好！有什么可以帮你？"},
        {"role": "user", "content": "讲个笑话"}, {"role": "assistant", "content": "从前有座山，山里有座庙。"}]),
    "system_three_turns": dict(messages=[
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"},
        {"role": "user", "content": "and 3+3?"}, {"role": "assistant", "content": "6"},
        {"role": "user", "content": "thanks"}, {"role": "assistant", "content": "You're welcome."}]),
    "reasoning_content": dict(messages=[
        {"role": "user", "content": "Is 7 prime?"},
        {"role": "assistant", "reasoning_content": "7 has no divisor but 1 and 7.", "content": "Yes."},
        {"role": "user", "content": "Is 9?"},
        {"role": "assistant", "reasoning_content": "9 = 3 × 3.", "content": "No, 9 = 3 × 3."}]),
    "inline_think": dict(messages=[
        {"role": "user", "content": "1+1?"}, {"role": "assistant", "content": "<think>\nsmall sum\n</think>\n\n2"},
        {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "<think>\nagain\n</think>\n\n4"}]),
    "tool_calls": dict(tools=WEATHER, messages=[
        {"role": "user", "content": "北京天气怎么样？"},
        {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "北京"}}}]},
        {"role": "tool", "content": "{\"temp\": 3}"},
        {"role": "assistant", "content": "北京现在 3 度。"},
        {"role": "user", "content": "上海呢？"},
        {"role": "assistant", "content": "上海我还没查。"}]),
    "no_thinking": dict(kwargs={"enable_thinking": False}, messages=[
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "bye"}, {"role": "assistant", "content": "goodbye"}]),
}


def render(tok, messages, tools, kwargs, **more):
    return tok.apply_chat_template(messages, tools=tools, tokenize=False, **kwargs, **more)


# A ChatML template of our own with {% generation %} around each assistant reply and its end-of-turn token (the form
# TRL's *_training.jinja templates take): transformers' return_assistant_tokens_mask gives the mask from the blocks.
# The newline after <|im_end|> is outside the block, so the mask differs from the prefix rule's (which trains it).
GENERATION_TEMPLATE = (
    "{%- for m in messages %}"
    "{%- if m.role == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- generation %}"
    "{%- if m.reasoning_content %}{{- '<think>\\n' + m.reasoning_content + '\\n</think>\\n\\n' }}{%- endif %}"
    "{{- m.content + '<|im_end|>' }}"
    "{%- endgeneration %}"
    "{{- '\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}")


def generation_cases(tok):
    """Samples of templates with {% generation %} blocks — ours, and the two real ones of the template fixture
    (SmolLM3's, LFM2.5-VL's) — : transformers' ids and assistant mask (labels -100 outside it)."""
    out = []
    for template, source in [("ours", GENERATION_TEMPLATE), ("smollm3", TEMPLATES["smollm3"]["template"]),
                             ("lfm2_5_vl", TEMPLATES["lfm2_5_vl"]["template"])]:
        tok.chat_template = source
        for name in ["plain_zh", "system_three_turns", "reasoning_content"]:
            m = CONVERSATIONS[name]["messages"]
            enc = tok.apply_chat_template(m, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
            ids, mask = enc["input_ids"], enc["assistant_masks"]
            labels = [i if k else -100 for i, k in zip(ids, mask)]
            out.append(dict(template=template, conversation=name, messages=m, input_ids=ids, labels=labels,
                            trained_text=tok.decode([i for i in labels if i != -100])))
    return out


def main():
    tok = AutoTokenizer.from_pretrained(TOKENIZER)
    cases = []
    for template in ["qwen3_0_6b", "qwen3_5_4b"]:
        tok.chat_template = TEMPLATES[template]["template"]
        for name, conv in CONVERSATIONS.items():
            m, tools, kwargs = conv["messages"], conv.get("tools"), conv.get("kwargs", {})
            samples = []
            for k, msg in enumerate(m):
                if msg["role"] != "assistant":
                    continue
                p = render(tok, m[:k], tools, kwargs, add_generation_prompt=True)
                f = render(tok, m[:k + 1], tools, kwargs)
                assert f.startswith(p), (template, name, k)
                enc = tok(f, add_special_tokens=False, return_offsets_mapping=True)
                ids = tok.apply_chat_template(m[:k + 1], tools=tools, tokenize=True, **kwargs)
                ids = ids["input_ids"] if not isinstance(ids, list) else ids
                assert ids == enc["input_ids"], (template, name, k)
                lo, hi = len(p.encode()), len(f.encode())
                # offsets are in characters: as bytes of f.
                starts = [len(f[:a].encode()) for a, _ in enc["offset_mapping"]]
                labels = [i if lo <= s < hi else -100 for i, s in zip(ids, starts)]
                trained = tok.decode([i for i in labels if i != -100])
                assert trained.endswith("<|im_end|>\n") and msg["content"].split("</think>")[-1].strip() in trained, (name, trained)
                samples.append(dict(turn=k, input_ids=ids, labels=labels, trained_text=trained))
            cases.append(dict(template=template, conversation=name, messages=m, tools=tools, kwargs=kwargs, samples=samples))
    out = os.path.join(ROOT, "Tests", "Fixtures", "text", "expansion.json")
    with open(out, "w") as fh:
        json.dump(dict(generator="scripts/make_expansion_fixtures.py", cases=cases, generation_template=GENERATION_TEMPLATE,
                       generation=generation_cases(tok)), fh, ensure_ascii=False, indent=1)
    print("wrote", out, sum(len(c["samples"]) for c in cases), "samples in", len(cases), "conversations")


main()
