"""`llmspec` command line: a thin dispatcher over one module per command group.

Each module in COMMAND_MODULES exposes `register(subparsers)`, which adds its
sub-commands and sets `func(args) -> int` on them.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from llmspec import __version__
from llmspec.cli.output import print_error
from llmspec.errors import UserError

COMMAND_MODULES = (
    "llmspec.cli.spec_cmd",
    "llmspec.cli.build_cmd",
    "llmspec.cli.plan_cmd",
    "llmspec.cli.diff_cmd",
    "llmspec.cli.report_cmd",
    "llmspec.cli.ci_cmd",
    "llmspec.cli.import_cmd",
)

EPILOG = """examples:
  llmspec validate specs/*.yaml          check specs; every problem with file:line:col and a hint
  llmspec show specs/llama2-7b.yaml      the fully resolved spec (extends, preset, defaults)
  llmspec plan specs/gpt3-175b.yaml      choose the layout: memory per GPU, step time, why
  llmspec build specs/tiny-cpu.yaml      write the runnable project to generated/tiny-cpu/
  llmspec diff --git main SPEC           what a change does: fields, layout, memory, speed, files
  llmspec report SPEC -o plan.html       the plan as a page: memory per stage, schedule, alternatives
  llmspec check specs/*.yaml             validate + generated/ up to date (pre-commit, CI)
  llmspec init-ci                        a pre-commit hook and a GitHub Actions workflow
  llmspec schema > llmspec.schema.json   JSON Schema for editors (yaml-language-server)
  llmspec hardware                       the GPU catalog with datasheet figures
  llmspec presets                        named architectures for model.preset
  llmspec import hf ./Llama-3.2-1B       a spec from a Hugging Face model's config.json

A bad spec exits 2 and prints every problem as FILE:LINE:COL: error: FIELD: MESSAGE.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llmspec",
        description="Compile a typed YAML spec of an LLM training run into a plan and a runnable DeepSpeed project.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"llmspec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print_error(exc)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
