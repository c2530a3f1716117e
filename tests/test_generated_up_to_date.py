"""generated/ holds the build of every spec in specs/, byte for byte (the drift check).

Each spec is rebuilt in memory and compared with the committed folder; on drift
the test prints the diff and the command that updates the folder. Goldens are
never rewritten by a test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from llmspec.pipeline import build_project
from llmspec.spec.load import load_spec

ROOT = Path(__file__).resolve().parents[1]
SPEC_FILES = sorted((ROOT / "specs").glob("*.yaml"))
MAX_DIFF_CHARS = 6000


def spec_name(path: Path) -> str:
    return load_spec(path).name  # after `extends`: a spec may inherit its name


@pytest.mark.parametrize("spec", SPEC_FILES, ids=[p.stem for p in SPEC_FILES])
def test_generated_project_matches_a_fresh_build(spec, monkeypatch):
    monkeypatch.chdir(ROOT)  # the header names paths relative to the checkout
    relative = spec.relative_to(ROOT)
    target = Path("generated") / spec_name(spec)
    result = build_project(relative, target, check=True)
    if not result.ok:
        diff = result.diff
        if len(diff) > MAX_DIFF_CHARS:
            diff = diff[:MAX_DIFF_CHARS] + f"\n... ({len(result.diff) - MAX_DIFF_CHARS} more)"
        pytest.fail(
            f"{target} has drifted from {relative}: {', '.join(result.drift)}\n{diff}\n"
            f"update with: {result.regenerate}",
            pytrace=False,
        )


def test_every_generated_folder_has_a_spec():
    names = {spec_name(p) for p in SPEC_FILES}
    folders = {p.name for p in (ROOT / "generated").iterdir() if p.is_dir()}
    stale = sorted(folders - names)
    assert not stale, f"generated/ has folders with no spec in specs/: {stale} (git rm them)"
