"""Template rendering core: jinja2 with StrictUndefined and escaping filters.

Spec values reach generated files only through these filters, so quotes,
newlines and `$(...)` in user strings stay inert:
  {{ value | py }}    a Python literal (repr of str/int/float/bool/None/list/dict)
  {{ value | json }}  a JSON literal
  {{ value | sh }}    one shell word (shlex.quote)
  {{ value | comment }} text safe inside a `#` comment (newlines removed)
  {{ value | html_comment }} text safe inside `<!-- -->`
  {{ seconds | duration }} 37.6 s, 12.5 min, 3.2 h, 69.6 days (llmspec.text.duration)
"""

from __future__ import annotations

import json
import math
import shlex
import subprocess
import sys
from functools import lru_cache
from importlib import resources
from pathlib import Path

import jinja2

from llmspec.text import duration


def templates_dir() -> Path:
    """The templates/ folder: the source checkout's, else the installed package data."""
    here = Path(__file__).resolve().parents[2] / "templates"
    if here.is_dir():
        return here
    return Path(str(resources.files("llmspec.templates")))


def py_literal(value) -> str:
    """A deterministic Python literal for plain data."""
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise ValueError(f"cannot emit non-finite float {value!r}")
        return repr(value)
    if isinstance(value, tuple):
        value = list(value)
    if isinstance(value, (str, int, bool)) or value is None:
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(py_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{py_literal(k)}: {py_literal(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot emit {type(value).__name__} as a Python literal")


def json_literal(value) -> str:
    return json.dumps(value, sort_keys=False, ensure_ascii=False)


def comment_text(value) -> str:
    return " ".join(str(value).split())


def html_comment_text(value) -> str:
    """Text safe inside `<!-- -->`: no `--` survives, so `-->` (or `--->`) cannot close it."""
    text = str(value)
    while "--" in text:
        text = text.replace("--", "- -")
    return text


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["py"] = py_literal
    env.filters["json"] = json_literal
    env.filters["sh"] = lambda v: shlex.quote(str(v))
    env.filters["comment"] = comment_text
    env.filters["html_comment"] = html_comment_text
    env.filters["duration"] = duration
    return env


def render_template(name: str, **context) -> str:
    return environment().get_template(name).render(**context)


def format_python(source: str, filename: str = "generated.py") -> str:
    """Format with the pinned ruff (deterministic); raises on a syntax error."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ruff",
            "format",
            "--line-length",
            "100",
            "--stdin-filename",
            filename,
            "-",
        ],
        input=source,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"ruff format failed on {filename}:\n{result.stderr}")
    return result.stdout
