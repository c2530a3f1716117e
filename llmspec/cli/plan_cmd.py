"""`llmspec plan SPEC`: choose the parallel layout, predict memory and speed, explain."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from llmspec.cli.output import stderr_console, stdout_console
from llmspec.cli.plan_report import comparison_table, ppo_comparison_table, render, to_dot
from llmspec.pipeline import plan_spec
from llmspec.spec.load import load_spec
from llmspec.verify.measure import measure_against_plan, measure_ppo_against_plan

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


def run(args) -> int:
    spec = load_spec(args.spec)
    plan = plan_spec(spec, args.layout, top=max(0, args.top))
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
    """Predicted vs measured for one rank of the plan's layout (verify.measure_against_plan;
    objective ppo: the four models and one actor + critic update, measure_ppo_against_plan)."""
    console = stderr_console() if to_stderr else stdout_console()
    if plan.ppo is not None:
        layout, planned, measured = measure_ppo_against_plan(spec, plan)
        console.print(
            ppo_comparison_table(
                planned,
                measured,
                title=f"PPO update, planned vs measured, one rank at ZeRO 0, micro-batch "
                f"{layout.micro_batch_size}, recompute {layout.activation_checkpointing} "
                f"(measured in {measured.seconds:.1f} s)",
            )
        )
        return
    layout, predicted, measured = measure_against_plan(spec, plan)
    table = comparison_table(
        predicted,
        measured,
        title=f"Predicted vs measured, one rank (tensor {layout.tensor}), micro-batch "
        f"{layout.micro_batch_size}, "
        f"recompute {layout.activation_checkpointing} (GiB; measured in {measured.seconds:.1f} s)",
    )
    console.print(table)
