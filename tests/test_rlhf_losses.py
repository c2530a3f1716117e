"""The generated rlhf.py losses equal their references on fixed tensors.

Oracles: TRL 1.16's own RewardTrainer.compute_loss and DPOTrainer._compute_loss, called unbound
on a stub trainer (identity gathers, no network) with a model that returns the fixed rewards /
per-token log-probs; torchtune's DPO test vector; TRL's PPO expressions (now in trl.experimental,
not installed) pinned here as written in its ppo_trainer.py; closed forms for the KL estimators.
"""

from __future__ import annotations

import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from model_harness.specs import plan_for, tiny_spec

from llmspec.codegen.model_code import load_model_module, render_model_py
from llmspec.codegen.rlhf_context import render_rlhf_py
from llmspec.errors import SpecError
from llmspec.spec.load import load_spec_text

trl_dpo = pytest.importorskip("trl.trainer.dpo_trainer")
trl_reward = pytest.importorskip("trl.trainer.reward_trainer")


def rlhf_module(objective: str):
    source = render_rlhf_py(tiny_spec("llama", train={"objective": objective}))
    return load_model_module(source, name=f"rlhf_{objective}")


class _Accelerator:
    device = torch.device("cpu")

    @staticmethod
    def gather_for_metrics(x):
        return x

    gather = gather_for_metrics


def _stub_trainer(**fields):
    base = dict(
        accelerator=_Accelerator(),
        model=SimpleNamespace(training=True),
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
        _total_train_tokens=0,
        _tp_size=1,
    )
    base.update(fields)
    return SimpleNamespace(**base)


# ----------------------------------------------------------------------------- reward
@pytest.mark.parametrize("margin", [False, True])
@pytest.mark.parametrize("center", [None, 0.01])
def test_reward_loss_equals_trl(margin, center):
    rlhf = rlhf_module("reward")
    g = torch.Generator().manual_seed(0)
    chosen, rejected = torch.randn(6, generator=g), torch.randn(6, generator=g)
    inputs = {"attention_mask": torch.ones(12, 5, dtype=torch.long)}
    m = torch.rand(6, generator=g)
    if margin:
        inputs["margin"] = m
    trainer = _stub_trainer(args=SimpleNamespace(center_rewards_coefficient=center))

    def model(**_):
        return SimpleNamespace(logits=torch.cat([chosen, rejected])[:, None])

    expected = trl_reward.RewardTrainer.compute_loss(trainer, model, dict(inputs))
    ours = rlhf.reward_loss(chosen, rejected, m if margin else None, center or 0.0)
    assert abs(ours.item() - expected.item()) <= 1e-7
    assert (
        rlhf.pairwise_accuracy(chosen, rejected).item() == trainer._metrics["train"]["accuracy"][0]
    )


def test_end_scores_are_padding_invariant_and_refuse_left_padding():
    rlhf = rlhf_module("reward")
    values = torch.randn(3, 6)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1], [1, 0, 0, 0, 0, 0]])
    assert rlhf.end_scores(values, mask).tolist() == [values[0, 2], values[1, 5], values[2, 0]]
    with pytest.raises(ValueError, match="right-padded"):
        rlhf.last_token_index(torch.tensor([[0, 1, 1]]))


# ----------------------------------------------------------------------------- DPO
TORCHTUNE = dict(
    policy_chosen=[-0.5, -10.0, -1.0],
    policy_rejected=[-0.1, -30.0, -21.0],
    ref_chosen=[-0.5, -10.1, -0.1],
    ref_rejected=[-0.1, -20.1, -0.1],
)


def test_dpo_torchtune_vector_and_label_smoothing():
    rlhf = rlhf_module("dpo")
    t = {k: torch.tensor(v) for k, v in TORCHTUNE.items()}
    expected = [
        0.693147,
        0.313262,
        0.126928,
    ]  # torchtune tests/torchtune/rlhf/loss/test_dpo_loss.py
    for i, want in enumerate(expected):
        loss, _, _ = rlhf.dpo_loss(*(t[k][i : i + 1] for k in TORCHTUNE), beta=0.1)
        assert abs(loss.item() - want) <= 1e-6
    # conservative DPO: torchtune DPOLoss −logσ(βx)(1−ε) − logσ(−βx)ε, x = [0, 1, 2]·(1/β)
    eps, x = 0.1, torch.tensor([0.0, 1.0, 2.0])
    want = (-F.logsigmoid(x) * (1 - eps) - F.logsigmoid(-x) * eps).mean().item()
    loss, _, _ = rlhf.dpo_loss(*t.values(), beta=0.1, label_smoothing=eps)
    assert abs(loss.item() - want) <= 1e-6


