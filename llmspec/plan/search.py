"""Layout search: enumerate data × tensor × pipeline × ZeRO × micro-batch × recompute ×
sequence parallel (× offload when nothing else fits and offload is not pinned — a spec's
offload value, its default "none" included, always is), prune, evaluate, rank.

Pruning keeps a full search of a 1T model on 3072 GPUs under two seconds:
- structural rules first (tensor inside a node and dividing heads, kv heads
  and d_ff; pipeline ≤ layers; data dividing the global batch; ZeRO 2/3 not
  with DeepSpeed's pipeline engine, which supports ZeRO 0–1 only);
- a memory lower bound per (d, t, p, ZeRO, SP) group: the smallest
  micro-batch with full recomputation; if that does not fit, nothing in the
  group does;
- memory grows with the micro-batch, so each ascending micro-batch sweep
  stops at the first size that does not fit;
- branch and bound on time: a recompute mode whose bubble-free compute alone
  is slower than the best layout of the same (d, t, p, ZeRO, offload) shape
  is skipped, and a micro-batch sweep stops once compute × (1 + (p−1)/m)
  exceeds it (the best of every shape stays exact, so the alternatives do too).
Both memory properties are tested against the memory model
(tests/test_search.py), and the result against an exhaustive search.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

from llmspec.errors import UserError
from llmspec.graph import layers
from llmspec.graph.dims import ModelDims
from llmspec.plan import cost, devices, partition, uncertainty
from llmspec.plan.cost import block_flops, head_flops
from llmspec.plan.memory import estimate_memory
from llmspec.plan.types import Layout, MemoryEstimate
from llmspec.rules import layout as rules

RECOMPUTE_ORDER = ("none", "selective", "ops", "full")  # keeps less and less

# Non-tensor-core FP32 peak relative to the dense 16-bit peak: 19.5 / 312 on the
# A100 datasheet, 67 / 989.5 on the H100 SXM datasheet. Used for fp32 training,
# which does not run on the 16-bit tensor-core peak the catalog lists.
FP32_PEAK_FRACTION = 1 / 16


# Predicted-time band inside which the simplest layout wins (see `search`).
SIMPLER_WITHIN = 0.01


@dataclass(frozen=True)
class SearchProblem:
    """Everything the search varies over or holds fixed (no pydantic inside)."""

    dims: ModelDims
    cluster: devices.Cluster
    precision: str
    global_batch: int
    pins: tuple[tuple[str, object], ...] = ()  # sorted (layout field, value)
    allow_offload: bool = True  # try offload fields left unpinned when nothing fits without it
    # Attention kernel of the code being costed: "flash" = the SDPA that llmspec generates;
    # "unfused" = Megatron-LM's softmax kernels of 2021-22 (for the published-run benchmark).
    attention_kernel: str = "flash"
    # Interleaved 1F1B chunks per GPU of the schedule being costed. The generated code runs
    # DeepSpeed's pipeline engine (plain 1F1B, 1); Megatron's interleaved schedule is here so
    # the published-run benchmark can cost the runs that used it. Not a layout choice.
    virtual_stages: int = 1
    # Schedule whose stage-to-stage transfers are costed (`cost.pipeline_transfers`): the
    # generated code's DeepSpeed PipelineEngine, or Megatron's for the published runs made on it.
    pipeline_schedule: str = "deepspeed"
    # What the costed software overlaps with compute (`cost.COMM_OVERLAPS`): nothing for the
    # generated code; the published-run benchmark names what each run's framework overlapped.
    comm_overlap: tuple[str, ...] = ()
    # How the costed software casts to FP8 (`cost.FP8_CASTS`): the generated code's way for
    # llmspec's projects; the published-run benchmark names Transformer Engine's where it ran.
    fp8_casts: tuple[str, ...] = ()
    # Element-wise kernels of the costed software (`cost.ELEMENTWISE_IMPLS`): the generated
    # model's own for llmspec's plans; the published-run benchmark names fused (Megatron, TE,
    # torch.compile) or eager (torchtitan without compile) per run.
    elementwise: str = "generated"

    @property
    def kernels(self) -> str:
        """Which kernels' saved tensors the memory model counts: the `cpu` device runs CPU ones."""
        return "cpu" if self.cluster.gpu.name == "cpu" else "cuda"

    def pinned(self, key: str):
        return dict(self.pins).get(key)


