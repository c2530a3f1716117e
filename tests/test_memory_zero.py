"""ZeRO model states per rank on a real 2-process DeepSpeed run (CPU, gloo)."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from llmspec.graph.dims import ModelDims
from llmspec.graph.layers import count_params
from llmspec.plan.memory import model_states
from llmspec.plan.types import Layout
from llmspec.spec.schema import Spec

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_zero_model_states_per_rank_match_deepspeed():
    # scripts/setup.sh installs deepspeed and its launcher: a missing one is a broken set-up,
    # not a reason to pass without measuring
    assert shutil.which("deepspeed"), "the deepspeed launcher is not on PATH: run scripts/setup.sh"
    spec = Spec.model_validate(
        {
            "name": "zero-states",
            "model": {"vocab_size": 4096, "max_seq_len": 64, "d_model": 256, "n_layers": 4,
                      "n_heads": 4, "d_ff": 1024, "dropout": 0.0, "attention_dropout": 0.0},
            "train": {"seq_len": 64, "precision": "bf16"},
        }
    )  # fmt: skip
    env = dict(os.environ, DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    worker = ROOT / "benchmarks" / "zero_states_worker.py"
    fields = json.dumps(spec.model_dump(mode="json", exclude={"data"}))
    out = subprocess.run(
        ["deepspeed", "--num_gpus", "2", str(worker), fields, "1,3"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=850,
    )  # fmt: skip
    rows = [json.loads(x.split(" ", 1)[1]) for x in out.stdout.splitlines() if "ZERO_STATES " in x]
    assert len(rows) == 2, out.stdout[-3000:] + out.stderr[-3000:]
    n = count_params(ModelDims.from_spec(spec)).total
    for row in rows:
        st = model_states(n, "bf16", Layout(data=2, zero_stage=row["stage"]))
        planned = st.weights + st.optimizer + st.persistent_buffer + st.grads_step
        for rank in row["ranks"]:
            measured = rank["in_step"]["total"]
            assert abs(planned - measured) / measured < 0.03, (row["stage"], planned, measured)
