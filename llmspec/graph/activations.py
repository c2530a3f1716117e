"""Bytes a layer keeps for backward, per token, for the code the templates generate.

Each figure is what autograd saves for the exact ops of the generated model
(``F.scaled_dot_product_attention``, tanh GELU, ``silu(gate) * up``,
``nn.Dropout``, ``nn.LayerNorm`` / ``nn.RMSNorm``, the chunked loss of
``llmspec.rules.loss``, or the vocabulary-parallel fp32 softmax under tensor parallel),
checked op by op under ``FakeTensorMode`` + ``MemTracker``
(``llmspec.verify.measure``). The Korthikanti et al. 2022 Table 2 constants
(34 sbh + 5as²b) assume 16-bit activations, 1-byte dropout masks and
materialised attention scores; with SDPA/flash attention the s² term is gone
and what is left depends on the kernels, hence this table.

``kernels`` selects the few ops whose saved tensors differ between CUDA and the
CPU that measures them here:

* dropout mask: CUDA ``native_dropout`` keeps a 1-byte bool mask; the CPU
  fallback multiplies by a noise tensor of the activation dtype;
* LayerNorm mean / rstd: fp32 on CUDA, the activation dtype on CPU;
* RMSNorm: a fused kernel on CUDA, a decomposition (with fp32 upcasts) on CPU;
* attention with dropout: CUDA flash / memory-efficient kernels keep only an
  RNG state; CPU has no fused kernel with dropout and falls back to the math
  path, which saves the s×s probabilities, the dropout noise and its product.

All functions return bytes per token of one micro-batch (multiply by
``micro_batch × seq_len``) unless they say otherwise.
"""

from __future__ import annotations

from llmspec.graph.dims import ModelDims
from llmspec.graph.finetune import linear_shape, lora_targets
from llmspec.graph.recompute import block_matmuls, kept_matmul_width
from llmspec.rules.layout import padded_vocab
from llmspec.rules.loss import LOSS_CHUNK_TOKENS

DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 2}  # fp8: activations stay 16-bit


def act_bytes(precision: str) -> int:
    """Bytes of one activation element in the training dtype."""
    return DTYPE_BYTES[precision]


def _mask_bytes(e: int, kernels: str) -> int:
    return 1 if kernels == "cuda" else e


def norm_saved(dims: ModelDims, e: int, kernels: str = "cuda") -> float:
    """One norm: its input and output (the next GEMM saves it), plus statistics.

    LayerNorm saves input, mean and rstd. ``F.rms_norm`` calls
    ``_fused_rms_norm`` (PyTorch ``aten/src/ATen/native/layer_norm.cpp``,
    ``rms_norm_symint``): on CUDA a fused kernel that keeps the input and the
    fp32 rstd (read from the source, not measured here: no GPU); on CPU it
    decomposes — 16-bit inputs are upcast and the fp32 input and fp32
    normalised product are kept, fp32 inputs keep the input and the product.
    """
    h = dims.d_model
    if dims.norm == "layernorm":
        stats = 8 if kernels == "cuda" else 2 * e
        return 2 * e * h + stats
    if kernels == "cuda":
        return 2 * e * h + 4
    if e == 4:
        return 3 * 4 * h + 4
    return 4 * h + 4 * h + e * h + 4


def attention_saved(dims: ModelDims, e: int, recompute: str, kernels: str = "cuda") -> float:
    """Self-attention: Q, K, V (GQA: K and V are kv_heads wide), the core's output
    (also the output projection's input: SDPA lays it out so the reshape is a
    view) and its fp32 log-sum-exp (one per head and token). Selective recompute
    drops the log-sum-exp: the region saves its inputs and the out-projection
    its output. RoPE's cos/sin tables are per sequence, see ``rope_table_bytes``."""
    h, kv, a, s = dims.d_model, dims.n_kv_heads * dims.head_dim, dims.n_heads, dims.seq_len
    qkv_out = e * (2 * h + 2 * kv)
    if recompute == "selective":
        return qkv_out
    saved = qkv_out
    if math_attention(dims, kernels):
        # math path, measured under FakeTensorMode: its output, 12 bytes per score
        # (softmax, dropout noise and dropped probabilities, fp32 whatever the
        # dtype) and 12 bytes per hidden unit (scaled Q, expanded K/V) per token;
        # the unscaled Q, K, V are not kept. Prefix tuning's prefixes are keys too.
        keys = s + (dims.finetune.prefix_tokens if dims.finetune is not None else 0)
        return e * h + 12 * a * keys + 12 * h
    return saved + 4 * a


