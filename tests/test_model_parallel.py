"""Parallel modes of the generated model.py give the numbers of the single-process model.

Tensor parallel 2 (with and without sequence parallel) on 2 processes: same first-step loss,
same parameters and same gradients once the shards are gathered. Pipeline 2 through DeepSpeed's
PipelineModule: the same first-step loss as pipeline 1, with the plan's blocks and parameters on
each stage. ZeRO-3's model.py built inside deepspeed.zero.Init in bf16: ZeRO-0's weights rounded
once, buffers unchanged.
"""

from __future__ import annotations

import json

import pytest
from model_harness.launch import torchrun
from model_harness.specs import plan_for, tiny_spec

from llmspec.codegen.model_code import render_model_py
from llmspec.graph.dims import ModelDims
from llmspec.plan.memory import WEIGHT_BYTES, estimate_memory

SEQ = 16
NO_DROPOUT = {"dropout": 0.0, "attention_dropout": 0.0}
TP_CASES = {
    # name: (family, model overrides, train overrides, sequence_parallel, recompute)
    "gpt": ("gpt", NO_DROPOUT, {}, False, "none"),
    "gpt-sp-smoothing": ("gpt", NO_DROPOUT, {"label_smoothing": 0.1}, True, "none"),
    "gpt-sinusoidal-full": ("gpt", {**NO_DROPOUT, "position": "sinusoidal"}, {}, False, "full"),
    "llama-gqa": ("llama", {}, {}, False, "none"),
    "llama-gqa-sp-selective": ("llama", {}, {}, True, "selective"),
    "bert-sp-full": ("bert", NO_DROPOUT, {}, True, "full"),
}  # fmt: skip


def write(tmp_path, name: str, source: str) -> str:
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    return str(path)


@pytest.mark.slow
def test_tensor_parallel_matches_single_process(tmp_path):
    cases = []
    for name, (family, model, train, sequence_parallel, recompute) in TP_CASES.items():
        spec = tiny_spec(family, train={"seq_len": SEQ, **train}, **model)
        single = render_model_py(spec, *plan_for(spec))
        parallel = render_model_py(
            spec,
            *plan_for(
                spec,
                tensor=2,
                sequence_parallel=sequence_parallel,
                activation_checkpointing=recompute,
            ),
        )
        assert ("_GatherColumnParallel" in parallel) == sequence_parallel
        cases.append({
            "name": name, "vocab_size": spec.model.vocab_size, "seq_len": SEQ,
            "masked": spec.train.objective == "masked_lm",
            "single": write(tmp_path, f"single_{name}", single),
            "parallel": write(tmp_path, f"tp2_{name}", parallel),
        })  # fmt: skip
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    torchrun("tp_equivalence.py", str(tmp_path / "cases.json"), str(tmp_path / "out.json"))
    results = json.loads((tmp_path / "out.json").read_text())
    print(json.dumps(results, indent=1))  # the figures, with pytest -s

    assert sorted(results) == sorted(TP_CASES)
    for name, r in results.items():
        assert r["loss_parallel"] == pytest.approx(r["loss_single"], rel=1e-5, abs=1e-6), name
        assert r["max_param_diff"] == 0.0, name  # the shards are slices of the same seeded init
        assert r["grad_scale"] > 0, name
        assert r["max_grad_diff"] <= 1e-5 * r["grad_scale"] + 1e-7, (name, r)
        assert r["grad_norm_parallel"] == pytest.approx(r["grad_norm_single"], rel=1e-5), name


PP_CASES = {
    # name: (family, blocks per stage (4 blocks), tensor, sequence_parallel, recompute)
    "gpt-tied-full": ("gpt", [1, 3], 1, False, "full"),
    "llama-untied": ("llama", [3, 1], 1, False, "none"),
    "bert-tied-decoder-bias": ("bert", [2, 2], 1, False, "selective"),
}
PP_TP_CASES = {
    "gpt-tied-tp2": ("gpt", [1, 3], 2, False, "none"),
    "llama-tp2-sp-selective": ("llama", [3, 1], 2, True, "selective"),
}


