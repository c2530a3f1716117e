"""Errors a user can act on. The CLI prints them without a traceback and exits 2."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One located problem in a spec: `file:line:col: error: field: message` + hint."""

    message: str
    field: str = ""  # dotted path, e.g. "model.n_layers"
    file: str | None = None
    line: int | None = None  # 1-based
    col: int | None = None  # 1-based
    hint: str = ""
    code: str = "spec"  # stable short code, e.g. "unknown-field"

    def location(self) -> str:
        parts = [self.file or "<spec>"]
        if self.line is not None:
            parts.append(str(self.line))
            if self.col is not None:
                parts.append(str(self.col))
        return ":".join(parts)

    def headline(self) -> str:
        """`field: message`, without repeating the field when the message starts with it."""
        if not self.field or self.message.startswith(self.field + " "):
            return self.message
        return f"{self.field}: {self.message}"

    def format(self) -> str:
        text = f"{self.location()}: error: {self.headline()}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class UserError(Exception):
    """A problem with the user's input, reported as text (no traceback), exit code 2."""

    exit_code = 2

    def __init__(self, message: str, problems: list[Problem] | None = None):
        super().__init__(message)
        self.problems = list(problems or [])


class SpecError(UserError):
    """A spec that fails to load or validate; carries every problem found."""

    def __init__(self, problems: list[Problem]):
        super().__init__(f"{len(problems)} problem(s) in spec", problems)
