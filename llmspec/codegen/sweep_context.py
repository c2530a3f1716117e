"""What `sweep.py` and a sweep's train.py / launch.sh place (contract 5, `sweep:`).

The pipeline plans every structural variant of the space (`llmspec.spec.sweep_space`) with
the real planner and hands the outcome here as `Variant`s; this module turns them and the
spec's runtime parameters into plain data the templates print. Nothing here plans.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from llmspec.spec.sweep_space import RUNTIME_PATHS, finite_values, runtime_params
from llmspec.units import GIB

VARIANTS_DIR = "sweep/variants"


@dataclass(frozen=True)
class Variant:
    """One structural variant: its overrides and what the planner said about them."""

    id: str
    overrides: dict
    fits: bool
    reason: str | None = None  # why it cannot run (the planner's words, or the spec check's)
    peak_bytes: int | None = None  # planned peak per GPU
    capacity_bytes: int | None = None
    project: str | None = None  # folder of its project, relative to the sweep's project
    data: str | None = None  # project whose prepare_data.py its data comes from ("." = the root)


@dataclass(frozen=True)
class SweepContext:
    driver: bool  # the sweep's own project: emits sweep.py
    trials: int = 0
    metric: str = "val_loss"
    direction: str = "minimize"
    pruner: str = "median"
    pruner_startup_trials: int = 3
    pruner_warmup_steps: int = 0
    seed: int = 0
    structural: list = field(default_factory=list)  # [{path, values}]
    runtime: list = field(default_factory=list)  # [{path, setting, kind, low, high, log, values}]
    variants: list = field(default_factory=list)  # [Variant as a dict]
    single_variant: bool = False  # no structural parameter: trials run the sweep's own project
    tracked: bool = False  # MLflow or W&B is on: each trial's run is named (and grouped)

    @property
    def runtime_table(self) -> dict:
        """sweep.py's RUNTIME: path → how Optuna draws it."""
        table = {}
        for r in self.runtime:
            if r["kind"] == "categorical":
                table[r["path"]] = {"kind": "categorical", "values": r["values"]}
            else:
                table[r["path"]] = {
                    "kind": r["kind"],
                    "low": r["low"],
                    "high": r["high"],
                    "log": r["log"],
                }
        return table

    @property
    def runtime_text(self) -> str:
        """README.md's words for the runtime parameters."""
        if not self.runtime:
            return "no runtime parameter"
        return ", ".join(r["path"] for r in self.runtime) + " (runtime: `train.py --set`)"

    @property
    def readme_rows(self) -> list[dict]:
        """The variants as README.md's table shows them (markdown-safe strings)."""
        rows = []
        for v in self.variants:
            overrides = ", ".join(f"`{k}` = {val!r}" for k, val in v["overrides"].items())
            peak, capacity = v["planned_peak_gib"], v["gpu_memory_gib"]
            rows.append(
                {
                    "id": v["id"],
                    "overrides": _cell(overrides) or "(the spec as written)",
                    "fits": "yes" if v["fits"] else "**no**",
                    "memory": "" if peak is None else f"{peak:g} of {capacity:g} GiB",
                    "where": f"`{v['project']}/`" if v["fits"] else _cell(v["reason"] or ""),
                }
            )
        return rows

    @property
    def structural_table(self) -> dict:
        """sweep.py's STRUCTURAL: path → the values its variants were planned with."""
        return {s["path"]: s["values"] for s in self.structural}


def _cell(text: str) -> str:
    """Text safe in one markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


def runtime_param_rows(sweep) -> list[dict]:
    rows = []
    for path, dist in runtime_params(sweep).items():
        row = {"path": path, "setting": RUNTIME_PATHS[path], "low": None, "high": None}
        if dist.log_uniform is not None or dist.uniform is not None:
            low, high = dist.log_uniform or dist.uniform
            row.update(
                kind="float", low=float(low), high=float(high), log=dist.log_uniform is not None
            )
        elif dist.integer is not None:
            row.update(kind="int", low=dist.integer[0], high=dist.integer[1], log=False)
        else:
            row.update(kind="categorical", values=finite_values(dist), log=False)
        rows.append(row)
    return rows


def variant_row(v: Variant) -> dict:
    return {
        "id": v.id,
        "overrides": dict(v.overrides),
        "fits": v.fits,
        "reason": v.reason,
        "planned_peak_gib": None if v.peak_bytes is None else round(v.peak_bytes / GIB, 3),
        "gpu_memory_gib": None if v.capacity_bytes is None else round(v.capacity_bytes / GIB, 3),
        "project": v.project,
        "data": v.data,
    }


def sweep_context(spec, variants: list[Variant] | None, *, driver: bool) -> SweepContext | None:
    """None without a `sweep:` section; `driver` for the sweep's own project (sweep.py)."""
    sweep = spec.sweep
    if sweep is None:
        return None
    structural = [
        {"path": path, "values": finite_values(dist)}
        for path, dist in sweep.params.items()
        if path not in RUNTIME_PATHS
    ]
    return SweepContext(
        driver=driver,
        trials=sweep.trials,
        metric=sweep.metric,
        direction=sweep.direction,
        pruner=sweep.pruner,
        pruner_startup_trials=sweep.pruner_startup_trials,
        pruner_warmup_steps=sweep.pruner_warmup_steps,
        seed=sweep.seed,
        structural=structural,
        runtime=runtime_param_rows(sweep),
        variants=[variant_row(v) for v in variants or ()],
        single_variant=not structural,
        tracked=spec.tracking.mlflow or spec.tracking.wandb,
    )
