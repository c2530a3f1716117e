"""The PPO math include against independent formulas (PPO 2017, GAE 2015, Schulman's KL blog)."""

import functools
import math
from pathlib import Path

import jinja2
import pytest
import torch

TEMPLATE = Path(__file__).resolve().parents[1] / "templates" / "_train" / "ppo_math.py.j2"


@functools.cache
def ns():
    src = jinja2.Template(TEMPLATE.read_text()).render()
    g = {"torch": torch}
    exec(compile(src, str(TEMPLATE), "exec"), g)
    return g


def _tensors():
    g = torch.Generator().manual_seed(0)
    shape = (3, 6)
    mask = torch.ones(shape, dtype=torch.float64)
    mask[0, 4:] = 0
    mask[2, 2:] = 0
    r = lambda: torch.randn(shape, generator=g, dtype=torch.float64)  # noqa: E731
    return mask, r(), r(), r(), r()


def test_gae_matches_direct_sum():
    mask, rewards, values, _, _ = _tensors()
    gamma, lam = 0.9, 0.8
    adv, ret = ns()["gae"](rewards, values, mask, gamma, lam)
    for b in range(mask.shape[0]):
        n = int(mask[b].sum())
        v = [values[b, t].item() for t in range(n)] + [0.0]
        deltas = [rewards[b, t].item() + gamma * v[t + 1] - v[t] for t in range(n)]
        for t in range(n):
            ref = sum((gamma * lam) ** k * deltas[t + k] for k in range(n - t))
            assert adv[b, t].item() == pytest.approx(ref, abs=1e-7)
            assert ret[b, t].item() == pytest.approx(ref + v[t], abs=1e-7)
        assert torch.all(adv[b, n:] == 0)


def test_policy_and_value_loss_elementwise():
    mask, a, lp, olp, _ = _tensors()
    lp, olp = 0.3 * lp, 0.3 * olp
    eps = 0.2
    got = ns()["policy_loss"](lp, olp, a, mask, eps).item()
    terms = []
    for b in range(3):
        for t in range(6):
            if mask[b, t]:
                rho = math.exp(lp[b, t].item() - olp[b, t].item())
                adv = a[b, t].item()
                terms.append(-min(rho * adv, min(max(rho, 1 - eps), 1 + eps) * adv))
    assert got == pytest.approx(sum(terms) / len(terms), abs=1e-7)
    v, ov, ret = lp, olp, a
    got_v = ns()["value_loss"](v, ov, ret, mask, eps).item()
    terms = []
    for b in range(3):
        for t in range(6):
            if mask[b, t]:
                vc = ov[b, t].item() + min(max(v[b, t].item() - ov[b, t].item(), -eps), eps)
                terms.append(
                    0.5
                    * max((v[b, t].item() - ret[b, t].item()) ** 2, (vc - ret[b, t].item()) ** 2)
                )
    assert got_v == pytest.approx(sum(terms) / len(terms), abs=1e-7)


def test_kl_estimators_unbiased_and_pointwise():
    # Pointwise formulas, then k1 and k3 are unbiased for KL(p||q) on samples from p.
    p = torch.distributions.Normal(0.0, 1.0)
    q = torch.distributions.Normal(0.1, 1.0)
    x = p.sample(
        (200000,),
    ).double()
    lp, lq = p.log_prob(x).double(), q.log_prob(x).double()
    true_kl = torch.distributions.kl_divergence(p, q).item()
    k1 = ns()["kl_estimate"](lp, lq, "k1")
    k2 = ns()["kl_estimate"](lp, lq, "k2")
    k3 = ns()["kl_estimate"](lp, lq, "k3")
    lr = (lq - lp)[:5].tolist()
    for i in range(5):
        assert k1[i].item() == pytest.approx(-lr[i], abs=1e-7)
        assert k2[i].item() == pytest.approx(lr[i] ** 2 / 2, abs=1e-7)
        assert k3[i].item() == pytest.approx(math.exp(lr[i]) - 1 - lr[i], abs=1e-7)
    assert torch.all(k3 >= 0)
    assert k1.mean().item() == pytest.approx(true_kl, abs=2e-3)
    assert k3.mean().item() == pytest.approx(true_kl, abs=2e-3)


def test_whiten():
    mask, x, _, _, _ = _tensors()
    w = ns()["whiten"](x, mask)
    sel = w[mask.bool()]
    assert sel.mean().item() == pytest.approx(0.0, abs=1e-7)
    assert sel.std().item() == pytest.approx(1.0, abs=1e-6)
