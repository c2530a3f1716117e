"""Session fixtures: one planted corpus prepared once, shared by the data tests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from data_harness.corpus import PlantedCorpus, plant_corpus, planted_spec
from data_harness.project import render_data_files, run_prepare
from llmspec.spec.schema import Spec


@dataclass
class Prepared:
    planted: PlantedCorpus
    spec: Spec
    project: Path
    data_dir: Path
    manifest: dict
    stderr: str


def prepare_planted(base: Path, *, workers: int = 2, **data_overrides) -> Prepared:
    """Plant a corpus in base/spec, render the data files into base/project, run them."""
    spec_dir, project = base / "spec", base / "project"
    planted = plant_corpus(spec_dir)
    spec = Spec.model_validate(planted_spec(**data_overrides))
    render_data_files(spec, project, spec_dir)
    result = run_prepare(project, "--workers", str(workers))
    data_dir = project / "out" / "data"
    manifest = json.loads((data_dir / "manifest.json").read_text())
    return Prepared(planted, spec, project, data_dir, manifest, result.stderr)


# Each test module that imports a fixture below holds its own copy of it, so the runs are
# cached here: one prepared corpus per kind for the whole session.
_runs: dict[str, Prepared] = {}


def _cached(name: str, tmp_path_factory, **kwargs) -> Prepared:
    if name not in _runs:
        _runs[name] = prepare_planted(tmp_path_factory.mktemp(name), **kwargs)
    return _runs[name]


@pytest.fixture(scope="session")
def prepared(tmp_path_factory) -> Prepared:
    return _cached("packed", tmp_path_factory, workers=2)


@pytest.fixture(scope="session")
def prepared_unpacked(tmp_path_factory) -> Prepared:
    return _cached("unpacked", tmp_path_factory, workers=1, packing=False)
