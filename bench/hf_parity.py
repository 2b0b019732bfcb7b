"""Hugging Face Llama semantics in plain PyTorch (fp32), to check that a chuxin-data checkpoint computes the
same losses as `transformers`' LlamaForCausalLM would: weights read from model.safetensors by their HF names,
rotate_half RoPE, RMSNorm, SwiGLU, untied head; documents separated by EOS with the block-diagonal mask and
positions reset per document (what transformers does when given position_ids and a 4-D mask).
    /usr/bin/python3 bench/hf_parity.py CHECKPOINT_DIR INPUT.json   (INPUT: {"tokens": [[...]], "eos": id})
Prints per-row losses as JSON."""
import json
import struct
import sys

import torch

ckpt, inp = sys.argv[1], json.load(open(sys.argv[2]))
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


out = []
for row in inp["tokens"]:
    ids = torch.tensor(row)
    T = len(row)
    doc = torch.zeros(T, dtype=torch.long)
    pos = torch.zeros(T, dtype=torch.long)
    d, start = 0, 0
    for t in range(T):
        doc[t], pos[t] = d, t - start
        if row[t] == inp["eos"]:
            d, start = d + 1, t + 1
    mask = (doc[:, None] == doc[None, :]) & torch.tril(torch.ones(T, T, dtype=torch.bool))
    inv = 1.0 / (theta ** (torch.arange(0, D, 2, dtype=torch.float32) / D))
    ang = pos[:, None].float() * inv[None, :]
    emb = torch.cat((ang, ang), dim=-1)
    cos, sin = emb.cos(), emb.sin()
    x = W["model.embed_tokens.weight"][ids]
    for l in range(L):
        p = f"model.layers.{l}."
        h = rms(x, W[p + "input_layernorm.weight"])
        q = (h @ W[p + "self_attn.q_proj.weight"].T).view(T, H, D).transpose(0, 1)
        k = (h @ W[p + "self_attn.k_proj.weight"].T).view(T, H, D).transpose(0, 1)
        v = (h @ W[p + "self_attn.v_proj.weight"].T).view(T, H, D).transpose(0, 1)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        s = (q @ k.transpose(-1, -2)) / D ** 0.5
        a = torch.softmax(s.masked_fill(~mask, float("-inf")), -1) @ v
        x = x + a.transpose(0, 1).reshape(T, C) @ W[p + "self_attn.o_proj.weight"].T
        h = rms(x, W[p + "post_attention_layernorm.weight"])
        g, u = h @ W[p + "mlp.gate_proj.weight"].T, h @ W[p + "mlp.up_proj.weight"].T
        x = x + (torch.nn.functional.silu(g) * u) @ W[p + "mlp.down_proj.weight"].T
    logits = rms(x, W["model.norm.weight"]) @ W["lm_head.weight"].T
    losses = torch.nn.functional.cross_entropy(logits[:-1], ids[1:], reduction="none")
    out.append([float(v) for v in losses])
print(json.dumps(out))
