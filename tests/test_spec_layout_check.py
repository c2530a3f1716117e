"""The spec check that some layout splits the global batch uses the planner's own rule.

`checks.data_degrees` restates `plan.search.enumerate_groups`; if the two drift apart, a
spec either fails validation that the planner could plan, or validates and then fails to
plan without a location (issue 16: `nodes: 4096` with `global_batch_size: 480`).
"""

from __future__ import annotations

import itertools

import pytest

from llmspec.errors import SpecError, UserError
from llmspec.graph.dims import ModelDims
from llmspec.plan import make_plan, search
from llmspec.plan.devices import Cluster
from llmspec.plan.pins import normalize_pins, spec_pins
from llmspec.spec.checks import data_degrees
from llmspec.spec.load import load_spec_text
from llmspec.spec.resolve import resolve_text
from llmspec.spec.schema import Spec

GRID = list(
    itertools.product(
        [1, 3, 4],  # nodes
        [1, 6, 8],  # gpus_per_node
        [(12, 12), (16, 4)],  # n_heads, n_kv_heads
        [2, 5, 12],  # n_layers
        ["auto", 1, 2],  # tensor
        ["auto", 1, 3],  # pipeline
    )
)


def _spec(nodes, gpn, heads, layers, tensor, pipeline, gbs):
    n_heads, n_kv = heads
    return load_spec_text(
        f"model: {{d_model: {n_heads * 16}, n_heads: {n_heads}, n_kv_heads: {n_kv}, "
        f"n_layers: {layers}, vocab_size: 512}}\n"
        f"train: {{global_batch_size: {gbs}, seq_len: 64}}\n"
        f"parallel: {{tensor: {tensor}, pipeline: {pipeline}}}\n"
        f"cluster: {{gpu: a100-80gb, nodes: {nodes}, gpus_per_node: {gpn}}}\n"
    )


@pytest.mark.parametrize("nodes,gpn,heads,layers,tensor,pipeline", GRID)
def test_data_degrees_are_those_the_planner_enumerates(nodes, gpn, heads, layers, tensor, pipeline):
    world = nodes * gpn
    try:  # a global batch every degree divides, so only the structure decides
        spec = _spec(nodes, gpn, heads, layers, tensor, pipeline, gbs=world)
    except SpecError:
        return  # fixed degrees the structural checks already reject
    problem = search.SearchProblem(
        dims=ModelDims.from_spec(spec),
        cluster=Cluster.from_spec(spec.cluster),
        precision="bf16",
        global_batch=world,
        pins=tuple(sorted(normalize_pins(spec_pins(spec)).items())),
    )
    planner = sorted({d for d, _, _ in search.enumerate_groups(problem)})
    assert data_degrees(spec.model, spec.parallel, spec.cluster) == planner


@pytest.mark.parametrize("nodes,gbs", [(4096, 480), (3, 7), (2, 3)])
def test_the_check_and_the_planner_agree_on_whether_a_layout_exists(nodes, gbs):
    text = (
        "model: {preset: tiny-gpt}\ntrain: {seq_len: 64, global_batch_size: %d}\n"
        "cluster: {gpu: a100-80gb, nodes: %d, gpus_per_node: 8}\n"
    )
    with pytest.raises(SpecError) as exc:
        load_spec_text(text % (gbs, nodes))
    assert [p.field for p in exc.value.problems] == ["train.global_batch_size"]
    unchecked = Spec.model_validate(resolve_text(text % (gbs, nodes)).located.data)
    with pytest.raises(UserError, match="no parallel layout"):  # the planner alone agrees
        make_plan(unchecked)
    plan = make_plan(load_spec_text(text % (8 * nodes, nodes)))  # a batch that splits: plans
    assert plan.layout.data * plan.layout.tensor * plan.layout.pipeline == 8 * nodes
