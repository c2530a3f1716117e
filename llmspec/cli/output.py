"""Terminal output: people read stderr (rich, colour only on a terminal), machines read stdout.

rich turns colour off by itself when the stream is not a terminal and when
NO_COLOR is set; piped output gets a fixed width (COLUMNS, default 100) so
tests and logs do not depend on the terminal that ran them.
"""

from __future__ import annotations

import os
import sys

from rich.console import Console
from rich.text import Text

from llmspec.errors import Problem, UserError
from llmspec.text import escape_unprintable


def _console(stream, stderr: bool) -> Console:
    tty = stream.isatty()
    return Console(
        stderr=stderr,
        file=stream,
        highlight=False,
        emoji=False,  # ":fire:" in a spec value stays ":fire:"; line 100 never reads ":100:"
        soft_wrap=not tty,
        width=None if tty else _columns(),
    )


def plain(text: str) -> str:
    """User text for the terminal: control, format and surrogate characters escaped, and
    spaces other than U+0020 too (a no-break space in a YAML key looks like a space and is
    the bug the user is looking for)."""
    text = escape_unprintable(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == "\n" else _spelled(c) for c in text)


def _spelled(c: str) -> str:
    code = ord(c)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def user_text(text: str, style: str = "") -> Text:
    """User-supplied text as a rich Text: never read as markup or emoji, control characters
    escaped."""
    return Text(plain(text), style=style)


def _columns() -> int:
    try:
        return max(40, int(os.environ.get("COLUMNS", "100")))
    except ValueError:
        return 100


def stderr_console() -> Console:
    return _console(sys.stderr, stderr=True)


def stdout_console() -> Console:
    return _console(sys.stdout, stderr=False)


def print_error(exc: UserError) -> None:
    console = stderr_console()
    if not exc.problems:  # llmspec's own text around user text: its line breaks are kept
        lines = "\n".join(plain(line) for line in str(exc).split("\n"))
        console.print(Text.assemble(("error:", "bold red"), " ", Text(lines)))
        return
    for problem in exc.problems:
        print_problem(console, problem)
    if len(exc.problems) > 1:
        console.print(Text.assemble((f"{len(exc.problems)} problems", "bold red"), " found"))


def print_problem(console: Console, p: Problem) -> None:
    """`file:line:col: error: field: message`, the source line with a caret, then the hint.

    Every part is user text (the path, keys, values in the message) and is printed as
    plain Text: no markup, no emoji codes, control characters escaped."""
    head = Text.assemble(user_text(p.location(), "bold"), ": ", ("error:", "bold red"), " ")
    if p.field and not p.message.startswith(p.field + " "):
        head.append_text(user_text(p.field, "bold"))
        head.append(": ")
    head.append_text(user_text(p.message))
    console.print(head)
    snippet = _source_line(p.file, p.line)
    if snippet is not None:
        gutter = f"{p.line:>5} | "
        console.print(Text.assemble((gutter, "dim"), user_text(snippet)))
        if p.col:
            caret = " " * (len(gutter) + _display_width(snippet[: p.col - 1])) + "^"
            console.print(Text(caret, style="bold red"))
    if p.hint:
        console.print(Text.assemble("  ", ("hint:", "cyan"), " ", user_text(p.hint)))


def _display_width(text: str) -> int:
    return len(text.expandtabs(1))


def _source_line(file: str | None, line: int | None) -> str | None:
    if not file or not line:
        return None
    lines = _read_lines(file)
    if lines is None or line > len(lines):
        return None
    text = lines[line - 1].rstrip("\r\n")
    return text if len(text) <= 200 and text.isprintable() else None


def _read_lines(file: str) -> tuple[str, ...] | None:
    try:
        with open(file, encoding="utf-8") as fh:
            return tuple(fh.read(1 << 20).splitlines())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
