#!/usr/bin/env python3
"""Builds the task-head parity fixtures (PEFT task types beyond CAUSAL_LM) with
the real PyTorch + transformers + PEFT, in the shape make_reference.py gives the
causal ones: for each case a tiny `*ForSequenceClassification` model with random
weights (saved with save_pretrained), wrapped by PEFT with task_type SEQ_CLS and
`init_lora_weights=False`; the initial adapter (PEFT adds `score` to
modules_to_save); a right-padded batch with its labels; the pooled logits and the
loss before training; every trainable gradient at step 1 (named as PEFT saves
them); the losses of three AdamW steps; the adapter after them, also trained in
float64 from the same start (the exact answer).

Run from the repository root, in a virtual environment outside it:
    PYTHONHASHSEED=0 /opt/lora-ref-venv/bin/python scripts/make_task_fixtures.py Tests/Fixtures/tasks
"""
import contextlib
import io
import json
import os
import shutil
import sys

import torch
import transformers
import peft
from peft import LoraConfig, PeftModel, get_peft_model
from peft.utils import get_peft_model_state_dict
from safetensors.torch import save_file
from transformers import (AutoModel, AutoModelForCausalLM, AutoModelForQuestionAnswering, AutoModelForSequenceClassification,
                          AutoModelForTokenClassification, LlamaConfig, Qwen2Config)

OUT = sys.argv[1] if len(sys.argv) > 1 else "Tests/Fixtures/tasks"

BASE = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=67, max_position_embeddings=64, rms_norm_eps=1e-5,
            rope_theta=10000.0, initializer_range=0.1, tie_word_embeddings=False, pad_token_id=0)
TRAIN = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, steps=3)

CASES = [
    # Three classes, right padding with pad_token_id 0; one sample holds a 0 before its
    # end, one ends in 0 (the read-out moves left, as transformers' rule has it).
    dict(name="llama_seq_cls", arch="llama", cfg=dict(num_labels=3), dtype="float32",
         lora=dict(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "o_proj", "gate_proj", "down_proj"]),
         labels=[2, 0, 1], max_grad_norm=1.0),
    # Qwen2 (q/k/v biases, bias="lora_only"), all-linear (which leaves out score), two labels, f16 weights.
    dict(name="qwen2_seq_cls", arch="qwen2", cfg=dict(num_labels=2, tie_word_embeddings=True), dtype="float16",
         lora=dict(r=4, lora_alpha=8, target_modules="all-linear", bias="lora_only"),
         labels=[1, 0, 1], max_grad_norm=0.0),
    # num_labels 1: regression with MSE.
    dict(name="llama_regression", arch="llama", cfg=dict(num_labels=1), dtype="float32",
         lora=dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]),
         labels=[0.5, -1.25, 2.0], max_grad_norm=0.0),
    # Multi-label: BCE with logits per label.
    dict(name="llama_multi_label", arch="llama", cfg=dict(num_labels=4, problem_type="multi_label_classification"),
         dtype="float32", lora=dict(r=4, lora_alpha=8, target_modules=["k_proj", "up_proj"]),
         labels=[[1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0], [1.0, 1.0, 0.0, 0.0]], max_grad_norm=0.0),
]

# TOKEN_CLS: score = Linear(hidden, num_labels) with a bias on every token, per-token cross-entropy
# (-100 on sub-tokens after a word's first and on padding). classifier_dropout 0 keeps it deterministic.
CASES += [
    dict(name="llama_token_cls", arch="llama", task="TOKEN_CLS", cfg=dict(num_labels=5, classifier_dropout=0.0),
         dtype="float32", lora=dict(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "up_proj"]),
         max_grad_norm=1.0),
    dict(name="qwen2_token_cls", arch="qwen2", task="TOKEN_CLS", cfg=dict(num_labels=3, classifier_dropout=0.0),
         dtype="bfloat16", lora=dict(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                                        "up_proj", "down_proj"], bias="lora_only"),
         max_grad_norm=0.0),
]

# QUESTION_ANS: qa_outputs = Linear(hidden, 2) with a bias; loss = mean of the start and end cross-entropies
# over the sequence's positions (one row unanswerable: 0, 0).
CASES += [
    dict(name="llama_question_ans", arch="llama", task="QUESTION_ANS", cfg={}, dtype="float32",
         lora=dict(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "down_proj"]),
         spans=[(2, 4), (0, 0), (1, 3)], max_grad_norm=1.0),
    # Qwen2 (q/k/v biases, bias="lora_only"), every projection, bf16 weights. (PEFT 0.21 cannot take all-linear
    # here: it wraps qa_outputs in LoRA, then fails to save it whole: "modules_to_save cannot be applied to …".)
    dict(name="qwen2_question_ans", arch="qwen2", task="QUESTION_ANS", cfg={}, dtype="bfloat16",
         lora=dict(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                      "down_proj"], bias="lora_only"),
         spans=[(5, 6), (3, 3), (0, 0)], max_grad_norm=0.0),
]

