#!/usr/bin/env python3
"""PyTorch's attention kernels on native/bench/attention_bench.cpp's shapes, in the same device call.

A row of --tokens tokens cut into documents of each length, causal within each; 32 heads of 64, bf16. Two peers:
FlexAttention with the document block mask (compiled; tiles outside documents skipped), and SDPA with is_causal
over the documents laid out as a batch (equal lengths make that possible: PyTorch's fastest path, its flash
kernel). FLOPs as the native program counts them: 4·C per kept pair forward, 10·C backward; best of 5 after a
warm-up; the backward timed alone (autograd from a saved forward).

  python3 bench/attention_torch.py [--tokens 16384] [--lengths 128,512,2048,4096,16384]
"""
import argparse
import time

import torch
import torch.nn.functional as F


def best_ms(fn, reps=5):
    fn()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - t0) * 1e3)
    return best


def time_pair(attend, q, k, v):
    """(forward ms, backward ms) of attend(q, k, v)."""
    fwd = best_ms(lambda: attend(q, k, v))
    dout = torch.randn_like(attend(q, k, v))

    def backward():
        out = attend(q, k, v)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        out.backward(dout)
        torch.cuda.synchronize()
        return (time.perf_counter() - t0) * 1e3

    backward()
    bwd = min(backward() for _ in range(5))
    return fwd, bwd


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=16384)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--lengths", default="128,512,2048,4096,16384")
    a = ap.parse_args()
    T, H, D = a.tokens, a.heads, 64
    C = H * D
    dev = torch.device("cuda")
    torch.manual_seed(0)
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    flex = torch.compile(flex_attention, dynamic=False)
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name()}: {T} tokens, {H} heads of {D}, bf16")
    print("| document length | peer | forward ms | forward TFLOP/s | backward ms | backward TFLOP/s |\n|---:|---|---:|---:|---:|---:|")
    for length in [int(x) for x in a.lengths.split(",")]:
        if length < 1 or length > T or T % length:
            print(f"skip length {length}: does not divide {T}")
            continue
        pairs = (T // length) * length * (length + 1) / 2
        doc = torch.arange(T, device=dev) // length

        def mask_mod(b, h, q_idx, kv_idx):
            return (doc[q_idx] == doc[kv_idx]) & (q_idx >= kv_idx)

        block_mask = create_block_mask(mask_mod, None, None, T, T, device=dev)
        q, k, v = (torch.randn(1, H, T, D, device=dev, dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
        n = T // length

        def as_batch(x):  # [1, H, T, D] -> [documents, H, length, D]
            return x.view(1, H, n, length, D).transpose(1, 2).reshape(n, H, length, D)

        peers = [
            ("FlexAttention, document block mask, compiled", lambda q, k, v: flex(q, k, v, block_mask=block_mask)),
            ("SDPA is_causal, documents as a batch", lambda q, k, v: F.scaled_dot_product_attention(as_batch(q), as_batch(k), as_batch(v), is_causal=True)),
        ]
        for name, attend in peers:
            try:
                fwd, bwd = time_pair(attend, q, k, v)
            except Exception as e:  # noqa: BLE001 (a peer that cannot run this shape says so and the table goes on)
                print(f"| {length} | {name} | failed: {str(e).splitlines()[0][:100]} | | | |")
                continue
            print(f"| {length} | {name} | {fwd:.3f} | {4 * C * pairs / (fwd * 1e-3) / 1e12:.1f} | {bwd:.3f} | {10 * C * pairs / (bwd * 1e-3) / 1e12:.1f} |")


if __name__ == "__main__":
    main()
