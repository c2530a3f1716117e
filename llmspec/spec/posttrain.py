"""Spec sections for post-training, evaluation and sweeps (contract 5 of DESIGN.md).

`finetune:` starts a run from a base model instead of random weights, `rlhf:` configures the
reward / dpo / ppo objectives, `eval:` adds `evaluate.py` to the project, `sweep:` adds
`sweep.py`. Each section is absent (null) unless the spec asks for it, so a pretraining spec
builds exactly the project it built before. Field names are public: add, never rename.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from llmspec.spec.section import MAX_STEPS, SEED_LIMIT, _Section, _upto

MAX_ADAPTER_RANK = 2**16
MAX_VIRTUAL_TOKENS = 2**16
MAX_NEW_TOKENS = 2**20
MAX_TRIALS = 10**6
LORA_TARGETS = ("q", "k", "v", "o", "gate", "up", "down")


# ----------------------------------------------------------------------------- finetune
class ModelSource(_Section):
    """Where trained weights come from."""

    path: str = Field(
        ...,
        description="Folder, relative to the spec file: an llmspec run's out/checkpoints, or a "
        "Hugging Face folder (config.json + *.safetensors).",
    )
    format: Literal["llmspec", "hf"] = Field(
        "llmspec",
        description="llmspec = a generated project's checkpoints (any ZeRO stage); hf = a "
        "Hugging Face folder (Llama, Mistral, GPT-2 and BERT families).",
    )
    tag: str | None = Field(
        None, description="format llmspec: checkpoint tag to load (e.g. step_300); null = latest."
    )


class LoraSpec(_Section):
    """LoRA (Hu et al. 2021): W + (alpha / rank) · B·A, B initialised to zero."""

    rank: _upto(MAX_ADAPTER_RANK) = Field(8, description="Adapter rank r.")
    alpha: float = Field(16.0, gt=0, le=1e6, description="Scale numerator: ΔW = (alpha/r)·B·A.")
    dropout: float = Field(
        0.0, ge=0, lt=1, description="Dropout on the adapter's input (peft's lora_dropout)."
    )
    targets: list[Literal["q", "k", "v", "o", "gate", "up", "down"]] = Field(
        default_factory=lambda: ["q", "v"],
        min_length=1,
        description="Linears that get adapters, among q k v o gate up down (gate only with "
        "activation swiglu).",
    )
    rslora: bool = Field(
        False, description="Rank-stabilised scale alpha/√r (Kalajdzievski 2023) instead of alpha/r."
    )

    @model_validator(mode="after")
    def _distinct(self) -> LoraSpec:
        if len(set(self.targets)) != len(self.targets):
            raise ValueError("lora.targets names a linear twice; list each once")
        return self


class PrefixSpec(_Section):
    """Prefix tuning (Li & Liang 2021): learned key/value prefixes in every layer."""

    tokens: _upto(MAX_VIRTUAL_TOKENS) = Field(16, description="Prefix length per layer.")
    projection: bool = Field(
        False,
        description="Reparametrise the prefixes through a 2-layer MLP while training "
        "(Li & Liang §4.3; peft's prefix_projection).",
    )


class PTuningSpec(_Section):
    """P-tuning (Liu et al. 2021): virtual input tokens produced by a prompt encoder."""

    tokens: _upto(MAX_VIRTUAL_TOKENS) = Field(16, description="Virtual tokens prepended.")
    encoder: Literal["mlp", "lstm"] = Field("mlp", description="Prompt encoder.")
    hidden: _upto(2**20) | None = Field(
        None, description="Prompt encoder hidden size; null = model.d_model."
    )


class FinetuneSpec(_Section):
    base: ModelSource = Field(..., description="The model fine-tuning starts from.")
    method: Literal["full", "lora", "prefix", "p_tuning"] = Field(
        "lora",
        description="What trains: every weight, LoRA adapters, prefixes or a prompt encoder.",
    )
    lora: LoraSpec = Field(default_factory=LoraSpec, description="method lora: adapter settings.")
    prefix: PrefixSpec = Field(
        default_factory=PrefixSpec, description="method prefix: prefix settings."
    )
    p_tuning: PTuningSpec = Field(
        default_factory=PTuningSpec, description="method p_tuning: prompt-encoder settings."
    )


# ----------------------------------------------------------------------------- rlhf
class RolloutSpec(_Section):
    max_new_tokens: _upto(MAX_NEW_TOKENS) = Field(32, description="Tokens generated per prompt.")
    temperature: float = Field(1.0, gt=0, le=100, description="Sampling temperature.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass; 1 = off.")
    top_k: int = Field(0, ge=0, le=2**24, description="Sample among the k likeliest; 0 = off.")
    batch_size: _upto(2**20) | None = Field(
        None,
        description="Prompts per rollout per rank; null = micro_batch_size × grad_accum_steps "
        "(one optimizer step per PPO epoch).",
    )
    stop_at_eos: bool = Field(
        True,
        description="A response ends at <eos>; false = always max_new_tokens tokens (<eos> is "
        "an ordinary token, as in the analytic PPO check).",
    )


class PpoSpec(_Section):
    epochs: _upto(1000) = Field(4, description="Optimisation passes over each rollout batch.")
    clip_range: float = Field(0.2, gt=0, le=10, description="Policy ratio clip ε.")
    value_clip: float = Field(0.2, gt=0, le=1e6, description="Value-prediction clip.")
    value_coef: float = Field(0.5, ge=0, le=1e6, description="Weight of the value loss.")
    gamma: float = Field(1.0, ge=0, le=1, description="Discount γ.")
    lam: float = Field(0.95, ge=0, le=1, description="GAE λ.")
    whiten_advantages: bool = Field(True, description="Normalise advantages per batch.")


class SafetySpec(_Section):
    best_of: _upto(1024) = Field(
        1, description="Rejection sampling: keep the best of n responses by reward; 1 = off."
    )
    blocklist: str | None = Field(
        None,
        description="File of words (one per line, relative to the spec); responses containing "
        "one are rejected.",
    )
    reward_floor: float | None = Field(
        None, ge=-1e9, le=1e9, description="Reject responses whose reward is below this."
    )
    cost_model: ModelSource | None = Field(
        None,
        description="Optional cost model (trained with objective reward on unsafe-vs-safe pairs) "
        "for a Lagrangian constraint (Safe RLHF, Dai et al. 2023).",
    )
    cost_limit: float = Field(0.0, ge=-1e9, le=1e9, description="Constraint: mean cost ≤ this.")
    lagrangian_lr: float = Field(0.05, ge=0, le=1e3, description="Step size of the multiplier.")


class RlhfSpec(_Section):
    beta: float = Field(0.1, gt=0, le=1e3, description="DPO temperature β.")
    dpo_loss: Literal["sigmoid", "ipo", "hinge"] = Field(
        "sigmoid", description="DPO loss (TRL's loss_type names)."
    )
    label_smoothing: float = Field(
        0.0, ge=0, lt=0.5, description="DPO: conservative-DPO label smoothing."
    )
    reward_margin: bool = Field(
        False, description="reward: subtract each pair's `margin` field (Llama 2's margin loss)."
    )
    reward_model: ModelSource | None = Field(
        None, description="ppo: a model trained with objective reward; null = a rule (reward_rule)."
    )
    reward_rule: str | None = Field(
        None,
        description="ppo without reward_model: count:<token> rewards each occurrence of a token "
        "(programmatic rewards for tests and toy tasks).",
    )
    kl_coef: float = Field(0.05, ge=0, le=1e3, description="PPO: KL penalty against the reference.")
    kl_estimator: Literal["k1", "k2", "k3"] = Field(
        "k1", description="PPO: per-token KL estimator (Schulman 2020): k1 = log ratio."
    )
    rollout: RolloutSpec = Field(default_factory=RolloutSpec, description="PPO: sampling.")
    ppo: PpoSpec = Field(default_factory=PpoSpec, description="PPO: optimisation.")
    safety: SafetySpec = Field(default_factory=SafetySpec, description="Safety constraints.")


# ----------------------------------------------------------------------------- eval
class GenerationEvalSpec(_Section):
    path: str = Field(
        ..., description='JSON-lines records {"prompt", "reference"}, relative to the spec.'
    )
    max_new_tokens: _upto(MAX_NEW_TOKENS) = Field(64, description="Tokens generated per prompt.")
    temperature: float = Field(0.0, ge=0, le=100, description="0 = greedy.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass; 1 = off.")
    top_k: int = Field(0, ge=0, le=2**24, description="Sample among the k likeliest; 0 = off.")
    stop: list[str] = Field(default_factory=list, description="Stop strings.")
    limit: _upto(MAX_STEPS) | None = Field(None, description="Evaluate at most this many records.")


class BenchmarkSpec(_Section):
    path: str = Field(
        ...,
        description="An lm-evaluation-harness task file (YAML) on local disk, relative to the spec.",
    )
    num_fewshot: int = Field(0, ge=0, le=1024, description="Few-shot examples.")
    limit: _upto(MAX_STEPS) | None = Field(None, description="At most this many documents.")


class EvalSpec(_Section):
    generation: GenerationEvalSpec | None = Field(
        None, description="Prompts to generate from and their references (bleu, rouge, toxicity)."
    )
    metrics: list[Literal["perplexity", "bleu", "rouge", "calibration", "toxicity", "bias"]] = (
        Field(default_factory=lambda: ["perplexity"], description="Metrics in out/eval.json.")
    )
    benchmarks: list[BenchmarkSpec] = Field(
        default_factory=list, description="Zero/few-shot lm-eval tasks, run offline."
    )
    bias_pairs: str | None = Field(
        None,
        description='bias: JSON-lines {"more", "less"} sentence pairs (CrowS-Pairs style), '
        "relative to the spec.",
    )
    toxicity_blocklist: str | None = Field(
        None, description="toxicity: word list, one per line, relative to the spec."
    )
    calibration_bins: _upto(1000) = Field(15, description="calibration: ECE bins.")
    during_training: bool = Field(
        True, description="Log the cheap metrics (perplexity, calibration) at each eval_interval."
    )


# ----------------------------------------------------------------------------- sweep
class Distribution(_Section):
    """Exactly one of the keys."""

    log_uniform: tuple[float, float] | None = Field(
        None, strict=False, description="[low, high], low > 0."
    )
    uniform: tuple[float, float] | None = Field(None, strict=False, description="[low, high].")
    integer: tuple[int, int] | None = Field(
        None, alias="int", strict=False, description="[low, high], inclusive (written `int`)."
    )
    choice: list[str | int | float | bool] | None = Field(
        None, description="Values to choose from."
    )

    @model_validator(mode="after")
    def _one(self) -> Distribution:
        given = [
            k
            for k in ("log_uniform", "uniform", "integer", "choice")
            if getattr(self, k) is not None
        ]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of log_uniform, uniform, int, choice "
                f"(got {', '.join(given) or 'none'})"
            )
        if self.log_uniform is not None and not 0 < self.log_uniform[0] < self.log_uniform[1]:
            raise ValueError("log_uniform needs 0 < low < high")
        for k in ("uniform", "integer"):
            rng = getattr(self, k)
            if rng is not None and not rng[0] < rng[1]:
                raise ValueError(f"{k.replace('integer', 'int')} needs low < high")
        if self.choice is not None and not self.choice:
            raise ValueError("choice needs at least one value")
        return self


class SweepSpec(_Section):
    engine: Literal["optuna", "ray"] = Field(
        "optuna", description="optuna (driver-side ask/tell, the default) or ray (Ray Tune)."
    )
    trials: _upto(MAX_TRIALS) = Field(8, description="Trials to run (infeasible ones included).")
    metric: str = Field("val_loss", description="Key of out/metrics.jsonl to optimise.")
    direction: Literal["minimize", "maximize"] = Field(
        "minimize", description="Optimisation sense."
    )
    pruner: Literal["none", "median", "hyperband"] = Field("median", description="Early stopping.")
    pruner_startup_trials: _upto(MAX_TRIALS) = Field(
        3, description="Trials that finish before the pruner may stop one (median)."
    )
    pruner_warmup_steps: int = Field(
        0, ge=0, le=MAX_STEPS, description="Steps of a trial before the pruner may stop it."
    )
    seed: int = Field(0, ge=0, lt=SEED_LIMIT, description="Sampler seed (TPE).")
    params: dict[str, Distribution] = Field(
        ..., min_length=1, description="Dotted spec paths → distributions."
    )
