"""`llmspec plan` on a PPO spec: one memory row per resident model (actor, critic, reference,
reward) and per phase (generate with the KV cache, score, actor update, critic update), at
every ZeRO stage, with DeepSpeed-Chat's eval rule for the frozen models, and which stages fit.

specs/llama2-7b-ppo.yaml is POSTTRAINING-NOTES.md §3.4's worked example: Llama-2-7B as all
four models, 8 × 80 GB GPUs, 8 rollouts × 2048 tokens per rank. The notes' figures use the
ZeRO paper's 16 B/param for every parameter; the plan uses its own model-state bytes
(plan.memory.model_states), which give the idle heads (the critic's LM head, the actor's
value head) no gradient or optimizer state: 0.2 GiB less of 72.2.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmspec.cli.main import main
from llmspec.graph.dims import ModelDims
from llmspec.graph.layers import count_params
from llmspec.pipeline import plan_spec
from llmspec.plan.ppo_memory import MODELS, PHASES
from llmspec.spec.load import load_spec
from llmspec.units import GIB

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def spec():
    return load_spec(ROOT / "specs" / "llama2-7b-ppo.yaml")


@pytest.fixture(scope="module")
def plan(spec):
    return plan_spec(spec)


def gib(stage, names):
    return sum(stage.models[n] for n in names) / GIB


def test_7b_rows_reproduce_the_worked_example(spec, plan):
    ppo = plan.ppo
    assert [s.zero_stage for s in ppo.stages] == [0, 1, 2, 3]
    z2, z3 = ppo.stage(2), ppo.stage(3)
    psi = count_params(ModelDims.from_spec(spec)).total
    # frozen bf16 replicas under ZeRO 2 (eval stage 0), partitioned over 8 under ZeRO 3: exact
    assert z2.frozen_zero_stage == 0 and z3.frozen_zero_stage == 3
    assert z2.models["reference"] == z2.models["reward"] == 2 * psi
    assert z3.models["reference"] == 2 * psi / 8
    assert gib(z2, ("reference", "reward")) == pytest.approx(25.1, abs=0.05)
    # trained states: the notes' 47.1 / 72.2 / 28.2 GiB, less the idle heads' states
    # (the critic's LM head and the actor's value head keep weights only: ZeRO 2 and 3 alike
    # partition gradients and AdamW state over the 8 ranks)
    idle = (32000 * 4096 + 4096) * (12 / 8 + 2 / 8) / GIB
    assert gib(z2, ("actor", "critic")) + idle == pytest.approx(47.1, abs=0.05)
    assert gib(z2, MODELS) + idle == pytest.approx(72.2, abs=0.05)
    assert gib(z2, MODELS) == pytest.approx(72.2, rel=0.005)
    assert gib(z3, MODELS) + idle == pytest.approx(28.2, abs=0.05)
    # the KV cache of 8 rollouts × 2048 tokens: 8.0 GiB, plus the last step's fp32 logits
    assert z2.phases["generate"] == 2 * 32 * 32 * 128 * 2048 * 8 * 2 + 8 * 32000 * 4
    assert set(z2.phases) == set(PHASES)


def test_only_zero3_fits_and_the_plan_says_why(plan):
    ppo = plan.ppo
    assert [s.fits for s in ppo.stages] == [False, False, False, True]
    assert plan.fits and ppo.chosen_zero_stage == 3
    z2 = ppo.stage(2)
    assert z2.peak_phase == "generate"  # 72 GiB of states + the 8 GiB KV cache > 74.5 GiB
    assert "OOM" in z2.why() and "full replicas" in z2.why()
    assert "fits" in ppo.stage(3).why()
    assert any(line.startswith("PPO at ZeRO 3: fits") for line in plan.explanation)


def test_pinning_zero2_does_not_fit_and_names_the_fix(spec):
    plan = plan_spec(spec, "zero_stage=2")
    assert not plan.fits
    assert any("fix: set parallel.zero_stage: 3" in line for line in plan.explanation)


def test_cli_prints_rows_and_json_grows_one_key(root, capsys):
    path = str(root / "specs" / "llama2-7b-ppo.yaml")
    assert main(["plan", path]) == 0
    out = capsys.readouterr().out
    assert "PPO memory per GPU" in out
    for row in ("actor (trains)", "critic (trains)", "reference (frozen base)", "reward (frozen)",
                "phase: generate (KV cache, 8 × 2048 tokens)", "phase: score", "phase: actor update",
                "phase: critic update", "ZeRO 3 (plan)"):  # fmt: skip
        assert row in out
    assert main(["plan", path, "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["ppo"]["fitting_zero_stages"] == [3]
    assert d["ppo"]["stages"][2]["models"]["reference"] == 2 * d["params"]["total"]
    assert main(["plan", str(root / "specs" / "llama2-7b.yaml"), "--json"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert "ppo" not in plain and set(d) - set(plain) == {"ppo"}  # additive only
