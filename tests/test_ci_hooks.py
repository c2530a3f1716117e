"""`llmspec init-ci` and the pre-commit hook it writes, run by the real pre-commit (issue 17)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from llmspec.cli.main import main

ROOT = Path(__file__).resolve().parents[1]


def git(repo: Path, *args: str) -> None:
    base = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*base, *args], check=True, capture_output=True)


def pre_commit(repo: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    env["PRE_COMMIT_HOME"] = str(repo.parent / "pre-commit-home")
    return subprocess.run(
        [sys.executable, "-m", "pre_commit", "run", "--all-files"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def repo(tmp_path, monkeypatch) -> Path:
    """A checkout with one spec, its generated project, and what init-ci writes."""
    repo = tmp_path / "repo"
    (repo / "specs").mkdir(parents=True)
    shutil.copyfile(ROOT / "specs" / "tiny-cpu.yaml", repo / "specs" / "tiny-cpu.yaml")
    monkeypatch.chdir(repo)
    assert main(["build", "specs/tiny-cpu.yaml"]) == 0
    assert main(["init-ci"]) == 0
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "base")
    return repo


def test_init_ci_writes_a_hook_and_a_workflow_and_never_overwrites(repo, capsys):
    hooks = yaml.safe_load((repo / ".pre-commit-config.yaml").read_text())
    assert hooks["repos"][0]["hooks"][0]["entry"] == "llmspec check"
    workflow = yaml.safe_load((repo / ".github" / "workflows" / "llmspec.yml").read_text())
    steps = " ".join(str(s.get("run", "")) for s in workflow["jobs"]["llmspec"]["steps"])
    assert "llmspec check" in steps and "llmspec diff --markdown --git" in steps
    before = (repo / ".pre-commit-config.yaml").read_bytes()
    assert main(["init-ci"]) == 2
    assert "not overwriting" in capsys.readouterr().err
    assert (repo / ".pre-commit-config.yaml").read_bytes() == before


def test_the_hook_passes_on_a_clean_tree_and_fails_on_drift_with_the_fix(repo):
    clean = pre_commit(repo)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    spec = repo / "specs" / "tiny-cpu.yaml"
    spec.write_text(spec.read_text().replace("steps: 300", "steps: 200"))
    git(repo, "add", ".")
    drifted = pre_commit(repo)
    output = drifted.stdout + drifted.stderr
    assert drifted.returncode != 0, output
    assert "generated/tiny-cpu: out of date" in output
    assert "fix: llmspec build specs/tiny-cpu.yaml -o generated/tiny-cpu" in output
    # and the printed fix fixes it
    assert main(["build", "specs/tiny-cpu.yaml", "-o", "generated/tiny-cpu"]) == 0
    git(repo, "add", ".")
    assert pre_commit(repo).returncode == 0
