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
from llmspec.plan.ppo_memory import PHASES, plan_ppo
from llmspec.plan.types import Layout
from llmspec.spec.load import load_spec
from llmspec.spec.schema import Spec
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
    # trained models: weights and AdamW state stay all iteration (bf16 weights 2 B, fp32
    # master + m + v 12 B partitioned over 8); gradients (2 B over 8) live in their update
    # phase only. The critic's LM head and the actor's value head keep weights only.
    idle = (32000 * 4096 + 4096) * 12 / 8
    assert z2.models["actor"] + z2.models["critic"] == pytest.approx(
        2 * psi * (2 + 12 / 8) - idle, rel=1e-9
    )
    # the notes' figures (ZeRO paper: 2 + 2 + 12 B per parameter, all of them trained) are
    # these rows with the gradients added back
    grads = 2 * psi * 2 / 8
    assert (z2.models["actor"] + z2.models["critic"] + grads + idle) / GIB == pytest.approx(
        47.1, abs=0.05
    )
    assert (sum(z2.models.values()) + grads + idle) / GIB == pytest.approx(72.2, abs=0.05)
    assert (sum(z3.models.values()) + grads + idle) / GIB == pytest.approx(28.2, abs=0.06)
    # the KV cache of 8 rollouts × 2048 tokens: 8.0 GiB, plus the last step's fp32 logits
    assert z2.phases["generate"] == 2 * 32 * 32 * 128 * 2048 * 8 * 2 + 8 * 32000 * 4
    assert set(z2.phases) == set(PHASES)


def test_zero0_and_1_do_not_fit_and_the_plan_says_why(plan):
    ppo = plan.ppo
    assert [s.fits for s in ppo.stages] == [False, False, True, True]
    assert plan.fits and ppo.chosen_zero_stage == 3  # pinned by the spec
    z1, z2 = ppo.stage(1), ppo.stage(2)
    assert "OOM" in z1.why() and "full replicas" in z1.why()
    # ZeRO 2: 72 GiB of states less the 3.1 GiB of gradients generation does not hold, plus
    # the 8 GiB KV cache and the runtime reserve, against the H100's 79.2 GiB: it fits by
    # under 1 GiB (with the datasheet's 80e9 bytes as capacity it did not)
    assert z2.peak_phase == "generate"
    assert 0 < z2.capacity_bytes - z2.total - z2.overhead_bytes < GIB
    assert "fits" in ppo.stage(3).why()
    assert any(line.startswith("PPO at ZeRO 3: fits") for line in plan.explanation)


def test_pinning_zero1_does_not_fit_and_names_the_fix(spec):
    plan = plan_spec(spec, "zero_stage=1")
    assert not plan.fits
    assert any("fix: set parallel.zero_stage: 2" in line for line in plan.explanation)


