"""Property: whatever a spec is mutated into, loading returns a Spec or raises SpecError whose
problems are all located (file and line) — never any other exception."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmspec.errors import SpecError
from llmspec.spec.load import load_spec_text
from llmspec.spec.model import Spec

ROOT = Path(__file__).resolve().parents[1]
# Valid starting points: the self-contained example specs (extends would be relative to cwd).
SEEDS = [
    yaml.safe_load((ROOT / "specs" / name).read_text())
    for name in ("tiny-cpu.yaml", "gpt2-small.yaml", "llama2-7b.yaml", "bert-base.yaml")
]
TEXTS = [(ROOT / "specs" / name).read_text() for name in ("tiny-cpu.yaml", "bert-base.yaml")]


def _field_names(model) -> set[str]:
    names = set()
    for name, info in model.model_fields.items():
        names.add(name)
        for arg in [info.annotation, *getattr(info.annotation, "__args__", ())]:
            if isinstance(arg, type) and hasattr(arg, "model_fields"):
                names |= _field_names(arg)
            for inner in getattr(arg, "__args__", ()):
                if isinstance(inner, type) and hasattr(inner, "model_fields"):
                    names |= _field_names(inner)
    return names


KEYS = sorted(_field_names(Spec)) + ["n_layer", "", "extends", "preset", "<<"]

junk_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([0, 1, 2, 3, 7, 8, 16, 10**100, -1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["auto", "none", "cpu", "1GB", "bf16", "fp8", "${X", "${HOME}", "rope"]),
    st.sampled_from(["gpt", "bert", "masked_lm", "h100-sxm", "nope", "gpt2-small", "a b"]),
    st.text(max_size=12),
)
junk_values = st.recursive(
    junk_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(KEYS), inner, max_size=3),
    ),
    max_leaves=6,
)


def _paths(data, prefix=()):
    yield prefix
    if isinstance(data, dict):
        for k, v in data.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from _paths(v, (*prefix, i))


def _get(data, path):
    for part in path:
        data = data[part]
    return data


def _set(data, path, value):
    if not path:
        return value
    _get(data, path[:-1])[path[-1]] = value
    return data


@st.composite
def mutated_spec(draw):
    data = copy.deepcopy(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        paths = list(_paths(data))
        path = draw(st.sampled_from(paths))
        op = draw(st.sampled_from(["delete", "insert", "retype", "swap"]))
        parent = _get(data, path[:-1]) if path else None
        if op == "delete" and path and isinstance(parent, dict):
            del parent[path[-1]]
        elif op == "insert" and isinstance(_get(data, path), dict):
            _get(data, path)[draw(st.sampled_from(KEYS))] = draw(junk_values)
        elif op == "retype":
            data = _set(data, path, draw(junk_values))
        elif op == "swap" and path:
            other = draw(st.sampled_from(paths))
            if other and other[: len(path)] != path and path[: len(other)] != other:
                a, b = _get(data, path), _get(data, other)
                data = _set(data, path, copy.deepcopy(b))
                data = _set(data, other, copy.deepcopy(a))
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


@st.composite
def mangled_text(draw):
    text = draw(st.sampled_from(TEXTS))
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(text)))
        j = draw(st.integers(i, min(len(text), i + 20)))
        text = text[:i] + draw(st.text(max_size=6)) + text[j:]
    return text


def _assert_loads_or_located(text: str) -> None:
    try:
        spec = load_spec_text(text, "mutant.yaml", env={})
    except SpecError as exc:
        assert exc.problems
        for p in exc.problems:
            assert p.file == "mutant.yaml", p
            assert p.line is not None and p.line >= 1, p.format()
            assert p.message
    else:
        assert isinstance(spec, Spec)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_spec())
def test_mutated_specs_load_or_give_located_problems(text):
    _assert_loads_or_located(text)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mangled_text())
def test_mangled_text_loads_or_gives_located_problems(text):
    _assert_loads_or_located(text)
