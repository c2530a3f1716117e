"""DeepSpeed accepts every generated ds_config.json, and its schedule does what the spec says.

Each config is loaded through DeepSpeed's own `DeepSpeedConfig` with the data-parallel
world size of its layout (DeepSpeed checks train_batch_size = micro × accumulation ×
data-parallel ranks), and its scheduler is built by DeepSpeed's own class on a real
optimizer and stepped through the whole run.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from llmspec.pipeline import build_project
from llmspec.rules import deepspeed as ds_rules

ROOT = Path(__file__).resolve().parents[1]
TINY = yaml.safe_load((ROOT / "specs" / "tiny-cpu.yaml").read_text())

# tiny-cpu with these sections deep-merged over it
VARIANTS = {
    "zero1-accum": {"parallel": {"zero_stage": 1}, "train": {"micro_batch_size": 2}},
    "zero2-offload-cpu": {"parallel": {"zero_stage": 2, "offload_optimizer": "cpu"}},
    "zero3-offload-all-nvme": {
        "parallel": {"zero_stage": 3, "offload_optimizer": "nvme", "offload_params": "nvme"},
    },
    "bf16-linear": {
        "train": {"precision": "bf16", "schedule": {"name": "linear", "warmup_steps": 10}},
    },
    "fp16-a100": {
        "train": {"precision": "fp16"},
        "cluster": {"gpu": "a100-80gb", "gpus_per_node": 2},
    },
    "fp8-h100-constant": {
        "train": {"precision": "fp8", "schedule": {"name": "constant", "warmup_steps": 5}},
        "cluster": {"gpu": "h100-sxm", "gpus_per_node": 2},
    },
    "no-warmup-pipeline": {
        "parallel": {"data": 1, "pipeline": 2},
        "train": {"schedule": {"warmup_steps": 0}},
    },
}


def merged(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) else value
    return out


def example_specs() -> list[Path]:
    return sorted((ROOT / "specs").glob("*.yaml"))


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, tuple[dict, dict]]:
    """name → (ds_config, plan) for every example spec and every tiny variant."""
    folder = tmp_path_factory.mktemp("ds-configs")
    specs = {path.stem: path for path in example_specs()}
    for name, override in VARIANTS.items():
        path = folder / f"{name}.yaml"
        path.write_text(yaml.safe_dump(merged(TINY, {"name": name, **override})))
        specs[name] = path
    result = {}
    for name, path in specs.items():
        files = build_project(path, folder / "out" / name, check=True).files
        result[name] = (json.loads(files["ds_config.json"]), json.loads(files["plan.json"]))
    return result


class DataParallelWorld:
    """What DeepSpeedConfig asks an mpu for: the number of data-parallel replicas."""

    def __init__(self, size: int):
        self.size = size

    def get_data_parallel_world_size(self) -> int:
        return self.size


def all_names() -> list[str]:
    return [p.stem for p in example_specs()] + list(VARIANTS)


@pytest.mark.parametrize("name", all_names())
def test_deepspeed_accepts_the_config(built, name: str, monkeypatch):
    from deepspeed.runtime import config as ds_config_module

    # DeepSpeedConfig asks the mpu for the data-parallel world size only once it can
    # ask torch.distributed for this process's rank; answer as rank 0 of the job.
    monkeypatch.setattr(ds_config_module.dist, "get_rank", lambda *args, **kwargs: 0)
    config, plan = built[name]
    layout = plan["layout"]
    parsed = ds_config_module.DeepSpeedConfig(config, mpu=DataParallelWorld(layout["data"]))
    assert (
        parsed.train_batch_size
        == plan["layout"]["micro_batch_size"] * layout["grad_accum_steps"] * layout["data"]
    )
    assert parsed.zero_optimization_stage == layout["zero_stage"]
    assert parsed.gradient_clipping == pytest.approx(1.0)
    assert parsed.optimizer_name == "adamw"
    offload = parsed.zero_config.offload_optimizer
    device = getattr(offload.device, "value", offload.device) if offload else "none"
    assert device == layout["offload_optimizer"]


def test_precision_sections(built):
    assert built["fp16-a100"][0]["fp16"]["enabled"] and "bf16" not in built["fp16-a100"][0]
    assert built["fp16-a100"][0]["fp16"]["loss_scale"] == 0  # dynamic
    assert built["fp8-h100-constant"][0]["bf16"] == {"enabled": True}
    assert "bf16" not in built["tiny-cpu"][0] and "fp16" not in built["tiny-cpu"][0]


def test_pin_memory_only_off_the_cpu_and_nvme_gets_a_path(built):
    zero = built["zero3-offload-all-nvme"][0]["zero_optimization"]
    assert zero["offload_param"]["device"] == "nvme" and zero["offload_param"]["nvme_path"]
    assert zero["offload_optimizer"]["pin_memory"] is False  # cluster.gpu is cpu


def lr_trajectory(config: dict, steps: int) -> list[float]:
    """The learning rate of every optimizer step, from DeepSpeed's own scheduler class."""
    from deepspeed.runtime import lr_schedules

    optimizer_params = config["optimizer"]["params"]
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([weight], lr=optimizer_params["lr"])
    scheduler_class = getattr(lr_schedules, config["scheduler"]["type"])
    scheduler = scheduler_class(optimizer, **config["scheduler"]["params"])
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        scheduler.step()
    return lrs