@dataclass(frozen=True)
class Candidate:
    layout: Layout
    stage_layers: tuple[int, ...]
    memory: MemoryEstimate
    time: cost.StepTime
    capacity_bytes: int
    host_capacity_bytes: int  # per rank
    uncertainty: uncertainty.Uncertainty | None = None  # of the step-time prediction

    @property
    def step_time_s(self) -> float:
        return self.time.total

    @property
    def worst_stage(self) -> int:
        return max(range(len(self.memory.stages)), key=lambda i: (self.memory.stages[i].total, -i))

    @property
    def oom_bytes(self) -> int:
        """Bytes over capacity on the worst stage (≤ 0 when it fits)."""
        return self.memory.total + self.memory.overhead_bytes - self.capacity_bytes

    @property
    def host_oom_bytes(self) -> int:
        return self.memory.host_bytes - self.host_capacity_bytes

    @property
    def fits(self) -> bool:
        return self.oom_bytes <= 0 and self.host_oom_bytes <= 0

    def simplicity_key(self) -> tuple:
        """Fewer moving parts first: no offload, less model parallelism, lower ZeRO stage."""
        lay = self.layout
        return (
            lay.offload_params != "none",
            lay.offload_optimizer != "none",
            lay.tensor,
            lay.pipeline,
            lay.zero_stage,
            RECOMPUTE_ORDER.index(lay.activation_checkpointing),
            lay.sequence_parallel,
            round(self.step_time_s, 9),
        )

    def rank_key(self) -> tuple:
        lay = self.layout
        return (
            round(self.step_time_s, 9),
            lay.tensor,
            lay.pipeline,
            lay.zero_stage,
            RECOMPUTE_ORDER.index(lay.activation_checkpointing),
            -lay.micro_batch_size,
            lay.sequence_parallel,
            lay.offload_optimizer,
            lay.offload_params,
        )


@dataclass(frozen=True)
class SearchResult:
    ranked: tuple[Candidate, ...]  # fitting candidates, fastest first
    rejected: tuple[Candidate, ...]  # OOM candidates that would have been faster, fastest first
    closest: Candidate | None  # when nothing fits: the one that misses by the least
    evaluated: int
    pruned_groups: int
    used_offload: bool

    @property
    def best(self) -> Candidate | None:
        return self.ranked[0] if self.ranked else self.closest


# ----------------------------------------------------------------------------- peaks
def peak_tflops(gpu, precision: str) -> float:
    if precision == "fp8" and gpu.has_fp8:
        return gpu.fp8_tflops
    if precision == "fp32" and gpu.name != "cpu":  # the cpu entry's peak is nominal already
        return gpu.peak_tflops * FP32_PEAK_FRACTION
    return gpu.peak_tflops


def bytes_per_activation(precision: str) -> int:
    return 4 if precision == "fp32" else 2


# ----------------------------------------------------------------------------- candidates
def tensor_options(dims: ModelDims, cluster: devices.Cluster) -> list[int]:
    return rules.valid_tensor_degrees(
        dims.n_heads, dims.n_kv_heads, dims.d_ff, cluster.gpus_per_node
    )


def _choices(problem: SearchProblem, key: str, default: list) -> list:
    pinned = problem.pinned(key)
    return [pinned] if pinned is not None else default


