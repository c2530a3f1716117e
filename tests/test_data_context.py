"""Spec paths rewritten for the generated project's folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from llmspec.codegen.data_context import data_context, lsh_bands, project_relative, source_format
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
    # format auto is settled by the build where the glob's ending decides it
    assert ctx["sources"] == [
        {"path": "../c/*.jsonl", "format": "jsonl", "text_field": "body", "exclude": ["*/old/*"]},
        {"path": "/abs/*.txt", "format": "text", "text_field": "text", "exclude": []},
    ]
    assert ctx["tokenizer_path"] == "../tok/tokenizer.json"
    assert ctx["blocklist"] == "../words.txt"
    assert data_context(DataSpec(), spec_dir=Path("."), project_dir=Path("."))["blocklist"] is None


@pytest.mark.parametrize(
    ("pattern", "fmt", "expected"),
    [
        ("corpus/**/*.txt", "auto", "text"),
        ("${PYTHON_STDLIB}/**/*.py", "auto", "text"),
        ("data/*.jsonl", "auto", "jsonl"),
        ("data/dump.json", "auto", "jsonl"),
        ("data/dump.jsonl/", "auto", "jsonl"),  # prepare_data.py normalises the trailing /
        ("corpus/*", "auto", "auto"),  # any name: decided per path at run time
        ("corpus/**", "auto", "auto"),
        ("corpus/*on", "auto", "auto"),  # may end in .json
        ("corpus/*.jso[nl]", "auto", "auto"),
        ("corpus/${NAME}", "auto", "auto"),
        ("corpus/xjson", "auto", "text"),
        ("corpus/*.txt", "jsonl", "jsonl"),  # an explicit format always wins
        ("corpus/*.jsonl", "text", "text"),
    ],
)
def test_source_format_is_settled_only_where_every_match_agrees(pattern, fmt, expected):
    assert source_format(pattern, fmt) == expected


def numpy_lsh_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """The banding search as the generated prepare_data.py ran it before the build did."""
    s = np.linspace(0.0, 1.0, 1001)
    best = None
    for rows in range(1, num_perm + 1):
        bands = num_perm // rows
        p = 1.0 - (1.0 - s**rows) ** bands
        false_pos = np.trapezoid(np.where(s < threshold, p, 0.0), s)
        false_neg = np.trapezoid(np.where(s >= threshold, 1.0 - p, 0.0), s)
        cost = 0.1 * false_pos + 0.9 * false_neg
        if best is None or cost < best[0]:
            best = (cost, bands, rows)
    return best[1], best[2]


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7, 0.8, 0.85, 0.9, 0.95])
@pytest.mark.parametrize("num_perm", [16, 64, 128, 256])
def test_lsh_bands_match_the_numpy_search(threshold, num_perm):
    assert lsh_bands(threshold, num_perm) == numpy_lsh_bands(threshold, num_perm)


def test_lsh_bands_for_the_default_near_dedup():
    bands, rows = lsh_bands(0.8, 128)
    assert (bands, rows) == (14, 9) and bands * rows <= 128
    # A pair at the threshold becomes a candidate with probability 1 - (1 - 0.8^9)^14.
    assert abs((1 - (1 - 0.8**rows) ** bands) - 0.87) < 0.01
