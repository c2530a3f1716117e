"""Cross-field checks of the post-training sections (contract 5): fine-tuning, sweeps, the
data engines and evaluation. A field this version parses but does not generate code for is
refused here, at load, with its position, so no build pretends to do what it cannot."""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterator

from pydantic import BaseModel

from llmspec.rules import layout as rules
from llmspec.spec.checks import Finding, check
from llmspec.spec.posttrain import EvalSpec, FinetuneSpec, RlhfSpec, SweepSpec
from llmspec.spec.schema import (
    RECORD_OBJECTIVES,
    DataSpec,
    ModelSpec,
    ParallelSpec,
    Spec,
    TrainSpec,
)
from llmspec.spec.source import dotted
from llmspec.spec.sweep_space import (
    MAX_VARIANTS,
    RUNTIME_PATHS,
    finite_count,
    structural_params,
    variant_count,
)

NOT_YET = "not-generated-yet"


@check
def finetune_method_is_generated(model: ModelSpec, finetune: FinetuneSpec) -> Iterator[Finding]:
    if finetune.method == "prefix" and model.arch == "bert":
        yield Finding(
            ("finetune", "method"),
            "finetune.method prefix is generated for causal models (gpt, llama) only: the "
            "prefixes ride on the key/value cache, which bidirectional attention has not",
            "use method lora or p_tuning for a bert model",
            code=NOT_YET,
            related=(("model", "arch"),),
        )


@check
def lora_targets_exist(model: ModelSpec, finetune: FinetuneSpec) -> Iterator[Finding]:
    if (
        finetune.method == "lora"
        and "gate" in finetune.lora.targets
        and model.activation != "swiglu"
    ):
        yield Finding(
            ("finetune", "lora", "targets"),
            f"finetune.lora.targets names gate, but model.activation = {model.activation} has no "
            "gate projection (only SwiGLU does)",
            "drop gate from the targets (up and down are this MLP's linears)",
            related=(("model", "activation"),),
        )


@check
def virtual_tokens_fit_the_context(
    model: ModelSpec, train: TrainSpec, finetune: FinetuneSpec
) -> Iterator[Finding]:
    """P-tuning prepends its virtual tokens, and prefix tuning's prefixes stand in front of
    the sequence: either way they take positions of the context (RoPE has no table to fill,
    so prefixes under RoPE do not count)."""
    if finetune.method == "p_tuning":
        tokens, field = finetune.p_tuning.tokens, "p_tuning"
    elif finetune.method == "prefix" and model.position != "rope":
        tokens, field = finetune.prefix.tokens, "prefix"
    else:
        return
    need = tokens + train.seq_len
    if need > model.max_seq_len:
        yield Finding(
            ("finetune", field, "tokens"),
            f"{tokens} virtual tokens + train.seq_len {train.seq_len} = {need} "
            f"positions, more than model.max_seq_len = {model.max_seq_len}",
            f"lower train.seq_len to {model.max_seq_len - tokens} or fewer virtual tokens",
            related=(("train", "seq_len"),),
        )


@check
def finetune_keeps_the_model_whole(
    finetune: FinetuneSpec, parallel: ParallelSpec
) -> Iterator[Finding]:
    """Base loading and LoRA are written for one model shard per rank (ZeRO any stage)."""
    for name in ("tensor", "pipeline"):
        value = getattr(parallel, name)
        if value != "auto" and value > 1:
            yield Finding(
                ("parallel", name),
                f"parallel.{name} = {value} with finetune: this version of llmspec fine-tunes "
                "with data parallelism and ZeRO only (the base is loaded unsplit)",
                f"set parallel.{name}: 1 and shard with parallel.zero_stage: 3 instead",
                code=NOT_YET,
                related=(("finetune",),),
            )


@check
def ops_recompute_needs_trained_base(
    finetune: FinetuneSpec, parallel: ParallelSpec
) -> Iterator[Finding]:
    why = rules.ops_recompute_needs_trained_base(
        parallel.activation_checkpointing, finetune.method != "full"
    )
    if why:
        yield Finding(
            ("parallel", "activation_checkpointing"),
            why,
            "use activation_checkpointing: full (or selective, none, auto) with "
            f"finetune.method {finetune.method}",
            code=NOT_YET,
            related=(("finetune", "method"),),
        )


