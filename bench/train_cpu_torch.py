"""PyTorch CPU baseline for bench/train-cpu.ts: the same LLaMA-style model and training step
(forward, backward, AdamW) in fp32 and in bf16 autocast. Prints one JSON line per mode.
    /usr/bin/python3 bench/train_cpu_torch.py LAYERS HIDDEN HEADS FFN VOCAB SEQ BATCH THREADS STEPS
"""
import json
import math
import statistics
import sys
import time

import torch
import torch.nn.functional as F

L, C, H, FF, V, T, B, THREADS, STEPS = map(int, sys.argv[1:10])
torch.set_num_threads(THREADS)
torch.manual_seed(0)
CAUSAL = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)


class RMSNorm(torch.nn.Module):
    def __init__(self, n):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(n))

    def forward(self, x):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-5)).to(x.dtype) * self.weight


def rope(x, cos, sin):
    half = x.shape[-1] // 2
    rot = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rot * sin


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1, self.ln2 = RMSNorm(C), RMSNorm(C)
        self.q, self.k, self.v, self.o = (torch.nn.Linear(C, C, bias=False) for _ in range(4))
        self.gate, self.up = torch.nn.Linear(C, FF, bias=False), torch.nn.Linear(C, FF, bias=False)
        self.down = torch.nn.Linear(FF, C, bias=False)

    def forward(self, x, cos, sin):
        h = self.ln1(x)
        q = self.q(h).view(B, T, H, C // H).transpose(1, 2)
        k = self.k(h).view(B, T, H, C // H).transpose(1, 2)
        v = self.v(h).view(B, T, H, C // H).transpose(1, 2)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        # torch 1.13 (Debian's) has no scaled_dot_product_attention: the explicit causal form.
        s = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(C // H))
        s = s.masked_fill(CAUSAL, float("-inf"))
        a = torch.softmax(s.float(), dim=-1).to(v.dtype) @ v
        x = x + self.o(a.transpose(1, 2).reshape(B, T, C))
        h = self.ln2(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(V, C)
        self.blocks = torch.nn.ModuleList(Block() for _ in range(L))
        self.norm = RMSNorm(C)
        self.head = torch.nn.Linear(C, V, bias=False)
        inv = 10000.0 ** (-torch.arange(0, C // H, 2).float() / (C // H))
        ang = torch.arange(T).float()[:, None] * inv[None, :]
        ang = torch.cat((ang, ang), dim=-1)
        self.register_buffer("cos", ang.cos()[None, None])
        self.register_buffer("sin", ang.sin()[None, None])

    def forward(self, tokens, targets):
        x = self.embed(tokens)
        for blk in self.blocks:
            x = blk(x, self.cos.to(x.dtype), self.sin.to(x.dtype))
        logits = self.head(self.norm(x))
        return F.cross_entropy(logits.float().view(-1, V), targets.view(-1))


def run(mode):
    model = Model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    tokens = torch.randint(0, V, (B, T))
    targets = torch.roll(tokens, -1, 1)
    times = []
    for step in range(STEPS + 1):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=(mode == "bf16")):
            loss = model(tokens, targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step > 0:  # the first step warms up allocators and kernels
            times.append(time.perf_counter() - start)
    med = statistics.median(times)
    print(json.dumps({"impl": "pytorch", "mode": mode, "tokens_per_s": B * T / med, "step_s": med, "torch": torch.__version__,
                      "threads": torch.get_num_threads(), "loss": float(loss)}), flush=True)


for mode in ("fp32", "bf16"):
    run(mode)