# FEATURE_EXTRACTION: the bare model (AutoModel, PEFT keys without "model."), trained contrastively as
# sentence-transformers' MultipleNegativesRankingLoss: pooled last_hidden_state (mean over the mask, or the
# last token), F.normalize, scale·cosine against every positive (and negative), cross-entropy towards the
# anchor's own positive. The model directory is a causal checkpoint (what users start from).
CASES += [
    dict(name="llama_contrastive_mean", arch="llama", task="FEATURE_EXTRACTION", cfg={}, dtype="float32",
         lora=dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "up_proj", "down_proj"]),
         pooling="mean", negatives=True, scale=20.0, max_grad_norm=1.0),
    dict(name="qwen2_contrastive_last", arch="qwen2", task="FEATURE_EXTRACTION", cfg={}, dtype="float32",
         # Not k_proj: with bias lora_only its bias would train, and that gradient is zero in exact arithmetic (a
         # constant on every score of a query), so Adam would move it by fp32 noise (see the QA fixtures' rule).
         lora=dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "o_proj", "up_proj"], bias="lora_only"),
         pooling="last", negatives=False, scale=20.0, max_grad_norm=0.0),
]

CONFIGS = {"llama": LlamaConfig, "qwen2": Qwen2Config}
AUTO = {"SEQ_CLS": AutoModelForSequenceClassification, "TOKEN_CLS": AutoModelForTokenClassification,
        "QUESTION_ANS": AutoModelForQuestionAnswering, "FEATURE_EXTRACTION": AutoModel}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def batch(vocab):
    g = torch.Generator().manual_seed(1234)
    ids = torch.randint(1, vocab, (3, 8), generator=g)
    ids[0, 6:] = 0          # length 6
    ids[1, 3] = 0           # a pad id inside the sample (length 8: no padding)
    ids[2, 4] = 0           # length 5 whose last token is the pad id: the read-out is token 3
    ids[2, 5:] = 0
    return ids


def tensors(d):
    return {k: v.detach().to(torch.float32).contiguous() for k, v in d.items()}


def token_labels(ids, num_labels):
    g = torch.Generator().manual_seed(99)
    labels = torch.randint(0, num_labels, ids.shape, generator=g)
    labels[ids == 0] = -100          # padding
    labels[0, 1] = -100              # a word's second sub-token
    labels[1, 5] = -100
    return labels


def contrastive_rows(case, vocab):
    """Anchors, positives (and negatives) of three samples each, right-padded with 0: ids and lengths."""
    g = torch.Generator().manual_seed(4321)
    groups = 3 if case["negatives"] else 2
    lengths = [[5, 8, 3], [7, 4, 8], [6, 2, 5]][:groups]
    lengths = [n for grp in lengths for n in grp]
    ids = torch.randint(1, vocab, (len(lengths), max(lengths)), generator=g)
    for r, n in enumerate(lengths):
        ids[r, n:] = 0
    return ids, lengths


def contrastive_loss(pm, case, ids, lengths, keep=None):
    """sentence-transformers' MultipleNegativesRankingLoss on the PEFT model's pooled hidden states."""
    mask = (torch.arange(ids.shape[1])[None, :] < torch.tensor(lengths)[:, None]).long()
    h = pm(input_ids=ids, attention_mask=mask).last_hidden_state
    if case["pooling"] == "mean":
        m = mask[..., None].to(h.dtype)
        pooled = (h * m).sum(1) / m.sum(1)
    else:
        pooled = h[torch.arange(h.shape[0]), torch.tensor(lengths) - 1]
    v = torch.nn.functional.normalize(pooled, p=2, dim=-1)
    B = 3
    sim = case["scale"] * v[:B] @ v[B:].T
    if keep is not None:
        keep["sim"] = sim
    return torch.nn.functional.cross_entropy(sim, torch.arange(B))


def inputs(case, ids, labels):
    """The model's keyword arguments: labels, or a QA case's start and end positions."""
    if case.get("task") == "QUESTION_ANS":
        return dict(input_ids=ids, start_positions=labels[:, 0], end_positions=labels[:, 1])
    return dict(input_ids=ids, labels=labels)


def label_tensor(case, ids=None):
    if case.get("task") == "QUESTION_ANS":
        return torch.tensor(case["spans"], dtype=torch.long)
    if case.get("task") == "TOKEN_CLS":
        return token_labels(ids, case["cfg"]["num_labels"])
    l = case["labels"]
    if isinstance(l[0], list) or isinstance(l[0], float):
        return torch.tensor(l, dtype=torch.float32)
    return torch.tensor(l, dtype=torch.long)


