"""What train.py and export.py read about fine-tuning: `FinetuneContext`.

A fine-tuning project starts from a base model's weights (finetune.base): another llmspec
run's checkpoints, found relative to the project folder. The base path is rewritten here
once, so the templates place a relative path and never the machine's absolute one.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from pathlib import Path

from llmspec.codegen.data_context import project_relative
from llmspec.errors import UserError


@dataclass(frozen=True)
class FinetuneContext:
    enabled: bool  # the spec has finetune:
    method: str = "full"  # full | lora
    base_path: str = ""  # finetune.base.path, relative to the project folder
    base_tag: str | None = None  # finetune.base.tag: None = the base's `latest`

    @property
    def lora(self) -> bool:
        return self.enabled and self.method == "lora"


def finetune_context(spec, layout, *, spec_dir: Path, project_dir: Path) -> FinetuneContext:
    ft = spec.finetune
    if ft is None:
        return FinetuneContext(enabled=False)
    if layout.tensor > 1 or layout.pipeline > 1:  # pinned ones are refused when the spec loads
        raise UserError(
            f"the planner chose {layout.describe()} for this fine-tune, but this version of "
            "llmspec fine-tunes with data parallelism and ZeRO only: pin parallel.tensor: 1 and "
            "parallel.pipeline: 1 (with zero_stage: 3 if the model does not fit otherwise)"
        )
    return FinetuneContext(
        enabled=True,
        method=ft.method,
        # a folder, not a glob: `..` segments can be folded
        base_path=posixpath.normpath(
            project_relative(ft.base.path, spec_dir=spec_dir, project_dir=project_dir)
        ),
        base_tag=ft.base.tag,
    )
