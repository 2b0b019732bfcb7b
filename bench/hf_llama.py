"""Hugging Face Llama semantics in plain PyTorch (fp32), read from a chuxin-data checkpoint's model.safetensors by
the HF tensor names: rotate_half RoPE over given positions, RMSNorm, SwiGLU, untied head. The reference the parity
and generation benchmarks (bench/hf_parity.py, bench/generate_torch.py) compare against."""
import json
import struct

import torch


class HfLlama:
    def __init__(self, ckpt):
        cfg = json.load(open(f"{ckpt}/config.json"))
        raw = open(f"{ckpt}/model.safetensors", "rb").read()
        n = struct.unpack("<Q", raw[:8])[0]
        header = json.loads(raw[8:8 + n])
        self.W = {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            b, e = info["data_offsets"]
            self.W[name] = torch.frombuffer(bytearray(raw[8 + n + b:8 + n + e]), dtype=torch.float32).view(info["shape"])
        self.C, self.H, self.L = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_hidden_layers"]
        self.D, self.eps, self.theta = self.C // self.H, cfg["rms_norm_eps"], cfg["rope_theta"]

    def rms(self, x, w):
        return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))

    def rotate_half(self, x):
        D = self.D
        return torch.cat((-x[..., D // 2:], x[..., :D // 2]), dim=-1)

    def forward(self, ids, pos, mask, cache=None, last_only=False):
        """Logits [B][T][V] of token ids [B][T] at positions pos [B][T]; mask [B][T][Tk] says which keys each query
        sees. With cache (a list of [k, v] per layer, None at first), the keys and values of earlier calls come
        first and this call's are appended (Tk = cached + T). last_only: the logits of the last position alone."""
        W, C, H, D, L = self.W, self.C, self.H, self.D, self.L
        B, T = ids.shape
        inv = 1.0 / (self.theta ** (torch.arange(0, D, 2, dtype=torch.float32) / D))
        ang = pos[..., None].float() * inv
        emb = torch.cat((ang, ang), dim=-1)[:, None]  # [B][1][T][D]
        cos, sin = emb.cos(), emb.sin()
        x = W["model.embed_tokens.weight"][ids]
        for l in range(L):
            p = f"model.layers.{l}."
            h = self.rms(x, W[p + "input_layernorm.weight"])
            q = (h @ W[p + "self_attn.q_proj.weight"].T).view(B, T, H, D).transpose(1, 2)
            k = (h @ W[p + "self_attn.k_proj.weight"].T).view(B, T, H, D).transpose(1, 2)
            v = (h @ W[p + "self_attn.v_proj.weight"].T).view(B, T, H, D).transpose(1, 2)
            q, k = q * cos + self.rotate_half(q) * sin, k * cos + self.rotate_half(k) * sin
            if cache is not None:
                if cache[l][0] is not None:
                    k, v = torch.cat((cache[l][0], k), dim=2), torch.cat((cache[l][1], v), dim=2)
                cache[l] = [k, v]
            s = (q @ k.transpose(-1, -2)) / D ** 0.5
            a = torch.softmax(s.masked_fill(~mask[:, None], float("-inf")), -1) @ v
            x = x + a.transpose(1, 2).reshape(B, T, C) @ W[p + "self_attn.o_proj.weight"].T
            h = self.rms(x, W[p + "post_attention_layernorm.weight"])
            g, u = h @ W[p + "mlp.gate_proj.weight"].T, h @ W[p + "mlp.up_proj.weight"].T
            x = x + (torch.nn.functional.silu(g) * u) @ W[p + "mlp.down_proj.weight"].T
        if last_only:
            x = x[:, -1:]
        return self.rms(x, W["model.norm.weight"]) @ W["lm_head.weight"].T
