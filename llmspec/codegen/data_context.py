"""Template values for the data stage: the spec's paths as the generated project sees them.

Spec paths (source globs, `tokenizer.path`, `filters.blocklist`) are relative to the
spec file; the generated `prepare_data.py` resolves relative paths against its own
folder. So the build rewrites each relative path to go from the output folder to the
same place. Absolute paths and paths that start with a `${VAR}` stay as written: they
are resolved on the machine that runs the data preparation.

Templates use `data` when the build passes it (`data=data_context(...)`), and fall
back to the spec's paths unchanged (right when the spec sits in the output folder).
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from llmspec.spec.schema import DataSpec


def project_relative(path: str, *, spec_dir: Path, project_dir: Path) -> str:
    """`path` (relative to `spec_dir`) rewritten relative to `project_dir`, POSIX style."""
    if path.startswith("${") or PurePosixPath(path).is_absolute() or os.path.isabs(path):
        return path
    base = os.path.relpath(spec_dir.resolve(), project_dir.resolve())
    joined = PurePosixPath(Path(base).as_posix()) / path
    return _tidy(joined.as_posix())


def _tidy(path: str) -> str:
    """Drop `./` segments without touching `..` (globs may hold `**`)."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    return "/".join(parts) or "."


def data_context(data: DataSpec, *, spec_dir: Path, project_dir: Path) -> dict:
    """The `data` variable of templates/prepare_data.py.j2."""

    def rel(path: str | None) -> str | None:
        if path is None:
            return None
        return project_relative(path, spec_dir=spec_dir, project_dir=project_dir)

    return {
        "sources": [
            {
                "path": rel(s.path),
                "format": s.format,
                "text_field": s.text_field,
                "exclude": list(s.exclude),
            }
            for s in data.sources
        ],
        "tokenizer_path": rel(data.tokenizer.path),
        "blocklist": rel(data.filters.blocklist),
    }
