"""`llmspec check` (validate + build --check, for hooks and CI) and `llmspec init-ci`."""

from __future__ import annotations

import argparse
from pathlib import Path

from llmspec.cli.output import plain, stderr_console
from llmspec.errors import SpecError, UserError
from llmspec.pipeline import build_project
from llmspec.spec.load import load_spec

PRE_COMMIT = """\
# llmspec: every spec validates and its generated project is up to date (`llmspec check`).
repos:
  - repo: local
    hooks:
      - id: llmspec-check
        name: llmspec check (validate specs, generated/ up to date)
        entry: llmspec check
        language: system
        files: ^({specs}/.*\\.ya?ml|generated/.*)$
        pass_filenames: false
"""

WORKFLOW = """\
# llmspec on pull requests: specs validate, generated/ is current, and the PR gets a comment
# with what each changed spec does to the run (`llmspec diff --markdown`).
name: llmspec
on: pull_request
permissions:
  contents: read
  pull-requests: write
jobs:
  llmspec:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
        with:
          fetch-depth: 0
      - uses: actions/setup-python@v5
        with:
          python-version: "3.11"
      - run: pip install llmspec
      - name: validate and check generated/
        run: llmspec check {specs}/*.yaml
      - name: plan diff of the changed specs
        env:
          GH_TOKEN: ${{{{ github.token }}}}
        run: |
          base="origin/${{{{ github.base_ref }}}}"
          : > diff.md
          for spec in $(git diff --name-only "$base"...HEAD -- '{specs}/*.yaml'); do
            llmspec diff --markdown --git "$base" "$spec" >> diff.md || true
          done
          if [ -s diff.md ]; then
            cat diff.md >> "$GITHUB_STEP_SUMMARY"
            gh pr comment "${{{{ github.event.pull_request.number }}}}" --body-file diff.md
          fi
"""


def register(subparsers) -> None:
    check = subparsers.add_parser(
        "check",
        help="validate specs and check their generated projects are up to date (hooks, CI)",
        description="For each SPEC: validate it, then compare generated/<name> with a fresh "
        "build (bytes and modes). Exit 1 on drift, with the command that fixes it; 2 on a bad "
        "spec.",
        epilog="example:\n  llmspec check specs/*.yaml\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("specs", metavar="SPEC", nargs="*", help="spec files (default specs/*.yaml)")
    check.set_defaults(func=run_check)
    init = subparsers.add_parser(
        "init-ci",
        help="write a pre-commit hook and a GitHub Actions workflow that run llmspec check/diff",
        description="Write .pre-commit-config.yaml and .github/workflows/llmspec.yml into DIR "
        "(never over an existing file).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    init.add_argument("--dir", default=".", metavar="DIR", help="repository root (default .)")
    init.add_argument("--specs", default="specs", metavar="FOLDER", help="where the specs live")
    init.set_defaults(func=run_init)


def run_check(args) -> int:
    console = stderr_console()
    specs = [Path(s) for s in args.specs] or sorted(Path("specs").glob("*.yaml"))
    if not specs:
        raise UserError("no specs given and none in specs/")
    drifted, invalid = [], []
    for spec in specs:
        try:
            load_spec(spec)
            result = build_project(spec, check=True)
        except SpecError as exc:
            invalid.append((spec, exc))
            continue
        if not result.ok:
            drifted.append(result)
    for spec, exc in invalid:
        console.print(plain(f"{spec}: {len(exc.problems)} problem(s); `llmspec validate {spec}`"))
    for result in drifted:
        console.print(
            plain(
                f"{result.out_dir}: out of date ({', '.join(result.drift)}); fix: {result.regenerate}"
            )
        )
    if invalid:
        return 2
    if drifted:
        return 1
    console.print(plain(f"llmspec check: {len(specs)} spec(s) valid, generated/ up to date"))
    return 0


def run_init(args) -> int:
    root = Path(args.dir)
    files = {
        root / ".pre-commit-config.yaml": PRE_COMMIT.format(specs=args.specs),
        root / ".github" / "workflows" / "llmspec.yml": WORKFLOW.format(specs=args.specs),
    }
    existing = [str(p) for p in files if p.exists()]
    if existing:
        raise UserError(f"not overwriting {', '.join(existing)}; move them away, or merge by hand")
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        stderr_console().print(plain(f"wrote {path}"))
    return 0
