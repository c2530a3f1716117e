import ast
from pathlib import Path

import pytest
from pydantic import ValidationError

from llmspec.spec.checks import BYTE_LEVEL_TOKENS, SPECIAL_TOKENS
from llmspec.spec.load import load_spec_text
from llmspec.spec.schema import MAX_BATCH, MAX_STEPS, MAX_WORLD, SEED_LIMIT, Spec, parse_bytes


def test_defaults_fill_every_section():
    spec = Spec()
    assert spec.model.kv_heads == spec.model.n_heads
    assert spec.model.ff_dim == 4 * spec.model.d_model
    assert spec.train.total_steps == 300000


def test_unknown_key_rejected():
    with pytest.raises(ValidationError) as exc:
        Spec.model_validate({"model": {"n_layer": 3}})
    assert exc.value.errors()[0]["type"] == "extra_forbidden"


@pytest.mark.parametrize("text,expected", [("1GB", 1024**3), ("16MB", 16 * 1024**2), (4096, 4096)])
def test_parse_bytes(text, expected):
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("bad", ["1XB", "-1GB", 0, "lots"])
def test_parse_bytes_rejects(bad):
    with pytest.raises(ValueError):
        parse_bytes(bad)


ROOT = Path(__file__).resolve().parents[1]


def test_defaults_agree_with_each_other():
    """A minimal spec is valid: defaults that depend on another field follow it."""
    spec = load_spec_text("model: {vocab_size: 1000}\n")
    assert spec.data.tokenizer.vocab_size == 1000  # follows model.vocab_size
    assert Spec().data.tokenizer.vocab_size == Spec().model.vocab_size
    short = load_spec_text("train: {steps: 100, optimizer: {lr: 1.0e-5}}\n").train
    assert (short.schedule.warmup_steps, short.schedule.min_lr) == (10, 1e-6)
    default = Spec().train.schedule
    assert (default.warmup_steps, default.min_lr) == (2000, 6e-5)
    given = load_spec_text("train: {schedule: {warmup_steps: 7, min_lr: 0.0}}\n").train.schedule
    assert (given.warmup_steps, given.min_lr) == (7, 0.0)


def test_seed_bound_keeps_the_generated_reseeding_in_range():
    """train.py reseeds torch with seed × 1_000_003 + step × replicas + rank (and BERT masks
    with micro-steps): with the largest seed, steps and batch the spec allows that stays a
    valid torch seed (< 2**64, here even < 2**63), and prepare_data.py packs it in 8 bytes."""
    train = (ROOT / "templates" / "train.py.j2").read_text()
    assert "torch.manual_seed(seed * 1_000_003 + step * dp_world + dp_rank)" in train
    assert "manual_seed(seed * 1_000_003 + micro_step * dp_world + dp_rank)" in train
    # the generated stage code, whichever partials it is assembled from
    prepare = (ROOT / "generated" / "tiny-cpu" / "data_stages.py").read_text()  # its settings
    assert 'SPLIT_SEED.to_bytes(8, "little")' in prepare
    # micro_step × replicas ≤ steps × global batch (each micro-step of a replica is ≥ 1 sequence)
    largest = (SEED_LIMIT - 1) * 1_000_003 + MAX_STEPS * MAX_BATCH + MAX_WORLD
    assert largest < 2**63
    assert SEED_LIMIT <= 2**32  # numpy.random.seed (legacy) takes no more


def test_special_token_count_matches_the_generated_data_preparation():
    prepare = (ROOT / "generated" / "tiny-cpu" / "data_stages.py").read_text()  # its settings
    (line,) = [x for x in prepare.splitlines() if x.startswith("SPECIAL_TOKENS = ")]
    assert len(ast.literal_eval(line.split("=", 1)[1].strip())) == SPECIAL_TOKENS
    assert BYTE_LEVEL_TOKENS == 256 + SPECIAL_TOKENS
