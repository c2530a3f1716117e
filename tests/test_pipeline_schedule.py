"""The cost model's pipeline time against DeepSpeed's own schedule.

The generated pipeline-parallel project runs DeepSpeed's `TrainSchedule` (deepspeed/runtime/
pipe/schedule.py): 2(m + p − 1) steps in which even and odd stages alternate forward and
backward, with blocking sends and receives between neighbours. `cost.one_f_one_b_s` prices
it as PipeDream-Flush: (m + p − 1) slots of the slowest stage (Narayanan et al. 2021 §2.2).
That is only right if DeepSpeed's lock-step instruction order adds no idle time of its own,
so these tests replay the real instruction lists of every stage in a small event simulation
(a send and its receive complete together, when both sides have reached them, NCCL's
rendezvous; matched first in, first out per neighbour pair as NCCL orders p2p) and compare
the makespan with the formula, and count the stage-to-stage transfers on its critical path.
"""

from __future__ import annotations

import pytest

from llmspec.plan.cost import one_f_one_b_s, pipeline_transfers

schedule = pytest.importorskip("deepspeed.runtime.pipe.schedule")

P2P = {
    "SendActivation": ("act", +1, "send"),
    "RecvActivation": ("act", -1, "recv"),
    "SendGrad": ("grad", -1, "send"),
    "RecvGrad": ("grad", +1, "recv"),
}


def instructions(stages: int, micro_batches: int) -> list[list[str]]:
    """Each stage's instruction names, in DeepSpeed's order."""
    return [
        [
            type(cmd).__name__
            for step in schedule.TrainSchedule(micro_batches, stages, stage_id).steps()
            for cmd in step
        ]
        for stage_id in range(stages)
    ]


def makespan(programs, forward_s, backward_s, p2p_s: float = 0.0) -> float:
    """Time until the last stage finishes, every stage running its program in order."""
    stages = len(programs)
    pc, clock = [0] * stages, [0.0] * stages
    posted: dict[tuple, float] = {}  # (channel, side, k) → when that side reached its k-th op
    count: dict[tuple, int] = {}  # (channel, side) → ops that side has completed
    while any(pc[s] < len(programs[s]) for s in range(stages)):
        progressed = False
        for s in range(stages):
            while pc[s] < len(programs[s]):
                name = programs[s][pc[s]]
                if name in ("ForwardPass", "BackwardPass"):
                    clock[s] += (forward_s if name == "ForwardPass" else backward_s)[s]
                elif name in P2P:
                    kind, step, side = P2P[name]
                    src, dst = (s, s + step) if side == "send" else (s + step, s)
                    channel = (kind, src, dst)
                    k = count.get((channel, side), 0)
                    mine = posted.setdefault((channel, side, k), clock[s])
                    theirs = posted.get((channel, "recv" if side == "send" else "send", k))
                    if theirs is None:
                        break  # blocked until the peer reaches the matching op
                    clock[s] = max(mine, theirs) + p2p_s
                    count[(channel, side)] = k + 1
                pc[s] += 1
                progressed = True
        assert progressed, f"deadlock at {pc}"
    return max(clock)


@pytest.mark.parametrize("stages,micro_batches", [(2, 4), (4, 16), (8, 32), (12, 48), (35, 160)])
@pytest.mark.parametrize("backward", [2.0, 3.0])  # backward = 2 forwards; + a recomputed one
def test_deepspeed_schedule_costs_exactly_one_f_one_b(stages, micro_batches, backward):
    programs = instructions(stages, micro_batches)
    simulated = makespan(programs, [1.0] * stages, [backward] * stages)
    ideal, bubble = one_f_one_b_s(1.0 + backward, stages, micro_batches)
    assert simulated == pytest.approx(ideal + bubble, rel=1e-9)


@pytest.mark.parametrize("stages", [2, 3, 4, 5, 8, 12, 35])
@pytest.mark.parametrize("micro_batches", [1, 2, 3, 8, 33])
def test_transfers_on_the_critical_path_match_deepspeeds_schedule(stages, micro_batches):
    # Each transfer costs x: the makespan grows by x per transfer on the critical path, which
    # `pipeline_transfers` counts (DeepSpeed serialises a receive and a send in each step).
    programs = instructions(stages, micro_batches)
    x = 1 / 1024  # a power of two: the sums stay exact
    free = makespan(programs, [1.0] * stages, [2.0] * stages)
    with_p2p = makespan(programs, [1.0] * stages, [2.0] * stages, p2p_s=x)
    counted = (with_p2p - free) / x
    assert counted == pytest.approx(pipeline_transfers("deepspeed", stages, micro_batches))
    # near twice one send forward and one backward per 1F1B slot once micro-batches dominate
    if stages >= 3 and micro_batches >= 4 * stages:
        assert counted > 1.5 * pipeline_transfers("megatron", stages, micro_batches)


def test_slowest_stage_paces_the_pipeline():
    # One stage 30 % slower than the rest: the formula prices every slot at the slowest stage,
    # an upper bound that the real schedule approaches as micro-batches outnumber stages.
    stages, micro_batches = 8, 64
    forward = [1.0] * stages
    forward[3] = 1.3
    backward = [2 * f for f in forward]
    simulated = makespan(instructions(stages, micro_batches), forward, backward)
    ideal, bubble = one_f_one_b_s(3 * 1.3, stages, micro_batches)
    assert micro_batches * 3 * 1.3 < simulated <= ideal + bubble
    assert simulated > 0.95 * (ideal + bubble)
