"""The generated project's `ds_config.json`, built as plain data from the layout and train spec.

Key names and defaults checked against DeepSpeed 0.19.8's own config models
(`deepspeed/runtime/config.py`, `runtime/zero/config.py`,
`runtime/zero/offload_config.py`, `runtime/precision_config.py`,
`runtime/lr_schedules.py`); a test loads every generated file through
`deepspeed.runtime.config.DeepSpeedConfig`.

ZeRO bucket sizes and `overlap_comm` are written out explicitly from
`llmspec.rules.deepspeed`, the one place the memory and cost models read them too.
"""

from __future__ import annotations

from llmspec.plan.types import Layout
from llmspec.rules import deepspeed as ds_rules

# fp16 dynamic loss scaling (Micikevicius et al. 2018, "Mixed Precision Training" §3.2):
# start at 2^16, halve on overflow (after `hysteresis` overflows), double after
# `loss_scale_window` clean steps. DeepSpeed's defaults, written out for review.
FP16_LOSS_SCALING = {
    "loss_scale": 0,  # 0 = dynamic
    "initial_scale_power": 16,
    "loss_scale_window": 1000,
    "hysteresis": 2,
    "min_loss_scale": 1,
}

# Where NVMe offload swaps to when the spec asks for it: DeepSpeed's documented example
# path. The build warns that it must be edited to a fast local disk of the cluster.
DEFAULT_NVME_PATH = "/local_nvme"

STEPS_PER_PRINT = 1_000_000_000  # train.py prints its own metrics; keep DeepSpeed quiet


def build_ds_config(
    *, layout: Layout, train, on_cpu: bool, optimizer_steps: int | None = None
) -> dict:
    """The DeepSpeed config dict for one layout and `Spec.train`.

    `on_cpu` selects the CPU path: pinned host memory is meaningless without a GPU.
    `optimizer_steps` is the schedule's length when it is not train.steps (PPO steps each
    engine several times per iteration).
    """
    micro, accum, data = layout.micro_batch_size, layout.grad_accum_steps, layout.data
    config: dict = {
        "train_batch_size": micro * accum * data,
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": accum,
        "steps_per_print": STEPS_PER_PRINT,
        "gradient_clipping": float(train.grad_clip),
        "zero_optimization": zero_section(layout, on_cpu=on_cpu),
        "optimizer": optimizer_section(
            train.optimizer, torch_adam=on_cpu and not offloads_optimizer(layout)
        ),
        "scheduler": scheduler_section(
            train.schedule,
            lr=train.optimizer.lr,
            total_steps=optimizer_steps or train.total_steps,
        ),
        "wall_clock_breakdown": False,
    }
    config.update(precision_section(train.precision))
    if layout.pipeline > 1 and layout.tensor > 1 and layout.sequence_parallel:
        # DeepSpeed splits stage-boundary activations across tensor ranks assuming they
        # are identical there; under sequence parallel each rank holds its own slice.
        config["pipeline"] = {"pipe_partitioned": False, "grad_partitioned": False}
    return config


def zero_section(layout: Layout, *, on_cpu: bool) -> dict:
    stage = layout.zero_stage
    zero: dict = {"stage": stage}
    if stage == 0:
        return zero
    zero.update(ds_rules.zero_buckets(stage))
    zero["overlap_comm"] = ds_rules.overlaps_comm(stage)
    zero["contiguous_gradients"] = True
    if stage == 3:
        # train.py builds the model inside deepspeed.zero.Init, which otherwise replaces
        # torch.nn.functional.linear for the whole process with its own autograd function
        # (runtime/zero/linear.py, "will persist unless manually reset"). ZeRO-3 fetches
        # parameters by module hooks without it; keeping F.linear keeps the model that the
        # memory model and the reference tests measured.
        zero["memory_efficient_linear"] = False
    if offloads_optimizer(layout):
        zero["offload_optimizer"] = offload_section(layout.offload_optimizer, on_cpu=on_cpu)
    if layout.offload_params != "none":
        zero["offload_param"] = offload_section(layout.offload_params, on_cpu=on_cpu)
    return zero


