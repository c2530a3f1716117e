"""Build tiny projects with an `eval:` section and import their generate.py / evaluate.py.

The generated files import their siblings (`from model import ...`), so a project is imported
with its folder first on sys.path and its sibling modules dropped from sys.modules after.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from pathlib import Path

SIBLINGS = ("model", "data", "export", "generate", "evaluate", "lm_eval_model")


@contextlib.contextmanager
def project_modules(project: Path, *names: str):
    """The project's modules `names`, imported from `project` (then forgotten again)."""
    for name in SIBLINGS:
        sys.modules.pop(name, None)
    sys.path.insert(0, str(project))
    try:
        yield [importlib.import_module(name) for name in names]
    finally:
        sys.path.remove(str(project))
        for name in SIBLINGS:
            sys.modules.pop(name, None)
