"""Greedy generation with a key/value cache in plain PyTorch (fp32), Hugging Face Llama semantics (bench/hf_llama.py),
from a chuxin-data checkpoint's model.safetensors: the peer of bench/generate.ts.
    /usr/bin/python3 bench/generate_torch.py CHECKPOINT_DIR PROMPT_IDS_JSON NEW_TOKENS THREADS
Prints {"ids": [...], "prefill_s": s, "decode_s": s}."""
import json
import sys
import time

import torch

from hf_llama import HfLlama

ckpt, prompt, new_tokens, threads = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
model = HfLlama(ckpt)
cache = [[None, None] for _ in range(model.L)]


def step(ids, past):
    """Logits after the last of ids, which sit at positions past, past+1, ...; their keys and values join the cache."""
    T = len(ids)
    mask = torch.ones(T, past + T, dtype=torch.bool).tril(past)
    return model.forward(torch.tensor([ids]), torch.arange(past, past + T)[None], mask[None], cache, last_only=True)[0]


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
