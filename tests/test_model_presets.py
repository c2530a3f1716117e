"""The example specs' generated models have the sizes the planner counts and, for the
published architectures, the sizes their authors report."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from model_harness.specs import plan_for, tiny_spec
from torch._subclasses.fake_tensor import FakeTensorMode

from llmspec.codegen.model_code import load_model_module, render_model_py
from llmspec.plan import make_plan
from llmspec.spec.load import load_spec

SPECS = sorted((Path(__file__).resolve().parents[1] / "specs").glob("*.yaml"))
PUBLISHED = {
    "gpt2-small": 124_439_808,  # HF GPT2LMHeadModel("gpt2"), lm_head tied to wte
    "llama2-7b": 6_738_415_616,  # Touvron et al. 2023 (Llama 2), HF LlamaForCausalLM 7B
    "bert-base": 109_514_298,  # HF BertForMaskedLM("bert-base-uncased"), no pooler
}


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_generated_model_size_matches_the_plan(path):
    spec = load_spec(path)
    # Tensor 1: no vocabulary padding. Count the whole model in one process, without allocating it.
    plan = make_plan(spec, pins={"tensor": 1})
    layout = dataclasses.replace(plan.layout, pipeline=1)
    source = render_model_py(spec, layout, (spec.model.n_layers,))
    module = load_model_module(source, name=f"preset_{path.stem}")
    with FakeTensorMode():
        params = sum(p.numel() for p in module.build_model().parameters())
    assert params == plan.params.total
    if spec.name in PUBLISHED:
        assert params == PUBLISHED[spec.name]


@pytest.mark.parametrize("bias", [True, False])
def test_masked_lm_head_counts_its_decoder_bias_only_when_the_model_has_biases(bias):
    """The planner counts the generated bert exactly, biases on or off (it counted the
    decoder's vocab_size-long bias even with bias: false)."""
    spec = tiny_spec("bert", bias=bias)
    layout, stages = plan_for(spec)
    module = load_model_module(render_model_py(spec, layout, stages), name=f"bert_bias_{bias}")
    with FakeTensorMode():
        built = sum(p.numel() for p in module.build_model().parameters())
    assert built == make_plan(spec, pins={"tensor": 1}).params.total
