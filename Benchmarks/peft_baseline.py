#!/usr/bin/env python3
"""The Python side of Benchmarks/compare-peft.sh.

Subcommands (each prints what it did; compare-peft.sh calls them in order):

  model   --out DIR [--layers N]        a SmolLM2-135M-shaped Llama with random weights,
                                        saved with transformers' save_pretrained (fp32, tied)
  data    --out DIR --samples S         the same pre-tokenized rows for both trainers:
                                        plain.jsonl (every token trained) and chat.jsonl
                                        (first 60 % of each row labelled -100: 40 % trained)
  torch   --model DIR --data FILE ...   PyTorch + transformers + PEFT training steps (fp32,
                                        SDPA, LoRA r16 α32 dropout 0.05 on all seven
                                        projections, AdamW, clipping 1.0); prints tokens/s of
                                        the steps after the warm-up as JSON
  measure --out FILE -- CMD ...         runs CMD, records its wall time and peak resident
                                        memory (wait4's ru_maxrss: the kernel's own count)
  report  --work DIR --warmup W ...     the side-by-side table from the recorded runs

Only the standard library is needed for `data`, `measure` and `report`.
"""
import argparse
import json
import os
import random
import subprocess
import sys
import time

# SmolLM2-135M's shape (HuggingFaceTB/SmolLM2-135M config.json), random weights.
SHAPE = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
             num_key_value_heads=3, vocab_size=49152, max_position_embeddings=2048, rms_norm_eps=1e-5,
             tie_word_embeddings=True, hidden_act="silu")
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def cmd_model(a):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    shape = dict(SHAPE, num_hidden_layers=a.layers)
    cfg = LlamaConfig(**shape, bos_token_id=1, eos_token_id=2, pad_token_id=None)
    model = LlamaForCausalLM(cfg).to(torch.float32)
    model.save_pretrained(a.out, safe_serialization=True)
    n = sum(p.numel() for p in model.parameters())
    print(f"model: {a.out}: {a.layers} layers, {n / 1e6:.1f} M parameters (fp32, tied embeddings)")


def cmd_data(a):
    os.makedirs(a.out, exist_ok=True)
    rng = random.Random(a.seed)
    rows = [[rng.randrange(3, a.vocab) for _ in range(a.seq)] for _ in range(a.samples)]
    prompt = a.seq * 3 // 5
    for name, masked in (("plain", 0), ("chat", prompt)):
        path = os.path.join(a.out, name + ".jsonl")
        with open(path + ".tmp", "w") as f:
            for ids in rows:
                labels = [-100] * masked + ids[masked:]
                f.write(json.dumps({"input_ids": ids, "labels": labels}) + "\n")
        os.replace(path + ".tmp", path)
    print(f"data: {a.samples} rows × {a.seq} tokens in {a.out}/plain.jsonl (all trained) and "
          f"{a.out}/chat.jsonl (first {prompt} of each row -100)")


