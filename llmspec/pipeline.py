"""The pipeline, in one place: load → plan → render → write.

    spec.yaml ─ spec.load ─▶ Spec ─ plan.make_plan ─▶ Plan
              ─ codegen.template_context + render_project ─▶ files
              ─ codegen.write ─▶ the project folder (or --check's diff)

Every stage is a function of its inputs; this module only passes typed values
from one to the next. The CLI calls it; tests call it as the CLI would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from llmspec.codegen.context import provenance, template_context
from llmspec.codegen.project import build_notes, render_project
from llmspec.codegen.write import compare_project, write_project
from llmspec.errors import UserError
from llmspec.plan import make_plan
from llmspec.plan.pins import parse_layout_text
from llmspec.plan.plan import Plan
from llmspec.spec.load import load_located


@dataclass
class BuildResult:
    out_dir: Path
    plan: Plan
    files: dict[str, str]  # relative path → content, every file this build emits
    written: list[str] = field(default_factory=list)  # changed or new on disk
    removed: list[str] = field(default_factory=list)  # files of the last build no longer emitted
    kept: list[str] = field(default_factory=list)  # no longer emitted but edited: left alone
    drift: list[str] = field(default_factory=list)  # --check: paths that differ
    diff: str = ""  # --check: unified diff of the drift
    regenerate: str = ""  # command that rebuilds this folder
    notes: list[str] = field(default_factory=list)  # things the user should know

    @property
    def ok(self) -> bool:
        return not self.drift


def plan_spec(spec, layout: str | None = None, *, top: int = 5) -> Plan:
    """Plan a loaded spec; `layout` pins fields as `k=v,...` (the CLI's `--layout`)."""
    return make_plan(spec, pins=parse_layout_text(layout), top=top)


def fitting_plan(spec, layout: str | None = None) -> Plan:
    """The plan a project is built from; a layout that does not fit is refused."""
    plan = plan_spec(spec, layout)
    if not plan.fits:
        why = "; ".join(plan.explanation[-2:])
        raise UserError(
            f"{spec.name}: the best layout does not fit in memory ({why}); "
            "`llmspec plan` on the spec shows what to change"
        )
    return plan


def build_project(
    spec_path: str | Path,
    out_dir: str | Path | None = None,
    *,
    check: bool = False,
    layout: str | None = None,
) -> BuildResult:
    """Load, plan, render and write the project of `spec_path` into `out_dir`
    (default `generated/<name>`). With `check`, nothing is written: the result lists
    the files that differ from disk, in bytes or mode."""
    spec_path = Path(spec_path)
    loaded = load_located(spec_path)
    spec = loaded.spec
    out = Path(out_dir) if out_dir is not None else Path("generated") / spec.name
    plan = fitting_plan(spec, layout)
    prov = provenance(spec_path, out, layout_args=layout, sources=loaded.files)
    context = template_context(spec, plan, prov, spec_dir=spec_path.parent, project_dir=out)
    files = render_project(context, prov.header)
    result = BuildResult(out_dir=out, plan=plan, files=files, regenerate=prov.regenerate)
    result.notes.extend(build_notes(spec, plan.layout))
    if check:
        outcome = compare_project(out, files, prov.header)
        result.drift, result.diff = outcome.drift, outcome.diff
    else:
        outcome = write_project(out, files, prov.header)
        result.written, result.removed, result.kept = (
            outcome.written,
            outcome.removed,
            outcome.kept,
        )
    return result
