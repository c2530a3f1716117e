"""Values the planning stage hands around: small, frozen, torch-free.

Functions take the slice they need (`graph.dims.ModelDims`, `Layout`, a precision
string, a `Gpu`), not the whole Spec, so that the search can evaluate tens of
thousands of layouts without touching pydantic.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

Recompute = Literal["none", "selective", "ops", "full"]
Offload = Literal["none", "cpu", "nvme"]
Precision = Literal["fp32", "fp16", "bf16", "fp8"]

# What a GPU's tensor memory is split into (contract 2 `memory.per_gpu_bytes`, less `total`).
MEMORY_CATEGORIES = ("params", "grads", "optimizer", "activations", "temporary")


@dataclass(frozen=True)
class Layout:
    """One parallel layout (contract 2 `layout`). data × tensor × pipeline = world size."""

    data: int = 1
    tensor: int = 1
    pipeline: int = 1
    zero_stage: int = 0
    micro_batch_size: int = 1
    grad_accum_steps: int = 1
    activation_checkpointing: Recompute = "none"
    sequence_parallel: bool = False
    offload_optimizer: Offload = "none"
    offload_params: Offload = "none"

    @property
    def world_size(self) -> int:
        return self.data * self.tensor * self.pipeline

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        """One line for people: plan explanations, the README, train.py's settings."""
        text = (
            f"data {self.data} × tensor {self.tensor} × pipeline {self.pipeline}, "
            f"ZeRO {self.zero_stage}, micro-batch {self.micro_batch_size} × "
            f"{self.grad_accum_steps} accumulation, recompute {self.activation_checkpointing}"
        )
        if self.sequence_parallel:
            text += ", sequence parallel"
        if self.offload_optimizer != "none":
            text += f", optimizer offload to {self.offload_optimizer}"
        if self.offload_params != "none":
            text += f", parameter offload to {self.offload_params}"
        return text


@dataclass(frozen=True)
class StageMemory:
    """Peak bytes allocated on the worst rank of one pipeline stage."""

    stage: int
    layers: int  # transformer blocks on this stage
    params: int
    grads: int
    optimizer: int
    activations: int
    temporary: int
    total: int  # the step's peak; not always the sum (see docs/memory-model.md)
    host_bytes: int = 0  # offloaded optimizer state / params held in host RAM by this rank


@dataclass(frozen=True)
class MemoryEstimate:
    """Contract 2 `memory.per_gpu_bytes` for the worst stage, plus every stage."""

    params: int
    grads: int
    optimizer: int
    activations: int
    temporary: int
    total: int
    stages: tuple[StageMemory, ...]
    host_bytes: int = 0
    overhead_bytes: int = 0  # CUDA context, NCCL, allocator fragmentation: reported, not in total

    def per_gpu_bytes(self) -> dict:
        return {
            k: getattr(self, k)
            for k in ("params", "grads", "optimizer", "activations", "temporary", "total")
        }


@dataclass(frozen=True)
class Performance:
    step_time_s: float
    tokens_per_s: float
    tflops_per_gpu: float  # model FLOPs only (recomputation excluded)
    mfu: float
    time_to_train_s: float
    breakdown_s: dict = field(
        default_factory=dict
    )  # compute, bubble, tp_comm, dp_comm, ... per step
