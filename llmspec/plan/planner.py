"""`make_plan(spec, pins=...)`: the planning stage's entry point, spec → `Plan`.

The search (`plan.search`) ranks every layout the rules allow by the memory
model (`plan.memory`) and the cost model (`plan.cost`); this module turns the
winner and its rivals into the `Plan` that the code generator and `--json`
(contract 2) read.
"""

from __future__ import annotations

from dataclasses import replace

from llmspec.errors import UserError
from llmspec.graph.dims import ModelDims
from llmspec.graph.layers import count_params
from llmspec.plan import devices, search, uncertainty
from llmspec.plan.flops import model_flops_per_token
from llmspec.plan.pins import check_pins, normalize_pins, spec_pins, user_pins
from llmspec.plan.plan import (
    Plan,
    alternative_of,
    explain,
    fit_hints,
    performance_of,
    pick_alternatives,
    versus_auto,
)
from llmspec.plan.ppo_memory import PPOPlan, plan_ppo


def make_plan(
    spec,
    *,
    pins: dict | None = None,
    top: int = 5,
    attention_kernel: str = "flash",
    virtual_stages: int = 1,
    pipeline_schedule: str = "deepspeed",
    comm_overlap: tuple[str, ...] = (),
    fp8_casts: tuple[str, ...] = (),
    elementwise: str = "generated",
) -> Plan:
    """Search the layouts of `spec` (respecting its pinned fields and `pins`) and plan the best.

    Raises `UserError` when no layout satisfies the structural rules (e.g. pins
    that do not multiply to the world size). A spec that fits nowhere still
    gets a plan: `plan.fits` is False and `plan.explanation` says what to change.
    `attention_kernel` is what the step is costed with: "flash" (the SDPA the
    generated model uses) or "unfused" (to compare with runs that predate it);
    `virtual_stages` > 1 costs Megatron's interleaved 1F1B (published runs only: the
    generated DeepSpeed pipeline runs plain 1F1B); `pipeline_schedule` "megatron" costs the
    stage-to-stage sends as Megatron pairs them (published runs only; see
    `cost.pipeline_transfers`); `comm_overlap` names communication the costed software hides
    behind compute (published runs only; `cost.step_time`); `fp8_casts` names how the costed
    software casts to FP8 (published runs only; `cost.FP8_CASTS`); `elementwise` is the
    costed software's element-wise code: "generated" (llmspec's model.py), or for published
    runs "fused" (Megatron, Transformer Engine, torch.compile) or "eager" (torchtitan without
    torch.compile); `cost.ELEMENTWISE_IMPLS`.
    """
    dims = ModelDims.from_spec(spec)
    cluster = devices.Cluster.from_spec(spec.cluster)
    merged = normalize_pins({**spec_pins(spec), **(pins or {})})
    frozen = dims.finetune is not None and dims.finetune.frozen_base
    check_pins(
        merged, cluster.world_size, f"{cluster.nodes} nodes × {cluster.gpus_per_node}", frozen
    )
    problem = search.SearchProblem(
        dims=dims,
        cluster=cluster,
        precision=spec.train.precision,
        global_batch=spec.train.global_batch_size,
        pins=tuple(sorted(merged.items())),
        allow_offload=True,
        attention_kernel=attention_kernel,
        virtual_stages=virtual_stages,
        pipeline_schedule=pipeline_schedule,
        comm_overlap=tuple(comm_overlap),
        fp8_casts=tuple(fp8_casts),
        elementwise=elementwise,
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
    assessed = uncertainty.assess(best.layout, cluster.gpu, cluster.gpus_per_node)
    explanation = explain(problem, result, best) + (
        f"prediction band ±{assessed.band:.0%}: {assessed.note}",
    )
    if not best.fits:
        explanation = explanation + tuple(fit_hints(problem, best))
    elif user_pins(problem.pins):
        explanation = explanation + tuple(versus_auto(problem, best))
    fits, ppo = best.fits, None
    if spec.train.objective == "ppo":
        ppo = plan_ppo(spec, dims, best.layout, best.capacity_bytes, problem.kernels)
        fitting = [s.zero_stage for s in ppo.stages if s.fits]
        if "zero_stage" not in merged and fitting and ppo.chosen_zero_stage not in fitting:
            # zero_stage is auto: choose it for the four models, not for the actor alone, and
            # search the rest of the layout at that stage (the pin is the planner's, not the
            # user's: it is not reported as pinned).
            stage = fitting[0]
            chosen = make_plan(
                spec,
                pins={**(pins or {}), "zero_stage": stage},
                top=top,
                attention_kernel=attention_kernel,
                virtual_stages=virtual_stages,
                pipeline_schedule=pipeline_schedule,
                comm_overlap=comm_overlap,
                fp8_casts=fp8_casts,
                elementwise=elementwise,
            )
            why = (
                f"zero_stage {stage}: the lowest ZeRO stage at which PPO's actor, critic, "
                f"reference, reward and rollouts fit (ZeRO {ppo.chosen_zero_stage}, best for the "
                "actor's update alone, does not: PPO table)"
            )
            pin = f"zero_stage={stage}"
            lines = []
            for line in chosen.explanation:
                if line.startswith("auto (nothing pinned)"):
                    continue  # compares with the actor-alone choice this plan overrides
                if line.startswith("pinned: "):
                    rest = [p for p in line[len("pinned: ") :].split(", ") if p != pin]
                    if not rest:
                        continue
                    line = "pinned: " + ", ".join(rest)
                lines.append(line)
            return replace(
                chosen,
                pinned=tuple(p for p in chosen.pinned if p != pin),
                explanation=(why, *lines),
            )
        fits, lines = _ppo_verdict(ppo, fits)
        explanation = explanation + lines
    return Plan(
        name=spec.name,
        params=count_params(dims, tensor=best.layout.tensor),
        flops_per_token=flops,
        layout=best.layout,
        stage_layers=best.stage_layers,
        memory=best.memory,
        capacity_bytes=best.capacity_bytes,
        fits=fits,
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
        uncertainty=assessed,
        ppo=ppo,
    )


def _ppo_verdict(ppo: PPOPlan, fits: bool) -> tuple[bool, tuple[str, ...]]:
    """PPO holds four models and its phases' tensors, not one model's training step: the
    plan fits when they do at the layout's ZeRO stage; else say which stage would."""
    chosen = ppo.stage(ppo.chosen_zero_stage)
    fitting = ", ".join(str(s.zero_stage) for s in ppo.stages if s.fits) or "none"
    lines = [
        f"PPO at ZeRO {chosen.zero_stage}: {chosen.why()}",
        "the layout search above sizes the actor's update alone; with the critic, reference, "
        f"reward and rollouts resident PPO fits at ZeRO stage(s) {fitting} (PPO table)",
    ]
    if chosen.fits:
        return fits, tuple(lines)
    others = [s for s in ppo.stages if s.fits]
    if others:
        lines.append(
            f"fix: set parallel.zero_stage: {others[0].zero_stage} — PPO then {others[0].why()}"
        )
    else:
        lines.append(
            "fix: no ZeRO stage holds PPO's four models here: more GPUs, a smaller critic or "
            "reward model, or fewer rollouts (rlhf.rollout.batch_size) per rank"
        )
    return False, tuple(lines)
