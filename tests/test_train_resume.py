"""Kill-and-resume: a run stopped after its step-15 checkpoint and started again
reproduces the uninterrupted 30-step run bit for bit (same seed, same data): for a
causal LM under ZeRO-2 and under ZeRO-3 (whose model is built inside deepspeed.zero.Init),
and for a masked LM with dropout under ZeRO-1, whose masks and
dropout draws must replay too."""

from __future__ import annotations

import json
import shutil

import pytest
from train_harness import launch, losses_by_step, project, read_metrics, trained, workspace

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("variant", ["zero2", "zero3", "bert-mlm-dropout"])
def test_stopped_and_resumed_run_reproduces_the_uninterrupted_one(variant: str):
    uninterrupted = losses_by_step(trained(variant))
    proj = project(variant)
    out = workspace() / f"{variant}-resumed"
    shutil.rmtree(out, ignore_errors=True)
    data = str(workspace() / "data")

    launch(proj, "--data", data, "--out", str(out), "--max-steps", "15")
    first = losses_by_step(out)
    assert sorted(first) == list(range(1, 16))
    assert (out / "checkpoints" / "latest").read_text().strip() == "step_15"
    # A killed run may have logged steps past its last checkpoint: resume must drop them.
    with open(out / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 16, "loss": 99.0, "lr": 0.0, "tokens_per_s": 1.0}) + "\n")
        f.write('{"step": 17, "lo')  # killed in the middle of a line

    result = launch(proj, "--data", data, "--out", str(out))
    assert "resumed from" in result.stdout and "at step 15" in result.stdout
    resumed = losses_by_step(out)
    assert [m["step"] for m in read_metrics(out)] == list(range(1, 31))
    for step in range(1, 31):
        assert resumed[step] == uninterrupted[step], f"step {step}"
