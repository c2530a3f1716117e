"""Tiny specs and contract-2 plan dicts for the generated model.py tests."""

from __future__ import annotations

from llmspec.spec.model import Spec

# Tiny widths of each family (litgpt-style reference checks: 2 layers, d 32).
FAMILIES = {
    "gpt": dict(arch="gpt", position="learned", norm="layernorm", norm_position="pre",
                activation="gelu", bias=True, tie_embeddings=True),
    "llama": dict(arch="llama", position="rope", norm="rmsnorm", norm_position="pre",
                  activation="swiglu", bias=False, tie_embeddings=False, n_kv_heads=2,
                  dropout=0.0, attention_dropout=0.0),
    "bert": dict(arch="bert", position="learned", norm="layernorm", norm_position="post",
                 activation="gelu", bias=True, tie_embeddings=True, type_vocab_size=2),
}  # fmt: skip


def tiny_spec(family: str = "gpt", *, train: dict | None = None, **model) -> Spec:
    fields = dict(vocab_size=101, max_seq_len=64, d_model=32, n_layers=2, n_heads=4, d_ff=64)
    fields.update(FAMILIES[family])
    fields.update(model)
    objective = "masked_lm" if family == "bert" else "causal_lm"
    train_fields = {"objective": objective, "seq_len": 16, "seed": 7}
    train_fields.update(train or {})
    return Spec.model_validate({"name": f"tiny-{family}", "model": fields, "train": train_fields})


def plan_for(spec: Spec, *, blocks_per_stage: list[int] | None = None, **layout) -> dict:
    """The slice of contract 2 that model.py reads: `layout`, and for pipelines the blocks of
    each stage (`memory.stages[*].layers`)."""
    fields = dict(
        data=1,
        tensor=1,
        pipeline=1,
        zero_stage=0,
        micro_batch_size=2,
        grad_accum_steps=1,
        activation_checkpointing="none",
        sequence_parallel=False,
        offload_optimizer="none",
        offload_params="none",
    )
    fields.update(layout)
    stages = blocks_per_stage or _even_split(spec.model.n_layers, fields["pipeline"])
    return {
        "layout": fields,
        "memory": {"stages": [{"stage": i, "layers": n} for i, n in enumerate(stages)]},
    }


def _even_split(n_layers: int, stages: int) -> list[int]:
    return [n_layers // stages + (1 if i < n_layers % stages else 0) for i in range(stages)]
