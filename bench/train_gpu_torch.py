#!/usr/bin/env python3
"""The PyTorch peer of native/test/gpu_throughput.cpp, run in the same device call by gpu-check.sh.

ChuXin-1.6B (LLaMA-2 style: RMSNorm pre-norm, RoPE theta 10000 with positions reset per document, SwiGLU,
no biases, untied head), sequence 4096, whole training steps: bf16 autocast over fp32 master weights,
fused AdamW (0.9, 0.95, wd 0.1), global-norm clipping at 1.0, --accumulate micro-batches per optimizer step.
Attention is causal within documents:
FlexAttention with a block mask built from document ids (compiled, so tiles outside documents are skipped),
else SDPA with a dense boolean mask, else plain softmax (old PyTorch, for the CPU smoke test).
The row and the MFU formula are the C++ check's: the shard's first 4096 tokens, or documents of 300 tokens;
FLOPs = 6 * N_matmul * tokens + 12 * L * C * sum over documents of len*(len+1)/2; peak 989 TFLOP/s. The published
convention (every causal pair: 12 * L * C * T(T+1)/2 per row) is printed beside it. --rows full: one document per
row (the shard's tokens without their EOS), where --attention causal is SDPA with is_causal (its fastest backend).

  python3 bench/train_gpu_torch.py [--shard out/sample/shard-00000.npy] [--rows docs|full] [--micro-batches 1,2,4] [--compile]
  python3 bench/train_gpu_torch.py --device cpu --config tiny --seq 256 --steps 2   # smoke test, no GPU
"""
import argparse
import importlib.util
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch_llama import Llama, plain_attention

EOS = 100001
PEAK = 989e12
CONFIGS = {
    "chuxin-1.6b": dict(layers=24, hidden=2048, heads=32, ffn=5632, vocab=102400),
    "tiny": dict(layers=2, hidden=64, heads=4, ffn=172, vocab=102400),
}


def doc_layout(row):
    """Per-token document index and position, as the native prepare_batch splits them (a document ends after EOS)."""
    doc = np.zeros(len(row), dtype=np.int64)
    pos = np.zeros(len(row), dtype=np.int64)
    d, begin = 0, 0
    for t, tok in enumerate(row):
        doc[t], pos[t] = d, t - begin
        if tok == EOS:
            d, begin = d + 1, t + 1
    return doc, pos


def attention_pairs(row):
    pairs, begin = 0.0, 0
    for t, tok in enumerate(row):
        if tok == EOS or t == len(row) - 1:
            n = t - begin + 1
            pairs += n * (n + 1) / 2
            begin = t + 1
    return pairs


