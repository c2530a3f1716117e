"""HBM bytes of element-wise kernels, counted op by op while PyTorch runs them.

Eager PyTorch launches one kernel per aten op, and a memory-bound kernel moves what it reads
plus what it writes. `count_bytes` runs a function (forward and backward) under a dispatch
mode that adds, for every aten op that is not a GEMM, an attention kernel or a view, the bytes
of its tensor inputs (distinct elements only: a broadcast operand is read once) and of its
outputs. Autograd's backward formulas are the same aten ops on every device, so what is
counted on the CPU is what a GPU runs op by op.

`eager_part_bytes` counts the op sequences of torchtitan's eager Llama (its Dec 2024 model
code: `torchtitan/models/norms.py` RMSNorm, `models/llama/model.py` apply_rotary_emb,
repeat_kv, the attention output's `.contiguous()`, FeedForward), written from their
description; `generated_part_bytes` the generated model.py's own RoPE and SwiGLU, from the
rendered file itself. `llmspec.plan.cost.EAGER_BYTES` and `GENERATED_BYTES` hold them as
per-element figures for the planner (torch-free).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from llmspec.codegen.model_code import load_model_module, render_model_py
from llmspec.plan.types import Layout
from llmspec.spec.schema import Spec

aten = torch.ops.aten

# Ops that move no data (views, metadata) and ops that are not element-wise kernels.
_FREE = {
    "view", "_unsafe_view", "reshape", "expand", "t", "transpose", "permute", "unsqueeze",
    "squeeze", "slice", "select", "as_strided", "view_as_real", "view_as_complex", "alias",
    "detach", "lift_fresh", "_reshape_alias", "split", "unbind", "empty_like", "empty",
    "zeros_like", "ones_like", "new_empty_strided", "empty_strided", "sym_size", "sym_stride",
    "is_same_size", "_to_copy_noop",
}  # fmt: skip
_NOT_ELEMENTWISE = {"mm", "addmm", "bmm", "matmul", "linear"}
_ATTENTION = "scaled_dot_product"  # SDPA's kernels, every backend


def _distinct_bytes(t: torch.Tensor) -> int:
    """Bytes of the distinct elements a kernel touches: broadcast (stride 0) dims count once."""
    n = math.prod(s for s, st in zip(t.shape, t.stride(), strict=True) if st != 0)
    return n * t.element_size()


class _ByteCounter(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.bytes = 0
        self.ops: list[tuple[str, int]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        if name in _FREE or name in _NOT_ELEMENTWISE or _ATTENTION in name:
            return out
        moved = 0
        for x in torch.utils._pytree.tree_leaves((args, kwargs)):
            if isinstance(x, torch.Tensor):
                moved += _distinct_bytes(x)
        for x in torch.utils._pytree.tree_leaves(out):
            if isinstance(x, torch.Tensor):
                moved += _distinct_bytes(x)
        self.bytes += moved
        self.ops.append((name, moved))
        return out


def count_bytes(fn, *inputs: torch.Tensor) -> tuple[int, int]:
    """(forward bytes, backward bytes) of `fn(*inputs)`'s element-wise ops; the backward is
    driven by a gradient of ones in the output's dtype (made before counting starts)."""
    inputs = tuple(x.detach().requires_grad_(x.is_floating_point()) for x in inputs)
    with _ByteCounter() as fwd:
        out = fn(*inputs)
    outs = out if isinstance(out, tuple) else (out,)
    grads = tuple(torch.ones_like(o) for o in outs)
    with _ByteCounter() as bwd:
        torch.autograd.backward(outs, grads)
    return fwd.bytes, bwd.bytes


# ----------------------------------------------------------------------------- torchtitan eager
def rms_norm_fp32(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """RMSNorm computed in fp32 and cast back, then scaled: x.float(), pow(2).mean(-1),
    rsqrt, multiply, type_as, × weight."""
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).type_as(x) * weight


