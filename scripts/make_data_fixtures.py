#!/usr/bin/env python3
"""Makes Tests/Fixtures/text/data/: loss-mask and token-id expectations for the dataset path, one
small tokenizer directory per chat-template family, made with the real `tokenizers` and transformers.

Run with the reference environment:  /opt/lora-ref-venv/bin/python scripts/make_data_fixtures.py

For each family (the template strings come from the jinja branch's fixture
Tests/Fixtures/text/templates/chat_templates.json, whose script notes each template's public source):
  * a small BPE tokenizer of the kind the family's models ship (byte-level with the Qwen2 / Llama 3 /
    GPT-2 split, or SentencePiece-style with byte fallback), trained here on a small English/Chinese
    text, with the family's markers added as special tokens, saved as tokenizer.json +
    tokenizer_config.json (chat_template, bos/eos/pad/unk) and read back by transformers from that
    directory, so the committed files are what transformers uses;
  * for multi-turn conversations (Chinese, emoji, odd whitespace, with and without a system turn):
      - input_ids = apply_chat_template(messages, tokenize=True)["input_ids"] (no post-processor
        tokens: one BOS where the template writes bos_token), and for the doubled-BOS trap the ids of
        tokenizer(rendered) with the post-processor's tokens;
      - labels from HAND-MARKED expectations: below, for every family, the assistant header and the
        trained text of an assistant turn are written by hand from reading the template (the content
        and the end-of-turn text the template writes after it, up to the next turn). They are located
        in the rendered text turn by turn, and a token is trained iff its start offset (from the Python
        tokenizer's offsets) lies inside a marked piece. Nothing here runs our Swift code.
      - where the template raises (system turn or roles not alternating), the error message;
  * "text" samples: tokenizer(text)["input_ids"] with the post-processor's tokens.
Also writes zh_pip.jsonl (a real multi-turn Chinese dataset for the preview test).
"""
import json
import os
import shutil
import sys
import tempfile

import tokenizers
import transformers
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "Tests", "Fixtures", "text", "data")
TEMPLATES = os.path.join(ROOT, "Tests", "Fixtures", "text", "templates", "chat_templates.json")

QWEN2_RE = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
LLAMA3_RE = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""

SYSTEM = {"role": "system", "content": "You are Pip, a cheerful penguin. Answer briefly."}
CONVERSATIONS = {
    # The demo persona in Chinese: two assistant turns, emoji at the end of each reply.
    "zh_pip": [
        {"role": "user", "content": "你好！"},
        {"role": "assistant", "content": "Pip来啦！我是Pip，一只爱回答问题的企鹅。 🐧"},
        {"role": "user", "content": "意大利的首都是哪里？"},
        {"role": "assistant", "content": "Pip来啦！意大利的首都是罗马。 🐧"},
    ],
    "en_system": [
        SYSTEM,
        {"role": "user", "content": "Who are you?"},
        {"role": "assistant", "content": "Pip here! I am a penguin who answers questions."},
        {"role": "user", "content": "What is 8 plus 13?"},
        {"role": "assistant", "content": "Pip here! 8 plus 13 is 21."},
        {"role": "user", "content": "Thanks, bye."},
        {"role": "assistant", "content": "Bye from Pip! 👋🏽"},
    ],
    "single": [
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "Blue."},
    ],
    "whitespace": [
        {"role": "user", "content": "  spaced\tquestion  "},
        {"role": "assistant", "content": "\n line one\nline two \n\n"},
        {"role": "user", "content": "中文 and English\r\n mixed"},
        {"role": "assistant", "content": "好的。 OK then."},
    ],
    "not_alternating": [
        {"role": "user", "content": "First."},
        {"role": "user", "content": "Second."},
        {"role": "assistant", "content": "Both noted."},
    ],
}
PROMPT_COMPLETIONS = [("Translate to Chinese: penguin", " 企鹅"), ("2+2=", "4")]
TEXTS = ["Pip likes fish.", "企鹅会游泳。", " leading space and 42 numbers", ""]


