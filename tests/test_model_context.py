"""The model context: model.py's derived values and named options, computed in Python, and
templates that only place them (split by option into the partials under templates/_model/)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import jinja2
import jinja2.meta
import pytest
from model_harness.specs import plan_for, tiny_spec

from llmspec.codegen.model_context import ModelContext, model_context
from llmspec.codegen.project import is_partial
from llmspec.codegen.render import environment, templates_dir
from llmspec.pipeline import build_project
from llmspec.rules.layout import padded_vocab

ROOT = Path(__file__).resolve().parents[1]
MODEL_TEMPLATES = ["model.py.j2"] + sorted(
    p.relative_to(templates_dir()).as_posix() for p in (templates_dir() / "_model").glob("*.j2")
)


def context(family="gpt", *, train=None, layout=None, **model) -> ModelContext:
    spec = tiny_spec(family, train=train, **model)
    return model_context(spec, *plan_for(spec, **(layout or {})))


@pytest.mark.parametrize(
    ("vocab", "tensor", "padded"), [(101, 1, 101), (101, 2, 102), (128, 2, 128), (50257, 8, 50264)]
)
def test_padded_vocabulary_is_the_next_multiple_of_tensor(vocab, tensor, padded):
    assert padded_vocab(vocab, tensor) == padded
    assert padded % tensor == 0 and padded - vocab < tensor


def test_context_reads_sizes_from_the_spec_and_the_layout_from_the_plan():
    ctx = context("llama", d_ff=None, layout={"tensor": 2, "sequence_parallel": True})
    assert (ctx.class_name, ctx.vocab_size, ctx.padded_vocab_size) == ("Llama", 101, 102)
    assert (ctx.d_model, ctx.n_heads, ctx.kv_heads, ctx.head_dim, ctx.d_ff) == (32, 4, 2, 8, 128)
    assert ctx.tensor_parallel and ctx.sequence_parallel and not ctx.pipeline_parallel
    assert ctx.distributed and ctx.grouped_query and ctx.uses_rope and ctx.causal
    assert (ctx.column_linear, ctx.row_linear) == ("ColumnParallelLinear", "RowParallelLinear")
    assert ctx.replicated("self.weight") == "replicated(self.weight)"
    single = context("llama")
    assert (single.column_linear, single.row_linear) == ("Linear", "Linear")
    assert single.replicated("self.weight") == "self.weight" and not single.distributed


def test_sequence_parallel_is_off_without_tensor_parallel():
    spec = tiny_spec("gpt")
    plan = plan_for(spec)
    ctx = model_context(spec, dataclasses.replace(plan.layout, sequence_parallel=True), ())
    assert not ctx.sequence_parallel and ctx.replicated("self.bias") == "self.bias"


def test_pipeline_stages_come_from_the_plan():
    ctx = context("gpt", n_layers=4, layout={"pipeline": 2})
    assert ctx.pipeline_parallel and sum(ctx.blocks_per_stage) == 4
    assert len(ctx.blocks_per_stage) == 2
    names = [c.name for c in ctx.layout_constants]
    assert names == ["PIPELINE_STAGES", "BLOCKS_PER_STAGE"]
    assert context("gpt").blocks_per_stage == () and context("gpt").layout_constants == ()


def test_named_options_of_each_family():
    gpt, llama, bert = context("gpt"), context("llama"), context("bert")
    # gpt: learned positions and dropout need the input encoding; pre-norm: a final norm
    assert gpt.input_encoding and gpt.output_head and gpt.final_norm and gpt.tied
    assert gpt.norm_bias and not gpt.decoder_bias and gpt.layers_before_blocks == 2
    # llama: RoPE, no dropout, pre-norm: nothing between the token embedding and block 0
    assert not llama.input_encoding and llama.layers_before_blocks == 1
    assert not llama.norm_bias and not llama.tied and llama.activation_function
    assert llama.norm_function == "F.rms_norm"
    # bert: post-norm, masked LM with a decoder bias; the head is only the MLM transform
    assert bert.post_norm and not bert.final_norm and bert.output_head and bert.decoder_bias
    assert bert.masked_lm and not bert.causal and bert.type_embedding
    assert bert.output_head_summary == "BERT's masked-LM transform: dense → GELU → norm"
    assert bert.input_encoding_parts == "learned positions, token types, norm, dropout"
    assert gpt.output_head_summary == "The final norm"


def test_residual_branch_wraps_dropout_inside_drop_path():
    assert context("gpt", dropout=0.0).residual_branch("b") == "b"
    assert context("gpt", dropout=0.1).residual_branch("b") == "self.dropout(b)"
    both = context("gpt", dropout=0.1, drop_path=0.1)
    assert both.residual_branch("b") == "self.drop_path(self.dropout(b))"


def test_an_option_brings_its_constant_only_when_on():
    plain = [c.name for c in context("gpt", dropout=0.0, attention_dropout=0.0).spec_constants]
    assert "DROPOUT" not in plain and "ATTENTION_DROPOUT" not in plain
    assert "MAX_SEQ_LEN" in plain and "ROPE_THETA" not in plain and "MASK_PROB" not in plain
    bert = context("bert", train={"label_smoothing": 0.1}, layout={"tensor": 2})
    names = [c.name for c in bert.spec_constants]
    assert names[:2] == ["VOCAB_SIZE", "PADDED_VOCAB_SIZE"] and names[-1] == "SEED"
    assert {"TYPE_VOCAB_SIZE", "LABEL_SMOOTHING", "MASK_PROB", "FIRST_ORDINARY_TOKEN"} <= set(names)
    assert [c.value for c in bert.layout_constants] == [2]


def test_the_context_is_frozen():
    ctx = context("gpt")
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctx.tensor = 2


@pytest.mark.parametrize("name", MODEL_TEMPLATES)
def test_model_templates_read_only_the_model_context(name):
    """No `{% set %}`, no arithmetic, no and/or in conditions: the rules live in ModelContext."""
    env = environment()
    source = env.loader.get_source(env, name)[0]
    variables = jinja2.meta.find_undeclared_variables(env.parse(source))
    assert variables <= {"model", "header"}, variables
    statements = re.findall(r"\{%-?\s*(.*?)\s*[-+]?%\}", source, re.S)
    for statement in statements:
        assert not statement.startswith(("set ", "macro ")), statement
        if statement.startswith(("if ", "elif ")):
            assert not re.search(r"\b(and|or)\b|[<>+*/%]|//", statement), statement
    for expression in re.findall(r"\{\{(.*?)\}\}", source, re.S):
        assert not re.search(r"\s[-+*/%]\s|//", expression), expression


def test_every_model_partial_is_used():
    env = environment()
    included = set()
    for name in MODEL_TEMPLATES:
        source = env.loader.get_source(env, name)[0]
        included |= set(re.findall(r'\{%\s*include\s+"([^"]+)"', source))
    assert included == set(MODEL_TEMPLATES) - {"model.py.j2"}


def test_partials_are_not_emitted(monkeypatch):
    assert is_partial("_model/attention.py.j2") and is_partial("_x.j2")
    assert is_partial("a/_b/c.py.j2") and not is_partial("model.py.j2")
    monkeypatch.chdir(ROOT)
    files = build_project("specs/tiny-cpu.yaml", "generated/tiny-cpu", check=True).files
    assert "model.py" in files
    assert not [rel for rel in files if any(part.startswith("_") for part in rel.split("/"))]
