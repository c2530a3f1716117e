"""The generated launch files start real processes with the real launchers.

`deepspeed` and `torchrun` run for real on CPU. One test runs `launch.sh` end to end
on a fresh tiny build (real data preparation and train.py); the two-node tests use a
small `train.py` stand-in that joins the process group the launcher set up,
all-reduces its rank and records what it was given, so they check the launch files
alone (the training loop has its own tests). Two "nodes" are simulated on this machine as in
CPU-DISTRIBUTED.md (the team notes beside DESIGN.md): one launcher per node, both on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest
from test_launch_files import make_spec, render_files, write_project

STANDIN_TRAIN = """
import json, os, sys
import torch
import torch.distributed as dist

dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
total = torch.tensor([float(rank + 1)])
dist.all_reduce(total)
record = {"rank": rank, "world": world, "sum": total.item(), "argv": sys.argv[1:],
          "env": {k: os.environ.get(k) for k in ("DS_ACCELERATOR", "OMP_NUM_THREADS")}}
with open(f"out/rank{rank}.json", "w") as f:
    json.dump(record, f)
dist.barrier()
dist.destroy_process_group()
os._exit(0)  # gloo can abort at interpreter exit (CPU-DISTRIBUTED.md, trap 1)
"""

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def project_with_standin(folder: Path, **cluster) -> Path:
    project = write_project(folder, render_files(make_spec(**cluster)))
    (project / "train.py").write_text(STANDIN_TRAIN)
    (project / "out" / "data").mkdir(parents=True)
    (project / "out" / "data" / "manifest.json").write_text("{}")  # data "prepared"
    return project


def launch_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DS_ACCELERATOR", "OMP_NUM_THREADS")}
    env.pop("NODE_RANK", None)
    env.pop("MASTER_PORT", None)
    return {**env, "MASTER_PORT": str(free_port()), **extra}


def records(project: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((project / "out").glob("rank*.json"))]


def assert_two_ranks_joined(project: Path, extra_args: list[str]) -> None:
    found = records(project)
    assert [r["rank"] for r in found] == [0, 1]
    for record in found:
        assert record["world"] == 2
        assert record["sum"] == 3.0  # 1 + 2: the two ranks really talked
        assert record["env"] == {"DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}
        assert [a for a in record["argv"] if not a.startswith("--local_rank")] == extra_args


def test_launch_sh_prepares_data_and_trains_the_generated_project(tmp_path):
    """End to end, nothing stood in: `bash launch.sh --out DIR` on a fresh build (contract 4):
    the data is prepared where train.py will read it (DIR/data), not in the project's out/."""
    from train_harness import build, write_corpus, write_spec

    write_corpus(tmp_path)
    train = {"steps": 4, "log_interval": 1, "eval_interval": 4, "checkpoint_interval": 4}
    project = build(write_spec(tmp_path, "launch-e2e", train=train), tmp_path / "proj")
    out = tmp_path / "run-out"
    env = launch_env()
    proc = subprocess.run(
        ["bash", str(project / "launch.sh"), "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (project / "out" / "data").exists()
    # DeepSpeed's CPU all-reduce buffers (67 MB of /dev/shm per rank) are removed at the end
    port = env["MASTER_PORT"]
    assert not list(Path("/dev/shm").glob(f"deepspeed_allreduce_buffer_*_{port}_*"))
    assert json.loads((out / "data" / "manifest.json").read_text())["splits"]["train"]["sequences"]
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "loss" in m] == [1, 2, 3, 4]
    assert any("val_loss" in m for m in metrics)
    assert any((out / "checkpoints").iterdir())


def run_two_nodes(script: Path, env: dict) -> None:
    """Start `script` once per simulated node; each gives up after 150 s if the other dies."""
    nodes = [
        subprocess.Popen(
            ["timeout", "150", "bash", str(script), "--from-node"],
            env={**env, "NODE_RANK": str(rank), "MASTER_ADDR": "127.0.0.1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in (0, 1)
    ]
    outputs = [node.communicate(timeout=180)[0] for node in nodes]
    for node, output in zip(nodes, outputs, strict=True):
        assert node.returncode == 0, output[-3000:]


def test_launch_multinode_without_ssh_joins_two_nodes(tmp_path):
    project = project_with_standin(tmp_path / "proj", nodes=2, gpus_per_node=1)
    run_two_nodes(project / "launch_multinode.sh", launch_env())
    assert_two_ranks_joined(project, ["--from-node"])


def test_launch_torchrun_joins_two_nodes_at_the_rendezvous(tmp_path):
    project = project_with_standin(tmp_path / "proj", nodes=2, gpus_per_node=1)
    run_two_nodes(project / "launch_torchrun.sh", launch_env(RDZV_ID=f"t{free_port()}"))
    assert_two_ranks_joined(project, ["--from-node"])
