"""Pipeline stage partition: how many transformer blocks each stage runs.

The embedding sits on the first stage and the LM head on the last, so equal
block counts leave the last stage slow (the logits GEMM) and the first stage
heavy in memory (1F1B keeps `p` micro-batches of activations in flight there,
Narayanan et al. 2021 §2.2). `balance_blocks` minimises the slowest stage's
compute with every block identical, under a per-stage cap on blocks that
`memory_caps` derives from each stage's bytes; the generated code reads the
result from `memory.stages[i].layers`.
"""

from __future__ import annotations

import math


def balance_blocks(
    n_blocks: int,
    pipeline: int,
    block_cost: float,
    extra_cost: tuple[float, ...] | None = None,
    max_blocks: tuple[int, ...] | None = None,
) -> tuple[int, ...] | None:
    """Blocks per stage minimising max_i(blocks_i·block_cost + extra_cost_i).

    Every stage gets at least one block and at most `max_blocks[i]`. Returns
    None when the caps cannot hold `n_blocks`. Among optimal partitions the
    surplus is taken from the most loaded stages, later stages first, so the
    answer is deterministic.
    """
    if pipeline < 1 or n_blocks < pipeline:
        return None
    extra = extra_cost or (0.0,) * pipeline
    caps = max_blocks or (n_blocks,) * pipeline
    if any(c < 1 for c in caps) or sum(caps) < n_blocks:
        return None
    if pipeline == 1:
        return (n_blocks,)
    if block_cost <= 0:  # nothing to balance: spread evenly within the caps
        return _fill_evenly(n_blocks, caps)

    def counts_at(limit: float) -> list[int]:
        return [
            min(caps[i], math.floor((limit - extra[i]) / block_cost + 1e-9))
            for i in range(pipeline)
        ]

    # The optimum is one of the stage costs k·c + e_i; search those thresholds.
    thresholds = sorted({k * block_cost + e for e in set(extra) for k in range(1, n_blocks + 1)})
    lo, hi = 0, len(thresholds) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        counts = counts_at(thresholds[mid])
        if min(counts) >= 1 and sum(counts) >= n_blocks:
            hi = mid
        else:
            lo = mid + 1
    counts = counts_at(thresholds[lo])
    surplus = sum(counts) - n_blocks
    while surplus > 0:
        i = max(
            (i for i in range(pipeline) if counts[i] > 1),
            key=lambda i: (counts[i] * block_cost + extra[i], counts[i], i),
        )
        counts[i] -= 1
        surplus -= 1
    return tuple(counts)


def _fill_evenly(n_blocks: int, caps: tuple[int, ...]) -> tuple[int, ...] | None:
    counts = [1] * len(caps)
    left = n_blocks - len(caps)
    while left > 0:
        open_ = [i for i in range(len(caps)) if counts[i] < caps[i]]
        if not open_:
            return None
        i = min(open_, key=lambda i: (counts[i], i))
        counts[i] += 1
        left -= 1
    return tuple(counts)


def memory_caps(
    fixed_bytes: tuple[float, ...], per_block_bytes: tuple[float, ...], capacity_bytes: float
) -> tuple[int, ...]:
    """Most blocks each stage can hold: (capacity − fixed) / per-block bytes, floored."""
    caps = []
    for fixed, per_block in zip(fixed_bytes, per_block_bytes, strict=True):
        room = capacity_bytes - fixed
        caps.append(10**9 if per_block <= 0 and room >= 0 else max(0, math.floor(room / per_block)))
    return tuple(caps)


def linear_fit(
    counts_a: tuple[int, ...],
    bytes_a: tuple[int, ...],
    counts_b: tuple[int, ...],
    bytes_b: tuple[int, ...],
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-stage (fixed, per-block) bytes from two partitions' stage totals.

    Stage memory is affine in its block count (weights, gradients, optimizer
    state and saved activations all scale with blocks); two evaluations with
    different counts give both terms. Stages whose count did not change keep
    their total as fixed and 0 per block.
    """
    fixed, per_block = [], []
    for na, ba, nb, bb in zip(counts_a, bytes_a, counts_b, bytes_b, strict=True):
        if na == nb:
            fixed.append(float(ba))
            per_block.append(0.0)
            continue
        slope = (bb - ba) / (nb - na)
        per_block.append(slope)
        fixed.append(ba - slope * na)
    return tuple(fixed), tuple(per_block)


def layer_ranges(stage_layers: tuple[int, ...]) -> list[tuple[int, int]]:
    """[(first, last)] block indices of each stage (inclusive)."""
    ranges, start = [], 0
    for n in stage_layers:
        ranges.append((start, start + n - 1))
        start += n
    return ranges


def probe_partition(counts: tuple[int, ...]) -> tuple[int, ...] | None:
    """A partition of the same blocks in which every stage's count differs from `counts`.

    Deltas alternate +1/−1 (an odd stage count puts +2 first and −1 last), or
    the opposite signs, whichever keeps every stage at one block or more; two
    evaluations then give each stage's bytes per block (`linear_fit`).
    """
    p = len(counts)
    if p < 2:
        return None
    deltas = [1 if i % 2 == 0 else -1 for i in range(p)]
    if p % 2:
        deltas[0], deltas[-1] = 2, -1
    for sign in (1, -1):
        probe = tuple(n + sign * d for n, d in zip(counts, deltas, strict=True))
        if min(probe) >= 1:
            return probe
    return None
