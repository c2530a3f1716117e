"""The package's stages import one way only (docs/architecture.md).

Every `import` in `llmspec/` is read from the source (top level and inside
functions alike), so a back-edge cannot hide in a function body.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "llmspec"

# Stage rank: a module may import modules of its own stage or of an earlier one.
STAGES = {
    "llmspec": 0,  # the package root: version only
    "llmspec.errors": 0,
    "llmspec.units": 0,
    "llmspec.text": 0,
    "llmspec.rules": 0,
    "llmspec.spec": 1,
    "llmspec.graph": 2,
    "llmspec.plan": 3,
    "llmspec.codegen": 4,
    "llmspec.verify": 5,
    "llmspec.pipeline": 6,
    "llmspec.review": 6,
    "llmspec.cli": 7,
    "llmspec.__main__": 8,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def stage_of(module: str) -> int:
    best = max((k for k in STAGES if module == k or module.startswith(k + ".")), key=len)
    return STAGES[best]


def llmspec_imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every llmspec import in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            base = node.module
            if base == "llmspec":  # `from llmspec import x`: x may be a subpackage
                found += [(node.lineno, f"llmspec.{a.name}") for a in node.names]
            elif base.startswith("llmspec."):
                found.append((node.lineno, base))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("llmspec")]
    return found


def test_every_module_belongs_to_a_stage():
    for path in PACKAGE.rglob("*.py"):
        module = module_name(path)
        assert any(module == k or module.startswith(k + ".") for k in STAGES), module


def test_no_stage_imports_a_later_one():
    back_edges = []
    for path in sorted(PACKAGE.rglob("*.py")):
        here = module_name(path)
        for line, target in llmspec_imports(path):
            if target == "llmspec.__version__" or target == "llmspec":
                continue
            if stage_of(target) > stage_of(here):
                back_edges.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {here} -> {target}")
    assert not back_edges, "imports against the pipeline's direction:\n" + "\n".join(back_edges)


def test_no_llmspec_import_hides_inside_a_function():
    hidden = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(fn):
                names = []
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("llmspec"):
                    names = [node.module]
                elif isinstance(node, ast.Import):
                    names = [a.name for a in node.names if a.name.startswith("llmspec")]
                hidden += [f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {n}" for n in names]
    assert not hidden, "llmspec imports inside functions:\n" + "\n".join(hidden)


def test_the_checker_sees_a_back_edge(tmp_path):
    """The walk above can fail: a planted back-edge inside a function is found."""
    planted = tmp_path / "llmspec" / "spec" / "bad.py"
    planted.parent.mkdir(parents=True)
    planted.write_text("def f():\n    from llmspec.codegen import render\n")
    imports = llmspec_imports(planted)
    assert imports == [(2, "llmspec.codegen")]
    assert stage_of("llmspec.codegen") > stage_of("llmspec.spec.bad")