def enumerate_groups(problem: SearchProblem):
    """Yield (data, tensor, pipeline) triples that pass the structural rules."""
    dims, cluster = problem.dims, problem.cluster
    world = cluster.world_size
    valid = tensor_options(dims, cluster)
    pinned = problem.pinned("tensor")
    if pinned is not None and pinned not in valid:
        reasons = [
            rules.tensor_divides_model(pinned, dims.n_heads, dims.n_kv_heads, dims.d_ff),
            rules.tensor_fits_node(pinned, cluster.gpus_per_node),
        ]
        why = "; ".join(r for r in reasons if r)
        raise UserError(f"{why} — valid values: {', '.join(map(str, valid))}")
    triples = rules.degree_triples(
        world,
        cluster.gpus_per_node,
        dims.n_heads,
        dims.n_kv_heads,
        dims.d_ff,
        dims.n_layers,
        tensor=pinned,
        pipeline=problem.pinned("pipeline"),
    )
    for d, t, p in triples:
        if problem.pinned("data") not in (None, d):
            continue
        if problem.global_batch % d:
            continue
        if problem.precision == "fp8" and fp8_shapes_fail(dims, t):
            continue
        yield d, t, p


def fp8_shapes_fail(dims: ModelDims, tensor: int) -> str | None:
    """Why the FP8 GEMMs of the block linears cannot run at this tensor degree (rules.layout)."""
    hd = dims.head_dim
    return rules.fp8_gemm_shapes(
        tensor, dims.d_model, dims.n_heads * hd, dims.n_kv_heads * hd, dims.d_ff, dims.seq_len
    )


def zero_options(problem: SearchProblem, data: int, pipeline: int, offload: bool) -> list[int]:
    pinned = problem.pinned("zero_stage")
    allowed = list(rules.zero_stages_for(pipeline))
    if pinned is not None:
        return [pinned] if pinned in allowed else []
    if offload:
        return [z for z in allowed if z >= 1]
    return allowed if data > 1 else [0]


