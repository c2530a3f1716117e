"""Human views of a plan: why alternatives lost, the compact stage map, the dot export."""

from __future__ import annotations

import re
from dataclasses import replace

from llmspec.cli.plan_report import stage_map, to_dot
from llmspec.graph.dims import ModelDims
from llmspec.plan import devices, make_plan, search
from llmspec.plan.plan import why_rejected
from llmspec.plan.types import Layout
from llmspec.spec.hardware import CATALOG
from llmspec.spec.schema import Spec

GPT_1T = {
    "name": "gpt-1t",
    "model": {
        "vocab_size": 51200,
        "max_seq_len": 2048,
        "d_model": 25600,
        "n_layers": 128,
        "n_heads": 160,
    },
    "train": {"seq_len": 2048, "global_batch_size": 3072, "tokens": 4.5e11},
    "cluster": {"gpu": "a100-80gb", "nodes": 384, "gpus_per_node": 8},
}


def problem(spec: Spec) -> search.SearchProblem:
    return search.SearchProblem(
        dims=ModelDims.from_spec(spec),
        cluster=devices.Cluster.from_spec(spec.cluster),
        precision=spec.train.precision,
        global_batch=spec.train.global_batch_size,
    )


def test_reasons_name_the_cause():
    spec = Spec.model_validate(
        {
            "name": "mid",
            "model": {"d_model": 2048, "n_layers": 24, "n_heads": 16, "max_seq_len": 2048},
            "train": {"seq_len": 2048, "global_batch_size": 64},
        }
    )
    prob = problem(spec)
    flat = search.evaluate(prob, Layout(data=8, micro_batch_size=1, grad_accum_steps=8))
    piped = search.evaluate(
        prob, Layout(data=2, pipeline=4, micro_batch_size=1, grad_accum_steps=32)
    )
    assert flat.fits and piped.fits
    reason = why_rejected(piped, flat)
    assert re.match(r"\d+(\.\d)?% slower: bubble \d+% \(\(p−1\)/m = 3/32\)", reason), reason
    small = replace(
        prob,
        cluster=replace(prob.cluster, gpu=replace(CATALOG["a100-80gb"], memory_bytes=8 * 10**9)),
    )
    oom = search.evaluate(small, Layout(data=8, micro_batch_size=8, grad_accum_steps=1))
    assert not oom.fits
    assert re.fullmatch(r"OOM by \d+\.\d GiB on stage 0", why_rejected(oom, flat))


def test_long_pipelines_are_summarised():
    plan = make_plan(Spec.model_validate(GPT_1T), pins={"tensor": 8, "pipeline": 64}, top=2)
    text = stage_map(plan).plain
    lines = text.splitlines()
    assert len(lines) == 3  # first stage, the 62 alike middle stages, last stage
    assert "stages 1–62" in lines[1] and "(2 each)" in lines[1]
    assert "+ embedding" in lines[0] and "+ head" in lines[2]
    assert "GPUs 3024–3071 (nodes 378–383)" in lines[2]
    dot = to_dot(plan)
    assert dot.count("subgraph cluster_stage") == 64
    assert dot.count('[label="p2p"]') == 63


def test_small_clusters_draw_every_gpu_of_the_device_graph():
    spec = Spec.model_validate(
        {
            "name": "two-nodes",
            "model": {"n_layers": 4, "n_heads": 4, "d_model": 256, "max_seq_len": 256},
            "train": {"seq_len": 256, "global_batch_size": 16},
            "cluster": {"gpu": "h100-sxm", "nodes": 2, "gpus_per_node": 4},
        }
    )
    plan = make_plan(spec, pins={"tensor": 2, "pipeline": 2})
    dot = to_dot(plan)
    assert "subgraph cluster_node0" in dot and "subgraph cluster_node1" in dot
    assert dot.count('[shape=ellipse, label="GPU ') == 8
    assert "450 GB/s GPU links" in dot  # the catalog's NVLink figure for H100 SXM
    # Every GPU is wired to the stage it runs; stage 1 lives on node 1 (ranks 4-7).
    assert dot.count("[style=dashed, arrowhead=none]") == 8
    assert 'label="GPU 5\\ntp1 dp0 pp1"' in dot
