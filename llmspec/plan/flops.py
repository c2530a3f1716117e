"""FLOPs per trained token and per iteration.

Convention (Korthikanti et al. 2022, "Reducing Activation Recomputation in
Large Transformer Models", Eq. 7; Megatron-Core ``num_floating_point_operations``
for GQA and SwiGLU): 2 FLOPs per multiply-add of every GEMM, backward = 2 ×
forward, attention scores over the full s × s square — the causal mask is
*not* halved, so causal models are credited with the same attention FLOPs as
bidirectional ones, as in the published MFU figures. Element-wise ops,
softmax and norms are not counted.
"""

from __future__ import annotations

from llmspec.graph.dims import ModelDims
from llmspec.graph.layers import (
    attention_flops_per_token,
    block_fwd_flops_per_token,
    head_fwd_flops_per_token,
)
from llmspec.graph.recompute import recomputed_matmul_flops_per_token


def forward_flops_per_token(dims: ModelDims) -> float:
    """Forward GEMM FLOPs for one token: every block plus the output head."""
    return dims.n_layers * block_fwd_flops_per_token(dims) + head_fwd_flops_per_token(dims)


def model_flops_per_token(dims: ModelDims) -> float:
    """Model FLOPs of one trained token (forward + backward, no recomputation).

    For GPT (MHA, 4h GELU MLP) this is Korthikanti Eq. 7 divided by B·s:
    72·L·h²·(1 + s/(6h) + V/(12·h·L)); for GQA and SwiGLU it matches
    Megatron-Core's generalised formula. Causal attention is not halved.
    """
    return 3.0 * forward_flops_per_token(dims)


def hardware_flops_per_token(dims: ModelDims, recompute: str) -> float:
    """FLOPs the hardware executes per token, recomputed forwards included.

    ``selective`` adds the attention core's forward (QKᵀ and scores·V) per block;
    ``ops`` the matmuls its policy does not keep (``llmspec.graph.recompute``);
    ``full`` adds every block's forward (the head is never recomputed).
    """
    flops = model_flops_per_token(dims)
    if recompute == "selective":
        flops += dims.n_layers * attention_flops_per_token(dims)[1]
    elif recompute == "ops":
        flops += dims.n_layers * recomputed_matmul_flops_per_token(dims)
    elif recompute == "full":
        flops += dims.n_layers * block_fwd_flops_per_token(dims)
    return flops


def narayanan_flops_per_iteration(
    batch_size: int, seq_len: int, n_layers: int, hidden: int, vocab_size: int
) -> float:
    """Narayanan et al. 2021 ("Efficient Large-Scale Language Model Training on
    GPU Clusters Using Megatron-LM") Eq. 3: FLOPs of one iteration of a GPT
    model *with* full activation recomputation (one extra forward), the figure
    behind their Table 1 throughputs: 96·B·s·l·h²·(1 + s/(6h) + V/(16·l·h))."""
    b, s, n_l, h, v = batch_size, seq_len, n_layers, hidden, vocab_size
    return 96.0 * b * s * n_l * h * h * (1.0 + s / (6.0 * h) + v / (16.0 * n_l * h))
