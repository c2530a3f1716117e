"""sweep.py, the generated hyper-parameter sweep (contract 5, `sweep:`), run for real.

Structural values (here model.d_model) are planned at build time by the real planner: a
variant that cannot fit has no project, and every trial that draws it is recorded infeasible
with the planner's reason, launching nothing. Runtime values (the learning rate, warm-up) go
to the variant's own launch.sh as `--set`; trials train 2 DeepSpeed processes on CPU on the
shared prepared data of the training tests, and a pruned trial stops on its STOP file.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
from train_harness import build, cpu_env, workspace, write_spec

from llmspec.codegen.ds_config import build_ds_config
from llmspec.errors import SpecError
from llmspec.pipeline import plan_spec, variant_reason
from llmspec.spec.load import load_located, with_overrides

# d_model 64 (the base) plans at 0.005 GiB + 0.01 GiB runtime overhead: it fits 0.02 GiB per
# process; d_model 512 and 1024 do not.
CLUSTER = {"gpu": {"name": "cpu", "memory_gib": 0.02}, "nodes": 1, "gpus_per_node": 2}
TRAIN = {
    "steps": 40,
    "log_interval": 1,
    "eval_interval": 4,
    "eval_batches": 2,
    "checkpoint_interval": 40,
    "schedule": {"name": "cosine", "warmup_steps": 3, "min_lr": 1.0e-6},  # below every lr drawn
}


def sweep_spec(
    name: str, d_models: list[int] | None, trials: int, tracking: dict | None = None, **sweep
) -> Path:
    """A sweep of the training tests' spec: lr and warm-up, and d_model over `d_models`
    (None: no structural parameter, the trials run the sweep's own project)."""
    params = {
        "train.optimizer.lr": {"log_uniform": [1.0e-5, 3.0e-2]},
        "train.schedule.warmup_steps": {"int": [0, 4]},
    }
    if d_models is not None:
        params["model.d_model"] = {"choice": d_models}
    return write_spec(
        workspace(),
        name,
        cluster=CLUSTER,
        train=TRAIN,
        tracking={"tensorboard": False, **(tracking or {})},
        sweep={"trials": trials, "seed": 0, "params": params, **sweep},
    )


def variants_of(project: Path) -> list[dict]:
    """sweep.py's VARIANTS table, read as the literal it is."""
    tree = ast.parse((project / "sweep.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "VARIANTS":
            return ast.literal_eval(node.value)
    raise AssertionError("sweep.py has no VARIANTS")


def run_sweep(project: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "sweep.py", "--data", str(workspace() / "data"), *args],
        cwd=project,
        env=cpu_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that contain `text`."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            continue
        if proc.name.isdigit() and text in cmdline:
            found.append(cmdline)
    return found


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_infeasible_variants_are_marked_with_the_planners_reason_and_never_launched():
    spec_path = sweep_spec("sweep-infeasible", [64, 512, 1024], trials=6)
    project = build(spec_path, workspace() / "sweep-infeasible")
    table = variants_of(project)
    assert [v["overrides"] for v in table] == [{"model.d_model": d} for d in (64, 512, 1024)]
    loaded = load_located(spec_path)
    for v in table:
        plan = plan_spec(with_overrides(loaded, v["overrides"]).spec)
        assert v["fits"] == plan.fits
        assert v["reason"] == (None if plan.fits else variant_reason(plan))
    assert [v["fits"] for v in table] == [True, False, False]
    assert all("OOM by" in v["reason"] for v in table[1:])
    # a project for the variant that fits (its model is d_model 64), none for the others
    assert (project / "sweep/variants/v0/model.py").read_text().count(
        "D_MODEL = 64  # model.d_model"
    ) == 1
    assert not (project / "sweep/variants/v1").exists()
    assert not (project / "sweep/variants/v2").exists()


def test_a_space_that_cannot_fit_runs_no_trial():
    """Every structural value overflows: all trials are infeasible, with the table's reason, and
    not one trial folder (nor a launch) exists."""
    project = build(
        sweep_spec("sweep-none-fit", [512, 1024], trials=4), workspace() / "sweep-none-fit"
    )
    reasons = {v["id"]: v["reason"] for v in variants_of(project)}
    out = project / "out"
    run_sweep(project, "--out", str(out), timeout=120)
    rows = read_jsonl(out / "sweep/trials.jsonl")
    assert [r["number"] for r in rows] == [0, 1, 2, 3]
    for r in rows:
        assert r["state"] == "infeasible"
        assert r["reason"] == reasons[r["variant"]]
        assert r["value"] is None
    assert not list((out / "sweep").glob("trial-*"))
    assert not (out / "sweep/best.json").exists()
    # the sampler is seeded (sweep.seed): a fresh study draws the same values
    run_sweep(project, "--out", str(project / "out-again"), timeout=120)
    again = read_jsonl(project / "out-again/sweep/trials.jsonl")
    assert [r["params"] for r in again] == [r["params"] for r in rows]
    assert len({json.dumps(r["params"]) for r in rows}) == 4  # and they do differ per trial


@pytest.fixture(scope="module")
def real_sweep():
    """The issue's figure: 8 trials over d_model {32, 64, 512} (512 cannot fit), lr and
    warm-up, median pruner after the first complete trial."""
    spec_path = sweep_spec(
        "sweep-real",
        [32, 64, 512],
        trials=8,
        tracking={"mlflow": True},
        pruner_startup_trials=1,
        pruner_warmup_steps=0,
    )
    project = build(spec_path, workspace() / "sweep-real")
    out = project / "out"
    start = time.perf_counter()
    run_sweep(project, "--out", str(out))
    return project, out, time.perf_counter() - start


def test_real_sweep_values_are_the_trials_own_metrics(real_sweep, monkeypatch):
    project, out, seconds = real_sweep
    rows = read_jsonl(out / "sweep/trials.jsonl")
    states = [r["state"] for r in rows]
    print(f"8 trials in {seconds:.0f} s: {states}")
    assert len(rows) == 8 and set(states) <= {"complete", "pruned", "infeasible"}
    assert "complete" in states and "pruned" in states
    stopped_early = []
    for r in rows:
        trial_dir = out / "sweep" / f"trial-{r['number']:03d}"
        if r["state"] == "infeasible":
            assert r["variant"] == "v2" and not trial_dir.exists()
            continue
        metrics = read_jsonl(trial_dir / "metrics.jsonl")
        evals = [m for m in metrics if "val_loss" in m]
        trial = json.loads((trial_dir / "trial.json").read_text())
        assert trial["values"] == r["params"] and trial["variant"]["id"] == r["variant"]
        assert r["value"] == evals[-1]["val_loss"]  # exactly: the number train.py wrote
        assert r["last_step"] == evals[-1]["step"]
        # the trial's own learning rate reached the optimizer (--set → ds_config)
        peak = max(m["lr"] for m in metrics)
        assert 0.3 * r["params"]["train.optimizer.lr"] < peak <= r["params"]["train.optimizer.lr"]
        if r["state"] == "pruned":
            assert (trial_dir / "STOP").exists()
            stopped_early.append(metrics[-1]["step"] < TRAIN["steps"])
        else:
            assert metrics[-1]["step"] == TRAIN["steps"] and not (trial_dir / "STOP").exists()
    assert any(stopped_early)  # STOP ends a pruned trial's training before its last step
    best = json.loads((out / "sweep/best.json").read_text())
    complete = [r for r in rows if r["state"] == "complete"]
    assert best["number"] == min(complete, key=lambda r: r["value"])["number"]
    assert (out / "sweep/objective.png").read_bytes()[:4] == b"\x89PNG"
    # MLflow: one run for the sweep, a child run per launched trial, with the trial's metrics
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # as train.py and sweep.py set it
    client = mlflow.tracking.MlflowClient(tracking_uri=f"file:{out / 'sweep/mlruns'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    (parent,) = [run for run in runs if "mlflow.parentRunId" not in run.data.tags]
    children = {
        run.info.run_name: run
        for run in runs
        if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id
    }
    launched = [r for r in rows if r["state"] != "infeasible"]
    assert sorted(children) == [f"trial-{r['number']:03d}" for r in launched]
    for r in launched:
        child = children[f"trial-{r['number']:03d}"]
        assert child.data.params["train.optimizer.lr"] == str(r["params"]["train.optimizer.lr"])
        history = client.get_metric_history(child.info.run_id, "val_loss")
        assert max(history, key=lambda m: m.step).value == r["value"]
    if len(complete) >= 2:
        importances = json.loads((out / "sweep/importances.json").read_text())
        assert set(importances) == set(rows[0]["params"])
        assert (out / "sweep/importances.png").read_bytes()[:4] == b"\x89PNG"


def test_a_killed_sweep_resumes_without_running_a_trial_twice():
    """SIGKILL the driver's process group (the driver and the trial it runs) in the middle of
    a trial, run sweep.py again (no structural parameter: the trials run the sweep's own
    launch.sh): the study completes, the interrupted trial is run again once
    with its values, and no finished trial is launched again (its folder is untouched)."""
    project = build(
        sweep_spec("sweep-kill", None, trials=2, pruner="none"), workspace() / "sweep-kill"
    )
    out = project / "out"
    sweep_dir = out / "sweep"
    command = [sys.executable, "sweep.py", "--data", str(workspace() / "data"), "--out", str(out)]
    with subprocess.Popen(
        command,
        cwd=project,
        env=cpu_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    ) as driver:
        deadline = time.monotonic() + 300
        # wait until trial 0 finished and trial 1 has trained a few steps
        while not (sweep_dir / "trial-001/metrics.jsonl").exists() or (
            len((sweep_dir / "trial-001/metrics.jsonl").read_text().splitlines()) < 3
        ):
            assert driver.poll() is None and time.monotonic() < deadline, "no trial 1 to kill"
            time.sleep(0.2)
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    time.sleep(1)  # the group's last processes go
    before = read_jsonl(sweep_dir / "trials.jsonl")
    assert [(r["number"], r["state"]) for r in before] == [(0, "complete")]
    finished = {
        p.name: p.read_bytes()
        for p in (sweep_dir / "trial-000").iterdir()
        if p.is_file()  # metrics.jsonl, launch.log: a second run would rewrite them
    }
    assert not processes_mentioning(str(sweep_dir / "trial-001")), "a killed trial survived"

    run_sweep(project, "--out", str(out))
    rows = read_jsonl(sweep_dir / "trials.jsonl")
    by_number = {r["number"]: r for r in rows}
    assert by_number[1]["state"] == "interrupted"
    killed_params = by_number[1]["params"]
    retry = by_number[2]
    assert retry["params"] == killed_params and retry["state"] == "complete"
    done = [r for r in rows if r["state"] != "interrupted"]
    assert len(done) == 2 and all(r["state"] == "complete" for r in done)
    assert [r["number"] for r in rows] == [0, 1, 2]
    for name, content in finished.items():
        assert (sweep_dir / "trial-000" / name).read_bytes() == content, name
    # each launched trial has one folder, the retry its own
    assert sorted(p.name for p in sweep_dir.glob("trial-*")) == [f"trial-{n:03d}" for n in range(3)]


def test_a_runtime_range_the_spec_cannot_hold_is_a_located_error():
    spec_path = sweep_spec("sweep-bad-warmup", [64], trials=2)
    text = spec_path.read_text().replace("- 4\n", "- 400\n")  # warmup_steps {int: [0, 400]}
    spec_path.write_text(text)
    with pytest.raises(SpecError) as caught:
        build(spec_path, workspace() / "sweep-bad-warmup")
    (problem,) = caught.value.problems
    assert problem.field == "sweep.params.train.schedule.warmup_steps"
    # at the parameter's distribution: the block under its key
    assert problem.line == 2 + text.splitlines().index("    train.schedule.warmup_steps:")
    assert "= 400 exceeds the run's 40 steps" in problem.message


def test_a_layout_the_batch_cannot_split_is_infeasible_with_the_checks_reason():
    spec_path = write_spec(
        workspace(),
        "sweep-micro",
        cluster=CLUSTER,
        sweep={"trials": 2, "params": {"train.micro_batch_size": {"choice": [4, 16]}}},
    )
    table = variants_of(build(spec_path, workspace() / "sweep-micro"))
    assert [v["fits"] for v in table] == [True, False]
    assert table[1]["reason"] == (
        "train.global_batch_size = 8 is not a multiple of micro_batch_size = 16 × data = 2 = 32 "
        "(global = micro × accumulation steps × data)"
    )


def test_a_variant_that_prepares_other_data_gets_its_own():
    """seq_len 32 packs other sequences: its trials cannot read the sweep's data."""
    spec_path = write_spec(
        workspace(),
        "sweep-seq",
        cluster=CLUSTER,
        sweep={"trials": 2, "params": {"train.seq_len": {"choice": [64, 32]}}},
    )
    table = variants_of(build(spec_path, workspace() / "sweep-seq"))
    assert [(v["fits"], v["data"]) for v in table] == [
        (True, "."),
        (True, "sweep/variants/v1"),
    ]


def trial_ds_config(project: Path, sets: list[str]) -> dict:
    """What the generated train.py hands deepspeed.initialize for `--set` values: its settings
    block and its sweep block, run on their own."""
    lines = (project / "train.py").read_text().splitlines()
    settings = next(i for i, line in enumerate(lines) if line.startswith("# settings:"))
    start = next(i for i, line in enumerate(lines) if line.startswith("# sweep: sweep.py runs"))
    end = next(i for i, line in enumerate(lines) if line.startswith("stop_file = "))
    block = "\n".join(
        lines[settings : lines.index("tokens_per_step = global_batch_size * seq_len")]
    )
    block += "\n" + "\n".join(lines[start:end])
    namespace = {
        "args": argparse.Namespace(set=sets),
        "here": str(project),
        "os": os,
        "json": json,
    }
    exec(compile(block, "train.py", "exec"), namespace)
    return namespace["ds_config"]


@pytest.mark.parametrize("schedule", ["cosine", "linear", "constant"])
def test_set_gives_the_ds_config_a_build_of_those_values_writes(schedule):
    """train.py --set must equal building the spec with the values written in (no drift
    between codegen.ds_config and the trial's own update of ds_config.json)."""
    params = {
        "train.optimizer.lr": {"log_uniform": [1.0e-4, 1.0e-2]},
        "train.optimizer.weight_decay": {"uniform": [0.0, 0.2]},
        "train.optimizer.eps": {"log_uniform": [1.0e-9, 1.0e-6]},
        "train.schedule.warmup_steps": {"int": [0, 6]},
        "train.schedule.min_lr": {"log_uniform": [1.0e-6, 1.0e-5]},
        "train.grad_clip": {"uniform": [0.5, 2.0]},
    }
    spec_path = write_spec(
        workspace(),
        f"sweep-set-{schedule}",
        train={"schedule": {"name": schedule, "warmup_steps": 3, "min_lr": 1.0e-6}},
        sweep={"trials": 2, "params": params},
    )
    project = build(spec_path, workspace() / f"sweep-set-{schedule}")
    loaded = load_located(spec_path)
    for warmup in (0, 5):
        values = {
            "train.optimizer.lr": 0.0042,
            "train.optimizer.weight_decay": 0.03,
            "train.optimizer.eps": 1.0e-7,
            "train.schedule.warmup_steps": warmup,
            "train.schedule.min_lr": 2.0e-6,
            "train.grad_clip": 0.7,
        }
        got = trial_ds_config(project, [f"{k}={v}" for k, v in values.items()])
        spec = with_overrides(loaded, values).spec
        want = build_ds_config(layout=plan_spec(spec).layout, train=spec.train, on_cpu=True)
        got.pop("_generated_by")
        assert got == want
        assert got != build_ds_config(
            layout=plan_spec(loaded.spec).layout, train=loaded.spec.train, on_cpu=True
        )
