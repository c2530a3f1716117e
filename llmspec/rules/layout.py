"""Which parallel layouts the generated code and DeepSpeed can run (pure; reasons, not raises)."""

from __future__ import annotations

import math

ZERO_STAGES = (0, 1, 2, 3)
# DeepSpeed's PipelineEngine asserts this (deepspeed/runtime/pipe/engine.py: "ZeRO-2 and
# ZeRO-3 are incompatible with pipeline parallelism").
ZERO_STAGES_WITH_PIPELINE = (0, 1)


def divisors(n: int, limit: int | None = None) -> list[int]:
    """The divisors of n (ascending) that are at most `limit`, in O(sqrt(n)) steps.

    `limit` keeps the work bounded for numbers a user may make arbitrarily large.
    """
    if n < 1:
        return []
    top = n if limit is None else min(n, limit)
    found = set()
    for k in range(1, min(math.isqrt(n), top) + 1):
        if n % k == 0:
            found.add(k)
            if n // k <= top:
                found.add(n // k)
    return sorted(found)


def tensor_split_fields(n_heads: int, n_kv_heads: int, d_ff: int) -> tuple[tuple[str, int], ...]:
    """What a tensor-parallel rank holds an equal share of (Megatron's column/row split)."""
    return (("n_heads", n_heads), ("n_kv_heads", n_kv_heads), ("d_ff", d_ff))


def tensor_divides_model(tensor: int, n_heads: int, n_kv_heads: int, d_ff: int) -> str | None:
    for name, size in tensor_split_fields(n_heads, n_kv_heads, d_ff):
        if size % tensor:
            return f"parallel.tensor = {tensor} does not divide model.{name} = {size}"
    return None


def valid_tensor_degrees(n_heads: int, n_kv_heads: int, d_ff: int, gpus_per_node: int) -> list[int]:
    """Tensor degrees that split the model evenly and tile the nodes (no group straddles two)."""
    return divisors(math.gcd(n_heads, n_kv_heads, d_ff, gpus_per_node))


def degree_triples(
    world: int,
    gpus_per_node: int,
    n_heads: int,
    n_kv_heads: int,
    d_ff: int,
    n_layers: int,
    *,
    tensor: int | None = None,
    pipeline: int | None = None,
) -> list[tuple[int, int, int]]:
    """Every (data, tensor, pipeline) with data × tensor × pipeline = world that the rules
    allow, keeping a fixed `tensor` / `pipeline` (the planner's search space and the spec
    check of the global batch both start here)."""
    tensors = valid_tensor_degrees(n_heads, n_kv_heads, d_ff, gpus_per_node)
    if tensor is not None:
        tensors = [tensor] if tensor in tensors else []
    triples = []
    for t in tensors:
        for p in [pipeline] if pipeline is not None else divisors(world // t):
            if world % (t * p) == 0 and not pipeline_fits_layers(p, n_layers):
                triples.append((world // (t * p), t, p))
    return triples


def tensor_fits_node(tensor: int, gpus_per_node: int) -> str | None:
    if tensor > gpus_per_node:
        return (
            f"parallel.tensor = {tensor} exceeds cluster.gpus_per_node = {gpus_per_node}: "
            "tensor parallelism all-reduces every layer and stays inside one node"
        )
    if gpus_per_node % tensor:
        return (
            f"parallel.tensor = {tensor} does not divide cluster.gpus_per_node = "
            f"{gpus_per_node}: tensor groups must not straddle nodes"
        )
    return None


def sequence_parallel_needs_tensor(sequence_parallel: bool, tensor: int) -> str | None:
    if sequence_parallel and tensor == 1:
        return (
            "sequence_parallel splits activations across tensor-parallel ranks, but "
            "parallel.tensor = 1"
        )
    return None


def ops_recompute_needs_one_tensor_rank(recompute: str, tensor: int) -> str | None:
    """Per-op selective recompute replays every op it does not keep, and under tensor
    parallel those include the forward's collectives (the row-parallel all-reduces): the
    generated code runs it on tensor = 1 only."""
    if recompute == "ops" and tensor > 1:
        return (
            "activation_checkpointing: ops would replay the tensor-parallel all-reduces in "
            f"backward; it runs with parallel.tensor = 1, not {tensor}"
        )
    return None


def ops_recompute_needs_trained_base(recompute: str, frozen_base: bool) -> str | None:
    """With a frozen base (LoRA, prefix, P-tuning) the backward of a block recomputed under
    the per-op policy keeps tensors the memory model does not yet account for (measured 2-7 %
    above it under FakeTensorMode): llmspec does not plan or generate that combination."""
    if recompute == "ops" and frozen_base:
        return (
            "activation_checkpointing: ops is planned for full training only; this fine-tune "
            "freezes its base"
        )
    return None


def sequence_parallel_divides_seq_len(
    sequence_parallel: bool, tensor: int, seq_len: int
) -> str | None:
    if sequence_parallel and tensor > 1 and seq_len % tensor:
        return (
            f"sequence parallel: parallel.tensor = {tensor} does not divide "
            f"train.seq_len = {seq_len}"
        )
    return None


# FP8 GEMMs (torch._scaled_mm, cuBLASLt) take a first operand whose inner dimension and a
# second whose two dimensions are multiples of 16 (PyTorch aten/src/ATen/native/cuda/Blas.cpp,
# `_scaled_mm_out_cuda`'s TORCH_CHECKs). The three GEMMs of a linear use its input and output
# widths on one tensor rank and, in the weight gradient, the micro-batch's token count as such
# dimensions (templates/_model/fp8.py.j2).
FP8_GEMM_MULTIPLE = 16


def fp8_gemm_shapes(
    tensor: int, d_model: int, q_width: int, kv_width: int, d_ff: int, seq_len: int
) -> str | None:
    """Why precision fp8 cannot run the block linears at this tensor degree (None: it can)."""
    widths = (
        ("model.d_model", d_model, 1),
        ("model.n_heads x head_dim", q_width, tensor),
        ("model.n_kv_heads x head_dim", kv_width, tensor),
        ("model.d_ff", d_ff, tensor),
        ("train.seq_len", seq_len, 1),
    )
    for name, size, split in widths:
        if size % split or (size // split) % FP8_GEMM_MULTIPLE:
            per_rank = f" / parallel.tensor {tensor}" if split > 1 else ""
            return (
                f"precision fp8: {name}{per_rank} = {size / split:g} is not a multiple of "
                f"{FP8_GEMM_MULTIPLE} (FP8 GEMMs need every dimension a multiple of 16)"
            )
    return None


def pipeline_fits_layers(pipeline: int, n_layers: int) -> str | None:
    if pipeline > n_layers:
        return (
            f"parallel.pipeline = {pipeline} exceeds model.n_layers = {n_layers}: "
            "every stage needs at least one layer"
        )
    return None


def zero_stages_for(pipeline: int) -> tuple[int, ...]:
    return ZERO_STAGES_WITH_PIPELINE if pipeline > 1 else ZERO_STAGES


def pipeline_allows_zero_stage(pipeline: int, zero_stage: int) -> str | None:
    if zero_stage not in zero_stages_for(pipeline):
        return (
            f"parallel.zero_stage = {zero_stage} cannot be combined with parallel.pipeline = "
            f"{pipeline}: DeepSpeed's pipeline engine supports ZeRO stages 0 and 1 only"
        )
    return None


def offload_params_needs_zero3(offload_params: str, zero_stage: int) -> str | None:
    if offload_params != "none" and zero_stage != 3:
        return (
            f"offload_params = {offload_params} needs ZeRO stage 3, but "
            f"parallel.zero_stage = {zero_stage}"
        )
    return None


def offload_optimizer_needs_zero(offload_optimizer: str, zero_stage: int) -> str | None:
    if offload_optimizer != "none" and zero_stage == 0:
        return (
            f"offload_optimizer = {offload_optimizer} needs ZeRO stage 1, 2 or 3, but "
            "parallel.zero_stage = 0"
        )
    return None


def degrees_fill_world(data: int, tensor: int, pipeline: int, world: int) -> str | None:
    product = data * tensor * pipeline
    if product != world:
        return (
            f"data × tensor × pipeline = {data} × {tensor} × {pipeline} = {product}, "
            f"but the cluster has {world} GPUs"
        )
    return None


def padded_vocab(vocab_size: int, tensor: int = 1) -> int:
    """The embedding's row count: vocab_size rounded up to a multiple of the tensor degree,
    so that every tensor-parallel rank holds the same number of rows (as Megatron pads)."""
    return -(-vocab_size // tensor) * tensor
