"""A Llama whose fp32 embedding is larger than one OpenCL buffer may be, for
scripts/check-large-weights.sh (issue 9): made with transformers, and its loss on
the check's rows computed by PyTorch.

  check_large_weights.py model --out DIR [--vocab 152064] [--hidden 8192]
  check_large_weights.py data --out FILE --vocab V [--rows 2] [--seq 64]
  check_large_weights.py loss --model DIR --data FILE

The default shape is a 72B model's embedding (Qwen2-72B: 152064 × 8192, 4.98 GB in
fp32, tied to lm_head) over one small decoder layer (64/8 heads of 128, MLP 512), so
the weights are ≈ 5.6 GB and the check stays minutes long.
"""
import argparse
import json
import os
import random


def cmd_model(a):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=a.vocab, hidden_size=a.hidden, intermediate_size=512, num_hidden_layers=1,
                      num_attention_heads=a.hidden // 128, num_key_value_heads=max(a.hidden // 1024, 1), head_dim=128,
                      max_position_embeddings=256, rms_norm_eps=1e-5, tie_word_embeddings=True, hidden_act="silu",
                      bos_token_id=1, eos_token_id=2, pad_token_id=None)
    with torch.device("cpu"):
        model = LlamaForCausalLM(cfg).to(torch.float32)
    # One shard per tensor group as transformers writes them; the embedding alone is past 4 GiB.
    model.save_pretrained(a.out, safe_serialization=True, max_shard_size="20GB")
    e = model.model.embed_tokens.weight
    print(f"model: {a.out}: embedding {tuple(e.shape)} fp32 = {e.numel() * 4 / 2**30:.2f} GiB, "
          f"{sum(p.numel() for p in model.parameters()) / 1e9:.2f} B parameters, tied lm_head")


def cmd_data(a):
    rng = random.Random(0)
    with open(a.out + ".tmp", "w") as f:
        for _ in range(a.rows):
            ids = [rng.randrange(3, a.vocab) for _ in range(a.seq)]
            f.write(json.dumps({"input_ids": ids, "labels": ids}) + "\n")
    os.replace(a.out + ".tmp", a.out)


def cmd_loss(a):
    import torch
    from transformers import AutoModelForCausalLM
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32)
    rows = [json.loads(line) for line in open(a.data)]
    ids = torch.tensor([r["input_ids"] for r in rows], dtype=torch.long)
    labels = torch.tensor([r["labels"] for r in rows], dtype=torch.long)
    with torch.no_grad():
        loss = model(input_ids=ids, labels=labels).loss.item()
    print(json.dumps({"loss": loss}))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("model")
    m.add_argument("--out", required=True)
    m.add_argument("--vocab", type=int, default=152064)
    m.add_argument("--hidden", type=int, default=8192)
    d = sub.add_parser("data")
    d.add_argument("--out", required=True)
    d.add_argument("--vocab", type=int, required=True)
    d.add_argument("--rows", type=int, default=2)
    d.add_argument("--seq", type=int, default=64)
    lo = sub.add_parser("loss")
    lo.add_argument("--model", required=True)
    lo.add_argument("--data", required=True)
    a = p.parse_args()
    {"model": cmd_model, "data": cmd_data, "loss": cmd_loss}[a.cmd](a)


if __name__ == "__main__":
    main()
