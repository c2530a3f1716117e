"""Stage partition: balanced compute, memory caps respected, deterministic."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmspec.plan import partition


def compositions(n: int, parts: int):
    """Every way to give `parts` stages ≥ 1 block each, `n` in all."""
    for cuts in itertools.combinations(range(1, n), parts - 1):
        bounds = (0, *cuts, n)
        yield tuple(b - a for a, b in itertools.pairwise(bounds))


def max_cost(counts, block, extra):
    return max(c * block + e for c, e in zip(counts, extra, strict=True))


@pytest.mark.parametrize(
    ("n", "p", "extra"),
    [
        (10, 3, (0.0, 0.0, 2.5)),
        (12, 4, (0.5, 0.0, 0.0, 3.0)),
        (7, 7, (0.0,) * 7),
        (24, 5, (1.0, 0.0, 0.0, 0.0, 4.2)),
    ],
)
def test_balance_is_optimal_against_brute_force(n, p, extra):
    counts = partition.balance_blocks(n, p, 1.0, extra)
    best = min(max_cost(c, 1.0, extra) for c in compositions(n, p))
    assert sum(counts) == n and min(counts) >= 1
    assert max_cost(counts, 1.0, extra) == pytest.approx(best)


def test_head_stage_gets_fewer_blocks():
    # 32 blocks, 4 stages, the head costs 3 blocks' worth: the last stage is lightened.
    counts = partition.balance_blocks(32, 4, 1.0, (0.0, 0.0, 0.0, 3.0))
    assert counts[-1] < counts[0]
    assert max_cost(counts, 1.0, (0.0, 0.0, 0.0, 3.0)) == 9


def test_memory_caps_are_respected():
    # The first stage (1F1B: most micro-batches in flight) can hold only 2 blocks.
    counts = partition.balance_blocks(16, 4, 1.0, None, (2, 8, 8, 8))
    assert counts[0] <= 2 and sum(counts) == 16
    assert max(counts) == 5  # 14 blocks over the other three stages
    assert partition.balance_blocks(16, 4, 1.0, None, (2, 3, 3, 3)) is None


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 40),
    p=st.integers(1, 8),
    head=st.floats(0, 10),
    caps=st.lists(st.integers(1, 40), min_size=8, max_size=8),
)
def test_partition_properties(n, p, head, caps):
    extra = (0.0,) * (p - 1) + (head,)
    cap = tuple(caps[:p])
    counts = partition.balance_blocks(n, p, 1.0, extra, cap)
    if p > n or sum(cap) < n:
        assert counts is None
        return
    assert counts is not None
    assert sum(counts) == n
    assert all(1 <= c <= m for c, m in zip(counts, cap, strict=True))
    assert counts == partition.balance_blocks(n, p, 1.0, extra, cap)  # deterministic


def test_memory_caps_from_bytes():
    caps = partition.memory_caps((10.0, 20.0, 95.0), (10.0, 5.0, 10.0), 100.0)
    assert caps == (9, 16, 0)


def test_linear_fit_recovers_affine_stage_memory():
    fixed, per_block = (7.0, 3.0, 11.0), (2.0, 2.0, 5.0)
    a, b = (4, 4, 4), partition.probe_partition((4, 4, 4))
    assert b is not None and all(x != y for x, y in zip(a, b, strict=True))
    assert sum(b) == sum(a)

    def stage_bytes(counts):
        return tuple(int(f + k * n) for f, k, n in zip(fixed, per_block, counts, strict=True))

    got_fixed, got_per_block = partition.linear_fit(a, stage_bytes(a), b, stage_bytes(b))
    assert got_fixed == pytest.approx(fixed)
    assert got_per_block == pytest.approx(per_block)


def test_layer_ranges():
    assert partition.layer_ranges((3, 4, 1)) == [(0, 2), (3, 6), (7, 7)]
