"""Cross-field checks: what a user would otherwise discover as a crash on the cluster.

Each check takes the validated sections it needs by name (`model`, `data`,
`train`, `parallel`, `cluster`) and yields `Finding`s: the field to point
at, the arithmetic that fails, and the fix. A check runs only when all its
sections validated, so one broken section does not hide the others' problems.
`parallel` fields set to `auto` are the planner's to choose and are checked
there; here only fixed values are.
"""

from __future__ import annotations

import difflib
import inspect
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from llmspec.errors import Problem
from llmspec.rules import layout as rules
from llmspec.rules.layout import divisors
from llmspec.spec.hardware import CATALOG, get_gpu
from llmspec.spec.interpolate import InterpolationError, check_syntax
from llmspec.spec.posttrain import RlhfSpec
from llmspec.spec.schema import (
    MAX_STEPS,
    MAX_WORLD,
    ClusterSpec,
    DataSpec,
    ModelSpec,
    ParallelSpec,
    TrainSpec,
)
from llmspec.spec.source import Pos, bad_path_reason, dotted

MAX_LISTED = 1024  # never enumerate more candidates than this (specs may hold huge numbers)
# prepare_data.py adds these to every tokenizer it trains: <pad>, <eos>, <unk>, <mask>
SPECIAL_TOKENS = 4
BYTE_LEVEL_TOKENS = 256 + SPECIAL_TOKENS  # byte-level BPE starts from every byte value


@dataclass(frozen=True)
class Finding:
    path: tuple  # the field the problem is reported on
    message: str
    hint: str = ""
    code: str = "cross-field"
    related: tuple[tuple, ...] = ()  # other fields involved: pointed at when `path` is a default


CHECKS: list[Callable[..., Iterator[Finding]]] = []


def check(fn: Callable[..., Iterator[Finding]]) -> Callable[..., Iterator[Finding]]:
    CHECKS.append(fn)
    return fn


def run_checks(
    sections: dict[str, object],
    where: Callable[[tuple, tuple[tuple, ...]], Pos],
    invalid: frozenset[tuple[str, str]] = frozenset(),
) -> list[Problem]:
    """Every finding of every check whose sections are present in `sections`.

    `where(path, related)` locates a finding: the file position of `path`, or
    of a related field when `path` only has its default. `invalid` names the
    (section, field) pairs whose values were invalid and stand at their
    defaults here: a check that read one of them is discarded, so a reported
    problem never rests on a value the user did not write."""
    problems = []
    for fn in CHECKS:
        wanted = inspect.signature(fn).parameters
        # a section the check declares optional (`= None`) may be absent; the others must be there
        optional = {n for n, p in wanted.items() if p.default is None}
        if any(sections.get(name) is None for name in wanted if name not in optional):
            continue
        if any((name, "") in invalid for name in optional):
            continue  # written, but invalid: absent here, and the check would say it is missing
        read: set[tuple[str, str]] = set()
        args = {
            name: None if sections.get(name) is None else _Recorder(sections[name], name, read)
            for name in wanted
        }
        findings = list(fn(**args))
        if read & invalid:
            continue
        for f in findings:
            pos = where(f.path, f.related)
            problems.append(
                Problem(
                    f.message,
                    field=dotted(f.path),
                    file=pos.file,
                    line=pos.line,
                    col=pos.col,
                    hint=f.hint,
                    code=f.code,
                )
            )
    return problems


class _Recorder:
    """A section that records which fields a check reads (properties are followed through)."""

    def __init__(self, section, name: str, read: set):
        self._section, self._name, self._read = section, name, read

    def __getattr__(self, attr: str):
        prop = getattr(type(self._section), attr, None)
        if isinstance(prop, property):
            return prop.fget(self)  # so `kv_heads` records `n_kv_heads` and `n_heads`
        self._read.add((self._name, attr))
        return getattr(self._section, attr)


def _near(values: list[int], target: int, k: int = 4) -> str:
    picked = sorted(sorted(values, key=lambda v: (abs(v - target), v))[:k])
    return ", ".join(map(str, picked))


