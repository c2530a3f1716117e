"""`llmspec build SPEC [-o DIR] [--check] [--layout k=v,...]`: write the training project."""

from __future__ import annotations

import argparse
import sys

from rich.markup import escape

from llmspec.cli.output import plain, stderr_console
from llmspec.pipeline import build_project

EXAMPLES = """examples:
  llmspec build specs/tiny-cpu.yaml                 write generated/tiny-cpu/
  llmspec build specs/tiny-cpu.yaml -o /tmp/run1    somewhere else
  llmspec build specs/gpt2-small.yaml --layout zero_stage=3,micro_batch_size=4
  llmspec build specs/tiny-cpu.yaml --check         exit 1 if generated/ drifted from the spec
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "build",
        help="render the runnable DeepSpeed training project of a spec",
        description="Plan SPEC and render its training project (model.py, train.py, "
        "ds_config.json, launch files, README) into DIR.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("spec", metavar="SPEC", help="spec YAML file")
    parser.add_argument(
        "-o", "--out", metavar="DIR", default=None, help="output folder (default generated/<name>)"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; show how DIR differs from a fresh build and exit 1 if it does",
    )
    parser.add_argument(
        "--layout",
        metavar="K=V,...",
        default=None,
        help="pin layout fields, e.g. data=2,zero_stage=3,micro_batch_size=4",
    )
    parser.set_defaults(func=run)


def run(args) -> int:
    console = stderr_console()
    result = build_project(args.spec, args.out, check=args.check, layout=args.layout)
    for note in result.notes:
        console.print(f"[yellow]note:[/] {_esc(note)}")
    if args.check:
        if result.ok:
            console.print(f"{_esc(str(result.out_dir))}: up to date ({len(result.files)} files)")
            return 0
        sys.stdout.write(result.diff)
        console.print(
            f"[bold red]drift:[/] {len(result.drift)} file(s) in {_esc(str(result.out_dir))} "
            f"differ from the spec: {_esc(', '.join(result.drift))}"
        )
        console.print(f"  [cyan]update with:[/] {_esc(result.regenerate)}")
        return 1
    changed = len(result.written) + len(result.removed) + len(result.kept)
    summary = f"wrote {len(result.written)} of {len(result.files)} files"
    if result.removed:
        summary += f", removed {len(result.removed)} stale ({', '.join(result.removed)})"
    if result.kept:
        summary += (
            f"; kept {len(result.kept)} no longer generated but edited by hand "
            f"({', '.join(result.kept)})"
        )
    console.print(
        f"{_esc(str(result.out_dir))}: {_esc(summary)}"
        if changed
        else f"{_esc(str(result.out_dir))}: up to date ({len(result.files)} files)"
    )
    return 0


def _esc(text: str) -> str:
    """User text inside rich markup: markup escaped, control characters spelled out."""
    return escape(plain(text))
