"""Faults a long run meets, on real 2-process DeepSpeed runs (issue 16, items 7 and 9):
data prepared for another model, a truncated newest checkpoint, `latest` naming a deleted
checkpoint, and a loss that turns NaN."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from train_harness import launch, losses_by_step, project, trained, workspace

pytestmark = pytest.mark.slow


def copy_of_trained_run(name: str) -> Path:
    """The 30-step ZeRO-0 run's out/ (checkpoints at steps 15 and 30), copied to change."""
    out = workspace() / name
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(trained("zero0"), out)
    return out


def strict_metrics(out: Path) -> list[dict]:
    """metrics.jsonl as strict JSON: NaN or Infinity would raise."""

    def refuse(constant):
        raise ValueError(f"{constant} in metrics.jsonl")

    return [json.loads(line, parse_constant=refuse) for line in (out / "metrics.jsonl").open()]


def resume(out: Path, **kwargs):
    data = str(workspace() / "data")
    return launch(project("zero0"), "--data", data, "--out", str(out), **kwargs)


def test_a_truncated_newest_checkpoint_is_skipped_for_the_one_before():
    out = copy_of_trained_run("truncated-newest")
    states = out / "checkpoints" / "step_30" / "mp_rank_00_model_states.pt"
    states.write_bytes(states.read_bytes()[: states.stat().st_size // 2])
    result = resume(out)
    assert "skipping checkpoint step_30" in result.stdout
    assert "at step 15" in result.stdout
    redone, reference = losses_by_step(out), losses_by_step(trained("zero0"))
    assert [redone[s] for s in range(16, 31)] == [reference[s] for s in range(16, 31)]


def test_latest_naming_a_deleted_checkpoint_falls_back_to_the_newest_that_exists():
    out = copy_of_trained_run("latest-deleted")
    shutil.rmtree(out / "checkpoints" / "step_30")
    assert (out / "checkpoints" / "latest").read_text().strip() == "step_30"
    result = resume(out)
    assert "'latest' names step_30, which is not in" in result.stdout
    assert "at step 15" in result.stdout
    assert sorted(losses_by_step(out)) == list(range(1, 31))


def test_a_nan_loss_stops_the_run_with_a_checkpoint_and_no_nan_in_the_metrics():
    out = copy_of_trained_run("diverges")
    checkpoints = out / "checkpoints"
    shutil.rmtree(checkpoints / "step_30")
    (checkpoints / "latest").write_text("step_15")
    states_path = checkpoints / "step_15" / "mp_rank_00_model_states.pt"
    states = torch.load(states_path, map_location="cpu", weights_only=False)
    weight = next(k for k in states["module"] if k.endswith("weight"))
    states["module"][weight].fill_(float("nan"))  # poisoned weights: the next loss is NaN
    torch.save(states, states_path)

    result = resume(out, check=False)
    assert result.returncode != 0
    assert "loss nan at step 16: training diverged and stopped" in result.stdout
    assert max(m["step"] for m in strict_metrics(out)) == 15
    assert (checkpoints / "diverged_step_16").is_dir()
    assert (checkpoints / "latest").read_text().strip() == "step_15"  # a rerun resumes there


def test_data_prepared_for_another_sequence_length_is_refused_before_training(tmp_path):
    out = tmp_path / "out"
    result = launch(
        project("seq32"), "--data", str(workspace() / "data"), "--out", str(out), check=False
    )
    assert result.returncode != 0
    assert "manifest.json does not fit this model" in result.stderr
    assert "seq_len 64 (train.seq_len 32)" in result.stderr
    assert not (out / "metrics.jsonl").exists()
