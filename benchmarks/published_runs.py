"""Today's planner against every published run in `benchmarks/published_runs.yaml`.

    python benchmarks/published_runs.py            # the table and the summaries on stdout
    python benchmarks/published_runs.py --json F   # also write per-run results to F
    python benchmarks/published_runs.py --fit-hopper   # refit cost.GEMM_FRACTION['hopper']

For each run a spec is built from the published architecture, batch and cluster, the
published layout is pinned (tensor, pipeline, data, ZeRO / FSDP stage, micro-batch,
recompute, sequence parallel where the source states them; offload pinned to none), and
`make_plan` predicts the step. The comparison is of throughput, in tokens per second per GPU,
which does not depend on how anyone counts FLOPs:

- published tokens/s/GPU is taken as printed where the source prints it, from the iteration
  time where it prints that, else from its FLOP rate divided by the source's own FLOPs per
  token (`flops_convention` in the data file);
- predicted tokens/s/GPU = global batch x sequence / (predicted step time x GPUs);
- error = predicted / published - 1 (positive: the planner is too optimistic).

The "fits" column: yes; NO (the planner says the published layout does not fit); rep (it
fits only after the planner moved layers between pipeline stages: the even split the run
used is predicted not to fit). The "imb" column is the planned slowest pipeline stage over the mean stage, minus 1: the
planner re-partitions layers when it thinks the even split does not fit, whereas the
published Megatron runs split layers evenly (BLOOM: 5-6 blocks per stage, embeddings counted
as blocks). The "pred" column repeats the prediction in the source's own unit (TFLOP/s by
its formula, seconds per iteration, or tokens/s). Fields the source leaves unstated are left to the
planner (its choice is shown in the layout column, lower case = chosen, not pinned).
Runs the planner cannot represent (context parallelism, ZeRO-3/FSDP combined with pipeline
parallelism, missing layout facts) are listed with the reason instead of being dropped;
runs it represents only approximately (interleaved pipeline schedules: bubble and sends
costed for the stated chunk count, plain 1F1B where the source does not state it; their extra
activation memory not) are predicted and flagged `~`, and the summaries are given with and
without them.

Nothing here tunes the cost model: this is the validation set's report, errors included.
"""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import yaml

DATA = Path(__file__).with_name("published_runs.yaml")
GIB = 1024**3
CATALOG_GPUS = ("a100-40gb", "a100-80gb", "h100-sxm", "h200", "mi250x", "mi300x", "tpu-v4")


def load(path: Path = DATA) -> dict:
    with open(path) as f:
        return yaml.safe_load(f)


# ----------------------------------------------------------------------------- FLOPs conventions
def _leading_number(value):
    """`50257` from 50257 or from "50257 (GPT-2 BPE ...)"; None otherwise."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        m = re.match(r"\s*(\d+(?:\.\d+)?)", value)
        if m:
            number = float(m.group(1))
            return int(number) if number.is_integer() else number
    return None


def fact(run: dict, section: str, key: str):
    """A stated value, else the record's assumption for it (None if neither)."""
    value = run.get(section, {}).get(key)
    if value is None:
        assumed = run.get("assumptions", {}).get(key)
        value = _leading_number(assumed) if key not in ("recompute",) else assumed
    return value


def flops_per_token(run: dict, convention: str, dims) -> float | None:
    """FLOPs per trained token by the source's own formula (None if not computable)."""
    m = run["model"]
    h, layers, s = m["hidden"], m["layers"], m["seq_len"]
    v = fact(run, "model", "vocab")
    if convention == "narayanan_eq3":  # Eq. 3 / (B s): counts the recomputed forward
        return 96 * layers * h * h * (1 + s / (6 * h) + v / (16 * layers * h))
    if convention == "korthikanti_eq7":
        return 72 * layers * h * h * (1 + s / (6 * h) + v / (12 * h * layers))
    if convention == "palm":  # Chowdhery et al. 2022 App. B: 6N + 12 L H Q T, N as published
        return 6 * m["params_b"] * 1e9 + 12 * layers * h * s
    if convention == "megatron_core":
        from llmspec.plan.flops import model_flops_per_token

        return model_flops_per_token(dims)
    return None