def test_zero_stage_auto_is_chosen_for_all_four_models(spec):
    """With zero_stage auto the search alone sizes the actor's update. On one H100 node its
    ZeRO 3 holds all four models and stays. On two nodes of four H100s behind a 3 GB/s
    network per GPU the actor alone is fastest at ZeRO 1 (one gradient reduction a step,
    against ZeRO 3's gathers every micro-batch), which cannot hold the four models: the plan
    takes the lowest stage that can, unpinned."""
    auto = spec.model_copy(
        update={"parallel": spec.parallel.model_copy(update={"zero_stage": "auto"})}
    )
    plan = plan_spec(auto)
    assert plan.layout.zero_stage == plan.ppo.chosen_zero_stage == 3 and plan.fits
    assert not any(line.startswith("zero_stage") for line in plan.explanation)
    d = spec.model_dump()
    d["parallel"]["zero_stage"] = "auto"
    d["cluster"].update(nodes=2, gpus_per_node=4, gpu={"name": "h100-sxm", "inter_node_gbps": 3.0})
    plan = plan_spec(Spec.model_validate(d))
    assert plan.layout.zero_stage == plan.ppo.chosen_zero_stage == 2 and plan.fits
    assert [s.zero_stage for s in plan.ppo.stages if s.fits] == [2, 3]
    assert not any(p.startswith("zero_stage") for p in plan.pinned)
    assert plan.explanation[0].startswith("zero_stage 2: the lowest ZeRO stage")
    assert "(ZeRO 1, best for the actor's update alone, does not" in plan.explanation[0]
    assert not any(line.startswith("auto (nothing pinned)") for line in plan.explanation)


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
    assert d["ppo"]["fitting_zero_stages"] == [2, 3]
    assert d["ppo"]["stages"][2]["models"]["reference"] == 2 * d["params"]["total"]
    assert main(["plan", str(root / "specs" / "llama2-7b.yaml"), "--json"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert "ppo" not in plain and set(d) - set(plain) == {"ppo"}  # additive only


# ----------------------------------------------------------------------------- measured
pytest.importorskip("torch")
from llmspec.verify.measure import measure_ppo_update  # noqa: E402

FAMILIES = {
    "gpt": dict(arch="gpt", position="learned", norm="layernorm", activation="gelu", bias=True),
    "llama": dict(arch="llama", position="rope", norm="rmsnorm", activation="swiglu", bias=False,
                  n_kv_heads=2),
}  # fmt: skip


def ppo_spec(family="gpt", precision="fp32", vocab=1000, d=128, seq=64, new=16, tie=True):
    model = dict(vocab_size=vocab, max_seq_len=128, d_model=d, n_layers=2, n_heads=4, d_ff=4 * d,
                 tie_embeddings=tie, dropout=0.0, attention_dropout=0.0, **FAMILIES[family])  # fmt: skip
    return Spec.model_validate({
        "name": "ppo-measure", "model": model,
        "train": {"objective": "ppo", "seq_len": seq, "precision": precision},
        "finetune": {"base": {"path": "b"}, "method": "full"},
        "rlhf": {"reward_rule": "count:a", "rollout": {"max_new_tokens": new}},
    })  # fmt: skip


def planned_update(spec, layout) -> float:
    """The PPO plan's rows at ZeRO 0 on one rank: every model, plus the larger update phase."""
    stage = plan_ppo(spec, ModelDims.from_spec(spec), layout, 8 * GIB, "cpu").stage(0)
    return sum(stage.models.values()) + max(
        stage.phases["actor update"], stage.phases["critic update"]
    )


MEASURE_CASES = [
    ({}, 4),
    ({"precision": "bf16", "vocab": 4096}, 8),
    ({"family": "llama", "tie": False, "vocab": 2000}, 4),
    ({"seq": 128, "new": 64, "vocab": 8000, "d": 64}, 8),  # the vocabulary-wide log-probs dominate
]


@pytest.mark.parametrize("model,micro_batch", MEASURE_CASES)
def test_planned_update_within_5_percent_of_a_fake_tensor_measure(model, micro_batch):
    """One actor update and one critic update of the generated model.py (four models
    resident, both AdamW states) under FakeTensorMode + MemTracker, against the plan."""
    spec = ppo_spec(**model)
    layout = Layout(micro_batch_size=micro_batch)
    measured = measure_ppo_update(spec, layout)
    planned = planned_update(spec, layout)
    print(f"{model} b={micro_batch}: planned {planned / 2**20:.2f} MiB, measured "
          f"{measured.total / 2**20:.2f} MiB ({planned / measured.total - 1:+.2%})")  # fmt: skip
    assert planned == pytest.approx(measured.total, rel=0.05)


def test_the_example_specs_update_is_measured_as_planned():
    spec = load_spec(ROOT / "specs" / "tiny-cpu-ppo.yaml")
    layout = Layout(micro_batch_size=plan_spec(spec).layout.micro_batch_size)
    measured = measure_ppo_update(spec, layout)
    assert planned_update(spec, layout) == pytest.approx(measured.total, rel=0.05)


def test_plan_measure_on_a_ppo_spec_measures_the_ppo_update(capsys):
    assert main(["plan", str(ROOT / "specs" / "tiny-cpu-ppo.yaml"), "--measure"]) == 0
    out = capsys.readouterr().out
    assert "PPO update, planned vs measured" in out and "measured peak" in out
