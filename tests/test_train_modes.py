"""Generated projects train for real with 2 CPU processes in the other planned modes:
bf16 (started by the real `deepspeed` launcher), ZeRO-Offload of the optimizer to CPU
(DeepSpeedCPUAdam), 2 pipeline stages (ZeRO-1, full recompute, and per-op selective
recompute) and tensor parallel 2 (ZeRO-3, sequence parallel, selective recompute).

Every mode trains the same model from the same seed on the same global batches as the
ZeRO-0 run, so besides a falling loss the first step's loss (before any update) must
match it: a strong check of the data split, the pipeline cut and the tensor-parallel
layers.
"""

from __future__ import annotations

import json

import pytest
from train_harness import assert_loss_falls, losses_by_step, project, trained

pytestmark = pytest.mark.slow

MODES = {
    # name: (launcher, tolerance on the first-step loss relative to ZeRO-0)
    "bf16": ("deepspeed", 1e-2),  # bf16 activations: ~3 significant digits
    "offload": ("torchrun", 1e-6),
    "pipeline2": ("torchrun", 1e-5),
    "pipeline2-ops": ("torchrun", 1e-5),
    "tensor2": ("torchrun", 1e-5),
}


@pytest.mark.parametrize("mode", list(MODES))
def test_mode_trains_and_starts_where_zero0_starts(mode: str):
    launcher, tolerance = MODES[mode]
    out = trained(mode, launcher)
    assert_loss_falls(out)
    losses, reference = losses_by_step(out), losses_by_step(trained("zero0"))
    assert sorted(losses) == list(range(1, 31))
    assert losses[1] == pytest.approx(reference[1], rel=tolerance)


def test_modes_ran_with_the_planned_deepspeed_config():
    configs = {mode: json.loads((project(mode) / "ds_config.json").read_text()) for mode in MODES}
    assert configs["bf16"]["bf16"] == {"enabled": True}
    offload = configs["offload"]["zero_optimization"]["offload_optimizer"]
    assert offload == {"device": "cpu", "pin_memory": False}
    assert configs["pipeline2"]["gradient_accumulation_steps"] == 2  # 8 = 4 × 2 × data 1
    assert configs["tensor2"]["zero_optimization"]["stage"] == 3
    assert "init_parallel" in (project("tensor2") / "train.py").read_text()