# ----------------------------------------------------------------------------- spec and pins
def representable(run: dict) -> str | None:
    """Why today's planner cannot represent the run, or None."""
    lay, hw = run["layout"], run["hardware"]
    if hw["gpu"] not in CATALOG_GPUS:
        return f"GPU {hw['gpu']!r} not in the hardware catalog"
    if (lay.get("context") or 1) > 1:
        return f"context parallelism (CP {lay['context']}) is not modelled"
    if lay.get("zero_stage") in (2, 3) and (lay.get("pipeline") or 1) > 1:
        return (
            f"ZeRO-{lay['zero_stage']}/FSDP with pipeline {lay['pipeline']}: the planner allows "
            "only ZeRO 0/1 with pipeline parallelism (DeepSpeed's pipeline engine)"
        )
    missing = [k for k in ("tensor", "pipeline", "data") if lay.get(k) is None]
    if run["batch"].get("global") is None:
        missing.append("global batch")
    if missing:
        return "not stated in the source read: " + ", ".join(missing)
    if run["metric"]["primary"] == "tflops_per_gpu":
        conv = run["metric"].get("flops_convention")
        assumed = _assumed_convention(run)
        if conv in (None, "unstated") and assumed is None:
            return "FLOP convention of the published TFLOP/s not stated; throughput not derivable"
    return None


def _assumed_convention(run: dict) -> str | None:
    text = run.get("assumptions", {}).get("flops_convention")
    return text.split()[0] if isinstance(text, str) else None


def approximations(run: dict) -> list[str]:
    lay = run["layout"]
    out = []
    if (lay.get("virtual_stages") or 1) > 1:
        out.append(
            f"interleaved schedule (VP {lay['virtual_stages']}): bubble and sends costed, "
            "its extra activation memory not"
        )
    if (
        run["metric"].get("flops_convention") == "unstated"
        and run["metric"]["primary"] == "tflops_per_gpu"
    ):
        out.append(f"FLOP convention assumed: {_assumed_convention(run)}")
    unknown = " ".join(str(u) for u in run.get("unknown") or [])
    if (
        (lay.get("pipeline") or 1) > 1
        and lay.get("virtual_stages") is None
        and "virtual stages" in unknown
    ):
        out.append(
            "pipeline schedule interleaved per the source, chunks not stated: costed as plain 1F1B"
        )
    if "ALiBi" in (run["model"].get("notes") or ""):
        out.append("ALiBi modelled as learned positions")
    return out


def _torchtitan_op_sac(run: dict) -> bool:
    """torchtitan's `selective_ac_option = 'op'` (the default of its Llama configs in 2024):
    `_apply_ac_to_transformer_block` in torchtitan/parallelisms/parallelize_llama.py saves the
    output of every matmul and SDPA except every second mm of a block's forward (its counter
    starts afresh each forward: wq, wk, wv, wo, w1, w3, w2 in order, so wk, wo and w3 are
    recomputed), and recomputes every other op (norms, RoPE, SiLU). llmspec generates that
    policy as `activation_checkpointing: ops` (llmspec/graph/recompute.py), so these runs are
    represented exactly."""
    recompute = run["layout"].get("recompute") or run.get("assumptions", {}).get("recompute")
    return str(run.get("framework", "")).startswith("torchtitan") and str(
        recompute or ""
    ).startswith("selective")


