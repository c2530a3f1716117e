"""The generated `rlhf.py` (preference and PPO losses, safety filters) for objectives reward, dpo
and ppo: render it for a spec so that tests can import exactly what a project gets."""

from __future__ import annotations

from llmspec.codegen.model_code import default_header
from llmspec.codegen.render import format_python, render_template

TEMPLATE = "rlhf.py.j2"
RLHF_OBJECTIVES = ("reward", "dpo", "ppo")


def render_rlhf_py(spec, header: str | None = None) -> str:
    """rlhf.py for `spec` (empty for objectives that do not use it), formatted with the pinned ruff."""
    if spec.train.objective not in RLHF_OBJECTIVES:
        return ""
    source = render_template(TEMPLATE, spec=spec, header=header or default_header(spec))
    return format_python(source, filename="rlhf.py")
