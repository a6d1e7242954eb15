#!/usr/bin/env python3
"""Greedy generation fixtures made with the real transformers + PEFT `generate`.

For a few of the tiny reference models (Tests/Fixtures/reference/<case>/model)
with their trained PEFT adapter (adapter_final): transformers' greedy
`generate` (do_sample=False) from a few prompt id sequences, once without any
EOS (max_new_tokens tokens) and once with a chosen EOS id (the token greedy
decoding emits at step 5 of the first prompt, so generation must stop there);
for the first prompt also the raw logits of every step (output_logits=True),
and the same generation after `merge_and_unload()` (W + s·B·A merged).
Also transformers' own sampling warpers (temperature → top-k → top-p, in the
order `generate` applies them) on a few logit rows, some with ties.

And an end-to-end case for `lora-gpu generate` (cli_chatml): a byte-level
BPE tokenizer trained here with ChatML special tokens and a chat template, a
tiny Llama over its vocabulary, a PEFT adapter; the expected stdout of
--prompt (apply_chat_template(tokenize=True)), --raw-prompt, --chat-template
FILE and a two-turn --chat, each from transformers' greedy generate stopping
at <|im_end|> and decoded with skip_special_tokens=True.

The sliding-window cases (mistral_sliding_window: window 3; gemma3_sliding: window 4 on its first layer) generate
MAX_NEW = 20 tokens, far past the window, and their 23-token prompt is longer than it, so prefill and decode both
drop keys. gemma3_sliding is tied with a LoRA on embed_tokens: its merged_expected is PEFT's merge_and_unload, which
adds B·A to the one matrix embed_tokens and lm_head share (the lm_head side too, unlike the unmerged adapter).

Run from the repository root (after scripts/make_reference.py):
    PYTHONHASHSEED=0 /opt/lora-ref-venv/bin/python scripts/make_generate_fixtures.py Tests/Fixtures/generate [CASE ...]
(PYTHONHASHSEED=0 keeps the order PEFT writes target_modules in, so unchanged fixtures stay unchanged.)
CASE: names from CASES, "warpers", "cli_chatml" or "cli_chatml_kwargs" to (re)make only those; everything when none.
"""
import copy
import functools
import json
import os
import sys

import peft
import torch
import transformers
from peft import PeftModel
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

REF = "Tests/Fixtures/reference"
OUT = sys.argv[1] if len(sys.argv) > 1 else "Tests/Fixtures/generate"
CASES = ["llama_gqa_untied", "qwen2_bias_lora_only", "mistral_embed_lm_head", "llama_tied_rslora_regex", "qwen3_qk_norm", "smollm3_nope",
         "phi3_fused_longrope", "mistral_sliding_window", "gemma3_sliding", "gemma3_softcap"]
MAX_NEW = 20
EOS_STEP = 5


def prompts(vocab):
    g = torch.Generator().manual_seed(7)
    # A one-token prompt, a short one, and one longer than 16 (a second key block).
    return [[3], torch.randint(0, vocab, (5,), generator=g).tolist(), torch.randint(0, vocab, (23,), generator=g).tolist()]


def load(case):
    model = AutoModelForCausalLM.from_pretrained(os.path.join(REF, case, "model"), torch_dtype=torch.float32)
    pm = PeftModel.from_pretrained(model, os.path.join(REF, case, "adapter_final"))
    pm.eval()
    # "No EOS" must mean none: generate merges an unset eos_token_id with the model's own generation_config
    # (MistralConfig's 2), which would stop a run that happens to emit it.
    model.generation_config.eos_token_id = None
    return pm


def greedy(pm, ids, eos, logits=False):
    # No EOS at all (eos=None) or exactly the given one; no pad warnings.
    gc = transformers.GenerationConfig(do_sample=False, max_new_tokens=MAX_NEW, eos_token_id=eos,
                                       pad_token_id=0, bos_token_id=None)
    with torch.no_grad():
        out = pm.generate(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                          generation_config=gc, return_dict_in_generate=True, output_logits=logits)
    new = out.sequences[0, len(ids):].tolist()
    return new, (torch.cat(out.logits, 0).float().contiguous() if logits else None)


