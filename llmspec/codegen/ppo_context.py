"""What `templates/train_ppo.py.j2` reads: `PpoContext` (objective ppo only).

The PPO loop (rollout → score → KL-penalised rewards → GAE → epochs of clipped updates)
takes its settings from `rlhf:` (TRL's names, POSTTRAINING-NOTES §3.3) and the layout;
every value is placed with its origin. Derived values are computed here: the prompt length
(a prompt is the first seq_len − max_new_tokens tokens of a training row), the rollout
batch, how many optimizer steps an epoch takes, and the ZeRO stage of the frozen models
(DeepSpeed-Chat `rlhf_engine.py` `_init_ref` / OpenRLHF `get_ds_eval_config`: 3 if the
trained models use 3, else 0).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from pathlib import Path

from llmspec.codegen.data_context import project_relative
from llmspec.errors import UserError
from llmspec.spec.posttrain import RlhfSpec

COUNT_RULE = "count:"


def frozen_zero_stage(trained_stage: int) -> int:
    """ZeRO stage of the reference and reward models (DS-Chat / OpenRLHF rule)."""
    return 3 if trained_stage == 3 else 0


@dataclass(frozen=True)
class Setting:
    """One line of train_ppo.py's settings block: `name = value  # origin`."""

    name: str
    value: object
    origin: str


@dataclass(frozen=True)
class PpoContext:
    enabled: bool
    settings: tuple[Setting, ...] = ()
    reward_token: str | None = None  # rlhf.reward_rule count:<token>
    reward_model: bool = False  # rlhf.reward_model: a frozen reward-head model scores
    best_of: int = 1
    blocklist: bool = False
    reward_floor: bool = False
    frozen_zero3: bool = False  # reference and reward are ZeRO-3 eval engines
    optimizer_steps: int = 0  # per engine over the run: the schedule's length

    @property
    def filters(self) -> bool:
        """A response can be rejected (blocklist or reward floor)."""
        return self.blocklist or self.reward_floor

    @property
    def rejects(self) -> bool:
        """Rollouts go through rejection sampling (best of n, or a filter)."""
        return self.best_of > 1 or self.filters


def ppo_context(spec, layout, *, spec_dir: Path, project_dir: Path) -> PpoContext:
    if spec.train.objective != "ppo":
        return PpoContext(enabled=False)
    rlhf = spec.rlhf or RlhfSpec()
    train, roll, ppo, safety = spec.train, rlhf.rollout, rlhf.ppo, rlhf.safety
    micro, accum = layout.micro_batch_size, layout.grad_accum_steps
    per_update = micro * accum
    rollout_batch = roll.batch_size or per_update
    if rollout_batch % per_update:
        raise UserError(
            f"rlhf.rollout.batch_size = {rollout_batch} prompts per rank is not a multiple of "
            f"the {per_update} sequences one optimizer step takes (micro_batch_size {micro} × "
            f"grad_accum_steps {accum}): set it to a multiple, or leave it null"
        )
    prompt_len = train.seq_len - roll.max_new_tokens
    zero = layout.zero_stage

    def rel(path: str) -> str:
        return posixpath.normpath(
            project_relative(path, spec_dir=spec_dir, project_dir=project_dir)
        )

    settings = [
        Setting("prompt_len", prompt_len, "spec: train.seq_len − rlhf.rollout.max_new_tokens"),
        Setting("max_new_tokens", roll.max_new_tokens, "spec: rlhf.rollout.max_new_tokens"),
        Setting("rollout_batch_size", rollout_batch, _rollout_origin(roll.batch_size)),
        Setting("temperature", roll.temperature, "spec: rlhf.rollout.temperature"),
        Setting("top_p", roll.top_p, "spec: rlhf.rollout.top_p"),
        Setting("top_k", roll.top_k, "spec: rlhf.rollout.top_k"),
        Setting("stop_at_eos", roll.stop_at_eos, "spec: rlhf.rollout.stop_at_eos"),
        Setting("kl_coef", rlhf.kl_coef, "spec: rlhf.kl_coef (β)"),
        Setting("kl_estimator", rlhf.kl_estimator, "spec: rlhf.kl_estimator"),
        Setting("ppo_epochs", ppo.epochs, "spec: rlhf.ppo.epochs"),
        Setting(
            "updates_per_epoch",
            rollout_batch // per_update,
            f"plan: {rollout_batch} rollouts / ({micro} per micro-batch × {accum} accumulated)",
        ),
        Setting("cliprange", ppo.clip_range, "spec: rlhf.ppo.clip_range"),
        Setting("cliprange_value", ppo.value_clip, "spec: rlhf.ppo.value_clip"),
        Setting("vf_coef", ppo.value_coef, "spec: rlhf.ppo.value_coef"),
        Setting("gamma", ppo.gamma, "spec: rlhf.ppo.gamma"),
        Setting("lam", ppo.lam, "spec: rlhf.ppo.lam"),
        Setting("whiten_advantages", ppo.whiten_advantages, "spec: rlhf.ppo.whiten_advantages"),
        Setting(
            "frozen_zero_stage",
            frozen_zero_stage(zero),
            f"plan: reference and reward at ZeRO {frozen_zero_stage(zero)} with the actor at "
            f"{zero} (DeepSpeed-Chat rlhf_engine.py: 3 only if the actor uses 3)",
        ),
    ]
    reward_token = None
    if rlhf.reward_model is not None:
        settings += [
            Setting(
                "reward_model_path",
                rel(rlhf.reward_model.path),
                "spec: rlhf.reward_model.path (relative to this folder)",
            ),
            Setting(
                "reward_model_tag",
                rlhf.reward_model.tag,
                "spec: rlhf.reward_model.tag (None: its latest)",
            ),
        ]
    else:
        reward_token = (rlhf.reward_rule or "")[len(COUNT_RULE) :]
        settings.append(
            Setting("reward_token", reward_token, "spec: rlhf.reward_rule (count:<token>)")
        )
    if safety.best_of > 1:
        settings.append(Setting("best_of", safety.best_of, "spec: rlhf.safety.best_of"))
    if safety.blocklist is not None:
        settings.append(
            Setting(
                "blocklist_path",
                rel(safety.blocklist),
                "spec: rlhf.safety.blocklist (relative to this folder)",
            )
        )
    if safety.reward_floor is not None:
        settings.append(
            Setting("reward_floor", safety.reward_floor, "spec: rlhf.safety.reward_floor")
        )
    return PpoContext(
        enabled=True,
        settings=tuple(settings),
        reward_token=reward_token,
        reward_model=rlhf.reward_model is not None,
        best_of=safety.best_of,
        blocklist=safety.blocklist is not None,
        reward_floor=safety.reward_floor is not None,
        frozen_zero3=frozen_zero_stage(zero) == 3,
        optimizer_steps=train.total_steps * ppo.epochs * (rollout_batch // per_update),
    )


def _rollout_origin(batch_size: int | None) -> str:
    if batch_size is not None:
        return "spec: rlhf.rollout.batch_size (prompts per rank)"
    return "plan: micro_batch_size × grad_accum_steps (prompts per rank)"
