#!/usr/bin/env python3
"""Make the tokenizer fixtures under Tests/Fixtures/text/tokenizers with the real
Hugging Face `tokenizers` library (run with /opt/lora-ref-venv/bin/python).

Trains small tokenizers (vocab of a few hundred to ~1000 entries) of the kinds
real checkpoints use, on a multilingual text made here, and records what the
library does with a test corpus of different text:

  gpt2        byte-level BPE (ByteLevel pre-tokenizer with its GPT-2 regex,
              ByteLevel decoder and post-processor), merges in the legacy
              "a b" string form; added tokens with lstrip/rstrip/single_word/
              normalized variations
  qwen2       NFC + Split(Qwen2 regex, Isolated) + ByteLevel(use_regex=false),
              <|endoftext|> <|im_start|> <|im_end|>; chat_template.jinja beside it
  llama3      Split(Llama-3 regex) + ByteLevel, ignore_merges, TemplateProcessing
              adding <|begin_of_text|> inside a Sequence post-processor;
              named chat templates (list form) in tokenizer_config.json
  llama2      SentencePiece-style BPE with byte_fallback and <unk>: normalizer
              Sequence[Prepend("▁"), Replace(" ", "▁")], no pre-tokenizer,
              decoder Sequence[Replace("▁"," "), ByteFallback, Fuse, Strip(1,0)],
              TemplateProcessing adding <s>; a normalized added token
  llama2_metaspace  the same vocab with the newer Metaspace(prepend_scheme=first)
              pre-tokenizer and a Metaspace decoder
  metaspace_always  the llama2 vocab with Strip(right), NFD, Digits(contiguous) and
              Metaspace(prepend_scheme=always, split)
  roberta     the gpt2 vocab with ByteLevel(add_prefix_space=true), RobertaProcessing
  misc_suffix misc with a BPEDecoder, Strip(left), and WhitespaceSplit, Punctuation,
              Whitespace, Metaspace(never, no split) pre-tokenizers
  misc        NFKC, Lowercase, Strip, Replace(Regex); Split behaviours
              (Removed, Isolated, MergedWithPrevious, MergedWithNext,
              Contiguous, invert), Digits; BPE with continuing_subword_prefix and
              end_of_word_suffix, unk without fusing; BertProcessing; no decoder

Each directory gets tokenizer.json (compact), tokenizer_config.json and
expected.json: for every test text the ids with and without special tokens and
decode(ids, skip_special_tokens=False/True); plus decodes of seeded random id
lists (partial UTF-8 sequences and all), and 150 seeded fuzz strings. Training is not bit-for-bit deterministic across runs (the library's
hash maps), so a rerun may change the vocabularies; the expectations are always
made from the files written in the same run.
"""
import json
import os
import random
import sys

import tokenizers
from tokenizers import (AddedToken, Regex, Tokenizer, decoders, models, normalizers,
                        pre_tokenizers, processors, trainers)

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "text", "tokenizers")

QWEN2_RE = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
LLAMA3_RE = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""


def training_text():
    """A small multilingual corpus, deterministic."""
    en = [
        "The quick brown fox jumps over the lazy dog.",
        "It's a truth universally acknowledged that we'll need more data.",
        "They're sure you've seen what I'd done, and I'm glad.",
        "Machine learning models are trained on large amounts of text.",
        "Fine-tuning with LoRA adds small low-rank matrices to the weights.",
        "Please answer the question in one short sentence.",
        "The assistant replied: Sure! Here is the answer you asked for.",
        "Numbers like 42, 3.14 and 1000000 appear in text too.",
    ]
    zh = ["我们今天学习自然语言处理。", "这是一个中文句子，用来训练分词器。", "机器学习和深度学习都很有趣！"]
    ja = ["これは日本語の文章です。", "カタカナとひらがなと漢字を混ぜます。", "東京は大きな都市です。"]
    other = [
        "café naïve résumé façade Ångström Øresund ñandú",
        "e\u0301 a\u0300 o\u0308 combining marks",
        "Привет, как дела? Всё хорошо.",
        "Γειά σου Κόσμε, ελληνικά γράμματα.",
        "emoji 😀 😂 👍 👍🏽 👨\u200d👩\u200d👧 🇫🇷 🇯🇵 ❤️ 🎉",
        "def add(a, b):\n    return a + b\n\nprint(add(1, 2))\n",
        "for (int i = 0; i < n; ++i) { sum += x[i]; }\n",
        "  indented  text\twith\ttabs\n\n\nand  blank lines  ",
        "<html><body class=\"main\">Hello</body></html>",
        "Email: someone@example.com, URL: https://example.org/path?q=1",
    ]
    lines = []
    rng = random.Random(1234)
    for i in range(60):
        group = en * 2 + zh + ja + other
        rng.shuffle(group)
        lines.extend(group[: 12])
    return lines