def rope_table_bytes(dims: ModelDims, e: int) -> int:
    """Bytes per block per micro-batch (not per token): the cos and sin tables
    (seq_len × head_dim each, training dtype) each attention layer builds and
    the rotation keeps for backward."""
    if dims.position != "rope":
        return 0
    return 2 * dims.seq_len * dims.head_dim * e


def mlp_saved(dims: ModelDims, e: int, recompute: str) -> float:
    """MLP inner activations: GELU keeps its input and output (the down GEMM's
    input); ReLU only its output; SwiGLU gate, up, silu(gate) and the product —
    under selective recompute the activation region keeps gate and up and the
    down GEMM the product."""
    ff = dims.d_ff
    if dims.activation == "swiglu":
        return e * ff * (3 if recompute == "selective" else 4)
    if dims.activation == "relu":
        return e * ff * (2 if recompute == "selective" else 1)
    return 2 * e * ff


def ops_saved(dims: ModelDims, e: int, kernels: str = "cuda") -> float:
    """Per-op selective recompute (``llmspec.graph.recompute``): the block input, every other
    matmul's output, and the attention kernel's output and fp32 log-sum-exp — unless SDPA
    takes its math path (attention dropout on CPU), whose matmuls and softmax are not kernels
    the policy keeps. Nothing else survives the forward: norms, RoPE tables, activations and
    dropout masks are made again in backward."""
    kept = e * (dims.d_model + kept_matmul_width(dims))
    if not math_attention(dims, kernels):
        kept += e * dims.n_heads * dims.head_dim + 4 * dims.n_heads
    return kept


def ops_kept_beyond_none(dims: ModelDims, e: int) -> float:
    """Kept matmul outputs that training without recompute would not keep: the ones only
    RoPE (q, k: multiplied by tables that need no gradient) or a residual add (o, down)
    consume. While ``ops`` recomputes a block in backward they are alive beside everything
    the recomputation saves."""
    unsaved = {"o", "down"} | ({"q", "k"} if dims.position == "rope" else set())
    return e * sum(m.d_out for m in block_matmuls(dims) if m.kept and m.name in unsaved)


def block_saved(dims: ModelDims, e: int, recompute: str = "none", kernels: str = "cuda") -> float:
    """One transformer block, unsharded. ``full`` recompute keeps only the block input,
    ``ops`` what its policy keeps (``ops_saved``)."""
    if recompute == "full":
        return e * dims.d_model
    if recompute == "ops":
        return ops_saved(dims, e, kernels)
    dropout = 2 * dims.d_model * _mask_bytes(e, kernels) if dims.dropout > 0 else 0
    return (
        2 * norm_saved(dims, e, kernels)
        + attention_saved(dims, e, recompute, kernels)
        + mlp_saved(dims, e, recompute)
        + dropout
    )


def block_sharded_fraction(
    dims: ModelDims,
    e: int,
    recompute: str,
    tensor: int,
    sequence_parallel: bool,
    kernels: str = "cuda",
) -> tuple[float, float]:
    """Split ``block_saved`` into (replicated, sharded over tensor) bytes per token.

    Under Megatron tensor parallelism the attention and MLP interiors are split
    over ``tensor`` ranks; norms, their outputs and the dropout masks are
    replicated (Korthikanti et al. 2022, Table 2). With sequence parallelism
    those are sharded along the sequence too, and the generated model's
    column-parallel GEMMs keep only the sequence shard of their input (the
    norm's output) and all-gather it again in backward, as Megatron-LM does
    (§4.2.2): everything is divided by ``tensor`` — Eq. 2's sbh/t·(34 + 5as/h).
    """
    total = block_saved(dims, e, recompute, kernels)
    if tensor == 1 or sequence_parallel:
        return 0.0, total
    if recompute in ("full", "ops"):  # (ops runs on tensor = 1 only)
        return total, 0.0
    inner = attention_saved(dims, e, recompute, kernels) + mlp_saved(dims, e, recompute)
    return total - inner, inner


def embedding_saved(
    dims: ModelDims, e: int, kernels: str = "cuda", recompute: str = "none"
) -> float:
    """Token ids kept by the embedding backward (int64), the embedding dropout mask,
    and for post-norm models the embedding norm."""
    # token ids (token types default to type 0: a broadcast row, nothing saved)
    return 8.0 + embedding_hidden_saved(dims, e, kernels, recompute)


