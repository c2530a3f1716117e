"""Load a spec file into a validated `Spec` (minimal version; see issue 2 for the full loader)."""

from __future__ import annotations

from pathlib import Path

import yaml

from llmspec.spec.model import Spec


def load_spec(path: str | Path) -> Spec:
    data = yaml.safe_load(Path(path).read_text()) or {}
    return Spec.model_validate(data)
