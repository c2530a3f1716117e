"""`llmspec report SPEC -o report.html`: the plan as a self-contained HTML page."""

from __future__ import annotations

import argparse
from pathlib import Path

from llmspec.cli.output import plain, stderr_console
from llmspec.cli.report import report_html
from llmspec.errors import UserError
from llmspec.pipeline import plan_spec
from llmspec.spec.load import load_spec


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "report",
        help="the plan as one HTML page: memory per stage, pipeline schedule, alternatives",
        description="Plan SPEC and write one self-contained HTML page (inline SVG figures, no "
        "script, nothing fetched when viewed).",
        epilog="example:\n  llmspec report specs/gpt3-175b.yaml -o gpt3-175b.html\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("spec", metavar="SPEC", help="spec YAML file")
    parser.add_argument("-o", "--out", metavar="FILE", required=True, help="the HTML file to write")
    parser.add_argument("--layout", metavar="K=V,...", default=None, help="pin layout fields")
    parser.set_defaults(func=run)


def run(args) -> int:
    spec = load_spec(args.spec)
    page = report_html(plan_spec(spec, args.layout).to_dict())
    out = Path(args.out)
    if out.is_dir():
        raise UserError(f"-o {out}: is a folder; name the HTML file to write")
    try:
        out.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise UserError(f"-o {out}: cannot write ({exc.strerror or exc})") from None
    stderr_console().print(plain(f"{out}: report of {spec.name} ({len(page) // 1024} KiB)"))
    return 0