def make(case):
    torch.manual_seed(0)
    pm = load(case)
    vocab = pm.config.vocab_size
    ps = prompts(vocab)
    runs = []
    first_logits = None
    for i, p in enumerate(ps):
        new, lg = greedy(pm, p, None, logits=(i == 0))
        if i == 0:
            first_logits = lg
        runs.append(dict(prompt=p, eos=None, expected=new))
    eos = runs[0]["expected"][EOS_STEP]
    stopped, _ = greedy(pm, ps[0], eos)
    runs.append(dict(prompt=ps[0], eos=eos, expected=stopped))
    merged = pm.merge_and_unload()
    merged_new, _ = greedy(merged, ps[0], None)
    root = os.path.join(OUT, case)
    os.makedirs(root, exist_ok=True)
    save_file({"logits": first_logits}, os.path.join(root, "logits_first_prompt.safetensors"))
    ref = dict(versions=dict(torch=torch.__version__, transformers=transformers.__version__, peft=peft.__version__),
               model=os.path.join(REF, case, "model"), adapter=os.path.join(REF, case, "adapter_final"),
               max_new_tokens=MAX_NEW, runs=runs, merged_expected=merged_new)
    with open(os.path.join(root, "generate.json"), "w") as f:
        json.dump(ref, f, indent=1)
    print(case, [r["expected"] for r in runs], "merged", merged_new)


# (temperature, top_k, top_p); None leaves the warper out, as generate does for 1.0 / 0 / 1.0.
WARPS = [(0.7, None, None), (1.0, 5, None), (1.0, None, 0.9), (0.8, 10, 0.95), (1.3, 3, 0.5), (1.0, 1, None),
         (0.5, None, 0.3), (1.0, 67, 0.999)]


def make_warpers():
    from transformers.generation.logits_process import (LogitsProcessorList, TemperatureLogitsWarper,
                                                         TopKLogitsWarper, TopPLogitsWarper)
    g = torch.Generator().manual_seed(11)
    rows = torch.randn(4, 67, generator=g) * 3
    rows[1, 10:14] = rows[1].max()           # ties at the top
    rows[2, ::7] = 0.25                      # ties in the middle
    out = {"logits": rows.contiguous()}
    combos = []
    for i, (t, k, p) in enumerate(WARPS):
        procs = LogitsProcessorList()
        if t is not None and t != 1.0:
            procs.append(TemperatureLogitsWarper(t))
        if k is not None:
            procs.append(TopKLogitsWarper(k))
        if p is not None:
            procs.append(TopPLogitsWarper(p))
        out[f"warped_{i}"] = procs(None, rows.clone()).contiguous()
        combos.append(dict(temperature=t, top_k=k, top_p=p))
    os.makedirs(OUT, exist_ok=True)
    save_file(out, os.path.join(OUT, "warpers.safetensors"))
    with open(os.path.join(OUT, "warpers.json"), "w") as f:
        json.dump(dict(transformers=transformers.__version__, combos=combos), f, indent=1)


