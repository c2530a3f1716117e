"""What `templates/generate.py.j2` and `templates/evaluate.py.j2` read: `EvalContext`.

generate.py (sampling with a key/value cache) is emitted when the spec has `eval:` or trains
with PPO (its rollouts); evaluate.py when the spec has `eval:`. Which metric brings which code
(and which optional library: sacrebleu, rouge-score, lm-eval) is decided here; spec paths are
rewritten relative to the project folder, and every string reaches the templates through the
`py` filter (a Python literal), never spliced raw.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from llmspec.codegen.model_context import generates
from llmspec.plan.types import Layout


@dataclass(frozen=True)
class Benchmark:
    """One lm-evaluation-harness task file, as evaluate.py reads it."""

    path: str  # relative to the project folder
    num_fewshot: int
    limit: int | None


@dataclass(frozen=True)
class EvalContext:
    generate: bool  # generate.py is emitted (eval: or objective ppo; causal, one process)
    evaluate: bool  # evaluate.py is emitted (eval:)
    context_len: int  # model.max_seq_len: positions generation may fill
    hf_loads: bool  # export.py can write (and so generate.py can read) a Hugging Face folder
    metrics: tuple[str, ...] = ()
    generation_path: str | None = None  # eval.generation.path, relative to the project
    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    stop: tuple[str, ...] = ()
    generation_limit: int | None = None
    benchmarks: tuple[Benchmark, ...] = ()
    bias_pairs: str | None = None
    toxicity_blocklist: str | None = None
    calibration_bins: int = 15
    during_training: bool = False
    eval_batches: int = 20  # train.eval_batches: validation micro-batches for perplexity
    micro_batch_size: int = 1  # plan: sequences per validation micro-batch
    data_parallel: int = 1  # plan: train.py's val_loss averages eval_batches on each replica
    packed: bool = True  # data.packing: validation batches are tensors, else (input_ids, labels)
    seed: int = 0  # train.seed: the sampling generator's seed

    def wants(self, metric: str) -> bool:
        return metric in self.metrics

    @property
    def needs_generations(self) -> bool:
        """BLEU, ROUGE and toxicity score generated text: evaluate.py generates from
        eval.generation.path only when one of them is asked for."""
        return self.generation_path is not None and any(
            m in self.metrics for m in ("bleu", "rouge", "toxicity")
        )

    @property
    def scores_validation(self) -> bool:
        """Perplexity and calibration read the validation split (one pass gives both)."""
        return any(m in self.metrics for m in ("perplexity", "calibration"))

    @property
    def calibrates_in_training(self) -> bool:
        """train.py logs val_ece at each eval_interval (eval.during_training; perplexity is
        logged there anyway)."""
        return self.evaluate and self.during_training and self.wants("calibration")

    @property
    def harness(self) -> bool:
        """Benchmarks run through lm-evaluation-harness (an optional requirement)."""
        return bool(self.benchmarks)


def _rel(path: str, spec_dir: Path, project_dir: Path) -> str:
    """A spec-relative path as seen from the project folder (POSIX separators)."""
    target = Path(path) if os.path.isabs(path) else spec_dir / path
    return Path(os.path.relpath(target.resolve(), project_dir.resolve())).as_posix()


def eval_context(
    spec, layout: Layout, *, spec_dir: Path, project_dir: Path, hf_loads: bool
) -> EvalContext:
    gen = generates(spec, layout)
    base = {"generate": gen, "context_len": spec.model.max_seq_len, "hf_loads": hf_loads}
    ev = spec.eval
    if ev is None or not gen:
        return EvalContext(evaluate=False, **base)
    g = ev.generation

    def rel(p):
        return None if p is None else _rel(p, spec_dir, project_dir)

    return EvalContext(
        evaluate=True,
        metrics=tuple(ev.metrics),
        generation_path=rel(g.path) if g else None,
        max_new_tokens=g.max_new_tokens if g else 64,
        temperature=g.temperature if g else 0.0,
        top_p=g.top_p if g else 1.0,
        top_k=g.top_k if g else 0,
        stop=tuple(g.stop) if g else (),
        generation_limit=g.limit if g else None,
        benchmarks=tuple(Benchmark(rel(b.path), b.num_fewshot, b.limit) for b in ev.benchmarks),
        bias_pairs=rel(ev.bias_pairs),
        toxicity_blocklist=rel(ev.toxicity_blocklist),
        calibration_bins=ev.calibration_bins,
        during_training=ev.during_training,
        eval_batches=spec.train.eval_batches,
        micro_batch_size=layout.micro_batch_size,
        data_parallel=layout.data,
        packed=spec.data.packing,
        seed=spec.train.seed,
        **base,
    )
