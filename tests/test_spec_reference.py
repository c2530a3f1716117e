"""docs/spec-reference.md is generated from the models; it must match them."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from llmspec.spec.reference import render_reference
from llmspec.spec.schema import Spec

DOC = Path(__file__).resolve().parents[1] / "docs" / "spec-reference.md"


def test_reference_is_current():
    current = render_reference()
    committed = DOC.read_text()
    if current != committed:
        diff = "".join(
            difflib.unified_diff(
                committed.splitlines(True), current.splitlines(True), "docs", "now"
            )
        )
        pytest.fail(
            "docs/spec-reference.md is stale; run:\n"
            "  python -m llmspec.spec.reference > docs/spec-reference.md\n" + diff
        )


def _fields(model, prefix=""):
    for name, info in model.model_fields.items():
        yield info.alias or name, info
        for arg in [info.annotation, *getattr(info.annotation, "__args__", ())]:
            if isinstance(arg, type) and hasattr(arg, "model_fields"):
                yield from _fields(arg)


def test_every_field_is_documented_with_a_description():
    text = render_reference()
    for name, info in _fields(Spec):
        assert info.description, f"{name} has no description"
        assert f"| `{name}` |" in text, name
