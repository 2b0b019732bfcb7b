"""Hugging Face Llama semantics in plain PyTorch (fp32), to check that a chuxin-data checkpoint computes the
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
import struct
import sys
import time

import torch

ckpt, inp = sys.argv[1], json.load(open(sys.argv[2]))
if len(sys.argv) > 3:
    torch.set_num_threads(int(sys.argv[3]))
cfg = json.load(open(f"{ckpt}/config.json"))
raw = open(f"{ckpt}/model.safetensors", "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
header = json.loads(raw[8:8 + n])
W = {}
for name, info in header.items():
    if name == "__metadata__":
        continue
    b, e = info["data_offsets"]
    W[name] = torch.frombuffer(bytearray(raw[8 + n + b:8 + n + e]), dtype=torch.float32).view(info["shape"])

C, H, L = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_hidden_layers"]
D, eps, theta = C // H, cfg["rms_norm_eps"], cfg["rope_theta"]


def rms(x, w):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rotate_half(x):
    return torch.cat((-x[..., D // 2:], x[..., :D // 2]), dim=-1)




def forward(ids, pos, mask):
    """Logits [B][T][V] of token ids [B][T] at positions pos [B][T] under the boolean attention mask [B][T][T]."""
    B, T = ids.shape
    inv = 1.0 / (theta ** (torch.arange(0, D, 2, dtype=torch.float32) / D))
    ang = pos[..., None].float() * inv
    emb = torch.cat((ang, ang), dim=-1)[:, None]  # [B][1][T][D]
    cos, sin = emb.cos(), emb.sin()
    x = W["model.embed_tokens.weight"][ids]
    for l in range(L):
        p = f"model.layers.{l}."
        h = rms(x, W[p + "input_layernorm.weight"])
        q = (h @ W[p + "self_attn.q_proj.weight"].T).view(B, T, H, D).transpose(1, 2)
        k = (h @ W[p + "self_attn.k_proj.weight"].T).view(B, T, H, D).transpose(1, 2)
        v = (h @ W[p + "self_attn.v_proj.weight"].T).view(B, T, H, D).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        s = (q @ k.transpose(-1, -2)) / D ** 0.5
        a = torch.softmax(s.masked_fill(~mask[:, None], float("-inf")), -1) @ v
        x = x + a.transpose(1, 2).reshape(B, T, C) @ W[p + "self_attn.o_proj.weight"].T
        h = rms(x, W[p + "post_attention_layernorm.weight"])
        g, u = h @ W[p + "mlp.gate_proj.weight"].T, h @ W[p + "mlp.up_proj.weight"].T
        x = x + (torch.nn.functional.silu(g) * u) @ W[p + "mlp.down_proj.weight"].T
    return rms(x, W["model.norm.weight"]) @ W["lm_head.weight"].T


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
            lp = torch.log_softmax(forward(ids, pos, mask), -1)
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
    logits = forward(ids[None], pos[None], mask[None])[0]
    losses = torch.nn.functional.cross_entropy(logits[:-1], ids[1:], reduction="none")
    out.append([float(v) for v in losses])
print(json.dumps(out))
