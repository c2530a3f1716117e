"""Objective ppo for real: the generated train_ppo.py on 2 DeepSpeed CPU ranks (gloo, through
the generated launch.sh), against the analytic KL-regularised optimum of
POSTTRAINING-NOTES.md §3.5 check 2.

Set-up that has a closed form: the base (actor and frozen reference) is a tiny transformer
whose LM head is zero, so the reference's next-token distribution is exactly uniform over
V = 32 tokens and context-free; the reward is the count of one token T in G = 16 generated
tokens (rlhf.reward_rule count:T, <eos> an ordinary token). The optimum of E[R] − β·KL is
then p*(T) = e^{1/β}/(e^{1/β} + V − 1) per token, E*[R] = G·p*, and
J* = G·β·log((V − 1 + e^{1/β})/V) (Korbak et al. 2022; Rafailov et al. 2023 eq. 4).
A broken sign, a missing KL term, a wrong advantage index or ratio cannot land in the band;
a weak penalty (β = 0.05) lets the policy run away to the reward (trl#204).
"""

from __future__ import annotations

import atexit
import functools
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

from tests.train_harness import (
    build,
    cpu_env,
    deep_merge,
    prepare_data,
    read_metrics,
    write_spec,
)

pytestmark = pytest.mark.slow

V, G, P = 32, 16, 4  # vocabulary, generated tokens, prompt tokens
WORDS = [f"w{i}" for i in range(V - 4)]  # after <pad> <eos> <unk> <mask>
TOKEN = "w7"
BLOCKED = "w3"  # rlhf.safety.blocklist


def optimum(beta: float) -> dict:
    """Closed forms of POSTTRAINING-NOTES.md appendix."""
    p = math.exp(1 / beta) / (math.exp(1 / beta) + V - 1)
    kl_token = p * math.log(p * V) + (1 - p) * math.log((1 - p) * V / (V - 1))
    return {
        "p": p,
        "reward": G * p,
        "kl": G * kl_token,
        "J": G * beta * math.log((V - 1 + math.exp(1 / beta)) / V),
    }


def test_closed_forms_match_the_notes():
    half, one = optimum(0.5), optimum(1.0)
    assert half["p"] == pytest.approx(0.1925, abs=1e-4)
    assert half["reward"] == pytest.approx(3.08, abs=0.005)
    assert half["kl"] == pytest.approx(3.25, abs=0.005)
    assert half["J"] == pytest.approx(1.456, abs=0.001)
    assert half["J"] == pytest.approx(half["reward"] - 0.5 * half["kl"], abs=1e-9)
    assert one["reward"] == pytest.approx(1.29, abs=0.005) and one["J"] == pytest.approx(
        0.837, abs=1e-3
    )


def overrides(beta: float, steps: int, best_of: int = 1) -> dict:
    safety = {"best_of": best_of, "blocklist": "toy/blocklist.txt"} if best_of > 1 else {}
    return {
        "model": {"vocab_size": V, "max_seq_len": P + G, "tie_embeddings": False},
        "data": {
            "sources": [{"path": "toy/prompts.txt"}],
            "tokenizer": {"path": "toy/tokenizer.json"},
            "validation_fraction": 0.05,
        },
        "train": {
            "objective": "ppo",
            "seq_len": P + G,
            "global_batch_size": 64,  # 32 rollouts per rank: one full-batch update per epoch
            "micro_batch_size": 32,
            "steps": steps,
            "optimizer": {"lr": 1.0e-3, "weight_decay": 0.0},
            "schedule": {"name": "constant", "warmup_steps": 0},
            "grad_clip": 1.0,
            "log_interval": 1,
            "checkpoint_interval": steps,
        },
        "finetune": {"base": {"path": "zero-head/checkpoints"}, "method": "full"},
        "rlhf": {
            "kl_coef": beta,
            "kl_estimator": "k1",
            "reward_rule": f"count:{TOKEN}",
            "rollout": {"max_new_tokens": G, "temperature": 1.0, "stop_at_eos": False},
            "ppo": {"epochs": 4, "clip_range": 0.2, "value_clip": 0.2, "value_coef": 0.1},
            "safety": safety,
        },
    }


