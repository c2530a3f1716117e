"""`${VAR}` and `${VAR:-default}` in paths.

`extends` paths expand when the spec loads. Data paths (`data.sources[].path`,
`data.tokenizer.path`, `data.filters.blocklist`) keep the text as written, so
a build does not depend on the machine that ran it; the generated
`prepare_data.py` expands them at run time with the same rules (and always
defines `${PYTHON_STDLIB}`). At load time they are only checked for syntax.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

# ${NAME} or ${NAME:-default}; the default may not contain '}'.
REFERENCE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")
_OPEN = "${"

# Always defined when the generated prepare_data.py expands data paths.
RUNTIME_VARIABLES = ("PYTHON_STDLIB",)


class InterpolationError(ValueError):
    """A `${...}` that is malformed or names an unset variable; `offset` is 0-based in the text."""

    def __init__(self, message: str, offset: int, hint: str = ""):
        super().__init__(message)
        self.offset = offset
        self.hint = hint


def check_syntax(text: str) -> None:
    """Raise InterpolationError at the first `${` that is not a well-formed reference."""
    start = 0
    while (i := text.find(_OPEN, start)) >= 0:
        m = REFERENCE.match(text, i)
        if not m:
            raise InterpolationError(
                f"malformed variable reference in {text!r}",
                i,
                hint="write ${NAME} or ${NAME:-default}; NAME is letters, digits and _",
            )
        start = m.end()


def expand(text: str, env: Mapping[str, str]) -> str:
    """Replace every reference; an unset variable without a default raises InterpolationError."""
    check_syntax(text)

    def substitute(m: re.Match) -> str:
        name, default = m.group("name"), m.group("default")
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise InterpolationError(
            f"environment variable {name} is not set",
            m.start(),
            hint=f"export {name}=..., or give a default: ${{{name}:-fallback}}",
        )

    return REFERENCE.sub(substitute, text)