def test_texts():
    texts = [
        "Hello world! How's it going? I'M FINE, they'll say we'd've.",
        "",
        " ",
        "a",
        "   leading spaces and trailing   ",
        "tabs\tand\t\ttabs\n\nnewlines\r\nwindows\r\n",
        "中文测试：今天天气很好。我们去公园吧！",
        "日本語のテキスト、カタカナとひらがな。",
        "emoji 👍🏽 family 👨\u200d👩\u200d👧\u200d👦 flags 🇫🇷🇯🇵🇺🇳 heart ❤️ keycap 1️⃣",
        "café naïve résumé Ångström",
        "cafe\u0301 nai\u0308ve \u0301start e\u0301\u0302\u0323",
        "def f(x):\n    return x**2  # square\n\tif a != b: pass\n",
        "12345 3.14159 1,000,000 year 2024 and 9999999999",
        "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
        "<s>Hello</s> <s> spaced </s>",
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
        "abc<|endoftext|>def <|endoftext|> ghi<|endoftext|>",
        "a [MASK] b   [MASK]c [MASK]",
        "x<sep>   next <sep>\n\nline",
        "foo bar foobar _foo foo. (foo) Foo",
        "Bar inBar Bar!",
        "before <extra> after<extra>",
        "unknown: \U0010FFFD 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ꙮ \u0000 null \u200b zero width",
        " " * 40 + "x" + "\n" * 10 + "\t" * 7 + "y" + " " * 5,
        "'s 'S 'll 'LL don't DON'T 'Re I'M we'VE 'x ''s",
        "Ünïcödé\u00a0nbsp\u3000ideographic\u2028line\u2029para\u0085nel\u000bvt\u000cff",
        "한국어 텍스트입니다. مرحبا بالعالم नमस्ते दुनिया",
        "①②③ Ⅻ ½ ٣٤٥ ¹²³ 12³",
        "a" * 50 + " " + "ab" * 30,
        "İstanbul ΣΊΣΥΦΟΣ straße ẞ ﬁ ＡＢＣ ｱｲｳ ㍿",
        "-- price: $5.00 - $10 == total+tax; x=y+z",
        "\r\n\r\n \r \n\t \u00a0\n",
        "The quick brown fox jumps over the lazy dog. The assistant replied: Sure!",
    ]
    long_parts = []
    for t in training_text()[:25]:
        long_parts.append(t)
    texts.append(" ".join(long_parts))
    # Seeded random strings from a pool of awkward characters.
    pool = list("aAbz Z09_'-.,!?\t\n\r") + [" ", "  ", "\u00a0", "\u3000", "é", "e\u0301", "ß", "中", "文", "の",
                                            "ア", "😀", "👍", "\U0001F3FD", "\u200d", "🇫", "🇷", "\ufe0f", "٣", "½",
                                            "<s>", "</s>", "<|endoftext|>", "<|im_start|>", "[MASK]", "<sep>", "foo",
                                            "Bar", "'s", "'LL", "\u0301", "ꙮ", "▁", "<0x41>", "##"]
    rng = random.Random(7)
    for _ in range(25):
        n = rng.randint(1, 25)
        texts.append("".join(rng.choice(pool) for _ in range(n)))
    return texts


