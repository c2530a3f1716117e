"""Which of a block's matmuls per-op selective recompute (``activation_checkpointing: ops``) keeps.

The generated model checkpoints each block under a selective-checkpoint policy
(``torch.utils.checkpoint.create_selective_checkpoint_contexts``): the block's input, the
attention kernel's outputs and the output of every other matmul of the block's forward —
the 1st, 3rd, 5th … in call order — are kept; everything else (norms, RoPE, activations,
residual adds, dropout and the remaining matmuls) is recomputed in backward. This is
torchtitan's "op" selective AC (``torchtitan/parallelisms/parallelize_llama.py``, Dec 2024:
``_save_list`` and ``_custom_policy``, which counts ``aten.mm`` and skips every second one).
For a Llama block the kept matmuls are q, v, gate and down; k, o and up are recomputed.

One rule, used by the memory model (what is kept), the cost model (what is recomputed) and
the FLOP count, so that the three agree with the code the templates generate.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from llmspec.graph.dims import ModelDims
from llmspec.graph.finetune import linear_shape, lora_targets


@dataclass(frozen=True)
class Matmul:
    """One matmul of a block's forward, per token: [d_in] → [d_out]."""

    name: str  # q, k, v, o, gate, up, down; a LoRA adapter's: q.lora_a, q.lora_b, ...
    d_in: int
    d_out: int
    kept: bool  # kept under `ops` (else recomputed in backward)


def linear_names(dims: ModelDims) -> tuple[str, ...]:
    """A block's linears in call order (gelu / relu MLPs: up = fc_in, down = fc_out)."""
    mlp = ("gate", "up", "down") if dims.activation == "swiglu" else ("up", "down")
    return ("q", "k", "v", "o", *mlp)


@lru_cache(maxsize=512)
def block_matmuls(dims: ModelDims) -> tuple[Matmul, ...]:
    """The block's matmuls in the order the generated forward calls them: q, k, v, o, then
    the MLP's (gate, up, down or fc_in, fc_out); a LoRA-adapted linear calls its frozen
    matmul, then A (d_in → r), then B (r → d_out) (templates/_model/lora.py.j2)."""
    adapted = ()
    ft = dims.finetune
    if ft is not None and ft.method == "lora":
        adapted = lora_targets(dims, ft)
    calls: list[tuple[str, int, int]] = []
    for name in linear_names(dims):
        d_in, d_out = linear_shape(dims, name)
        calls.append((name, d_in, d_out))
        if name in adapted:
            calls.append((f"{name}.lora_a", d_in, ft.lora_rank))
            calls.append((f"{name}.lora_b", ft.lora_rank, d_out))
    return tuple(
        Matmul(name, d_in, d_out, kept=i % 2 == 0) for i, (name, d_in, d_out) in enumerate(calls)
    )


def kept_matmul_width(dims: ModelDims) -> int:
    """Σ d_out of the kept matmuls: elements per token the policy keeps besides the block
    input and the attention kernel's outputs."""
    return sum(m.d_out for m in block_matmuls(dims) if m.kept)


def recomputed_linear_names(dims: ModelDims) -> frozenset[str]:
    """The base linears (q, k, v, o, gate, up, down) whose forward GEMM runs again in backward."""
    return frozenset(m.name for m in block_matmuls(dims) if not m.kept and "." not in m.name)


def recomputed_matmul_flops_per_token(dims: ModelDims) -> float:
    """Forward FLOPs per token the policy replays in backward (2 per multiply-add)."""
    return float(sum(2 * m.d_in * m.d_out for m in block_matmuls(dims) if not m.kept))