def offload_section(device: str, *, on_cpu: bool) -> dict:
    section: dict = {"device": device, "pin_memory": not on_cpu}
    if device == "nvme":
        section["nvme_path"] = DEFAULT_NVME_PATH
    return section


def offloads_optimizer(layout: Layout) -> bool:
    return layout.offload_optimizer != "none"


def optimizer_section(optimizer, *, torch_adam: bool = False) -> dict:
    """AdamW. Weight decay here is the default of the decayed parameter group; train.py
    passes a second group (biases and norm weights) with weight_decay 0.

    `torch_adam` picks torch.optim.AdamW over DeepSpeed's FusedAdam. On CPU we do: there
    FusedAdam runs a C++ kernel whose rounding changed after a checkpoint reload in our
    runs (bitwise-equal optimizer state and gradients, different weights), so a resumed
    run drifted from the uninterrupted one in the 7th digit; torch's AdamW resumes
    bit for bit. On GPU, FusedAdam (one fused kernel, no scratch) is what the memory
    planner assumes. Offload always uses DeepSpeedCPUAdam.
    """
    params: dict = {
        "lr": float(optimizer.lr),
        "betas": [float(b) for b in optimizer.betas],
        "eps": float(optimizer.eps),
        "weight_decay": float(optimizer.weight_decay),
    }
    if torch_adam:
        params["torch_adam"] = True
    return {"type": "AdamW", "params": params}


def scheduler_section(schedule, *, lr: float, total_steps: int) -> dict:
    """Linear warm-up, then cosine / linear decay to min_lr, or constant.

    DeepSpeed clamps warm-up to at least 2 steps; with `warmup_steps: 0` the warm-up
    starts at the peak so that no step runs at a lower rate. DeepSpeed's schedulers
    start at iteration -1 (rate 0 for WarmupCosineLR) and are stepped after each
    optimizer step, so step s runs at the rate of iteration s - 2: the peak arrives
    two steps after `warmup_steps` and the last step runs two iterations short of min_lr.
    """
    warmup = max(1, int(schedule.warmup_steps))
    no_warmup = schedule.warmup_steps == 0
    if schedule.name == "cosine":
        return {
            "type": "WarmupCosineLR",
            "params": {
                "total_num_steps": int(total_steps),
                "warmup_num_steps": warmup,
                "warmup_type": "linear",
                "warmup_min_ratio": 1.0 if no_warmup else 0.0,
                "cos_min_ratio": float(schedule.min_lr) / float(lr),
            },
        }
    # WarmupDecayLR computes lr = warmup_min_lr + (max - min) * gamma with gamma falling
    # linearly to 0 at total_num_steps, so warmup_min_lr is also where the decay ends
    # (and where the warm-up starts, rather than at 0).
    start = float(lr) if no_warmup else 0.0
    if schedule.name == "linear":
        return {
            "type": "WarmupDecayLR",
            "params": {
                "total_num_steps": int(total_steps),
                "warmup_num_steps": warmup,
                "warmup_type": "linear",
                "warmup_min_lr": float(schedule.min_lr),
                "warmup_max_lr": float(lr),
            },
        }
    return {
        "type": "WarmupLR",
        "params": {
            "warmup_num_steps": warmup,
            "warmup_type": "linear",
            "warmup_min_lr": start,
            "warmup_max_lr": float(lr),
        },
    }


def precision_section(precision: str) -> dict:
    """bf16 / fp16 sections. fp8 trains on top of bf16: DeepSpeed keeps bf16 weights and
    fp32 master state; the block linears of model.py multiply in FP8 (`fp8_linear`)."""
    if precision in ("bf16", "fp8"):
        return {"bf16": {"enabled": True}}
    if precision == "fp16":
        return {"fp16": {"enabled": True, **FP16_LOSS_SCALING}}
    return {}