@pytest.mark.parametrize(
    "name, schedule",
    [("tiny-cpu", "cosine"), ("bf16-linear", "linear"), ("fp8-h100-constant", "constant")],
)
def test_schedule_warms_up_then_decays_to_min_lr(built, name: str, schedule: str):
    config, _ = built[name]
    spec = merged(TINY, VARIANTS.get(name, {}))["train"]
    lr, min_lr = spec["optimizer"]["lr"], spec["schedule"]["min_lr"]
    warmup, steps = spec["schedule"]["warmup_steps"], spec["steps"]
    lrs = lr_trajectory(config, steps + 1)
    assert max(lrs) == pytest.approx(lr, rel=1e-3)
    assert lrs.index(max(lrs)) in (warmup, warmup + 1)  # DeepSpeed peaks one step late
    assert all(a <= b + 1e-12 for a, b in zip(lrs[:warmup], lrs[1 : warmup + 1], strict=True))
    if schedule == "constant":
        assert lrs[-1] == pytest.approx(lr)
    else:
        # DeepSpeed reaches min_lr two iterations after the last step: within two of decay
        assert lrs[-1] == pytest.approx(min_lr, abs=2 * (lr - min_lr) / (steps - warmup))
        assert all(
            a >= b - 1e-12 for a, b in zip(lrs[warmup + 1 : -1], lrs[warmup + 2 :], strict=True)
        )
    if schedule == "cosine":  # halfway through the decay: halfway between lr and min_lr
        middle = warmup + (steps - warmup) // 2
        assert lrs[middle + 1] == pytest.approx((lr + min_lr) / 2, rel=0.02)


def test_no_warmup_starts_at_the_peak(built):
    config, _ = built["no-warmup-pipeline"]
    lrs = lr_trajectory(config, 3)
    lr = TINY["train"]["optimizer"]["lr"]
    assert lrs[1:] == pytest.approx([lr, lr], rel=1e-3)
    assert not math.isnan(lrs[0])


def test_buffers_written_are_the_rules_and_deepspeeds_own_defaults(built):
    """ds_config.json writes rules.deepspeed's values, and they are DeepSpeed's defaults
    (so a DeepSpeed upgrade that moves a default shows up here)."""
    from deepspeed.runtime.zero.config import DeepSpeedZeroConfig

    defaults = DeepSpeedZeroConfig()
    assert ds_rules.REDUCE_BUCKET_ELEMENTS == defaults.reduce_bucket_size
    assert ds_rules.ALLGATHER_BUCKET_ELEMENTS == defaults.allgather_bucket_size
    assert ds_rules.STAGE3_PREFETCH_ELEMENTS == defaults.prefetch_bucket_size
    assert ds_rules.STAGE3_PERSISTENCE_THRESHOLD == defaults.param_persistence_threshold
    assert ds_rules.STAGE3_MAX_LIVE_ELEMENTS == defaults.max_live_parameters
    assert ds_rules.STAGE3_MAX_REUSE_DISTANCE == defaults.max_reuse_distance
    for name in all_names():
        zero = built[name][0]["zero_optimization"]
        if zero["stage"] == 0:
            continue
        assert zero["reduce_bucket_size"] == ds_rules.REDUCE_BUCKET_ELEMENTS
        assert zero["allgather_bucket_size"] == ds_rules.ALLGATHER_BUCKET_ELEMENTS
        assert zero["overlap_comm"] == (zero["stage"] in ds_rules.OVERLAP_COMM_ZERO_STAGES)
        if zero["stage"] == 3:
            assert zero["stage3_prefetch_bucket_size"] == ds_rules.STAGE3_PREFETCH_ELEMENTS
            assert zero["stage3_max_live_parameters"] == ds_rules.STAGE3_MAX_LIVE_ELEMENTS


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_memory_model_prices_the_reduce_bucket_the_config_writes(stage, monkeypatch):
    """The memory model reads the bucket from the same rule: halving it there moves the
    estimate by exactly half a bucket of gradient bytes."""
    from llmspec.graph.dims import ModelDims
    from llmspec.plan import memory
    from llmspec.plan.types import Layout
    from llmspec.spec.load import load_spec

    dims = ModelDims.from_spec(load_spec(ROOT / "specs" / "gpt2-small.yaml"))
    layout = Layout(data=8, zero_stage=stage, micro_batch_size=1)
    before = memory.estimate_memory(dims, layout, "bf16").total
    monkeypatch.setattr(ds_rules, "REDUCE_BUCKET_ELEMENTS", ds_rules.REDUCE_BUCKET_ELEMENTS // 2)
    after = memory.estimate_memory(dims, layout, "bf16").total
    assert before - after == pytest.approx(2 * ds_rules.REDUCE_BUCKET_ELEMENTS, rel=1e-6)


@pytest.mark.parametrize(
    "tensor,sequence_parallel,expected",
    [(2, True, {"pipe_partitioned": False, "grad_partitioned": False}), (2, False, None)],
)
def test_pipeline_with_sequence_parallel_keeps_stage_activations_whole(
    tensor, sequence_parallel, expected
):
    """Under SP each tensor rank holds its own slice of a stage's output, so DeepSpeed must
    not partition it as if the ranks held identical copies (it gave a wrong loss)."""
    from llmspec.codegen.ds_config import build_ds_config
    from llmspec.plan.types import Layout
    from llmspec.spec.schema import TrainSpec

    layout = Layout(
        tensor=tensor,
        pipeline=2,
        zero_stage=1,
        grad_accum_steps=4,
        sequence_parallel=sequence_parallel,
    )
    config = build_ds_config(layout=layout, train=TrainSpec(), on_cpu=True)
    assert config.get("pipeline") == expected