def rope_complex(x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """Rotary embedding as a complex product: pairs viewed as complex fp32, times the
    (seq, head_dim/2) complex table, viewed back as real and cast to x's dtype."""
    xc = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(xc * freqs[None, :, None, :]).flatten(3).type_as(x)


def repeat_heads(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """GQA key/value heads repeated n_rep times by expand + reshape (a copy)."""
    b, s, heads, d = x.shape
    return x.unsqueeze(3).expand(b, s, heads, n_rep, d).reshape(b, s, heads * n_rep, d)


def heads_contiguous(y: torch.Tensor) -> torch.Tensor:
    """The attention output (batch, heads, seq, dim) transposed back and made contiguous."""
    return y.transpose(1, 2).contiguous()


def swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    return F.silu(gate) * up


def eager_part_bytes(dtype: torch.dtype = torch.bfloat16) -> dict[str, tuple[float, float]]:
    """Forward and backward bytes per element of each eager part, per element of the width the
    part is sized by (d_model for the norm, the rotated width for RoPE, the repeated width for
    repeat_heads, d_model for the output copy, d_ff for SwiGLU), at activation dtype `dtype`.
    Measured at a small shape; every count is linear in the elements."""
    tokens, heads, kv_heads, d = 256, 32, 8, 16  # a broadcast weight or table is ~1 % of a count
    width = heads * d
    gen = torch.Generator().manual_seed(0)

    def randn(*shape, dt=dtype):
        return torch.randn(*shape, generator=gen).to(dt)

    angles = torch.randn(tokens, d // 2, generator=gen)
    freqs = torch.polar(torch.ones_like(angles), angles)  # complex64, needs no gradient
    parts = {
        "rms_norm_fp32": (
            lambda x, w: rms_norm_fp32(x, w),
            (randn(1, tokens, width), torch.ones(width, dtype=dtype)),
            tokens * width,
        ),
        "rope_complex": (
            lambda x: rope_complex(x, freqs),
            (randn(1, tokens, heads, d),),
            tokens * width,
        ),
        "repeat_heads": (
            lambda x: repeat_heads(x, heads // kv_heads),
            (randn(1, tokens, kv_heads, d),),
            tokens * width,
        ),
        "heads_contiguous": (heads_contiguous, (randn(1, heads, tokens, d),), tokens * width),
        "swiglu": (swiglu, (randn(1, tokens, 4 * width), randn(1, tokens, 4 * width)), tokens * 4 * width),
    }  # fmt: skip
    out = {}
    for name, (fn, inputs, elements) in parts.items():
        fwd, bwd = count_bytes(fn, *inputs)
        out[name] = (fwd / elements, bwd / elements)
    return out


# ----------------------------------------------------------------------------- generated model
def generated_part_bytes(dtype: torch.dtype = torch.bfloat16) -> dict[str, tuple[float, float]]:
    """Forward and backward bytes per element of the generated Llama model.py's own
    element-wise parts (rendered for a small Llama: 32 query and 8 key/value heads, so the
    per-sequence cos/sin tables weigh as little as at real widths): `apply_rope` per element of
    q and k together, `activation` (SwiGLU) per d_ff element. Its norms are `F.rms_norm`, one
    kernel on CUDA (decomposed on the CPU, so not counted here), GQA goes to SDPA's
    `enable_gqa` (no copy), and its attention output is transposed and reshaped, the copy
    `heads_contiguous` counts."""
    heads, kv_heads, d, tokens = 32, 8, 16, 256
    spec = Spec.model_validate(
        {
            "name": "kernel-bytes",
            "model": {
                "arch": "llama", "vocab_size": 128, "max_seq_len": tokens, "d_model": heads * d,
                "n_layers": 1, "n_heads": heads, "n_kv_heads": kv_heads, "d_ff": 4 * heads * d,
                "position": "rope", "norm": "rmsnorm", "activation": "swiglu", "bias": False,
                "tie_embeddings": False, "dropout": 0.0, "attention_dropout": 0.0,
            },
            "train": {"seq_len": tokens, "global_batch_size": 1, "precision": "bf16"},
        }
    )  # fmt: skip
    model = load_model_module(render_model_py(spec, Layout(), (1,)), "kernel_bytes_model")
    gen = torch.Generator().manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, generator=gen).to(dtype)

    q, k = randn(1, heads, tokens, d), randn(1, kv_heads, tokens, d)
    fwd, bwd = count_bytes(model.apply_rope, q, k)
    rope = q.numel() + k.numel()
    ff = 4 * heads * d
    gate, up = randn(1, tokens, ff), randn(1, tokens, ff)
    f2, b2 = count_bytes(model.activation, gate, up)
    return {
        "rope_rotate_half": (fwd / rope, bwd / rope),
        "swiglu": (f2 / (tokens * ff), b2 / (tokens * ff)),
    }