def micro_batch_options(problem: SearchProblem, data: int) -> list[int]:
    per_replica = problem.global_batch // data
    pinned_mbs = problem.pinned("micro_batch_size")
    pinned_ga = problem.pinned("grad_accum_steps")
    options = rules.divisors(per_replica)
    if pinned_mbs is not None:
        options = [b for b in options if b == pinned_mbs]
    if pinned_ga is not None:
        options = [b for b in options if per_replica // b == pinned_ga]
    return options


# ----------------------------------------------------------------------------- evaluation
@dataclass(frozen=True)
class _Group:
    data: int
    tensor: int
    pipeline: int


def stage_params(dims: ModelDims, stage_layers: tuple[int, ...], tensor: int) -> list[float]:
    """Parameters each rank of every stage holds (tensor-sharded; ZeRO not applied).

    The first stage holds the embedding, the last the head and — when tied and
    pipelined — its own copy of the embedding (DeepSpeed's TiedLayerSpec).
    """
    per_block = layers.block_params(dims)
    embed = layers.embedding_params(dims, tensor)
    head = layers.head_params(dims, tensor)
    tied_copy = embed if dims.tie_embeddings and len(stage_layers) > 1 else 0
    out = []
    last = len(stage_layers) - 1
    for i, n in enumerate(stage_layers):
        params = n * per_block + (embed if i == 0 else 0) + (head + tied_copy if i == last else 0)
        out.append(params / tensor)
    return out


@lru_cache(maxsize=1024)
def default_partition(dims: ModelDims, pipeline: int) -> tuple[int, ...]:
    """Compute-balanced blocks per stage (the head's FLOPs weigh on the last stage)."""
    extra = [0.0] * pipeline
    extra[-1] += head_flops(dims)
    part = partition.balance_blocks(
        dims.n_layers, pipeline, block_flops(dims, "none")[0], tuple(extra)
    )
    assert part is not None  # pipeline ≤ n_layers is checked by the caller
    return part


def linears_per_block(dims: ModelDims) -> int:
    """Linear modules of one generated block: q, k, v, o and the MLP's two (three with a
    gated activation) — templates/_model/attention.py.j2, mlp.py.j2."""
    return 4 + (3 if dims.activation == "swiglu" else 2)


def links_for(layout: Layout, cluster: devices.Cluster) -> cost.Links:
    """Effective bandwidths: nominal × Calculon's efficiency for the link kind."""

    def eff(gbps: float, intra: bool) -> float:
        return gbps if gbps == float("inf") else gbps * cost.link_efficiency(intra)

    t, d = layout.tensor, layout.data
    offloaded = (layout.offload_optimizer, layout.offload_params)
    host = cost.NVME_GBPS if "nvme" in offloaded else devices.PCIE_GBPS
    pp_intra = t * d < cluster.gpus_per_node
    return cost.Links(
        tensor_gbps=eff(devices.tensor_gbps(layout, cluster), True),
        data_gbps=eff(devices.data_gbps(layout, cluster), devices.group_in_node(d, t, cluster)),
        pipeline_gbps=eff(devices.pipeline_gbps(layout, cluster), pp_intra),
        hbm_gbps=cluster.gpu.hbm_gbps,
        host_gbps=host,
        gpus_per_node=cluster.gpus_per_node,
        data_intra_node=devices.group_in_node(d, t, cluster),
        pipeline_intra_node=pp_intra,
        data_nodes=max(1, -(-(d * t) // cluster.gpus_per_node)) if d > 1 else 1,
    )


def evaluate(
    problem: SearchProblem, layout: Layout, stage_layers: tuple[int, ...] | None = None
) -> Candidate:
    """Memory and step time of one layout (the stage partition chosen if not given)."""
    dims = problem.dims
    if stage_layers is None:
        stage_layers = default_partition(dims, layout.pipeline)
    memory = estimate_memory(
        dims, layout, problem.precision, stage_layers=stage_layers, kernels=problem.kernels
    )
    candidate = _candidate(problem, layout, stage_layers, memory)
    if not candidate.fits and layout.pipeline > 1:
        better = _memory_aware(problem, candidate)
        if better is not None:
            candidate = better
    return candidate


def _candidate(problem: SearchProblem, layout: Layout, stage_layers, memory) -> Candidate:
    dims, cluster = problem.dims, problem.cluster
    model_block, hw_block = block_flops(dims, layout.activation_checkpointing)
    head = head_flops(dims)
    params = stage_params(dims, stage_layers, layout.tensor)
    act = bytes_per_activation(problem.precision)
    elem_block = cost.elementwise_bytes_per_token(
        dims,
        attention_kernel=problem.attention_kernel,
        recompute=layout.activation_checkpointing,
        tensor=layout.tensor,
        sequence_parallel=layout.sequence_parallel,
        act_bytes=act,
        impl=problem.elementwise,
    )
    last = len(stage_layers) - 1
    linears = linears_per_block(dims)
    gpu = cluster.gpu
    sixteen = peak_tflops(gpu, "bf16" if problem.precision == "fp8" else problem.precision)
    block_s = cost.block_compute_s_per_token(
        dims,
        recompute=layout.activation_checkpointing,
        tensor=layout.tensor,
        micro_batch=layout.micro_batch_size,
        gpu=gpu,
        peak_tflops=sixteen,
        fp8=problem.precision == "fp8",
        attention_kernel=problem.attention_kernel,
        fp8_casts=problem.fp8_casts,
        micro_batches=(
            max(1, problem.global_batch // (layout.data * layout.micro_batch_size))
            if "weights_once_per_step" in problem.fp8_casts
            else 1
        ),
    )
    head_s = cost.head_compute_s_per_token(
        dims,
        tensor=layout.tensor,
        micro_batch=layout.micro_batch_size,
        gpu=gpu,
        peak_tflops=sixteen,
    )
    stages = tuple(
        cost.StageWork(
            blocks=n,
            hardware_flops_per_token=n * hw_block + (head if i == last else 0.0),
            model_flops_per_token=n * model_block + (head if i == last else 0.0),
            params_per_rank=params[i],
            elementwise_bytes_per_token=n * elem_block,
            modules=n * linears + (i == 0) + (i == last),
            compute_s_per_token=n * block_s + (head_s if i == last else 0.0),
            zero3=cost.zero3_messages(dims, layout.tensor, n, i == 0, i == last)
            if layout.zero_stage == 3
            else None,
        )
        for i, n in enumerate(stage_layers)
    )
    time = cost.step_time(
        stages,
        micro_batch=layout.micro_batch_size,
        micro_batches=layout.grad_accum_steps,
        seq_len=dims.seq_len,
        d_model=dims.d_model,
        tensor=layout.tensor,
        data=layout.data,
        zero_stage=layout.zero_stage,
        recompute=layout.activation_checkpointing,
        sequence_parallel=layout.sequence_parallel,
        offload_optimizer=layout.offload_optimizer,
        offload_params=layout.offload_params,
        act_bytes=act,
        grad_bytes=act,
        peak_tflops=peak_tflops(cluster.gpu, problem.precision),
        links=links_for(layout, cluster),
        virtual_stages=problem.virtual_stages if layout.pipeline > 1 else 1,
        pipeline_schedule=problem.pipeline_schedule,
        comm_overlap=problem.comm_overlap,
    )
    host_per_rank = cluster.host_memory_bytes // cluster.gpus_per_node
    assessed = uncertainty.assess(layout, cluster.gpu, cluster.gpus_per_node)
    return Candidate(
        layout, tuple(stage_layers), memory, time, cluster.gpu.memory_bytes, host_per_rank, assessed
    )


def _memory_aware(problem: SearchProblem, first: Candidate) -> Candidate | None:
    """Move blocks off the stages that overflow onto those with room, if that makes it fit."""
    counts_a = first.stage_layers
    bytes_a = tuple(s.total for s in first.memory.stages)
    room = first.capacity_bytes - first.memory.overhead_bytes
    if min(bytes_a) > room or first.host_oom_bytes > 0:
        return None  # no stage has room to take blocks
    dims = problem.dims
    counts_b = partition.probe_partition(counts_a)
    if counts_b is None:
        return None
    probe = estimate_memory(
        dims, first.layout, problem.precision, stage_layers=counts_b, kernels=problem.kernels
    )
    bytes_b = tuple(s.total for s in probe.stages)
    fixed, per_block = partition.linear_fit(counts_a, bytes_a, counts_b, bytes_b)
    caps = partition.memory_caps(fixed, per_block, room)
    extra = [0.0] * len(counts_a)
    extra[-1] = head_flops(dims)
    hw_block = block_flops(dims, first.layout.activation_checkpointing)[1]
    counts = partition.balance_blocks(dims.n_layers, len(counts_a), hw_block, tuple(extra), caps)
    if counts is None or counts == counts_a:
        return None
    memory = estimate_memory(
        dims, first.layout, problem.precision, stage_layers=counts, kernels=problem.kernels
    )
    candidate = _candidate(problem, first.layout, counts, memory)
    return candidate if candidate.fits else None


# ----------------------------------------------------------------------------- search
def _layout(
    problem: SearchProblem, g: _Group, zero: int, sp: bool, rc: str, mbs: int, offload
) -> Layout:
    return Layout(
        data=g.data,
        tensor=g.tensor,
        pipeline=g.pipeline,
        zero_stage=zero,
        micro_batch_size=mbs,
        grad_accum_steps=problem.global_batch // (g.data * mbs),
        activation_checkpointing=rc,
        sequence_parallel=sp,
        offload_optimizer=offload[0],
        offload_params=offload[1],
    )


def _offload_options(problem: SearchProblem, use_offload: bool) -> list[tuple[str, str]]:
    opt, par = problem.pinned("offload_optimizer"), problem.pinned("offload_params")
    if not use_offload:
        return [(opt or "none", par or "none")]
    opts = [opt] if opt else ["cpu", "nvme"]
    pars = [par] if par else ["none", "cpu", "nvme"]
    return [(o, p) for o in opts for p in pars if o != "none" or p != "none"]


def search(problem: SearchProblem, keep_rejected: int = 3) -> SearchResult:
    """Every candidate layout, pruned as the module docstring says; fastest fitting first."""
    result = _search_pass(problem, use_offload=False, keep_rejected=keep_rejected)
    # Offload is tried only where a field is left free (`--layout offload_optimizer=auto`):
    # a spec's offload value, its default "none" included, is a pin (`pins.spec_pins`).
    both_pinned = problem.pinned("offload_optimizer") and problem.pinned("offload_params")
    if result.ranked or both_pinned or not problem.allow_offload:
        return result
    offloaded = _search_pass(problem, use_offload=True, keep_rejected=keep_rejected)
    if offloaded.ranked:
        return replace(
            offloaded,
            rejected=result.rejected,
            evaluated=result.evaluated + offloaded.evaluated,
            pruned_groups=result.pruned_groups + offloaded.pruned_groups,
            used_offload=True,
        )
    return replace(
        result,
        evaluated=result.evaluated + offloaded.evaluated,
        pruned_groups=result.pruned_groups + offloaded.pruned_groups,
    )


def _search_pass(problem: SearchProblem, *, use_offload: bool, keep_rejected: int) -> SearchResult:
    fitting: list[Candidate] = []
    rejected: list[Candidate] = []
    closest: Candidate | None = None
    evaluated = pruned = 0
    rc_options = _choices(problem, "activation_checkpointing", list(RECOMPUTE_ORDER))
    frozen = problem.dims.finetune is not None and problem.dims.finetune.frozen_base
    groups = list(enumerate_groups(problem))
    if not groups:
        raise UserError(_no_layout_message(problem))

    best_by_shape: dict[tuple, float] = {}
    inf = float("inf")

    def note(c: Candidate) -> None:
        nonlocal closest
        if c.fits:
            fitting.append(c)
        else:
            rejected.append(c)
            if closest is None or (c.oom_bytes, c.rank_key()) < (
                closest.oom_bytes,
                closest.rank_key(),
            ):
                closest = c

    for d, t, p in groups:
        g = _Group(d, t, p)
        mbs_options = micro_batch_options(problem, d)
        if not mbs_options:
            continue
        seq_len = problem.dims.seq_len
        sp_options = [
            sp
            for sp in _choices(problem, "sequence_parallel", [False, True])
            if not rules.sequence_parallel_needs_tensor(sp, t)
            and not rules.sequence_parallel_divides_seq_len(sp, t, seq_len)
        ]
        group_rc = [
            rc
            for rc in rc_options
            if not rules.ops_recompute_needs_one_tensor_rank(rc, t)
            and not rules.ops_recompute_needs_trained_base(rc, frozen)
        ]
        if not group_rc:
            continue
        for offload in _offload_options(problem, use_offload):
            pinned_zero = problem.pinned("zero_stage")
            if pinned_zero is not None and rules.offload_params_needs_zero3(
                offload[1], pinned_zero
            ):
                continue
            for zero in zero_options(problem, d, p, offload != ("none", "none")):
                if rules.offload_params_needs_zero3(offload[1], zero):
                    continue
                for sp in sp_options:
                    # Lower bound for the whole group: smallest micro-batch, most recompute.
                    floor_rc = group_rc[-1]
                    bound = evaluate(
                        problem, _layout(problem, g, zero, sp, floor_rc, mbs_options[0], offload)
                    )
                    evaluated += 1
                    if not bound.fits:
                        pruned += 1
                        note(bound)
                        continue
                    shape = (d, t, p, zero, offload)
                    for rc in group_rc:
                        # Branch and bound: no micro-batch of this recompute mode can beat the
                        # best layout of the same shape if even its compute alone is slower.
                        bound_s = time_lower_bound(problem, g, rc, sp)
                        if bound_s > best_by_shape.get(shape, inf):
                            continue
                        for mbs in mbs_options:
                            # With the bubble: ≥ bound × (1 + (p−1)/(v·m)), and m falls as mbs
                            # grows.
                            m = problem.global_batch // (d * mbs)
                            bubble = (p - 1) / (m * problem.virtual_stages)
                            if bound_s * (1 + bubble) > best_by_shape.get(shape, inf):
                                break
                            if rc == floor_rc and mbs == mbs_options[0]:
                                c = bound
                            else:
                                c = evaluate(
                                    problem, _layout(problem, g, zero, sp, rc, mbs, offload)
                                )
                                evaluated += 1
                            note(c)
                            if not c.fits:
                                break  # memory only grows with the micro-batch
                            best_by_shape[shape] = min(best_by_shape.get(shape, inf), c.step_time_s)
    fitting.sort(key=Candidate.rank_key)
    if fitting:
        chosen = choose(problem, fitting)
        fitting.remove(chosen)
        fitting.insert(0, chosen)
    best_time = fitting[0].step_time_s if fitting else float("inf")
    # OOM layouts worth showing: at least 1 % faster than the best that fits.
    faster = (c for c in rejected if c.step_time_s < 0.99 * best_time)
    faster_oom = sorted(faster, key=Candidate.rank_key)[:keep_rejected]
    return SearchResult(
        ranked=tuple(fitting),
        rejected=tuple(faster_oom),
        closest=None if fitting else closest,
        evaluated=evaluated,
        pruned_groups=pruned,
        used_offload=use_offload,
    )


def risk_adjusted_s(problem: SearchProblem, c: Candidate) -> float:
    """Step time with the prediction's uncertainty as a cost (`plan.uncertainty`): a layout
    in a regime the validation set does not vouch for counts as `band` slower."""
    assessed = c.uncertainty
    if assessed is None:
        assessed = uncertainty.assess(c.layout, problem.cluster.gpu, problem.cluster.gpus_per_node)
    return uncertainty.risk_adjusted_s(c.step_time_s, assessed)


def choose(problem: SearchProblem, fitting: list[Candidate]) -> Candidate:
    """The winner among fitting candidates.

    Ranked by risk-adjusted time: an unvalidated layout must beat the others by more than
    its band. Within SIMPLER_WITHIN of the best risk-adjusted time, the simplest layout wins:
    gaps that small are noise next to the model's error on published runs, and each extra
    ZeRO stage or model-parallel rank brings hook overhead and failure modes it ignores.
    """
    risk = {id(c): risk_adjusted_s(problem, c) for c in fitting}
    best = min(fitting, key=lambda c: (risk[id(c)], c.rank_key()))
    limit = risk[id(best)] * (1 + SIMPLER_WITHIN)
    return min((c for c in fitting if risk[id(c)] <= limit), key=Candidate.simplicity_key)


def time_lower_bound(
    problem: SearchProblem, g: _Group, recompute: str, sequence_parallel: bool
) -> float:
    """Compute + memory-bound time of a perfectly balanced step with free communication.

    The slowest stage does at least the mean stage's work, and every other part
    of `cost.step_time` is ≥ 0, so no layout of this group and recompute mode is
    faster than this.
    """
    dims, cluster = problem.dims, problem.cluster
    hw = dims.n_layers * block_flops(dims, recompute)[1] + head_flops(dims)
    tokens_per_gpu = problem.global_batch * dims.seq_len / (g.data * g.pipeline)
    elem = cost.elementwise_bytes_per_token(
        dims,
        attention_kernel=problem.attention_kernel,
        recompute=recompute,
        tensor=g.tensor,
        sequence_parallel=sequence_parallel,
        act_bytes=bytes_per_activation(problem.precision),
        impl=problem.elementwise,
    )
    return cost.compute_s(
        hw * tokens_per_gpu / g.tensor,
        peak_tflops(cluster.gpu, problem.precision),
        cost.max_efficiency(cluster.gpu),
    ) + cost.elementwise_s(elem * dims.n_layers * tokens_per_gpu, cluster.gpu.hbm_gbps)


def _no_layout_message(problem: SearchProblem) -> str:
    dims, cluster = problem.dims, problem.cluster
    pins = ", ".join(f"{k}={v}" for k, v in problem.pins) or "none"
    return (
        f"no parallel layout of {cluster.world_size} GPUs ({cluster.nodes} × {cluster.gpus_per_node}) "
        f"satisfies the rules for this model (pins: {pins}): tensor must divide "
        f"{cluster.gpus_per_node} GPUs per node, n_heads={dims.n_heads}, n_kv_heads={dims.n_kv_heads} "
        f"and d_ff={dims.d_ff}; pipeline ≤ n_layers={dims.n_layers}; data × tensor × pipeline = "
        f"{cluster.world_size}; data must divide global_batch_size={problem.global_batch}"
    )
