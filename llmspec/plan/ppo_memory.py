"""PPO (RLHF) per-GPU memory: one row per resident model and per phase.

Resident models after DeepSpeed-Chat ``dschat/rlhf_engine.py`` (frozen models use ZeRO-3
only when the trained one does) and OpenRLHF ``get_ds_eval_config``; model-state bytes per the ZeRO paper (Rajbhandari et al. 2020,
section 3: 2 + 2 + K bytes per parameter, K = 12 for mixed-precision Adam).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from llmspec.graph.dims import ModelDims
from llmspec.graph.layers import count_params
from llmspec.plan.memory import WEIGHT_BYTES, estimate_memory, model_states
from llmspec.plan.types import Layout
from llmspec.rules.deepspeed import STAGE3_MAX_LIVE_ELEMENTS, STAGE3_PREFETCH_ELEMENTS
from llmspec.spec.posttrain import RlhfSpec
from llmspec.units import GIB


def trained_states(n_params: float, zero_stage: int, dp: int, k: int = 12) -> float:
    """Bytes per GPU for a trained model: fp16 params, fp16 grads, K bytes optimizer states."""
    params, grads, opt = 2.0 * n_params, 2.0 * n_params, float(k) * n_params
    if zero_stage >= 1:
        opt /= dp
    if zero_stage >= 2:
        grads /= dp
    if zero_stage >= 3:
        params /= dp
    return params + grads + opt


def frozen_states(n_params: float, zero_stage: int, dp: int) -> float:
    """Bytes per GPU for a frozen (inference-only) bf16 model; partitioned only under ZeRO-3."""
    return 2.0 * n_params / (dp if zero_stage >= 3 else 1)


def kv_cache_bytes(
    n_layers: int, n_kv_heads: int, d_head: int, tokens: int, batch: int, width: int = 2
) -> float:
    """Generation KV cache: 2 (K and V) * L * n_kv * d_head * (P+G) * B_roll * bytes."""
    return 2.0 * n_layers * n_kv_heads * d_head * tokens * batch * width


@dataclass(frozen=True)
class PPOMemoryRow:
    name: str
    bytes: float


def ppo_memory(
    *,
    actor_params: float,
    critic_params: float,
    reward_params: float,
    zero_stage: int,
    dp: int,
    lora_actor: bool = False,
    phases: dict[str, float] | None = None,
) -> list[PPOMemoryRow]:
    """Rows: actor, critic, reference, reward model states, then the peak phase.

    z_ref = 3 if z_actor == 3 else 0, z_rm = 3 if z_critic == 3 else 0 (DS-Chat rlhf_engine.py).
    With a LoRA actor the reference is the base with adapters off (0 bytes) and the actor's base
    weights are frozen (adapter states are neglected here).
    """
    z_frozen = 3 if zero_stage == 3 else 0
    if lora_actor:
        actor = frozen_states(actor_params, zero_stage, dp)
        ref = 0.0
    else:
        actor = trained_states(actor_params, zero_stage, dp)
        ref = frozen_states(actor_params, z_frozen, dp)
    rows = [
        PPOMemoryRow("actor", actor),
        PPOMemoryRow("critic", trained_states(critic_params, zero_stage, dp)),
        PPOMemoryRow("reference", ref),
        PPOMemoryRow("reward", frozen_states(reward_params, z_frozen, dp)),
    ]
    if phases:
        # Phases run one after another: only the largest is resident on top of the states.
        peak = max(phases, key=lambda p: phases[p])
        rows.append(PPOMemoryRow(f"phase:{peak}", phases[peak]))
    return rows


def total(rows: list[PPOMemoryRow]) -> float:
    return sum(r.bytes for r in rows)


# ----------------------------------------------------------------------------- the plan's rows
# What `llmspec plan` prints for objective ppo (POSTTRAINING-NOTES.md §3.4 and §8): the four
# models resident on every rank (actor and critic with their training states, reference and
# reward frozen at the ZeRO stage DS-Chat's rule gives them), then the phases of one
# iteration, which run one after another: only the largest is added to the states.
#   generate       the KV cache of every candidate (2·L·n_kv·d_head·(P+G)·B·w) and the last
#                  step's fp32 logits (B·V·4); under ZeRO-3 the gathered parameters
#   score          fp32 logits of every rollout, B·(P+G)·V·4 (actor and reference log-probs)
#   actor update   gradients, activations and temporaries of a micro-batch (plan.memory's own
#                  model of the generated model at seq_len P+G, objective "policy": the
#                  log-probs of the G response positions instead of train.py's loss)
#   critic update  the same with a scalar value head (objective "value": no vocabulary)
# Resident rows hold weights and AdamW state; a model's gradients live in its update only
# (DeepSpeed frees them after each step). Measured: tests/test_ppo_plan.py (FakeTensorMode).
PHASES = ("generate", "score", "actor update", "critic update")
MODELS = ("actor", "critic", "reference", "reward")


@dataclass(frozen=True)
class PPOStagePlan:
    """The PPO memory of one ZeRO stage for actor and critic, per GPU."""

    zero_stage: int
    frozen_zero_stage: int
    models: dict[str, float]  # MODELS → bytes resident all iteration
    phases: dict[str, float]  # PHASES → bytes on top while that phase runs
    overhead_bytes: float
    capacity_bytes: float

    @property
    def peak_phase(self) -> str:
        return max(PHASES, key=lambda p: (self.phases[p], -PHASES.index(p)))

    @property
    def total(self) -> float:
        return sum(self.models.values()) + self.phases[self.peak_phase]

    @property
    def fits(self) -> bool:
        return self.total + self.overhead_bytes <= self.capacity_bytes

    def why(self) -> str:
        """One sentence: the verdict and what dominates it."""
        used = self.total + self.overhead_bytes
        frozen = self.models["reference"] + self.models["reward"]
        trained = self.models["actor"] + self.models["critic"]
        parts = (
            f"actor + critic weights and AdamW state {trained / GIB:.1f} GiB, reference + reward "
            f"{frozen / GIB:.1f} GiB at ZeRO {self.frozen_zero_stage}"
            + (" (full replicas: the eval rule gives them ZeRO 3 only with the actor at 3)"
               if self.frozen_zero_stage == 0 and frozen else "")
            + f", {self.peak_phase} {self.phases[self.peak_phase] / GIB:.1f} GiB"
        )  # fmt: skip
        if self.fits:
            return f"fits: {used / GIB:.1f} of {self.capacity_bytes / GIB:.1f} GiB ({parts})"
        return (
            f"OOM by {(used - self.capacity_bytes) / GIB:.1f} GiB: {used / GIB:.1f} of "
            f"{self.capacity_bytes / GIB:.1f} GiB ({parts})"
        )

    def to_dict(self) -> dict:
        return {
            "zero_stage": self.zero_stage,
            "frozen_zero_stage": self.frozen_zero_stage,
            "models": {k: int(v) for k, v in self.models.items()},
            "phases": {k: int(v) for k, v in self.phases.items()},
            "peak_phase": self.peak_phase,
            "total_bytes": int(self.total),
            "overhead_bytes": int(self.overhead_bytes),
            "fits": self.fits,
            "why": self.why(),
        }


@dataclass(frozen=True)
class PPOPlan:
    prompt_len: int
    new_tokens: int
    rollouts_per_rank: int  # prompts per rank per iteration
    candidates_per_rank: int  # sequences generated per rank (rollouts × best_of)
    reward: str  # "model" or "rule"
    chosen_zero_stage: int  # the layout's
    stages: tuple[PPOStagePlan, ...]  # ZeRO 0 … 3

    def stage(self, zero_stage: int) -> PPOStagePlan:
        return next(s for s in self.stages if s.zero_stage == zero_stage)

    def to_dict(self) -> dict:
        return {
            "prompt_len": self.prompt_len,
            "new_tokens": self.new_tokens,
            "rollouts_per_rank": self.rollouts_per_rank,
            "candidates_per_rank": self.candidates_per_rank,
            "reward": self.reward,
            "chosen_zero_stage": self.chosen_zero_stage,
            "fitting_zero_stages": [s.zero_stage for s in self.stages if s.fits],
            "stages": [s.to_dict() for s in self.stages],
        }


def plan_ppo(spec, dims: ModelDims, layout: Layout, capacity_bytes: float, kernels: str) -> PPOPlan:
    """PPO's memory rows for `spec` (objective ppo) at every ZeRO stage of `layout`'s data,
    micro-batch and recompute, one model shard per rank (tensor = pipeline = 1)."""
    rlhf = spec.rlhf or RlhfSpec()
    precision = spec.train.precision
    w = WEIGHT_BYTES[precision]
    base = replace(layout, tensor=1, pipeline=1, sequence_parallel=False)
    base = replace(base, data=layout.world_size)
    d = base.data
    new = rlhf.rollout.max_new_tokens
    tokens = dims.seq_len  # prompt + response
    rollouts = rlhf.rollout.batch_size or layout.micro_batch_size * layout.grad_accum_steps
    candidates = rollouts * rlhf.safety.best_of
    psi = count_params(dims).total
    actor_dims = replace(dims, objective="policy", response_len=new)
    critic_dims = replace(dims, objective="value")
    untied = 0 if dims.tie_embeddings else dims.vocab_size * dims.d_model
    reward = rlhf.reward_model is not None
    kv = kv_cache_bytes(dims.n_layers, dims.n_kv_heads, dims.head_dim, tokens, candidates, w)
    stages = []
    for z in range(4):
        lay = replace(base, zero_stage=z)
        zf = 3 if z == 3 else 0  # DS-Chat rlhf_engine.py _init_ref; OpenRLHF get_ds_eval_config
        actor = model_states(psi, precision, lay, psi - dims.d_model)  # its value head idles
        critic = model_states(psi, precision, lay, psi - untied)  # its LM head idles
        frozen = w * psi / (d if zf == 3 else 1)
        # weights and AdamW state stay all iteration; gradients exist in their update only
        models = {
            "actor": actor.weights + actor.optimizer,
            "critic": critic.weights + critic.optimizer,
            "reference": frozen,
            "reward": frozen if reward else 0.0,
        }
        gathered = 0.0
        if z == 3:  # one block (plus prefetch) gathered while a frozen or sampling forward runs
            block = (psi - dims.vocab_size * dims.d_model) / dims.n_layers
            gathered = w * min(STAGE3_MAX_LIVE_ELEMENTS, STAGE3_PREFETCH_ELEMENTS + block, psi)
        actor_step = estimate_memory(actor_dims, lay, precision, kernels=kernels)
        critic_step = estimate_memory(critic_dims, lay, precision, kernels=kernels)
        phases = {
            "generate": kv + candidates * dims.vocab_size * 4 + gathered,
            "score": rollouts * tokens * dims.vocab_size * 4 + gathered,
            "actor update": max(0.0, actor_step.total - models["actor"]),
            "critic update": max(0.0, critic_step.total - models["critic"]),
        }
        stages.append(
            PPOStagePlan(
                zero_stage=z,
                frozen_zero_stage=zf,
                models=models,
                phases=phases,
                overhead_bytes=actor_step.overhead_bytes,
                capacity_bytes=capacity_bytes,
            )
        )
    return PPOPlan(
        prompt_len=tokens - new,
        new_tokens=new,
        rollouts_per_rank=rollouts,
        candidates_per_rank=candidates,
        reward="model" if reward else "rule",
        chosen_zero_stage=layout.zero_stage,
        stages=tuple(stages),
    )