ZERO_HEAD = """
import os, sys, torch
from model import build_model
torch.manual_seed(0)
model = build_model()
with torch.no_grad():
    for p in model.lm_head.parameters():
        p.zero_()  # every logit 0: the uniform, context-free reference
folder = os.path.join(sys.argv[1], "step_0")
os.makedirs(folder, exist_ok=True)
state = {k: v for k, v in model.state_dict().items() if k != "score_head"}
torch.save({"module": state}, os.path.join(folder, "mp_rank_00_model_states.pt"))
open(os.path.join(sys.argv[1], "latest"), "w").write("step_0")
"""


@functools.cache
def toy_workspace() -> Path:
    """A word-level tokenizer of V tokens, a corpus of random words (prompts), the prepared
    data, and the zero-head base: shared by every run of this module."""
    folder = Path(tempfile.mkdtemp(prefix="llmspec-ppo-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    (folder / "toy").mkdir()
    vocab = {t: i for i, t in enumerate(["<pad>", "<eos>", "<unk>", "<mask>", *WORDS])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.save(str(folder / "toy" / "tokenizer.json"))
    rng = random.Random(0)
    lines = [" ".join(rng.choices(WORDS, k=12)) for _ in range(2000)]
    (folder / "toy" / "prompts.txt").write_text("\n".join(lines) + "\n")
    (folder / "toy" / "blocklist.txt").write_text(BLOCKED + "\n")
    proj = build(write_spec(folder, "ppo-data", **overrides(0.5, 1)), folder / "ppo-data")
    prepare_data(proj, folder / "data")
    subprocess.run(
        [sys.executable, "-c", ZERO_HEAD, str(folder / "zero-head" / "checkpoints")],
        cwd=proj,
        env=cpu_env(),
        check=True,
        timeout=120,
    )
    return folder


@functools.cache
def run(
    beta: float, steps: int, best_of: int = 1, zero_stage: int = 0, stop_at: int = 0
) -> tuple[Path, list[dict], float]:
    """Build the PPO project and run its launch.sh (2 ranks); (project, metrics, seconds)."""
    folder = toy_workspace()
    name = f"ppo-beta{beta}-{steps}-best{best_of}-zero{zero_stage}-stop{stop_at}"
    spec = deep_merge(overrides(beta, steps, best_of), {"parallel": {"zero_stage": zero_stage}})
    proj = build(write_spec(folder, name, **spec), folder / name)
    (proj / "out").mkdir()
    os.symlink(folder / "data", proj / "out" / "data")
    seconds = launch_sh(proj, "--max-steps", str(stop_at)) if stop_at else 0.0
    seconds += launch_sh(proj)  # resumes from iteration stop_at when it stopped there
    return proj, read_metrics(proj / "out"), seconds


def launch_sh(proj: Path, *args: str) -> float:
    """The project's own launch.sh (prepares out/data when missing, 2 DeepSpeed ranks)."""
    started = time.perf_counter()
    result = subprocess.run(
        ["bash", "launch.sh", *args],
        cwd=proj,
        env=cpu_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"{result.stdout[-4000:]}\n{result.stderr[-6000:]}"
    return time.perf_counter() - started


def tail_means(metrics: list[dict], n: int) -> dict:
    last = metrics[-n:]
    return {k: sum(m[k] for m in last) / len(last) for k in ("reward_mean", "kl", "objective")}


def test_ppo_reaches_the_kl_regularised_optimum():
    beta, steps = 0.5, 40
    proj, metrics, seconds = run(beta, steps)
    star = optimum(beta)
    assert [m["step"] for m in metrics] == list(range(1, steps + 1))
    first = metrics[0]
    # iteration 1 samples the uniform reference: reward ≈ G/V = 0.5, KL exactly 0 there
    assert first["reward_mean"] == pytest.approx(G / V, abs=0.35)
    assert abs(first["kl"]) < 1e-4
    tail = tail_means(metrics, 20)
    print(f"beta {beta}: J* {star['J']:.3f} R* {star['reward']:.2f} KL* {star['kl']:.2f}; "
          f"achieved {tail} in {seconds:.0f} s")  # fmt: skip
    assert 0.85 * star["J"] <= tail["objective"] <= 1.05 * star["J"], tail
    assert tail["reward_mean"] == pytest.approx(star["reward"], rel=0.25), tail
    assert tail["kl"] == pytest.approx(star["kl"], rel=0.35), tail
    assert tail["reward_mean"] >= 4 * (G / V)
    assert all(0 <= m["clipfrac"] <= 1 and math.isfinite(m["value_loss"]) for m in metrics)
    # the actor's checkpoint is where generate.py finds it; the critic's beside it
    assert (proj / "out" / "checkpoints" / f"step_{steps}").is_dir()
    assert (proj / "out" / "critic_checkpoints" / f"step_{steps}").is_dir()


def test_weak_kl_penalty_runs_away():
    beta, steps = 0.05, 70
    _, metrics, seconds = run(beta, steps)
    tail = tail_means(metrics, 5)
    print(f"beta {beta}: achieved {tail} in {seconds:.0f} s; optimum {optimum(beta)}")
    assert tail["reward_mean"] >= 12, tail  # of G = 16: nearly every token is T
    assert tail["kl"] > 3 * optimum(0.5)["kl"], tail  # far past the β = 0.5 optimum's KL


def test_zero2_engines_follow_the_zero0_trajectory():
    """ZeRO 2 partitions gradients and AdamW state (the critic's LM head and the actor's value
    head frozen); the reference stays a full replica (DS-Chat's rule)."""
    proj, metrics, _ = run(0.5, 3, zero_stage=2)
    assert "frozen_zero_stage = 0" in (proj / "train_ppo.py").read_text()
    reference = run(0.5, 40)[1][:3]
    for mine, ref in zip(metrics, reference, strict=True):
        for key in ("reward_mean", "kl", "policy_loss", "value_loss", "clipfrac"):
            assert mine[key] == pytest.approx(ref[key], rel=1e-3, abs=1e-5), (key, mine, ref)


def test_zero3_engines_follow_the_zero0_trajectory_through_a_resume():
    """ZeRO 3: actor and critic partitioned, reference a ZeRO-3 eval engine (DS-Chat's rule),
    sampling through the partitioned actor: the same rollouts, rewards and losses as ZeRO 0,
    also after stopping at iteration 2 and resuming from the checkpoints (actor, critic,
    their optimizers, the prompt position and the sampling seed)."""
    proj, metrics, _ = run(0.5, 3, zero_stage=3, stop_at=2)
    assert (proj / "out" / "checkpoints" / "step_2").is_dir()
    assert "frozen_zero_stage = 3" in (proj / "train_ppo.py").read_text()
    reference = run(0.5, 40)[1][:3]
    for mine, ref in zip(metrics, reference, strict=True):
        for key in ("reward_mean", "kl", "policy_loss", "value_loss", "clipfrac"):
            assert mine[key] == pytest.approx(ref[key], rel=1e-3, abs=1e-5), (key, mine, ref)


def preference_records(rng: random.Random, n: int) -> list[str]:
    """{prompt, chosen, rejected}: 16-word responses, the chosen one with more TOKENs."""
    records = []
    while len(records) < n:
        pair = []
        for _ in range(2):
            density = rng.choice([0.0, 0.1, 0.2, 0.35, 0.5])
            words = [TOKEN if rng.random() < density else rng.choice(WORDS) for _ in range(G)]
            pair.append(words)
        a, b = (w.count(TOKEN) for w in pair)
        if a == b:
            continue
        chosen, rejected = pair if a > b else pair[::-1]
        prompt = " ".join(rng.choices(WORDS, k=2))
        records.append(json.dumps({
            "prompt": prompt, "chosen": " " + " ".join(chosen), "rejected": " " + " ".join(rejected),
        }))  # fmt: skip
    return records


@functools.cache
def reward_model_run() -> tuple[Path, list[dict]]:
    """A reward model of the toy (objective reward, full fine-tune of the zero-head base) on
    pairs whose chosen response holds more TOKENs: the first link of the tiny chain."""
    folder = toy_workspace()
    (folder / "pref").mkdir(exist_ok=True)
    (folder / "pref" / "pairs.jsonl").write_text(
        "\n".join(preference_records(random.Random(2), 3000)) + "\n"
    )
    spec = deep_merge(overrides(0.5, 1), {
        "data": {"sources": [{"path": "pref/*.jsonl"}], "validation_fraction": 0.05},
        "train": {"objective": "reward", "global_batch_size": 32, "micro_batch_size": 16, "steps": 150,
                  "optimizer": {"lr": 2.0e-3}, "eval_interval": 150, "eval_batches": 4, "checkpoint_interval": 150},
    })  # fmt: skip
    spec.pop("rlhf")
    proj = build(write_spec(folder, "rm", **spec), folder / "rm")
    launch_sh(proj)
    return proj, read_metrics(proj / "out")


def test_ppo_against_a_trained_reward_model():
    """reward → ppo: train_ppo.py loads the reward model (rlhf.reward_model), scores each
    response at its last token with it, and raises that score against the KL penalty."""
    _, rm_metrics = reward_model_run()
    assert rm_metrics[-1]["pairwise_accuracy"] >= 0.9, rm_metrics[-1]
    assert rm_metrics[0]["step"] == 0 and rm_metrics[0]["pairwise_accuracy"] < 0.9  # learnt
    folder = toy_workspace()
    spec = deep_merge(
        overrides(0.1, 25), {"rlhf": {"reward_model": {"path": "rm/out/checkpoints"}}}
    )
    spec["rlhf"].pop("reward_rule")
    proj = build(write_spec(folder, "ppo-rm", **spec), folder / "ppo-rm")
    assert "reward_model_path" in (proj / "train_ppo.py").read_text()
    (proj / "out").mkdir()
    os.symlink(folder / "data", proj / "out" / "data")
    launch_sh(proj)
    metrics = read_metrics(proj / "out")
    first = sum(m["reward_mean"] for m in metrics[:3]) / 3
    last = sum(m["reward_mean"] for m in metrics[-5:]) / 5
    print(
        f"reward model: accuracy {rm_metrics[-1]['pairwise_accuracy']:.3f}; PPO reward {first:.3f} -> {last:.3f}"
    )
    assert last > first + 1.0, (first, last)


def test_launch_runs_train_ppo(tmp_path):
    proj = toy_workspace() / "ppo-data"
    assert "train_ppo.py" in (proj / "launch.sh").read_text()
    assert not (proj / "train.py").exists()
    assert json.loads((proj / "ds_config.json").read_text())["train_batch_size"] == 64


def binomial_cdf(n: int, p: float) -> list[float]:
    pmf = [math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)]
    return [sum(pmf[: k + 1]) for k in range(n + 1)]


def max_moments(k: int, n: int, p: float) -> tuple[float, float]:
    """E[max] and E[max²] of k iid Binomial(n, p): P(max ≤ j) = F(j)^k."""
    cdf = binomial_cdf(n, p)
    mass = [cdf[j] ** k - (cdf[j - 1] ** k if j else 0.0) for j in range(n + 1)]
    return sum(j * m for j, m in enumerate(mass)), sum(j * j * m for j, m in enumerate(mass))


def test_best_of_n_notes_value():
    assert max_moments(4, G, 1 / V)[0] == pytest.approx(1.2313, abs=1e-4)  # POSTTRAINING-NOTES §3.5


def test_rejection_sampling_is_exact_on_the_uniform_reference():
    """Iteration 1 samples the uniform reference: 4 candidates per prompt, any holding BLOCKED
    rejected (probability 1 − (31/32)^16 = 0.3983), the best of the rest by count of TOKEN kept.
    Rejected fraction and kept reward equal their exact expectations within 3 standard errors."""
    n = 4
    _, metrics, _ = run(0.5, 1, best_of=n)
    first = metrics[0]
    prompts, candidates = 64, 64 * n
    q = ((V - 1) / V) ** G  # a candidate is safe
    assert first["rejected_fraction"] == first["rejected"] / candidates
    se = math.sqrt(q * (1 - q) / candidates)
    assert abs(first["rejected_fraction"] - (1 - q)) <= 3 * se, first
    # kept: the max of K ~ Binomial(n, q) safe candidates, each count ~ Binomial(G, 1/31)
    p_k = [math.comb(n, k) * q**k * (1 - q) ** (n - k) for k in range(n + 1)]
    kept = 1 - p_k[0]
    mean = sum(p_k[k] * max_moments(k, G, 1 / (V - 1))[0] for k in range(1, n + 1)) / kept
    square = sum(p_k[k] * max_moments(k, G, 1 / (V - 1))[1] for k in range(1, n + 1)) / kept
    n_kept = prompts - first["dropped"]
    se = math.sqrt((square - mean**2) / n_kept)
    print(f"rejected {first['rejected_fraction']:.4f} (exact {1 - q:.4f}); kept reward "
          f"{first['reward_mean']:.3f} (exact {mean:.3f} ± {se:.3f}); dropped {first['dropped']}")  # fmt: skip
    assert abs(first["reward_mean"] - mean) <= 3 * se, first
    assert first["dropped"] <= prompts * (p_k[0] + 3 * math.sqrt(p_k[0] * (1 - p_k[0]) / prompts))
