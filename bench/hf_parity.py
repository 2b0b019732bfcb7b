"""Hugging Face Llama semantics in plain PyTorch (fp32, bench/hf_llama.py), to check that a chuxin-data checkpoint computes the
same losses as `transformers`' LlamaForCausalLM would: weights read from model.safetensors by their HF names,
rotate_half RoPE, RMSNorm, SwiGLU, untied head; documents separated by EOS with the block-diagonal mask and
positions reset per document (what transformers does when given position_ids and a 4-D mask).
    /usr/bin/python3 bench/hf_parity.py CHECKPOINT_DIR INPUT.json [THREADS]
INPUT {"tokens": [[...]], "eos": id}: prints per-row losses as JSON.
INPUT {"requests": [{"input": [...], "targets": [...]}], "batch_tokens": N}: the log-likelihood of each request's
targets, read at the last len(targets) positions of its input (lm-evaluation-harness's _loglikelihood_tokens, plain
causal attention, right padding, batches sorted by length as the harness does); prints {"logprobs": [...],
"seconds": s} with the time spent scoring (not loading)."""
import json
import sys
import time

import torch

from hf_llama import HfLlama

ckpt, inp = sys.argv[1], json.load(open(sys.argv[2]))
if len(sys.argv) > 3:
    torch.set_num_threads(int(sys.argv[3]))
model = HfLlama(ckpt)


def documents(row, eos):
    T = len(row)
    doc = torch.zeros(T, dtype=torch.long)
    pos = torch.zeros(T, dtype=torch.long)
    d, start = 0, 0
    for t in range(T):
        doc[t], pos[t] = d, t - start
        if row[t] == eos:
            d, start = d + 1, t + 1
    return doc, pos


if "requests" in inp:
    reqs = inp["requests"]
    order = sorted(range(len(reqs)), key=lambda i: -len(reqs[i]["input"]))
    logprobs = [0.0] * len(reqs)
    started = time.perf_counter()
    with torch.no_grad():
        i = 0
        while i < len(order):
            T = len(reqs[order[i]]["input"])
            batch = order[i:i + max(1, inp["batch_tokens"] // T)]
            i += len(batch)
            ids = torch.zeros(len(batch), T, dtype=torch.long)
            for b, r in enumerate(batch):
                row = reqs[r]["input"]
                ids[b, :len(row)] = torch.tensor(row)
            pos = torch.arange(T)[None].expand(len(batch), T)
            mask = torch.tril(torch.ones(T, T, dtype=torch.bool))[None].expand(len(batch), T, T)
            lp = torch.log_softmax(model.forward(ids, pos, mask), -1)
            for b, r in enumerate(batch):
                n, targets = len(reqs[r]["input"]), reqs[r]["targets"]
                at = torch.arange(n - len(targets), n)
                logprobs[r] = float(lp[b, at, torch.tensor(targets)].sum())
    print(json.dumps({"logprobs": logprobs, "seconds": time.perf_counter() - started}))
    sys.exit(0)

out = []
for row in inp["tokens"]:
    ids = torch.tensor(row)
    T = len(row)
    doc, pos = documents(row, inp["eos"])
    mask = (doc[:, None] == doc[None, :]) & torch.tril(torch.ones(T, T, dtype=torch.bool))
    logits = model.forward(ids[None], pos[None], mask[None])[0]
    losses = torch.nn.functional.cross_entropy(logits[:-1], ids[1:], reduction="none")
    out.append([float(v) for v in losses])
print(json.dumps(out))
