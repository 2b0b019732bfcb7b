"""PyTorch CPU baseline for bench/train-cpu.ts: the same LLaMA-style model (bench/torch_llama.py) and training
step (forward, backward, AdamW) in fp32 and in bf16 autocast, causal attention over one document per row.
Prints one JSON line per mode.
    /usr/bin/python3 bench/train_cpu_torch.py LAYERS HIDDEN HEADS FFN VOCAB SEQ BATCH THREADS STEPS
"""
import json
import statistics
import sys
import time

import torch
from torch_llama import Llama, plain_attention

L, C, H, FF, V, T, B, THREADS, STEPS = map(int, sys.argv[1:10])
torch.set_num_threads(THREADS)
torch.manual_seed(0)
CONFIG = dict(layers=L, hidden=C, heads=H, ffn=FF, vocab=V)
CAUSAL = torch.ones(T, T, dtype=torch.bool).tril()  # True = attend
POSITIONS = torch.arange(T)[None]  # one row of positions, broadcast over the batch


def run(mode):
    model = Llama(CONFIG, plain_attention)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    tokens = torch.randint(0, V, (B, T))
    targets = torch.roll(tokens, -1, 1)
    times = []
    for step in range(STEPS + 1):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=(mode == "bf16")):
            loss = model(tokens, targets, POSITIONS, CAUSAL)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step > 0:  # the first step warms up allocators and kernels
            times.append(time.perf_counter() - start)
    med = statistics.median(times)
    print(json.dumps({"impl": "pytorch", "mode": mode, "tokens_per_s": B * T / med, "step_s": med, "torch": torch.__version__,
                      "threads": torch.get_num_threads(), "loss": float(loss), "blas_core": blas_core()}), flush=True)


def blas_core():
    """The kernel OpenBLAS chose for this CPU (what OPENBLAS_CORETYPE overrides), or why it is unknown."""
    import ctypes
    try:
        lib = ctypes.CDLL("libopenblas.so.0")  # already loaded by torch: the same handle
        lib.openblas_get_corename.restype = ctypes.c_char_p
        return lib.openblas_get_corename().decode()
    except OSError as error:
        return f"unknown ({error})"


for mode in ("fp32", "bf16"):
    run(mode)