def make_case(case):
    torch.manual_seed(42)
    root = os.path.join(OUT, case["name"])
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    cfg = CONFIGS[case["arch"]](**{**BASE, **case["cfg"]})
    task = case.get("task", "SEQ_CLS")
    auto = AUTO[task]
    fe = task == "FEATURE_EXTRACTION"
    model = (AutoModelForCausalLM if fe else auto).from_config(cfg, torch_dtype=torch.float32)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias"):
                p.normal_(0.0, 0.1)
    model = model.to(DTYPES[case["dtype"]])
    model.save_pretrained(os.path.join(root, "model"), safe_serialization=True)
    model = auto.from_pretrained(os.path.join(root, "model"), torch_dtype=torch.float32)
    with open(os.path.join(root, "print_model.txt"), "w") as f:
        f.write(str(model) + "\n")

    lcfg = LoraConfig(task_type=task, init_lora_weights=False, lora_dropout=0.0, **case["lora"])
    pm = get_peft_model(model, lcfg)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        pm.print_trainable_parameters()
    pm.save_pretrained(os.path.join(root, "adapter_initial"))

    if fe:
        ids, lengths = contrastive_rows(case, cfg.vocab_size)
        labels = torch.tensor(lengths)
    else:
        ids = batch(cfg.vocab_size)
        labels = label_tensor(case, ids)
    params = [(n, p) for n, p in pm.named_parameters() if p.requires_grad]
    opt = torch.optim.AdamW([p for _, p in params], lr=TRAIN["lr"], betas=TRAIN["betas"], eps=TRAIN["eps"],
                            weight_decay=TRAIN["weight_decay"])
    pm.train()
    losses, grad_norms = [], []
    for step in range(TRAIN["steps"]):
        opt.zero_grad()
        keep = {}
        out = (type("Out", (), dict(loss=contrastive_loss(pm, case, ids, lengths, keep)))() if fe
               else pm(**inputs(case, ids, labels)))
        out.loss.backward()
        if step == 0:
            logits = (keep["sim"] if fe else
                      torch.stack([out.start_logits, out.end_logits], dim=-1) if task == "QUESTION_ANS" else out.logits)
            save_file({"logits": logits.detach().float().contiguous()}, os.path.join(root, "logits_step0.safetensors"))
            grads = {n: p.grad for n, p in params}
            save_file(tensors(get_peft_model_state_dict(pm, state_dict=grads)),
                      os.path.join(root, "grads_step0.safetensors"))
        grad_norms.append(torch.sqrt(sum((p.grad.double() ** 2).sum() for _, p in params)).item())
        if case["max_grad_norm"] > 0:
            torch.nn.utils.clip_grad_norm_([p for _, p in params], case["max_grad_norm"])
        opt.step()
        losses.append(out.loss.item())
    pm.save_pretrained(os.path.join(root, "adapter_final"))
    final32 = {k: v.double() for k, v in get_peft_model_state_dict(pm).items()}
    final64 = train_float64(root, ids, labels, case, auto)
    save_file({k: v.contiguous() for k, v in final64.items()}, os.path.join(root, "adapter_final_f64.safetensors"))
    fp32_error = {k: ((final32[k] - final64[k]).norm() / final64[k].norm()).item() for k in final64}
    ref = dict(
        versions=dict(torch=torch.__version__, transformers=transformers.__version__, peft=peft.__version__),
        input_ids=ids.tolist(), labels=labels.tolist(), task_type=task,
        **(dict(contrastive=dict(anchors=3, pooling=case["pooling"], scale=case["scale"])) if fe else {}),
        problem_type=pm.base_model.model.config.problem_type if task == "SEQ_CLS" else None,
        losses=losses, grad_norms=grad_norms,
        train=dict(TRAIN, max_grad_norm=case["max_grad_norm"]),
        trainable_line=buf.getvalue().strip(),
        trainable_names=[n for n, _ in params],
        torch_fp32_vs_fp64=fp32_error,
    )
    with open(os.path.join(root, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1)
    print(case["name"], "losses", losses, "|", ref["trainable_line"])


def train_float64(root, ids, labels, case, auto):
    model = auto.from_pretrained(os.path.join(root, "model"), torch_dtype=torch.float64)
    pm = PeftModel.from_pretrained(model, os.path.join(root, "adapter_initial"), is_trainable=True).to(torch.float64)
    params = [p for _, p in pm.named_parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=TRAIN["lr"], betas=TRAIN["betas"], eps=TRAIN["eps"],
                            weight_decay=TRAIN["weight_decay"])
    pm.train()
    lab = labels.double() if labels.dtype.is_floating_point else labels
    for _ in range(TRAIN["steps"]):
        opt.zero_grad()
        if case.get("task") == "FEATURE_EXTRACTION":
            contrastive_loss(pm, case, ids, labels.tolist()).backward()
        else:
            pm(**inputs(case, ids, lab)).loss.backward()
        if case["max_grad_norm"] > 0:
            torch.nn.utils.clip_grad_norm_(params, case["max_grad_norm"])
        opt.step()
    return {k: v.detach().double() for k, v in get_peft_model_state_dict(pm).items()}


if __name__ == "__main__":
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    for c in CASES:
        make_case(c)