def fuzz_texts():
    """Seeded random strings over scalars of many Unicode categories."""
    pool = (list("abcXYZ019_'`\"-.,;:!?()[]{}<>/@#$%^&*+=~|\\") +
            [" ", "\t", "\n", "\r", "\r\n", "\u000b", "\u000c", "\u0085", "\u00a0", "\u1680", "\u2002", "\u2009",
             "\u200a", "\u2028", "\u2029", "\u202f", "\u205f", "\u3000", "\u200b", "\u200c", "\u200d", "\u200e",
             "\ufeff", "\u00ad", "\u0301", "\u0308", "\u0323", "\u0903", "\u20dd", "\u0e31", "\u093f",
             "é", "É", "ß", "ſ", "\u212a", "İ", "ı", "Σ", "ς", "ǅ", "ʰ", "ª", "ﬁ", "Ａ", "ｶ", "ﾞ", "中", "文", "の",
             "ア", "한", "ㄱ", "א", "ع", "ह", "ก", "ж", "Ω", "\u0660", "\u0967", "٣", "½", "²", "Ⅻ", "①", "𝟙",
             "😀", "👍", "\U0001F3FD", "🇫", "🇷", "\ufe0f", "\u20e3", "\U000E0067", "\U000E007F", "🏴",
             "\ue000", "\U0010FFFD", "\u0000", "\u001f", "\u007f", "▁", "Ġ", "<0x41>", "<s>", "</s>",
             "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|begin_of_text|>", "<|eot_id|>", "[MASK]", "<sep>",
             "<extra>", "foo", "Bar", "hello world", "'s", "'S", "'ll", "'LL", "'ve", "'re", "'d", "'m", "'t",
             "  ", "   ", "\n\n", " \n ", "\t\t", "$", "-", "==", "+", "12", "345"])
    rng = random.Random(2024)
    out = []
    for _ in range(150):
        n = rng.randint(1, 30)
        out.append("".join(rng.choice(pool) for _ in range(n)))
    return out


def byte_level_bpe(pre_tok, vocab_size, specials, ignore_merges=False):
    tok = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    tok.pre_tokenizer = pre_tok
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(training_text(), trainer)
    return tok


def make_gpt2():
    tok = byte_level_bpe(pre_tokenizers.ByteLevel(add_prefix_space=False), 700, ["<|endoftext|>"])
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    tok.add_special_tokens([AddedToken("[MASK]", lstrip=True, special=True),
                            AddedToken("<sep>", rstrip=True, special=True)])
    tok.add_tokens([AddedToken("foo", single_word=True, normalized=True),
                    AddedToken("Bar", normalized=False),
                    AddedToken("hello world", normalized=True)])
    config = {
        "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
        "pad_token": None, "add_bos_token": False, "model_max_length": 1024,
        "mask_token": {"content": "[MASK]", "lstrip": True, "normalized": False, "rstrip": False,
                       "single_word": False, "special": True, "__type": "AddedToken"},
        "chat_template": "{% for m in messages %}{{ m['content'] }}{{ eos_token }}{% endfor %}",
        "tokenizer_class": "GPT2Tokenizer",
    }
    return tok, config, None, "legacy_merges"


def make_qwen2():
    pre = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(QWEN2_RE), behavior="isolated", invert=False),
                                   pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok = byte_level_bpe(pre, 800, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    tok.normalizer = normalizers.NFC()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    config = {
        "bos_token": None,
        "eos_token": {"content": "<|im_end|>", "lstrip": False, "normalized": False, "rstrip": False,
                      "single_word": False, "special": True},
        "pad_token": "<|endoftext|>", "unk_token": None,
        "errors": "replace", "model_max_length": 32768, "tokenizer_class": "Qwen2Tokenizer",
        "chat_template": "this one loses to chat_template.jinja",
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
    }
    jinja = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
             "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
    return tok, config, jinja, None


def make_llama3():
    pre = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(LLAMA3_RE), behavior="isolated", invert=False),
                                   pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True,
                                                            use_regex=False)])
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
                "<|reserved_special_token_0|>", "<|reserved_special_token_1|>"]
    tok = byte_level_bpe(pre, 900, specials, ignore_merges=True)
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True),
        processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                      pair="<|begin_of_text|> $A <|begin_of_text|>:1 $B:1",
                                      special_tokens=[("<|begin_of_text|>", bos)]),
    ])
    config = {
        "bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "pad_token": None,
        "model_max_length": 131072, "clean_up_tokenization_spaces": True,
        "chat_template": [
            {"name": "default", "template": "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m.role }}"
                                            "<|end_header_id|>\n\n{{ m.content }}<|eot_id|>{% endfor %}"},
            {"name": "tool_use", "template": "{{ bos_token }}TOOLS{{ tools | tojson }}"},
        ],
    }
    return tok, config, None, None


