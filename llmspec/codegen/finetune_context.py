"""What train.py and export.py read about fine-tuning: `FinetuneContext`.

A fine-tuning project starts from a base model's weights (finetune.base): another llmspec
run's checkpoints, found relative to the project folder. The base path is rewritten here
once, so the templates place a relative path and never the machine's absolute one.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass
from pathlib import Path

from llmspec.codegen.data_context import project_relative
from llmspec.errors import UserError
from llmspec.spec.hf_config import HfConfigError, export_problem, spec_from_hf
from llmspec.spec.resolve import MAX_CONFIG_BYTES


@dataclass(frozen=True)
class FinetuneContext:
    enabled: bool  # the spec has finetune:
    method: str = "full"  # full | lora
    base_path: str = ""  # finetune.base.path, relative to the project folder
    base_tag: str | None = None  # finetune.base.tag: None = the base's `latest`
    hf: bool = False  # finetune.base.format hf: a Hugging Face folder (config.json, *.safetensors)

    @property
    def lora(self) -> bool:
        return self.enabled and self.method == "lora"

    @property
    def frozen_base(self) -> bool:
        """Only adapters (LoRA) or a prompt encoder (P-tuning) train."""
        return self.enabled and self.method != "full"


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
    if ft.base.format == "hf":
        _check_hf_base(spec, spec_dir / ft.base.path)
    return FinetuneContext(
        enabled=True,
        method=ft.method,
        hf=ft.base.format == "hf",
        # a folder, not a glob: `..` segments can be folded
        base_path=posixpath.normpath(
            project_relative(ft.base.path, spec_dir=spec_dir, project_dir=project_dir)
        ),
        base_tag=ft.base.tag,
    )


def _check_hf_base(spec, folder: Path) -> None:
    """A Hugging Face base must be an architecture model.py computes and must equal the
    spec's model: section. Its config.json is read when the folder exists at build time (a
    base downloaded later is checked by train.py, tensor by tensor)."""
    problem = export_problem(spec.model)
    if problem:
        raise UserError(
            f"finetune.base.format hf: no Hugging Face family computes this model: {problem}"
        )
    config_path = folder / "config.json"
    if not config_path.is_file():
        return
    try:
        with open(config_path, "rb") as f:  # bounded: a config.json is a few kB
            config = json.loads(f.read(MAX_CONFIG_BYTES + 1))
        if not isinstance(config, dict):
            raise ValueError("not a JSON object")
        imported = spec_from_hf(config)
    except (OSError, ValueError, RecursionError, HfConfigError) as exc:
        raise UserError(f"finetune.base: {config_path}: {exc}") from None
    differ = [
        f"model.{name} = {getattr(spec.model, name)!r}, the base's {origin} = {value!r}"
        for name, value, origin in imported.fields
        if getattr(spec.model, name) != value
    ]
    if differ:
        raise UserError(
            f"finetune.base {folder} is not this spec's model: "
            + "; ".join(differ[:6])
            + f". Make model: equal the base's (llmspec import hf {folder} writes it)."
        )
