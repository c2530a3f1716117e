"""Generated projects train for real with 2 CPU processes under ZeRO 0, 1, 2 and 3.

Each run is 30 steps of a 2-layer GPT (d_model 64, seq 64) on Python standard-library
sources. The loss must fall, and since every stage trains the same model on the same
batches, the first steps must match the ZeRO-0 run (only the order of floating-point
reductions differs between stages).
"""

from __future__ import annotations

import math

import pytest
from train_harness import assert_loss_falls, losses_by_step, read_metrics, trained

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("stage", [0, 1, 2, 3])
def test_zero_stage_trains_and_matches_zero0(stage: int):
    out = trained(f"zero{stage}")
    assert_loss_falls(out)
    losses, reference = losses_by_step(out), losses_by_step(trained("zero0"))
    assert sorted(losses) == list(range(1, 31))
    for step in (1, 2, 3, 4, 5):
        assert losses[step] == pytest.approx(reference[step], rel=1e-5), step
    assert (out / "checkpoints" / "step_30").is_dir()


def test_metrics_lines_have_the_contract_4_fields():
    lines = read_metrics(trained("zero0"))
    for record in lines:
        assert {"step", "loss", "lr", "tokens_per_s"} <= set(record)
        assert record["tokens_per_s"] > 0
    final = lines[-1]
    assert final["step"] == 30
    assert final["val_perplexity"] == pytest.approx(math.exp(final["val_loss"]))
    assert lines[0]["lr"] == 0.0 and max(r["lr"] for r in lines) == pytest.approx(3e-3, rel=0.02)