CHATML = ("{% for message in messages %}"
          "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
          "{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
PLAIN = ("{% for m in messages %}{{ m['role'] | capitalize }}: {{ m['content'] }}\n{% endfor %}"
         "{% if add_generation_prompt %}Assistant:{% endif %}")
CORPUS = ["The quick brown fox jumps over the lazy dog.", "Un café à Paris coûte 3 €, très cher!",
          "Emoji: 😀 🎉 and accents: ñ ü ø.", "Hello, how are you today? I am fine, thank you.",
          "LoRA adapters fine-tune large language models cheaply.", "Ça va? Übermäßig schön. 東京 2026."] * 20


def make_cli_case():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, PreTrainedTokenizerFast
    from peft import LoraConfig, get_peft_model
    root = os.path.join(OUT, "cli_chatml")
    mdir, adir = os.path.join(root, "model"), os.path.join(root, "adapter")
    os.makedirs(root, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    # EOS is <|endoftext|> (as in SmolLM2's base config): <|im_end|> is known only as the template's end of turn.
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|endoftext|>",
                                 unk_token="<|endoftext|>", pad_token="<|endoftext|>")
    hf.chat_template = CHATML
    hf.save_pretrained(mdir)
    im_end = hf.convert_tokens_to_ids("<|im_end|>")
    eos = hf.convert_tokens_to_ids("<|endoftext|>")
    torch.manual_seed(5)
    cfg = LlamaConfig(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      vocab_size=len(hf), max_position_embeddings=128, rms_norm_eps=1e-5, initializer_range=0.2,
                      tie_word_embeddings=False, bos_token_id=hf.bos_token_id, eos_token_id=eos)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    lcfg = LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8, init_lora_weights=False,
                      target_modules=["q_proj", "v_proj", "down_proj"])
    prompt = "Hello, café?"

    def chat_ids(messages, template=None):
        r = hf.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, chat_template=template)
        return r["input_ids"] if hasattr(r, "keys") else r

    def gen(pm, ids, n=24, stops=None):
        # What lora-gpu stops at: the EOS ids and the template's end-of-turn token (none for plain.jinja).
        gc = transformers.GenerationConfig(do_sample=False, max_new_tokens=n, eos_token_id=stops or [im_end, eos],
                                           pad_token_id=0)
        with torch.no_grad():
            out = pm.generate(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                              generation_config=gc)
        return out[0, len(ids):].tolist()

    # Make <|im_end|> the greedy choice where the 8th generated token would be (1.05 × its lm_head row),
    # so --prompt ends at the end-of-turn token mid-way. The adapter is drawn twice from the same seed.
    torch.manual_seed(6)
    probe = get_peft_model(copy.deepcopy(model), lcfg).eval()
    first = gen(probe, chat_ids([{"role": "user", "content": prompt}]))
    with torch.no_grad():
        model.lm_head.weight[im_end] = 1.05 * model.lm_head.weight[first[7]]
    model.save_pretrained(mdir, safe_serialization=True)
    torch.manual_seed(6)
    pm = get_peft_model(model, lcfg).eval()
    pm.save_pretrained(adir)
    gen = functools.partial(gen, pm)

    def text(ids):
        return hf.decode([i for i in ids if i not in (im_end, eos)], skip_special_tokens=True)

    cases = []
    ids = chat_ids([{"role": "user", "content": prompt}])
    new = gen(ids)
    cases.append(dict(args=["--prompt", prompt], prompt_ids=ids, ids=new, stdout=text(new) + "\n"))
    raw = "LoRA adapters"
    ids = hf(raw)["input_ids"]
    new = gen(ids)
    cases.append(dict(args=["--raw-prompt", raw], prompt_ids=ids, ids=new, stdout=text(new) + "\n"))
    with open(os.path.join(root, "plain.jinja"), "w") as f:
        f.write(PLAIN)
    ids = chat_ids([{"role": "user", "content": prompt}], template=PLAIN)
    new = gen(ids, stops=[eos])
    cases.append(dict(args=["--prompt", prompt, "--chat-template", "plain.jinja"], prompt_ids=ids, ids=new,
                      stdout=text(new) + "\n"))
    # Two turns: the reply's decoded text goes back into the conversation.
    turns, messages, out = ["Hello!", "Un café, s'il vous plaît."], [], ""
    for t in turns:
        messages.append({"role": "user", "content": t})
        new = gen(chat_ids(messages))
        messages.append({"role": "assistant", "content": text(new)})
        out += text(new) + "\n"
    cases.append(dict(args=["--chat"], stdin="\n".join(turns) + "\n", stdout=out, conversation=messages))
    cases += gguf_cases()
    with open(os.path.join(root, "cli.json"), "w") as f:
        json.dump(dict(im_end=im_end, eos=eos, max_new_tokens=24, cases=cases), f, indent=1, ensure_ascii=False)
    print("cli_chatml", [c["stdout"] for c in cases])


