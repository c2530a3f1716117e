import pytest
from pydantic import ValidationError

from llmspec.spec.model import Spec, parse_bytes


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
