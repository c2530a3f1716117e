"""The `Plan` value: the chosen layout, its memory and speed, and the alternatives.

`Plan.to_dict()` is contract 2 of DESIGN.md (plus additive keys: memory
headroom/host/overhead bytes, a per-step time breakdown, the stage map, the
cluster, an explanation and search statistics). Floats are rounded to six
significant digits and every list is in a fixed order, so one spec always
gives the same JSON bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from llmspec import __version__
from llmspec.errors import UserError
from llmspec.graph.layers import ParamCounts, count_params
from llmspec.plan import devices, partition, search
from llmspec.plan.cost import StepTime
from llmspec.plan.pins import OFFLOAD_FIELDS, default_pins, user_pins
from llmspec.plan.ppo_memory import PPOPlan
from llmspec.plan.search import SIMPLER_WITHIN, Candidate
from llmspec.plan.types import Layout, MemoryEstimate, Performance
from llmspec.plan.uncertainty import Uncertainty
from llmspec.spec.hardware import CATALOG
from llmspec.units import GIB


def sig(x: float | None, digits: int = 6) -> float | None:
    """Round to `digits` significant digits (stable JSON floats); None stays None."""
    if x is None:
        return None
    if x == 0 or x != x or x in (float("inf"), float("-inf")):
        return float(x)
    return float(f"{x:.{digits}g}")


@dataclass(frozen=True)
class Alternative:
    layout: Layout
    stage_layers: tuple[int, ...]
    memory_total_bytes: int
    fits: bool
    step_time_s: float
    tokens_per_s: float
    tflops_per_gpu: float
    mfu: float
    rejected_because: str
    oom_bytes: int
    worst_stage: int

    def to_dict(self) -> dict:
        return {
            "layout": self.layout.to_dict(),
            "memory_total_bytes": self.memory_total_bytes,
            "fits": self.fits,
            "step_time_s": sig(self.step_time_s),
            "tokens_per_s": sig(self.tokens_per_s),
            "tflops_per_gpu": sig(self.tflops_per_gpu),
            "mfu": sig(self.mfu, 4),
            "rejected_because": self.rejected_because,
            "stage_layers": list(self.stage_layers),
        }


@dataclass(frozen=True)
class Plan:
    name: str
    params: ParamCounts
    flops_per_token: float  # model FLOPs per trained token, forward + backward
    layout: Layout
    stage_layers: tuple[int, ...]
    memory: MemoryEstimate
    capacity_bytes: int
    fits: bool
    performance: Performance
    step: StepTime
    alternatives: tuple[Alternative, ...]
    cluster: devices.Cluster
    precision: str
    peak_tflops: float
    explanation: tuple[str, ...]
    evaluated: int
    pruned_groups: int
    used_offload: bool
    pinned: tuple[str, ...]
    candidate: Candidate
    uncertainty: Uncertainty
    ppo: PPOPlan | None = None  # objective ppo: the four models' and the phases' memory rows

    @property
    def headroom_bytes(self) -> int:
        return self.capacity_bytes - self.memory.total - self.memory.overhead_bytes

    def stage_map(self) -> list[dict]:
        """Layers → stages → GPUs: block range, extra layers and the ranks/nodes of each stage."""
        ranges = partition.layer_ranges(self.stage_layers)
        out = []
        last = len(self.stage_layers) - 1
        g = self.cluster.gpus_per_node
        for i, (first, end) in enumerate(ranges):
            ranks = devices.stage_ranks(self.layout, i)
            extra = (["embedding"] if i == 0 else []) + (["head"] if i == last else [])
            out.append(
                {
                    "stage": i,
                    "blocks": [first, end],
                    "layers": self.stage_layers[i],
                    "also": extra,
                    "ranks": [min(ranks), max(ranks)],
                    "nodes": [devices.node_of(min(ranks), g), devices.node_of(max(ranks), g)],
                }
            )
        return out

    def to_dict(self) -> dict:
        out = self._contract_dict()
        if self.ppo is not None:  # additive (contract 2): only objective ppo has it
            out["ppo"] = self.ppo.to_dict()
        return out

    def _contract_dict(self) -> dict:
        mem = self.memory
        return {
            "llmspec_version": __version__,
            "name": self.name,
            "params": self.params.to_dict(),
            "flops_per_token": sig(self.flops_per_token, 9),
            "layout": self.layout.to_dict(),
            "memory": {
                "per_gpu_bytes": mem.per_gpu_bytes(),
                "capacity_bytes": self.capacity_bytes,
                "fits": self.fits,
                "headroom_bytes": self.headroom_bytes,
                "overhead_bytes": mem.overhead_bytes,
                "host_bytes": mem.host_bytes,
                "stages": [
                    {
                        "stage": s.stage,
                        "layers": s.layers,
                        "params": s.params,
                        "grads": s.grads,
                        "optimizer": s.optimizer,
                        "activations": s.activations,
                        "temporary": s.temporary,
                        "total": s.total,
                        "host_bytes": s.host_bytes,
                    }
                    for s in mem.stages
                ],
            },
            "performance": {
                "step_time_s": sig(self.performance.step_time_s),
                "tokens_per_s": sig(self.performance.tokens_per_s),
                "tflops_per_gpu": sig(self.performance.tflops_per_gpu),
                "mfu": sig(self.performance.mfu, 4),
                "time_to_train_s": sig(self.performance.time_to_train_s),
                "breakdown_s": {k: sig(v) for k, v in self.step.to_dict().items()},
                "uncertainty": self.uncertainty.to_dict(),
            },
            "alternatives": [a.to_dict() for a in self.alternatives],
            "stage_map": self.stage_map(),
            "cluster": {
                "gpu": self.cluster.gpu.name,
                "nodes": self.cluster.nodes,
                "gpus_per_node": self.cluster.gpus_per_node,
                "peak_tflops": sig(self.peak_tflops),
                "precision": self.precision,
            },
            "explanation": list(self.explanation),
            "search": {
                "evaluated": self.evaluated,
                "pruned_groups": self.pruned_groups,
                "used_offload": self.used_offload,
                "pinned": list(self.pinned),
            },
        }


# ----------------------------------------------------------------------------- building
def performance_of(
    candidate: Candidate,
    flops_per_token: float,
    global_batch: int,
    seq_len: int,
    steps: int,
    peak: float,
) -> Performance:
    step = candidate.step_time_s
    tokens = global_batch * seq_len
    world = candidate.layout.world_size
    tflops = flops_per_token * tokens / step / world / 1e12
    return Performance(
        step_time_s=step,
        tokens_per_s=tokens / step,
        tflops_per_gpu=tflops,
        mfu=tflops / peak,
        time_to_train_s=steps * step,
        breakdown_s=candidate.time.to_dict(),
    )


_PART_LABELS = {
    "compute": "compute",
    "elementwise": "memory-bound kernels",
    "bubble": "pipeline bubble",
    "tensor_parallel": "tensor-parallel all-reduces",
    "pipeline_p2p": "pipeline sends",
    "data_parallel": "gradient sync",
    "zero3_gather": "ZeRO-3 gathers",
    "optimizer": "optimizer step",
    "offload": "offload transfers",
}


def why_rejected(alt: Candidate, best: Candidate) -> str:
    """One line: why `alt` lost to `best` ("OOM by 3.1 GiB on stage 0", "9% slower: bubble 14%")."""
    if not alt.fits:
        if alt.oom_bytes > 0:
            return f"OOM by {alt.oom_bytes / GIB:.1f} GiB on stage {alt.worst_stage}"
        return f"host memory short by {alt.host_oom_bytes / GIB:.1f} GiB for offload"
    slower = alt.step_time_s / best.step_time_s - 1
    u = alt.uncertainty
    if slower < -1e-9 and u is not None and not u.validated and -slower <= u.band:
        return f"{-slower:.1%} faster by prediction, less than its ±{u.band:.0%} band: {u.note}"
    if slower < -1e-9:
        return (
            f"{-slower:.1%} faster by prediction, inside the {SIMPLER_WITHIN:.0%} margin where "
            "the simpler layout wins (fewer model-parallel ranks, lower ZeRO stage)"
        )
    if slower <= 1e-9:
        return (
            "as fast; the chosen layout is simpler (fewer model-parallel ranks, lower ZeRO stage)"
        )
    a, b = alt.time.to_dict(), best.time.to_dict()
    part = max(a, key=lambda k: (a[k] - b[k], k))
    share = a[part] / alt.step_time_s
    lay = alt.layout
    if part == "bubble":
        detail = f"bubble {share:.0%} ((p−1)/m = {lay.pipeline - 1}/{lay.grad_accum_steps})"
    elif part == "compute" and lay.activation_checkpointing != best.layout.activation_checkpointing:
        detail = f"{lay.activation_checkpointing} recomputation adds compute"
    elif part == "compute" and alt.time.stage_imbalance > 0.005:
        detail = (
            f"unbalanced stages: the slowest does {alt.time.stage_imbalance:.0%} more work than "
            f"the mean (blocks {_blocks(alt.stage_layers)})"
        )
    elif part == "compute":
        detail = f"compute {share:.0%} of the step (micro-batch {lay.micro_batch_size})"
    else:
        detail = f"{_PART_LABELS[part]} {share:.0%} of the step"
    pct = f"{slower:.1%}" if slower < 0.095 else f"{slower:.0%}"
    return f"{pct} slower: {detail}"


def _blocks(stage_layers: tuple[int, ...]) -> str:
    if len(set(stage_layers)) == 1:
        return f"{stage_layers[0]} × {len(stage_layers)} stages"
    return "/".join(str(n) for n in stage_layers)


def alternative_of(c: Candidate, best: Candidate, plan_args: tuple) -> Alternative:
    perf = performance_of(c, *plan_args)
    return Alternative(
        layout=c.layout,
        stage_layers=c.stage_layers,
        memory_total_bytes=c.memory.total,
        fits=c.fits,
        step_time_s=c.step_time_s,
        tokens_per_s=perf.tokens_per_s,
        tflops_per_gpu=perf.tflops_per_gpu,
        mfu=perf.mfu,
        rejected_because=why_rejected(c, best),
        oom_bytes=max(0, c.oom_bytes),
        worst_stage=c.worst_stage,
    )


def pick_alternatives(
    ranked: tuple[Candidate, ...], rejected: tuple[Candidate, ...], best: Candidate, top: int
) -> list[Candidate]:
    """The fastest fitting layout of each other (data, tensor, pipeline, ZeRO) shape, then the
    faster layouts that did not fit — so the list shows real choices, not micro-batch variants."""
    seen = {_shape(best.layout)}
    picked: list[Candidate] = []
    for c in ranked:
        if c is best or _shape(c.layout) in seen:
            continue
        seen.add(_shape(c.layout))
        picked.append(c)
        if len(picked) >= top:
            break
    oom = [c for c in rejected if c is not best][: max(1, top // 3) if top else 0]
    return picked + oom


def _shape(lay: Layout) -> tuple:
    return (
        lay.data,
        lay.tensor,
        lay.pipeline,
        lay.zero_stage,
        lay.offload_optimizer,
        lay.offload_params,
    )


# ----------------------------------------------------------------------------- explanation
def explain(problem, result, best: Candidate) -> tuple[str, ...]:
    """Plain sentences on why this layout: placement, bubble, memory, where the time goes."""
    lay, cluster = best.layout, problem.cluster
    lines = [("chose " if best.fits else "closest layout: ") + lay.describe()]
    if lay.tensor > 1:
        per_block = 6 if lay.activation_checkpointing == "full" else 4
        lines.append(
            f"tensor {lay.tensor} stays inside one {cluster.gpus_per_node}-GPU node "
            f"({cluster.intra_node_gbps:g} GB/s links) for its {per_block} collectives per block"
        )
    if lay.pipeline > 1:
        bubble = (lay.pipeline - 1) / lay.grad_accum_steps
        lines.append(
            f"pipeline {lay.pipeline}: bubble (p−1)/m = {lay.pipeline - 1}/{lay.grad_accum_steps} = "
            f"{bubble:.1%}; blocks per stage {_blocks(best.stage_layers)} (the embedding and head "
            "weigh on the first and last stages)"
        )
    mem = best.memory
    cap = best.capacity_bytes
    lines.append(
        f"peak {mem.total / GIB:.2f} GiB + {mem.overhead_bytes / GIB:.2f} GiB runtime overhead of "
        f"{cap / GIB:.2f} GiB on stage {best.worst_stage}: "
        + (
            f"headroom {-best.oom_bytes / GIB:.2f} GiB"
            if best.oom_bytes <= 0
            else f"OOM by {best.oom_bytes / GIB:.2f} GiB"
        )
    )
    parts = best.time.to_dict()
    total = best.step_time_s
    shares = ", ".join(
        f"{_PART_LABELS[k]} {v / total:.0%}" for k, v in parts.items() if v / total >= 0.005
    )
    lines.append(f"step {total:.4g} s: {shares}")
    if result.used_offload:
        lines.append("nothing fits on the GPUs alone: offload keeps optimizer state in host memory")
    if user_pins(problem.pins):
        lines.append("pinned: " + ", ".join(f"{k}={v}" for k, v in user_pins(problem.pins)))
    lines.append(
        f"searched {result.evaluated} layouts; {result.pruned_groups} groups pruned by their memory "
        "lower bound (smallest micro-batch, full recompute)"
    )
    return tuple(lines)


def versus_auto(problem, pinned: Candidate) -> list[str]:
    """With pins: what the planner would choose with none, and why the pinned layout loses."""

    free = search.search(replace(problem, pins=default_pins(problem.pins)))
    if not free.ranked:
        return []
    best = free.ranked[0]
    if best.layout == pinned.layout:
        return ["auto (nothing pinned) chooses the same layout"]
    gain = pinned.step_time_s / best.step_time_s - 1
    if gain < 0.01:
        return [f"auto (nothing pinned) would choose {best.layout.describe()}: within 1%"]
    return [
        f"auto (nothing pinned) would choose {best.layout.describe()}, {gain:.0%} faster; "
        f"the pinned layout: {why_rejected(pinned, best)}"
    ]


def _more_nodes(problem, tries: int = 4):
    """The smallest node count (doubling from a model-state estimate) whose search fits.

    Start where the model states alone could fit if sharded over every GPU (16 bytes per
    parameter for mixed-precision AdamW, Rajbhandari et al. 2020 §3), at least one more
    node than now; pins on `data` are dropped since the world size changes.
    """

    cluster = problem.cluster
    states = 16 * count_params(problem.dims).total
    gpus = -(-states // max(1, cluster.gpu.memory_bytes))
    nodes = max(cluster.nodes + 1, -(-gpus // cluster.gpus_per_node))
    pins = tuple((k, v) for k, v in problem.pins if k != "data")
    with_offload = None
    for _ in range(tries):
        trial = replace(problem, cluster=replace(cluster, nodes=nodes), pins=pins)
        try:
            found = search.search(trial)
        except UserError:  # e.g. pins that no longer factor the larger world
            return with_offload
        if found.ranked and not found.used_offload:
            return nodes, found.ranked[0]
        if found.ranked and with_offload is None:
            with_offload = nodes, found.ranked[0]
        nodes *= 2
    return with_offload


def _offload_hints(problem) -> list[str]:
    """Offload left at its default ("none") is never switched on by the planner: when
    offloading would make the spec fit, say which setting to change instead."""
    off = [k for k, v in problem.pins if k in OFFLOAD_FIELDS and v == "none"]
    if not off:
        return []
    kept = tuple((k, v) for k, v in problem.pins if k not in off)
    found = search.search(replace(problem, pins=kept, allow_offload=True))
    if not found.ranked or not found.used_offload:
        return []
    c = found.ranked[0]
    settings = " and ".join(
        f"parallel.{k}: {getattr(c.layout, k)}" for k in off if getattr(c.layout, k) != "none"
    )
    return [
        f"fix: set {settings} — {c.layout.describe()} then fits at "
        f"{c.memory.total / GIB:.1f} GiB per GPU, step {c.step_time_s:.3g} s"
    ]


def fit_hints(problem, closest: Candidate) -> list[str]:
    """What would make a spec that fits nowhere fit."""

    hints = []
    chosen = user_pins(problem.pins)
    if chosen:
        free = search.search(replace(problem, pins=default_pins(problem.pins)))
        if free.ranked:
            pins = ", ".join(f"{k}={v}" for k, v in chosen)
            c = free.ranked[0]
            hints.append(
                f"fix: unpin ({pins}) — with everything auto, {c.layout.describe()} fits at "
                f"{c.memory.total / GIB:.1f} GiB"
            )
    hints.extend(_offload_hints(problem))
    mem = closest.memory
    if mem.activations > mem.total / 2 and closest.layout.activation_checkpointing != "full":
        hints.append(
            f"fix: activations are {mem.activations / GIB:.1f} GiB of the peak — set "
            "parallel.activation_checkpointing: full or lower train.seq_len"
        )
    bigger = sorted(
        (
            g
            for g in CATALOG.values()
            # DeepSpeed projects run on GPUs: no TPU, no CPU suggestion.
            if g.memory_bytes > closest.capacity_bytes and g.name not in ("cpu", "tpu-v4")
        ),
        key=lambda g: (g.memory_bytes, g.name),
    )
    for gpu in bigger:
        if closest.memory.total + mem.overhead_bytes <= gpu.memory_bytes:
            hints.append(
                f"fix: the closest layout needs {(mem.total + mem.overhead_bytes) / GIB:.1f} GiB: "
                f"cluster.gpu: {gpu.name} ({gpu.memory_bytes / GIB:.0f} GiB) would hold it"
            )
            break
    more = _more_nodes(problem)
    if more is not None:
        nodes, c = more
        hints.append(
            f"fix: cluster.nodes: {nodes} ({nodes * problem.cluster.gpus_per_node} GPUs) fits — "
            f"{c.layout.describe()}, peak {c.memory.total / GIB:.1f} GiB, step {c.step_time_s:.3g} s"
        )
    else:
        hints.append(
            "fix: no larger cluster tried (up to 8× the model-state estimate) fits either: "
            "shrink the model, or raise train.global_batch_size if it limits data parallelism"
        )
    return hints
