"""Parallel modes of the generated model.py give the numbers of the single-process model.

Tensor parallel 2 (with and without sequence parallel) on 2 processes: same first-step loss,
same parameters and same gradients once the shards are gathered. Pipeline 2 through DeepSpeed's
PipelineModule: the same first-step loss as pipeline 1, with the plan's blocks on each stage.
"""

from __future__ import annotations

import json

import pytest
from model_harness.launch import torchrun
from model_harness.specs import plan_for, tiny_spec

from llmspec.codegen.model_code import render_model_py

SEQ = 16
TP_CASES = {
    # name: (family, model overrides, train overrides, sequence_parallel)
    "gpt": ("gpt", {"dropout": 0.0, "attention_dropout": 0.0}, {}, False),
    "gpt-sp-smoothing": (
        "gpt", {"dropout": 0.0, "attention_dropout": 0.0}, {"label_smoothing": 0.1}, True,
    ),
    "llama-gqa": ("llama", {}, {}, False),
    "llama-gqa-sp": ("llama", {}, {}, True),
    "bert-sp": ("bert", {"dropout": 0.0, "attention_dropout": 0.0}, {}, True),
}  # fmt: skip


def write(tmp_path, name: str, source: str) -> str:
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    return str(path)


@pytest.mark.slow
def test_tensor_parallel_matches_single_process(tmp_path):
    cases = []
    for name, (family, model, train, sequence_parallel) in TP_CASES.items():
        spec = tiny_spec(family, train={"seq_len": SEQ, **train}, **model)
        single = render_model_py(spec, plan_for(spec))
        parallel = render_model_py(
            spec, plan_for(spec, tensor=2, sequence_parallel=sequence_parallel)
        )
        assert ("_GatherSequence" in parallel) == sequence_parallel
        cases.append({
            "name": name, "vocab_size": spec.model.vocab_size, "seq_len": SEQ,
            "masked": spec.train.objective == "masked_lm",
            "single": write(tmp_path, f"single_{name}", single),
            "parallel": write(tmp_path, f"tp2_{name}", parallel),
        })  # fmt: skip
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    torchrun("tp_equivalence.py", str(tmp_path / "cases.json"), str(tmp_path / "out.json"))
    results = json.loads((tmp_path / "out.json").read_text())

    assert sorted(results) == sorted(TP_CASES)
    for name, r in results.items():
        assert r["loss_parallel"] == pytest.approx(r["loss_single"], rel=1e-5, abs=1e-6), name
        assert r["max_param_diff"] == 0.0, name  # the shards are slices of the same seeded init
        assert r["grad_scale"] > 0, name
        assert r["max_grad_diff"] <= 1e-5 * r["grad_scale"] + 1e-7, (name, r)