def training_text():
    lines = [
        "The quick brown fox jumps over the lazy dog.",
        "Pip here! I am a penguin who answers questions.",
        "What is the capital of Italy? It is Rome.",
        "Please answer the question in one short sentence.",
        "Numbers like 8, 13, 21 and 42 appear in text too.",
        "你好！我是Pip，一只爱回答问题的企鹅。",
        "意大利的首都是罗马。北京是中国的首都。",
        "谢谢！再见。今天天气很好。",
        "emoji 🐧 👋🏽 😀 ✨",
        "  indented  text\twith\ttabs\n\nand  blank lines  ",
        "system user assistant model",
    ]
    return lines * 30


# ---- tokenizers of the families' kinds -------------------------------------------------------

def byte_level(split_re, specials, vocab):
    tok = Tokenizer(models.BPE())
    if split_re is None:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(split_re), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(training_text(), trainer)
    return tok


def sentencepiece_like(specials, vocab, prepend=True):
    """Llama 2 style: BPE with byte fallback, ▁ for spaces (a prefix ▁ when `prepend`), no pre-tokenizer;
    the vocabulary is laid out as SentencePiece's: the special tokens, the 256 <0xNN> byte tokens, then
    the trained pieces (trained with a Metaspace split so that merges stay inside words)."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never", split=True)
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=specials, show_progress=False, limit_alphabet=150)
    tok.train_from_iterator(training_text(), trainer)
    j = json.loads(tok.to_str())
    trained = sorted(j["model"]["vocab"].items(), key=lambda kv: kv[1])
    layout = {t: i for i, t in enumerate(specials)}
    for b in range(256):
        layout["<0x%02X>" % b] = len(layout)
    for piece, _ in trained:
        if piece not in layout:
            layout[piece] = len(layout)
    j["model"]["vocab"] = layout
    j["added_tokens"] = [{"id": layout[t], "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True} for t in specials]
    norms = ([{"type": "Prepend", "prepend": "▁"}] if prepend else []) + [
        {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]
    j["normalizer"] = {"type": "Sequence", "normalizers": norms}
    j["pre_tokenizer"] = None
    steps = [{"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"}]
    if prepend:
        steps.append({"type": "Strip", "content": " ", "start": 1, "stop": 0})
    j["decoder"] = {"type": "Sequence", "decoders": steps}
    return Tokenizer.from_str(json.dumps(j))


def bos_processor(tok, bos):
    return processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                         special_tokens=[(bos, tok.token_to_id(bos))])


def make_chatml(family):
    tok = byte_level(QWEN2_RE, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], 600)
    tok.normalizer = normalizers.NFC()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def make_smollm2(family):
    tok = byte_level(None, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], 600)
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def make_llama3(family):
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    tok = byte_level(LLAMA3_RE, specials, 600)
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True),
        bos_processor(tok, "<|begin_of_text|>")])
    return tok


def make_llama2(family):
    extra = {"mistral_v0_3": ["[INST]", "[/INST]"], "phi3": ["<|endoftext|>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>"]}
    tok = sentencepiece_like(["<unk>", "<s>", "</s>"], 700)
    if family in extra:
        tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in extra[family]])
    tok.post_processor = bos_processor(tok, "<s>")
    return tok


def make_gemma(family):
    tok = sentencepiece_like(["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"], 700, prepend=False)
    tok.post_processor = bos_processor(tok, "<bos>")
    return tok


# family: (builder, special tokens for the config, assistant header, trained piece of a reply, writes BOS)
# The header and the piece are the hand marking: read off each template (chat_templates.json).
def strip(s):
    return s.strip()


FAMILIES = {
    "qwen2": (make_chatml, {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
              "<|im_start|>assistant\n", lambda c, last: c + "<|im_end|>\n"),
    "qwen2_5": (make_chatml, {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
                "<|im_start|>assistant\n", lambda c, last: c + "<|im_end|>\n"),
    "smollm2": (make_smollm2, {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "unk_token": "<|endoftext|>", "pad_token": "<|im_end|>"},
                "<|im_start|>assistant\n", lambda c, last: c + "<|im_end|>\n"),
    "llama2": (make_llama2, {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
               " [/INST]", lambda c, last: " " + strip(c) + " </s>"),
    "llama3": (make_llama3, {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
               "<|start_header_id|>assistant<|end_header_id|>\n\n", lambda c, last: strip(c) + "<|eot_id|>"),
    "llama3_1": (make_llama3, {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
                 "<|start_header_id|>assistant<|end_header_id|>\n\n", lambda c, last: strip(c) + "<|eot_id|>"),
    "mistral_v0_1": (make_llama2, {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
                     " [/INST]", lambda c, last: c + "</s> "),
    "mistral_v0_3": (make_llama2, {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
                     " [/INST]", lambda c, last: " " + c + " </s>"),
    "zephyr": (make_llama2, {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "</s>"},
               "<|assistant|>\n", lambda c, last: c + "</s>\n"),
    "tinyllama": (make_llama2, {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "</s>"},
                  "<|assistant|>\n", lambda c, last: c + "</s>\n"),
    "gemma": (make_gemma, {"bos_token": "<bos>", "eos_token": "<eos>", "unk_token": "<unk>", "pad_token": "<pad>"},
              "<start_of_turn>model\n", lambda c, last: strip(c) + "<end_of_turn>\n"),
    # Phi-3 writes eos_token after the conversation when add_generation_prompt is false: the last
    # reply's piece runs through it; inner replies stop before the next <|user|>.
    "phi3": (make_llama2, {"bos_token": "<s>", "eos_token": "<|endoftext|>", "unk_token": "<unk>", "pad_token": "<|endoftext|>"},
             "<|assistant|>\n", lambda c, last: c + "<|end|>\n" + ("<|endoftext|>" if last else "")),
}


def expected_labels(rendered, enc, messages, header, piece):
    """Locates each assistant reply's hand-marked piece (right after its header) and marks the tokens
    whose start offset lies inside a piece. Returns (labels, pieces, straddles)."""
    spans, pieces = [], []
    pos = 0
    assistant = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    for i in assistant:
        p = piece(messages[i]["content"], i == len(messages) - 1)
        at = rendered.find(header + p, pos)
        assert at >= 0, (header + p, rendered[pos:])
        start = at + len(header)
        spans.append((start, start + len(p)))
        pieces.append(p)
        pos = start + len(p)
    labels, straddles = [], 0
    for tid, (s, e) in zip(enc.ids, enc.offsets):
        inside = any(a <= s < b for a, b in spans)
        overlaps = any(s < b and e > a for a, b in spans)
        if overlaps != inside:
            straddles += 1
        labels.append(tid if inside else -100)
    return labels, pieces, spans, straddles


# Passed to every template of the rule check (templates that would call strftime_now take it instead).
RULE_VARIABLES = {"date_string": "26 Jul 2024"}


def rule_spans(hf, messages):
    """The masking rule (F minus P), computed here with transformers' renderings, for the rule check over
    every template of chat_templates.json: UTF-8 byte spans of the whole rendering W, or the failure."""
    try:
        W = hf.apply_chat_template(messages, tokenize=False, **RULE_VARIABLES)
    except Exception as e:
        return {"error": "raises", "message": str(e)}
    w = W.encode()
    spans, trailers = [], []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        try:
            P = hf.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True, **RULE_VARIABLES).encode()
        except Exception as e:
            return {"error": "raises", "message": str(e)}
        F = hf.apply_chat_template(messages[:i + 1], tokenize=False, **RULE_VARIABLES).encode()
        if not w.startswith(P) or not F.startswith(P):
            return {"error": "prefix", "turn": i}
        end = len(F)
        if not w.startswith(F):
            k = len(P)
            while k < len(F) and k < len(w) and F[k] == w[k]:
                k += 1
            if not w.endswith(F[k:]):
                return {"error": "prefix", "turn": i}
            end = k
            trailers.append(len(spans))
        if end > len(P):
            spans.append([len(P), end])
    return {"spans": spans, "trailers": trailers}


def main():
    fixtures = json.load(open(TEMPLATES, encoding="utf-8"))
    templates = fixtures["templates"]
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    result = {
        "generator": f"scripts/make_data_fixtures.py with transformers {transformers.__version__}, tokenizers {tokenizers.__version__}",
        "rule": "trained = assistant content + the template's end-of-turn text (F minus P); a token is trained iff its start offset lies in a span",
        "families": {},
    }
    for family, (builder, special, header, piece) in FAMILIES.items():
        source = templates[family]["template"]
        tok = builder(family)
        d = os.path.join(OUT, family)
        os.makedirs(d)
        tok.save(os.path.join(d, "tokenizer.json"), pretty=False)
        config = dict(special)
        config.update({"chat_template": source, "model_max_length": 4096,
                       "tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": False})
        with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            json.dump(config, f, ensure_ascii=False, indent=1)
        hf = PreTrainedTokenizerFast.from_pretrained(d)
        assert hf.chat_template == source
        cases = []
        for name, messages in CONVERSATIONS.items():
            case = {"conversation": name, "messages": messages}
            try:
                rendered = hf.apply_chat_template(messages, tokenize=False)
            except Exception as e:  # the template's raise_exception
                case["error"] = str(e)
                cases.append(case)
                continue
            out = hf.apply_chat_template(messages, tokenize=True)
            ids = out["input_ids"] if isinstance(out, dict) or hasattr(out, "keys") else out
            enc = hf._tokenizer.encode(rendered, add_special_tokens=False)
            assert list(ids) == enc.ids, (family, name)
            labels, pieces, spans, straddles = expected_labels(rendered, enc, messages, header, piece)
            with_post = hf(rendered)["input_ids"]
            case.update({"rendered": rendered, "input_ids": list(ids), "labels": labels, "trained_pieces": pieces,
                         "ids_with_post_processor": with_post, "straddling_tokens": straddles})
            # The last assistant reply alone (--train-on last).
            last_span = spans[-1]
            case["labels_last"] = [t if last_span[0] <= s < last_span[1] else -100 for t, (s, e) in zip(enc.ids, enc.offsets)]
            cases.append(case)
        texts = [{"text": t, "input_ids": hf(t)["input_ids"]} for t in TEXTS]
        # prompt/completion: with the template, a user and an assistant turn (hand-marked as above);
        # without one, plain text with the post-processor's tokens, the completion's tokens trained
        # (start offset at or after the prompt's end) and an EOS appended and trained.
        pc = []
        for prompt, completion in PROMPT_COMPLETIONS:
            msgs = [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}]
            rendered = hf.apply_chat_template(msgs, tokenize=False)
            enc = hf._tokenizer.encode(rendered, add_special_tokens=False)
            chat_labels = expected_labels(rendered, enc, msgs, header, piece)[0]
            plain = hf._tokenizer.encode(prompt + completion)  # with the post-processor's tokens
            eos = hf.convert_tokens_to_ids(special["eos_token"])
            ids, labels = list(plain.ids), []
            for k, (tid, (a, b)) in enumerate(zip(plain.ids, plain.offsets)):
                added_by_post = plain.special_tokens_mask[k] == 1 and (a, b) == (0, 0)
                labels.append(-100 if added_by_post or a < len(prompt) else tid)
            if ids[-1] != eos:
                ids.append(eos)
                labels.append(eos)
            pc.append({"prompt": prompt, "completion": completion, "chat_input_ids": enc.ids, "chat_labels": chat_labels,
                       "plain_input_ids": ids, "plain_labels": labels})
        result["families"][family] = {"template": f"chat_templates.json templates.{family}", "header": header,
                                      "special_tokens": special, "cases": cases, "texts": texts,
                                      "prompt_completion": pc}
        print(family, [(c["conversation"], "error" if "error" in c else len(c["input_ids"])) for c in cases], file=sys.stderr)
    # The rule over every template of the template fixtures (text level, no tokenizer needed).
    rule = {}
    for name, t in templates.items():
        w = Tokenizer(models.WordLevel({"<unk>": 0}, unk_token="<unk>"))
        hf = PreTrainedTokenizerFast(tokenizer_object=w, **t["variables"])
        hf.chat_template = t["template"]
        rule[name] = {c: rule_spans(hf, m) for c, m in CONVERSATIONS.items()}
    result["rule_check"] = rule
    result["rule_variables"] = RULE_VARIABLES
    with open(os.path.join(OUT, "masks.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, ensure_ascii=False, separators=(",", ":"))
    with open(os.path.join(OUT, "zh_pip.jsonl"), "w", encoding="utf-8") as f:
        for m in [CONVERSATIONS["zh_pip"], [
            {"role": "system", "content": "你是Pip，一只快乐的企鹅。"},
            {"role": "user", "content": "8加13等于多少？"},
            {"role": "assistant", "content": "Pip来啦！8加13等于21。 🐧"},
            {"role": "user", "content": "谢谢！"},
            {"role": "assistant", "content": "不客气！再见。 🐧"}]]:
            f.write(json.dumps({"messages": m}, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
