"""The generated `export.py`, rendered on its own: tests import it to map weights between
model.py and Hugging Face exactly as a project's export does, without writing a project."""

from __future__ import annotations

from llmspec.codegen.context import Provenance
from llmspec.codegen.export_context import export_context
from llmspec.codegen.model_code import default_header
from llmspec.codegen.render import format_python, render_template
from llmspec.plan.types import Layout

TEMPLATE = "export.py.j2"


def render_export_py(spec, layout: Layout, header: str | None = None) -> str:
    """export.py for `spec` under `layout`, formatted with the pinned ruff."""
    prov = Provenance(spec_display=f"{spec.name}.yaml", spec_sha256="0" * 64, regenerate="")
    source = render_template(
        TEMPLATE,
        export=export_context(spec, layout),
        spec=spec,
        provenance=prov,
        header=header if header is not None else default_header(spec),
    )
    return format_python(source, filename="export.py")
