"""A sweep's search space, split by what a value changes.

*Runtime* parameters only change values that train.py reads at start-up (the learning rate,
its schedule, weight decay, clipping, the seed): one generated project runs every value,
`sweep.py` passes them as `train.py --set PATH=VALUE`. Every other parameter is *structural*:
it changes the plan (memory, layout) or the generated model.py / ds_config.json, so each of
its values is planned at build time and, if it fits, built into its own project under
`sweep/variants/<id>/`. Structural parameters must therefore be finite (`choice` or `int`),
and their product is capped.
"""

from __future__ import annotations

import itertools

from llmspec.spec.posttrain import Distribution, SweepSpec

# dotted spec path → the train.py setting that `--set` replaces (templates/train.py.j2)
RUNTIME_PATHS = {
    "train.optimizer.lr": "learning_rate",
    "train.optimizer.weight_decay": "weight_decay",
    "train.optimizer.eps": "adam_eps",
    "train.schedule.warmup_steps": "warmup_steps",
    "train.schedule.min_lr": "min_lr",
    "train.grad_clip": "grad_clip",
    "train.seed": "seed",
}
MAX_VARIANTS = 64  # structural variants a build plans and writes (one project each)


def is_runtime(path: str) -> bool:
    return path in RUNTIME_PATHS


def finite_values(dist: Distribution) -> list | None:
    """Every value of a finite distribution (choice, int range); None for a continuous one."""
    if dist.choice is not None:
        return list(dist.choice)
    if dist.integer is not None:
        low, high = dist.integer
        return list(range(low, high + 1)) if high - low < 10 * MAX_VARIANTS else None
    return None


def finite_count(dist: Distribution) -> int | None:
    if dist.choice is not None:
        return len(dist.choice)
    if dist.integer is not None:
        return dist.integer[1] - dist.integer[0] + 1
    return None


def structural_params(sweep: SweepSpec) -> dict[str, Distribution]:
    return {k: v for k, v in sweep.params.items() if not is_runtime(k)}


def runtime_params(sweep: SweepSpec) -> dict[str, Distribution]:
    return {k: v for k, v in sweep.params.items() if is_runtime(k)}


def variant_count(sweep: SweepSpec) -> int | None:
    """How many structural variants the space has; None if a structural one is continuous."""
    total = 1
    for dist in structural_params(sweep).values():
        n = finite_count(dist)
        if n is None:
            return None
        total *= n
    return total


def structural_variants(sweep: SweepSpec) -> list[dict]:
    """Every combination of the structural values, in the order the spec lists them
    (the first parameter varies slowest); [{}] when no parameter is structural."""
    params = structural_params(sweep)
    values = [finite_values(d) for d in params.values()]
    if any(v is None for v in values):
        raise ValueError("a structural sweep parameter is continuous")
    return [dict(zip(params, combo, strict=True)) for combo in itertools.product(*values)]


def set_dotted(data: dict, path: str, value) -> None:
    """Set `a.b.c` in nested dicts, creating missing levels (a section left to its defaults)."""
    *parents, leaf = path.split(".")
    node = data
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[leaf] = value