@check
def sft_reads_records(train: TrainSpec, data: DataSpec) -> Iterator[Finding]:
    """SFT takes {prompt, response} JSON-lines records, reward and dpo {prompt, chosen,
    rejected}: one per sequence."""
    if train.objective not in RECORD_OBJECTIVES:
        return
    if data.packing:
        yield Finding(
            ("data", "packing"),
            f"objective {train.objective} trains one record per sequence, but data.packing "
            "is true: packed records would attend to each other",
            f"remove data.packing ({train.objective} defaults it to false)",
            related=(("train", "objective"),),
        )
    for i, source in enumerate(data.sources):
        if source.format == "text":
            yield Finding(
                ("data", "sources", i, "format"),
                f"objective {train.objective} reads JSON-lines records, but this source is "
                "plain text",
                "point the source at .jsonl files (format: jsonl or auto), with prompt_field and "
                "response_field naming the keys",
                related=(("train", "objective"),),
            )


def _leaf_kind(path: str) -> str | None:
    """ "int" | "float" | "other" for a dotted path naming a scalar field of the spec, else None.

    The path walks the pydantic models by field name or alias, from Spec down; an optional
    section (`X | None`) is walked as X."""
    model: type[BaseModel] | None = Spec
    annotation: object = None
    for part in path.split("."):
        if model is None:
            return None
        fields = {info.alias or name: info for name, info in model.model_fields.items()}
        fields.update(model.model_fields)
        if part not in fields:
            return None
        annotation = fields[part].annotation
        model = None
        for arg in (annotation, *typing.get_args(annotation)):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                model = arg
    if model is not None:
        return None  # a section, not a value
    args = [a for a in (annotation, *typing.get_args(annotation)) if a is not type(None)]
    if typing.get_origin(annotation) in (list, dict, tuple):
        return None
    if any(a is bool for a in args):
        return "other"
    if any(a is int for a in args) and not any(a is float for a in args):
        return "int"
    if any(a is float for a in args):
        return "float"
    if isinstance(annotation, types.UnionType) and not args:
        return None
    return "other"


@check
def sweep_params_name_fields(sweep: SweepSpec) -> Iterator[Finding]:
    for key, dist in sweep.params.items():
        kind = _leaf_kind(key)
        if kind is None:
            yield Finding(
                ("sweep", "params", key),
                f"{key} names no value of the spec",
                "write a dotted path to a scalar field, e.g. train.optimizer.lr",
            )
        elif (dist.log_uniform or dist.uniform) is not None and kind != "float":
            yield Finding(
                ("sweep", "params", key),
                f"{key} is not a real number, so it cannot be drawn from a continuous range",
                "use int: [low, high] or choice: [...]",
            )
        elif dist.integer is not None and kind not in ("int", "float"):
            yield Finding(
                ("sweep", "params", key),
                f"{key} is not a number",
                "use choice: [...]",
            )


@check
def sweep_structure_is_finite(sweep: SweepSpec) -> Iterator[Finding]:
    """A parameter that changes the plan or the generated model is planned and built per value
    at build time, so its values must be countable and their product small."""
    for key, dist in structural_params(sweep).items():
        if _leaf_kind(key) is not None and finite_count(dist) is None:
            yield Finding(
                ("sweep", "params", key),
                f"{key} changes the plan or the generated project, so every value is planned "
                "and built at build time: it cannot be drawn from a continuous range",
                "use choice: [...] (or int: [low, high]); continuous ranges are for "
                + ", ".join(RUNTIME_PATHS),
            )
    count = variant_count(sweep)
    if count is not None and count > MAX_VARIANTS:
        sizes = [str(finite_count(d)) for d in structural_params(sweep).values()]
        product = f"{' × '.join(sizes)} = {count}" if len(sizes) > 1 else str(count)
        yield Finding(
            ("sweep", "params"),
            f"the structural parameters make {product} variants, more than the "
            f"{MAX_VARIANTS} a build plans and writes (one project each)",
            "fewer values per structural parameter, or sweep them in separate specs",
        )


