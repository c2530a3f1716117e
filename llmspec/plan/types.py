"""Values the planning stage hands around: small, frozen, torch-free.

Functions take the slice they need (`ModelDims`, `Layout`, a precision
string, a `Gpu`), not the whole Spec, so that the search can evaluate tens of
thousands of layouts without touching pydantic.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

Recompute = Literal["none", "selective", "full"]
Offload = Literal["none", "cpu", "nvme"]
Precision = Literal["fp32", "fp16", "bf16", "fp8"]


@dataclass(frozen=True)
class ModelDims:
    """Everything about the architecture and the objective that costs memory or FLOPs."""

    arch: str  # gpt | llama | bert
    vocab_size: int
    d_model: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_ff: int
    max_seq_len: int
    seq_len: int
    position: str  # learned | sinusoidal | rope
    norm: str  # layernorm | rmsnorm
    activation: str  # gelu | relu | swiglu
    bias: bool
    tie_embeddings: bool
    type_vocab_size: int
    dropout: float
    attention_dropout: float
    drop_path: float
    objective: str  # causal_lm | masked_lm
    label_smoothing: float = 0.0

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @classmethod
    def from_spec(cls, spec) -> ModelDims:  # spec: llmspec.spec.model.Spec
        m, t = spec.model, spec.train
        return cls(
            arch=m.arch,
            vocab_size=m.vocab_size,
            d_model=m.d_model,
            n_layers=m.n_layers,
            n_heads=m.n_heads,
            n_kv_heads=m.kv_heads,
            d_ff=m.ff_dim,
            max_seq_len=m.max_seq_len,
            seq_len=t.seq_len,
            position=m.position,
            norm=m.norm,
            activation=m.activation,
            bias=m.bias,
            tie_embeddings=m.tie_embeddings,
            type_vocab_size=m.type_vocab_size,
            dropout=m.dropout,
            attention_dropout=m.attention_dropout,
            drop_path=m.drop_path,
            objective=t.objective,
            label_smoothing=t.label_smoothing,
        )


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
    total: int  # the step's peak; not always the sum (see MEMORY-NOTES.md)
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
