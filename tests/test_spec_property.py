"""Property: whatever a spec is mutated into, loading returns a Spec or raises SpecError whose
problems are all located (file and line) — never any other exception.

The hostile strategies cover the classes of issue 16: huge, tiny and odd numbers, odd strings
(control and format characters, emoji codes, markup, lone surrogates, 300 characters) in names,
keys and values, hostile `extends` paths, YAML 1.1 numbers; errors must print plainly and an
accepted spec must plan with arithmetic that adds up. The 10,000-spec run is
`python benchmarks/fuzz_specs.py` (it prints the counts); here a small sample keeps the default
suite fast.
"""

from __future__ import annotations

import copy
import importlib.util
import io
import json
import sys
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmspec.cli.output import print_error
from llmspec.errors import SpecError, UserError
from llmspec.plan import make_plan
from llmspec.spec.load import load_spec_text
from llmspec.spec.schema import Spec

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


# ----------------------------------------------------------------------------- hostile classes
huge_or_odd_numbers = st.one_of(
    st.integers(min_value=2**31, max_value=10**420),
    st.integers(min_value=-(10**420), max_value=-1),
    st.sampled_from([2**32, 2**63, 2**64, 10**9 + 1, 1e308, 1e-300, 1e-9, 1e300, -0.0]),
    st.floats(allow_nan=True, allow_infinity=True),
)
odd_strings = st.one_of(
    st.text(st.characters(codec=None), max_size=20),  # control, format, surrogates, emoji
    st.sampled_from([":fire:", ":100:", "[bold]x[/]", "\x1b[31mred", "a\u202eb", "x\x00y"]),
    st.text("a-z0", min_size=200, max_size=320),
)
hostile_paths = st.one_of(
    st.sampled_from(
        ["a" * 300 + ".yaml", "x\x00.yaml", "b\ud800.yaml", "/dev/zero", ".", "${NOPE}"]
    ),
    st.text(max_size=40),
)
hostile_scalars = st.one_of(huge_or_odd_numbers, odd_strings)
NUMERIC_FIELDS = sorted(
    name for name in _field_names(Spec) if name not in {"name", "extends", "preset", "path"}
)


@st.composite
def hostile_spec(draw):
    data = copy.deepcopy(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(data) if p]
        op = draw(st.sampled_from(["value", "value", "name", "key", "extends"]))
        if op == "value":
            data = _set(data, draw(st.sampled_from(paths)), draw(hostile_scalars))
        elif op == "name":
            data["name"] = draw(odd_strings)
        elif op == "key":
            parent = _get(data, draw(st.sampled_from([(), *paths])))
            if isinstance(parent, dict):
                parent[draw(odd_strings)] = draw(hostile_scalars)
        else:
            data["extends"] = draw(st.one_of(hostile_paths, st.lists(hostile_paths, max_size=2)))
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    if draw(st.booleans()):  # a YAML 1.1 number where a number was
        field = draw(st.sampled_from(NUMERIC_FIELDS))
        form = draw(st.sampled_from(["010", "1:30", "0b11", "1_000", "0o17"]))
        text = "\n".join(
            f"{line.split(':')[0]}: {form}" if line.strip().startswith(field + ":") else line
            for line in text.splitlines()
        )
    return text


def _printed(exc: SpecError) -> str:
    saved, sys.stderr = sys.stderr, io.StringIO()
    try:
        print_error(exc)
        return sys.stderr.getvalue()
    finally:
        sys.stderr = saved


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_spec())
def test_hostile_specs_give_located_problems_that_print_plainly(text):
    try:
        load_spec_text(text, "mutant.yaml", env={})
    except SpecError as exc:
        assert all(p.file == "mutant.yaml" and p.line for p in exc.problems), exc.problems
        printed = _printed(exc)
        assert all(c == "\n" or c.isprintable() for c in printed), ascii(printed)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_spec())
def test_accepted_specs_plan_and_their_arithmetic_adds_up(text):
    try:
        spec = load_spec_text(text, "mutant.yaml", env={})
    except SpecError:
        return
    try:
        plan = make_plan(spec).to_dict()
    except UserError as exc:  # the spec checks should have located what the planner refuses
        raise AssertionError(f"validated, then the planner refused it: {exc}") from None
    json.dumps(plan, allow_nan=False)  # every number finite
    lay = plan["layout"]
    assert lay["data"] * lay["tensor"] * lay["pipeline"] == spec.cluster.world_size
    assert lay["micro_batch_size"] * lay["grad_accum_steps"] * lay["data"] == (
        spec.train.global_batch_size
    )


def test_the_fuzz_benchmark_runs_clean_on_a_small_sample(capsys):
    path = ROOT / "benchmarks" / "fuzz_specs.py"
    module_spec = importlib.util.spec_from_file_location("fuzz_specs", path)
    fuzz = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(fuzz)
    assert fuzz.main(["-n", "120", "--seed", "16", "--timeout", "20"]) == 0
    out = capsys.readouterr().out
    for kind in ("traceback", "hang", "unlocated", "bad arithmetic", "plan refused"):
        assert f"  {kind:<15} {0:>6}" in out, out
