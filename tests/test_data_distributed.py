"""Stage 1 of prepare_data.py as tasks: the same bytes whoever runs them.

1, 2 and 4 local workers, a Dask cluster of 2 worker processes and SLURM array jobs (a
stand-in `sbatch` that runs each job's command at once) must write a manifest, tokenizer
and shards sha256-identical to each other, on the planted corpus whose exact and near
copies sit in other read tasks than their originals. A run killed (SIGKILL) in the middle
of a task reruns to the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from data_harness import fixtures
from data_harness.corpus import planted_spec, random_document, vocabulary, write
from data_harness.project import render_data_files, run_prepare

from llmspec.codegen.data_context import data_context
from llmspec.codegen.render import render_template
from llmspec.spec.schema import Spec

prepared = fixtures.prepared  # 2 workers


def digests(data_dir: Path) -> dict[str, str]:
    """sha256 of the manifest, the tokenizer and every shard."""
    names = ["manifest.json", "tokenizer.json"]
    names += [
        f
        for s in json.loads((data_dir / "manifest.json").read_text())["splits"].values()
        for f in s["files"]
    ]
    return {name: hashlib.sha256((data_dir / name).read_bytes()).hexdigest() for name in names}


def read_task_of(data_dir: Path) -> dict[str, int]:
    """The read task of each input path (contiguous shares of the inputs, as prepare_data.py)."""
    plan = json.loads((data_dir / "work" / "inputs.json").read_text())
    inputs, tasks = plan["inputs"], plan["tasks"]
    paths = [i if isinstance(i, str) else i[0] for i in inputs]
    return {
        p: next(r for r in range(tasks) if i < (r + 1) * len(paths) // tasks)
        for i, p in enumerate(paths)
    }


def test_planted_copies_sit_in_other_read_tasks_than_their_originals(prepared):
    task = read_task_of(prepared.data_dir)
    name = {
        Path(p).relative_to(prepared.planted.spec_dir / "corpus").as_posix(): r
        for p, r in task.items()
    }
    assert len(set(task.values())) == 8  # MIN_TASKS
    for i in range(6):  # exact/copy-i.txt copies base/doc-i, near/near-i.txt copies base/doc-(6+i)
        assert name[f"exact/copy-{i}.txt"] != name[f"base/doc-{i:03d}.txt"]
        assert name[f"near/near-{i}.txt"] != name[f"base/doc-{6 + i:03d}.txt"]
    assert name["records.jsonl"] != name["base/doc-020.txt"]  # a record copying a .txt file
    docs = prepared.manifest["documents"]
    assert docs["exact_duplicates"] == 7 and docs["near_duplicates"] == 6


@pytest.mark.parametrize("workers", [1, 4])
def test_any_number_of_workers_writes_the_same_bytes(prepared, workers, tmp_path):
    project = tmp_path / "project"
    render_data_files(prepared.spec, project, prepared.planted.spec_dir)
    run_prepare(project, "--workers", str(workers))
    assert digests(project / "out" / "data") == digests(prepared.data_dir)


def test_a_dask_cluster_writes_the_same_bytes_as_local(prepared, tmp_path):
    from distributed import LocalCluster, SchedulerPlugin

    class Finished(SchedulerPlugin):
        keys: list[str] = []

        def transition(self, key, start, finish, *args, **kwargs):
            if finish == "memory":
                self.keys.append(str(key))

    spec = Spec.model_validate(planted_spec(engine="dask"))
    project = tmp_path / "project"
    files = render_data_files(spec, project, prepared.planted.spec_dir)
    assert "dask_cluster()" in files["prepare_data.py"]
    assert (
        "dask"
        not in render_data_files(prepared.spec, tmp_path / "local", prepared.planted.spec_dir)[
            "prepare_data.py"
        ]
    )
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        cluster.scheduler.add_plugin(Finished())
        env = {**os.environ, "DASK_SCHEDULER_ADDRESS": cluster.scheduler_address}
        result = subprocess.run(
            [sys.executable, "prepare_data.py"],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        worker_pids = cluster.get_client().run(os.getpid)
        # The tasks ran there: stage 1's 8 + 8 + 8 + 14 + 1, then the tokenize tasks.
    ran = [key for key in Finished.keys if key.startswith("on_worker")]
    assert len(worker_pids) == 2 and os.getpid() not in worker_pids.values()
    assert len(ran) > 8 + 8 + 8 + 14 + 1, Finished.keys
    assert digests(project / "out" / "data") == digests(prepared.data_dir)
    # Everything finished: a rerun needs no cluster. Tasks left and no scheduler: a clear error.
    no_address = {k: v for k, v in os.environ.items() if k != "DASK_SCHEDULER_ADDRESS"}
    again = subprocess.run([sys.executable, "prepare_data.py"], cwd=project, capture_output=True, text=True, env=no_address)  # fmt: skip
    assert again.returncode == 0, again.stderr
    missing = subprocess.run([sys.executable, "prepare_data.py", "--out", str(tmp_path / "fresh")], cwd=project,
                             capture_output=True, text=True, env=no_address)  # fmt: skip
    assert missing.returncode == 1 and "DASK_SCHEDULER_ADDRESS" in missing.stderr


FAKE_SBATCH = """#!/usr/bin/env python3
# Stands in for SLURM's sbatch: logs its arguments, runs the job's command at once (each task
# of an --array), and prints a job id as --parsable does.
import json, os, subprocess, sys
args = dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a)
log = os.environ["FAKE_SBATCH_LOG"]
job = sum(1 for _ in open(log)) + 100 if os.path.exists(log) else 100
with open(log, "a") as f:
    f.write(json.dumps({"job": job, "argv": sys.argv[1:]}) + "\\n")
