"""The pipeline, in one place: load → plan → render → write.

    spec.yaml ─ spec.load ─▶ Spec ─ plan.make_plan ─▶ Plan
              ─ codegen.template_context + render_project ─▶ files
              ─ codegen.write ─▶ the project folder (or --check's diff)

Every stage is a function of its inputs; this module only passes typed values
from one to the next. The CLI calls it; tests call it as the CLI would.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

from llmspec.codegen.context import provenance, template_context
from llmspec.codegen.project import build_notes, render_file, render_project
from llmspec.codegen.sweep_context import VARIANTS_DIR, Variant, sweep_context
from llmspec.codegen.write import compare_project, write_project
from llmspec.errors import Problem, SpecError, UserError
from llmspec.plan import make_plan
from llmspec.plan.pins import parse_layout_text
from llmspec.plan.plan import Plan
from llmspec.spec.load import LoadedSpec, load_located, with_overrides
from llmspec.spec.sweep_space import runtime_params, structural_variants


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


# The files that decide what data a project prepares: the driver and its stage code.
DATA_SCRIPTS = ("prepare_data.py", "data_stages.py")


def variant_reason(plan: Plan) -> str:
    """Why a planned variant cannot run, in the planner's words: its closest layout, the memory
    line that says by how much it overflows, and the planner's first fix."""
    lines = plan.explanation
    said = [line for line in lines if line.startswith("closest layout") or "OOM by" in line]
    fixes = [line for line in lines if line.startswith("fix:")]
    return "; ".join(said + fixes[:1]) or "; ".join(lines[-2:])


def sweep_value_error(loaded: LoadedSpec, overrides: dict, exc: SpecError) -> SpecError:
    """A sweep value the spec cannot hold, located at the sweep parameter that gives it (the
    one the problem names, else the first)."""
    problems = []
    for p in exc.problems:
        path = p.field if p.field in overrides else next(iter(overrides))
        pos = loaded.source.pos_for(("sweep", "params", path))
        problems.append(
            Problem(
                f"sweep value {path} = {overrides[path]!r}: {p.message}",
                field=f"sweep.params.{path}",
                file=pos.file,
                line=pos.line,
                col=pos.col,
                hint=p.hint,
                code=p.code,
            )
        )
    return SpecError(problems)


def check_runtime_values(loaded: LoadedSpec) -> None:
    """Every corner of the runtime parameters' box (each one's lowest or highest value) passes
    the spec's own checks, so sweep.py never hands a trial values the spec could not hold
    (a warm-up longer than the run, a learning rate below min_lr). Raises SpecError located at
    the sweep parameter that the failed check names."""
    params = runtime_params(loaded.spec.sweep)
    ends = []
    for dist in params.values():
        values = (
            dist.choice
            if dist.choice is not None
            else (dist.log_uniform or dist.uniform or dist.integer)
        )
        ends.append(sorted({min(values), max(values)}))
    for corner in itertools.product(*ends):
        overrides = dict(zip(params, corner, strict=True))
        try:
            with_overrides(loaded, overrides)
        except SpecError as exc:
            raise sweep_value_error(loaded, overrides, exc) from None


def sweep_variants(
    loaded: LoadedSpec, base_plan: Plan, prov, layout: str | None, *, spec_dir: Path, out: Path
) -> tuple[list[Variant], dict[str, str]]:
    """Plan every structural variant of the spec's sweep with the real planner and render a
    project for each that fits (under `sweep/variants/<id>/`). Returns the variants and the
    files of their projects, keyed by path inside the sweep's project. A variant whose
    overrides make the spec invalid, or whose plan does not fit, gets no project; its reason
    is the spec check's or the planner's. Without structural parameters the one variant is
    the sweep's own project."""
    check_runtime_values(loaded)
    combos = structural_variants(loaded.spec.sweep)
    base_context = template_context(
        loaded.spec, base_plan, prov, spec_dir=spec_dir, project_dir=out, sweep=None
    )
    base_data = [render_file(base_context, prov.header, f) for f in DATA_SCRIPTS]
    if combos == [{}]:
        peak, capacity = base_plan.memory.total, base_plan.capacity_bytes
        return [Variant("base", {}, True, None, peak, capacity, ".", ".")], {}
    width = len(str(len(combos) - 1))
    variants, files = [], {}
    for i, overrides in enumerate(combos):
        vid = f"v{i:0{width}d}"
        try:
            vspec = with_overrides(loaded, overrides).spec
        except SpecError as exc:
            if any(p.code != "cross-field" for p in exc.problems):  # not a value of that field
                raise sweep_value_error(loaded, overrides, exc) from None
            # valid values that do not go together (e.g. a micro-batch the batch cannot split)
            reason = "; ".join(p.message for p in exc.problems)
            variants.append(Variant(vid, overrides, False, reason))
            continue
        vplan = plan_spec(vspec, layout)
        peak, capacity = vplan.memory.total, vplan.capacity_bytes
        if not vplan.fits:
            variants.append(Variant(vid, overrides, False, variant_reason(vplan), peak, capacity))
            continue
        folder = f"{VARIANTS_DIR}/{vid}"
        context = template_context(
            vspec,
            vplan,
            prov,
            spec_dir=spec_dir,
            project_dir=out / folder,
            sweep=sweep_context(vspec, None, driver=False),
        )
        rendered = render_project(context, prov.header)
        files.update({f"{folder}/{rel}": text for rel, text in rendered.items()})
        # trials share the sweep's prepared data unless the variant prepares other data (its
        # prepare_data.py, rendered as if it stood in the sweep's folder, differs)
        as_base = template_context(
            vspec, vplan, prov, spec_dir=spec_dir, project_dir=out, sweep=None
        )
        same = [render_file(as_base, prov.header, f) for f in DATA_SCRIPTS] == base_data
        data = "." if same else folder
        variants.append(Variant(vid, overrides, True, None, peak, capacity, folder, data))
    return variants, files


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
    variants, variant_files = [], {}
    if spec.sweep is not None:
        variants, variant_files = sweep_variants(
            loaded, plan, prov, layout, spec_dir=spec_path.parent, out=out
        )
    context = template_context(
        spec,
        plan,
        prov,
        spec_dir=spec_path.parent,
        project_dir=out,
        sweep=sweep_context(spec, variants, driver=True),
    )
    files = render_project(context, prov.header)
    files = dict(sorted({**files, **variant_files}.items()))
    result = BuildResult(out_dir=out, plan=plan, files=files, regenerate=prov.regenerate)
    result.notes.extend(build_notes(spec, plan.layout))
    infeasible = [v.id for v in variants if not v.fits]
    if spec.sweep is not None:
        result.notes.append(
            f"sweep: {len(variants)} structural variant(s) planned, "
            + (
                f"{len(infeasible)} cannot run ({', '.join(infeasible)}): sweep.py records the "
                "trials that draw them as infeasible, with the planner's reason, and launches none"
                if infeasible
                else "all fit"
            )
        )
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
