"""PPO (RLHF) per-GPU memory: one row per resident model and per phase.

Resident models after DeepSpeed-Chat ``dschat/rlhf_engine.py`` (frozen models use ZeRO-3
only when the trained one does) and OpenRLHF ``get_ds_eval_config``; model-state bytes per the ZeRO paper (Rajbhandari et al. 2020,
section 3: 2 + 2 + K bytes per parameter, K = 12 for mixed-precision Adam).
"""

from __future__ import annotations

from dataclasses import dataclass


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
