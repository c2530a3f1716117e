"""Cost model: the predicted wall time of one optimizer step, part by part.

Each part is a small function of the slice it needs, so it can be tested on a
number worked out by hand. Units: bytes, seconds, GB/s = 1e9 bytes/s,
TFLOP/s = 1e12 FLOP/s.

Sources (see docs/planner-references.md):
- Ring all-reduce moves 2(n−1)/n of the buffer through every GPU's link;
  reduce-scatter and all-gather move (n−1)/n each (Patarasuk & Yuan 2009,
  "Bandwidth optimal all-reduce algorithms for clusters of workstations";
  Thakur, Rabenseifner & Gropp 2005). NCCL uses rings for large buffers.
- Tensor parallel (Megatron): 2 all-reduces of b·s·h activations in the
  forward of each block and 2 in the backward (Narayanan et al. 2021 §3.2;
  with sequence parallel, all-gathers + reduce-scatters of the same volume,
  Korthikanti et al. 2022 §4.2.2).
- Pipeline (1F1B / PipeDream-Flush): bubble = (p−1)/m of the ideal time;
  b·s·h activations cross each stage boundary per micro-batch, forward and
  backward (Narayanan et al. 2021 §2.2, §4.1).
- ZeRO: as DeepSpeed 0.19 schedules it (read in `runtime/engine.py`,
  `runtime/zero/stage_1_and_2.py`, `stage3.py`, `partitioned_param_coordinator.py`;
  summarised in `llmspec/rules/deepspeed.py`): stages 1-2 all-reduce gradient buckets
  (stage 2 every micro-batch) and all-gather the updated parameters; stage 3
  reduce-scatters every micro-batch and gathers parameters module by module in each
  forward and backward pass (Rajbhandari et al. 2020 §7 for the volumes), priced as the list
  of collectives DeepSpeed issues, each at its own size (`zero3_messages`, `collectives_s`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from llmspec.graph import layers
from llmspec.graph import recompute as op_recompute
from llmspec.graph.dims import ModelDims
from llmspec.rules import deepspeed as ds_rules

# Achieved fraction of nominal link bandwidth for large collectives: Calculon's
# shipped system files (Isaev et al. 2023, "Calculon: a methodology and tool for
# high-level co-design of systems and large language models") use 0.65 for NVLink
# and 0.9 for InfiniBand.
NVLINK_EFFICIENCY = 0.65
NETWORK_EFFICIENCY = 0.9

# Flat fraction of the dense peak, used only where a caller prices FLOPs without shapes
# (`step_time(efficiency=...)` worked examples, stages built without `compute_s_per_token`).
# The planner prices each stage by shape and GPU generation instead: `gemm_efficiency`,
# `attention_efficiency`, `block_compute_s_per_token` below (GEMM_FRACTION holds the fitted
# per-generation numbers and says on what they were fitted).
COMPUTE_EFFICIENCY = 0.70

# Optimizer step on the GPU is memory-bound: AdamW reads the fp32 master weight,
# fp32 gradient buffer, m and v (16 bytes) and writes weight, m, v and the 16-bit
# copy (14 bytes): 30 bytes of HBM traffic per parameter.
ADAM_BYTES_PER_PARAM = 30

# ZeRO-3 gathers the 16-bit copy of each parameter (DeepSpeed partitions the module's
# bf16/fp16 weights; the fp32 master stays with the optimizer).
ZERO3_GATHER_BYTES = 2

# Host side of ZeRO-Offload. Host memory bandwidth per node: 2 sockets × 8
# channels × DDR4-3200 (25.6 GB/s per channel, JEDEC JESD79-4) = 409.6 GB/s, as in
# a DGX A100 (2× AMD EPYC 7742); DeepSpeedCPUAdam is bandwidth-bound on it
# (Ren et al. 2021, ZeRO-Offload §4.1). NVMe: one PCIe 4.0 ×4 drive per GPU,
# ~3.5 GB/s sustained (vendor datasheets list 3.5–7 GB/s read, less for writes).
HOST_MEMORY_GBPS_PER_NODE = 409.6

NVME_GBPS = 3.5


# Latency of a collective, from NCCL's own cost model (NVIDIA/nccl `src/graph/tuning.cc`,
# master at 5067397c, `ncclTunerConstantsDefaults`, Simple protocol): a base latency per call
# (Ring 8.4 µs) plus one hardware latency per ring step — 3.4 µs over NVLink, 14.0 µs over the
# network. A ring all-reduce takes 2(n−1) steps, a reduce-scatter or all-gather n−1; of these,
# only the steps that cross a node boundary pay the network latency (2(nodes−1) for an
# all-reduce, nodes−1 otherwise); the others pay max(NVLink, 3 × the per-message network
# overhead, 1 µs on Intel hosts) when the ring spans nodes (`getNetOverhead`). This is the α of
# the α-β model (Thakur, Rabenseifner & Gropp 2005) and what makes a collective's bus bandwidth
# a function of message size and rank count: the nccl-tests curves rise with size because α
# is paid per call, and ZeRO-3's per-module gathers over thousands of ranks pay it ~n times.
NCCL_BASE_LATENCY_S = 8.4e-6
NCCL_STEP_LATENCY_S = {True: 3.4e-6, False: 14.0e-6}  # intra-node (NVLink), network
NCCL_NET_OVERHEAD_S = 1.0e-6
# All-reduce may use NCCL's Tree instead (tuning.cc: base 8.4 µs, NVLink 4.0, network 14.0
# per hop; 2·((ppn−1)·intra + log2(nodes)·net); bus bandwidth 0.92 of the ring's for Simple).
NCCL_TREE_STEP_LATENCY_S = {True: 4.0e-6, False: 14.0e-6}
NCCL_TREE_BANDWIDTH_FACTOR = 0.92


def ring_latency_s(steps: int, intra_node: bool) -> float:
    """Fixed cost of one ring collective of `steps` steps, all of one kind (0 for one rank)."""
    if steps <= 0:
        return 0.0
    return NCCL_BASE_LATENCY_S + steps * NCCL_STEP_LATENCY_S[intra_node]


def nccl_ring_latency_s(kind: str, ranks: int, nodes: int) -> float:
    """NCCL's ring latency for `kind` ("all_reduce", "all_gather", "reduce_scatter") over
    `ranks` ranks spread over `nodes` nodes (tuning.cc, ring branch)."""
    if ranks <= 1:
        return 0.0
    steps = 2 * (ranks - 1) if kind == "all_reduce" else ranks - 1
    if nodes <= 1:
        return NCCL_BASE_LATENCY_S + steps * NCCL_STEP_LATENCY_S[True]
    inter = 2 * (nodes - 1) if kind == "all_reduce" else nodes - 1
    intra = max(NCCL_STEP_LATENCY_S[True], 3 * NCCL_NET_OVERHEAD_S)
    return NCCL_BASE_LATENCY_S + (steps - inter) * intra + inter * NCCL_STEP_LATENCY_S[False]


def nccl_tree_latency_s(ranks: int, nodes: int) -> float:
    """NCCL's tree all-reduce latency (tuning.cc, tree branch)."""
    per_node = max(1, ranks // max(1, nodes))
    hops = 2 * (
        (per_node - 1) * NCCL_TREE_STEP_LATENCY_S[True]
        + max(0, (nodes - 1).bit_length()) * NCCL_TREE_STEP_LATENCY_S[False]
    )
    return NCCL_BASE_LATENCY_S + hops


def collective_s(kind: str, nbytes: float, ranks: int, nodes: int, gbps: float, calls=1) -> float:
    """`calls` NCCL collectives of `kind` moving `nbytes` in all over one group.

    Ring bandwidth: each rank sends (n−1)/n of the buffer (all-gather, reduce-scatter) or
    2(n−1)/n (all-reduce) through its link of `gbps` bus bandwidth (Patarasuk & Yuan 2009);
    plus NCCL's latency per call. An all-reduce takes the faster of ring and tree, as NCCL's
    tuner does; all-gather and reduce-scatter are ring-only (PAT needs one GPU per node).
    """
    if ranks <= 1 or nbytes <= 0 or calls <= 0:
        return 0.0
    per_rank = (ranks - 1) / ranks
    beta = nbytes / _gbps(gbps)
    if kind != "all_reduce":
        return per_rank * beta + calls * nccl_ring_latency_s(kind, ranks, nodes)
    ring = 2 * per_rank * beta + calls * nccl_ring_latency_s(kind, ranks, nodes)
    if nodes <= 1:
        return ring
    tree = 2 * beta / NCCL_TREE_BANDWIDTH_FACTOR + calls * nccl_tree_latency_s(ranks, nodes)
    return min(ring, tree)


def _gbps(gbps: float) -> float:
    return gbps * 1e9


# ----------------------------------------------------------------------------- collectives
def link_efficiency(intra_node: bool) -> float:
    return NVLINK_EFFICIENCY if intra_node else NETWORK_EFFICIENCY


def ring_allreduce_s(nbytes: float, n: int, gbps: float) -> float:
    """Ring all-reduce of `nbytes` over `n` ranks on links of `gbps` (effective) each."""
    if n <= 1 or nbytes <= 0:
        return 0.0
    return 2 * (n - 1) / n * nbytes / _gbps(gbps)


def ring_reduce_scatter_s(nbytes: float, n: int, gbps: float) -> float:
    """Reduce-scatter of an `nbytes` buffer (each rank keeps 1/n): (n−1)/n · bytes / bw."""
    if n <= 1 or nbytes <= 0:
        return 0.0
    return (n - 1) / n * nbytes / _gbps(gbps)


def ring_all_gather_s(nbytes: float, n: int, gbps: float) -> float:
    """All-gather into an `nbytes` buffer: the same volume as a reduce-scatter."""
    return ring_reduce_scatter_s(nbytes, n, gbps)


def p2p_s(nbytes: float, gbps: float) -> float:
    """One point-to-point send of `nbytes`."""
    if nbytes <= 0 or gbps == float("inf"):
        return 0.0
    return nbytes / _gbps(gbps)


# ----------------------------------------------------------------------------- compute
@lru_cache(maxsize=512)
def block_flops(dims: ModelDims, recompute: str) -> tuple[float, float]:
    """(model, hardware) FLOPs per token of one block, forward + backward.

    Backward = 2× forward (Narayanan et al. 2021 §5.1). Full recomputation replays
    the block's forward; selective replays what the generated code checkpoints
    between GEMMs — the attention core (QKᵀ and scores·V, 4·s·h per token) and the
    MLP activation (no matmul FLOPs). Korthikanti et al. 2022 Eq. 8 charges more
    (s/(3h) instead of s/(6h) over model FLOPs); this counts the forward replayed.
    Per-op selective (`ops`) replays the matmuls its policy does not keep
    (`llmspec.graph.recompute`), not the attention core (its kernel's output is kept).
    Same convention as `llmspec.plan.flops.hardware_flops_per_token`.
    """
    fwd = layers.block_fwd_flops_per_token(dims)
    model = 3 * fwd
    if recompute == "full":
        return model, model + fwd
    if recompute == "ops":
        return model, model + op_recompute.recomputed_matmul_flops_per_token(dims)
    if recompute == "selective":
        return model, model + layers.attention_flops_per_token(dims)[1]
    return model, model


def head_flops(dims: ModelDims) -> float:
    """LM / MLM head, forward + backward, per token (never recomputed)."""
    return 3 * layers.head_fwd_flops_per_token(dims)


def model_flops_per_token(dims: ModelDims) -> float:
    return dims.n_layers * block_flops(dims, "none")[0] + head_flops(dims)


# ----------------------------------------------------------------------------- GEMM efficiency
# GPU generation of each catalog entry (the dies: GA100, GH100 — the H200 is a GH100 with
# HBM3e —, CDNA 2, CDNA 3). Entries not listed ("other": the TPU, the nominal `cpu`) use the
# A100's fractions without wave quantization, and are reported as unvalidated
# (`plan.uncertainty`).
GPU_GENERATION = {
    "a100-40gb": "ampere",
    "a100-80gb": "ampere",
    "h100-sxm": "hopper",
    "h200": "hopper",
    "mi250x": "cdna2",
    "mi300x": "cdna3",
}

# Streaming multiprocessors (compute units) that GEMM tiles are spread over: NVIDIA A100
# Tensor Core GPU Architecture whitepaper (108 SMs), NVIDIA H100 Tensor Core GPU Architecture
# whitepaper (132 SMs, SXM5), AMD CDNA 2 whitepaper (110 CUs per MI250X GCD), AMD CDNA 3
# whitepaper (304 CUs, MI300X).
SM_COUNT = {"ampere": 108, "hopper": 132, "cdna2": 110, "cdna3": 304}

# Output tile of one thread block, for wave quantization: cuBLAS's large BF16 kernels use
# 128×128 and larger tiles; NVIDIA's "Matrix Multiplication Background" guide (Deep Learning
# Performance docs) explains tile and wave quantization with 128×128 / 256×128 examples.
GEMM_TILE = 128

# Achieved end-to-end fraction of the dense peak for large, compute-bound GEMM work, one
# number per GPU generation: the kernel's own efficiency plus what the model does not
# itemise (launch gaps, small kernels between the GEMMs). FITTED, and the only fitted
# compute constants: Ampere on the 10 runs of Narayanan et al. 2021 Table 1 (A100, 1.7B-1T,
# `python benchmarks/published_layouts.py --fit` → 0.745), Korthikanti 2022 Table 5 held
# out; Hopper on the single-node H100 BF16 runs of the published set that it represents
# exactly (llm-foundry MPT 1B, 7B, 7B at 8k, 13B, 30B and torchtitan's Llama 3.1 8B eager and
# compiled, on 8 GPUs: 7 runs, intra-node communication only; `python
# benchmarks/published_runs.py --fit-hopper` → 0.465; 0.476 on the five MPT runs before the
# torchtitan rows' element-wise code was costed as it ran, ELEMENTWISE_IMPLS), the other 77
# held out.
# The H200 (same GH100 die) uses Hopper's. For scale:
# cuBLAS reaches ~0.8-0.9 of peak on large A100 GEMMs, less on H100 (power- and
# clock-limited at 700 W); Calculon's tables use 0.95-0.99 for the kernels alone.
GEMM_FRACTION = {"ampere": 0.745, "hopper": 0.465}

# FlashAttention-2 (what torch SDPA's flash backend runs) forward+backward throughput as a
# fraction of the dense BF16 peak, head dim 128, sequence 2k-8k: A100 ~170-190 TFLOP/s
# (Dao 2023, "FlashAttention-2", Fig. 4-6: 50-73% of peak forward, less backward) → 0.55;
# H100 SXM5 ~330-370 TFLOP/s forward, less backward (Shah et al. 2024, "FlashAttention-3",
# Fig. 5-6, FlashAttention-2 bars) → 0.35. Kernel measurements, not fitted.
FLASH_ATTENTION_FRACTION = {"ampere": 0.55, "hopper": 0.35}


def set_gemm_fraction(generation: str, value: float) -> None:
    """Change one generation's GEMM_FRACTION (the benchmarks' fits) and drop cached times."""
    GEMM_FRACTION[generation] = value
    block_compute_s_per_token.cache_clear()
    head_compute_s_per_token.cache_clear()


def gpu_generation(gpu) -> str:
    """The die generation; "other" (no SM count, Ampere's fractions) for entries not listed."""
    return GPU_GENERATION.get(gpu.name, "other")


def gemm_efficiency(m: float, n: float, k: float, gpu, *, in_bytes: float = 2.0) -> float:
    """Achieved fraction of the dense peak for one (M×K)·(K×N) GEMM on `gpu`.

    GEMM_FRACTION of the generation, times two shape effects from NVIDIA's "Matrix
    Multiplication Background User's Guide": wave quantization (⌈M/128⌉·⌈N/128⌉ output tiles
    spread over the SMs in whole waves) and the roofline (a GEMM whose arithmetic intensity
    2MNK / bytes(A, B, C) is below the GPU's FLOP:byte ratio is bound by HBM bandwidth).
    `in_bytes` is the width of the inputs (1 for FP8); the output is 16-bit.
    """
    gen = gpu_generation(gpu)
    frac = GEMM_FRACTION.get(gen, GEMM_FRACTION["ampere"])
    if m <= 0 or n <= 0 or k <= 0:
        return frac
    sms = SM_COUNT.get(gen)
    wave = 1.0
    if sms:
        tiles = -(-m // GEMM_TILE) * -(-n // GEMM_TILE)
        wave = tiles / (-(-tiles // sms) * sms)
    peak = gpu.fp8_tflops if in_bytes < 2 and gpu.has_fp8 else gpu.peak_tflops
    intensity = 2 * m * n * k / (in_bytes * (m * k + k * n) + 2 * m * n)
    ridge = peak * 1e12 / (gpu.hbm_gbps * 1e9)
    return frac * wave * min(1.0, intensity / ridge)


def attention_efficiency(gpu) -> float:
    """Fraction of the BF16 peak the FlashAttention core reaches (never above the GEMMs')."""
    gen = gpu_generation(gpu)
    frac = GEMM_FRACTION.get(gen, GEMM_FRACTION["ampere"])
    return min(frac, FLASH_ATTENTION_FRACTION.get(gen, FLASH_ATTENTION_FRACTION["ampere"]))


def max_efficiency(gpu) -> float:
    """No compute runs faster than this fraction of the precision's peak (search bounds)."""
    return GEMM_FRACTION.get(gpu_generation(gpu), GEMM_FRACTION["ampere"])


# FP8 casts, as the generated model.py runs them (templates/_model/fp8.py.j2, torchao's
# tensorwise recipe): each cast of a 16-bit tensor is an amax pass (read 2 bytes an element) and
# one compiled scale-and-cast kernel (read 2, write 1): FP8_CAST_BYTES. A forward pass casts the
# linear's input and weight; the backward casts the output gradient once, the weight and the
# saved 16-bit input again, and copies three FP8 operands into the layout cuBLAS takes (the
# weight column-major, the gradient transposed, the input column-major: read 1, write 1,
# FP8_LAYOUT_COPY_BYTES). Memory-bound: priced at HBM bandwidth. Only the block linears run
# in FP8: attention core, norms, element-wise ops, the optimizer and the LM head stay 16-bit.
# (The sequence-parallel linears cast their gathered input once for q, k, v; priced per linear.)
FP8_CAST_BYTES = 5
FP8_LAYOUT_COPY_BYTES = 2
# What a published run's FP8 software does differently (`fp8_casts`; published runs only, the
# generated code does neither):
# - "fused_cast_transpose": Transformer Engine's delayed scaling takes each scale from the amax
#   history, so no amax pass (TE user guide, "Using FP8 with Transformer Engine": DelayedScaling),
#   and its cast_transpose kernel writes the FP8 tensor and its transpose in one pass (read 2,
#   write 1 + 1: TE_CAST_TRANSPOSE_BYTES); the backward takes the FP8 input and weight the
#   forward saved, so it casts only the output gradient;
# - "weights_once_per_step": with gradient accumulation the weights are cast on the first
#   micro-batch of a step and reused (TE's `is_first_microbatch`, TE user guide "Performance
#   Optimizations: FP8 weight caching"; Megatron-Core's TELinear passes it unless
#   `disable_parameter_transpose_cache`).
FP8_CASTS = ("fused_cast_transpose", "weights_once_per_step")
TE_CAST_TRANSPOSE_BYTES = 4


def _linear_shapes(dims: ModelDims, tensor: int) -> tuple[tuple[float, float], ...]:
    """(N, K) of each linear of one block on one tensor rank (M is the token count), in the
    forward's call order (`llmspec.graph.recompute.linear_names`)."""
    h, hq, kv, ff = (
        dims.d_model,
        dims.n_heads * dims.head_dim,
        dims.n_kv_heads * dims.head_dim,
        dims.d_ff,
    )
    t = tensor
    attn = ((hq / t, h), (kv / t, h), (kv / t, h), (h, hq / t))
    mlp_in = ((ff / t, h),) * (2 if dims.activation == "swiglu" else 1)
    return attn + mlp_in + ((h, ff / t),)


@lru_cache(maxsize=8192)
def block_compute_s_per_token(
    dims: ModelDims,
    *,
    recompute: str,
    tensor: int,
    micro_batch: int,
    gpu,
    peak_tflops: float,
    fp8: bool,
    attention_kernel: str,
    fp8_casts: tuple[str, ...] = (),
    micro_batches: int = 1,
) -> float:
    """Seconds per token of one block's GEMMs and attention core on one GPU, fwd + bwd.

    Each linear runs three GEMMs of the same size (forward, input gradient, weight gradient;
    Narayanan et al. 2021 §5.1), at `gemm_efficiency` of its shape with M = micro-batch ×
    sequence tokens; full recomputation replays the forward. The attention core runs at the
    FlashAttention efficiency (causal: the kernel skips the masked half, Dao 2023 §3.1), or —
    unfused, Megatron 2021-22 — as batched QKᵀ and scores·V GEMMs of their own shapes.
    `peak_tflops` is the 16-bit (or fp32) peak; with `fp8` the linears run at the FP8 peak
    and pay their casts and copies (FP8_CAST_BYTES) from HBM. Per-op selective recompute
    replays the forward GEMM of the linears its policy does not keep. `fp8_casts` (published
    runs only, `FP8_CASTS`) costs another FP8 stack's casts; `micro_batches` (the step's
    gradient-accumulation count) matters only with "weights_once_per_step".
    """
    unknown = set(fp8_casts) - set(FP8_CASTS)
    if unknown:
        raise ValueError(f"unknown fp8_casts {sorted(unknown)}; known: {FP8_CASTS}")
    m = micro_batch * dims.seq_len
    replayed = op_recompute.recomputed_linear_names(dims) if recompute == "ops" else ()
    seconds = 0.0
    hbm = gpu.hbm_gbps * 1e9
    for name, (n, k) in zip(
        op_recompute.linear_names(dims), _linear_shapes(dims, tensor), strict=True
    ):
        fwd_passes = 2 if recompute == "full" or name in replayed else 1
        passes = fwd_passes + 2
        flops = 2 * n * k  # per token, one GEMM
        if fp8 and gpu.has_fp8:
            eff = gemm_efficiency(m, n, k, gpu, in_bytes=1)
            seconds += passes * flops / (gpu.fp8_tflops * 1e12 * eff)
            weight = n * k / m  # per token
            if "weights_once_per_step" in fp8_casts:
                weight /= max(1, micro_batches)
            if "fused_cast_transpose" in fp8_casts:
                casts = fwd_passes * (k + weight) + n  # forward(s); the output gradient
                seconds += casts * TE_CAST_TRANSPOSE_BYTES / hbm
            else:
                casts = fwd_passes * (k + weight) + (n + k + weight)  # forward(s), backward
                copies = n + k + weight  # the backward's operands re-laid out
                seconds += (casts * FP8_CAST_BYTES + copies * FP8_LAYOUT_COPY_BYTES) / hbm
        else:
            seconds += passes * flops / (peak_tflops * 1e12 * gemm_efficiency(m, n, k, gpu))
    core = layers.attention_flops_per_token(dims)[1] / tensor  # forward, per token
    core_passes = 3 + (1 if recompute in ("selective", "full") else 0)
    if recompute == "ops" and attention_kernel == "unfused":
        core_passes += 1  # its matmuls and softmax are not a kernel the policy keeps
    if attention_kernel == "unfused":
        s, d = dims.seq_len, dims.head_dim
        frac = GEMM_FRACTION.get(gpu_generation(gpu), GEMM_FRACTION["ampere"])
        ridge = peak_tflops * 1e12 / hbm
        qk = min(1.0, (2 * s * s * d) / (2 * (2 * s * d + s * s)) / ridge)
        av = qk  # (s×s)·(s×d): the same bytes and FLOPs
        eff = frac * (qk + av) / 2
        seconds += core_passes * core / (peak_tflops * 1e12 * eff)
    else:
        causal = 0.5 if dims.objective != "masked_lm" else 1.0
        seconds += core_passes * core * causal / (peak_tflops * 1e12 * attention_efficiency(gpu))
    return seconds


@lru_cache(maxsize=4096)
def head_compute_s_per_token(
    dims: ModelDims, *, tensor: int, micro_batch: int, gpu, peak_tflops: float
) -> float:
    """Seconds per token of the LM head's GEMMs (forward + two backward), 16-bit."""
    m = micro_batch * dims.seq_len
    n, k = dims.vocab_size / tensor, dims.d_model
    seconds = 3 * 2 * n * k / (peak_tflops * 1e12 * gemm_efficiency(m, n, k, gpu))
    if dims.objective == "masked_lm":
        seconds += 3 * 2 * k * k / (peak_tflops * 1e12 * gemm_efficiency(m, k, k, gpu))
    return seconds


def compute_s(flops: float, peak_tflops: float, efficiency: float = COMPUTE_EFFICIENCY) -> float:
    """Time for `flops` on one GPU at `efficiency` of its dense peak."""
    return flops / (peak_tflops * 1e12 * efficiency)


def pipeline_bubble_fraction(pipeline: int, micro_batches: int) -> float:
    """1F1B / GPipe bubble as a fraction of the ideal (bubble-free) time: (p−1)/m."""
    return (pipeline - 1) / micro_batches


def tensor_parallel_bytes_per_block(
    micro_batch: int, seq_len: int, d_model: int, act_bytes: int
) -> float:
    """Bytes of one tensor-parallel all-reduce in a block: the b·s·h activation."""
    return micro_batch * seq_len * d_model * act_bytes


def tensor_parallel_s_per_block(
    micro_batch: int,
    seq_len: int,
    d_model: int,
    act_bytes: int,
    tensor: int,
    gbps: float,
    recompute_forward: bool,
) -> float:
    """Forward + backward collectives of one block under tensor parallelism.

    2 all-reduces forward and 2 backward (Megatron's f/g operators); full
    recomputation replays the forward's 2. Sequence parallel swaps each for an
    all-gather + reduce-scatter pair of the same total volume.
    """
    if tensor <= 1:
        return 0.0
    nbytes = tensor_parallel_bytes_per_block(micro_batch, seq_len, d_model, act_bytes)
    count = 4 + (2 if recompute_forward else 0)
    return count * ring_allreduce_s(nbytes, tensor, gbps)


# ----------------------------------------------------------------------------- data parallel
def _ceil(x: float) -> int:
    return max(1, -int(-x // 1))


def gradient_sync_s(
    zero_stage: int,
    rank_params: float,
    grad_bytes: int,
    data: int,
    nodes: int,
    gbps: float,
) -> tuple[float, float]:
    """(per micro-batch, per step) seconds of DeepSpeed's gradient reduction for one rank.

    DeepSpeed 0.19's schedule (`rules/deepspeed.py` cites the source): stage 0 all-reduces at
    the step boundary in 5e8-element buffers; stage 1 all-reduces its reduce buckets at the
    boundary; stage 2 does the same every micro-batch (every backward); both then all-gather
    the updated 16-bit parameters once per step. Stage 3 reduce-scatters every micro-batch
    (its parameter gathers are `zero3_gather_pass_s`).
    """
    if data <= 1 or rank_params <= 0:
        return 0.0, 0.0
    grads = rank_params * grad_bytes
    calls = _ceil(rank_params / ds_rules.gradient_bucket_elements(zero_stage))
    kind = (
        "all_reduce" if zero_stage in ds_rules.ALLREDUCE_GRADIENTS_ZERO_STAGES else "reduce_scatter"
    )
    reduce = collective_s(kind, grads, data, nodes, gbps, calls)
    gather = 0.0
    if zero_stage in (1, 2):
        pieces = _ceil(rank_params / ds_rules.ALLGATHER_BUCKET_ELEMENTS)
        gather = collective_s("all_gather", rank_params * 2, data, nodes, gbps, pieces)
    if ds_rules.reduces_every_micro_batch(zero_stage):
        return reduce, gather
    return 0.0, reduce + gather


def collectives_s(kind: str, messages, ranks: int, nodes: int, gbps: float) -> float:
    """A list of NCCL collectives over one group, each priced at its own size: `messages` is
    an iterable of (bytes, how many calls of that size). Each call pays its latency and its
    bytes at the ring's bus bandwidth (`collective_s`), and an all-reduce picks ring or tree
    per call as NCCL's tuner does per message (`ncclTopoGetAlgoTime`, src/graph/tuning.cc:
    time = latency · calls + bytes / bandwidth, per algorithm)."""
    return sum(n * collective_s(kind, b, ranks, nodes, gbps) for b, n in messages if n > 0)


@dataclass(frozen=True)
class Zero3Messages:
    """ZeRO-3's collectives of one pipeline stage on one rank, in elements.

    forward / backward: (elements, calls of that size) of the parameter all-gathers of one
    forward pass and of one backward pass (a recomputed forward included).
    first: elements of the forward's first fetch, which nothing earlier in the pass can hide.
    grad_buckets: (elements, calls) of one backward's gradient reduce-scatters.
    grad_tail: elements of the backward's last gradient bucket, reduced after its last op.
    """

    forward: tuple[tuple[float, int], ...]
    backward: tuple[tuple[float, int], ...]
    first: float
    grad_buckets: tuple[tuple[float, int], ...]
    grad_tail: float

    @staticmethod
    def calls(messages) -> int:
        return sum(n for _, n in messages)

    @staticmethod
    def elements(messages) -> float:
        return sum(e * n for e, n in messages)


def _counted(sizes) -> tuple[tuple[float, int], ...]:
    counts: dict[float, int] = {}
    for size in sizes:
        counts[size] = counts.get(size, 0) + 1
    return tuple(sorted(counts.items()))


def stage_param_numels(
    dims: ModelDims, tensor: int, blocks: int, first: bool, last: bool
) -> tuple[tuple[float, ...], bool]:
    """(elements of each parameter tensor one tensor rank of a stage holds, in forward order;
    whether the last one is the token table again).

    The generated model (templates/_model/*.j2): per block a norm, q, k, v, o (biases where
    the spec has them), a norm, the MLP's input linear(s) and its output linear; the first
    stage adds the vocabulary-parallel token table and learned positions, the last the final
    norm and the LM head — its own weight, or the tied token table used a second time.
    """
    h = dims.d_model
    norm = (h, h) if dims.norm == "layernorm" and dims.bias else (h,)
    block: list[float] = list(norm)
    for i, (n, k) in enumerate(_linear_shapes(dims, tensor)):
        if i == 4:  # the MLP's first linear: the second norm comes before it
            block += norm
        block.append(n * k)
        if dims.bias:
            block.append(n)
    out: list[float] = []
    vocab = layers.padded_vocab(dims.vocab_size, tensor) * h / tensor
    if first:
        out.append(vocab)
        if dims.position == "learned":
            out.append(dims.max_seq_len * h)
        if dims.type_vocab_size:
            out.append(dims.type_vocab_size * h)
    out += block * blocks
    tied_reuse = False
    if last:
        out += norm
        out.append(vocab)
        tied_reuse = dims.tie_embeddings and first
    return tuple(float(x) for x in out), tied_reuse


def _prefetch_groups(fetched: list[float], bucket: int) -> list[float]:
    """One pass's all-gathers: the first parameter's own fetch, then greedy groups of at
    least `bucket` elements (the last one whatever is left)."""
    if not fetched:
        return []
    groups, group = [fetched[0]], 0.0
    for x in fetched[1:]:
        group += x
        if group >= bucket:
            groups.append(group)
            group = 0.0
    if group:
        groups.append(group)
    return groups


@lru_cache(maxsize=1024)
def zero3_messages(
    dims: ModelDims,
    tensor: int,
    blocks: int,
    first: bool,
    last: bool,
    prefetch_bucket: int = ds_rules.STAGE3_PREFETCH_ELEMENTS,
    persistence_threshold: int = ds_rules.STAGE3_PERSISTENCE_THRESHOLD,
    reuse_distance: int = ds_rules.STAGE3_MAX_REUSE_DISTANCE,
    reduce_bucket: int = ds_rules.REDUCE_BUCKET_ELEMENTS,
) -> Zero3Messages:
    """The all-gathers and reduce-scatters DeepSpeed's stage 3 issues for one stage, sized by
    the buckets the generated ds_config.json sets (`rules.deepspeed.zero_buckets`).

    Read in DeepSpeed's `runtime/zero/partitioned_param_coordinator.py` (v0.16):
    - `fetch_sub_module`: a module's parameters are gathered in one coalesced call when it is
      first needed; once the trace is complete, each fetch also prefetches the next
      parameters in trace order, adding them until at least `stage3_prefetch_bucket_size`
      elements are in the call (`while ... numel_prefetching < max_params_to_prefetch`),
      one `__all_gather_params` for them all;
    - parameters under `stage3_param_persistence_threshold` elements stay gathered
      (`runtime/zero/parameter_offload.py` `mark_persistent_parameters`);
    - `__params_to_release`: after a module runs, a parameter that reappears in the trace
      within `stage3_max_reuse_distance` elements is kept. The trace spans a forward and its
      backward (`reset_step` at the start of each forward), so the forward's last blocks stay
      gathered for the backward (a block at distance 2 × the elements after it), a tied head
      reuses the token table, and a block recomputed in the backward stays gathered for its
      own backward right after: the backward gathers each released parameter once.
    Reduce-scatters (`runtime/zero/stage3.py` `reduce_independent_p_g_buckets_and_remove_grads`,
    `independent_gradient_partition_epilogue`): gradients, in backward order, fill an IPG
    bucket of `reduce_bucket_size` elements, reduced when the next would overflow it; the
    partial last bucket is reduced in the epilogue, after the backward's last op.
    """
    numels, tied_reuse = stage_param_numels(dims, tensor, blocks, first, last)
    fetched = [x for x in numels if x >= persistence_threshold]
    if tied_reuse and sum(fetched[1:-1]) < reuse_distance:
        fetched = fetched[:-1]  # the head's token table is still gathered from the embedding
    forward = _prefetch_groups(fetched, prefetch_bucket)
    released, after = [], 0.0
    for x in reversed(fetched):  # forward → backward distance of each parameter
        if 2 * after >= reuse_distance:
            released.append(x)
        after += x
    backward = _prefetch_groups(released, prefetch_bucket)
    buckets: list[float] = []
    fill = 0.0
    for x in reversed(numels[:-1] if tied_reuse else numels):  # one gradient per parameter
        if fill and fill + x > reduce_bucket:
            buckets.append(fill)
            fill = 0.0
        fill += x
    if fill:
        buckets.append(fill)
    return Zero3Messages(
        forward=_counted(forward),
        backward=_counted(backward),
        first=forward[0] if forward else 0.0,
        grad_buckets=_counted(buckets),
        grad_tail=buckets[-1] if buckets else 0.0,
    )


def zero3_gather_calls(
    modules: int, params: float, bucket: int = ds_rules.STAGE3_PREFETCH_ELEMENTS
) -> int:
    """All-gathers per pass over `modules` parameterised modules holding `params` elements.

    DeepSpeed fetches parameters module by module (`partitioned_param_coordinator.py`
    `fetch_sub_module`); each fetch also prefetches the next modules' parameters, up to
    `stage3_prefetch_bucket_size` elements, in one coalesced all-gather. So a pass costs one
    call per module when modules are larger than the bucket, and ~params/bucket calls when
    they are smaller. Norm weights under `stage3_param_persistence_threshold` stay gathered.
    """
    if modules <= 0 or params <= 0:
        return 0
    return max(1, min(modules, _ceil(params / bucket)))


def zero3_gather_pass_s(
    rank_params: float, calls: int, data: int, nodes: int, gbps: float, param_bytes: int = 2
) -> float:
    """ZeRO-3 parameter all-gathers of one forward or backward pass."""
    if data <= 1:
        return 0.0
    return collective_s("all_gather", rank_params * param_bytes, data, nodes, gbps, calls)


def exposed_s(comm_s: float, overlap_window_s: float) -> float:
    """Communication left on the critical path when it can hide behind `overlap_window_s`."""
    return max(0.0, comm_s - overlap_window_s)


# ----------------------------------------------------------------------------- optimizer
def gpu_optimizer_s(params: float, hbm_gbps: float) -> float:
    """AdamW step over `params` parameters on one GPU (HBM-bandwidth-bound)."""
    return params * ADAM_BYTES_PER_PARAM / _gbps(hbm_gbps)


def cpu_optimizer_s(params: float, gpus_per_node: int) -> float:
    """DeepSpeedCPUAdam over `params` parameters, host memory shared by the node's GPUs.

    Traffic per parameter as on the GPU but all fp32 (32 bytes): read weight,
    grad, m, v; write weight, m, v, and the 16-bit copy sent back.
    """
    per_gpu_gbps = HOST_MEMORY_GBPS_PER_NODE / gpus_per_node
    return params * 32 / _gbps(per_gpu_gbps)


def offload_transfer_s(nbytes: float, gbps: float) -> float:
    """Host↔device copy of `nbytes` over PCIe (or from NVMe)."""
    return p2p_s(nbytes, gbps)


# ----------------------------------------------------------------------------- element-wise kernels
# Element-wise code of the costed software: "fused" = Korthikanti et al.'s kernels (Megatron,
# Transformer Engine, torch.compile's fused regions), what `elementwise_bytes_per_token` counts;
# "eager" = every PyTorch op its own kernel, as torchtitan's Llama ran without torch.compile
# (published runs only): its fp32 RMSNorm, complex RoPE, repeated GQA heads, the attention
# output's copy and SwiGLU move more, per element, fwd and bwd (16-bit activations), as
# counted op by op by `llmspec.verify.kernel_bytes.eager_part_bytes` (tests/test_cost.py
# checks these against it):
ELEMENTWISE_IMPLS = ("generated", "fused", "eager")
EAGER_BYTES = {
    "rms_norm_fp32": (36.05, 92.09),  # per d_model element, each of the block's two norms
    "rope_complex": (20.12, 20.62),  # per element of q and of k
    "repeat_heads": (2.5, 2.5),  # per element of the repeated k and v (GQA only)
    "heads_contiguous": (4.0, 6.0),  # per d_model element
    "swiglu": (10.0, 18.0),  # per d_ff element
}
# "generated" = llmspec's own model.py, eager too: its norms are single kernels (F.rms_norm,
# F.layer_norm) and GQA goes to SDPA's enable_gqa, but its rotate-half RoPE, its SwiGLU and
# the attention output's transpose-reshape copy are separate kernels, counted from the
# rendered file by `llmspec.verify.kernel_bytes.generated_part_bytes` (the copy is the same
# op as torchtitan's `.contiguous()`). Dropout's own kernels are not counted (a fused
# bias-dropout-add is). Per element, fwd and bwd:
GENERATED_BYTES = {
    "rope_rotate_half": (21.16, 20.2),  # per element of q and k (the per-sequence cos/sin in it)
    "heads_contiguous": EAGER_BYTES["heads_contiguous"],
    "swiglu": (10.0, 18.0),
}
# What the fused count charges for the same parts (bytes per element at 16 bits): a norm reads
# and writes its row (4, backward 8), SwiGLU reads two and writes one (6, backward 12); RoPE,
# the head repeat and the output copy are inside fused kernels (0).
FUSED_PART_BYTES = {"rms_norm_fp32": 4.0, "swiglu": 6.0}


def _extra(counts: dict, widths: dict) -> tuple[float, float]:
    fwd = bwd = 0.0
    for part, width in widths.items():
        fused = FUSED_PART_BYTES.get(part, 0.0)
        fwd += width * (counts[part][0] - fused)
        bwd += width * (counts[part][1] - 2 * fused)
    return fwd, bwd


def generated_extra_bytes_per_token(dims: ModelDims, *, recompute: str, tensor: int) -> float:
    """Bytes one block of the generated model's separate element-wise kernels move per token
    beyond the fused count: RoPE, SwiGLU, the attention output's copy (`GENERATED_BYTES`)."""
    kv = dims.n_kv_heads * dims.head_dim
    widths = {"heads_contiguous": dims.d_model / tensor}
    if dims.position == "rope":
        widths["rope_rotate_half"] = (dims.d_model + kv) / tensor
    if dims.activation == "swiglu":
        widths["swiglu"] = dims.d_ff / tensor
    fwd, bwd = _extra(GENERATED_BYTES, widths)
    return fwd + bwd + (fwd if recompute in ("full", "ops") else 0.0)


def eager_extra_bytes_per_token(
    dims: ModelDims, *, recompute: str, tensor: int, sequence_parallel: bool
) -> float:
    """Bytes one block's eager element-wise ops move per token beyond the fused count
    (`ELEMENTWISE_IMPLS`), forward, backward and the forward replayed by recomputation."""
    h, ff = dims.d_model, dims.d_ff
    kv = dims.n_kv_heads * dims.head_dim
    norm_width = h / tensor if sequence_parallel else h
    widths = {"heads_contiguous": h / tensor, "rope_complex": 0.0, "repeat_heads": 0.0}
    widths["rms_norm_fp32"] = 2 * norm_width if dims.norm == "rmsnorm" else 0.0
    widths["swiglu"] = ff / tensor if dims.activation == "swiglu" else 0.0
    if dims.position == "rope":
        widths["rope_complex"] = (h + kv) / tensor
    if kv < h:
        widths["repeat_heads"] = 2 * h / tensor
    fwd, bwd = _extra(EAGER_BYTES, widths)
    replay = fwd if recompute in ("full", "ops") else 0.0
    return fwd + bwd + replay


def elementwise_bytes_per_token(
    dims: ModelDims,
    *,
    attention_kernel: str,
    recompute: str,
    tensor: int,
    sequence_parallel: bool,
    act_bytes: int,
    impl: str = "fused",
) -> float:
    """HBM bytes one block's non-GEMM kernels move per token on one GPU, per training pass.

    The FLOP count covers GEMMs only; norms, activations, dropout, residual adds
    and (without FlashAttention) the softmax over s×s scores are bound by
    memory bandwidth instead. Forward traffic per token, 16-bit, following the
    tensors of Korthikanti et al. 2022 §4.1: two LayerNorms read and write h
    each (8h bytes), two fused bias-dropout-residual adds read 2 inputs, write
    the output and a 1-byte mask (14h), the fused bias-GELU reads and writes the
    d_ff activation (4·d_ff; SwiGLU reads two, 6·d_ff). Attention core:
    ``unfused`` (Megatron's scale-mask-softmax + dropout, before FlashAttention)
    writes the scores, reads and writes them in the softmax and again in the
    dropout with its mask: 11·a·s (6·a·s without attention dropout);
    ``flash`` (SDPA, what llmspec generates) streams the scores through on-chip
    memory and only reads q, k, v and writes the output. Backward moves twice
    the forward's bytes (read saved input and incoming gradient, write the
    gradient); recomputation replays the forward part it recomputes. Norms and
    residual adds are sharded by tensor parallelism only with sequence parallel.
    """
    h, ff, s, a = dims.d_model, dims.d_ff, dims.seq_len, dims.n_heads
    kv = dims.n_kv_heads * dims.head_dim
    replicated = 8 * h + 14 * h
    if sequence_parallel:
        replicated /= tensor
    mlp = (6 if dims.activation == "swiglu" else 4) * ff / tensor
    if attention_kernel == "unfused":
        core = (11 if dims.attention_dropout > 0 else 6) * a * s / tensor
    else:
        core = 2 * (2 * h + 2 * kv) / tensor
    forward = replicated + mlp + core
    passes = 3 * forward  # forward + backward (2×)
    if recompute == "full":
        passes += forward
    elif recompute == "selective":
        passes += core
    elif recompute == "ops":  # everything but the (kept) attention kernel is replayed
        passes += replicated + mlp + (core if attention_kernel == "unfused" else 0)
    total = passes * act_bytes / 2
    if impl == "generated":
        # counted at 16-bit activations; a fp32 run moves twice the bytes of every part
        total += generated_extra_bytes_per_token(dims, recompute=recompute, tensor=tensor) * (
            act_bytes / 2
        )
    elif impl == "eager":
        if act_bytes != 2:
            raise ValueError("eager element-wise bytes are counted for 16-bit activations")
        total += eager_extra_bytes_per_token(
            dims, recompute=recompute, tensor=tensor, sequence_parallel=sequence_parallel
        )
    elif impl != "fused":
        raise ValueError(f"element-wise implementation {impl!r}: one of {ELEMENTWISE_IMPLS}")
    return total


def elementwise_s(nbytes: float, hbm_gbps: float) -> float:
    return nbytes / _gbps(hbm_gbps)


# ----------------------------------------------------------------------------- whole step
@dataclass(frozen=True)
class StepTime:
    """One optimizer step, split into the parts the report explains (seconds)."""

    compute: float  # bubble-free GEMM time of the bottleneck stage, recomputation included
    elementwise: float  # memory-bound kernels (norms, activations, dropout, softmax)
    bubble: float
    tensor_parallel: float
    pipeline_p2p: float
    data_parallel: float  # exposed (not hidden behind the backward pass)
    zero3_gather: float  # exposed
    optimizer: float
    offload: float  # exposed PCIe / NVMe transfers
    stage_imbalance: float = 0.0  # slowest stage's work over the mean stage's, minus 1 (not a part)

    @property
    def total(self) -> float:
        return (
            self.compute
            + self.elementwise
            + self.bubble
            + self.tensor_parallel
            + self.pipeline_p2p
            + self.data_parallel
            + self.zero3_gather
            + self.optimizer
            + self.offload
        )

    def to_dict(self) -> dict:
        parts = {
            k: getattr(self, k)
            for k in (
                "compute",
                "elementwise",
                "bubble",
                "tensor_parallel",
                "pipeline_p2p",
                "data_parallel",
                "zero3_gather",
                "optimizer",
                "offload",
            )
        }
        return parts


def one_f_one_b_s(
    per_micro_batch_s: float, pipeline: int, micro_batches: int, virtual_stages: int = 1
) -> tuple[float, float]:
    """(ideal, bubble) time of a 1F1B schedule whose slowest stage takes `per_micro_batch_s`.

    The slowest stage paces the pipeline: m micro-batches at its rate, plus
    p−1 slots of fill and drain = bubble fraction (p−1)/m of the ideal. The interleaved
    schedule with v model chunks per GPU divides it by v (Narayanan et al. 2021 §2.2.2).
    """
    ideal = per_micro_batch_s * micro_batches
    return ideal, ideal * pipeline_bubble_fraction(pipeline, micro_batches) / virtual_stages


# Which schedule moves activations between pipeline stages. "deepspeed": the generated code's
# PipelineEngine (DeepSpeed 0.19 `runtime/pipe/schedule.py` TrainSchedule, `pipe/p2p.py`): each
# step posts its receive and its send as separate blocking `dist.recv` / `dist.send` calls
# before its compute. "megatron": Megatron-LM's 1F1B, which pairs each send with the next
# receive in one batched call (`p2p_communication.send_forward_recv_backward`).
PIPELINE_SCHEDULES = ("deepspeed", "megatron")
# Communication a published run's software overlaps with compute (`step_time`'s comm_overlap).
COMM_OVERLAPS = ("tensor_parallel", "pipeline_p2p")


def pipeline_transfers(schedule: str, pipeline: int, micro_batches: int, virtual_stages=1) -> int:
    """Stage-to-stage transfers on the critical path of one step (each a blocking send/recv
    pair of one micro-batch's boundary activation or gradient).

    Megatron: one forward and one backward transfer per 1F1B slot, v per slot when interleaved
    (Narayanan et al. 2021 §2.2.2), over v·m + p − 1 slots. DeepSpeed's lock-step schedule
    (2(m + p − 1) steps, even and odd stages alternating forward and backward) serialises a
    receive and a send in every step of the middle stages: 4m + 2(p − 4) transfers for p ≥ 3
    and m ≥ 2, 2m for two stages, 2(p − 1) for one micro-batch. Counted by replaying
    TrainSchedule's instruction lists with rendezvous p2p (tests/test_pipeline_schedule.py).
    """
    p, m = pipeline, micro_batches
    if p <= 1:
        return 0
    if schedule == "megatron":
        return 2 * (virtual_stages * m + p - 1)
    if m == 1:
        return 2 * (p - 1)
    if p == 2:
        return 2 * m
    return 4 * m + 2 * (p - 4)


@dataclass(frozen=True)
class StageWork:
    """What one pipeline stage does, per rank: the cost model's view of a stage."""

    blocks: int
    hardware_flops_per_token: float  # whole stage, all tensor ranks, recomputation included
    model_flops_per_token: float  # the same without recomputation
    params_per_rank: float  # after tensor-parallel sharding, before ZeRO sharding
    elementwise_bytes_per_token: float = 0.0  # whole stage, per GPU (`elementwise_bytes_per_token`)
    modules: int = 0  # parameterised modules (linears, embeddings) ZeRO-3 fetches one by one
    compute_s_per_token: float = 0.0  # GEMMs + attention core, per GPU (0: from FLOPs × efficiency)
    zero3: Zero3Messages | None = None  # ZeRO-3's collectives by size (None: from `modules`)


@dataclass(frozen=True)
class Links:
    """Effective per-GPU bandwidths (GB/s) of each group, link efficiency applied."""

    tensor_gbps: float
    data_gbps: float
    pipeline_gbps: float
    hbm_gbps: float
    host_gbps: float  # PCIe or NVMe, for offload
    gpus_per_node: int
    data_intra_node: bool = True  # the data-parallel group lies inside one node
    pipeline_intra_node: bool = True  # neighbouring stages share a node
    data_nodes: int = 1  # nodes one data-parallel group spans (NCCL's inter-node ring steps)


def step_time(
    stages: tuple[StageWork, ...],
    *,
    micro_batch: int,
    micro_batches: int,
    seq_len: int,
    d_model: int,
    tensor: int,
    data: int,
    zero_stage: int,
    recompute: str,
    sequence_parallel: bool,
    offload_optimizer: str,
    offload_params: str,
    act_bytes: int,
    grad_bytes: int,
    peak_tflops: float,
    links: Links,
    efficiency: float | None = None,
    virtual_stages: int = 1,
    pipeline_schedule: str = "deepspeed",
    comm_overlap: tuple[str, ...] = (),
) -> StepTime:
    """Predicted time of one optimizer step (m micro-batches through p stages).

    Overlap assumptions, explicitly (DeepSpeed 0.19's schedule, `rules/deepspeed.py`):
    - tensor-parallel collectives and pipeline sends are not overlapped with
      compute (Megatron's blocking f/g operators, DeepSpeed's blocking p2p); how many
      sends lie on the critical path depends on the schedule (`pipeline_transfers`);
    - gradients are reduced every micro-batch at ZeRO 2/3, once at the step boundary at
      ZeRO 0/1 (`gradient_sync_s`); the reduction hides behind the backward only where the
      generated ds_config.json turns `overlap_comm` on (stage 3) on a non-pipelined model;
      ZeRO 0-2 and the pipeline engine reduce on the compute stream, exposed;
    - ZeRO-3 gathers module by module on a side stream, prefetched (`zero3_messages`: the
      calls and sizes DeepSpeed issues with the generated buckets): each pass's gathers
      hide behind that pass's compute, the backward's sharing the links with the
      reduce-scatter; what does not fit behind it is exposed, per micro-batch, and so are
      the forward's first fetch and the backward's last gradient bucket, always;
    - every collective pays NCCL's latency per call (`collective_s`);
    - offload: gradient copies to the host hide behind the backward, the CPU
      Adam step and the parameter copy back are exposed.

    `comm_overlap` (published runs only; the generated code overlaps neither) names what the
    costed software hides behind compute (`COMM_OVERLAPS`): "tensor_parallel" (Transformer
    Engine's userbuffers, Megatron-Core `tp_comm_overlap`: the collectives are split and
    pipelined with the GEMMs, so only what is longer than the stage's compute is exposed);
    "pipeline_p2p" (Megatron-Core `overlap_p2p_comm`, interleaved schedule: sends are
    asynchronous and overlap the next chunk; the pipeline's fill and drain, 2(p−1)
    transfers, stay exposed).
    """
    unknown = set(comm_overlap) - set(COMM_OVERLAPS)
    if unknown:
        raise ValueError(f"unknown comm_overlap {sorted(unknown)}; known: {COMM_OVERLAPS}")
    # An explicit `efficiency` prices FLOPs at one flat fraction of the peak (worked examples
    # in the tests); otherwise each stage's shape-aware `compute_s_per_token` is used.
    explicit_efficiency = efficiency is not None
    if efficiency is None:
        efficiency = COMPUTE_EFFICIENCY
    pipeline = len(stages)
    tokens_mb = micro_batch * seq_len
    tp_gbps = links.tensor_gbps
    tp_calls = 4 + (2 if recompute == "full" else 0)  # collectives per block (see above)
    tp_latency_per_block = tp_calls * ring_latency_s(2 * (tensor - 1), True) if tensor > 1 else 0.0

    def per_micro_batch(i: int, work: StageWork) -> tuple[float, float, float]:
        if work.compute_s_per_token > 0 and not explicit_efficiency:
            comp = work.compute_s_per_token * tokens_mb
        else:
            comp = compute_s(
                work.hardware_flops_per_token * tokens_mb / tensor, peak_tflops, efficiency
            )
        elem = elementwise_s(work.elementwise_bytes_per_token * tokens_mb, links.hbm_gbps)
        tp = (
            tensor_parallel_s_per_block(
                micro_batch, seq_len, d_model, act_bytes, tensor, tp_gbps, recompute == "full"
            )
            + tp_latency_per_block
        ) * work.blocks
        if i == 0 and tensor > 1:  # vocab-parallel embedding: one all-reduce forward
            tp += ring_allreduce_s(tokens_mb * d_model * act_bytes, tensor, tp_gbps)
            tp += ring_latency_s(2 * (tensor - 1), True)
        if "tensor_parallel" in comm_overlap:
            tp = exposed_s(tp, comp)
        return comp, elem, tp

    # Stages with the same work cost the same: evaluate each distinct stage once.
    distinct: dict[tuple, tuple[float, float, float]] = {}
    costs = []
    for i, w in enumerate(stages):
        key = (i == 0, w)
        if key not in distinct:
            distinct[key] = per_micro_batch(i, w)
        costs.append(distinct[key])
    slowest = max(range(pipeline), key=lambda i: (sum(costs[i]), -i))
    comp_mb, elem_mb, tp_mb = costs[slowest]
    boundary = tokens_mb * d_model * act_bytes / (tensor if sequence_parallel else 1)
    one = 0.0  # one transfer: the boundary's bytes plus the latency of a one-step transfer
    if pipeline > 1:
        one = p2p_s(boundary, links.pipeline_gbps) + ring_latency_s(1, links.pipeline_intra_node)
    # Every transfer on the critical path (`pipeline_transfers`: schedule by schedule; with
    # interleaving each chunk boundary is a stage boundary, Narayanan et al. 2021 §2.2.2).
    transfers = pipeline_transfers(pipeline_schedule, pipeline, micro_batches, virtual_stages)
    p2p_total = one * transfers
    if "pipeline_p2p" in comm_overlap and pipeline > 1:
        fill_drain = one * min(transfers, 2 * (pipeline - 1))
        p2p_total = fill_drain + exposed_s(p2p_total - fill_drain, comp_mb * micro_batches)

    mean_slot = sum(sum(c) for c in costs) / pipeline
    imbalance = sum(costs[slowest]) / mean_slot - 1 if mean_slot > 0 else 0.0
    slot = comp_mb + elem_mb + tp_mb
    _, bubble = one_f_one_b_s(slot, pipeline, micro_batches, virtual_stages)

    work = stages[slowest]
    rank_params = work.params_per_rank
    # Forward and backward halves of the micro-batch: the backward is 2/3 of the model FLOPs,
    # plus any recomputed forward (replayed inside the backward).
    fwd_share = work.model_flops_per_token / 3 / work.hardware_flops_per_token
    comp_fwd = comp_mb * fwd_share if work.hardware_flops_per_token > 0 else 0.0
    comp_bwd = comp_mb - comp_fwd
    backward_window = comp_bwd
    dp_nodes = links.data_nodes
    per_mb_sync, per_step_sync = gradient_sync_s(
        zero_stage, rank_params, grad_bytes, data, dp_nodes, links.data_gbps
    )
    overlaps = ds_rules.overlaps_comm(zero_stage) and pipeline == 1

    gather = 0.0
    if zero_stage == 3 and data > 1:
        # Gathered on DeepSpeed's all-gather stream, prefetched ahead of use: hidden behind
        # the pass's compute where it is shorter. The backward gathers again (and again for
        # the recomputed forward under full recompute) while the reduce-scatter of the
        # gradients shares the same links (overlap_comm).
        # With the stage's messages (`zero3_messages`) each collective is priced at its own
        # size; two of them cannot hide: a pass's first fetch (nothing of the pass runs
        # before it) and the backward's last gradient bucket (reduced after its last op).
        # The backward's first fetch is free: the forward's last modules are reused within
        # `stage3_max_reuse_distance` and stay gathered.
        z = work.zero3
        gbps = links.data_gbps
        if z is not None:
            pb = ZERO3_GATHER_BYTES
            fwd_pass = collectives_s(
                "all_gather", ((e * pb, n) for e, n in z.forward), data, dp_nodes, gbps
            )
            bwd_pass = collectives_s(
                "all_gather", ((e * pb, n) for e, n in z.backward), data, dp_nodes, gbps
            )
            head = collective_s("all_gather", z.first * pb, data, dp_nodes, gbps)
            per_mb_sync = collectives_s(
                "reduce_scatter",
                ((e * grad_bytes, n) for e, n in z.grad_buckets),
                data,
                dp_nodes,
                gbps,
            )
            tail = collective_s("reduce_scatter", z.grad_tail * grad_bytes, data, dp_nodes, gbps)
        else:
            calls = zero3_gather_calls(work.modules, rank_params)
            fwd_pass = zero3_gather_pass_s(rank_params, calls, data, dp_nodes, gbps)
            bwd_pass = fwd_pass * (1 + (1 if recompute == "full" else 0))
            head = tail = 0.0
        fwd_exposed = head + exposed_s(fwd_pass - head, comp_fwd)
        bwd_gather_exposed = exposed_s(bwd_pass, comp_bwd)
        if overlaps:
            bwd_exposed = tail + exposed_s(bwd_pass + per_mb_sync - tail, comp_bwd)
        else:
            bwd_exposed = bwd_gather_exposed + per_mb_sync
        gather = (fwd_exposed + bwd_gather_exposed) * micro_batches
        dp_exposed = (bwd_exposed - bwd_gather_exposed) * micro_batches
    else:
        window = backward_window if overlaps else 0.0
        dp_exposed = exposed_s(per_mb_sync, window) * micro_batches
        # At the boundary the reduction can hide only behind the last micro-batch's backward.
        dp_exposed += exposed_s(per_step_sync, window)

    shard = rank_params / (data if zero_stage >= 1 else 1)
    offload = 0.0
    if offload_optimizer != "none":
        optimizer = cpu_optimizer_s(shard, links.gpus_per_node)
        grads_down = offload_transfer_s(shard * 4, links.host_gbps)
        params_up = offload_transfer_s(shard * 2, links.host_gbps)
        offload += exposed_s(grads_down, backward_window) + params_up
    else:
        optimizer = gpu_optimizer_s(shard, links.hbm_gbps)
    if offload_params != "none":
        passes = 2 + (1 if recompute == "full" else 0)
        per_mb = offload_transfer_s(passes * shard * 2, links.host_gbps)
        offload += exposed_s(per_mb, comp_mb) * micro_batches

    return StepTime(
        compute=comp_mb * micro_batches,
        elementwise=elem_mb * micro_batches,
        bubble=bubble,
        tensor_parallel=tp_mb * micro_batches,
        pipeline_p2p=p2p_total,
        data_parallel=dp_exposed,
        zero3_gather=gather,
        optimizer=optimizer,
        offload=offload,
        stage_imbalance=imbalance,
    )
