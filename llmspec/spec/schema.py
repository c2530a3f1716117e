"""The typed spec (contract 1 of DESIGN.md).

Field names here are the public interface: examples, docs, tests and the
generated projects use them. Fields may be added; none may be renamed.
Every field has a default and a one-line description (units and special
values included); unknown keys are rejected.

Cross-field rules that need more than one section (tensor divides heads,
batch arithmetic, fp8 needs a GPU that has it, ...) live in `checks.py`,
so that they can report every problem with its location at once.
"""

from __future__ import annotations

import posixpath
import re
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from llmspec.spec.posttrain import EvalSpec, FinetuneSpec, RlhfSpec, SweepSpec
from llmspec.spec.section import (  # noqa: F401  (re-exported: contract 1 names them here)
    AUTO,
    MAX_BATCH,
    MAX_BYTES_SIZE,
    MAX_GIB,
    MAX_GPUS_PER_NODE,
    MAX_HEADS,
    MAX_LAYERS,
    MAX_NAME,
    MAX_NODES,
    MAX_RATE,
    MAX_SEQ,
    MAX_STEPS,
    MAX_TOKENS,
    MAX_TYPE_VOCAB,
    MAX_VOCAB,
    MAX_WIDTH,
    MAX_WORKERS,
    MAX_WORLD,
    MIN_GIB,
    MIN_RATE,
    SEED_LIMIT,
    SLUG_RE,
    AutoInt,
    PosInt,
    _Section,
    _upto,
)
from llmspec.units import GIB, KIB, MIB, TIB


# ----------------------------------------------------------------------------- model
class ModelSpec(_Section):
    """Transformer architecture. `preset` fills these in; explicit fields override it."""

    preset: str | None = Field(
        None,
        description="Named architecture from `llmspec presets`; fields given here override it.",
    )
    arch: Literal["gpt", "llama", "bert"] = Field(
        "gpt",
        description="Model family: gpt (causal, learned positions), llama (rope, rmsnorm, swiglu), bert (bidirectional encoder).",
    )
    vocab_size: _upto(MAX_VOCAB) = Field(
        50257, description=f"Rows of the token embedding (tokens), at most {MAX_VOCAB}."
    )
    max_seq_len: _upto(MAX_SEQ) = Field(
        1024,
        description="Longest sequence the model supports (tokens); sizes learned position tables.",
    )
    d_model: _upto(MAX_WIDTH) = Field(768, description="Hidden size h.")
    n_layers: _upto(MAX_LAYERS) = Field(12, description="Number of transformer blocks L.")
    n_heads: _upto(MAX_HEADS) = Field(
        12, description="Attention (query) heads a; d_model must be divisible by it."
    )
    n_kv_heads: _upto(MAX_HEADS) | None = Field(
        None,
        description="Key/value heads; fewer than n_heads = grouped-query attention. null = n_heads.",
    )
    d_ff: _upto(MAX_WIDTH) | None = Field(None, description="MLP inner size. null = 4 × d_model.")
    position: Literal["learned", "sinusoidal", "rope"] = Field(
        "learned", description="Position encoding."
    )
    rope_theta: float = Field(
        10000.0, gt=0, le=1e12, description="RoPE base frequency (only with position: rope)."
    )
    norm: Literal["layernorm", "rmsnorm"] = Field("layernorm", description="Normalisation layer.")
    norm_eps: float = Field(1e-5, gt=0, le=1, description="Epsilon of every norm layer.")
    norm_position: Literal["pre", "post"] = Field(
        "pre", description="Norm before (pre) or after (post) each residual branch."
    )
    activation: Literal["gelu", "relu", "swiglu"] = Field(
        "gelu", description="MLP activation; swiglu uses three d_ff projections."
    )
    bias: bool = Field(True, description="Biases in linear layers and norms.")
    tie_embeddings: bool = Field(
        True, description="Share the token embedding with the output (LM head) weight."
    )
    type_vocab_size: int = Field(
        0,
        ge=0,
        le=MAX_TYPE_VOCAB,
        description="Token-type (segment) embeddings; 0 = none (BERT uses 2).",
    )
    dropout: float = Field(
        0.1, ge=0, lt=1, description="Dropout on embeddings and residual branches (probability)."
    )
    attention_dropout: float = Field(
        0.1, ge=0, lt=1, description="Dropout on attention probabilities (probability)."
    )
    drop_path: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="Stochastic depth: probability of skipping a residual branch, scaled linearly to the last layer.",
    )

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def ff_dim(self) -> int:
        return self.d_ff or 4 * self.d_model

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


