"""Integrity of benchmarks/published_runs.yaml, the validation set of published training runs.

Only the data is checked here (sources cited, fields present, numbers sane, coverage);
how well the planner predicts these runs is what benchmarks/published_runs.py reports,
deliberately not a test.
"""

from __future__ import annotations

import re
from numbers import Number
from pathlib import Path

import pytest
import yaml

GPUS = {"a100-40gb", "a100-80gb", "h100-sxm", "h200"}
FAMILIES = {"gpt", "llama"}
SHARDING = {
    None,
    "none",
    "zero1",
    "zero2",
    "zero3",
    "fsdp_full_shard",
    "fsdp_hybrid",
    "megatron_distopt",
}
RECOMPUTE = {None, "none", "selective", "full", "selective_layer"}
CONVENTIONS = {
    None,
    "narayanan_eq3",
    "korthikanti_eq7",
    "llmfoundry",
    "megatron_core",
    "torchtitan",
    "palm",
    "unstated",
}
PRIMARY = {"tflops_per_gpu", "mfu", "hfu", "tokens_per_s_per_gpu", "seconds_per_iteration"}
# A table, figure, section or named results table of the source document.
WHERE = re.compile(r"\b(table|fig(ure)?|sec(tion)?\.?|results|row|sections?)\b", re.IGNORECASE)


DATA = Path(__file__).resolve().parents[1] / "benchmarks" / "published_runs.yaml"


@pytest.fixture(scope="module")
def data():
    with open(DATA) as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="module")
def runs(data):
    return data["runs"]


def _numbers(mapping: dict, path: str = ""):
    for key, value in mapping.items():
        if isinstance(value, dict):
            yield from _numbers(value, f"{path}{key}.")
        elif isinstance(value, Number) and not isinstance(value, bool):
            yield f"{path}{key}", value


def test_at_least_forty_runs_with_unique_ids(runs):
    ids = [r["id"] for r in runs]
    assert len(ids) >= 40
    assert len(ids) == len(set(ids)), "duplicate run ids"
    for run_id in ids:
        assert re.fullmatch(r"[a-z0-9][a-z0-9.\-]*", run_id), run_id


def test_every_source_document_is_complete(data):
    for key, doc in data["sources"].items():
        for field in ("title", "authors", "org", "year", "url"):
            assert doc.get(field), f"source {key}: {field} missing"
        assert 2019 <= doc["year"] <= 2030, key
        assert doc["url"].startswith("https://"), key


def test_every_run_cites_a_source_table_or_figure(data, runs):
    for run in runs:
        src = run["source"]
        assert src["doc"] in data["sources"], f"{run['id']}: unknown source {src['doc']!r}"
        assert WHERE.search(src["where"]), (
            f"{run['id']}: no table/figure/section in {src['where']!r}"
        )
        assert src.get("read_via"), f"{run['id']}: say how the source was read"


def test_required_fields_present(runs):
    for run in runs:
        rid = run["id"]
        m, b, hw, lay = run["model"], run["batch"], run["hardware"], run["layout"]
        assert m["family"] in FAMILIES, rid
        for key in ("name", "params_b", "layers", "hidden", "seq_len"):
            assert m.get(key) is not None, f"{rid}: model.{key}"
        assert m.get("heads") or run.get("assumptions", {}).get("heads"), f"{rid}: heads"
        assert "global" in b and "micro" in b, rid
        assert hw["gpu"] in GPUS, f"{rid}: gpu {hw['gpu']!r}"
        assert hw["gpus"] and hw["gpus_per_node"], rid
        for key in ("tensor", "pipeline", "data", "context", "sharding", "zero_stage", "recompute"):
            assert key in lay, f"{rid}: layout.{key}"
        assert lay["sharding"] in SHARDING, f"{rid}: sharding {lay['sharding']!r}"
        assert lay["recompute"] in RECOMPUTE, f"{rid}: recompute {lay['recompute']!r}"
        assert lay["zero_stage"] in (None, 0, 1, 2, 3), rid
        assert run.get("precision"), rid
        assert run["measured"], f"{rid}: no measured figure"
        metric = run["metric"]
        assert metric["primary"] in PRIMARY, rid
        assert metric["primary"] in run["measured"], f"{rid}: primary metric not in measured"
        assert metric.get("flops_convention") in CONVENTIONS, rid


def test_unstated_facts_are_declared(runs):
    """A null layout / batch fact must be listed as unknown, never silently missing."""
    for run in runs:
        unknown = " ".join(str(u) for u in run.get("unknown") or [])
        for section, key, word in (
            ("batch", "global", "batch"),
            ("layout", "tensor", "tensor"),
            ("layout", "zero_stage", "zero"),
            ("layout", "recompute", "recompute"),
        ):
            if run[section].get(key) is None:
                assumed = run.get("assumptions", {}).get(key)
                assert (
                    word in unknown.lower()
                    or assumed is not None
                    or (key == "zero_stage" and run["layout"].get("sharding") is None)
                ), f"{run['id']}: {section}.{key} is null but not declared unknown"


def test_numbers_positive(runs):
    for run in runs:
        for section in ("model", "batch", "hardware", "layout", "measured"):
            for path, value in _numbers(run[section]):
                if path == "zero_stage":
                    assert value >= 0, f"{run['id']}: {section}.{path}"
                else:
                    assert value > 0, f"{run['id']}: {section}.{path} = {value}"


def test_layout_multiplies_to_the_gpu_count(runs):
    for run in runs:
        lay = run["layout"]
        degrees = [lay.get(k) for k in ("tensor", "pipeline", "data")]
        if None in degrees:
            continue
        product = degrees[0] * degrees[1] * degrees[2] * (lay.get("context") or 1)
        assert product == run["hardware"]["gpus"], f"{run['id']}: {product} != gpus"
        if run["batch"].get("global") and run["batch"].get("micro"):
            per_replica = run["batch"]["global"] / lay["data"]
            assert per_replica >= run["batch"]["micro"], run["id"]


def test_percentages_look_like_percent(runs):
    for run in runs:
        for key in ("mfu", "hfu", "percent_of_peak"):
            value = run["measured"].get(key)
            if value is not None:
                assert 1 < value < 100, f"{run['id']}: {key} = {value} (percent expected)"


def test_coverage(runs):
    gpus = {r["hardware"]["gpu"] for r in runs}
    assert {"h100-sxm", "h200"} <= gpus and gpus & {"a100-40gb", "a100-80gb"}
    assert {"a100-40gb", "a100-80gb"} <= gpus
    stages = {r["layout"]["zero_stage"] for r in runs}
    assert {0, 1, 3} <= stages
    assert any(r["layout"]["sharding"] == "fsdp_full_shard" for r in runs)
    assert any(r["layout"]["sharding"] == "zero3" for r in runs)
    assert any(
        (r["layout"]["pipeline"] or 1) > 1 and (r["layout"]["tensor"] or 1) > 1 for r in runs
    )
    precisions = {str(r["precision"]).lower() for r in runs}
    assert any("fp8" in p for p in precisions) and any("bf16" in p for p in precisions)
    sizes = [r["model"]["params_b"] for r in runs]
    assert min(sizes) <= 1.5 and max(sizes) >= 1000