def spec_for(run: dict):
    from llmspec.spec.schema import Spec

    m, hw = run["model"], run["hardware"]
    s = m["seq_len"]
    dropout = fact(run, "assumptions", "dropout")
    if dropout is None:
        dropout = run.get("assumptions", {}).get("dropout", 0.0) or 0.0
    model = {
        "arch": "gpt" if m["family"] == "gpt" else "llama",
        "vocab_size": int(fact(run, "model", "vocab")),
        "max_seq_len": s,
        "d_model": m["hidden"],
        "n_layers": m["layers"],
        "n_heads": int(fact(run, "model", "heads")),
        "d_ff": m.get("ffn") or 4 * m["hidden"],
        "dropout": float(dropout),
        "attention_dropout": float(dropout),
    }
    if m.get("kv_heads"):
        model["n_kv_heads"] = m["kv_heads"]
    if m["family"] == "gpt":
        model.update(
            position="learned", norm="layernorm", activation="gelu", bias=True, tie_embeddings=True
        )
    else:
        model.update(
            position="rope", norm="rmsnorm", activation="swiglu", bias=False, tie_embeddings=False
        )
    precision = str(run["precision"]).lower()
    precision = "fp8" if "fp8" in precision else "fp16" if precision == "fp16" else "bf16"
    gpu: str | dict = hw["gpu"]
    override = {}
    if hw.get("memory_gb"):
        override["memory_gib"] = hw["memory_gb"] * 1e9 / GIB
    if hw.get("hbm_gbps"):
        override["hbm_gbps"] = float(hw["hbm_gbps"])
    if hw.get("inter_node_gbps_per_gpu"):
        override["inter_node_gbps"] = float(hw["inter_node_gbps_per_gpu"])
    if override:
        gpu = {"name": hw["gpu"], **override}
    per_node = hw.get("gpus_per_node") or 8
    return Spec.model_validate(
        {
            "name": run["id"],
            "model": model,
            "train": {
                "seq_len": s,
                "global_batch_size": run["batch"]["global"],
                "precision": precision,
                "steps": 1,
            },
            "cluster": {"gpu": gpu, "nodes": hw["gpus"] // per_node, "gpus_per_node": per_node},
        }
    )


def pins_for(run: dict) -> dict:
    lay = run["layout"]
    pins = {
        "data": lay["data"],
        "tensor": lay["tensor"],
        "pipeline": lay["pipeline"],
        "offload_optimizer": "none",
        "offload_params": "none",
    }
    if lay.get("zero_stage") is not None:
        pins["zero_stage"] = lay["zero_stage"]
    recompute = lay.get("recompute") or run.get("assumptions", {}).get("recompute")
    if isinstance(recompute, str):
        word = recompute.split()[0]
        if word in ("none", "selective", "full"):
            pins["activation_checkpointing"] = "ops" if _torchtitan_op_sac(run) else word
    if lay.get("sequence_parallel") is not None and (
        lay["tensor"] > 1 or not lay["sequence_parallel"]
    ):
        pins["sequence_parallel"] = bool(lay["sequence_parallel"])
    if run["batch"].get("micro"):
        pins["micro_batch_size"] = run["batch"]["micro"]
    return pins


def attention_kernel(run: dict) -> str:
    text = str(run.get("assumptions", {}).get("attention", "flash"))
    return "unfused" if text.startswith("unfused") else "flash"


def pipeline_schedule(run: dict) -> str:
    """DeepSpeed's PipelineEngine for the runs made on it (Megatron-DeepSpeed, GPT-NeoX), else
    a schedule that pairs sends with receives as Megatron's does (`cost.pipeline_transfers`)."""
    framework = str(run.get("framework", "")).lower()
    return "deepspeed" if "deepspeed" in framework else "megatron"


def comm_overlap(run: dict) -> tuple[str, ...]:
    """What the run's software hid behind compute, as read in its framework's recipe for that
    layout (`comm_overlap` in published_runs.yaml; `cost.step_time`)."""
    return tuple(sorted(run.get("comm_overlap") or {}))


def fp8_casts(run: dict) -> tuple[str, ...]:
    """How the run's software cast to FP8 (`cost.FP8_CASTS`), from its framework: every FP8
    run here but torchtitan's ran Transformer Engine (llm-foundry's `fc_type: te`, NeMo and
    Megatron-Bridge through Megatron-Core's TE layers): delayed scaling and fused cast-transpose.
    Megatron-Core also caches the FP8 weights across a step's micro-batches (its TELinear
    passes `is_first_microbatch`; Megatron FSDP reshards them, so not there); llm-foundry calls
    te.Linear without it. torchtitan's torchao float8 casts as the generated code does."""
    if run.get("precision") != "fp8":
        return ()
    framework = str(run.get("framework", ""))
    if "Transformer Engine" not in framework and "megatron-core" not in framework:
        return ()
    if "megatron-core" in framework and "FSDP" not in framework:
        return ("fused_cast_transpose", "weights_once_per_step")
    return ("fused_cast_transpose",)


def elementwise(run: dict) -> str:
    """ "eager" for the runs whose software ran its element-wise ops one kernel each
    (`elementwise: eager` in published_runs.yaml: torchtitan without torch.compile), else
    fused kernels (Megatron's, Transformer Engine's, torch.compile's; `cost.ELEMENTWISE_IMPLS`),
    not the generated model's."""
    return run.get("elementwise") or "fused"


# ----------------------------------------------------------------------------- one run
@dataclass
class Result:
    run: dict
    reason: str | None = None  # not representable
    approx: list[str] = field(default_factory=list)
    published_tps: float | None = None
    predicted_tps: float | None = None
    fits: bool | None = None
    layout: str = ""
    zero_used: int | None = None
    peak_gib: float | None = None
    overhead_gib: float | None = None
    imbalance: float = 0.0  # slowest pipeline stage's work over the mean stage's, minus 1
    even_split_fits: bool | None = None  # pipeline runs: does the even layer split fit?
    even_split_gib: float | None = None
    capacity_gib: float | None = None
    breakdown: dict = field(default_factory=dict)
    regime_key: str | None = None  # llmspec.plan.uncertainty's regime of the predicted layout

    @property
    def error(self) -> float | None:
        if self.published_tps and self.predicted_tps:
            return self.predicted_tps / self.published_tps - 1
        return None


def published_tps(run: dict, dims) -> float | None:
    meas, metric = run["measured"], run["metric"]
    gpus, tokens = run["hardware"]["gpus"], run["batch"]["global"] * run["model"]["seq_len"]
    primary = metric["primary"]
    if primary == "tokens_per_s_per_gpu":
        return float(meas["tokens_per_s_per_gpu"])
    if primary == "seconds_per_iteration":
        return tokens / (meas["seconds_per_iteration"] * gpus)
    if primary in ("tflops_per_gpu", "mfu"):
        conv = metric.get("flops_convention")
        if conv in (None, "unstated"):
            conv = _assumed_convention(run)
        per_token = flops_per_token(run, conv, dims)
        if per_token is None:
            return None
        rate = (
            meas["tflops_per_gpu"] * 1e12
            if primary == "tflops_per_gpu"
            else meas["mfu"] / 100 * metric["peak_tflops_used"] * 1e12
        )
        return rate / per_token
    return None


def describe_layout(run: dict, layout, pins: dict) -> str:
    def tag(key: str, text: str) -> str:
        return text.upper() if key in pins else text.lower()

    rc = {"none": "nr", "selective": "sel", "ops": "ops", "full": "full"}[
        layout.activation_checkpointing
    ]
    parts = [
        f"d{layout.data}t{layout.tensor}p{layout.pipeline}",
        tag("zero_stage", f"z{layout.zero_stage}"),
        tag("micro_batch_size", f"m{layout.micro_batch_size}"),
        tag("activation_checkpointing", rc),
    ]
    if layout.tensor > 1:
        parts.append(tag("sequence_parallel", "sp" if layout.sequence_parallel else "nosp"))
    vp = run["layout"].get("virtual_stages") or 1
    if vp > 1:
        parts.append(f"vp{vp}")
    return " ".join(parts)


def evaluate(run: dict) -> Result:
    from llmspec.errors import UserError
    from llmspec.graph.dims import ModelDims
    from llmspec.plan import make_plan

    result = Result(run=run, reason=representable(run), approx=approximations(run))
    if result.reason:
        return result
    spec = spec_for(run)
    dims = ModelDims.from_spec(spec)
    result.published_tps = published_tps(run, dims)
    pins = pins_for(run)
    try:
        plan = make_plan(
            spec,
            pins=pins,
            top=0,
            attention_kernel=attention_kernel(run),
            virtual_stages=run["layout"].get("virtual_stages") or 1,
            pipeline_schedule=pipeline_schedule(run),
            comm_overlap=comm_overlap(run),
            fp8_casts=fp8_casts(run),
            elementwise=elementwise(run),
        )
    except UserError as exc:
        result.reason = f"planner refused the published layout: {exc}"
        return result
    gpus = run["hardware"]["gpus"]
    tokens = run["batch"]["global"] * run["model"]["seq_len"]
    result.predicted_tps = tokens / (plan.performance.step_time_s * gpus)
    result.fits = plan.fits
    result.layout = describe_layout(run, plan.layout, pins)
    result.zero_used = plan.layout.zero_stage
    result.peak_gib = plan.memory.total / GIB
    result.overhead_gib = plan.memory.overhead_bytes / GIB
    result.capacity_gib = plan.capacity_bytes / GIB
    result.breakdown = dict(plan.performance.breakdown_s)
    result.imbalance = plan.step.stage_imbalance
    result.regime_key = runtime_regime_key(run, plan.uncertainty.regime_key)
    if plan.layout.pipeline > 1:  # the published runs split layers evenly across stages
        from llmspec.plan.memory import estimate_memory

        even = estimate_memory(dims, plan.layout, plan.precision, stage_layers=None)
        result.even_split_fits = even.total + even.overhead_bytes <= plan.capacity_bytes
        result.even_split_gib = (even.total + even.overhead_bytes) / GIB
    return result


# ----------------------------------------------------------------------------- regimes
def gpu_label(run: dict) -> str:
    return {"a100-40gb": "A100-40", "a100-80gb": "A100-80", "h100-sxm": "H100", "h200": "H200"}.get(
        run["hardware"]["gpu"], run["hardware"]["gpu"]
    )


def runtime_regime_key(run: dict, key: str) -> str:
    """The planner's regime of the run, or DeepSpeed 2021's ZeRO-3 for the runs made on it
    (`zero3_runtime: deepspeed-2021`: per-parameter collectives, not the runtime llmspec
    generates for), so that they neither validate nor hide in today's ZeRO-3 regime."""
    if run.get("zero3_runtime") != "deepspeed-2021":
        return key
    generation, _, scale = key.split("|")
    return f"{generation}|zero3-ds2021|{scale}"


def regime(result: Result) -> str:
    lay = result.run["layout"]
    if result.run.get("zero3_runtime") == "deepspeed-2021":
        return "ZeRO-3 (DeepSpeed 2021)"
    zero = lay.get("zero_stage") if lay.get("zero_stage") is not None else result.zero_used
    if (lay.get("pipeline") or 1) > 1:
        return "3D (pipeline)"
    if zero == 3:
        return "ZeRO-3/FSDP + TP" if (lay.get("tensor") or 1) > 1 else "ZeRO-3/FSDP"
    if (lay.get("tensor") or 1) > 1:
        return f"TP + DP (ZeRO-{zero})"
    return f"DP (ZeRO-{zero})"


def params_bucket(run: dict) -> str:
    p = run["model"]["params_b"]
    for limit, name in ((5, "<5B"), (30, "5-30B"), (100, "30-100B"), (300, "100-300B")):
        if p < limit:
            return name
    return ">=300B"


def gpus_bucket(run: dict) -> str:
    n = run["hardware"]["gpus"]
    for limit, name in ((8, "8 GPUs"), (64, "9-64 GPUs"), (512, "65-512 GPUs")):
        if n <= limit:
            return name
    return ">512 GPUs"


def precision_label(run: dict) -> str:
    return "FP8" if "fp8" in str(run["precision"]).lower() else "BF16/FP16"


# ----------------------------------------------------------------------------- printing
def published_text(run: dict) -> str:
    meas, primary = run["measured"], run["metric"]["primary"]
    if primary == "tokens_per_s_per_gpu":
        extra = f" ({meas['mfu']:g}% MFU)" if "mfu" in meas else ""
        return f"{meas['tokens_per_s_per_gpu']:g} tok/s{extra}"
    if primary == "seconds_per_iteration":
        return f"{meas['seconds_per_iteration']:g} s/it"
    if primary == "tflops_per_gpu":
        return f"{meas['tflops_per_gpu']:g} TF/s"
    return f"{meas.get(primary)} {primary}"


def predicted_text(result: Result) -> str:
    run = result.run
    meas, primary = run["measured"], run["metric"]["primary"]
    ratio = result.predicted_tps / result.published_tps
    if primary == "tokens_per_s_per_gpu":
        return f"{result.predicted_tps:.0f} tok/s"
    if primary == "seconds_per_iteration":
        return f"{meas['seconds_per_iteration'] / ratio:.3g} s/it"
    return f"{meas['tflops_per_gpu'] * ratio:.0f} TF/s"


def fits_text(r: Result) -> str:
    if not r.fits:
        return "NO"
    return "rep" if r.even_split_fits is False else "yes"


def measured_memory(run: dict) -> str:
    gib = run["measured"].get("memory_gib")
    return f"  published peak {gib:g} GiB" if gib else ""


def short_source(run: dict, sources: dict) -> str:
    doc = run["source"]["doc"]
    where = run["source"]["where"].split(",")[0]
    return f"{doc}:{where}"[:34]


def recompute_label(run: dict) -> str:
    """GPU family and the recomputation the run is costed with (stated or assumed)."""
    recompute = run["layout"].get("recompute") or run.get("assumptions", {}).get("recompute")
    word = recompute.split()[0] if isinstance(recompute, str) else "unstated (planner's)"
    runtime = ", DS-2021 ZeRO-3" if run.get("zero3_runtime") == "deepspeed-2021" else ""
    return f"{gpu_label(run)[:4]} {word}{runtime}"


def stats_line(name: str, results: list[Result]) -> str:
    errs = [r.error for r in results if r.error is not None]
    if not errs:
        return f"  {name:<26} n=0"
    absolute = [abs(e) for e in errs]
    worst = max(results, key=lambda r: abs(r.error) if r.error is not None else -1)
    not_fit = sum(1 for r in results if r.fits is False or r.even_split_fits is False)
    return (
        f"  {name:<26} n={len(errs):>3}  mean|err| {sum(absolute) / len(absolute):6.1%}  "
        f"bias {sum(errs) / len(errs):+6.1%}  worst {worst.error:+7.1%} ({worst.run['id']})  "
        f"within ±10% {sum(a <= 0.10 for a in absolute):>3}  ±20% {sum(a <= 0.20 for a in absolute):>3}  "
        f"not-fit {not_fit}"
    )


def hopper_fit_subset(runs: list[dict]) -> list[dict]:
    """The runs `cost.GEMM_FRACTION['hopper']` is fitted on: single-node (8-GPU) H100 BF16 runs,
    whose communication stays on NVLink, so compute dominates what the fit sees; represented
    exactly (`approximations` empty), so that no approximation of the run's own recipe is fitted
    into the GPU's efficiency."""
    return [
        r
        for r in runs
        if r["hardware"]["gpu"] == "h100-sxm"
        and r["hardware"]["gpus"] == 8
        and "fp8" not in str(r["precision"]).lower()
        and representable(r) is None
        and not approximations(r)
    ]


def fit_hopper(runs: list[dict]) -> float:
    """Least squares in log error of tokens/s over `hopper_fit_subset` (golden section)."""
    import math

    from llmspec.plan import cost

    subset = hopper_fit_subset(runs)

    def loss(frac: float) -> float:
        cost.set_gemm_fraction("hopper", frac)
        errs = [evaluate(r).error for r in subset]
        return sum(math.log(1 + e) ** 2 for e in errs if e is not None)

    lo, hi = 0.3, 0.95
    golden = (math.sqrt(5) - 1) / 2
    for _ in range(20):
        a, b = hi - golden * (hi - lo), lo + golden * (hi - lo)
        if loss(a) < loss(b):
            hi = b
        else:
            lo = a
    print(f"fitted on {len(subset)} runs: " + ", ".join(r["id"] for r in subset))
    return (lo + hi) / 2


SUMMARY = Path(__file__).resolve().parent.parent / "llmspec" / "plan" / "validation_summary.py"


def write_summary(predicted: list[Result]) -> None:
    """The per-run errors `llmspec.plan.uncertainty` reads, as a generated Python module."""
    rows = sorted(
        (
            {
                "id": r.run["id"],
                "regime": r.regime_key,
                "error": round(r.error, 4),
                "gpus": r.run["hardware"]["gpus"],
            }
            for r in predicted
            if r.regime_key
        ),
        key=lambda row: row["id"],
    )
    lines = [
        '"""Generated by `python benchmarks/published_runs.py --write-summary`: do not edit.',
        "",
        "One row per published run the planner predicts (benchmarks/published_runs.yaml):",
        "its regime (GPU generation | parallelism | scale, `llmspec.plan.uncertainty`) and",
        "the error of the predicted tokens/s with the published layout pinned, and its GPU count.",
        '"""',
        "",
        "# (id, regime, error, gpus)",
        "ROWS: list[tuple[str, str, float, int]] = [",
    ]
    lines += [
        f"    ({json.dumps(row['id'])}, {json.dumps(row['regime'])}, {row['error']!r},"
        f" {row['gpus']}),"
        for row in rows
    ]
    lines += [
        "]",
        "",
        'RUNS: list[dict] = [{"id": i, "regime": r, "error": e, "gpus": n} for i, r, e, n in ROWS]',
        "",
    ]
    SUMMARY.write_text("\n".join(lines))
    print(f"wrote {SUMMARY} ({len(rows)} runs)")


def main(argv: list[str]) -> int:
    data = load()
    if "--fit-hopper" in argv:
        print(f"cost.GEMM_FRACTION['hopper'] = {fit_hopper(data['runs']):.3f}")
        return 0
    sources = data["sources"]
    results = [evaluate(run) for run in data["runs"]]
    predicted = [r for r in results if r.error is not None]
    header = (
        f"{'run id':<38} {'source':<34} {'GPU':<7} {'n':>5} {'layout (UPPER=pinned)':<30} "
        f"{'published':>24} {'pred':>12} {'pub tok/s':>9} {'pred tok/s':>10} {'error':>8} {'fits':>4}"
    )
    print(header)
    print("-" * len(header))
    for r in predicted:
        run = r.run
        flag = "~" if r.approx else " "
        print(
            f"{run['id']:<38} {short_source(run, sources):<34} {gpu_label(run):<7} "
            f"{run['hardware']['gpus']:>5} {r.layout:<30} {published_text(run):>24} "
            f"{predicted_text(r):>12} {r.published_tps:>9.0f} {r.predicted_tps:>10.0f} "
            f"{r.error:>+7.1%}{flag} {fits_text(r):>4} {r.imbalance:>4.0%}"
        )
    print("\n~ = represented approximately:")
    for r in predicted:
        if r.approx:
            print(f"  {r.run['id']}: {'; '.join(r.approx)}")
    print(
        "\nNot fitting: published layouts the planner says do not fit (planned peak + runtime reserve / capacity, GiB):"
    )
    for r in predicted:
        if r.fits is False:
            print(
                f"  {r.run['id']}: {r.peak_gib:.1f} + {r.overhead_gib:.1f} / {r.capacity_gib:.1f}"
                f"  ({r.layout}){measured_memory(r.run)}"
            )
    print(
        "\nFit only after re-partitioning (rep): the even layer split the run used is predicted"
        " not to fit (even-split peak + reserve / capacity, GiB):"
    )
    for r in predicted:
        if r.fits and r.even_split_fits is False:
            print(
                f"  {r.run['id']}: {r.even_split_gib:.1f} / {r.capacity_gib:.1f}  ({r.layout}); "
                f"planned partition is {r.imbalance:+.0%} imbalanced"
            )
    skipped = [r for r in results if r.error is None]
    print(f"\nNot predicted ({len(skipped)} runs, kept in the set):")
    for r in skipped:
        why = r.reason or "published throughput not derivable"
        print(f"  {r.run['id']} [{gpu_label(r.run)}, {published_text(r.run)}]: {why}")

    exact = [r for r in predicted if not r.approx]
    print(
        f"\nSummary over {len(predicted)} predicted runs of {len(results)} "
        f"({len(exact)} represented exactly, {len(predicted) - len(exact)} approximately, "
        f"{len(skipped)} not predicted):"
    )
    print(stats_line("all predicted", predicted))
    print(stats_line("exact only", exact))
    current = [r for r in predicted if r.run.get("zero3_runtime") != "deepspeed-2021"]
    print(stats_line("without DeepSpeed-2021 ZeRO-3", current))
    optimistic = sum(1 for r in predicted if r.error > 0)
    print(f"  planner faster than published on {optimistic}/{len(predicted)} runs")
    for title, key in (
        ("GPU", gpu_label),
        ("regime", None),
        ("precision", precision_label),
        ("model size", params_bucket),
        ("GPU count", gpus_bucket),
        ("source", lambda run: run["source"]["doc"]),
        # The same software at the same sizes, with and without recomputation: a bias that
        # splits by recompute is a cost the model puts on the wrong side of that choice.
        ("GPU and recompute", recompute_label),
    ):
        groups: dict[str, list[Result]] = defaultdict(list)
        for r in predicted:
            groups[regime(r) if key is None else key(r.run)].append(r)
        print(f"By {title}:")
        for name in sorted(groups):
            print(stats_line(name, groups[name]))

    print("Prediction bands by regime (llmspec.plan.uncertainty, from the committed summary):")
    from llmspec.plan import uncertainty
    from llmspec.plan.validation_summary import RUNS as SUMMARY_RUNS

    for key in sorted({row["regime"] for row in SUMMARY_RUNS}):
        u = uncertainty.assess_regime(*key.split("|"))
        print(
            f"  {key:<28} n={u.covered_runs:>3}  mean|err| {u.mean_abs_error:6.1%}  "
            f"band ±{u.band:.0%}  up to {uncertainty.covered_gpus(key):>5} GPUs  "
            f"{'validated' if u.validated else 'NOT validated'}"
        )
    if "--write-summary" in argv:
        write_summary(predicted)
    if "--json" in argv:
        out = Path(argv[argv.index("--json") + 1])
        rows = [
            {
                "id": r.run["id"],
                "reason": r.reason,
                "approximations": r.approx,
                "published_tokens_per_s_per_gpu": r.published_tps,
                "predicted_tokens_per_s_per_gpu": r.predicted_tps,
                "error": r.error,
                "fits": r.fits,
                "even_split_fits": r.even_split_fits,
                "layout": r.layout,
                "regime": regime(r) if r.error is not None else None,
                "breakdown_s": r.breakdown,
                "stage_imbalance": r.imbalance,
            }
            for r in results
        ]
        out.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