def _trl_dpo_loss(loss_type, beta, per_token_logps, ref_logps, completion_mask):
    trainer = _stub_trainer(
        aux_loss_enabled=False,
        ld_alpha=None,
        precompute_ref_logps=True,
        f_divergence_type="reverse_kl",
        loss_types=[loss_type],
        loss_weights=[1.0],
        beta=beta,
        label_smoothing=0.0,
        use_weighting=False,
    )
    n, t = per_token_logps.shape

    def model(**_):  # TRL reads the per-token log-probs of the labels (−100 → masked out)
        zeros = torch.zeros(n, t)
        return SimpleNamespace(
            log_probs=per_token_logps, entropy=zeros, mean_logits=zeros, is_top1=zeros.bool()
        )

    inputs = {
        "input_ids": torch.zeros(n, t + 1, dtype=torch.long),
        "attention_mask": torch.ones(n, t + 1, dtype=torch.long),
        "completion_mask": completion_mask,
        "ref_chosen_logps": ref_logps[: n // 2],
        "ref_rejected_logps": ref_logps[n // 2 :],
    }
    return trl_dpo.DPOTrainer._compute_loss(trainer, model, inputs, False), trainer._metrics[
        "train"
    ]


@pytest.mark.parametrize("loss_type", ["sigmoid", "hinge", "ipo"])
def test_dpo_loss_equals_trl_on_a_generated_model_batch(loss_type):
    """Per-token log-probs from the generated llama (2 pairs); TRL's _compute_loss sums them and
    applies its loss; ours goes through sequence_logprobs + dpo_loss. Equal to all printed digits."""
    spec = tiny_spec("llama", train={"objective": "dpo"})
    model = load_model_module(
        render_model_py(spec, *plan_for(spec)), name="dpo_llama"
    ).build_model()
    rlhf = rlhf_module("dpo")
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(0, spec.model.vocab_size, (4, 12), generator=g)  # [chosen×2; rejected×2]
    completion = torch.zeros(4, 12, dtype=torch.long)
    completion[:, 5:] = 1
    completion[1, 10:] = 0  # a shorter completion (padded on the right)
    with torch.no_grad():
        logits = model(ids)
        logps = (
            torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
        )
    per_token = logps * completion[:, 1:]
    ref = torch.tensor([-40.0, -35.5, -41.0, -38.25])
    expected, metrics = _trl_dpo_loss(loss_type, 0.1, per_token, ref, completion)

    seq = rlhf.sequence_logprobs(logits, ids, completion)
    lengths = completion[:, 1:].sum(1).float()
    loss, rc, rr = rlhf.dpo_loss(
        seq[:2], seq[2:], ref[:2], ref[2:], beta=0.1, loss_type=loss_type,
        chosen_lengths=lengths[:2], rejected_lengths=lengths[2:],
    )  # fmt: skip
    assert f"{loss.item():.17g}" == f"{expected.item():.17g}"
    assert abs((rc - rr).mean().item() - metrics["rewards/margins"][0]) <= 1e-7
    assert (rc > rr).float().mean().item() == metrics["rewards/accuracies"][0]


def test_dpo_step0_loss_is_ln2():
    rlhf = rlhf_module("dpo")
    logps = torch.randn(8) * 30
    loss, _, _ = rlhf.dpo_loss(logps[:4], logps[4:], logps[:4], logps[4:], beta=0.3)
    assert abs(loss.item() - math.log(2)) <= 1e-6


# ----------------------------------------------------------------------------- PPO
def _fixed():
    g = torch.Generator().manual_seed(11)
    b, t = 3, 7
    mask = torch.ones(b, t)
    mask[1, 5:] = 0
    mask[2, 3:] = 0
    return dict(
        mask=mask,
        rewards=torch.randn(b, t, generator=g),
        values=torch.randn(b, t, generator=g),
        old_values=torch.randn(b, t, generator=g),
        logp=-torch.rand(b, t, generator=g) * 3,
        old_logp=-torch.rand(b, t, generator=g) * 3,
        ref_logp=-torch.rand(b, t, generator=g) * 3,
        adv=torch.randn(b, t, generator=g),
    )


def test_gae_equals_a_reference_loop():
    rlhf, f = rlhf_module("ppo"), _fixed()
    gamma, lam = 0.99, 0.95
    adv, ret = rlhf.gae(f["rewards"], f["values"], f["mask"], gamma, lam)
    for i in range(3):  # per sequence, only its own response tokens, V after the last = 0
        n = int(f["mask"][i].sum())
        r, v = f["rewards"][i, :n].double().tolist(), f["values"][i, :n].double().tolist()
        a = 0.0
        for t in reversed(range(n)):
            a = r[t] + gamma * (v[t + 1] if t + 1 < n else 0.0) - v[t] + gamma * lam * a
            assert abs(adv[i, t].item() - a) <= 1e-6 * max(1.0, abs(a))
            assert abs(ret[i, t].item() - (a + v[t])) <= 1e-6 * max(1.0, abs(a + v[t]))
        assert (adv[i, n:] == 0).all()


def test_clipped_losses_and_whitening_equal_trl_expressions():
    rlhf, f = rlhf_module("ppo"), _fixed()
    m = f["mask"].bool()

    def mm(x):  # TRL masked_mean
        return (x * m).sum() / m.sum()

    eps, eps_v = 0.2, 0.2
    ratio = torch.exp(f["logp"] - f["old_logp"])
    pg1, pg2 = -f["adv"] * ratio, -f["adv"] * torch.clamp(ratio, 1 - eps, 1 + eps)
    loss, clipfrac, _ = rlhf.policy_loss(f["logp"], f["old_logp"], f["adv"], f["mask"], eps)
    assert abs(loss.item() - mm(torch.max(pg1, pg2)).item()) <= 1e-7
    assert abs(clipfrac.item() - mm((pg2 > pg1).float()).item()) <= 1e-7
    assert 0 < clipfrac.item() < 1  # the fixture exercises both branches

    ret = f["rewards"]
    vclip = torch.clamp(f["values"], f["old_values"] - eps_v, f["old_values"] + eps_v)
    vf = 0.5 * mm(torch.max((f["values"] - ret) ** 2, (vclip - ret) ** 2))
    vloss, _ = rlhf.value_loss(f["values"], f["old_values"], ret, f["mask"], eps_v)
    assert abs(vloss.item() - vf.item()) <= 1e-7

    x = f["adv"]
    mean = mm(x)
    var = mm((x - mean) ** 2) * m.sum() / (m.sum() - 1)  # TRL masked_var(unbiased=True)
    want = (x - mean) * torch.rsqrt(var + 1e-8)
    assert (rlhf.masked_whiten(x, f["mask"]) - want).abs().max().item() <= 1e-7


def test_kl_estimators():
    rlhf, f = rlhf_module("ppo"), _fixed()
    logp, ref = f["logp"].double(), f["ref_logp"].double()
    r = ref - logp
    assert (rlhf.kl_estimate(logp, ref, "k1") - (logp - ref)).abs().max() <= 1e-7
    assert (rlhf.kl_estimate(logp, ref, "k2") - 0.5 * r**2).abs().max() <= 1e-7
    k3 = rlhf.kl_estimate(logp, ref, "k3")
    assert (k3 - (r.exp() - 1 - r)).abs().max() <= 1e-7
    assert (k3 >= 0).all()
    # all three are estimators of the same KL: on samples from p, E[k1] = E[k3] = KL(p‖q)
    p = torch.tensor([0.6, 0.3, 0.1], dtype=torch.float64)
    q = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    kl = (p * (p / q).log()).sum().item()
    for est in ("k1", "k3"):
        exact = (p * rlhf.kl_estimate(p.log(), q.log(), est)).sum().item()
        assert abs(exact - kl) <= 1e-12


# ----------------------------------------------------------------------------- safety
V, G, TOKEN, BLOCKED = 32, 16, 7, 9


def _best_of_n_exact(n: int) -> float:
    """E[max of n iid Binomial(G, 1/V)] = Σ_k k·(F(k)ⁿ − F(k−1)ⁿ)."""
    pmf = [math.comb(G, k) * (1 / V) ** k * (1 - 1 / V) ** (G - k) for k in range(G + 1)]
    cdf = [sum(pmf[: k + 1]) for k in range(G + 1)]
    return sum(k * (cdf[k] ** n - (cdf[k - 1] if k else 0.0) ** n) for k in range(G + 1))


@pytest.mark.parametrize("n", [1, 4])
def test_best_of_n_kept_reward_is_exact(n):
    """Responses from the uniform reference, reward = count of TOKEN: the kept reward's mean is
    the exact E[max of n] (n=4: 1.2313) within 3 standard errors."""
    rlhf = rlhf_module("ppo")
    g = torch.Generator().manual_seed(100 + n)
    prompts = 4000
    responses = torch.randint(0, V, (prompts, n, G), generator=g)
    rewards = (responses == TOKEN).sum(-1).float()
    index, kept = rlhf.rejection_sample(rewards, torch.zeros_like(rewards, dtype=torch.bool))
    chosen = rewards.gather(1, index[:, None]).squeeze(1)
    assert kept.all()
    se = chosen.std().item() / math.sqrt(prompts)
    assert abs(chosen.mean().item() - _best_of_n_exact(n)) <= 3 * se
    if n == 4:
        assert abs(_best_of_n_exact(4) - 1.2313) <= 1e-4  # the notes' figure


def test_blocklist_rejection_rate_is_exact():
    rlhf = rlhf_module("ppo")
    g = torch.Generator().manual_seed(7)
    count = 8000
    responses = torch.randint(0, V, (count, G), generator=g)
    blocked = rlhf.contains_blocked(responses, [BLOCKED])
    p = 1 - (1 - 1 / V) ** G  # 0.3983
    se = math.sqrt(p * (1 - p) / count)
    assert abs(blocked.float().mean().item() - p) <= 3 * se
    # best of 2 with the filter: nothing kept holds BLOCKED; a prompt with both blocked keeps none
    pairs = responses.view(-1, 2, G)
    rejected = blocked.view(-1, 2)
    rewards = (pairs == TOKEN).sum(-1).float()
    index, kept = rlhf.rejection_sample(rewards, rejected)
    picked = pairs[torch.arange(len(pairs)), index]
    assert not (picked[kept] == BLOCKED).any()
    assert (kept == ~rejected.all(1)).all()
    drop = p**2
    assert abs((~kept).float().mean().item() - drop) <= 3 * math.sqrt(
        drop * (1 - drop) / len(pairs)
    )


def _ppo_toy(beta: float, iterations: int, seed: int = 0, lam: float = 1.0):
    """PPO from the generated formulas on a context-free policy (one logit per token) against a
    uniform reference, reward = count of TOKEN in G tokens (notes §3.5 check 2, policy shrunk to
    the part the optimum depends on). λ = 1: with one logit table shared by all positions, λ < 1
    discounts the end-of-sequence score for early tokens but not their own KL penalty, which biases
    the shared optimum low (measured p(T) 0.12 at λ = 0.95 against p* = 0.19). Returns p(TOKEN),
    reward and KL of the learned policy, exact (not sampled) per sequence."""
    rlhf = rlhf_module("ppo")
    torch.manual_seed(seed)
    logits = torch.zeros(V, requires_grad=True)  # zero head: the start equals the reference
    values = torch.zeros(G, requires_grad=True)  # a value per response position
    opt = torch.optim.Adam([logits, values], lr=0.05)
    ref_logp = torch.full((V,), -math.log(V))
    mask = torch.ones(256, G)
    for _ in range(iterations):
        with torch.no_grad():
            tokens = torch.multinomial(torch.softmax(logits, -1), 256 * G, replacement=True)
            tokens = tokens.view(256, G)
            old_logp = torch.log_softmax(logits, -1)[tokens]
            old_values = values.expand(256, G).clone()
            kl = rlhf.kl_estimate(old_logp, ref_logp[tokens], "k1")
            rewards = -beta * kl
            rewards[:, -1] += (tokens == TOKEN).sum(1).float()  # the score at the end token
            adv, ret = rlhf.gae(rewards, old_values, mask, gamma=1.0, lam=lam)
            adv = rlhf.masked_whiten(adv, mask)
        for _ in range(4):
            logp = torch.log_softmax(logits, -1)[tokens]
            pg, _, _ = rlhf.policy_loss(logp, old_logp, adv, mask, 0.2)
            vf, _ = rlhf.value_loss(values.expand(256, G), old_values, ret, mask, 0.2)
            opt.zero_grad()
            (pg + 0.1 * vf).backward()
            opt.step()
    p = torch.softmax(logits.detach().double(), -1)
    kl_seq = G * (p * (p * V).log()).sum().item()
    return p[TOKEN].item(), G * p[TOKEN].item(), kl_seq


def test_ppo_formulas_reach_the_kl_regularised_optimum():
    """β = 0.5: J = R − β·KL within 15 % of J* = G·β·log((V−1+e^{1/β})/V) = 1.456; a weak
    penalty (β = 0.05) runs away (reward ≥ 12 of 16), as trl#204 reports."""
    beta = 0.5
    p_star = math.exp(1 / beta) / (math.exp(1 / beta) + V - 1)
    j_star = G * beta * math.log((V - 1 + math.exp(1 / beta)) / V)
    p, reward, kl = _ppo_toy(beta, 60)
    assert abs(j_star - 1.456) < 1e-3
    assert abs((reward - beta * kl) - j_star) <= 0.15 * j_star
    assert abs(p - p_star) <= 0.25 * p_star
    _, reward_weak, kl_weak = _ppo_toy(0.05, 60)
    assert reward_weak >= 12 and kl_weak > 10 * kl


# ----------------------------------------------------------------------------- spec checks
def _ppo_spec_text(rlhf: str, finetune: str = "{base: {path: b}, method: full}") -> str:
    return (
        "name: t\nmodel: {arch: gpt, vocab_size: 512, max_seq_len: 64, d_model: 32, n_layers: 2,"
        " n_heads: 4, d_ff: 64}\ntrain: {objective: ppo, seq_len: 64}\n" + rlhf
        + (f"finetune: {finetune}\n" if finetune else "")
    )  # fmt: skip


def _problems(text: str) -> list:
    try:
        load_spec_text(text, "t.yaml")
    except SpecError as exc:
        return list(exc.problems)
    return []


def test_ppo_without_a_reward_is_located():
    (problem,) = _problems(_ppo_spec_text("rlhf: {kl_coef: 0.1}\n"))
    assert "nothing to score rollouts" in problem.message
    assert (problem.field, problem.line, problem.col) == ("train.objective", 3, 20)
    (problem,) = _problems(_ppo_spec_text("rlhf: {reward_rule: 'length'}\n"))
    assert problem.field == "rlhf.reward_rule" and "count:<token>" in problem.hint
    assert _problems(_ppo_spec_text("rlhf: {reward_rule: 'count:a'}\n")) == []


def test_ppo_needs_a_full_fine_tune_of_a_base():
    """train_ppo.py is generated (templates/train_ppo.py.j2): a ppo spec with a base loads;
    without one, or with LoRA (not generated for PPO yet), it is refused where it is wrong."""
    rule = "rlhf: {reward_rule: 'count:a'}\n"
    load_spec_text(_ppo_spec_text(rule), "t.yaml")
    (problem,) = _problems(_ppo_spec_text(rule, finetune=""))
    assert problem.field == "train.objective" and "needs a base" in problem.message
    (problem,) = _problems(_ppo_spec_text(rule, finetune="{base: {path: b}, method: lora}"))
    assert problem.field == "finetune.method" and problem.code == "not-generated-yet"
    (problem,) = _problems(
        _ppo_spec_text("rlhf: {reward_rule: 'count:a', rollout: {max_new_tokens: 64}}\n")
    )
    assert problem.field == "rlhf.rollout.max_new_tokens" and "no prompt" in problem.message
    # reward and dpo train (tests/test_preference_train.py); dpo needs a base to stay near
    text = _ppo_spec_text(rule, finetune="")
    load_spec_text(text.replace("ppo", "reward", 1), "t.yaml")
    (problem,) = _problems(text.replace("ppo", "dpo", 1))
    assert problem.field == "train.objective" and "needs a base" in problem.message