def train_llama2_vocab():
    """SentencePiece-like: <unk> <s> </s>, the 256 byte tokens, then the trained pieces."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never", split=True)
    trainer = trainers.BpeTrainer(vocab_size=700, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False,
                                  limit_alphabet=120)
    tok.train_from_iterator(training_text(), trainer)
    j = json.loads(tok.to_str())
    trained = sorted(j["model"]["vocab"].items(), key=lambda kv: kv[1])
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab["<0x%02X>" % b] = len(vocab)
    for piece, _ in trained:
        if piece not in vocab:
            vocab[piece] = len(vocab)
    j["model"]["vocab"] = vocab
    j["added_tokens"] = [
        {"id": vocab[t], "content": t, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": True} for t in ["<unk>", "<s>", "</s>"]]
    return j


def make_llama2(j):
    j = json.loads(json.dumps(j))
    j["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]}
    j["pre_tokenizer"] = None
    j["decoder"] = {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"},
        {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    tok = Tokenizer.from_str(json.dumps(j))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", 1)])
    # A normalized (non-special) added token: matched as "▁<extra>" on the normalized text.
    tok.add_tokens([AddedToken("<extra>", normalized=True, special=False)])
    config = {
        "add_bos_token": True, "add_eos_token": False,
        "bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": False, "normalized": False,
                      "rstrip": False, "single_word": False},
        "eos_token": {"__type": "AddedToken", "content": "</s>", "lstrip": False, "normalized": False,
                      "rstrip": False, "single_word": False},
        "pad_token": None,
        "unk_token": {"__type": "AddedToken", "content": "<unk>", "lstrip": False, "normalized": False,
                      "rstrip": False, "single_word": False},
        "legacy": True, "model_max_length": 1000000000000000019884624838656,
        "chat_template": "{{ bos_token }}{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}",
        "sp_model_kwargs": {}, "tokenizer_class": "LlamaTokenizer",
    }
    return tok, config, None, None


def make_llama2_metaspace(j):
    j = json.loads(json.dumps(j))
    j["normalizer"] = None
    j["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": False}
    j["decoder"] = {"type": "Sequence", "decoders": [
        {"type": "ByteFallback"}, {"type": "Fuse"},
        {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": False}]}
    tok = Tokenizer.from_str(json.dumps(j))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", pair="<s> $A </s> <s> $B </s>",
                                                       special_tokens=[("<s>", 1), ("</s>", 2)])
    config = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "</s>",
              "add_bos_token": True, "add_eos_token": True, "legacy": False}
    return tok, config, None, None


def make_misc():
    tok = Tokenizer(models.BPE(unk_token="[UNK]", fuse_unk=False, continuing_subword_prefix="##",
                               end_of_word_suffix="</w>"))
    tok.normalizer = normalizers.Sequence([
        normalizers.NFKC(), normalizers.Lowercase(), normalizers.Strip(left=True, right=True),
        normalizers.Replace(Regex(r"\s+"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(" ", behavior="removed"),
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.Split(Regex(r"[,.!?;:]"), behavior="isolated"),
        pre_tokenizers.Split("-", behavior="merged_with_previous"),
        pre_tokenizers.Split(Regex(r"\$"), behavior="merged_with_next"),
        pre_tokenizers.Split(Regex(r"[=+]"), behavior="contiguous"),
        pre_tokenizers.Split(Regex(r"[^\p{Han}]+"), behavior="isolated", invert=True),
    ])
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["[UNK]", "[CLS]", "[SEP]", "[PAD]"],
                                  show_progress=False, continuing_subword_prefix="##", end_of_word_suffix="</w>",
                                  limit_alphabet=80)
    tok.train_from_iterator(training_text(), trainer)
    tok.post_processor = processors.BertProcessing(("[SEP]", tok.token_to_id("[SEP]")),
                                                   ("[CLS]", tok.token_to_id("[CLS]")))
    config = {"cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]", "unk_token": "[UNK]",
              "do_lower_case": True}
    return tok, config, None, None


def make_roberta(gpt2_tok):
    """The gpt2 vocab with ByteLevel(add_prefix_space=True) and RobertaProcessing."""
    j = json.loads(gpt2_tok.to_str())
    j["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}
    eot = gpt2_tok.token_to_id("<|endoftext|>")
    mask = gpt2_tok.token_to_id("[MASK]")
    j["post_processor"] = {"type": "RobertaProcessing", "sep": ["[MASK]", mask], "cls": ["<|endoftext|>", eot],
                           "trim_offsets": True, "add_prefix_space": True}
    config = {"bos_token": "<|endoftext|>", "eos_token": "[MASK]", "model_max_length": 512}
    return Tokenizer.from_str(json.dumps(j)), config, None, None


def make_metaspace_always(j):
    """The llama2 vocab with Sequence[Digits(contiguous), Metaspace(always, split)] and a Metaspace decoder."""
    j = json.loads(json.dumps(j))
    j["normalizer"] = {"type": "Sequence", "normalizers": [{"type": "Strip", "strip_left": False, "strip_right": True},
                                                           {"type": "NFD"}]}
    j["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": False},
        {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True}]}
    j["decoder"] = {"type": "Sequence", "decoders": [
        {"type": "ByteFallback"}, {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True}]}
    return Tokenizer.from_str(json.dumps(j)), {"bos_token": "<s>", "eos_token": "</s>"}, None, None


def make_misc_suffix(misc_tok):
    """misc with a BPEDecoder; WhitespaceSplit, Punctuation, Whitespace, Metaspace(never) pre-tokenizers."""
    j = json.loads(misc_tok.to_str())
    j["decoder"] = {"type": "BPEDecoder", "suffix": "</w>"}
    j["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "WhitespaceSplit"}, {"type": "Punctuation", "behavior": "Contiguous"}, {"type": "Whitespace"},
        {"type": "Metaspace", "replacement": "_", "prepend_scheme": "never", "split": False}]}
    j["normalizer"]["normalizers"][2] = {"type": "Strip", "strip_left": True, "strip_right": False}
    return Tokenizer.from_str(json.dumps(j)), {"unk_token": "[UNK]"}, None, None


def to_legacy_merges(tok_json):
    j = json.loads(tok_json)
    j["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m for m in j["model"]["merges"]]
    return json.dumps(j, ensure_ascii=False, separators=(",", ":"))


def write(name, tok, config, jinja, variant):
    d = os.path.join(ROOT, name)
    os.makedirs(d, exist_ok=True)
    s = tok.to_str(pretty=False)
    if variant == "legacy_merges":
        s = to_legacy_merges(s)
    tok = Tokenizer.from_str(s)  # expectations come from the exact file written
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
        f.write(s)
    with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False, indent=1)
    if jinja is not None:
        with open(os.path.join(d, "chat_template.jinja"), "w", encoding="utf-8") as f:
            f.write(jinja)
    cases = []
    for text in test_texts():
        with_sp = tok.encode(text, add_special_tokens=True)
        without = tok.encode(text, add_special_tokens=False)
        cases.append({
            "text": text,
            "ids": with_sp.ids,
            "ids_no_special": without.ids,
            "decoded": tok.decode(with_sp.ids, skip_special_tokens=False),
            "decoded_skip_special": tok.decode(with_sp.ids, skip_special_tokens=True),
        })
    rng = random.Random(99)
    size = tok.get_vocab_size(with_added_tokens=True)
    decode_cases = []
    for _ in range(30):
        ids = [rng.randrange(size + 3) for _ in range(rng.randint(0, 12))]  # a few ids past the end too
        decode_cases.append({"ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False),
                             "decoded_skip_special": tok.decode(ids, skip_special_tokens=True)})
    fuzz = []
    for text in fuzz_texts():
        ids = tok.encode(text, add_special_tokens=True).ids
        fuzz.append({"text": text, "ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False)})
    vocab = tok.get_vocab(with_added_tokens=True)
    expected = {
        "tokenizers_version": tokenizers.__version__,
        "vocab_size": max(vocab.values()) + 1,
        "cases": cases,
        "decode_cases": decode_cases,
        "fuzz": fuzz,
    }
    with open(os.path.join(d, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(expected, f, ensure_ascii=False, separators=(",", ":"))
    print(name, "vocab", expected["vocab_size"], "bytes", len(s.encode()), file=sys.stderr)
    return tok


def main():
    made = {}
    for name, make in [("gpt2", make_gpt2), ("qwen2", make_qwen2), ("llama3", make_llama3), ("misc", make_misc)]:
        made[name] = write(name, *make())
    j = train_llama2_vocab()
    write("llama2", *make_llama2(j))
    write("llama2_metaspace", *make_llama2_metaspace(j))
    write("metaspace_always", *make_metaspace_always(j))
    write("roberta", *make_roberta(made["gpt2"]))
    write("misc_suffix", *make_misc_suffix(made["misc"]))
    with open(os.path.join(ROOT, "VERSION"), "w") as f:
        f.write("tokenizers %s\n" % tokenizers.__version__)


if __name__ == "__main__":
    main()
