#!/usr/bin/env python3
"""Pooled hidden states as transformers + PEFT give them, for `lora-gpu embed`:
the base model's `last_hidden_state` (the final norm's output, as AutoModel
returns it) with a trained LoRA adapter applied, pooled at each sample's last
token or averaged over its tokens (attention mask), and L2-normalised with
F.normalize — on the causal parity fixtures' models and final adapters, for a
right-padded batch.

    /opt/lora-ref-venv/bin/python scripts/make_embedding_fixture.py Tests/Fixtures/tasks/embeddings.json
"""
import json
import os
import sys

import torch
import torch.nn.functional as F
from peft import PeftModel
from transformers import AutoModelForCausalLM

OUT = sys.argv[1] if len(sys.argv) > 1 else "Tests/Fixtures/tasks/embeddings.json"
REF = "Tests/Fixtures/reference"
cases = []
for name in ["llama_gqa_untied", "qwen2_bias_lora_only", "mistral_embed_lm_head"]:
    ref = json.load(open(os.path.join(REF, name, "reference.json")))
    ids = torch.tensor(ref["input_ids"])
    lengths = [ids.shape[1], ids.shape[1] - 3]
    mask = torch.tensor([[1 if t < n else 0 for t in range(ids.shape[1])] for n in lengths])
    base = AutoModelForCausalLM.from_pretrained(os.path.join(REF, name, "model"), torch_dtype=torch.float32)
    pm = PeftModel.from_pretrained(base, os.path.join(REF, name, "adapter_final")).eval()
    with torch.no_grad():
        h = pm.base_model.model.model(input_ids=ids, attention_mask=mask).last_hidden_state
    last = h[torch.arange(h.shape[0]), torch.tensor(lengths) - 1]
    mean = (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    cases.append(dict(name=name, input_ids=ids.tolist(), lengths=lengths,
                      last=last.tolist(), mean=mean.tolist(),
                      last_normalized=F.normalize(last, p=2, dim=-1).tolist(),
                      mean_normalized=F.normalize(mean, p=2, dim=-1).tolist()))
with open(OUT, "w") as f:
    json.dump(dict(cases=cases), f)
print(len(cases), "cases")
