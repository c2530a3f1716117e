"""Contract 2: `make_plan(spec).to_dict()` — keys, consistency, determinism."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from llmspec.graph.dims import ModelDims
from llmspec.graph.layers import count_params
from llmspec.plan import make_plan
from llmspec.plan.flops import model_flops_per_token
from llmspec.plan.search import SIMPLER_WITHIN
from llmspec.spec.hardware import CATALOG
from llmspec.spec.load import load_spec

CONTRACT = {
    "top": {
        "llmspec_version",
        "name",
        "params",
        "flops_per_token",
        "layout",
        "memory",
        "performance",
        "alternatives",
    },
    "params": {"total", "trainable", "embedding", "per_layer", "frozen"},
    "layout": {
        "data",
        "tensor",
        "pipeline",
        "zero_stage",
        "micro_batch_size",
        "grad_accum_steps",
        "activation_checkpointing",
        "sequence_parallel",
        "offload_optimizer",
        "offload_params",
    },
    "memory": {"per_gpu_bytes", "capacity_bytes", "fits", "stages"},
    "per_gpu_bytes": {"params", "grads", "optimizer", "activations", "temporary", "total"},
    "stage": {
        "stage",
        "layers",
        "params",
        "grads",
        "optimizer",
        "activations",
        "temporary",
        "total",
    },
    "performance": {"step_time_s", "tokens_per_s", "tflops_per_gpu", "mfu", "time_to_train_s"},
    "alternative": {"layout", "memory_total_bytes", "fits", "step_time_s", "rejected_because"},
}


ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gpt2_plan():
    return make_plan(load_spec(ROOT / "specs" / "gpt2-small.yaml"))


def test_contract_2_keys(gpt2_plan):
    d = gpt2_plan.to_dict()
    assert CONTRACT["top"] <= set(d)
    assert set(d["params"]) == CONTRACT["params"]
    assert set(d["layout"]) == CONTRACT["layout"]
    assert CONTRACT["memory"] <= set(d["memory"])
    assert set(d["memory"]["per_gpu_bytes"]) == CONTRACT["per_gpu_bytes"]
    assert len(d["memory"]["stages"]) == d["layout"]["pipeline"]
    for stage in d["memory"]["stages"]:
        assert CONTRACT["stage"] <= set(stage)
    assert CONTRACT["performance"] <= set(d["performance"])
    assert d["alternatives"], "GPT-2 small on 8 GPUs has other layouts"
    for alt in d["alternatives"]:
        assert CONTRACT["alternative"] <= set(alt)
        assert set(alt["layout"]) == CONTRACT["layout"]
        assert alt["rejected_because"]


def test_performance_carries_its_uncertainty(gpt2_plan):
    u = gpt2_plan.to_dict()["performance"]["uncertainty"]
    assert {"band", "regime", "validated", "note"} <= set(u)
    assert u["band"] > 0 and isinstance(u["validated"], bool) and u["regime"] in u["note"]
    assert any(line.startswith("prediction band ±") for line in gpt2_plan.explanation)


def test_figures_are_consistent(gpt2_plan, root):
    spec = load_spec(root / "specs" / "gpt2-small.yaml")
    d = gpt2_plan.to_dict()
    dims = ModelDims.from_spec(spec)
    assert d["params"] == count_params(dims, tensor=d["layout"]["tensor"]).to_dict()
    assert d["flops_per_token"] == pytest.approx(model_flops_per_token(dims))
    lay, perf, mem = d["layout"], d["performance"], d["memory"]
    assert lay["data"] * lay["tensor"] * lay["pipeline"] == spec.cluster.world_size
    assert lay["data"] * lay["micro_batch_size"] * lay["grad_accum_steps"] == 480
    tokens = spec.train.global_batch_size * spec.train.seq_len
    assert perf["tokens_per_s"] == pytest.approx(tokens / perf["step_time_s"], rel=1e-5)
    assert perf["mfu"] == pytest.approx(perf["tflops_per_gpu"] / 312.0, abs=1e-4)
    assert perf["time_to_train_s"] == pytest.approx(600000 * perf["step_time_s"], rel=1e-5)
    assert mem["fits"] is True
    assert mem["per_gpu_bytes"]["total"] == max(s["total"] for s in mem["stages"])
    assert sum(s["layers"] for s in mem["stages"]) == 12
    assert mem["capacity_bytes"] == CATALOG["a100-80gb"].memory_bytes == 85_100_068_864
    for alt in d["alternatives"]:  # the chosen layout is the fastest that fits, up to
        if alt["fits"]:  # the band in which the simpler layout wins, or the faster layout's
            # own prediction band when its regime is not validated ...
            why = alt["rejected_because"]
            band = re.search(r"less than its ±(\d+)% band: .*not validated", why)
            slack = (1 + int(band.group(1)) / 100) if band else 1.0
            assert alt["step_time_s"] * (1 + SIMPLER_WITHIN) * slack >= perf["step_time_s"]
            if alt["step_time_s"] < perf["step_time_s"]:
                assert band or "margin where the simpler layout wins" in why
        else:  # ... and layouts that do not fit are listed only when clearly faster
            assert alt["step_time_s"] < 0.99 * perf["step_time_s"]
            assert alt["rejected_because"].startswith("OOM by")


def test_json_is_deterministic(root):
    spec = load_spec(root / "specs" / "gpt3-175b.yaml")
    first = json.dumps(make_plan(spec).to_dict())
    second = json.dumps(make_plan(spec).to_dict())
    assert first == second


def test_tiny_cpu_spec_is_planned_as_pinned(root):
    spec = load_spec(root / "specs" / "tiny-cpu.yaml")
    d = make_plan(spec).to_dict()
    assert d["layout"] == {
        "data": 2,
        "tensor": 1,
        "pipeline": 1,
        "zero_stage": 0,
        "micro_batch_size": 8,
        "grad_accum_steps": 1,
        "activation_checkpointing": "none",
        "sequence_parallel": False,
        "offload_optimizer": "none",
        "offload_params": "none",
    }
    assert d["memory"]["fits"] is True
    assert all(v > 0 for v in d["performance"].values() if isinstance(v, float))
    assert d["stage_map"][0]["ranks"] == [0, 1]