# ----------------------------------------------------------------------------- data
class SourceSpec(_Section):
    path: str = Field(
        ...,
        description="Glob relative to the spec file (** recurses). ${VAR} and ${VAR:-default} expand at data-preparation time; ${PYTHON_STDLIB} is always defined.",
    )
    format: Literal["auto", "text", "jsonl"] = Field(
        "auto",
        description="text = one document per file; jsonl = one document per line; auto = by extension (.jsonl/.json → jsonl).",
    )
    text_field: str = Field("text", description="Key of the text in each JSON-lines record.")
    prompt_field: str = Field("prompt", description="sft, reward, dpo, ppo: key of the prompt.")
    response_field: str = Field("response", description="sft: key of the response.")
    chosen_field: str = Field("chosen", description="reward, dpo: key of the preferred response.")
    rejected_field: str = Field(
        "rejected", description="reward, dpo: key of the dispreferred response."
    )
    weight: float = Field(
        1.0,
        gt=0,
        le=1e6,
        description="Mixture weight: sources are sampled into the packed stream in proportion "
        "to their weights (by tokens), recorded in the data manifest.",
    )
    exclude: list[str] = Field(
        default_factory=list,
        description="Patterns (fnmatch, matched against the whole path; * crosses folders) of matched files to leave out, e.g. */site-packages/*.",
    )


class TokenizerSpec(_Section):
    kind: Literal["bpe", "unigram", "wordpiece"] = Field(
        "bpe", description="Tokenizer model trained with `tokenizers` on the kept documents."
    )
    vocab_size: _upto(MAX_VOCAB) | None = Field(
        None,
        description="Vocabulary size to train (tokens, special tokens included); null = "
        "model.vocab_size. A byte-level bpe has at least 260 (256 bytes and 4 special tokens).",
    )
    path: str | None = Field(
        None,
        description="Load this tokenizer.json instead of training one (relative to the spec). "
        "A fine-tune defaults to its base's: an llmspec run's out/data/tokenizer.json (beside "
        "its checkpoints), or a Hugging Face folder's tokenizer.json.",
    )
    lowercase: bool = Field(False, description="Lower-case text before tokenizing.")


class NearDedupSpec(_Section):
    threshold: float = Field(
        0.8,
        gt=0,
        le=1,
        description="Estimated Jaccard similarity at or above which a document is a near-duplicate.",
    )
    num_perm: _upto(4096) = Field(128, description="MinHash permutations (at most 4096).")
    shingle_size: _upto(1024) = Field(5, description="Word n-gram size of the shingles.")


class DedupSpec(_Section):
    exact: bool = Field(
        True, description="Drop documents whose normalised text hashes equal an earlier one."
    )
    near: NearDedupSpec | None = Field(
        default_factory=NearDedupSpec,
        description="MinHash-LSH near-duplicate removal; null disables it.",
    )


class FilterSpec(_Section):
    min_chars: int = Field(
        1,
        ge=0,
        le=MAX_BYTES_SIZE,
        description="Drop documents shorter than this after normalisation (characters).",
    )
    max_chars: int | None = Field(
        None,
        gt=0,
        le=MAX_BYTES_SIZE,
        description="Drop documents longer than this (characters); null = no limit.",
    )
    max_repeated_line_fraction: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Drop documents whose duplicated non-empty lines exceed this fraction of all lines.",
    )
    blocklist: str | None = Field(
        None,
        description="File of words (one per line, relative to the spec); documents containing any are dropped.",
    )


class NormalizeSpec(_Section):
    unicode: Literal["NFC", "NFKC", "none"] = Field(
        "NFC", description="Unicode normalisation form."
    )
    whitespace: bool = Field(
        True, description="Strip trailing spaces, unify line endings, collapse runs of blank lines."
    )


