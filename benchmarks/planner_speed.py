"""How fast the planner searches: layouts evaluated per second and full-search wall time.

    python benchmarks/planner_speed.py

Models from GPT-2 small on one node to the 1T-parameter GPT of Narayanan et al. 2021
Table 1 on 3072 A100s, every layout field left to `auto`. Target: the 1T search
finishes in under 2 s on one core of the development machine. Each search runs
`REPEATS` times and the fastest is reported (the machine is shared).
"""

from __future__ import annotations

import time

from llmspec.plan import make_plan
from llmspec.spec.schema import Spec

REPEATS = 3

# (name, d_model, layers, heads, GPUs, global batch): GPT-2 small, then Table 1 rows.
MODELS = [
    ("gpt2-small", 768, 12, 12, 8, 512),
    ("gpt-1.7b", 2304, 24, 24, 32, 512),
    ("gpt-18.4b", 6144, 40, 48, 256, 1024),
    ("gpt-145.6b", 12288, 80, 96, 1536, 2304),
    ("gpt-529.6b", 20480, 105, 128, 2520, 2520),
    ("gpt-1t", 25600, 128, 160, 3072, 3072),
]


def spec(name: str, h: int, layers: int, heads: int, gpus: int, batch: int) -> Spec:
    return Spec.model_validate(
        {
            "name": name,
            "model": {
                "vocab_size": 51200,
                "max_seq_len": 2048,
                "d_model": h,
                "n_layers": layers,
                "n_heads": heads,
            },
            "train": {"seq_len": 2048, "global_batch_size": batch, "steps": 1000},
            "cluster": {"gpu": "a100-80gb", "nodes": gpus // 8, "gpus_per_node": 8},
        }
    )


def main() -> None:
    print(
        f"{'model':<12} {'GPUs':>5} {'evaluated':>9} {'pruned':>6} {'search s':>9} "
        f"{'layouts/s':>10}  chosen"
    )
    for name, h, layers, heads, gpus, batch in MODELS:
        s = spec(name, h, layers, heads, gpus, batch)
        best = float("inf")
        for _ in range(REPEATS):
            start = time.perf_counter()
            plan = make_plan(s)
            best = min(best, time.perf_counter() - start)
        lay = plan.layout
        print(
            f"{name:<12} {gpus:>5} {plan.evaluated:>9} {plan.pruned_groups:>6} {best:>9.3f} "
            f"{plan.evaluated / best:>10,.0f}  d{lay.data} t{lay.tensor} p{lay.pipeline} "
            f"z{lay.zero_stage} b{lay.micro_batch_size} {lay.activation_checkpointing}"
            f"{' sp' if lay.sequence_parallel else ''} ({plan.performance.mfu:.1%} MFU)"
        )


if __name__ == "__main__":
    main()
