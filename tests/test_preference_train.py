"""Objectives reward and dpo for real: 2 CPU ranks (gloo), LoRA on the shared trained base of
`train_harness`, on preference records {prompt, chosen, rejected}.

What cannot be faked: DPO's step-0 validation loss is ln 2 (the policy is its reference
while B = 0: every implicit reward is 0); after training the implicit reward margin is
positive; a reward model reaches ≥ 95% pairwise accuracy on held-out pairs within 200 steps.
"""

from __future__ import annotations

import functools
import json
import math
import random

import pytest

from tests.train_harness import (
    build,
    launch,
    prepare_data,
    read_metrics,
    trained,
    workspace,
    write_spec,
)

pytestmark = pytest.mark.slow
GOOD = "def class return import from yield lambda while for with".split()
BAD = "print len range open sorted list dict set tuple str".split()


def overrides(objective: str, steps: int) -> dict:
    return {
        "finetune": {
            "base": {"path": "zero0/out/checkpoints"},
            "method": "lora",
            "lora": {"rank": 8, "alpha": 16, "targets": ["q", "v", "up", "down"]},
        },
        "data": {
            "sources": [{"path": "pref/*.jsonl"}],
            "tokenizer": {"path": "data/tokenizer.json"},
            "validation_fraction": 0.1,
        },
        "train": {
            "objective": objective,
            "steps": steps,
            "log_interval": 10,
            "eval_interval": steps,
            "eval_batches": 8,
            "checkpoint_interval": steps,
            "optimizer": {"lr": 3.0e-3, "weight_decay": 0.0},
            "schedule": {"name": "constant", "warmup_steps": 0},
        },
        "rlhf": {"beta": 0.1},
    }


@functools.cache
def preference_data() -> str:
    """Pairs whose chosen response names keywords and whose rejected one names builtins: a
    preference a model learns from the responses, with prompts shared by both."""
    folder = workspace()
    trained("zero0")
    rng = random.Random(1)
    (folder / "pref").mkdir(exist_ok=True)
    lines = []
    for _ in range(600):
        lines.append(json.dumps({
            "prompt": f"# {rng.choice(['pick', 'name', 'list'])} three words:\n#",
            "chosen": " " + " ".join(rng.sample(GOOD, 3)),
            "rejected": " " + " ".join(rng.sample(BAD, 3)),
        }))  # fmt: skip
    (folder / "pref" / "pairs.jsonl").write_text("\n".join(lines) + "\n")
    proj = build(write_spec(folder, "pref-data", **overrides("dpo", 1)), folder / "pref-data")
    return str(prepare_data(proj, folder / "pref-data-prepared"))


@functools.cache
def run(objective: str, steps: int):
    folder = workspace()
    data = preference_data()
    name = f"{objective}-{steps}"
    proj = build(write_spec(folder, name, **overrides(objective, steps)), folder / name)
    result = launch(proj, "--data", data, "--out", str(proj / "out"))
    return proj, result, read_metrics(proj / "out")


def test_prepared_pairs_keep_chosen_and_rejected_together():
    manifest = json.loads(
        (__import__("pathlib").Path(preference_data()) / "manifest.json").read_text()
    )
    assert manifest["pairs"] and manifest["sft"]
    for split in ("train", "val"):
        assert manifest["splits"][split]["sequences"] == 2 * manifest["splits"][split]["documents"]


def test_dpo_starts_at_ln2_and_learns_the_preference():
    proj, result, metrics = run("dpo", 40)
    start, end = metrics[0], metrics[-1]
    assert start["step"] == 0 and start["val_loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert start["reward_margin"] == pytest.approx(0.0, abs=1e-6)
    assert end["step"] == 40 and end["reward_margin"] > 0.5 and end["accuracy"] >= 0.9, end
    assert end["val_loss"] < math.log(2) - 0.2


def test_reward_model_ranks_held_out_pairs():
    proj, result, metrics = run("reward", 200)
    end = metrics[-1]
    assert end["step"] == 200 and end["pairwise_accuracy"] >= 0.95, end
    assert metrics[0]["step"] == 0 and metrics[0]["pairwise_accuracy"] < 0.9  # learnt, not given
