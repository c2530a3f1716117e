"""Per-stage memory of a real 4-stage DeepSpeed PipelineEngine run (CPU, gloo) vs the plan."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from llmspec.graph.dims import ModelDims
from llmspec.plan.memory import (
    estimate_memory,
    even_stage_layers,
    model_states,
    pipeline_engine_buffers,
)
from llmspec.plan.types import Layout
from llmspec.spec.schema import Spec

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_pipeline_stage_memory_matches_deepspeed():
    # scripts/setup.sh installs deepspeed and its launcher: a missing one is a broken set-up,
    # not a reason to pass without measuring
    assert shutil.which("deepspeed"), "the deepspeed launcher is not on PATH: run scripts/setup.sh"
    spec = Spec.model_validate(
        {
            "name": "pipeline-states",
            "model": {"vocab_size": 4096, "max_seq_len": 256, "d_model": 256, "n_layers": 4,
                      "n_heads": 4, "d_ff": 1024, "dropout": 0.0, "attention_dropout": 0.0},
            "train": {"seq_len": 256, "precision": "bf16"},
        }
    )  # fmt: skip
    stages, micro_batches, micro_batch = 4, 4, 2
    dims = ModelDims.from_spec(spec)
    layers = even_stage_layers(dims.n_layers, stages)
    env = dict(os.environ, DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    worker = ROOT / "benchmarks" / "pipeline_states_worker.py"
    fields = json.dumps(spec.model_dump(mode="json", exclude={"data"}))
    args = [fields, ",".join(map(str, layers)), "0", str(micro_batches), str(micro_batch)]
    out = subprocess.run(
        ["deepspeed", "--num_gpus", str(stages), str(worker), *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=850,
    )  # fmt: skip
    rows = [
        json.loads(x.split(" ", 1)[1]) for x in out.stdout.splitlines() if "PIPELINE_STATES " in x
    ]
    assert len(rows) == 1, out.stdout[-3000:] + out.stderr[-3000:]
    ranks = sorted(rows[0]["ranks"], key=lambda r: r["stage"])
    layout = Layout(pipeline=stages, micro_batch_size=micro_batch, grad_accum_steps=micro_batches)
    plan = estimate_memory(dims, layout, "bf16", kernels="cpu", stage_layers=layers)
    for rank, stage in zip(ranks, plan.stages, strict=True):
        n = stage.params / 2  # bf16 weights, all of the stage's (ZeRO-0)
        assert rank["params_local"] == n
        st = model_states(n, "bf16", layout)
        kept, _ = pipeline_engine_buffers(
            dims,
            layout,
            2,
            micro_batch * 256,
            first=stage.stage == 0,
            last=stage.stage == stages - 1,
        )
        at_step = st.weights + st.optimizer + st.grads_step + st.persistent_buffer + kept
        measured = rank["in_step"]["total"]
        assert abs(at_step - measured) / measured < 0.03, (stage.stage, at_step, measured)
        assert abs(stage.total - rank["peak"]) / rank["peak"] < 0.03, (
            stage.stage,
            stage.total,
            rank["peak"],
        )


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_pipeline_zero1_data_parallel_memory_matches_deepspeed():
    # pipeline 2 × data 2 × ZeRO-1 (the Megatron-DeepSpeed set-up), bf16: the stage's states at
    # the step (grads_in_partition beside the fp32 partition gradient), and at the peak (the
    # boundary's reduce) exactly two reduce buckets (the PipelineEngine's reduce_gradients adds
    # one) while every gradient is still whole
    assert shutil.which("deepspeed"), "the deepspeed launcher is not on PATH: run scripts/setup.sh"
    spec = Spec.model_validate(
        {
            "name": "pipeline-zero1",
            "model": {"vocab_size": 4096, "max_seq_len": 256, "d_model": 256, "n_layers": 4,
                      "n_heads": 4, "d_ff": 1024, "dropout": 0.0, "attention_dropout": 0.0},
            "train": {"seq_len": 256, "precision": "bf16"},
        }
    )  # fmt: skip
    stages, data, micro_batches, micro_batch = 2, 2, 4, 2
    dims = ModelDims.from_spec(spec)
    layers = even_stage_layers(dims.n_layers, stages)
    env = dict(os.environ, DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    worker = ROOT / "benchmarks" / "pipeline_states_worker.py"
    fields = json.dumps(spec.model_dump(mode="json", exclude={"data"}))
    args = [fields, ",".join(map(str, layers)), "1", str(micro_batches), str(micro_batch)]
    out = subprocess.run(
        ["deepspeed", "--num_gpus", str(stages * data), str(worker), *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=550,
    )  # fmt: skip
    rows = [
        json.loads(x.split(" ", 1)[1]) for x in out.stdout.splitlines() if "PIPELINE_STATES " in x
    ]
    assert len(rows) == 1, out.stdout[-3000:] + out.stderr[-3000:]
    layout = Layout(
        pipeline=stages, data=data, zero_stage=1, micro_batch_size=micro_batch,
        grad_accum_steps=micro_batches,
    )  # fmt: skip
    plan = estimate_memory(dims, layout, "bf16", kernels="cpu", stage_layers=layers)
    assert len(rows[0]["ranks"]) == stages * data
    for rank in rows[0]["ranks"]:
        stage = plan.stages[rank["stage"]]
        n = stage.params / 2  # bf16 weights, all of the stage's (ZeRO-1)
        assert rank["params_local"] == n
        st = model_states(n, "bf16", layout)
        kept, _ = pipeline_engine_buffers(
            dims, layout, 2, micro_batch * 256, first=stage.stage == 0,
            last=stage.stage == stages - 1,
        )  # fmt: skip
        at_step = st.weights + st.optimizer + st.grads_step + st.persistent_buffer + kept
        measured = rank["in_step"]["total"]
        assert abs(at_step - measured) / measured < 0.03, (stage.stage, at_step, measured)
        assert rank["peak_buckets"] == st.reduce_buffer == 2 * 2 * 500_000_000
        # The peak without the buckets is not asserted: on stage 0 it is 27.20 MB (the plan) in
        # some runs and 29.97 MB in others of the same command (CI, 2026-12-03), a ~2.8 MB storage
        # alive or not at the reduce; until that is explained it is printed, not held to 3 %.
        bare, bare_planned = rank["peak"] - rank["peak_buckets"], stage.total - st.reduce_buffer
        print(f"stage {stage.stage}: peak without buckets planned {bare_planned:,.0f} B, "
              f"measured {bare:,} B ({bare_planned / bare - 1:+.2%})")  # fmt: skip