def vm_hwm_kib():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def cmd_torch(a):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32, attn_implementation="sdpa")
    lora = LoraConfig(r=a.r, lora_alpha=a.alpha, lora_dropout=a.dropout, target_modules=TARGETS,
                      task_type="CAUSAL_LM")
    model = get_peft_model(model, lora)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    # transformers' Trainer defaults: AdamW (torch), weight_decay 0, clipping at 1.0.
    opt = torch.optim.AdamW(params, lr=a.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    rows = []
    with open(a.data) as f:
        for line in f:
            o = json.loads(line)
            rows.append((o["input_ids"], o["labels"]))
    steps = a.warmup + a.steps
    times, losses, tokens = [], [], []
    for s in range(steps):
        batch = [rows[(s * a.batch + i) % len(rows)] for i in range(a.batch)]
        ids = torch.tensor([b[0] for b in batch], dtype=torch.long)
        labels = torch.tensor([b[1] for b in batch], dtype=torch.long)
        t0 = time.perf_counter()
        out = model(input_ids=ids, labels=labels)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss = out.loss.item()
        dt = time.perf_counter() - t0
        times.append(dt)
        losses.append(loss)
        tokens.append(ids.numel())
        print(f"torch step {s + 1}/{steps}: {dt:.2f} s, {ids.numel() / dt:.1f} tokens/s, loss {loss:.4f}"
              + (" (warm-up)" if s < a.warmup else ""), flush=True)
    timed = times[a.warmup:]
    tps = sum(tokens[a.warmup:]) / sum(timed) if timed else float("nan")
    result = {"trainer": "pytorch+peft", "torch": torch.__version__, "threads": torch.get_num_threads(),
              "tokens_per_second": tps, "step_seconds": times, "losses": losses, "warmup": a.warmup,
              "vm_hwm_kib": vm_hwm_kib()}
    with open(a.out + ".tmp", "w") as f:
        json.dump(result, f)
    os.replace(a.out + ".tmp", a.out)
    print(f"torch: {tps:.1f} tokens/s over {len(timed)} steps after {a.warmup} warm-up")


def cmd_measure(a):
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    with open(a.out + ".tmp", "w") as f:
        json.dump({"cmd": cmd, "exit": code, "wall_seconds": wall, "max_rss_kib": ru.ru_maxrss}, f)
    os.replace(a.out + ".tmp", a.out)
    print(f"measure: exit {code}, {wall:.1f} s, peak resident memory {ru.ru_maxrss / 1024:.0f} MiB")
    sys.exit(code)


def lora_tokens_per_second(metrics_path, warmup):
    """Tokens/s of the steps after the warm-up, from metrics.jsonl (logging_steps 1: one
    record per step; each record's tokens_per_second covers that step's window)."""
    recs = [json.loads(l) for l in open(metrics_path) if l.strip()]
    timed = [r for r in recs if r["step"] > warmup and r.get("tokens_per_second")]
    return timed, recs


def cmd_report(a):
    tokens_per_step = a.batch * a.seq
    out = {"host": a.host, "shapes": {}}
    lines = []
    for shape in ("plain", "chat"):
        tm = json.load(open(os.path.join(a.work, f"measure-torch-{shape}.json")))
        lm = json.load(open(os.path.join(a.work, f"measure-lora-{shape}.json")))
        tr = json.load(open(os.path.join(a.work, f"torch-{shape}.json")))
        timed, recs = lora_tokens_per_second(os.path.join(a.work, f"lora-{shape}", "metrics.jsonl"), a.warmup)
        # Sum of tokens over sum of each step's seconds (not a mean of rates).
        lora_tps = (tokens_per_step * len(timed) / sum(tokens_per_step / r["tokens_per_second"] for r in timed)
                    if timed else float("nan"))
        torch_tps = tr["tokens_per_second"]
        row = {"pytorch_tokens_per_second": torch_tps, "lora_gpu_tokens_per_second": lora_tps,
               "speed_ratio": lora_tps / torch_tps, "pytorch_peak_rss_mib": tm["max_rss_kib"] / 1024,
               "lora_gpu_peak_rss_mib": lm["max_rss_kib"] / 1024,
               "memory_ratio": lm["max_rss_kib"] / tm["max_rss_kib"],
               "pytorch_step_seconds": tr["step_seconds"], "lora_gpu_step_tokens_per_second": [r["tokens_per_second"] for r in recs],
               "pytorch_losses": tr["losses"], "lora_gpu_losses": [r["loss"] for r in recs],
               "timed_steps": len(timed), "warmup": a.warmup}
        out["shapes"][shape] = row
        label = "plain text (all trained)" if shape == "plain" else "chat (40 % trained)"
        lines.append(f"| {label} | {torch_tps:.1f} | {lora_tps:.1f} | {row['speed_ratio']:.2f}× | "
                     f"{row['pytorch_peak_rss_mib']:.0f} | {row['lora_gpu_peak_rss_mib']:.0f} | {row['memory_ratio']:.2f}× |")
    with open(os.path.join(a.work, "summary.json.tmp"), "w") as f:
        json.dump(out, f, indent=1)
    os.replace(os.path.join(a.work, "summary.json.tmp"), os.path.join(a.work, "summary.json"))
    print("| data | PyTorch+PEFT tokens/s | lora-gpu tokens/s | speed ratio | PyTorch peak RSS MiB "
          "| lora-gpu peak RSS MiB | memory ratio |")
    print("|---|---|---|---|---|---|---|")
    for l in lines:
        print(l)
    print(f"(tokens/s: {a.batch}×{a.seq} tokens per step, mean of the steps after {a.warmup} warm-up; "
          f"speed ratio = lora-gpu / PyTorch; memory ratio = lora-gpu / PyTorch; summary: {a.work}/summary.json)")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd_name", required=True)
    m = sub.add_parser("model")
    m.add_argument("--out", required=True)
    m.add_argument("--layers", type=int, default=SHAPE["num_hidden_layers"])
    m.set_defaults(fn=cmd_model)
    d = sub.add_parser("data")
    d.add_argument("--out", required=True)
    d.add_argument("--samples", type=int, required=True)
    d.add_argument("--seq", type=int, default=256)
    d.add_argument("--vocab", type=int, default=SHAPE["vocab_size"])
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(fn=cmd_data)
    t = sub.add_parser("torch")
    t.add_argument("--model", required=True)
    t.add_argument("--data", required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--batch", type=int, default=4)
    t.add_argument("--warmup", type=int, default=2)
    t.add_argument("--steps", type=int, default=3)
    t.add_argument("--threads", type=int, default=os.cpu_count())
    t.add_argument("--r", type=int, default=16)
    t.add_argument("--alpha", type=int, default=32)
    t.add_argument("--dropout", type=float, default=0.05)
    t.add_argument("--lr", type=float, default=1e-4)
    t.add_argument("--seed", type=int, default=42)
    t.set_defaults(fn=cmd_torch)
    me = sub.add_parser("measure")
    me.add_argument("--out", required=True)
    me.add_argument("cmd", nargs=argparse.REMAINDER)
    me.set_defaults(fn=cmd_measure)
    r = sub.add_parser("report")
    r.add_argument("--work", required=True)
    r.add_argument("--warmup", type=int, required=True)
    r.add_argument("--batch", type=int, default=4)
    r.add_argument("--seq", type=int, default=256)
    r.add_argument("--host", default="")
    r.set_defaults(fn=cmd_report)
    a = p.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
