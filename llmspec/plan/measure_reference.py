"""Reference model for ``measure_step`` until the generated ``model.py`` exists.

It follows the conventions the templates promise (SDPA attention, tanh GELU,
SwiGLU as ``silu(gate) * up``, ``nn.Dropout``, fp32 logits before the loss,
per-block / per-region ``checkpoint(use_reentrant=False)``) for a single
device. ``source(spec)`` returns this file with ``CONFIG`` filled in, so it is
imported exactly like a rendered ``model.py``.
"""

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

CONFIG: dict = {}


def source(spec) -> str:
    """This module's text with CONFIG set from the spec."""
    from pathlib import Path

    m, t, p = spec.model, spec.train, spec.parallel
    config = {
        "arch": m.arch,
        "vocab_size": m.vocab_size,
        "max_seq_len": m.max_seq_len,
        "d_model": m.d_model,
        "n_layers": m.n_layers,
        "n_heads": m.n_heads,
        "n_kv_heads": m.kv_heads,
        "d_ff": m.ff_dim,
        "position": m.position,
        "rope_theta": m.rope_theta,
        "norm": m.norm,
        "norm_eps": m.norm_eps,
        "norm_position": m.norm_position,
        "activation": m.activation,
        "bias": m.bias,
        "tie_embeddings": m.tie_embeddings,
        "type_vocab_size": m.type_vocab_size,
        "dropout": m.dropout,
        "attention_dropout": m.attention_dropout,
        "objective": t.objective,
        "label_smoothing": t.label_smoothing,
        "recompute": p.activation_checkpointing if p.activation_checkpointing != "auto" else "none",
    }
    text = Path(__file__).read_text()
    return text.replace("CONFIG: dict = {}", f"CONFIG: dict = {config!r}", 1)


def make_norm(c):
    if c["norm"] == "rmsnorm":
        return nn.RMSNorm(c["d_model"], eps=c["norm_eps"])
    return nn.LayerNorm(c["d_model"], eps=c["norm_eps"], bias=c["bias"])


def rope_tables(c, seq_len, device):
    head_dim = c["d_model"] // c["n_heads"]
    inv = 1.0 / (c["rope_theta"] ** (torch.arange(0, head_dim, 2, device=device) / head_dim))
    angles = torch.outer(torch.arange(seq_len, device=device).float(), inv)
    return angles.cos(), angles.sin()


