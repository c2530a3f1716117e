"""`llmspec diff OLD NEW` / `llmspec diff --git REV SPEC`: what a change does to the run."""

from __future__ import annotations

import argparse
import json
import sys

from rich.console import Group
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from llmspec.cli.output import plain, stdout_console
from llmspec.errors import UserError
from llmspec.review import Figure, RunDiff, diff_git, diff_paths
from llmspec.text import duration
from llmspec.units import GIB

EXAMPLES = """examples:
  llmspec diff specs/tiny-cpu.yaml specs/tiny-cpu-zero2.yaml    two specs
  llmspec diff old/plan.json new/plan.json                     two plans
  llmspec diff --git main specs/llama2-7b.yaml                 the spec at a revision vs now
  llmspec diff --markdown --git origin/main specs/x.yaml       a PR comment
Exit status: 0 when nothing changed, 1 when something did, 2 on bad input.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "diff",
        help="what a spec change does: fields, layout, memory, speed, generated files",
        description="Compare two specs (or plan.json files, or a spec at a git revision with "
        "itself now): the resolved spec field by field with where each value came from, the "
        "plan's layout, memory, step time, throughput, MFU and time to train, and the "
        "generated files.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("old", metavar="OLD", help="spec or plan.json (with --git: the spec)")
    parser.add_argument("new", metavar="NEW", nargs="?", help="spec or plan.json")
    parser.add_argument("--git", metavar="REV", help="compare SPEC at git revision REV with now")
    style = parser.add_mutually_exclusive_group()
    style.add_argument("--markdown", action="store_true", help="markdown (a PR comment)")
    style.add_argument("--json", action="store_true", help="JSON on stdout")
    parser.set_defaults(func=run)


def run(args) -> int:
    if args.git:
        if args.new is not None:
            raise UserError("--git REV takes one spec: llmspec diff --git REV SPEC")
        result = diff_git(args.git, args.old)
    else:
        if args.new is None:
            raise UserError("give two specs (or plan.json files), or --git REV SPEC")
        result = diff_paths(args.old, args.new)
    if args.json:
        sys.stdout.write(json.dumps(result.to_dict(), indent=2, default=str) + "\n")
    elif args.markdown:
        sys.stdout.write(markdown(result))
    else:
        stdout_console().print(terminal(result))
    return 1 if result.changed else 0


# ----------------------------------------------------------------------------- formatting
def value(figure_unit: str, x: float | None) -> str:
    if x is None:
        return "—"
    if figure_unit == "bytes":
        return f"{x / GIB:,.2f} GiB"
    if figure_unit == "fraction":
        return f"{x:.1%}"
    if figure_unit == "s":
        return duration(x)
    return f"{x:,.4g} {figure_unit}" if abs(x) < 1e4 else f"{x:,.0f} {figure_unit}"


def delta(figure: Figure) -> str:
    if figure.delta is None:
        return "—"
    if not figure.delta:
        return "="
    sign = "+" if figure.delta > 0 else "−"
    if figure.unit == "fraction":  # MFU moves in percentage points
        return f"{sign}{abs(figure.delta) * 100:.2f} pt"
    text = sign + value(figure.unit, abs(figure.delta))
    return text + (f" ({figure.relative:+.1%})" if figure.relative is not None else "")


def _moved(result: RunDiff) -> list[Figure]:
    return [f for f in result.figures if f.delta]


def terminal(result: RunDiff) -> Group:
    parts: list = [Text(f"{plain(result.old_name)} → {plain(result.new_name)}", style="bold")]
    if not result.changed:
        parts.append(Text("no change: same spec, same plan, same files"))
        return Group(*parts)
    if result.spec:
        table = Table(title="Spec (resolved)", title_justify="left")
        for col in ("field", "before", "after", "from"):
            table.add_column(col)
        for c in result.spec:
            table.add_row(
                c.path, plain(repr(c.old)), plain(repr(c.new)), plain(c.new_from or c.old_from)
            )
        parts.append(table)
    if result.layout:
        table = Table(title="Layout", title_justify="left")
        for col in ("field", "before", "after"):
            table.add_column(col)
        for c in result.layout:
            table.add_row(c.path, str(c.old), str(c.new))
        parts.append(table)
    moved = _moved(result)
    if moved:
        table = Table(title="Plan", title_justify="left")
        for col in ("figure", "before", "after", "delta"):
            table.add_column(col, justify="left" if col == "figure" else "right")
        for f in moved:
            table.add_row(f.name, value(f.unit, f.old), value(f.unit, f.new), delta(f))
        parts.append(table)
    for path, text in result.files.items():
        parts.append(Text(f"\n{path}", style="bold"))
        parts.append(Syntax(text, "diff", theme="ansi_dark", background_color="default"))
    parts.extend(Text(f"note: {n}") for n in result.notes)
    return Group(*parts)


def _md_cell(text: object) -> str:
    return plain(str(text)).replace("|", "\\|")


def markdown(result: RunDiff) -> str:
    lines = [f"### llmspec diff: `{_md_cell(result.old_name)}` → `{_md_cell(result.new_name)}`", ""]
    if not result.changed:
        return "\n".join([*lines, "No change: same spec, same plan, same generated files.", ""])
    if result.spec:
        lines += ["| spec field | before | after | from |", "|---|---|---|---|"]
        lines += [
            f"| `{c.path}` | `{_md_cell(repr(c.old))}` | `{_md_cell(repr(c.new))}` "
            f"| {_md_cell(c.new_from or c.old_from)} |"
            for c in result.spec
        ]
        lines.append("")
    if result.layout:
        lines += ["| layout | before | after |", "|---|---|---|"]
        lines += [f"| `{c.path}` | {c.old} | {c.new} |" for c in result.layout]
        lines.append("")
    moved = _moved(result)
    if moved:
        lines += ["| plan | before | after | delta |", "|---|---:|---:|---:|"]
        lines += [
            f"| {f.name} | {value(f.unit, f.old)} | {value(f.unit, f.new)} | {delta(f)} |"
            for f in moved
        ]
        lines.append("")
    if result.files:
        lines.append(f"<details><summary>generated files: {len(result.files)} changed</summary>")
        lines.append("")
        for path, text in result.files.items():
            lines += [f"`{path}`", "", "```diff", text.rstrip("\n"), "```", ""]
        lines.append("</details>")
    lines += [f"note: {n}" for n in result.notes]
    return "\n".join(lines) + "\n"