def embedding_hidden_saved(
    dims: ModelDims, e: int, kernels: str = "cuda", recompute: str = "none"
) -> float:
    """The part of ``embedding_saved`` over hidden states (dropout mask, embedding norm):
    sequence shards under sequence parallel, like the blocks' norms. Under full recompute the
    embedding norm's output is the first block's checkpointed input, which the block's own
    count holds (measured: tests/test_measure_fake.py, BERT at tensor 4; per-op recompute
    counts no block input, so there the norm's output stays here)."""
    saved = 0.0
    if dims.dropout > 0:
        saved += dims.d_model * _mask_bytes(e, kernels)
    if dims.arch == "bert":
        saved += norm_saved(dims, e, kernels)
        if recompute == "full":
            saved -= e * dims.d_model
    return saved


def head_saved(dims: ModelDims, e: int, kernels: str = "cuda", tensor: int = 1) -> float:
    """Final norm (pre-norm), the LM-head input, the MLM transform, and what the loss keeps
    (`loss_saved`, vocab-wide: the big one)."""
    saved = head_hidden_saved(dims, e, kernels)
    if dims.objective == "masked_lm":
        saved += 8 + 8  # masked inputs and labels (the loss keeps labels unshifted)
    else:
        saved += 8  # labels shifted left by F.pad (a new tensor the loss keeps)
    return saved + loss_saved(dims, e, tensor)


def head_hidden_saved(dims: ModelDims, e: int, kernels: str = "cuda") -> float:
    """The part of ``head_saved`` over hidden states: the final norm (pre-norm; its output is
    the LM-head input) and the MLM transform. Sequence shards under sequence parallel: the
    LM head, a column-parallel GEMM, keeps the shard and re-gathers it in backward."""
    saved = 0.0
    if dims.arch != "bert":
        saved += norm_saved(dims, e, kernels)
    if dims.objective == "masked_lm":
        # the transform GEMM's input is the last block's (or final norm's) output,
        # already counted; then GELU input, and the norm (GELU output, head input)
        saved += e * dims.d_model + norm_saved(dims, e, kernels)
    return saved


def loss_saved(dims: ModelDims, e: int, tensor: int = 1) -> float:
    """Per token, what the loss keeps for backward. Without tensor parallel the chunked loss
    (`llmspec.rules.loss`) keeps only the gradient of the logits, written in forward in the
    logits' dtype; the vocabulary-parallel loss keeps its fp32 softmax (whole vocabulary here,
    the caller divides by the tensor degree)."""
    return e * dims.vocab_size if tensor == 1 else 4 * dims.vocab_size


def loss_transient(dims: ModelDims, e: int, tensor: int = 1) -> float:
    """Per token and rank, what is alive besides `loss_saved` at the loss's own peak.

    Chunked loss: the logits themselves, during its forward (then `loss_chunk_bytes` on
    top). Vocabulary-parallel loss: it works one fp32 buffer in place from logits to
    softmax to gradient (as Megatron-LM's does), so its peak is in the forward: the fp32
    logits it reads beside that buffer, and the 16-bit logits they were cast from.
    """
    if tensor == 1:
        return e * dims.vocab_size
    rows = padded_vocab(dims.vocab_size, tensor) / tensor
    return (4 + (e if e != 4 else 0)) * rows


def loss_chunk_bytes(dims: ModelDims, e: int, tokens: int) -> float:
    """The chunked loss's fp32 working set: one chunk's (log-)softmax, plus the chunk's fp32
    copy of the logits when they are 16-bit (fp32 logits are used in place)."""
    rows = min(LOSS_CHUNK_TOKENS, tokens)
    return (4 if e == 4 else 8) * dims.vocab_size * rows


def output_bytes(
    dims: ModelDims,
    kind: str,
    micro_batch: int,
    precision: str,
    tensor: int = 1,
    sequence_parallel: bool = False,
) -> int:
    """Bytes of a node's output tensor for one micro-batch on one rank."""
    e, tokens = act_bytes(precision), micro_batch * dims.seq_len
    if kind in ("lm_head", "mlm_head"):
        return tokens * padded_vocab(dims.vocab_size, tensor) // tensor * e
    width = dims.d_model // tensor if sequence_parallel else dims.d_model
    return tokens * width * e


