"""Greedy generation with a key/value cache in plain PyTorch (fp32), Hugging Face Llama semantics, from a chuxin-data
checkpoint's model.safetensors: the peer of bench/generate.ts.
    /usr/bin/python3 bench/generate_torch.py CHECKPOINT_DIR PROMPT_IDS_JSON NEW_TOKENS THREADS
Prints {"ids": [...], "prefill_s": s, "decode_s": s}."""
import json
import struct
import sys
import time

import torch

ckpt, prompt, new_tokens, threads = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
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
inv = 1.0 / (theta ** (torch.arange(0, D, 2, dtype=torch.float32) / D))


def rms(x, w):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rotate_half(x):
    return torch.cat((-x[..., D // 2:], x[..., :D // 2]), dim=-1)


cache = [[None, None] for _ in range(L)]


def step(ids, past):
    """Logits after the last of ids, which sit at positions past, past+1, ...; appends their keys and values."""
    T = len(ids)
    pos = torch.arange(past, past + T)
    ang = pos[:, None].float() * inv[None, :]
    emb = torch.cat((ang, ang), dim=-1)
    cos, sin = emb.cos(), emb.sin()
    x = W["model.embed_tokens.weight"][torch.tensor(ids)]
    for l in range(L):
        p = f"model.layers.{l}."
        h = rms(x, W[p + "input_layernorm.weight"])
        q = (h @ W[p + "self_attn.q_proj.weight"].T).view(T, H, D).transpose(0, 1)
        k = (h @ W[p + "self_attn.k_proj.weight"].T).view(T, H, D).transpose(0, 1)
        v = (h @ W[p + "self_attn.v_proj.weight"].T).view(T, H, D).transpose(0, 1)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        if cache[l][0] is not None:
            k = torch.cat((cache[l][0], k), dim=1)
            v = torch.cat((cache[l][1], v), dim=1)
        cache[l] = [k, v]
        mask = torch.ones(T, past + T, dtype=torch.bool).tril(past)
        s = (q @ k.transpose(-1, -2)) / D ** 0.5
        a = torch.softmax(s.masked_fill(~mask, float("-inf")), -1) @ v
        x = x + a.transpose(0, 1).reshape(T, C) @ W[p + "self_attn.o_proj.weight"].T
        h = rms(x, W[p + "post_attention_layernorm.weight"])
        g, u = h @ W[p + "mlp.gate_proj.weight"].T, h @ W[p + "mlp.up_proj.weight"].T
        x = x + (torch.nn.functional.silu(g) * u) @ W[p + "mlp.down_proj.weight"].T
    return rms(x[-1:], W["model.norm.weight"]) @ W["lm_head.weight"].T


with torch.no_grad():
    t0 = time.perf_counter()
    logits = step(prompt, 0)
    t1 = time.perf_counter()
    out, past = [], len(prompt)
    for _ in range(new_tokens):
        nxt = int(logits[0].argmax())
        out.append(nxt)
        logits = step([nxt], past)
        past += 1
    t2 = time.perf_counter()
print(json.dumps({"ids": out, "prefill_s": t1 - t0, "decode_s": t2 - t1}))
