"""DeepSpeed settings the generated ds_config.json writes and the planner's models assume.

Stated once: `codegen.ds_config` writes these values out explicitly, and
`plan.memory` / `plan.cost` price the buffers and the overlap they imply, so a
DeepSpeed upgrade that changes a default cannot make the two disagree.
Defaults checked against DeepSpeed 0.19.8 (`deepspeed/runtime/zero/config.py`).
"""

from __future__ import annotations

# Elements, not bytes (DeepSpeed sizes its buckets in elements of the gradient dtype).
REDUCE_BUCKET_ELEMENTS = 500_000_000  # gradient reduce bucket (stages 1-3)
ALLGATHER_BUCKET_ELEMENTS = 500_000_000  # parameter all-gather bucket (stages 1-2)
STAGE3_PREFETCH_ELEMENTS = 50_000_000  # prefetched ahead of use (stage 3)
STAGE3_PERSISTENCE_THRESHOLD = 100_000  # parameters this small stay gathered (stage 3)
STAGE3_MAX_LIVE_ELEMENTS = 1_000_000_000  # gathered elements kept alive at once (stage 3)
STAGE3_MAX_REUSE_DISTANCE = 1_000_000_000

# ZeRO stages whose gradient reduce-scatter overlaps the backward pass (DeepSpeed's
# `overlap_comm`). Set explicitly rather than by DeepSpeed's stage-dependent default,
# because the overlap buffers cost memory: on for stage 3 only.
OVERLAP_COMM_ZERO_STAGES = (3,)


def zero_buckets(stage: int) -> dict:
    """The bucket keys of ds_config.json's `zero_optimization` for one ZeRO stage."""
    if stage == 0:
        return {}
    buckets = {
        "reduce_bucket_size": REDUCE_BUCKET_ELEMENTS,
        "allgather_bucket_size": ALLGATHER_BUCKET_ELEMENTS,
    }
    if stage == 3:
        buckets.update(
            {
                "stage3_prefetch_bucket_size": STAGE3_PREFETCH_ELEMENTS,
                "stage3_param_persistence_threshold": STAGE3_PERSISTENCE_THRESHOLD,
                "stage3_max_live_parameters": STAGE3_MAX_LIVE_ELEMENTS,
                "stage3_max_reuse_distance": STAGE3_MAX_REUSE_DISTANCE,
            }
        )
    return buckets


def overlaps_comm(stage: int) -> bool:
    return stage in OVERLAP_COMM_ZERO_STAGES
