"""What a change to a spec does to the run, for a pull request's reviewer (`llmspec diff`).

Three layers, each from the pipeline's own stages: the resolved spec field by field
(with where each value came from), the plan (layout, memory per GPU and per stage,
step time, throughput, MFU, time and GPU-hours to train), and the generated files
(a unified diff per file, both sides rendered with the same header so only what the
change moves shows). The sides are two spec files, two plan.json files, or one spec
at a git revision and as it is now.
"""

from __future__ import annotations

import difflib
import json
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from llmspec.codegen.context import Provenance, template_context
from llmspec.codegen.project import render_project
from llmspec.errors import UserError
from llmspec.pipeline import plan_spec
from llmspec.spec.load import LoadedSpec, load_located
from llmspec.spec.source import dotted

MEMORY_ROWS = ("params", "grads", "optimizer", "activations", "temporary", "total")


@dataclass(frozen=True)
class FieldChange:
    path: str  # dotted spec or layout field
    old: object
    new: object
    old_from: str = ""  # file:line, "preset NAME" or "default"
    new_from: str = ""


@dataclass(frozen=True)
class Figure:
    name: str
    unit: str  # "bytes", "s", "tokens/s", "fraction", "GPU-h"
    old: float | None
    new: float | None

    @property
    def delta(self) -> float | None:
        return None if self.old is None or self.new is None else self.new - self.old

    @property
    def relative(self) -> float | None:
        return self.delta / self.old if self.old and self.delta is not None else None


@dataclass
class RunDiff:
    old_name: str
    new_name: str
    spec: list[FieldChange] = field(default_factory=list)
    layout: list[FieldChange] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # path → unified diff
    notes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        moved = any(f.delta for f in self.figures)
        return bool(self.spec or self.layout or self.files or moved)

    def to_dict(self) -> dict:
        return {
            "old": self.old_name,
            "new": self.new_name,
            "changed": self.changed,
            "spec": [vars(c) for c in self.spec],
            "layout": [vars(c) for c in self.layout],
            "figures": [
                {**vars(f), "delta": f.delta, "relative": f.relative} for f in self.figures
            ],
            "files": self.files,
            "notes": self.notes,
        }


@dataclass(frozen=True)
class _Side:
    name: str
    plan_json: dict
    loaded: LoadedSpec | None = None
    files: dict[str, str] | None = None  # rendered project (None: plan.json input or no fit)


# ----------------------------------------------------------------------------- entry points
def diff_paths(old: str | Path, new: str | Path) -> RunDiff:
    """Two spec files, or two plan.json files."""
    old, new = Path(old), Path(new)
    if _is_plan_json(old) != _is_plan_json(new):
        raise UserError(f"{old} and {new}: compare two specs or two plan.json files, not one each")
    if _is_plan_json(old):
        return compare(_plan_side(old), _plan_side(new))
    return compare(_spec_side(old, new), _spec_side(new, new))


def diff_git(revision: str, spec: str | Path) -> RunDiff:
    """`spec` as it is at `revision` (with every file it extends, from that revision) vs now."""
    spec = Path(spec)
    root = _git_root(spec.parent if spec.parent != Path("") else Path("."))
    relative = spec.resolve().relative_to(root)
    with tempfile.TemporaryDirectory(prefix="llmspec-diff-") as tmp:
        archive = subprocess.run(
            ["git", "-C", str(root), "archive", "--format=tar", revision],
            capture_output=True,
            check=False,
        )
        if archive.returncode != 0:
            why = archive.stderr.decode(errors="replace").strip()
            raise UserError(f"git archive {revision}: {why or 'failed'}")
        tar_path = Path(tmp) / "tree.tar"
        tar_path.write_bytes(archive.stdout)
        with tarfile.open(tar_path) as tar:
            tar.extractall(Path(tmp) / "tree", filter="data")
        old = Path(tmp) / "tree" / relative
        if not old.is_file():
            raise UserError(f"{relative} does not exist at {revision}")
        old_side = _spec_side(old, spec, name=f"{relative}@{revision}")
    return compare(old_side, _spec_side(spec, spec))


# ----------------------------------------------------------------------------- sides
def _is_plan_json(path: Path) -> bool:
    return path.suffix == ".json"


def _plan_side(path: Path) -> _Side:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        data["layout"], data["memory"], data["performance"]  # noqa: B018 (contract 2 keys)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: not a plan.json (contract 2): {exc}") from None
    return _Side(str(path), data)