def run_pipeline_cases(tmp_path, cases: dict, nproc: int) -> dict:
    listed = []
    for name, (family, stages, tensor, sequence_parallel, recompute) in cases.items():
        spec = tiny_spec(
            family, n_layers=4, dropout=0.0, attention_dropout=0.0, train={"seq_len": SEQ}
        )
        plan = plan_for(
            spec,
            pipeline=2,
            tensor=tensor,
            sequence_parallel=sequence_parallel,
            activation_checkpointing=recompute,
            blocks_per_stage=stages,
        )
        listed.append({
            "name": name, "vocab_size": spec.model.vocab_size, "seq_len": SEQ,
            "masked": spec.train.objective == "masked_lm", "sequence_parallel": sequence_parallel,
            "single": write(tmp_path, f"single_{name}", render_model_py(spec, *plan_for(spec))),
            "pipeline": write(tmp_path, f"pp2_{name}", render_model_py(spec, *plan)),
            "planned_stage_params": planned_stage_params(spec, plan),
        })  # fmt: skip
    (tmp_path / "cases.json").write_text(json.dumps(listed))
    torchrun(
        "pp_equivalence.py", str(tmp_path / "cases.json"), str(tmp_path / "out.json"), nproc=nproc
    )
    results = json.loads((tmp_path / "out.json").read_text())
    for case in listed:
        results[case["name"]]["planned_stage_params"] = case["planned_stage_params"]
    for name, r in results.items():  # the figures, with pytest -s
        print(name, "loss single", r["loss_single"], "pipeline", r["loss_pipeline"])
        print(name, "planned params per stage", r["planned_stage_params"])
        print(name, "built params per rank", [(k["stage"], k["built_params"]) for k in r["ranks"]])
    return results


def planned_stage_params(spec, plan) -> list[float]:
    """Parameters per pipeline stage, as the planner's memory model counts them
    (plan.memory.stages[*].params: weight bytes of one rank, unsharded below ZeRO-3)."""
    assert plan.layout.zero_stage < 3
    memory = estimate_memory(
        ModelDims.from_spec(spec),
        plan.layout,
        spec.train.precision,
        stage_layers=plan.stage_layers,
        kernels="cpu",
    )
    return [stage.params / WEIGHT_BYTES[spec.train.precision] for stage in memory.stages]


def check_pipeline_results(results: dict, cases: dict) -> None:
    assert sorted(results) == sorted(cases)
    for name, r in results.items():
        family, stages, *_ = cases[name]
        assert r["loss_pipeline"] == pytest.approx(r["loss_single"], rel=1e-5, abs=1e-6), name
        bounds = [0, stages[0], stages[0] + stages[1]]
        tied = ["tok_emb"] if family in ("gpt", "bert") else []
        for rank in r["ranks"]:
            stage = rank["stage"]
            assert rank["blocks"] == list(range(bounds[stage], bounds[stage + 1])), (name, rank)
            assert rank["tied"] == tied, (name, rank)
            # a stage builds only its own layers (LayerSpec): its share, as the planner counts it
            assert rank["built_params"] == rank["params"], (name, rank)
            assert rank["built_params"] == r["planned_stage_params"][stage], (name, rank)


@pytest.mark.slow
def test_pipeline_matches_single_process_with_planned_stages(tmp_path):
    check_pipeline_results(run_pipeline_cases(tmp_path, PP_CASES, nproc=2), PP_CASES)


@pytest.mark.slow
def test_pipeline_times_tensor_parallel_matches_single_process(tmp_path):
    check_pipeline_results(run_pipeline_cases(tmp_path, PP_TP_CASES, nproc=4), PP_TP_CASES)


ZERO3_CASES = {
    # name: (family, model overrides)
    "gpt-sinusoidal": ("gpt", {**NO_DROPOUT, "position": "sinusoidal", "max_seq_len": 600}),
    "llama-gqa": ("llama", {}),
    "bert": ("bert", NO_DROPOUT),
}


@pytest.mark.slow
def test_zero3_model_built_in_zero_init_is_the_zero0_model_rounded_once(tmp_path):
    """Inside deepspeed.zero.Init (bf16) torch's float constructors return bf16: model.py's
    ZeRO-3 init must still give ZeRO-0's weights rounded once, and an fp32 sinusoidal table
    (a bf16 arange would round positions above 256)."""
    cases = []
    for name, (family, model) in ZERO3_CASES.items():
        spec = tiny_spec(family, **model)
        zero3 = render_model_py(spec, *plan_for(spec, zero_stage=3))
        assert "torch.normal" in zero3  # the ZeRO-3 rendering, not the ZeRO-0 one
        cases.append({
            "name": name,
            "zero0": write(tmp_path, f"zero0_{name}", render_model_py(spec, *plan_for(spec))),
            "zero3": write(tmp_path, f"zero3_{name}", zero3),
        })  # fmt: skip
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    torchrun("zero_init_build.py", str(tmp_path / "cases.json"), str(tmp_path / "out.json"))
    results = json.loads((tmp_path / "out.json").read_text())
    print(json.dumps(results, indent=1))  # the figures, with pytest -s
    assert sorted(results) == sorted(ZERO3_CASES)
    for name, r in results.items():
        assert r["dtypes"] == ["torch.bfloat16"], (name, r)
        assert r["rounded_once"], (name, r)
        assert r["buffers_equal"], (name, r)
    assert results["gpt-sinusoidal"]["buffer_dtypes"] == ["torch.float32"]