def apply_rope(x, cos, sin):
    x1, x2 = x[..., ::2], x[..., 1::2]
    rotated = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
    return rotated.flatten(-2)


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        h, self.heads, self.kv_heads = c["d_model"], c["n_heads"], c["n_kv_heads"]
        self.head_dim = h // self.heads
        kv = self.kv_heads * self.head_dim
        self.q = nn.Linear(h, h, bias=c["bias"])
        self.k = nn.Linear(h, kv, bias=c["bias"])
        self.v = nn.Linear(h, kv, bias=c["bias"])
        self.out = nn.Linear(h, h, bias=c["bias"])
        self.causal = c["arch"] != "bert"
        self.rope = c["position"] == "rope"
        self.attention_dropout = c["attention_dropout"]
        self.selective = c["recompute"] == "selective"

    def core(self, q, k, v):
        return F.scaled_dot_product_attention(
            q,
            k,
            v,
            is_causal=self.causal,
            dropout_p=self.attention_dropout if self.training else 0.0,
            enable_gqa=self.kv_heads < self.heads,
        )

    def forward(self, x, rope):
        b, s, h = x.shape
        q = self.q(x).view(b, s, self.heads, self.head_dim).transpose(1, 2)
        k = self.k(x).view(b, s, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v(x).view(b, s, self.kv_heads, self.head_dim).transpose(1, 2)
        if self.rope:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if self.selective:
            y = checkpoint(self.core, q, k, v, use_reentrant=False)
        else:
            y = self.core(q, k, v)
        return self.out(y.transpose(1, 2).reshape(b, s, h))


class MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        h, ff = c["d_model"], c["d_ff"]
        self.swiglu = c["activation"] == "swiglu"
        self.kind = c["activation"]
        self.up = nn.Linear(h, ff, bias=c["bias"])
        if self.swiglu:
            self.gate = nn.Linear(h, ff, bias=c["bias"])
        self.down = nn.Linear(ff, h, bias=c["bias"])
        self.selective = c["recompute"] == "selective"

    def act(self, *xs):
        if self.swiglu:
            return F.silu(xs[0]) * xs[1]
        if self.kind == "relu":
            return F.relu(xs[0])
        return F.gelu(xs[0], approximate="tanh")

    def forward(self, x):
        xs = (self.gate(x), self.up(x)) if self.swiglu else (self.up(x),)
        if self.selective:
            y = checkpoint(self.act, *xs, use_reentrant=False)
        else:
            y = self.act(*xs)
        return self.down(y)


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.pre = c["norm_position"] == "pre"
        self.norm1, self.norm2 = make_norm(c), make_norm(c)
        self.attn, self.mlp = Attention(c), MLP(c)
        self.drop1, self.drop2 = nn.Dropout(c["dropout"]), nn.Dropout(c["dropout"])

    def forward(self, x, rope):
        if self.pre:
            x = x + self.drop1(self.attn(self.norm1(x), rope))
            return x + self.drop2(self.mlp(self.norm2(x)))
        x = self.norm1(x + self.drop1(self.attn(x, rope)))
        return self.norm2(x + self.drop2(self.mlp(x)))


class Model(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        h = c["d_model"]
        self.tokens = nn.Embedding(c["vocab_size"], h)
        self.positions = nn.Embedding(c["max_seq_len"], h) if c["position"] == "learned" else None
        self.types = nn.Embedding(c["type_vocab_size"], h) if c["type_vocab_size"] else None
        self.drop = nn.Dropout(c["dropout"])
        self.blocks = nn.ModuleList(Block(c) for _ in range(c["n_layers"]))
        self.norm = make_norm(c)  # final norm (pre-norm) or embedding norm (post-norm)
        self.mlm = c["objective"] == "masked_lm"
        if self.mlm:
            self.transform = nn.Linear(h, h, bias=c["bias"])
            self.transform_norm = make_norm(c)
        self.head = nn.Linear(h, c["vocab_size"], bias=self.mlm)
        if c["tie_embeddings"]:
            self.head.weight = self.tokens.weight
        self.full = c["recompute"] == "full"

    def forward(self, input_ids, labels=None):
        b, s = input_ids.shape
        x = self.tokens(input_ids)
        if self.positions is not None:
            x = x + self.positions(torch.arange(s, device=input_ids.device))
        if self.types is not None:
            x = x + self.types(torch.zeros_like(input_ids))
        x = self.drop(x)
        pre = self.c["norm_position"] == "pre"
        if not pre:
            x = self.norm(x)
        rope = rope_tables(self.c, s, input_ids.device) if self.c["position"] == "rope" else None
        if rope is not None:
            rope = tuple(t.to(x.dtype) for t in rope)
        for block in self.blocks:
            if self.full and self.training:
                x = checkpoint(block, x, rope, use_reentrant=False)
            else:
                x = block(x, rope)
        if pre:
            x = self.norm(x)
        if self.mlm:
            x = self.transform_norm(F.gelu(self.transform(x), approximate="tanh"))
        logits = self.head(x)
        if labels is None:
            return logits
        if not self.mlm:
            labels = F.pad(labels[:, 1:], (0, 1), value=-100)
        return F.cross_entropy(
            logits.float().view(-1, logits.size(-1)),
            labels.reshape(-1),
            ignore_index=-100,
            label_smoothing=self.c["label_smoothing"],
        )


def build_model(mpu=None):
    return Model(CONFIG)


def mask_tokens(input_ids, mask_id, generator):
    chosen = torch.rand(input_ids.shape, generator=generator) < 0.15
    labels = torch.where(chosen, input_ids, -100)
    roll = torch.rand(input_ids.shape, generator=generator)
    noise = torch.randint(CONFIG["vocab_size"], input_ids.shape, generator=generator)
    inputs = torch.where(chosen & (roll < 0.8), mask_id, input_ids)
    inputs = torch.where(chosen & (roll >= 0.8) & (roll < 0.9), noise, inputs)
    return inputs, labels