def _spec_side(path: Path, layout_of: Path, name: str | None = None) -> _Side:
    """A spec's plan and project. Both sides render as if built from `layout_of` (the new
    spec's place), so data paths and headers agree and only the change shows."""
    loaded = load_located(path)
    plan = plan_spec(loaded.spec)
    files = None
    if plan.fits:
        project_dir = Path("generated") / loaded.spec.name
        header = Provenance(
            spec_display=layout_of.as_posix(),
            spec_sha256="0" * 64,
            regenerate=f"llmspec build {layout_of.as_posix()}",
        )
        context = template_context(
            loaded.spec, plan, header, spec_dir=layout_of.parent, project_dir=project_dir
        )
        files = render_project(context, header.header)
    return _Side(name or str(path), plan.to_dict(), loaded, files)


def _git_root(folder: Path) -> Path:
    result = subprocess.run(
        ["git", "-C", str(folder), "rev-parse", "--show-toplevel"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise UserError(f"{folder}: not inside a git checkout ({result.stderr.strip()})")
    return Path(result.stdout.strip()).resolve()


# ----------------------------------------------------------------------------- comparison
def compare(old: _Side, new: _Side) -> RunDiff:
    result = RunDiff(old.name, new.name)
    if old.loaded and new.loaded:
        result.spec = _spec_changes(old.loaded, new.loaded)
    result.layout = [
        FieldChange(f"layout.{k}", old.plan_json["layout"].get(k), v)
        for k, v in new.plan_json["layout"].items()
        if old.plan_json["layout"].get(k) != v
    ]
    result.figures = _figures(old.plan_json, new.plan_json)
    if old.files is not None and new.files is not None:
        result.files = _file_diffs(old.files, new.files)
    elif old.loaded and new.loaded:
        result.notes.append("generated files not compared: a side's plan does not fit")
    return result


def _flatten(value, prefix: tuple = ()) -> dict[tuple, object]:
    if isinstance(value, dict):
        out: dict[tuple, object] = {}
        for key, item in value.items():
            out.update(_flatten(item, (*prefix, key)))
        return out
    return {prefix: value}


def _origin(loaded: LoadedSpec, path: tuple) -> str:
    pos = loaded.source.values.get(path)
    if pos is not None:
        return f"{Path(pos.file).name}:{pos.line}" if pos.line else Path(pos.file).name
    if path[0] == "model" and loaded.spec.model.preset:
        return f"preset {loaded.spec.model.preset}"
    return "default"


def _spec_changes(old: LoadedSpec, new: LoadedSpec) -> list[FieldChange]:
    before = _flatten(old.spec.model_dump(mode="json", exclude={"extends"}))
    after = _flatten(new.spec.model_dump(mode="json", exclude={"extends"}))
    return [
        FieldChange(
            dotted(path),
            before.get(path),
            after.get(path),
            _origin(old, path) if path in before else "",
            _origin(new, path) if path in after else "",
        )
        for path in sorted(set(before) | set(after), key=lambda p: tuple(map(str, p)))
        if before.get(path) != after.get(path)
    ]


def _figures(old: dict, new: dict) -> list[Figure]:
    figures = [
        Figure(f"memory per GPU: {row}", "bytes", *(p["memory"]["per_gpu_bytes"].get(row) for p in (old, new)))
        for row in MEMORY_ROWS
    ]  # fmt: skip
    stages = max(len(old["memory"].get("stages", [])), len(new["memory"].get("stages", [])))
    if stages > 1:
        for i in range(stages):
            pair = [p["memory"]["stages"][i]["total"] if i < len(p["memory"]["stages"]) else None for p in (old, new)]  # fmt: skip
            figures.append(Figure(f"memory, stage {i}: total", "bytes", *pair))
    for key, unit in (
        ("step_time_s", "s"),
        ("tokens_per_s", "tokens/s"),
        ("tflops_per_gpu", "TFLOP/s"),
        ("mfu", "fraction"),
        ("time_to_train_s", "s"),
    ):
        figures.append(Figure(key, unit, old["performance"].get(key), new["performance"].get(key)))
    figures.append(Figure("GPU-hours to train", "GPU-h", _gpu_hours(old), _gpu_hours(new)))
    return figures


def _gpu_hours(plan: dict) -> float | None:
    seconds = plan["performance"].get("time_to_train_s")
    lay = plan["layout"]
    if seconds is None:
        return None
    return seconds * lay["data"] * lay["tensor"] * lay["pipeline"] / 3600


def _file_diffs(old: dict[str, str], new: dict[str, str]) -> dict[str, str]:
    diffs = {}
    for path in sorted(set(old) | set(new)):
        a, b = old.get(path, ""), new.get(path, "")
        if a == b:
            continue
        diffs[path] = "".join(
            difflib.unified_diff(
                a.splitlines(keepends=True),
                b.splitlines(keepends=True),
                fromfile=f"a/{path}" if path in old else "/dev/null",
                tofile=f"b/{path}" if path in new else "/dev/null",
            )
        )
    return diffs
