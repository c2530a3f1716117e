"""Planning: memory and speed of parallel layouts, and the choice among them.

`make_plan(spec, pins=...)` is the entry point the CLI and the code generator
use; it returns a `Plan` whose `to_dict()` is contract 2.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llmspec.plan.plan import Plan

__all__ = ["make_plan", "normalize_pins"]

_INT_KEYS = ("data", "tensor", "pipeline", "zero_stage", "micro_batch_size", "grad_accum_steps")
_CHOICES = {
    "activation_checkpointing": ("none", "selective", "full"),
    "offload_optimizer": ("none", "cpu", "nvme"),
    "offload_params": ("none", "cpu", "nvme"),
}


def normalize_pins(pins: dict | None) -> dict:
    """Check and convert `--layout` pins ({"tensor": "4"} → {"tensor": 4}); `auto` unpins."""
    from llmspec.errors import UserError

    out: dict = {}
    for key, value in (pins or {}).items():
        if value in ("auto", None):
            continue
        if key in _INT_KEYS:
            try:
                number = int(value)
            except (TypeError, ValueError):
                raise UserError(f"--layout {key}={value}: expected a positive integer") from None
            if number < (0 if key == "zero_stage" else 1) or (key == "zero_stage" and number > 3):
                raise UserError(f"--layout {key}={value}: out of range")
            out[key] = number
        elif key == "sequence_parallel":
            text = str(value).lower()
            if text not in ("true", "false", "1", "0", "yes", "no"):
                raise UserError(f"--layout sequence_parallel={value}: expected true or false")
            out[key] = text in ("true", "1", "yes")
        elif key in _CHOICES:
            if value not in _CHOICES[key]:
                choices = ", ".join(_CHOICES[key])
                raise UserError(f"--layout {key}={value}: expected one of {choices}")
            out[key] = value
        else:
            known = ", ".join(_INT_KEYS + ("sequence_parallel",) + tuple(_CHOICES))
            raise UserError(f"--layout: unknown field {key!r}; known fields: {known}")
    return out


def spec_pins(spec) -> dict:
    """Layout fields the spec fixes (everything not `auto`)."""
    par = spec.parallel
    pins = {
        "data": par.data,
        "tensor": par.tensor,
        "pipeline": par.pipeline,
        "zero_stage": par.zero_stage,
        "sequence_parallel": par.sequence_parallel,
        "activation_checkpointing": par.activation_checkpointing,
        "micro_batch_size": spec.train.micro_batch_size,
    }
    # Offload has no `auto`: "none" (the default) lets the planner offload only when nothing
    # else fits; cpu / nvme pin it.
    for key in ("offload_optimizer", "offload_params"):
        if getattr(par, key) != "none":
            pins[key] = getattr(par, key)
    return {k: v for k, v in pins.items() if v != "auto"}


def _check_pin_combinations(pins: dict) -> None:
    """The rules DeepSpeed enforces, for pins that arrive by --layout (the spec's own pins
    are checked with file positions by llmspec.spec.checks)."""
    from llmspec.errors import UserError

    zero, pipeline = pins.get("zero_stage"), pins.get("pipeline")
    if zero is not None and zero >= 2 and pipeline is not None and pipeline > 1:
        raise UserError(
            f"zero_stage = {zero} cannot be combined with pipeline = {pipeline}: DeepSpeed's "
            "pipeline engine supports ZeRO stages 0 and 1 only"
        )
    if pins.get("offload_params", "none") != "none" and zero not in (None, 3):
        raise UserError(f"offload_params needs ZeRO stage 3, but zero_stage = {zero}")
    if pins.get("offload_optimizer", "none") != "none" and zero == 0:
        raise UserError("offload_optimizer needs ZeRO stage 1, 2 or 3, but zero_stage = 0")
    if pins.get("sequence_parallel") and pins.get("tensor") == 1:
        raise UserError("sequence_parallel needs tensor > 1, but tensor = 1")


def make_plan(
    spec, *, pins: dict | None = None, top: int = 5, attention_kernel: str = "flash"
) -> Plan:
    """Search the layouts of `spec` (respecting its pinned fields and `pins`) and plan the best.

    Raises `UserError` when no layout satisfies the structural rules (e.g. pins
    that do not multiply to the world size). A spec that fits nowhere still
    gets a plan: `plan.fits` is False and `plan.explanation` says what to change.
    `attention_kernel` is what the step is costed with: "flash" (the SDPA the
    generated model uses) or "unfused" (to compare with runs that predate it).
    """
    from llmspec.errors import UserError
    from llmspec.graph.layers import count_params
    from llmspec.plan import devices, search
    from llmspec.plan.flops import model_flops_per_token
    from llmspec.plan.plan import (
        Plan,
        alternative_of,
        explain,
        fit_hints,
        performance_of,
        pick_alternatives,
        versus_auto,
    )
    from llmspec.plan.types import ModelDims

    dims = ModelDims.from_spec(spec)
    cluster = devices.Cluster.from_spec(spec.cluster)
    merged = normalize_pins({**spec_pins(spec), **(pins or {})})
    world = cluster.world_size
    if all(k in merged for k in ("data", "tensor", "pipeline")):
        product = merged["data"] * merged["tensor"] * merged["pipeline"]
        if product != world:
            raise UserError(
                f"data × tensor × pipeline = {merged['data']} × {merged['tensor']} × "
                f"{merged['pipeline']} = {product}, but the cluster has {world} GPUs "
                f"({cluster.nodes} nodes × {cluster.gpus_per_node})"
            )
    _check_pin_combinations(merged)
    problem = search.Problem(
        dims=dims,
        cluster=cluster,
        precision=spec.train.precision,
        global_batch=spec.train.global_batch_size,
        pins=tuple(sorted(merged.items())),
        allow_offload=True,
        attention_kernel=attention_kernel,
    )
    result = search.search(problem)
    best = result.best
    if best is None:
        raise UserError(
            "no layout could be evaluated: micro_batch_size / grad_accum_steps pins do not divide "
            f"global_batch_size={problem.global_batch} per data-parallel replica"
        )
    peak = search.peak_tflops(cluster.gpu, problem.precision)
    flops = model_flops_per_token(dims)
    plan_args = (flops, problem.global_batch, dims.seq_len, spec.train.total_steps, peak)
    alternatives = tuple(
        alternative_of(c, best, plan_args)
        for c in pick_alternatives(result.ranked, result.rejected, best, top)
    )
    explanation = explain(problem, result, best)
    if not best.fits:
        explanation = explanation + tuple(fit_hints(problem, best))
    elif problem.pins:
        explanation = explanation + tuple(versus_auto(problem, best))
    return Plan(
        name=spec.name,
        params=count_params(dims, tensor=best.layout.tensor),
        flops_per_token=flops,
        layout=best.layout,
        stage_layers=best.stage_layers,
        memory=best.memory,
        capacity_bytes=best.capacity_bytes,
        fits=best.fits,
        performance=performance_of(best, *plan_args),
        step=best.time,
        alternatives=alternatives,
        cluster=cluster,
        precision=problem.precision,
        peak_tflops=peak,
        explanation=explanation,
        evaluated=result.evaluated,
        pruned_groups=result.pruned_groups,
        used_offload=result.used_offload,
        pinned=tuple(f"{k}={v}" for k, v in problem.pins),
        candidate=best,
    )
