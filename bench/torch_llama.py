"""The LLaMA-2-style model in PyTorch that the benchmarks' PyTorch peers train (bench/train_cpu_torch.py,
bench/train_gpu_torch.py): RMSNorm pre-norm, rotate_half RoPE over given positions, SwiGLU, no biases, untied
head, attention supplied by the caller (plain causal, SDPA or FlexAttention with a document mask)."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


def rotate_half(x):
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


class Block(nn.Module):
    def __init__(self, c, attend):
        super().__init__()
        C, F_ = c["hidden"], c["ffn"]
        self.heads, self.attend = c["heads"], attend
        self.ln1, self.ln2 = RMSNorm(C), RMSNorm(C)
        self.q, self.k, self.v, self.o = (nn.Linear(C, C, bias=False) for _ in range(4))
        self.gate, self.up = nn.Linear(C, F_, bias=False), nn.Linear(C, F_, bias=False)
        self.down = nn.Linear(F_, C, bias=False)

    def forward(self, x, cos, sin, mask):
        B, T, C = x.shape
        H = self.heads
        h = self.ln1(x)
        q, k, v = (p(h).view(B, T, H, C // H).transpose(1, 2) for p in (self.q, self.k, self.v))
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        a = self.attend(q, k, v, mask).transpose(1, 2).reshape(B, T, C)
        x = x + self.o(a)
        h = self.ln2(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class Llama(nn.Module):
    def __init__(self, c, attend):
        super().__init__()
        self.c = c
        self.embed = nn.Embedding(c["vocab"], c["hidden"])
        self.blocks = nn.ModuleList(Block(c, attend) for _ in range(c["layers"]))
        self.norm = RMSNorm(c["hidden"])
        self.head = nn.Linear(c["hidden"], c["vocab"], bias=False)
        for p in self.parameters():
            if p.dim() == 2:
                nn.init.normal_(p, std=0.02)

    def forward(self, tokens, targets, pos, mask):
        D = self.c["hidden"] // self.c["heads"]
        inv = 1.0 / (10000.0 ** (torch.arange(0, D, 2, device=tokens.device, dtype=torch.float32) / D))
        ang = pos.float()[:, None, :, None] * inv  # [B, 1, T, D/2]
        ang = torch.cat((ang, ang), dim=-1)
        cos, sin = ang.cos().to(torch.bfloat16 if tokens.is_cuda else torch.float32), ang.sin().to(torch.bfloat16 if tokens.is_cuda else torch.float32)
        x = self.embed(tokens)
        for blk in self.blocks:
            x = blk(x, cos, sin, mask)
        logits = self.head(self.norm(x))
        return F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.view(-1), ignore_index=-100)


def plain_attention(q, k, v, mask):
    """Softmax attention in fp32 over a boolean mask (True = attend): for PyTorch without SDPA (Debian's 1.13)."""
    s = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(q.size(-1)))
    return torch.softmax(s.float().masked_fill(~mask, float("-inf")), dim=-1).to(v.dtype) @ v