def _fixed(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# ----------------------------------------------------------------------------- model shape
@check
def heads_divide_width(model: ModelSpec) -> Iterator[Finding]:
    if model.d_model % model.n_heads:
        yield Finding(
            ("model", "n_heads"),
            f"model.d_model = {model.d_model} is not divisible by model.n_heads = "
            f"{model.n_heads} ({model.d_model} / {model.n_heads} = "
            f"{model.d_model / model.n_heads:.4g})",
            f"n_heads values that divide d_model: {_near(divisors(model.d_model, MAX_LISTED), model.n_heads)}",
            related=(("model", "d_model"),),
        )


@check
def kv_heads_divide_heads(model: ModelSpec) -> Iterator[Finding]:
    kv = model.kv_heads
    if model.n_heads % kv:
        yield Finding(
            ("model", "n_kv_heads"),
            f"model.n_kv_heads = {kv} does not divide model.n_heads = {model.n_heads}: "
            "each key/value head serves a whole group of query heads",
            f"valid values: {_near(divisors(model.n_heads, MAX_LISTED), kv, k=6)}",
            related=(("model", "n_heads"),),
        )


@check
def rope_needs_even_head_dim(model: ModelSpec) -> Iterator[Finding]:
    if model.position == "rope" and model.d_model % model.n_heads == 0 and model.head_dim % 2:
        yield Finding(
            ("model", "position"),
            f"rope rotates pairs of channels, but head_dim = d_model / n_heads = "
            f"{model.d_model} / {model.n_heads} = {model.head_dim} is odd",
            "choose d_model and n_heads with an even quotient, or position: learned",
            related=(("model", "d_model"), ("model", "n_heads")),
        )


@check
def seq_len_fits_model(model: ModelSpec, train: TrainSpec) -> Iterator[Finding]:
    if train.seq_len > model.max_seq_len:
        yield Finding(
            ("train", "seq_len"),
            f"train.seq_len = {train.seq_len} exceeds model.max_seq_len = {model.max_seq_len}",
            f"set train.seq_len <= {model.max_seq_len}, or raise model.max_seq_len",
            related=(("model", "max_seq_len"),),
        )


@check
def objective_matches_arch(model: ModelSpec, train: TrainSpec) -> Iterator[Finding]:
    if train.objective == "masked_lm" and model.arch != "bert":
        yield Finding(
            ("train", "objective"),
            f"masked_lm trains a bidirectional encoder, but model.arch = {model.arch} is causal",
            "use model.arch: bert (e.g. preset: bert-base), or objective: causal_lm",
            related=(("model", "arch"),),
        )
    if train.objective in ("causal_lm", "sft") and model.arch == "bert":
        yield Finding(
            ("train", "objective"),
            "model.arch = bert attends in both directions, so next-token prediction would "
            "see the answer",
            "use train.objective: masked_lm, or model.arch: gpt / llama",
            related=(("model", "arch"),),
        )


# Objectives whose loss functions exist (templates/rlhf.py.j2, tested against TRL) but whose
# training loop is not generated yet: refused at load, so no build pretends to run them.
NOT_GENERATED_YET: tuple[str, ...] = ()


@check
def objective_is_generated(train: TrainSpec) -> Iterator[Finding]:
    if train.objective in NOT_GENERATED_YET:
        yield Finding(
            ("train", "objective"),
            f"objective {train.objective} is not generated by this version of llmspec: its "
            "losses exist, its training loop does not yet",
            "use objective causal_lm, masked_lm, sft, reward or dpo for now",
        )


@check
def ppo_has_a_reward(train: TrainSpec, rlhf: RlhfSpec) -> Iterator[Finding]:
    """PPO needs a score for each rollout: a trained reward model or a programmatic rule."""
    rule = rlhf.reward_rule
    if rule is not None and not (rule.startswith("count:") and rule[len("count:") :]):
        yield Finding(
            ("rlhf", "reward_rule"),
            f"rlhf.reward_rule = {rule!r} is not a rule train_ppo.py knows",
            "write count:<token> (the reward is the number of times <token> occurs in the "
            "response), or set rlhf.reward_model instead",
        )
    if train.objective == "ppo" and rlhf.reward_model is None and rule is None:
        yield Finding(
            ("train", "objective"),
            "objective ppo has nothing to score rollouts with: rlhf.reward_model and "
            "rlhf.reward_rule are both null",
            "set rlhf.reward_model to a model trained with objective reward, or "
            "rlhf.reward_rule: count:<token>",
            related=(("rlhf",),),
        )


@check
def tokenizer_fits_embedding(model: ModelSpec, data: DataSpec) -> Iterator[Finding]:
    tok = data.tokenizer
    if tok.path is not None:  # a given tokenizer.json: its size is known when data is prepared
        return
    given = tok.vocab_size is not None and "vocab_size" in tok.model_fields_set
    size = tok.vocab_size if given else model.vocab_size
    if given and size > model.vocab_size:
        yield Finding(
            ("data", "tokenizer", "vocab_size"),
            f"data.tokenizer.vocab_size = {size} exceeds model.vocab_size = "
            f"{model.vocab_size}: token ids would index past the embedding",
            f"set data.tokenizer.vocab_size <= {model.vocab_size}, or raise model.vocab_size",
            related=(("model", "vocab_size"),),
        )
    least, why = (
        (BYTE_LEVEL_TOKENS, "a byte-level bpe has a token for each of the 256 byte values")
        if tok.kind == "bpe"
        else (SPECIAL_TOKENS + 1, f"a {tok.kind} tokenizer needs room for text")
    )
    if size >= least:
        return
    why += f" besides its {SPECIAL_TOKENS} special tokens (<pad>, <eos>, <unk>, <mask>)"
    if given:
        yield Finding(
            ("data", "tokenizer", "vocab_size"),
            f"data.tokenizer.vocab_size = {size} is too small: {why}, so at least {least}",
            f"set data.tokenizer.vocab_size >= {least} (and model.vocab_size at least as large)",
        )
    else:
        yield Finding(
            ("model", "vocab_size"),
            f"model.vocab_size = {size} is too small for the {tok.kind} tokenizer, whose size "
            f"follows it (data.tokenizer.vocab_size is not set): {why}, so at least {least}",
            f"set model.vocab_size >= {least}",
        )


@check
def data_path_syntax(data: DataSpec) -> Iterator[Finding]:
    paths = [(("data", "sources", i, "path"), s.path) for i, s in enumerate(data.sources)]
    paths += [
        (("data", "tokenizer", "path"), data.tokenizer.path),
        (("data", "filters", "blocklist"), data.filters.blocklist),
    ]
    for path, text in paths:
        if text is None:
            continue
        why = bad_path_reason(text)
        if why is not None:  # no file has such a name: the path could never match
            yield Finding(
                path, why, "write the path of a file or a glob, e.g. corpus/*.txt", "path"
            )
            continue
        try:
            check_syntax(text)
        except InterpolationError as exc:
            yield Finding(path, str(exc), exc.hint, "env")


# ----------------------------------------------------------------------------- schedule
@check
def run_length_is_bounded(train: TrainSpec) -> Iterator[Finding]:
    if train.tokens is not None and train.total_steps > MAX_STEPS:
        yield Finding(
            ("train", "tokens"),
            f"train.tokens = {train.tokens:g} makes {train.total_steps} steps of "
            f"global_batch_size × seq_len = {train.global_batch_size} × {train.seq_len} tokens, "
            f"more than {MAX_STEPS}",
            "lower train.tokens, or raise global_batch_size or seq_len",
            related=(("train", "global_batch_size"), ("train", "seq_len")),
        )


@check
def warmup_fits_run(train: TrainSpec) -> Iterator[Finding]:
    warmup, steps = train.schedule.warmup_steps, train.total_steps
    if warmup is not None and warmup > steps:
        source = "train.steps" if train.steps is not None else "derived from train.tokens"
        if train.steps is None and train.tokens is None:
            source = "the default"
        yield Finding(
            ("train", "schedule", "warmup_steps"),
            f"train.schedule.warmup_steps = {warmup} exceeds the run's {steps} steps ({source}): "
            "the learning rate would never reach optimizer.lr",
            f"set train.schedule.warmup_steps <= {steps} (e.g. {steps // 10}), or train longer",
            related=(("train", "steps"), ("train", "tokens")),
        )


@check
def min_lr_below_lr(train: TrainSpec) -> Iterator[Finding]:
    lr, min_lr = train.optimizer.lr, train.schedule.min_lr
    if train.schedule.name != "constant" and min_lr is not None and min_lr > lr:
        yield Finding(
            ("train", "schedule", "min_lr"),
            f"train.schedule.min_lr = {min_lr:g} exceeds train.optimizer.lr = {lr:g}: the "
            f"{train.schedule.name} schedule decays from lr down to min_lr",
            f"set train.schedule.min_lr <= {lr:g} (e.g. {lr / 10:g}), or leave it out (lr / 10)",
            related=(("train", "optimizer", "lr"),),
        )


# ----------------------------------------------------------------------------- hardware
@check
def gpu_is_known(cluster: ClusterSpec) -> Iterator[Finding]:
    name = cluster.gpu_name
    if name not in CATALOG:
        path = ("cluster", "gpu") if isinstance(cluster.gpu, str) else ("cluster", "gpu", "name")
        close = difflib.get_close_matches(name, CATALOG, n=1, cutoff=0.5)
        hint = (f"did you mean {close[0]!r}? " if close else "") + "catalog: " + ", ".join(CATALOG)
        yield Finding(path, f"unknown GPU {name!r}", hint, "unknown-gpu")


@check
def fp8_needs_fp8_hardware(train: TrainSpec, cluster: ClusterSpec) -> Iterator[Finding]:
    if train.precision != "fp8" or cluster.gpu_name not in CATALOG:
        return
    gpu = get_gpu(cluster.gpu)
    if not gpu.has_fp8:
        with_fp8 = ", ".join(n for n, g in CATALOG.items() if g.has_fp8)
        yield Finding(
            ("train", "precision"),
            f"fp8 needs FP8 tensor cores, and {gpu.name} has none",
            f"use precision: bf16, or a GPU with FP8 ({with_fp8})",
            related=(("cluster", "gpu"),),
        )


@check
def fp8_gemm_shapes(
    train: TrainSpec, model: ModelSpec, parallel: ParallelSpec
) -> Iterator[Finding]:
    if train.precision != "fp8":
        return
    tp = _fixed(parallel.tensor) or 1
    if model.n_heads % tp or model.kv_heads % tp or model.ff_dim % tp:
        return  # tensor_parallel_fits says so
    hd = model.head_dim
    why = rules.fp8_gemm_shapes(
        tp, model.d_model, model.n_heads * hd, model.kv_heads * hd, model.ff_dim, train.seq_len
    )
    if why:
        field = ("train", "seq_len") if "seq_len" in why else ("train", "precision")
        yield Finding(
            field,
            why,
            "use model widths and a train.seq_len that are multiples of 16 (per tensor-parallel "
            "rank), or precision: bf16",
            related=(("train", "precision"),) if field[1] == "seq_len" else (),
        )


# ----------------------------------------------------------------------------- parallel layout
@check
def tensor_parallel_fits(
    model: ModelSpec, parallel: ParallelSpec, cluster: ClusterSpec
) -> Iterator[Finding]:
    tp = _fixed(parallel.tensor)
    if tp is None:
        return
    valid = rules.valid_tensor_degrees(
        model.n_heads, model.kv_heads, model.ff_dim, cluster.gpus_per_node
    )
    valid_text = ", ".join(map(str, valid))
    split = rules.tensor_divides_model(tp, model.n_heads, model.kv_heads, model.ff_dim)
    if split:
        yield Finding(
            ("parallel", "tensor"),
            f"{split} — valid values: {valid_text}",
            "each tensor-parallel rank holds an equal share of the heads and the MLP",
        )
        return
    node = rules.tensor_fits_node(tp, cluster.gpus_per_node)
    if node:
        yield Finding(("parallel", "tensor"), node, f"valid values: {valid_text}")


@check
def pipeline_fits_layers(model: ModelSpec, parallel: ParallelSpec) -> Iterator[Finding]:
    pp = _fixed(parallel.pipeline)
    why = rules.pipeline_fits_layers(pp, model.n_layers) if pp is not None else None
    if why:
        yield Finding(
            ("parallel", "pipeline"),
            why,
            f"set parallel.pipeline between 1 and {model.n_layers}, or auto",
            related=(("model", "n_layers"),),
        )


@check
def degrees_fill_cluster(parallel: ParallelSpec, cluster: ClusterSpec) -> Iterator[Finding]:
    world = cluster.world_size
    gpus = f"cluster.nodes × gpus_per_node = {cluster.nodes} × {cluster.gpus_per_node} = {world}"
    fixed = {
        n: _fixed(getattr(parallel, n))
        for n in ("data", "tensor", "pipeline")
        if _fixed(getattr(parallel, n)) is not None
    }
    if not fixed:
        return
    product = math.prod(fixed.values())
    names = " × ".join(fixed)
    values = " × ".join(map(str, fixed.values()))
    first = ("parallel", next(iter(fixed)))
    if len(fixed) == 3 and product != world:
        rest = fixed["tensor"] * fixed["pipeline"]
        hint = (
            f"set parallel.data = {world // rest}, or auto"
            if world % rest == 0
            else "leave some degrees auto and let the planner choose"
        )
        yield Finding(
            ("parallel", "data"),
            f"parallel.{names} = {values} = {product} ≠ {gpus}",
            hint,
        )
    elif len(fixed) < 3 and world % product:
        yield Finding(
            first,
            f"parallel.{names} = {values}{f' = {product}' if len(fixed) > 1 else ''} "
            f"does not divide the GPUs: {gpus}",
            "every degree multiplies to the number of GPUs; choose divisors of it, or auto",
        )


@check
def batch_arithmetic(
    train: TrainSpec, parallel: ParallelSpec, cluster: ClusterSpec
) -> Iterator[Finding]:
    micro = _fixed(train.micro_batch_size)
    data = _fixed(parallel.data)
    tp, pp = _fixed(parallel.tensor), _fixed(parallel.pipeline)
    why = ""
    if data is None and tp is not None and pp is not None and cluster.world_size % (tp * pp) == 0:
        data = cluster.world_size // (tp * pp)  # the only data degree left
        why = f" (data = GPUs / (tensor × pipeline) = {cluster.world_size} / ({tp} × {pp}))"
    unit, terms = 1, []
    if micro is not None:
        unit *= micro
        terms.append(f"micro_batch_size = {micro}")
    if data is not None:
        unit *= data
        terms.append(f"data = {data}{why}")
    gbs = train.global_batch_size
    if not terms or gbs % unit == 0:
        return
    lower, upper = gbs // unit * unit, (gbs // unit + 1) * unit
    nearest = " or ".join(str(v) for v in (lower, upper) if v > 0)
    yield Finding(
        ("train", "global_batch_size"),
        f"train.global_batch_size = {gbs} is not a multiple of {' × '.join(terms)}"
        + (f" = {unit}" if len(terms) > 1 else "")
        + " (global = micro × accumulation steps × data)",
        f"nearest valid: {nearest}",
        related=(("train", "micro_batch_size"), ("parallel", "data")),
    )


@check
def cluster_size_is_bounded(cluster: ClusterSpec) -> Iterator[Finding]:
    if cluster.world_size > MAX_WORLD:
        yield Finding(
            ("cluster", "nodes"),
            f"cluster.nodes × gpus_per_node = {cluster.nodes} × {cluster.gpus_per_node} = "
            f"{cluster.world_size} GPUs, more than the {MAX_WORLD} llmspec plans for",
            "the largest training clusters have about 100000 GPUs; lower cluster.nodes",
            related=(("cluster", "gpus_per_node"),),
        )


def data_degrees(model: ModelSpec, parallel: ParallelSpec, cluster: ClusterSpec) -> list[int]:
    """Every data-parallel degree the planner can choose (the same rule its search uses)."""
    triples = rules.degree_triples(
        cluster.world_size,
        cluster.gpus_per_node,
        model.n_heads,
        model.kv_heads,
        model.ff_dim,
        model.n_layers,
        tensor=_fixed(parallel.tensor),
        pipeline=_fixed(parallel.pipeline),
    )
    return sorted({d for d, _, _ in triples})


@check
def some_layout_splits_the_batch(
    model: ModelSpec, train: TrainSpec, parallel: ParallelSpec, cluster: ClusterSpec
) -> Iterator[Finding]:
    world = cluster.world_size
    fixed_data = _fixed(parallel.data) is not None
    both_fixed = _fixed(parallel.tensor) is not None and _fixed(parallel.pipeline) is not None
    if world > MAX_WORLD or fixed_data or both_fixed:  # batch_arithmetic checks those
        return
    degrees = data_degrees(model, parallel, cluster)
    if not degrees:  # no layout at all: tensor_parallel_fits / pipeline_fits_layers say why
        return
    gbs, micro = train.global_batch_size, _fixed(train.micro_batch_size)
    units = sorted({d * (micro or 1) for d in degrees})
    if any(gbs % unit == 0 for unit in units):
        return
    need = (
        "divide it" if micro is None else f"divide it into multiples of micro_batch_size = {micro}"
    )
    shown = ", ".join(map(str, degrees[:6])) + (", ..." if len(degrees) > 6 else "")
    above = min(-(-gbs // u) * u for u in units)
    below = max((gbs // u * u for u in units), default=0)
    nearest = " or ".join(str(v) for v in (below, above) if v > 0)
    yield Finding(
        ("train", "global_batch_size"),
        f"train.global_batch_size = {gbs} cannot be split over the data-parallel replicas of "
        f"any layout of the {world} GPUs (cluster.nodes × gpus_per_node = {cluster.nodes} × "
        f"{cluster.gpus_per_node}): data = GPUs / (tensor × pipeline) is one of {shown}, "
        f"and must {need}",
        f"nearest valid global_batch_size: {nearest}; or use fewer GPUs (cluster.nodes)",
        related=(("cluster", "nodes"), ("cluster", "gpus_per_node")),
    )


@check
def offload_needs_zero(parallel: ParallelSpec) -> Iterator[Finding]:
    stage = _fixed(parallel.zero_stage)
    if stage is None:
        return
    why = rules.offload_params_needs_zero3(parallel.offload_params, stage)
    if why:
        yield Finding(
            ("parallel", "offload_params"),
            why,
            "set parallel.zero_stage: 3 (or auto), or offload_params: none",
            related=(("parallel", "zero_stage"),),
        )
    why = rules.offload_optimizer_needs_zero(parallel.offload_optimizer, stage)
    if why:
        yield Finding(
            ("parallel", "offload_optimizer"),
            why,
            "set parallel.zero_stage: 2 (or auto), or offload_optimizer: none",
            related=(("parallel", "zero_stage"),),
        )


@check
def sequence_parallel_needs_tensor(parallel: ParallelSpec) -> Iterator[Finding]:
    tp = _fixed(parallel.tensor)
    why = (
        rules.sequence_parallel_needs_tensor(True, tp)
        if parallel.sequence_parallel is True and tp is not None
        else None
    )
    if why:
        yield Finding(
            ("parallel", "sequence_parallel"),
            why,
            "set parallel.tensor > 1 (or auto), or sequence_parallel: false",
            related=(("parallel", "tensor"),),
        )


@check
def ops_recompute_needs_one_tensor_rank(parallel: ParallelSpec) -> Iterator[Finding]:
    tp = _fixed(parallel.tensor)
    why = (
        rules.ops_recompute_needs_one_tensor_rank(parallel.activation_checkpointing, tp)
        if tp is not None
        else None
    )
    if why:
        yield Finding(
            ("parallel", "activation_checkpointing"),
            why,
            "use activation_checkpointing: selective or full with tensor parallel, or tensor: 1",
            related=(("parallel", "tensor"),),
        )


@check
def sequence_parallel_divides_seq_len(
    parallel: ParallelSpec, train: TrainSpec
) -> Iterator[Finding]:
    tp = _fixed(parallel.tensor)
    if parallel.sequence_parallel is True and tp is not None:
        why = rules.sequence_parallel_divides_seq_len(True, tp, train.seq_len)
        if why:
            yield Finding(
                ("train", "seq_len"),
                why,
                f"choose a train.seq_len divisible by {tp}, or sequence_parallel: false",
                related=(("parallel", "sequence_parallel"), ("parallel", "tensor")),
            )


@check
def pipeline_allows_zero_stage(parallel: ParallelSpec) -> Iterator[Finding]:
    stage, pp = _fixed(parallel.zero_stage), _fixed(parallel.pipeline)
    why = rules.pipeline_allows_zero_stage(pp, stage) if None not in (stage, pp) else None
    if why:
        yield Finding(
            ("parallel", "zero_stage"),
            why,
            "set parallel.zero_stage: 1 (or auto), or parallel.pipeline: 1",
            related=(("parallel", "pipeline"),),
        )
