"""Every benchmark script still imports against the current package (a refactor that moves
a name breaks here, not on the next person who reruns a figure). Their `main` is not run:
the figures are theirs to print, not a test's to time."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py"))


@pytest.mark.parametrize("path", BENCHMARKS, ids=lambda p: p.stem)
def test_benchmark_module_imports(path, monkeypatch):
    monkeypatch.syspath_prepend(str(path.parent))
    spec = importlib.util.spec_from_file_location(f"benchmark_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)  # top-level code only; main() runs under __main__
    assert hasattr(module, "main"), f"{path.name} has no main()"


@pytest.mark.parametrize("path", BENCHMARKS, ids=lambda p: p.stem)
def test_every_llmspec_name_a_benchmark_imports_exists(path):
    """Imports inside functions too (workers import lazily): each named module and name."""
    import ast

    missing = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("llmspec"):
            module = importlib.import_module(node.module)
            missing += [
                f"{path.name}:{node.lineno}: {node.module}.{alias.name}"
                for alias in node.names
                if not hasattr(module, alias.name)
                and importlib.util.find_spec(f"{node.module}.{alias.name}") is None
            ]
    assert not missing, "\n".join(missing)
