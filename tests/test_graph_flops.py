"""FLOPs per token against the published closed forms (computed here from the papers'
equations, independently of the layer graph)."""

from dataclasses import replace

import pytest

from llmspec.plan.flops import (
    hardware_flops_per_token,
    model_flops_per_token,
    narayanan_flops_per_iteration,
)
from tests.test_graph_params import PUBLISHED, dims

GPT3_175B = dims(
    vocab_size=51200, d_model=12288, n_layers=96, n_heads=96, n_kv_heads=96, d_ff=4 * 12288,
    max_seq_len=2048, seq_len=2048,
)  # fmt: skip


def test_gpt_model_flops_equal_korthikanti_eq7():
    d = GPT3_175B
    L, h, s, v = d.n_layers, d.d_model, d.seq_len, d.vocab_size
    eq7 = 72 * L * h * h * (1 + s / (6 * h) + v / (12 * h * L))  # per token (B·s divided out)
    assert model_flops_per_token(d) == pytest.approx(eq7, rel=1e-12)


@pytest.mark.parametrize("name", ["llama2-70b", "llama3-8b", "mistral-7b"])
def test_gqa_swiglu_flops_equal_megatron_core_formula(name):
    d = PUBLISHED[name][0]
    L, h, s, v, a, g = d.n_layers, d.d_model, d.seq_len, d.vocab_size, d.n_heads, d.n_kv_heads
    ffn, head_dim = d.d_ff, d.head_dim
    megatron = (
        12
        * L
        * h
        * h
        * ((1 + g / a + s / h) * (a * head_dim / h) + (ffn / h) * 1.5 + v / (2 * L * h))
    )
    assert model_flops_per_token(d) == pytest.approx(megatron, rel=1e-12)


def test_full_recompute_matches_narayanan_eq3():
    d, batch = GPT3_175B, 1536
    per_iteration = hardware_flops_per_token(d, "full") * batch * d.seq_len
    expected = narayanan_flops_per_iteration(batch, d.seq_len, d.n_layers, d.d_model, d.vocab_size)
    assert per_iteration == pytest.approx(expected, rel=1e-12)


def test_recompute_adds_forward_work_only():
    d = replace(GPT3_175B, seq_len=4096, max_seq_len=4096)
    none, sel, full = (hardware_flops_per_token(d, r) for r in ("none", "selective", "full"))
    assert none == model_flops_per_token(d) < sel < full
    # selective recomputes the attention core: 4·s·h per layer per token (QKᵀ and scores·V)
    assert sel - none == pytest.approx(d.n_layers * 4 * d.seq_len * d.d_model)
    # Korthikanti Eq. 9: selective recompute costs ≈ s/(6h) of the model FLOPs (2.7% for GPT-3)
    assert (sel - none) / none < 0.06
