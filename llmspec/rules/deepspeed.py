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
# ZeRO-3's optimizer step walks the partition in sub-groups of about this many elements
# (`sub_group_size`; stage3.py `_create_fp16_sub_groups` closes a group once it reaches it):
# each sub-group's fp32 gradient is made just before its step and freed after it
# (`_prepare_fp32_grad_for_sub_group`, `_release_sub_group`).
STAGE3_SUB_GROUP_ELEMENTS = 1_000_000_000

# ZeRO stage 0 reduces through the engine's `allreduce_gradients` →
# `buffered_allreduce_fallback(elements_per_buffer=MEMORY_OPT_ALLREDUCE_SIZE)`, 5e8 elements
# (`deepspeed/runtime/engine.py`, `runtime/constants.py`); no ds_config key sets it.
STAGE0_ALLREDUCE_BUCKET_ELEMENTS = 500_000_000

# When gradients are reduced (DeepSpeed 0.19 `runtime/engine.py` `allreduce_gradients`: "ZeRO
# stage >= 2 communicates during non gradient accumulation boundaries as well"; stage 1 and 0
# "communicate only at gradient accumulation boundaries"; `stage3.py` reduces every backward
# from its gradient hooks): every micro-batch at stages 2 and 3, once per step at 0 and 1.
REDUCE_EVERY_MICRO_BATCH_ZERO_STAGES = (2, 3)

# How: stages 1-2 all-reduce each gradient bucket and keep their slice
# (`stage_1_and_2.py` `average_tensor` → `allreduce_and_scatter`, because
# `use_multi_rank_bucket_allreduce` defaults to True in `runtime/zero/config.py`), then
# all-gather the updated 16-bit parameters after the step in `allgather_bucket_size` pieces;
# stage 3 reduce-scatters (`stage3.py` `__avg_scatter_grads` → `reduce_scatter_coalesced`) and
# gathers parameters module by module when they are used (`partitioned_param_coordinator.py`).
ALLREDUCE_GRADIENTS_ZERO_STAGES = (0, 1, 2)

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
                "sub_group_size": STAGE3_SUB_GROUP_ELEMENTS,
            }
        )
    return buckets


def overlaps_comm(stage: int) -> bool:
    return stage in OVERLAP_COMM_ZERO_STAGES


def reduces_every_micro_batch(stage: int) -> bool:
    return stage in REDUCE_EVERY_MICRO_BATCH_ZERO_STAGES


def gradient_bucket_elements(stage: int) -> int:
    """Elements per gradient-reduction collective at this stage."""
    return STAGE0_ALLREDUCE_BUCKET_ELEMENTS if stage == 0 else REDUCE_BUCKET_ELEMENTS
