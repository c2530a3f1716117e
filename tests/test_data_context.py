"""Spec paths rewritten for the generated project's folder."""

from __future__ import annotations

from pathlib import Path

from llmspec.codegen.data_context import data_context, project_relative
from llmspec.spec.schema import DataSpec


def test_relative_paths_go_from_the_project_to_the_same_place(tmp_path):
    spec_dir = tmp_path / "specs"
    project = tmp_path / "generated" / "run"
    rel = project_relative("corpus/**/*.txt", spec_dir=spec_dir, project_dir=project)
    assert rel == "../../specs/corpus/**/*.txt"
    assert (project / rel).resolve().parent.parent == (spec_dir / "corpus").resolve()
    assert project_relative("./a.txt", spec_dir=project, project_dir=project) == "a.txt"


def test_absolute_and_variable_paths_stay_as_written(tmp_path):
    for path in ("/data/corpus/*.txt", "${PYTHON_STDLIB}/**/*.py", "${HOME:-/tmp}/x.jsonl"):
        assert project_relative(path, spec_dir=tmp_path / "a", project_dir=tmp_path / "b") == path


def test_data_context_rewrites_every_spec_path(tmp_path):
    data = DataSpec.model_validate(
        {
            "sources": [
                {"path": "c/*.jsonl", "text_field": "body", "exclude": ["*/old/*"]},
                {"path": "/abs/*.txt"},
            ],
            "tokenizer": {"path": "tok/tokenizer.json"},
            "filters": {"blocklist": "words.txt"},
        }
    )
    ctx = data_context(data, spec_dir=tmp_path, project_dir=tmp_path / "out")
    assert ctx["sources"] == [
        {"path": "../c/*.jsonl", "format": "auto", "text_field": "body", "exclude": ["*/old/*"]},
        {"path": "/abs/*.txt", "format": "auto", "text_field": "text", "exclude": []},
    ]
    assert ctx["tokenizer_path"] == "../tok/tokenizer.json"
    assert ctx["blocklist"] == "../words.txt"
    assert data_context(DataSpec(), spec_dir=Path("."), project_dir=Path("."))["blocklist"] is None
