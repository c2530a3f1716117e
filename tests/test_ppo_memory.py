"""PPO memory rows reproduce POSTTRAINING-NOTES 3.4's Llama-2-7B worked example (8 GPUs)."""

import pytest

from llmspec.plan.ppo_memory import kv_cache_bytes, ppo_memory, total
from llmspec.units import GIB

PSI = 6.74e9


def _gib(rows, names):
    return sum(r.bytes for r in rows if r.name in names) / GIB


def test_zero2_states():
    rows = ppo_memory(actor_params=PSI, critic_params=PSI, reward_params=PSI, zero_stage=2, dp=8)
    assert _gib(rows, {"actor", "critic"}) == pytest.approx(47.1, abs=0.05)
    assert _gib(rows, {"reference", "reward"}) == pytest.approx(25.1, abs=0.05)
    assert total(rows) / GIB == pytest.approx(72.2, abs=0.05)


def test_zero3_states():
    rows = ppo_memory(actor_params=PSI, critic_params=PSI, reward_params=PSI, zero_stage=3, dp=8)
    assert total(rows) / GIB == pytest.approx(28.2, abs=0.05)


def test_lora_actor_zero3():
    rows = ppo_memory(
        actor_params=PSI, critic_params=PSI, reward_params=PSI, zero_stage=3, dp=8, lora_actor=True
    )
    assert total(rows) / GIB == pytest.approx(15.7, abs=0.05)


def test_kv_cache_and_peak_phase():
    kv = kv_cache_bytes(n_layers=32, n_kv_heads=32, d_head=128, tokens=2048, batch=8)
    assert kv / GIB == pytest.approx(8.0, abs=0.01)
    rows = ppo_memory(
        actor_params=PSI,
        critic_params=PSI,
        reward_params=PSI,
        zero_stage=3,
        dp=8,
        phases={"generate": kv, "score": 1.0, "train_actor": 2.0, "train_critic": 3.0},
    )
    assert rows[-1].name == "phase:generate"
    assert (total(rows) - kv) / GIB == pytest.approx(28.2, abs=0.05)