def logged_metrics(train: TrainSpec, evaluation: EvalSpec | None) -> list[str]:
    """The keys train.py writes to metrics.jsonl for this objective (templates/train.py.j2)."""
    keys = ["loss", "lr", "tokens_per_s", "val_loss"]
    if train.objective == "reward":
        return [*keys, "pairwise_accuracy"]
    if train.objective == "dpo":
        return [*keys, "reward_margin", "accuracy"]
    keys.append("val_perplexity")
    if (
        evaluation is not None
        and evaluation.during_training
        and "calibration" in evaluation.metrics
    ):
        keys.append("val_ece")
    return keys


@check
def sweep_metric_is_logged(
    sweep: SweepSpec, train: TrainSpec, eval: EvalSpec | None = None
) -> Iterator[Finding]:
    """sweep.py reads the metric from each trial's metrics.jsonl: a key train.py never writes
    would fail every trial after it trained."""
    keys = logged_metrics(train, eval)
    if sweep.metric not in keys:
        close = difflib.get_close_matches(sweep.metric, keys, n=1)
        yield Finding(
            ("sweep", "metric"),
            f"sweep.metric {sweep.metric} is not written to metrics.jsonl by a "
            f"{train.objective} run, which logs {', '.join(keys)}",
            f"did you mean {close[0]}?" if close else "use one of those keys",
            related=(("train", "objective"),),
        )


@check
def sweep_engine_is_generated(sweep: SweepSpec) -> Iterator[Finding]:
    if sweep.engine != "optuna":
        yield Finding(
            ("sweep", "engine"),
            f"sweep.engine {sweep.engine} is not generated by this version of llmspec: "
            "sweep.py drives trials with Optuna",
            "use sweep.engine: optuna",
            code=NOT_YET,
        )


@check
def data_weights_are_generated(data: DataSpec) -> Iterator[Finding]:
    for i, source in enumerate(data.sources):
        if source.weight != 1.0 and not data.packing:
            yield Finding(
                ("data", "sources", i, "weight"),
                "data.sources[].weight mixes the packed training stream; with data.packing "
                "false (one record per sequence) it is not generated by this version of llmspec",
                "remove the weights, or use data.packing: true",
                code=NOT_YET,
            )


@check
def preference_objectives_are_generated(model: ModelSpec, train: TrainSpec) -> Iterator[Finding]:
    """Reward models and DPO score responses after a prompt: causal models."""
    if train.objective in ("reward", "dpo") and model.arch == "bert":
        yield Finding(
            ("train", "objective"),
            f"objective {train.objective} is generated for causal models (gpt, llama) only",
            "use model.arch gpt or llama",
            related=(("model", "arch"),),
        )


@check
def dpo_reference_is_the_base(
    train: TrainSpec, finetune: FinetuneSpec | None = None
) -> Iterator[Finding]:
    """DPO's reference is the policy with its LoRA adapters off: no second copy of the model."""
    if train.objective == "dpo" and finetune is None:
        yield Finding(
            ("train", "objective"),
            "objective dpo needs a base to start from and to stay near (its reference)",
            "add finetune: {base: {path: ...}, method: lora}",
        )
    elif train.objective == "dpo" and finetune.method != "lora":
        yield Finding(
            ("finetune", "method"),
            f"objective dpo with finetune.method {finetune.method}: this version of llmspec "
            "generates DPO with LoRA only (the reference is the policy with its adapters off)",
            "use finetune.method lora",
            code=NOT_YET,
            related=(("train", "objective"),),
        )


@check
def reward_margin_is_generated(train: TrainSpec, rlhf: RlhfSpec) -> Iterator[Finding]:
    if train.objective == "reward" and rlhf.reward_margin:
        yield Finding(
            ("rlhf", "reward_margin"),
            "rlhf.reward_margin is not generated by this version of llmspec (no margin field is read)",
            "remove rlhf.reward_margin",
            code=NOT_YET,
        )


@check
def ppo_is_generated(
    model: ModelSpec, train: TrainSpec, finetune: FinetuneSpec | None = None
) -> Iterator[Finding]:
    """train_ppo.py starts the actor and the reference from a fully fine-tuned base."""
    if train.objective != "ppo":
        return
    if model.arch == "bert":
        yield Finding(
            ("train", "objective"),
            "objective ppo samples responses left to right: it needs a causal model",
            "use model.arch gpt or llama",
            related=(("model", "arch"),),
        )
    if finetune is None:
        yield Finding(
            ("train", "objective"),
            "objective ppo needs a base: the actor starts from it and the frozen reference is it",
            "add finetune: {base: {path: ...}, method: full}",
        )
    elif finetune.method != "full":
        yield Finding(
            ("finetune", "method"),
            f"objective ppo with finetune.method {finetune.method}: this version of llmspec "
            "generates PPO with full fine-tuning only (actor, critic and reference are full copies)",
            "use finetune.method full",
            code=NOT_YET,
            related=(("train", "objective"),),
        )


