"""Tiny specs and the planned layouts the generated model.py tests render them for."""

from __future__ import annotations

from typing import NamedTuple

from llmspec.plan.types import Layout
from llmspec.spec.schema import Spec

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


class ModelPlan(NamedTuple):
    """What model.py is rendered for: `render_model_py(spec, *plan_for(spec, ...))`."""

    layout: Layout
    stage_layers: tuple[int, ...]


def plan_for(spec: Spec, *, blocks_per_stage: list[int] | None = None, **layout) -> ModelPlan:
    """The planner's layout and stage split for `spec` with the layout pinned to `layout`, on
    a CPU cluster of exactly data × tensor × pipeline processes. `blocks_per_stage` replaces
    the planner's stage split (to check that model.py honours any split it is given)."""
    from llmspec.plan import make_plan

    pins = dict(data=1, tensor=1, pipeline=1, micro_batch_size=2, activation_checkpointing="none")
    pins.update(layout)
    # sequence parallel only exists with tensor parallel (the planner rejects the pin otherwise)
    pins["sequence_parallel"] = str(pins["tensor"] > 1 and pins.get("sequence_parallel", False))
    world = pins["data"] * pins["tensor"] * pins["pipeline"]
    fields = spec.model_dump()
    fields["cluster"] = {"gpu": "cpu", "nodes": 1, "gpus_per_node": world}
    fields["train"]["global_batch_size"] = 2 * pins["micro_batch_size"] * pins["data"]
    plan = make_plan(Spec.model_validate(fields), pins={k: str(v) for k, v in pins.items()})
    for key, value in layout.items():
        if key == "sequence_parallel":
            value = value and pins["tensor"] > 1  # the planner drops it without tensor parallel
        assert getattr(plan.layout, key) == value, (key, plan.layout)
    stage_layers = plan.stage_layers
    if blocks_per_stage is not None:
        assert len(blocks_per_stage) == len(stage_layers)
        stage_layers = tuple(blocks_per_stage)
    return ModelPlan(plan.layout, stage_layers)