def saved_bytes(
    dims: ModelDims,
    kind: str,
    micro_batch: int,
    precision: str,
    recompute: str = "none",
    tensor: int = 1,
    sequence_parallel: bool = False,
    kernels: str = "cuda",
) -> int:
    """Bytes a node keeps for backward for one micro-batch on one rank."""
    e, tokens = act_bytes(precision), micro_batch * dims.seq_len
    if kind == "block":
        replicated, sharded = block_sharded_fraction(
            dims, e, recompute, tensor, sequence_parallel, kernels
        )
        tables = rope_table_bytes(dims, e) if recompute in ("none", "selective") else 0
        return int(tokens * (replicated + sharded / tensor) + tables)
    if kind == "embedding":
        hidden = embedding_hidden_saved(dims, e, kernels, recompute)
        sharded = hidden * (1 - 1 / tensor) if sequence_parallel else 0.0
        return int(tokens * (embedding_saved(dims, e, kernels, recompute) - sharded))
    if kind in ("lm_head", "mlm_head"):
        return int(tokens * head_saved(dims, e, kernels, tensor) / tensor)
    return 0


# --------------------------------------------------------------------------- frozen base (LoRA)
# With the base frozen, autograd keeps only what the gradients of the adapters need: a GEMM
# with a frozen weight saves nothing of its input (PyTorch's generated autograd code saves an
# input only when the gradient it serves is needed, `should_compute_output`), while each
# adapter's two small GEMMs save their inputs: x (shared with the frozen GEMM, already alive)
# and x·Aᵀ (rank wide). LoRA dropout (peft's lora_dropout) makes a new tensor per adapted
# linear, saved with its mask: on every linear this can cost more than full fine-tuning saves
# (POSTTRAINING-NOTES §1.5).


def frozen_block_delta(dims: ModelDims, e: int, recompute: str, kernels: str = "cuda") -> float:
    """Bytes per token a block of a frozen base (LoRA adapters on some linears, or none under
    P-tuning) saves minus what `block_saved` counts for full training."""
    ft = dims.finetune
    if recompute in ("full", "ops"):
        return 0.0  # only what the checkpoint keeps; the recomputation is a transient
    targets = set(lora_targets(dims, ft)) if ft.method == "lora" else set()
    r, dropout = ft.lora_rank, ft.lora_dropout > 0
    delta = 0.0
    for t in targets:
        d_in = linear_shape(dims, t)[0]
        delta += e * r  # x·Aᵀ, saved by the B GEMM
        if dropout:  # dropout(x), saved by the A GEMM, and its mask
            delta += d_in * (e + _mask_bytes(e, kernels))
    # inputs only a base GEMM kept: gone unless an adapter without dropout keeps them
    kept = set() if dropout else targets
    h, ff = dims.d_model, dims.d_ff
    if not kept & {"q", "k", "v"}:
        delta -= e * h  # the attention norm's output
    if dims.activation == "swiglu":
        if not kept & {"gate", "up"}:
            delta -= e * h  # the MLP norm's output
        if "down" not in kept:
            delta -= e * ff  # silu(gate)·up, the down GEMM's input
    else:
        if not kept & {"up"}:
            delta -= e * h
        if "down" not in kept and dims.activation == "gelu":
            delta -= e * ff  # GELU's output; ReLU's is kept by ReLU itself
    if dims.norm == "rmsnorm" and kernels == "cpu":
        # frozen gains: RMSNorm's CPU decomposition keeps its fp32 normalised product only for
        # the gain's gradient (the fused CUDA kernel keeps input and rstd either way)
        delta -= 2 * 4 * h
    if math_attention(dims, kernels) and "o" not in kept:
        # the math path's output is a tensor of its own (the o GEMM's input, not a view of
        # what SDPA keeps): only o's GEMM keeps it, and a frozen o without an adapter does not
        delta -= e * h
    return delta


def math_attention(dims: ModelDims, kernels: str) -> bool:
    """Attention through SDPA's math path: attention dropout on CPU (see attention_saved)."""
    return dims.attention_dropout > 0 and kernels == "cpu"


def frozen_head_delta(dims: ModelDims, e: int) -> float:
    """Bytes per token the head saves less when it is frozen: the LM-head GEMM's input (the
    final norm's output), and the token ids the frozen embedding's backward would keep."""
    if dims.objective == "masked_lm":
        return 0.0
    return e * dims.d_model