lo, hi = map(int, args.get("--array", "0-0").split("-"))
for rank in range(lo, hi + 1):
    env = {**os.environ, "SLURM_ARRAY_TASK_ID": str(rank), "SLURM_CPUS_PER_TASK": args["--cpus-per-task"]}
    subprocess.run(["bash", "-c", args["--wrap"]], env=env, check=True)
print(f"{job};cluster")
"""


def test_slurm_array_jobs_run_the_same_tasks_in_order(prepared, tmp_path):
    project = tmp_path / "project"
    render_data_files(prepared.spec, project, prepared.planted.spec_dir)
    context = {"spec": prepared.spec, "data": render_context_data(prepared, project)}
    script = render_sbatch(context)
    (project / "prepare_data.sbatch").write_text(script)
    syntax = subprocess.run(
        ["bash", "-n", str(project / "prepare_data.sbatch")], capture_output=True, text=True
    )
    assert syntax.returncode == 0, syntax.stderr
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(FAKE_SBATCH)
    (bin_dir / "sbatch").chmod(0o755)
    log = tmp_path / "sbatch.log"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_SBATCH_LOG": str(log),
           "PYTHON": sys.executable, "DATA_CPUS": "2", "SLURM_MAX_ARRAY": "5"}  # fmt: skip
    result = subprocess.run(
        ["bash", "prepare_data.sbatch"], cwd=project, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = [json.loads(line) for line in log.read_text().splitlines()]
    names = [option(j, "job-name") for j in jobs]
    # SLURM_MAX_ARRAY=5: a stage of more tasks is several array jobs of at most 5 tasks.
    expected = [("read", "0-4"), ("read", "0-2"), ("exact", "0-4"), ("exact", "0-2"),
                ("minhash", "0-4"), ("minhash", "0-2"), ("lsh", "0-4"), ("lsh", "0-4"), ("lsh", "0-3"),
                ("clusters", "0-0"), ("tokenizer", None), ("tokenize", "0-4"), ("tokenize", "0-2"), ("shards", None)]  # fmt: skip
    assert [
        (n.removeprefix("data-"), option(j, "array")) for n, j in zip(names, jobs, strict=True)
    ] == expected
    # Each stage waits for every job of the stage before, but the tokenize arrays, which the
    # tokenizer job submits when it is done.
    before = []
    for name, job in zip(names, jobs, strict=True):
        stage_jobs = [str(j["job"]) for n, j in zip(names, jobs, strict=True) if n == name]
        wait = option(job, "dependency")
        if name in ("data-read", "data-tokenize"):
            assert wait is None, name
        else:
            assert wait == "afterok:" + ":".join(before), name
        if str(job["job"]) == stage_jobs[-1]:
            before = stage_jobs
    assert digests(project / "out" / "data") == digests(prepared.data_dir)


def option(job: dict, name: str) -> str | None:
    """The value of sbatch option --NAME=VALUE in a logged job, or None."""
    return next((a.split("=", 1)[1] for a in job["argv"] if a.startswith(f"--{name}=")), None)


def render_context_data(prepared, project: Path) -> dict:
    return data_context(prepared.spec.data, spec_dir=prepared.planted.spec_dir, project_dir=project)


def render_sbatch(context: dict) -> str:
    return render_template("prepare_data.sbatch.j2", header="test", **context)


def big_corpus(spec_dir: Path, files: int, words: int) -> None:
    rng = random.Random(5)
    vocab = vocabulary(rng)
    for i in range(files):
        write(spec_dir / "corpus" / f"part-{i:02d}.txt", random_document(rng, vocab, words))


def test_a_run_killed_inside_a_task_reruns_to_the_same_bytes(tmp_path):
    """SIGKILL while the minhash tasks run (after the first finished, before the last): the
    rerun skips the finished tasks, redoes the rest and writes what an unbroken run writes."""
    spec_dir = tmp_path / "spec"
    big_corpus(spec_dir, 8, 60_000)
    spec = Spec.model_validate(
        planted_spec(sources=[{"path": "corpus/*.txt"}], filters={}, shard_size="64KB")
    )
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    render_data_files(spec, whole, spec_dir)
    render_data_files(spec, killed, spec_dir)
    run_prepare(whole, "--workers", "1")
    work = killed / "out" / "data" / "work"
    process = subprocess.Popen([sys.executable, "prepare_data.py", "--workers", "1"], cwd=killed,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        if (work / "minhash-00000.json").exists():
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    assert process.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    finished = sorted(p.name for p in work.glob("minhash-*.json"))
    assert 1 <= len(finished) < 8, finished
    assert not (killed / "out" / "data" / "manifest.json").exists()
    result = run_prepare(killed, "--workers", "2")
    assert "read: 8 of 8 tasks finished in an earlier run, skipped" in result.stderr
    assert (
        f"minhash: {len(finished)} of 8 tasks finished in an earlier run, skipped" in result.stderr
    )
    assert not list(work.glob("*.tmp"))
    assert digests(killed / "out" / "data") == digests(whole / "out" / "data")


# A Ray cluster of our own: ray.init() in a holder process starts it (its processes are that
# process's, and ray.shutdown() there stops them; `ray stop` would stop every Ray on the machine).
RAY_HOLDER = """
import sys, ray
ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
print(ray.get_runtime_context().gcs_address, flush=True)
sys.stdin.read()
ray.shutdown()
"""


def test_a_ray_cluster_writes_the_same_bytes_as_local(prepared, tmp_path):
    spec = Spec.model_validate(planted_spec(engine="ray"))
    project = tmp_path / "project"
    files = render_data_files(spec, project, prepared.planted.spec_dir)
    assert "ray_cluster()" in files["prepare_data.py"] and "dask" not in files["prepare_data.py"]
    # Ray clusters require a token: one of our own for the holder's cluster and its driver.
    env = {
        **os.environ,
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": os.urandom(16).hex(),
        # Ray's memory monitor kills tasks once the machine's memory (shared memory included)
        # is 95 % used, and retries them forever: on a shared test machine that is a hang, not
        # a finding about prepare_data (whose tasks hold ~50 MiB each).
        "RAY_memory_monitor_refresh_ms": "0",
    }
    holder = subprocess.Popen([sys.executable, "-c", RAY_HOLDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True, env=env)  # fmt: skip
    try:
        address = holder.stdout.readline().strip()
        assert address, "the Ray holder did not start"
        result = subprocess.run([sys.executable, "prepare_data.py"], cwd=project, capture_output=True, text=True,
                                env={**env, "RAY_ADDRESS": address}, timeout=300)  # fmt: skip
        assert result.returncode == 0, result.stderr
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert digests(project / "out" / "data") == digests(prepared.data_dir)
