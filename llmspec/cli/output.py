"""Terminal output: people read stderr (rich, colour only on a terminal), machines read stdout."""

from __future__ import annotations

import os
import sys

from rich.console import Console

from llmspec.errors import UserError


def stderr_console() -> Console:
    # rich already honours NO_COLOR; a fixed width keeps test output stable when piped.
    tty = sys.stderr.isatty()
    return Console(
        stderr=True,
        highlight=False,
        soft_wrap=not tty,
        width=None if tty else int(os.environ.get("COLUMNS", "100")),
    )


def stdout_console() -> Console:
    tty = sys.stdout.isatty()
    return Console(
        highlight=False,
        soft_wrap=not tty,
        width=None if tty else int(os.environ.get("COLUMNS", "100")),
    )


def print_error(exc: UserError) -> None:
    console = stderr_console()
    if not exc.problems:
        console.print(f"[bold red]error:[/] {exc}", markup=True)
        return
    for p in exc.problems:
        loc = p.location()
        field = f"[bold]{p.field}[/]: " if p.field else ""
        console.print(f"{_esc(loc)}: [bold red]error:[/] {field}{_esc(p.message)}", markup=True)
        if p.hint:
            console.print(f"  [cyan]hint:[/] {_esc(p.hint)}", markup=True)
    if len(exc.problems) > 1:
        console.print(f"{len(exc.problems)} problems found", markup=False)


def _esc(text: str) -> str:
    from rich.markup import escape

    return escape(text)
