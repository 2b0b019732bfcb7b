"""Loads a chuxin-data checkpoint the way a Python user would (AutoTokenizer, AutoModelForCausalLM) and prints, as
JSON, the ids of each text under the default call and the float32 logits after the last token of each text.
Usage: hf_check.py CHECKPOINT TEXTS.json"""
import json
import sys

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

checkpoint, texts_file = sys.argv[1], sys.argv[2]
texts = json.load(open(texts_file, encoding="utf-8"))
tok = AutoTokenizer.from_pretrained(checkpoint)
model = AutoModelForCausalLM.from_pretrained(checkpoint, torch_dtype=torch.float32)
model.eval()
out = {"transformers": transformers.__version__, "tokenizer_class": type(tok).__name__, "ids": [], "last_logits": []}
with torch.no_grad():
    for text in texts:
        ids = tok(text)["input_ids"]
        out["ids"].append(ids)
        logits = model(torch.tensor([ids])).logits[0, -1]
        out["last_logits"].append(logits.tolist())
print(json.dumps(out))