class DataSpec(_Section):
    sources: list[SourceSpec] = Field(
        default_factory=lambda: [SourceSpec(path="corpus/**/*.txt")],
        min_length=1,
        description="Where the documents come from.",
    )
    tokenizer: TokenizerSpec = Field(
        default_factory=TokenizerSpec, description="Tokenizer to train or load."
    )
    dedup: DedupSpec = Field(
        default_factory=DedupSpec, description="Exact and near-duplicate removal."
    )
    filters: FilterSpec = Field(default_factory=FilterSpec, description="Quality filters.")
    normalize: NormalizeSpec = Field(
        default_factory=NormalizeSpec, description="Text normalisation before dedup and tokenizing."
    )
    shard_size: int | str = Field(
        "1GB",
        description='Target bytes per token shard: an integer or "512MB", "1GB", ... (powers of '
        "1024), at most 1TB.",
    )
    validation_fraction: float = Field(
        0.01,
        ge=0,
        lt=1,
        description="Fraction of documents held out for validation (split by document).",
    )
    packing: bool = Field(
        True,
        description="Join documents with EOS and pack into seq_len sequences; false = one document per sequence, length-bucketed and padded. Objectives sft, reward and dpo default it to false (one record per sequence).",
    )
    engine: Literal["local", "ray", "dask"] = Field(
        "local",
        description="Where prepare_data.py runs its stage tasks: local processes, a Ray "
        "cluster (RAY_ADDRESS) or a Dask scheduler (DASK_SCHEDULER_ADDRESS); every engine "
        "writes the same bytes.",
    )
    redact: list[Literal["email", "phone", "ip"]] = Field(
        default_factory=list,
        description="Privacy filtering: replace e-mail addresses, phone numbers and IP "
        "addresses with placeholders before tokenizing; counts go to the manifest.",
    )
    workers: _upto(MAX_WORKERS) | Literal["auto"] = Field(
        "auto",
        description=f"Processes for tokenizing, at most {MAX_WORKERS}; auto = all cores.",
    )
    max_document_size: int | str = Field(
        "8MB",
        description='Largest document read (a file, or one JSON-lines record), in bytes or "8MB", ...; larger ones are skipped unread and counted as documents.skipped.too_large. Bounds the memory data preparation needs: about 150 bytes for each byte of the largest document (3.1 GB for a 21 MB one).',
    )

    @field_validator("shard_size", "max_document_size")
    @classmethod
    def _size(cls, v: int | str) -> int | str:
        parse_bytes(v)
        return v

    @property
    def shard_size_bytes(self) -> int:
        return parse_bytes(self.shard_size)

    @property
    def max_document_bytes(self) -> int:
        return parse_bytes(self.max_document_size)


# Sizes in a spec are binary whichever way they are spelled ("1GB" = "1GiB" = 2**30 bytes).
_UNITS = {"": 1, "B": 1, "KB": KIB, "MB": MIB, "GB": GIB, "TB": TIB}
_UNITS |= {"KIB": KIB, "MIB": MIB, "GIB": GIB, "TIB": TIB}


def parse_bytes(v: int | str) -> int:
    """'1GB' -> 1073741824. Raises ValueError with a hint for anything else."""
    if isinstance(v, bool):
        raise ValueError("expected a size such as 1GB or 268435456")
    if isinstance(v, int):
        if v <= 0:
            raise ValueError("size must be positive")
        if v > MAX_BYTES_SIZE:
            raise ValueError(f"size {show_size(v)} is larger than 1TB ({MAX_BYTES_SIZE} bytes)")
        return v
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", str(v))
    if not m or m.group(2).upper() not in _UNITS:
        raise ValueError(f"cannot read size {v!r}; write e.g. 512MB or 1GB")
    size = float(m.group(1)) * _UNITS[m.group(2).upper()]  # inf for absurdly many digits
    if not size <= MAX_BYTES_SIZE:
        raise ValueError(f"size {show_size(v)} is larger than 1TB; write e.g. 512MB or 1GB")
    n = int(size)
    if n <= 0:
        raise ValueError("size must be positive")
    return n


def show_size(v: int | str) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


# ----------------------------------------------------------------------------- train
class OptimizerSpec(_Section):
    name: Literal["adamw"] = Field(
        "adamw", description="Optimizer (AdamW, decoupled weight decay)."
    )
    lr: float = Field(6.0e-4, gt=0, le=1, description="Peak learning rate (at most 1).")
    betas: tuple[float, float] = Field(
        (0.9, 0.95), strict=False, description="Adam β1, β2, each in [0, 1)."
    )
    eps: float = Field(1.0e-8, gt=0, le=1, description="Adam ε.")
    weight_decay: float = Field(
        0.1,
        ge=0,
        le=1,
        description="Decoupled weight decay (not applied to biases and norms); each step "
        "multiplies weights by 1 − lr × weight_decay, so at most 1.",
    )

    @field_validator("betas")
    @classmethod
    def _betas(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(0 <= b < 1 for b in v):
            raise ValueError("each beta must be in [0, 1), e.g. [0.9, 0.95]")
        return v


class ScheduleSpec(_Section):
    name: Literal["cosine", "linear", "constant"] = Field(
        "cosine", description="Decay after warm-up."
    )
    warmup_steps: int | None = Field(
        None,
        ge=0,
        le=MAX_STEPS,
        description="Linear warm-up from 0 to lr (optimizer steps), at most the run's steps; "
        "null = 2000, or a tenth of the steps when the run has fewer than 20000.",
    )
    min_lr: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Learning rate at the last step, at most optimizer.lr; null = lr / 10.",
    )