def make_cli_kwargs_case():
    """`generate --chat-template-kwargs` (cli_chatml/kwargs.json), on the committed cli_chatml model, tokenizer and
    adapter (not remade here): Qwen3-0.6B's template (the fuzz corpus' copy, Tests/Fixtures/text/templates) given as a
    file, --prompt rendered by apply_chat_template(add_generation_prompt=True, tokenize=True) with enable_thinking=False
    (the generation prompt writes an empty think block) and without it (the variable undefined), each with
    transformers' greedy continuation from those ids, stopping at <|im_end|> or EOS as lora-gpu does."""
    from transformers import AutoTokenizer
    root = os.path.join(OUT, "cli_chatml")
    with open("Tests/Fixtures/text/templates/chat_templates.json") as f:
        qwen3 = json.load(f)["templates"]["qwen3_0_6b"]["template"]
    hf = AutoTokenizer.from_pretrained(os.path.join(root, "model"))
    im_end, eos = hf.convert_tokens_to_ids("<|im_end|>"), hf.convert_tokens_to_ids("<|endoftext|>")
    model = AutoModelForCausalLM.from_pretrained(os.path.join(root, "model"), dtype=torch.float32)
    pm = PeftModel.from_pretrained(model, os.path.join(root, "adapter")).eval()
    prompt, n = "Hello, café?", 24
    cases = []
    for kwargs in [dict(enable_thinking=False), {}]:
        msgs = [{"role": "user", "content": prompt}]
        r = hf.apply_chat_template(msgs, chat_template=qwen3, add_generation_prompt=True, tokenize=True, **kwargs)
        ids = r["input_ids"] if hasattr(r, "keys") else r
        gc = transformers.GenerationConfig(do_sample=False, max_new_tokens=n, eos_token_id=[im_end, eos], pad_token_id=0)
        with torch.no_grad():
            out = pm.generate(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                              generation_config=gc)
        new = out[0, len(ids):].tolist()
        text = hf.decode([i for i in new if i not in (im_end, eos)], skip_special_tokens=True)
        cases.append(dict(kwargs=[f"{k}={str(v).lower()}" for k, v in kwargs.items()], prompt=prompt,
                          rendered=hf.apply_chat_template(msgs, chat_template=qwen3, add_generation_prompt=True,
                                                          tokenize=False, **kwargs),
                          prompt_ids=ids, ids=new, stdout=text + "\n"))
    with open(os.path.join(root, "kwargs.json"), "w") as f:
        json.dump(dict(template="qwen3_0_6b", im_end=im_end, eos=eos, max_new_tokens=n, cases=cases), f, indent=1,
                  ensure_ascii=False)
    print("cli_chatml_kwargs", [(c["kwargs"], len(c["prompt_ids"]), c["stdout"]) for c in cases])


def gguf_cases():
    """--prompt on GGUF files of Tests/Fixtures/gguf (no adapter): the model, tokenizer and chat template
    as transformers reads them from the file (from_pretrained(gguf_file=...))."""
    from transformers import AutoTokenizer
    d = "Tests/Fixtures/gguf"
    cases = []
    for f in ["llama_f32.gguf", "qwen2_f32.gguf"]:
        tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
        m = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32).eval()
        msgs = [{"role": "user", "content": "hello, café"}]
        r = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True)
        ids = r["input_ids"] if hasattr(r, "keys") else r
        gc = transformers.GenerationConfig(do_sample=False, max_new_tokens=24, eos_token_id=tok.eos_token_id, pad_token_id=0)
        with torch.no_grad():
            out = m.generate(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                             generation_config=gc)
        new = out[0, len(ids):].tolist()
        text = tok.decode([i for i in new if i != tok.eos_token_id], skip_special_tokens=True)
        cases.append(dict(model="gguf/" + f, args=["--prompt", msgs[0]["content"]], prompt_ids=ids, ids=new,
                          stop=tok.eos_token_id, stdout=text + "\n"))
    return cases


if __name__ == "__main__":
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    only = sys.argv[2:]   # case names to (re)make; all when none
    for c in CASES:
        if not only or c in only:
            make(c)
    if not only or "warpers" in only:
        make_warpers()
    if not only or "cli_chatml" in only:
        make_cli_case()
    if not only or "cli_chatml_kwargs" in only:
        make_cli_kwargs_case()