def make_attention(kind, doc, device):
    """Returns (attend(q, k, v, mask), mask builder(B)) for the chosen implementation."""
    T = doc.numel()
    if kind == "flex":
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        flex = torch.compile(flex_attention, dynamic=False)

        def mask_mod(b, h, q_idx, kv_idx):
            return (doc[q_idx] == doc[kv_idx]) & (q_idx >= kv_idx)

        return (lambda q, k, v, m: flex(q, k, v, block_mask=m)), (lambda B: create_block_mask(mask_mod, None, None, T, T, device=device))
    if kind == "causal":  # one document per row: no mask tensor, so SDPA may pick its flash kernel
        return (lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, is_causal=True)), (lambda B: None)
    dense = (doc[:, None] == doc[None, :]) & torch.ones(T, T, dtype=torch.bool, device=device).tril()
    if kind == "sdpa":
        return (lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m)), (lambda B: dense)

    return plain_attention, (lambda B: dense)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shard")
    ap.add_argument("--micro-batches", default="1,2,3,4")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--accumulate", type=int, default=8, help="micro-batches per optimizer step")
    ap.add_argument("--seq", type=int, default=4096)
    ap.add_argument("--config", default="chuxin-1.6b", choices=sorted(CONFIGS))
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--attention", default="auto", choices=["auto", "flex", "sdpa", "causal", "plain"])
    ap.add_argument("--rows", default="docs", choices=["docs", "full"])
    ap.add_argument("--compile", action="store_true", help="torch.compile the whole model as well")
    a = ap.parse_args()
    c, T, device = CONFIGS[a.config], a.seq, torch.device(a.device)
    torch.manual_seed(0)

    if a.shard:
        tokens = np.load(a.shard, mmap_mode="r").reshape(-1)
        row = (tokens[tokens != EOS] if a.rows == "full" else tokens)[:T].astype(np.int64)
    else:
        row = np.array([(t * 7919) % 100000 for t in range(T)], dtype=np.int64)
        if a.rows == "docs":
            row[299::300] = EOS
    if a.attention == "causal" and a.rows != "full":
        raise SystemExit("--attention causal ignores documents: use it with --rows full")
    if a.attention == "causal" and not hasattr(F, "scaled_dot_product_attention"):
        raise SystemExit(f"--attention causal needs SDPA (PyTorch 2.0 or later; this is {torch.__version__})")
    doc, pos = doc_layout(row)
    pairs = attention_pairs(row)
    kind = a.attention
    has_flex = importlib.util.find_spec("torch.nn.attention") is not None and importlib.util.find_spec("torch.nn.attention.flex_attention") is not None
    if kind == "auto":
        kind = "flex" if device.type == "cuda" and has_flex else "sdpa" if hasattr(F, "scaled_dot_product_attention") else "plain"
    doc_t = torch.tensor(doc, device=device)
    attend, build_mask = make_attention(kind, doc_t, device)
    L, C, Fd, V = c["layers"], c["hidden"], c["ffn"], c["vocab"]
    matmul_params = L * (4 * C * C + 3 * C * Fd) + V * C
    name = f"torch {torch.__version__}, {kind} attention{', torch.compile' if a.compile else ''}"
    print(f"{name}: row of {T} tokens, {int(doc[-1]) + 1} documents, attention pairs {pairs:.3g}")

    best = None
    for B in [int(x) for x in a.micro_batches.split(",")]:
        model = Llama(c, attend).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, **({"fused": True} if device.type == "cuda" else {}))
        step_fn = torch.compile(model) if a.compile else model
        tokens = torch.tensor(row, device=device).repeat(B, 1)
        targets = torch.cat((tokens[:, 1:], torch.full((B, 1), -100, device=device)), dim=1)
        targets[tokens == EOS] = -100
        positions = torch.tensor(pos, device=device).repeat(B, 1)
        mask = build_mask(B)
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        try:
            times = []
            for s in range(a.steps + 2):  # two warm-up steps (compilation, allocator)
                t0 = time.perf_counter()
                for _ in range(a.accumulate):
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                        loss = step_fn(tokens, targets, positions, mask)
                    (loss / a.accumulate).backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                opt.zero_grad(set_to_none=True)
                sync()
                if s >= 2:
                    times.append(time.perf_counter() - t0)
        except torch.cuda.OutOfMemoryError as e:  # noqa: PERF203
            print(f"torch micro-batch {B} does not fit: {str(e).splitlines()[0]}")
            break
        sec = sum(times) / len(times)  # mean of the timed steps, as the C++ check takes it
        tokens_per_step = a.accumulate * B * T
        flops = a.accumulate * B * (6.0 * matmul_params * T + 12.0 * L * C * pairs)
        mfu = flops / sec / PEAK
        published = a.accumulate * B * (6.0 * matmul_params * T + 12.0 * L * C * T * (T + 1) / 2) / sec / PEAK
        print(f"torch micro-batch {B} x {a.accumulate} per step: {sec:.3f} s/step, {tokens_per_step / sec:.0f} tokens/s, {flops / sec / 1e12:.0f} TFLOP/s, "
              f"MFU {100 * mfu:.1f}% (published convention {100 * published:.1f}%) (loss {loss.item():.4f}) [{name}]")
        if best is None or tokens_per_step / sec > best[1]:
            best = (B, tokens_per_step / sec, mfu)
        del model, opt, step_fn
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if best:
        print(f"torch best: micro-batch {best[0]} x {a.accumulate} per step, {best[1]:.0f} tokens/s, MFU {100 * best[2]:.1f}% ({name})")


if __name__ == "__main__":
    main()