class TrainSpec(_Section):
    objective: Literal["causal_lm", "masked_lm", "sft", "reward", "dpo", "ppo"] = Field(
        "causal_lm",
        description="causal_lm = next-token prediction; masked_lm = BERT-style masked tokens; "
        "sft = next-token loss on response tokens only; reward = a scalar reward model "
        "(Bradley-Terry on chosen/rejected pairs); dpo = direct preference optimisation; "
        "ppo = RLHF with PPO (train_ppo.py). sft, reward, dpo and ppo need finetune.base.",
    )
    mask_prob: float = Field(
        0.15,
        gt=0,
        lt=1,
        description="masked_lm: fraction of tokens selected (80% [MASK], 10% random, 10% kept).",
    )
    seq_len: int = Field(
        1024,
        ge=2,
        le=MAX_SEQ,
        description="Tokens per training sequence; at most model.max_seq_len, at least 2: a "
        "causal LM learns to predict each token from those before it, so a 1-token sequence "
        "has no target and its loss is NaN.",
    )
    global_batch_size: _upto(MAX_BATCH) = Field(
        512, description="Sequences per optimizer step (= micro × accumulation × data parallel)."
    )
    micro_batch_size: _upto(MAX_BATCH) | Literal["auto"] = Field(
        "auto", description="Sequences per GPU per forward; auto = the planner chooses."
    )
    steps: _upto(MAX_STEPS) | None = Field(
        None,
        description="Optimizer steps, at most 10**9; null = derived from tokens (default 300000 "
        "when both are null).",
    )
    tokens: float | None = Field(
        None,
        gt=0,
        le=MAX_TOKENS,
        description="Tokens to train on; sets steps = tokens / (global_batch_size × seq_len).",
    )
    optimizer: OptimizerSpec = Field(default_factory=OptimizerSpec, description="Optimizer.")
    schedule: ScheduleSpec = Field(
        default_factory=ScheduleSpec, description="Learning-rate schedule."
    )
    grad_clip: float = Field(
        1.0, ge=0, le=1e6, description="Clip the global gradient norm to this; 0 disables."
    )
    precision: Literal["fp32", "fp16", "bf16", "fp8"] = Field(
        "bf16",
        description=(
            "Training precision (fp16 uses dynamic loss scaling; fp8: bf16 weights, block "
            "linears multiplied in FP8 with per-tensor scales, on GPUs with FP8 units, every "
            "linear width and seq_len a multiple of 16)."
        ),
    )
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="Cross-entropy label smoothing.")
    seed: int = Field(
        1234,
        ge=0,
        lt=SEED_LIMIT,
        description="Seed for initialisation, data order and masking; below 2**32, which "
        "numpy and torch both accept.",
    )
    log_interval: _upto(MAX_STEPS) = Field(
        10, description="Steps between metric lines in out/metrics.jsonl."
    )
    eval_interval: _upto(MAX_STEPS) = Field(1000, description="Steps between validation passes.")
    eval_batches: _upto(MAX_STEPS) = Field(20, description="Micro-batches per validation pass.")
    checkpoint_interval: _upto(MAX_STEPS) = Field(
        1000, description="Steps between checkpoints (and at the last step)."
    )

    @model_validator(mode="after")
    def _steps_or_tokens(self) -> TrainSpec:
        if self.steps is not None and self.tokens is not None:
            raise ValueError("give either steps or tokens, not both")
        return self

    @model_validator(mode="after")
    def _schedule_follows_run(self) -> TrainSpec:
        """Unset warm-up and min_lr follow the run, so that the defaults agree with any steps/lr."""
        changes = {}
        if self.schedule.warmup_steps is None:
            changes["warmup_steps"] = min(2000, self.total_steps // 10)
        if self.schedule.min_lr is None:
            # 15 digits: 6e-4 / 10 is 6e-05, not 5.9999999999999995e-05
            changes["min_lr"] = float(f"{self.optimizer.lr / 10:.15g}")
        if changes:
            _set_once(self, "schedule", _filled(self.schedule, **changes))
        return self

    @property
    def total_steps(self) -> int:
        if self.steps is not None:
            return self.steps
        if self.tokens is not None:
            return max(1, round(self.tokens / (self.global_batch_size * self.seq_len)))
        return 300000


# ----------------------------------------------------------------------------- parallel
class ParallelSpec(_Section):
    """Every field is a value, or auto: the planner chooses."""

    data: _upto(MAX_WORLD) | Literal["auto"] = Field("auto", description="Data-parallel replicas.")
    tensor: _upto(MAX_GPUS_PER_NODE) | Literal["auto"] = Field(
        "auto",
        description="Tensor-parallel degree (inside one node; divides heads, kv heads and d_ff).",
    )
    pipeline: _upto(MAX_LAYERS) | Literal["auto"] = Field(
        "auto", description="Pipeline stages (at most n_layers)."
    )
    zero_stage: Literal[0, 1, 2, 3, "auto"] = Field(
        "auto",
        description="DeepSpeed ZeRO stage: 1 shards optimizer state, 2 also gradients, 3 also parameters.",
    )
    sequence_parallel: bool | Literal["auto"] = Field(
        "auto", description="Megatron sequence parallelism (needs tensor > 1)."
    )
    activation_checkpointing: Literal["none", "selective", "ops", "full", "auto"] = Field(
        "auto",
        description=(
            "Recompute: none; selective (attention core); ops (torchtitan's per-op policy: keep "
            "attention and every other matmul output, recompute the rest; tensor = 1); "
            "full (whole block)."
        ),
    )
    offload_optimizer: Literal["none", "cpu", "nvme"] = Field(
        "none", description="ZeRO-Offload of optimizer state (and its step) to host memory or NVMe."
    )
    offload_params: Literal["none", "cpu", "nvme"] = Field(
        "none", description="ZeRO-3 parameter offload."
    )

    @field_validator("zero_stage", mode="before")
    @classmethod
    def _stage_not_bool(cls, v):
        if isinstance(v, bool):  # Literal[0, 1] would otherwise accept false / true
            raise ValueError(f"expected 0, 1, 2, 3 or auto, got {str(v).lower()}")
        return v


# ----------------------------------------------------------------------------- cluster
class GpuOverride(_Section):
    """A catalog GPU with some figures replaced (e.g. a cut-down SKU or a measured link)."""

    name: str = Field(..., description="Catalog entry to start from (`llmspec hardware`).")
    memory_gib: float | None = Field(
        None, ge=MIN_GIB, le=MAX_GIB, description="Usable device memory (GiB)."
    )
    peak_tflops: float | None = Field(
        None, ge=MIN_RATE, le=MAX_RATE, description="Dense 16-bit peak (TFLOP/s)."
    )
    fp8_tflops: float | None = Field(
        None, ge=0, le=MAX_RATE, description="Dense FP8 peak (TFLOP/s); 0 = no FP8."
    )
    hbm_gbps: float | None = Field(
        None, ge=MIN_RATE, le=MAX_RATE, description="Memory bandwidth (GB/s)."
    )
    intra_node_gbps: float | None = Field(
        None,
        ge=MIN_RATE,
        le=MAX_RATE,
        description="Per-GPU, per-direction bandwidth inside a node (GB/s).",
    )
    inter_node_gbps: float | None = Field(
        None,
        ge=MIN_RATE,
        le=MAX_RATE,
        description="Per-GPU, per-direction network bandwidth between nodes (GB/s).",
    )


class ClusterSpec(_Section):
    gpu: str | GpuOverride = Field(
        "a100-80gb",
        description="Catalog name (`llmspec hardware`), or a mapping {name: ..., figure: value} overriding it.",
    )
    nodes: _upto(MAX_NODES) = Field(
        1, description=f"Machines; nodes × gpus_per_node is at most {MAX_WORLD}."
    )
    gpus_per_node: _upto(MAX_GPUS_PER_NODE) = Field(
        8, description="Accelerators per machine (processes per node on CPU)."
    )
    host_memory_gib: float = Field(
        1024.0,
        ge=MIN_GIB,
        le=MAX_GIB,
        description="Host RAM per node available for offload (GiB).",
    )

    @property
    def gpu_name(self) -> str:
        return self.gpu if isinstance(self.gpu, str) else self.gpu.name

    @property
    def world_size(self) -> int:
        return self.nodes * self.gpus_per_node


# ----------------------------------------------------------------------------- tracking
class TrackingSpec(_Section):
    tensorboard: bool = Field(
        True, description="Write TensorBoard event files under out/tensorboard."
    )
    mlflow: bool = Field(
        False,
        description="Log to MLflow (file store under out/mlruns unless MLFLOW_TRACKING_URI is set).",
    )
    wandb: bool = Field(
        False, description="Log to Weights & Biases (offline mode unless WANDB_MODE is set)."
    )
    project: str = Field("llmspec", description="Experiment / project name for MLflow and W&B.")


# ----------------------------------------------------------------------------- top level
# objectives whose data are JSON-lines records with a prompt, one per sequence (never packed)
RECORD_OBJECTIVES = ("sft", "reward", "dpo")


class Spec(_Section):
    """One LLM training run."""

    name: str = Field(
        "run",
        pattern=SLUG_RE,
        max_length=MAX_NAME,
        description=f"Slug [a-z0-9][a-z0-9._-]*, at most {MAX_NAME} characters; names the output "
        "folder (a file name holds at most 255 bytes, and build writes siblings that add to it).",
    )
    extends: str | list[str] | None = Field(
        None, description="Spec(s) this one deep-merges over, paths relative to this file."
    )
    model: ModelSpec = Field(default_factory=ModelSpec, description="Architecture.")
    data: DataSpec = Field(
        default_factory=DataSpec, description="Corpus → dedup/filter → tokenizer → packed shards."
    )
    train: TrainSpec = Field(
        default_factory=TrainSpec, description="Objective, batch, optimizer and schedule."
    )
    parallel: ParallelSpec = Field(
        default_factory=ParallelSpec,
        description="Parallel layout; auto fields are chosen by the planner.",
    )
    cluster: ClusterSpec = Field(default_factory=ClusterSpec, description="Hardware.")
    tracking: TrackingSpec = Field(default_factory=TrackingSpec, description="Experiment tracking.")
    finetune: FinetuneSpec | None = Field(
        None, description="Start from a base model; null = pretraining from random weights."
    )
    rlhf: RlhfSpec | None = Field(
        None, description="Settings of the reward, dpo and ppo objectives; null = defaults."
    )
    eval: EvalSpec | None = Field(
        None, description="Evaluation suite (evaluate.py, out/eval.json); null = none."
    )
    sweep: SweepSpec | None = Field(
        None, description="Hyper-parameter sweep (sweep.py); null = none."
    )

    @model_validator(mode="after")
    def _tokenizer_follows_model(self) -> Spec:
        """An unset data.tokenizer.vocab_size is model.vocab_size, so that the defaults agree."""
        tok = self.data.tokenizer
        if tok.vocab_size is None:
            filled = _filled(tok, vocab_size=self.model.vocab_size)
            _set_once(self, "data", _filled(self.data, tokenizer=filled))
        return self

    @model_validator(mode="after")
    def _finetune_defaults(self) -> Spec:
        """Objectives sft, reward and dpo train one record per sequence (a preference pair per
        two), so an unset data.packing is false there; a fine-tune of an llmspec run reads that run's tokenizer
        (its out/data/tokenizer.json, beside out/checkpoints) unless data.tokenizer.path is set."""
        data = self.data
        if self.train.objective in RECORD_OBJECTIVES and "packing" not in data.model_fields_set:
            data = _filled(data, packing=False)
        ft = self.finetune
        if ft is not None and data.tokenizer.path is None:
            base = ft.base.path.rstrip("/") or "."
            # an llmspec run keeps it in out/data beside out/checkpoints; an HF folder holds it
            parts = (
                ("..", "data", "tokenizer.json")
                if ft.base.format == "llmspec"
                else ("tokenizer.json",)
            )
            path = posixpath.normpath(posixpath.join(base, *parts))
            data = _filled(data, tokenizer=_filled(data.tokenizer, path=path))
        if data is not self.data:
            _set_once(self, "data", data)
        return self


def _filled(section: BaseModel, **values) -> BaseModel:
    """A copy of `section` with defaults resolved; the fields the spec gave stay marked as given."""
    return type(section).model_construct(
        _fields_set=set(section.model_fields_set), **{**dict(section), **values}
    )


def _set_once(model: BaseModel, name: str, value) -> None:
    object.__setattr__(model, name, value)  # frozen models: resolved once, while validating
