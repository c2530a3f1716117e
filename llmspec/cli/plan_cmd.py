"""`llmspec plan SPEC`: choose the parallel layout, predict memory and speed, explain."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from llmspec.cli.output import stderr_console, stdout_console
from llmspec.errors import UserError

HELP = "choose the parallel layout; memory per GPU, step time, alternatives"
EXAMPLES = """examples:
  llmspec plan specs/gpt2-small.yaml                     tables: layout, memory, speed, alternatives
  llmspec plan specs/gpt2-small.yaml --json              contract-2 JSON on stdout
  llmspec plan spec.yaml --layout tensor=4,pipeline=2    evaluate a pinned layout
  llmspec plan spec.yaml --dot plan.dot                  Graphviz: layers → stages → GPUs
"""


def register(subparsers) -> None:
    import argparse

    parser = subparsers.add_parser(
        "plan",
        help=HELP,
        description="Search every parallel layout of the spec's cluster, pick the fastest that "
        "fits, and show why. Exits 2 when nothing fits (the JSON is still printed with --json).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("spec", help="spec file (YAML)")
    parser.add_argument(
        "--layout",
        default="",
        metavar="K=V,...",
        help="pin layout fields, e.g. data=2,tensor=4,pipeline=1,zero_stage=1,micro_batch_size=2,"
        "activation_checkpointing=selective,sequence_parallel=true",
    )
    parser.add_argument("--json", action="store_true", help="print contract-2 JSON only, on stdout")
    parser.add_argument("--dot", metavar="FILE", help="write the stage/device graph for Graphviz")
    parser.add_argument(
        "--measure",
        action="store_true",
        help="also measure one step of the generated model on CPU (FakeTensorMode + MemTracker)",
    )
    parser.add_argument("--top", type=int, default=5, metavar="N", help="alternatives to show")
    parser.set_defaults(func=run)


def parse_layout(text: str) -> dict:
    """'data=2,tensor=4' → {'data': '2', 'tensor': '4'} (values checked by normalize_pins)."""
    pins = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise UserError(f"--layout: cannot read {item!r}; write key=value, e.g. tensor=4")
        if key.strip() in pins:
            raise UserError(
                f"--layout: {key.strip()} is given twice ({key.strip()}={pins[key.strip()]} and "
                f"{item}); give each field once"
            )
        pins[key.strip()] = value.strip()
    return pins


def run(args) -> int:
    from llmspec.plan import make_plan
    from llmspec.plan.plan_report import render, to_dot
    from llmspec.spec.load import load_spec

    spec = load_spec(args.spec)
    plan = make_plan(spec, pins=parse_layout(args.layout), top=max(0, args.top))
    if args.json:
        sys.stdout.write(json.dumps(plan.to_dict(), indent=2) + "\n")
    else:
        stdout_console().print(render(plan))
    if args.dot:
        Path(args.dot).write_text(to_dot(plan))
    if args.measure:
        _measure(spec, plan, to_stderr=args.json)
    if not plan.fits:
        console = stderr_console()
        console.print(f"[bold red]error:[/] {plan.name} does not fit on {plan.cluster.gpu.name}")
        for line in plan.explanation:
            if line.startswith("fix:"):
                console.print(f"  [cyan]hint:[/] {line[4:].strip()}", markup=True)
        return 2
    return 0


def _measure(spec, plan, *, to_stderr: bool) -> None:
    """Predicted vs measured for the plan's micro-batch and recompute on one device."""
    from dataclasses import replace

    from rich.table import Table

    from llmspec.plan.measure import CATEGORIES, measure_step
    from llmspec.plan.memory import estimate_memory
    from llmspec.plan.types import Layout, ModelDims

    single = replace(
        Layout(),
        micro_batch_size=plan.layout.micro_batch_size,
        activation_checkpointing=plan.layout.activation_checkpointing,
    )
    # Predicted for the kernels the measurement runs (CPU), so the two count the same tensors.
    dims = ModelDims.from_spec(spec)
    predicted = estimate_memory(dims, single, spec.train.precision, kernels="cpu")
    measured = measure_step(spec, single)
    table = Table(
        title=f"Predicted vs measured, one device, micro-batch {single.micro_batch_size}, "
        f"recompute {single.activation_checkpointing} (GiB; measured in {measured.seconds:.1f} s)",
        title_justify="left",
    )
    for col in ("category", "predicted", "measured", "error"):
        table.add_column(col, justify="left" if col == "category" else "right")
    for cat in (*CATEGORIES, "total"):
        p, m = getattr(predicted, cat), getattr(measured, cat)
        err = f"{(p - m) / m:+.1%}" if m else "—"
        table.add_row(cat, f"{p / 1024**3:.3f}", f"{m / 1024**3:.3f}", err)
    (stderr_console() if to_stderr else stdout_console()).print(table)
