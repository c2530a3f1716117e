"""User text shown where it could do harm: on a terminal, or in a generated file's comment."""

from __future__ import annotations

import unicodedata

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape_unprintable(text: str) -> str:
    """`text` with every control, format, separator or surrogate character spelled out
    (`\\r`, `\\x1b`, `\\u202e`) in the escapes Python and bash's $'...' both read, so user
    text cannot move a terminal's cursor, end a comment line, or fail to encode."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == " " else _escape_char(c) for c in text)


def _escape_char(c: str) -> str:
    if c in _NAMED:
        return _NAMED[c]
    if unicodedata.category(c) == "Zs":  # a no-break or other space prints as itself
        return c
    code = ord(c)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def duration(seconds: float | None) -> str:
    """Seconds for people: 37.6 s, 12.5 min, 3.2 h, 69.6 days (the plan, README, slurm)."""
    if seconds is None:
        return "n/a"
    if abs(seconds) < 120:
        return f"{seconds:.3g} s"
    if abs(seconds) < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    if abs(seconds) < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
