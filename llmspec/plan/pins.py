"""Pinned layout fields: from the spec (anything not `auto`) and from `--layout k=v,...`.

A pin is never overridden: the search evaluates only layouts that keep it, and
a pin that breaks a layout rule is rejected here with the rule's reason.
"""

from __future__ import annotations

from llmspec.errors import UserError
from llmspec.rules import layout as rules

INT_FIELDS = ("data", "tensor", "pipeline", "zero_stage", "micro_batch_size", "grad_accum_steps")
CHOICE_FIELDS = {
    "activation_checkpointing": ("none", "selective", "ops", "full"),
    "offload_optimizer": ("none", "cpu", "nvme"),
    "offload_params": ("none", "cpu", "nvme"),
}
OFFLOAD_FIELDS = ("offload_optimizer", "offload_params")
BOOL_WORDS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def parse_layout_text(text: str | None) -> dict[str, str]:
    """`data=2,zero_stage=3` → {"data": "2", "zero_stage": "3"}; values are checked by
    `normalize_pins`."""
    pins: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise UserError(f"--layout: cannot read {item!r}; write key=value, e.g. tensor=4")
        if key in pins:
            raise UserError(
                f"--layout: {key} is given twice ({key}={pins[key]} and {item}); "
                "give each field once"
            )
        pins[key] = value
    return pins


def normalize_pins(pins: dict | None) -> dict:
    """Check and convert pins ({"tensor": "4"} → {"tensor": 4}); `auto` unpins."""
    out: dict = {}
    for key, value in (pins or {}).items():
        if value in ("auto", None):
            continue
        if key in INT_FIELDS:
            try:
                number = int(value)
            except (TypeError, ValueError):
                raise UserError(f"--layout {key}={value}: expected a positive integer") from None
            if number < (0 if key == "zero_stage" else 1) or (
                key == "zero_stage" and number not in rules.ZERO_STAGES
            ):
                raise UserError(f"--layout {key}={value}: out of range")
            out[key] = number
        elif key == "sequence_parallel":
            text = str(value).lower()
            if text not in BOOL_WORDS:
                raise UserError(f"--layout sequence_parallel={value}: expected true or false")
            out[key] = BOOL_WORDS[text]
        elif key in CHOICE_FIELDS:
            if value not in CHOICE_FIELDS[key]:
                choices = ", ".join(CHOICE_FIELDS[key])
                raise UserError(f"--layout {key}={value}: expected one of {choices}")
            out[key] = value
        else:
            known = ", ".join(INT_FIELDS + ("sequence_parallel",) + tuple(CHOICE_FIELDS))
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
    # Offload has no `auto`: its documented default, "none", means none, and a documented
    # default is never overridden. A spec that fits only with offload is told so
    # (`plan.fit_hints`: "set parallel.offload_optimizer: cpu"); `--layout
    # offload_optimizer=auto` lets the planner choose.
    for key in OFFLOAD_FIELDS:
        pins[key] = getattr(par, key)
    return {k: v for k, v in pins.items() if v != "auto"}


def user_pins(pins) -> tuple[tuple[str, object], ...]:
    """The pins a person chose: every pin except offload left at its default, "none"."""
    return tuple((k, v) for k, v in pins if not (k in OFFLOAD_FIELDS and v == "none"))


def default_pins(pins) -> tuple[tuple[str, object], ...]:
    """The pins that are documented defaults (offload "none"): kept when others are dropped."""
    return tuple((k, v) for k, v in pins if k in OFFLOAD_FIELDS and v == "none")


def check_pins(pins: dict, world: int, cluster_text: str, frozen_base: bool = False) -> None:
    """The layout rules, for pins that arrive by --layout (the spec's own pins are checked
    with file positions by llmspec.spec.checks, through the same rules)."""
    if all(k in pins for k in ("data", "tensor", "pipeline")):
        why = rules.degrees_fill_world(pins["data"], pins["tensor"], pins["pipeline"], world)
        if why:
            raise UserError(f"{why} ({cluster_text})")
    zero, pipeline = pins.get("zero_stage"), pins.get("pipeline")
    reasons = []
    if zero is not None and pipeline is not None:
        reasons.append(rules.pipeline_allows_zero_stage(pipeline, zero))
    if zero is not None:
        reasons.append(rules.offload_params_needs_zero3(pins.get("offload_params", "none"), zero))
        reasons.append(
            rules.offload_optimizer_needs_zero(pins.get("offload_optimizer", "none"), zero)
        )
    if "activation_checkpointing" in pins:
        reasons.append(
            rules.ops_recompute_needs_trained_base(pins["activation_checkpointing"], frozen_base)
        )
    if "activation_checkpointing" in pins and "tensor" in pins:
        reasons.append(
            rules.ops_recompute_needs_one_tensor_rank(
                pins["activation_checkpointing"], pins["tensor"]
            )
        )
    if "sequence_parallel" in pins and "tensor" in pins:
        reasons.append(
            rules.sequence_parallel_needs_tensor(pins["sequence_parallel"], pins["tensor"])
        )
    for why in reasons:
        if why:
            raise UserError(why)