@check
def ppo_rollout_fits(train: TrainSpec, rlhf: RlhfSpec) -> Iterator[Finding]:
    """Prompts are the first seq_len − max_new_tokens tokens of each training row."""
    if train.objective != "ppo":
        return
    if rlhf.rollout.max_new_tokens >= train.seq_len:
        yield Finding(
            ("rlhf", "rollout", "max_new_tokens"),
            f"rlhf.rollout.max_new_tokens = {rlhf.rollout.max_new_tokens} leaves no prompt: "
            f"a prompt is the first train.seq_len − max_new_tokens tokens of a row "
            f"(train.seq_len = {train.seq_len})",
            f"set rlhf.rollout.max_new_tokens below {train.seq_len}",
            related=(("train", "seq_len"),),
        )
    if rlhf.reward_model is not None and rlhf.reward_model.format != "llmspec":
        yield Finding(
            ("rlhf", "reward_model", "format"),
            "rlhf.reward_model.format hf is not generated by this version of llmspec",
            "point rlhf.reward_model at an llmspec run trained with objective reward",
            code=NOT_YET,
        )
    if rlhf.safety.cost_model is not None:
        yield Finding(
            ("rlhf", "safety", "cost_model"),
            "rlhf.safety.cost_model (the Lagrangian constraint) is not generated by this "
            "version of llmspec",
            "remove it; best_of, blocklist and reward_floor are generated",
            code=NOT_YET,
        )


# metric -> (the eval field it reads, what that field holds)
EVAL_INPUTS = {
    "bleu": ("generation", 'eval.generation.path: JSON lines {"prompt", "reference"}'),
    "rouge": ("generation", 'eval.generation.path: JSON lines {"prompt", "reference"}'),
    "toxicity": ("generation", 'eval.generation.path: JSON lines {"prompt", "reference"}'),
    "bias": ("bias_pairs", 'eval.bias_pairs: JSON lines {"more", "less"}'),
}


@check
def eval_has_its_inputs(model: ModelSpec, eval: EvalSpec) -> Iterator[Finding]:
    """Each metric has the file it scores, each file a metric that reads it, and the model can
    be scored token by token (evaluate.py and generate.py need a causal model)."""
    if model.arch == "bert":
        yield Finding(
            ("eval",),
            "eval: needs a causal model (perplexity, generation and log-likelihoods read the "
            "next-token distribution); model.arch bert is masked",
            "remove the eval section, or evaluate a gpt or llama model",
            related=(("model", "arch"),),
        )
    metrics = set(eval.metrics)
    for metric in sorted(metrics & set(EVAL_INPUTS)):
        field, holds = EVAL_INPUTS[metric]
        if getattr(eval, field) is None:
            yield Finding(
                ("eval", "metrics"),
                f"eval.metrics names {metric} but eval.{field} is null: nothing to score",
                f"set {holds}",
            )
    if "toxicity" in metrics and eval.toxicity_blocklist is None:
        yield Finding(
            ("eval", "metrics"),
            "eval.metrics names toxicity but eval.toxicity_blocklist is null",
            "set eval.toxicity_blocklist to a word list, one word or phrase a line",
        )
    unused = [
        (("eval", "generation"), "bleu, rouge or toxicity", eval.generation is not None
         and not metrics & {"bleu", "rouge", "toxicity"}),
        (("eval", "bias_pairs"), "bias", eval.bias_pairs is not None and "bias" not in metrics),
        (("eval", "toxicity_blocklist"), "toxicity",
         eval.toxicity_blocklist is not None and "toxicity" not in metrics),
    ]  # fmt: skip
    for path, reader, is_unused in unused:
        if is_unused:
            yield Finding(
                path,
                f"{dotted(path)} is set but no metric reads it",
                f"add {reader} to eval.metrics, or remove {dotted(path)}",
            )
