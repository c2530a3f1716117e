"""The layer graph: one node per layer of the model the templates generate.

Nodes, in a fixed order (``node_order``): ``embedding`` → ``positions`` (only for
learned positions) → ``block.0`` … ``block.{L-1}`` → ``final_norm`` (pre-norm
models) → ``lm_head`` (causal LM) or ``mlm_head`` (masked LM). Each block node
carries its attention, MLP and norms as attributes (``parts``), so the graph
stays small for 80-layer models.

Every node holds: ``params`` (trainable), ``frozen_params`` (always 0 in v1: no
fine-tuning yet), ``fwd_flops_per_token`` and ``bwd_flops_per_token`` (matmul
FLOPs, 2 per multiply-add, full s² attention as in Korthikanti et al. 2022
Eq. 7, i.e. the causal mask is not halved), ``output_bytes(micro_batch,
precision, tensor, sequence_parallel)`` and ``saved_bytes(micro_batch,
precision, recompute, tensor, sequence_parallel)`` — bytes held for backward
(see ``llmspec.graph.activations``).

The parameter counts follow the generated ``model.py``: biases on every linear
layer and LayerNorm when ``bias`` (RMSNorm has a weight only), no bias on the LM
head, the LM head tied to the token embedding when ``tie_embeddings``, a
BERT-style MLM head (dense h→h, activation, norm, decoder to the vocabulary with
its own bias) for ``masked_lm``. Post-norm (BERT) models normalise the embedding
instead of the final hidden state: one norm either way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache, partial

import networkx as nx

from llmspec.graph import activations
from llmspec.graph.dims import ModelDims
from llmspec.graph.finetune import adapter_params
from llmspec.rules.layout import padded_vocab


@dataclass(frozen=True)
class ParamCounts:
    """Parameter counts of the whole model (contract 2 ``params``)."""

    total: int  # base + adapters
    trainable: int  # what has requires_grad: the adapters, or everything (full / pretraining)
    embedding: int  # token (+ learned position, + token-type) tables; not the LM head
    per_layer: int  # one transformer block
    frozen: int = 0  # base weights that do not train (finetune methods other than full)

    def to_dict(self) -> dict:
        return asdict(self)


def norm_params(dims: ModelDims) -> int:
    """One norm layer: LayerNorm has a weight and (with ``bias``) a bias; RMSNorm a weight."""
    h = dims.d_model
    return 2 * h if dims.norm == "layernorm" and dims.bias else h


def attention_params(dims: ModelDims) -> int:
    """Q and output projections h×h; K and V h×(kv_heads·head_dim) each (GQA)."""
    h, kv = dims.d_model, dims.n_kv_heads * dims.head_dim
    weights = 2 * h * h + 2 * h * kv
    biases = (2 * h + 2 * kv) if dims.bias else 0
    return weights + biases


def mlp_params(dims: ModelDims) -> int:
    """GELU/ReLU: up h→ff and down ff→h; SwiGLU: gate and up h→ff, down ff→h."""
    h, ff = dims.d_model, dims.d_ff
    if dims.activation == "swiglu":
        return 3 * h * ff + ((2 * ff + h) if dims.bias else 0)
    return 2 * h * ff + ((ff + h) if dims.bias else 0)


def block_params(dims: ModelDims) -> int:
    """One transformer block: attention, MLP and its two norms."""
    return attention_params(dims) + mlp_params(dims) + 2 * norm_params(dims)


def embedding_params(dims: ModelDims, tensor: int = 1) -> int:
    """Token table (padded vocabulary), learned positions and token types."""
    h = dims.d_model
    n = padded_vocab(dims.vocab_size, tensor) * h
    if dims.position == "learned":
        n += dims.max_seq_len * h
    n += dims.type_vocab_size * h
    return n


def head_params(dims: ModelDims, tensor: int = 1) -> int:
    """Everything after the last block: final/embedding norm, LM or MLM head."""
    h, v = dims.d_model, padded_vocab(dims.vocab_size, tensor)
    n = norm_params(dims)  # final norm (pre-norm) or embedding norm (post-norm BERT)
    if dims.objective == "masked_lm":
        dense = h * h + (h if dims.bias else 0)
        n += dense + norm_params(dims)  # transform dense and its norm
        n += v if dims.bias else 0  # the decoder's bias, one per vocabulary row
    if not dims.tie_embeddings:
        n += v * h
    return n


def count_params(dims: ModelDims, tensor: int = 1) -> ParamCounts:
    """Exact parameter counts of the generated model.

    ``tensor`` only pads the vocabulary up to a multiple of the tensor-parallel
    degree (the padded rows are real parameters); the counts are of the whole
    model, not of one rank. With a `finetune:` method other than full the base is frozen
    and only the adapters (`llmspec.graph.finetune.adapter_params`) train; `total` counts
    both, as peft's `print_trainable_parameters` does.
    """
    per_layer = block_params(dims)
    embedding = embedding_params(dims, tensor)
    base = embedding + dims.n_layers * per_layer + head_params(dims, tensor)
    # objective reward: a new scalar head (d_model weights, no bias), trained in every method;
    # objective ppo: model.py has it too (the critic's value head; idle in the actor)
    score_head = dims.d_model if dims.objective in ("reward", "ppo") else 0
    ft = dims.finetune
    if ft is None or not ft.frozen_base:
        total = base + score_head
        return ParamCounts(total=total, trainable=total, embedding=embedding, per_layer=per_layer)
    adapters = adapter_params(dims, ft) + score_head
    return ParamCounts(
        total=base + adapters,
        trainable=adapters,
        embedding=embedding,
        per_layer=per_layer,
        frozen=base,
    )


# ----------------------------------------------------------------------------- FLOPs
def attention_flops_per_token(dims: ModelDims) -> tuple[float, float]:
    """Forward FLOPs per token of (projections, core). Core = QKᵀ and scores·V over
    the full sequence (2·s·h each; Korthikanti Eq. 7 convention, causal not halved)."""
    h, kv, s = dims.d_model, dims.n_kv_heads * dims.head_dim, dims.seq_len
    projections = 2 * h * (2 * h + 2 * kv)
    core = 4 * s * h
    return float(projections), float(core)


def mlp_flops_per_token(dims: ModelDims) -> float:
    """Forward matmul FLOPs per token of the MLP (2 or 3 h×ff GEMMs)."""
    gemms = 3 if dims.activation == "swiglu" else 2
    return float(2 * gemms * dims.d_model * dims.d_ff)


def block_fwd_flops_per_token(dims: ModelDims) -> float:
    projections, core = attention_flops_per_token(dims)
    return projections + core + mlp_flops_per_token(dims)


def head_fwd_flops_per_token(dims: ModelDims) -> float:
    """Logits GEMM (2·h·V), plus the MLM transform (2·h²) for masked LM."""
    h, v = dims.d_model, dims.vocab_size
    flops = 2 * h * v
    if dims.objective == "masked_lm":
        flops += 2 * h * h
    return float(flops)


# ----------------------------------------------------------------------------- graph
def node_order(dims: ModelDims) -> tuple[str, ...]:
    """Deterministic node names, input to output."""
    names = ["embedding"]
    if dims.position == "learned":
        names.append("positions")
    names += [f"block.{i}" for i in range(dims.n_layers)]
    names.append("final_norm" if dims.arch != "bert" else "embedding_norm")
    names.append("mlm_head" if dims.objective == "masked_lm" else "lm_head")
    return tuple(names)


@lru_cache(maxsize=256)
def build_layer_graph(dims: ModelDims) -> nx.DiGraph:
    """The layer graph of the generated model (see the module docstring).

    Node attributes: ``kind``, ``index`` (position in ``node_order``),
    ``params``, ``frozen_params``, ``fwd_flops_per_token``,
    ``bwd_flops_per_token`` (2× forward), ``parts`` (blocks: params and FLOPs of
    attention / MLP / norms), ``output_bytes(micro_batch, precision, tensor=1,
    sequence_parallel=False)`` and ``saved_bytes(micro_batch, precision,
    recompute="none", tensor=1, sequence_parallel=False)``. Edges follow the
    data flow. The result is cached and must not be mutated.
    """
    h = dims.d_model
    graph = nx.DiGraph(name=f"{dims.arch}-{dims.n_layers}x{h}")
    projections, core = attention_flops_per_token(dims)

    def add(name: str, kind: str, params: int, fwd: float, **extra) -> None:
        graph.add_node(
            name,
            kind=kind,
            index=graph.number_of_nodes(),
            params=params,
            frozen_params=0,
            fwd_flops_per_token=fwd,
            bwd_flops_per_token=2.0 * fwd,
            output_bytes=partial(activations.output_bytes, dims, kind),
            saved_bytes=partial(activations.saved_bytes, dims, kind),
            **extra,
        )

    token_table = padded_vocab(dims.vocab_size) * h + dims.type_vocab_size * h
    add("embedding", "embedding", token_table, 0.0)
    if dims.position == "learned":
        add("positions", "positions", dims.max_seq_len * h, 0.0)
    parts = {
        "attention": {
            "params": attention_params(dims),
            "fwd_flops_per_token": projections + core,
            "core_fwd_flops_per_token": core,
        },
        "mlp": {"params": mlp_params(dims), "fwd_flops_per_token": mlp_flops_per_token(dims)},
        "norms": {"params": 2 * norm_params(dims), "fwd_flops_per_token": 0.0},
    }
    for i in range(dims.n_layers):
        add(f"block.{i}", "block", block_params(dims), block_fwd_flops_per_token(dims), parts=parts)
    if dims.arch != "bert":
        add("final_norm", "norm", norm_params(dims), 0.0)
    else:
        add("embedding_norm", "norm", norm_params(dims), 0.0)
    head = head_params(dims) - norm_params(dims)
    if dims.objective == "masked_lm":
        add("mlm_head", "mlm_head", head, head_fwd_flops_per_token(dims))
    else:
        add("lm_head", "lm_head", head, head_fwd_flops_per_token(dims), tied=dims.tie_embeddings)

    names = node_order(dims)
    if dims.arch == "bert":  # the embedding norm sits between the embeddings and block 0
        flow = [n for n in names if n != "embedding_norm"]
        flow.insert(names.index("block.0") if dims.n_layers else len(flow) - 1, "embedding_norm")
    else:
        flow = list(names)
    if dims.position == "learned":  # token and position embeddings are summed
        flow.remove("positions")
        graph.add_edge("positions", flow[1])
    graph.add_edges_from(zip(flow, flow[1:], strict=False))
    return graph
