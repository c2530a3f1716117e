"""Peak memory per rank of one training step (contract 2 ``memory``).

``total`` is what ``torch.cuda.max_memory_allocated`` would report on the worst
rank of a steady-state step: the largest of the sums at the moments where a
step can peak (docs/memory-model.md, "Where the peak happens"), not one sum of everything:

* the loss backward (last stage): every saved activation, the fp32
  log-softmax and its two fp32 gradients (vocab-wide), no gradients yet;
* the top block's backward: activations, the head's gradients, the block's
  backward transient (and under full recompute its recomputed tensors);
* the bottom block's backward: nearly every gradient, few activations;
* the optimizer step: weights, optimizer state and the gradients the step
  reads (DeepSpeed's mixed-precision optimizers upcast 16-bit gradients to
  fp32 while both are alive).

The pieces: model states (``model_states``: weights in the training dtype,
AdamW m and v in fp32 plus fp32 master weights under 16-bit training —
Rajbhandari et al. 2020, "ZeRO", Sec. 3, K = 12 — sharded by ZeRO over
``data``, offload moving them to ``host_bytes``; DeepSpeed's reduce bucket);
activations (what autograd saves for the generated kernels,
``llmspec.graph.activations``, times the micro-batches a 1F1B stage holds in
flight: stage i keeps ``min(pipeline - i, micro-batches)``, Narayanan et al.
2021 Sec. 2.2; divided by ``tensor`` where Megatron shards them, Korthikanti
et al. 2022 Table 2); temporaries (loss gradients, backward transients,
buckets, ZeRO-3's gathered parameters). With gradient accumulation the
gradients are alive through every backward.

Runtime overheads that are not tensors (CUDA context, NCCL buffers, allocator
fragmentation) go to ``overhead_bytes``, outside ``total``.

Pure arithmetic: per-model constants are cached; one call takes tens of µs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache

from llmspec.graph import activations as act
from llmspec.graph.dims import ModelDims
from llmspec.graph.finetune import adapter_params, lora_params_per_layer
from llmspec.graph.layers import (
    attention_params,
    mlp_params,
    norm_params,
)
from llmspec.plan.types import Layout, MemoryEstimate, StageMemory
from llmspec.rules import deepspeed as ds_rules
from llmspec.rules.layout import padded_vocab

WEIGHT_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 2}

# Non-tensor overheads, reported beside the total (none of them is a tensor,
# so max_memory_allocated never sees them). The CUDA context of a PyTorch
# process (kernel images of torch, cuBLAS, cuDNN) — pytorch/pytorch#34323
# reports 781 MB in nvidia-smi for a process that has only initialised CUDA;
# NCCL allocates its own buffers outside the PyTorch allocator (PyTorch docs,
# "Understanding CUDA Memory Usage"), NCCL_BUFFSIZE = 4 MiB per channel and
# direction by default (NCCL environment-variable docs), assumed 16 channels
# per communicator; caching-allocator fragmentation is taken as 5% of the peak.
# Estimates from those sources, not measured here (no GPU on this machine).
CUDA_CONTEXT_BYTES = 768 * 2**20
NCCL_BYTES_PER_COMMUNICATOR = 16 * 2 * 4 * 2**20  # 16 channels × send/recv × 4 MiB
FRAGMENTATION_FRACTION = 0.05

# Transient of a block's backward beyond what it saved, measured on the
# generated model (FakeTensorMode + MemTracker) at the top block's MLP, where
# it peaks: the gradient of the residual stream and of the down-projection
# output (2 × d_model), the gradient of its input (d_ff), all per token in the
# training dtype, plus the weight gradient of the largest matrix before it is
# added into the persistent gradient buffer.
BLOCK_BACKWARD_TRANSIENT_WIDTHS = (2, 1)  # (×d_model, ×d_ff) per token

# Objectives read out by a scalar head: no vocabulary-wide logits or loss. "value" is PPO's
# critic (llmspec/plan/ppo_memory.py), an objective of the planner only, not of a spec.
SCALAR_HEADS = ("reward", "value")
# Objectives without train.py's chunked cross-entropy: those, and "policy", PPO's actor update
# (train_ppo.py takes log-probs of the response tokens; `policy_logprob_peak`)
NO_LM_LOSS = (*SCALAR_HEADS, "policy")


def policy_logprob_peak(dims: ModelDims, e: int) -> float:
    """Per token of a PPO actor micro-batch, the vocabulary-wide bytes alive at the head's
    peak in train_ppo.py's `response_logprobs`: logits [b, T, V] (training dtype) → the last
    G positions' fp32 copy → / temperature → log_softmax (saved) → gather. Either the
    logits beside their fp32 copy (e·V per token + 4·V per response token), or, in backward,
    the saved log_softmax, its incoming gradient and its input's gradient (3 × 4·V per
    response token). Measured under FakeTensorMode (tests/test_ppo_plan.py)."""
    g = dims.response_len / dims.seq_len
    v = dims.vocab_size
    return max(e * v + 4 * v * g, 12 * v * g)


@dataclass(frozen=True)
class _ModelConstants:
    """Per (dims, precision, recompute, tensor, sp, kernels) numbers, computed once."""

    block_params: float  # per rank
    block_trainable: float  # of block_params: all of them, or a LoRA block's adapters
    embedding_trainable: float  # of embedding_params (prefix and prompt tables train there)
    head_trainable: float
    embedding_params: float
    head_params: float
    tied_copy_params: float  # last stage's copy of a tied embedding when pipelined
    block_act: float  # bytes per token per block per rank
    block_act_fixed: float  # bytes per block per micro-batch (RoPE tables)
    embedding_act: float
    head_act: float
    loss_transient: float
    block_transient: float  # per token, beside block_weight_grad
    block_weight_grad: float  # bytes, per block backward
    head_weight_grad: float  # bytes: the (tied) vocabulary matrix's gradient
    recompute_extra: float  # full recompute: one block's working set
    first_block_act_delta: float = 0.0  # bytes per token: block 0 of a frozen base saves less
    head_backward_transient: float = 0.0  # sequence parallel: the LM head's input gradient
    # per token, post-norm: the block backward's first moment (its output norm's backward,
    # no weight gradient of size), when it outweighs the MLP's (block_transient)
    block_transient_first: float = 0.0
    # of embedding_trainable: parameters whose gradient appears only after the bottom block's
    # backward (the embedding runs first, so its backward runs last): positions, token types,
    # BERT's embedding norm, and an untied token table (a tied one's head share is there
    # already, as grads_backward or tied_gradient_pending)
    embedding_late_grad: float = 0.0


@lru_cache(maxsize=4096)
def _constants(
    dims: ModelDims, precision: str, recompute: str, tensor: int, sp: bool, kernels: str
) -> _ModelConstants:
    e = act.act_bytes(precision)
    t = tensor
    h = dims.d_model
    # Under tensor parallel every rank keeps the whole bias of the two row-parallel linears
    # (attention output, MLP out): it is added once, after the partial sums are reduced.
    row_biases = 2 * h if dims.bias else 0
    sharded_block = attention_params(dims) + mlp_params(dims) - row_biases
    block_params = sharded_block / t + row_biases + 2 * norm_params(dims)
    vocab_rows = padded_vocab(dims.vocab_size, t) / t
    embedding_params = vocab_rows * h + dims.type_vocab_size * h
    if dims.position == "learned":
        embedding_params += dims.max_seq_len * h
    # The one norm outside the blocks: the final norm of a pre-norm model (head), or the
    # embedding norm of a post-norm one, which the generated pipeline puts on the first stage.
    head_params = 0.0
    if dims.norm_position == "post":
        embedding_params += norm_params(dims)
    else:
        head_params += norm_params(dims)
    if dims.objective == "masked_lm":
        head_params += h * h + (h if dims.bias else 0) + norm_params(dims)
        head_params += vocab_rows if dims.bias else 0  # decoder bias
    untied_head = 0.0 if dims.tie_embeddings else vocab_rows * h
    tied_copy = vocab_rows * h if dims.tie_embeddings else 0.0

    replicated, sharded = act.block_sharded_fraction(dims, e, recompute, t, sp, kernels)
    block_act = replicated + sharded / t
    # Fine-tuning: what trains (model states) and what autograd keeps (a frozen base keeps less)
    ft = dims.finetune
    block_trainable, embedding_trainable, head_trainable = block_params, embedding_params, None
    first_block_delta = head_delta = 0.0
    if ft is not None and ft.frozen_base:
        lora = lora_params_per_layer(dims, ft) if ft.method == "lora" else 0
        block_params += lora
        block_trainable = lora
        embedding_trainable = adapter_params(dims, ft) - dims.n_layers * lora
        embedding_params += embedding_trainable
        head_trainable = 0.0
        block_act += act.frozen_block_delta(dims, e, recompute, kernels)
        head_delta = act.frozen_head_delta(dims, e)
        if ft.method in ("lora", "prefix") and recompute != "full":
            # block 0's input does not require grad (the embedding is frozen): its norm keeps
            # nothing; under P-tuning the virtual tokens require grad from the start
            first_block_delta = -(act.norm_saved(dims, e, kernels) - e * h)
    if recompute in ("full", "ops"):  # the recomputed block's saved tensors, beyond what it kept
        full = act.block_sharded_fraction(dims, e, "none", t, sp, kernels)
        recompute_extra = full[0] + full[1] / t - block_act
        if ft is not None and ft.method == "lora":
            # the recomputation saves what a frozen LoRA block saves: its adapters' tensors
            # (with LoRA dropout a copy of each adapted input), not the frozen GEMMs' inputs
            # (measured, tests/test_memory_lora.py: dropout on every linear was 18 % under).
            # Prefix and P-tuning blocks are left at full training's set: taking their frozen
            # savings off under-counts their recompute peak by 8-13 % (measured; not explained).
            recompute_extra += act.frozen_block_delta(dims, e, "none", kernels)
        if recompute == "ops":
            recompute_extra += act.ops_kept_beyond_none(dims, e)
    else:
        recompute_extra = 0.0
    wh, wf = BLOCK_BACKWARD_TRANSIENT_WIDTHS
    block_transient = e * (wh * h + wf * dims.d_ff / t)
    block_weight_grad = e * h * max(dims.d_ff, h) / t
    block_transient_first = 0.0
    if dims.norm_position == "post":
        # A post-norm block's backward starts in its output norm: the incoming gradient and
        # the norm's input gradient, both hidden-wide. That norm's backward then frees the
        # incoming gradient (the skip path carries the norm's input gradient, not it) and the
        # norm's input and statistics, before the MLP's backward reaches its width: one
        # hidden and the norm's saved input fewer than the pre-norm block, whose incoming
        # gradient feeds the skip path to the end (measured, live tensors at the peak under
        # MemTracker: tests/test_measure_fake.py, BERT tensor 4 + full recompute).
        freed = act.norm_saved(dims, e, kernels) - e * h  # its output is the next block's
        block_transient_first = 2 * e * h
        block_transient -= e * h + freed
    if precision == "fp8":
        # fp8_linear's backward of the MLP's output linear (templates/_model/fp8.py.j2): the
        # output gradient and the input cast to FP8 and each copied once more into cuBLAS's
        # layout (1 byte each), and the weight's two FP8 copies, alive with its 16-bit products.
        block_transient += 2 * (h + dims.d_ff / t)
        block_weight_grad += 2 * h * dims.d_ff / t
    head_act = act.head_saved(dims, e, kernels, t)
    embedding_act = act.embedding_saved(dims, e, kernels, recompute)
    if t > 1:  # the vocabulary-parallel softmax is this rank's slice; the rest is replicated
        head_act += -4 * dims.vocab_size + 4 * dims.vocab_size / t
    if sp:  # ... except, under sequence parallel, the hidden states: this rank's sequence shard
        head_act -= act.head_hidden_saved(dims, e, kernels) * (1 - 1 / t)
        embedding_act -= act.embedding_hidden_saved(dims, e, kernels, recompute) * (1 - 1 / t)
    head_params += untied_head
    if dims.objective == "reward":  # the reward model's scalar head: new, so it trains
        head_params += h
        head_trainable = h if head_trainable is not None else None
    if dims.objective == "policy":  # PPO's actor: its (frozen, idle) value head
        head_params += h
        if head_trainable is None:
            head_trainable = head_params - h
    if dims.objective == "value":  # PPO's critic: a scalar value head trains, its LM head not
        head_params += h
        if head_trainable is None:
            head_trainable = head_params - untied_head
    return _ModelConstants(
        block_params=block_params,
        block_trainable=block_trainable,
        embedding_trainable=embedding_trainable,
        embedding_late_grad=(
            0.0
            if ft is not None and ft.frozen_base
            else embedding_params - (vocab_rows * h if dims.tie_embeddings else 0.0)
        ),
        head_trainable=head_params if head_trainable is None else head_trainable,
        embedding_params=embedding_params,
        head_params=head_params,
        tied_copy_params=tied_copy,
        block_act=block_act,
        block_act_fixed=act.rope_table_bytes(dims, e)
        if recompute in ("none", "selective")
        else 0.0,
        embedding_act=embedding_act - (8.0 if head_delta else 0.0),
        # a reward model reads one score per row: no vocabulary-wide logits or loss
        head_act=(
            head_act - act.loss_saved(dims, e, t) if dims.objective in NO_LM_LOSS else head_act
        )
        - head_delta,
        loss_transient=(
            0.0
            if dims.objective in SCALAR_HEADS
            else policy_logprob_peak(dims, e)
            if dims.objective == "policy"
            else act.loss_transient(dims, e, t)
        ),
        block_transient=block_transient,
        block_transient_first=block_transient_first,
        block_weight_grad=0.0 if ft is not None and ft.frozen_base else block_weight_grad,
        # a frozen weight gets no gradient (an adapter's is rank-wide: negligible)
        head_weight_grad=0.0 if head_trainable == 0.0 else e * vocab_rows * h,
        recompute_extra=recompute_extra,
        first_block_act_delta=first_block_delta,
        # Sequence parallel, LM loss: the head's backward (templates/_model/sequence_parallel.py.j2)
        # holds the fp32 gradient of its logits slice, the gradient of the gathered input
        # (d_model per token), its contiguous chunks for the reduce-scatter (d_model) and the
        # shard it returns (d_model / t); measured under FakeTensorMode (test_measure_fake.py).
        head_backward_transient=(
            4 * vocab_rows + e * h * (2 + 1 / t) if sp and dims.objective not in NO_LM_LOSS else 0.0
        ),
    )


def _tensor_shapes(dims: ModelDims, tensor: int) -> tuple[list[int], list[int], list[int]]:
    """Elements of each parameter tensor on one rank of the generated model.py: (one block,
    the embedding layers, the head layers). Linear layers hold a weight and a bias
    (templates/_model/layers.py.j2); under tensor parallel the column-parallel weights and
    biases and the row-parallel weights are split, the row-parallel biases replicated."""
    h, t, kv, ff = dims.d_model, tensor, dims.n_kv_heads * dims.head_dim, dims.d_ff
    b = dims.bias
    norm = [h, h] if dims.norm == "layernorm" and dims.bias else [h]
    block = [h * h // t, h * kv // t, h * kv // t, h * h // t]  # q, k, v, o
    block += [h // t, kv // t, kv // t, h] if b else []
    ups = 2 if dims.activation == "swiglu" else 1
    block += [h * ff // t] * ups + [ff * h // t] + ([ff // t] * ups + [h] if b else [])
    block += norm * 2
    vocab_rows = padded_vocab(dims.vocab_size, t) // t
    embedding = [vocab_rows * h]
    if dims.position == "learned":
        embedding.append(dims.max_seq_len * h)
    if dims.type_vocab_size:
        embedding.append(dims.type_vocab_size * h)
    head = list(norm)  # the final norm (pre-norm), or the embedding norm (post-norm)
    if dims.objective == "masked_lm":
        head += [h * h] + ([h] if b else []) + norm + ([vocab_rows] if b else [])
    if not dims.tie_embeddings:
        head.append(vocab_rows * h)
    return block, embedding, head


@lru_cache(maxsize=1024)
def zero3_persistent_elements(dims: ModelDims, tensor: int = 1) -> tuple[int, int, int]:
    """Elements ZeRO-3 keeps gathered on every rank outside the optimizer step: each
    parameter of at most ``stage3_param_persistence_threshold`` elements (DeepSpeed 0.19.8
    ``runtime/zero/parameter_offload.py`` ``mark_persistent_parameters``: ``ds_numel <=
    param_threshold`` → ``ds_persist``; the partitioned coordinator never releases those),
    as (per block, embedding layers, head layers). ``stage3.py`` ``step`` releases them
    (``_partition_all_parameters``) and ``_post_step`` gathers them again. Base-model
    tensors only: fine-tuning adapters are not counted."""
    limit = ds_rules.STAGE3_PERSISTENCE_THRESHOLD
    return tuple(sum(n for n in part if n <= limit) for part in _tensor_shapes(dims, tensor))


def tied_gradient_pending(
    dims: ModelDims, layout: Layout, precision: str, kernels: str = "cuda"
) -> float:
    """Bytes of a tied table's gradient from the LM head that autograd holds (the input
    buffer of the weight's AccumulateGrad node) from the head's backward until the
    embedding's gradient is added to it at the end of backward: full size, and beside the
    gradients already there under accumulation, or partitioned away by ZeRO ≥ 2 (under
    ZeRO-0 and ZeRO-1, which keep the gradients whole through backward, without
    accumulation it is the head's share of ``grads_backward``). 0 when the two
    uses sit on different pipeline stages (each stage has its own copy)."""
    if not dims.tie_embeddings or layout.pipeline > 1:
        return 0.0
    if layout.zero_stage <= 1 and layout.grad_accum_steps <= 1:
        return 0.0
    c = _constants(
        dims, precision, layout.activation_checkpointing, layout.tensor,
        bool(layout.sequence_parallel), kernels,
    )  # fmt: skip
    return c.head_weight_grad if c.head_trainable else 0.0


def cpu_adam_transient(dims: ModelDims, layout: Layout, precision: str, trainable: float) -> float:
    """Bytes of the optimizer step's temporaries on CPU. ds_config.json asks for torch's
    AdamW there (``torch_adam``; DeepSpeed 0.19 ``engine.py`` ``get_optimizer_configuration``
    passes ``foreach=None``, which on CPU tensors means the single-tensor loop), and torch
    2.13's ``optim/adam.py`` ``_single_tensor_adam`` computes ``denom =
    (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)``: two fp32 temporaries the size
    of the tensor being updated at once. DeepSpeed's flat optimizers (ZeRO ≥ 1, and the
    pipeline's BF16_Optimizer) update this rank's flat partition of all the weights as one
    tensor; otherwise the largest parameter tensor is the largest update."""
    z = layout.zero_stage
    if z >= 1 or (layout.pipeline > 1 and precision in ("bf16", "fp8")):
        return 2 * 4 * trainable / layout.data
    block, embedding, head = _tensor_shapes(dims, layout.tensor)
    return 2 * 4 * min(max([*block, *embedding, *head]), trainable)


def pipeline_engine_buffers(
    dims: ModelDims, layout: Layout, e: float, tokens: float, *, first: bool, last: bool
) -> tuple[float, float]:
    """Bytes DeepSpeed's PipelineEngine keeps on a stage beside autograd's (0.19.8
    ``runtime/pipe/engine.py``): (all the step, at the loss). A stage that receives keeps
    ``pipe_recv_buf`` and one that receives gradients ``grad_layer``, one micro-batch of
    boundary activations, reused, and both the same tensor (``_allocate_or_extend_buffers``
    hands out ``_grad_layer_buf[0]`` to either); the last stage's ``_exec_backward_pass`` returns
    right after the loss's backward, so it never clears ``pipe_buffers['outputs']``: the
    logits of the last ``num_pipe_buffers`` = max(2, …) micro-batches stay alive
    (``schedule.py`` ``TrainSchedule.num_pipe_buffers``; 1F1B runs one micro-batch at a time
    on the last stage, so two when there are two or more), through the optimizer step and
    until overwritten, and their graphs hold the received input and its gradient (measured
    by ``benchmarks/pipeline_states_worker.py``). At the loss, the previous micro-batch's
    are the kept ones."""
    if layout.pipeline == 1:
        return 0.0, 0.0
    # one micro-batch of boundary activations: a sequence shard under sequence parallel (the
    # blocks take and return [B, S/T, D], templates/_model/sequence_parallel.py.j2)
    row = tokens * dims.d_model * e / (layout.tensor if layout.sequence_parallel else 1)
    boundary = row  # pipe_recv_buf and grad_layer: one buffer (`_allocate_or_extend_buffers`)
    if not last or dims.objective in SCALAR_HEADS:
        return boundary, boundary
    # a kept logits tensor keeps its autograd graph, and with it (the AccumulateGrad node of
    # the received input, a leaf) that micro-batch's input and the input's gradient
    kept = tokens * padded_vocab(dims.vocab_size, layout.tensor) / layout.tensor * e
    if not first:
        kept += 2 * row
    m = max(1, layout.grad_accum_steps)
    return boundary + min(2, m) * kept, boundary + min(1, m - 1) * kept


def even_stage_layers(n_layers: int, pipeline: int) -> list[int]:
    """Blocks per stage: an even split, the remainder on the middle stages
    (the first stage carries the embedding, the last the head and loss)."""
    base, rest = divmod(n_layers, pipeline)
    layers = [base] * pipeline
    middle = list(range(1, pipeline - 1)) or list(range(pipeline))
    middle.sort(key=lambda i: (abs(2 * i - (pipeline - 1)), i))
    for i in middle[:rest]:
        layers[i] += 1
    return layers


@dataclass(frozen=True)
class ModelStates:
    """Model-state bytes on one rank at the moments that matter (DeepSpeed 0.19,
    measured on 2-process CPU runs by ``benchmarks/zero_states_worker.py``)."""

    weights: float
    optimizer: float  # AdamW m, v (+ fp32 master weights when mixed or ZeRO ≥ 1)
    grads_backward: float  # gradients held through backward, before the boundary's reduce
    grads_end: float  # gradients held when backward (and, at the boundary, its reduce) ends
    grads_step: float  # gradients held during the optimizer step
    backward_buffer: float  # reduce bucket alive during backward only (ZeRO 1/2)
    persistent_buffer: float  # alive all step: ZeRO-3's reduce bucket, BF16_Optimizer's grads
    # ZeRO-1: the reduce buckets alive at the accumulation boundary's reduce, beside
    # `grads_backward` (the pipeline engine's reduce adds a second one)
    reduce_buffer: float
    host: float
    # ZeRO-3: full copies of the persistent (small) parameters, held in forward and backward
    # and released for the optimizer step (`zero3_persistent_elements`)
    gathered_persistent: float = 0.0
    step_transient: float = 0.0  # ZeRO-3: a sub-group's flat 16-bit gradient, cast to fp32


def model_states(
    n_params: float,
    precision: str,
    layout: Layout,
    n_trainable: float | None = None,
    n_persistent: float = 0.0,
) -> ModelStates:
    """Where DeepSpeed keeps weights, gradients and AdamW state on one rank.

    ZeRO-0 with 16-bit training (DeepSpeed's mixed-precision optimizer): 16-bit
    weights and gradients, fp32 master + m + v (12 B/param); at the step the
    16-bit gradients are upcast to fp32 (4 B/param) while still alive.
    ZeRO-1/2 (``stage_1_and_2.py``): after the reduce, the 16-bit gradient
    partition (1/d), staged through a ``reduce_bucket_size``-element bucket — ZeRO-2
    reduces during backward, ZeRO-1 only at the accumulation boundary, holding every
    gradient whole until then (below); at the step the 16-bit partition and the fp32
    partition gradient (4/d B/param). ZeRO-3 also partitions the weights and
    keeps its reduce bucket allocated for the whole run, and steps one sub-group
    at a time: only that sub-group's fp32 gradient is alive
    (``ds_rules.STAGE3_SUB_GROUP_ELEMENTS``). (Rajbhandari et al.
    2020, "ZeRO", Sec. 5: Ψ/N_d sharding of each state; P_os keeps 2Ψ of gradients.)

    DeepSpeed 0.19.8 ``runtime/zero/stage_1_and_2.py``, with ds_config.json's
    ``contiguous_gradients`` and train.py's two parameter groups (decay / no decay):

    * ZeRO-1 partitions nothing during backward: its gradient hook (``process_gradients``)
      only allocates the reduce bucket (``setup_buckets``: ``reduce_bucket_size`` elements of
      the model dtype, the size ds_config.json sets, ``rules.deepspeed``) and leaves every
      .grad whole until the accumulation boundary's ``reduce_gradients``. Under the
      PipelineEngine that call appends a second bucket of the same size ("with PP we must
      create ipg buffer, since backward is handled outside zero") while every .grad is
      still whole: the reduce moment holds two buckets and all the gradients. ZeRO-2 reduces
      from its hooks during backward (its .grads move into the bucket).
    * The reduce copies this rank's gradients into ``grads_in_partition``
      (``copy_grads_in_partition``): one buffer in the model dtype for the parameters of
      every group that touch this rank's partition (≈ 1/d). ``step`` flattens group 0's
      part into an fp32 partition gradient and drops only that group's views, so the
      buffer, still viewed by group 1's, is alive beside group 0's fp32 gradient through
      its optimizer step: w/d + 4/d B per parameter (group 0, the matrices, is ~all of them).

    ``n_trainable`` (default all): a frozen parameter has weights only — no gradient and
    no optimizer state or fp32 master (train.py passes DeepSpeed the trainable ones only);
    ZeRO-3 still partitions it (zero.Init partitions every parameter it builds).

    ``n_persistent``: ZeRO-3 keeps these elements gathered in full on every rank beside
    their partitions (``zero3_persistent_elements``), outside the step only.
    """
    d, z = layout.data, layout.zero_stage
    step_transient = 0.0
    w = WEIGHT_BYTES[precision]
    mixed = precision != "fp32"
    all_params = n_params
    n = n_params if n_trainable is None else n_trainable
    bucket = w * ds_rules.REDUCE_BUCKET_ELEMENTS
    if z == 0 and precision in ("bf16", "fp8") and layout.pipeline > 1:
        # DeepSpeed's BF16_Optimizer, which the PipelineEngine takes for bf16 at ZeRO-0
        # (runtime/engine.py `_do_optimizer_sanity_check`: bf16 model dtype and pipeline →
        # BFLOAT16); bf16_optimizer.py `_setup_for_real_optimizer`: the fp32 master and the
        # optimizer state are this data rank's partition of the flat weights, the gradients
        # accumulate into `fp32_groups_gradients_flat`, a whole-size buffer in the gradient
        # accumulation dtype (the model's: no `grad_accum_dtype` in ds_config.json) alive
        # for the run; `step` casts this rank's partition of it to fp32 while the 16-bit .grad
        # of every parameter is still alive.
        weights, optimizer = w * all_params, 12 * n / d
        grads_end = w * n
        grads_step = grads_end + 4 * n / d
        backward_buffer, persistent_buffer = 0.0, w * n
    elif z == 0:
        weights, optimizer = w * all_params, (12 if mixed else 8) * n
        grads_end = w * n
        grads_step = grads_end + (4 * n if mixed else 0)
        backward_buffer = persistent_buffer = 0.0
    else:
        weights = w * all_params / (d if z == 3 else 1)
        optimizer = 12 * n / d  # fp32 partition of the weights + m + v
        grads_end = w * n / d
        # ZeRO-1/2: `grads_in_partition` beside group 0's fp32 gradient (see above)
        grads_step = w * n / d + 4 * n / d
        backward_buffer = bucket if z < 3 else 0.0
        persistent_buffer = bucket if z == 3 else 0.0
        if z == 3:  # the 16-bit partition gradients stay; one sub-group at a time in fp32
            sub_group = min(n / d, ds_rules.STAGE3_SUB_GROUP_ELEMENTS)
            grads_step = w * n / d + 4 * sub_group
            step_transient = w * sub_group  # flattened before the cast
    # ZeRO-1 keeps every gradient whole until the boundary's reduce (see above)
    grads_backward = w * n if z <= 1 else grads_end
    reduce_buffer = bucket * (2 if layout.pipeline > 1 else 1) if z == 1 else 0.0
    host = 0.0
    if layout.offload_optimizer != "none" and z >= 1:
        # ZeRO-Offload: the fp32 partition, its gradient and the step live on the host
        # (copy_grads_in_partition copies straight to it: no `grads_in_partition`)
        host += optimizer + 4 * n / d
        optimizer = 0.0
        grads_step = grads_end if z == 3 else 0.0
        step_transient = 0.0
    if layout.offload_params != "none" and z == 3:
        host += weights
        weights = 0.0
    gathered = w * n_persistent if z == 3 else 0.0
    return ModelStates(
        weights=weights, optimizer=optimizer, grads_backward=grads_backward,
        grads_end=grads_end, grads_step=grads_step, backward_buffer=backward_buffer,
        persistent_buffer=persistent_buffer, reduce_buffer=reduce_buffer, host=host,
        gathered_persistent=gathered, step_transient=step_transient,
    )  # fmt: skip


def estimate_memory(
    dims: ModelDims,
    layout: Layout,
    precision: str,
    *,
    stage_layers: Sequence[int] | None = None,
    kernels: str = "cuda",
) -> MemoryEstimate:
    """Peak bytes per rank of one steady-state step under ``layout``.

    ``stage_layers``: transformer blocks per pipeline stage (len == pipeline);
    None = even split, remainder on the middle stages. The first stage holds
    the embedding, the last the head and loss. The top-level numbers are the
    worst stage's; every stage is in ``stages``. ``kernels="cpu"`` predicts what
    the CPU kernels save (for comparing with ``measure_step``, or for a CPU
    cluster: no CUDA context or NCCL overhead); the default models CUDA.
    """
    p = layout.pipeline
    layers = list(stage_layers) if stage_layers is not None else even_stage_layers(dims.n_layers, p)
    if len(layers) != p or sum(layers) != dims.n_layers:
        raise ValueError(f"stage_layers {layers} must have {p} entries summing to {dims.n_layers}")
    recompute = layout.activation_checkpointing
    if dims.finetune is not None and dims.finetune.extra_tokens:
        # P-tuning's virtual tokens run through every layer with the sequence: its rows are
        # that much longer (attention scores included)
        dims = replace(dims, seq_len=dims.seq_len + dims.finetune.extra_tokens)
    c = _constants(
        dims, precision, recompute, layout.tensor, bool(layout.sequence_parallel), kernels
    )
    tokens = layout.micro_batch_size * dims.seq_len
    if dims.objective in ("reward", "dpo"):
        tokens *= 2  # a micro-batch of preference pairs: a chosen and a rejected row each
    micro_batches = max(1, layout.grad_accum_steps)
    w = WEIGHT_BYTES[precision]
    e = act.act_bytes(precision)
    # the chunked loss's fp32 working set; the vocabulary-parallel loss has none (rules/loss.py)
    loss_chunk = (
        act.loss_chunk_bytes(dims, e, tokens)
        if layout.tensor == 1 and dims.objective not in NO_LM_LOSS
        else 0.0
    )

    stages = []
    for i, n_layers in enumerate(layers):
        first, last = i == 0, i == p - 1
        n_params = n_layers * c.block_params
        trainable = n_layers * c.block_trainable
        if first:
            n_params += c.embedding_params
            trainable += c.embedding_trainable
        if last:
            n_params += c.head_params + (c.tied_copy_params if p > 1 else 0.0)
            trainable += c.head_trainable + (
                c.tied_copy_params if p > 1 and c.head_trainable else 0.0
            )
        persistent = 0.0
        if layout.zero_stage == 3:
            per_block, emb_kept, head_kept = zero3_persistent_elements(dims, layout.tensor)
            persistent = (
                n_layers * per_block + (emb_kept if first else 0) + (head_kept if last else 0)
            )
        st = model_states(n_params, precision, layout, trainable, persistent)
        head_params = (
            (c.head_trainable + (c.tied_copy_params if p > 1 and c.head_trainable else 0.0))
            if last
            else 0.0
        )
        head_grads = st.grads_backward * head_params / trainable if trainable else 0.0
        # Gradients accumulate over micro-batches: with accumulation they are all
        # alive through every backward; without, they appear as backward runs.
        accumulating = micro_batches > 1
        in_flight = min(p - i, micro_batches)
        per_mb = tokens * (n_layers * c.block_act + (c.embedding_act if first else 0.0))
        if first and n_layers:
            per_mb += tokens * c.first_block_act_delta
        per_mb += n_layers * c.block_act_fixed
        # other micro-batches' activations; in a pipeline each also holds, beside what autograd
        # saved, its received input (runtime/pipe/engine.py `pipe_buffers['inputs']`, freed in
        # `_exec_send_grads`) and its output (`pipe_buffers['outputs']`, freed at the end of
        # `_exec_backward_pass`), one boundary row each; the running one's are inside per_mb's
        # peak already (measured: benchmarks/pipeline_states_worker.py)
        boundary_rows = ((0 if first else 1) + (0 if last else 1)) if p > 1 else 0
        shard = layout.tensor if layout.sequence_parallel else 1  # SP: the boundary is a shard
        row_bytes = boundary_rows * tokens * dims.d_model * e / shard
        resident = (in_flight - 1) * (per_mb + row_bytes)
        # ZeRO-3: parameters gathered for the module running + prefetch, beside the
        # persistent ones (gathered all the time but the step)
        zero3_live = st.gathered_persistent
        if layout.zero_stage == 3:
            largest = max(c.block_params, c.embedding_params if first or last else 0.0)
            live = min(
                ds_rules.STAGE3_MAX_LIVE_ELEMENTS,
                ds_rules.STAGE3_PREFETCH_ELEMENTS + largest,
                n_params - persistent,
            )
            zero3_live += w * live
        buffers = st.backward_buffer + zero3_live  # alive in forward/backward only
        grads_now = st.grads_backward if accumulating else 0.0

        tied_pending = tied_gradient_pending(dims, layout, precision, kernels) if last else 0.0
        pipe_kept, pipe_kept_at_loss = pipeline_engine_buffers(
            dims, layout, e, tokens, first=first, last=last
        )

        # 1F1B: a stage's first backward of the step meets the most micro-batches in flight,
        # min(p - i, m), before any gradient exists (zeroed after the last step); from its
        # second backward on the gradients are there, and min(p - i, m - 1) are in flight
        # (runtime/pipe/schedule.py TrainSchedule: p - i - 1 warm-up forwards, then one
        # forward per backward).
        phases = [(resident, 0.0 if p > 1 else grads_now)]
        if p > 1 and accumulating:
            second = min(p - i, micro_batches - 1)
            phases.append(((second - 1) * (per_mb + row_bytes), grads_now))
        candidates = []  # (name, activations, grads, temporary)
        for resident, grads_now in phases:
            if last:  # the loss at its peak (graph/activations.py: loss_saved, loss_transient)
                loss_acts = resident + per_mb + tokens * c.head_act
                loss_tmp = tokens * c.loss_transient + loss_chunk
                if layout.tensor == 1:  # the chunked loss peaks in forward: all of it activations
                    loss_acts, loss_tmp = loss_acts + loss_tmp, 0.0
                candidates.append(
                    ("loss", loss_acts, grads_now, loss_tmp + buffers + pipe_kept_at_loss)
                )
                if c.head_backward_transient:
                    head_tmp = tokens * c.head_backward_transient
                    candidates.append(
                        ("head backward", loss_acts, grads_now,
                         head_tmp + buffers + pipe_kept_at_loss)
                    )  # fmt: skip
            if n_layers:  # top block: every activation, the head's gradients
                block_tmp = tokens * c.recompute_extra + max(
                    tokens * c.block_transient + c.block_weight_grad,
                    tokens * c.block_transient_first,
                )
                candidates.append(
                    ("top block", resident + per_mb, max(grads_now, head_grads),
                     block_tmp + buffers + tied_pending + pipe_kept)
                )  # fmt: skip
                # bottom block: nearly every gradient exists. Without full recompute the
                # block's own activations are mostly consumed by then and the largest
                # weight gradient is the transient; with it, the block is recomputed
                # before any of its gradients exist.
                emb_acts = resident + tokens * (c.embedding_act if first else 0.0)
                # ZeRO 0-1 keep gradients whole, in proportion to the parameters; the
                # embedding's appear after this block's backward unless an earlier
                # micro-batch made them (measured: tests/test_measure_fake.py, tensor 4)
                late = 0.0
                if first and not accumulating and layout.zero_stage <= 1 and trainable:
                    late = st.grads_backward * c.embedding_late_grad / trainable
                if recompute == "full":
                    block_grads = (
                        st.grads_backward * c.block_trainable / trainable if trainable else 0.0
                    )
                    candidates.append(
                        ("bottom block", emb_acts + tokens * c.block_act,
                         st.grads_backward - block_grads - late,
                         block_tmp + buffers + tied_pending + pipe_kept)
                    )  # fmt: skip
                else:
                    candidates.append(
                        ("bottom block", emb_acts, st.grads_backward - late,
                         c.block_weight_grad + buffers + tied_pending + pipe_kept)
                    )  # fmt: skip
        step_tmp = 0.0
        if kernels == "cpu" and trainable:
            step_tmp = cpu_adam_transient(dims, layout, precision, trainable)
        step_tmp += st.step_transient
        candidates.append(("step", 0.0, st.grads_step, step_tmp + pipe_kept))
        if st.reduce_buffer:  # ZeRO-1's reduce at the boundary: its buckets, every .grad whole
            candidates.append(
                ("gradient reduce", 0.0, st.grads_backward, st.reduce_buffer + pipe_kept)
            )
        if last and p == 1 and dims.tie_embeddings and c.head_trainable:
            # the embedding's gradient meets the head's on the tied weight: autograd
            # holds the new gradient and their sum before it replaces the old one
            candidates.append(("embedding", resident, st.grads_backward, 2 * c.head_weight_grad))
        _, act_b, grad_b, tmp_b = max(candidates, key=lambda x: x[1] + x[2] + x[3])
        # whole bytes per part, and the total their sum (a part rounded apart from the total
        # made them disagree by a byte)
        parts = [int(st.weights), int(grad_b), int(st.optimizer), int(act_b)]
        parts.append(int(tmp_b + st.persistent_buffer))
        stages.append(
            StageMemory(
                stage=i,
                layers=n_layers,
                params=parts[0],
                grads=parts[1],
                optimizer=parts[2],
                activations=parts[3],
                temporary=parts[4],
                total=sum(parts),
                host_bytes=int(st.host),
            )
        )
    worst = max(stages, key=lambda s: (s.total, -s.stage))
    overhead = int(FRAGMENTATION_FRACTION * worst.total)
    if kernels == "cuda":  # a CPU run has no CUDA context, and gloo's buffers are small
        overhead += CUDA_CONTEXT_BYTES
    if kernels == "cuda" and layout.world_size > 1:
        groups = sum(1 for k in (layout.data, layout.tensor, layout.pipeline) if k > 1)
        overhead += groups * NCCL_BYTES_PER_COMMUNICATOR
    return MemoryEstimate(
        params=worst.params,
        grads=worst.grads,
        optimizer=worst.optimizer,
        activations=worst.activations,
        temporary=worst.temporary,
        total=worst.total,
        stages=tuple(stages),
        host_bytes=worst.host_bytes,
        overhead_bytes=overhead,
    )
