"""Build tiny generated projects and run them for real on CPU (2 processes, gloo).

Shared by the training tests: a small spec written to a temporary folder, a
corpus copied from Python's standard library, one prepared data folder that
every variant trains on, and launchers (torchrun or the deepspeed launcher)
with the CPU environment of scripts/env.sh.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import yaml

from llmspec.pipeline import build_project

# Small, stable modules present in every CPython 3.11+: ~250 KB of text.
CORPUS_FILES = (
    "json/__init__.py",
    "json/decoder.py",
    "json/encoder.py",
    "textwrap.py",
    "string.py",
    "shlex.py",
    "fnmatch.py",
    "glob.py",
    "heapq.py",
    "bisect.py",
    "colorsys.py",
    "calendar.py",
    "csv.py",
    "difflib.py",
    "base64.py",
    "quopri.py",
)

# 2 layers, d_model 64, seq 64, vocab 512: the smallest model whose loss falls clearly
# within ~30 steps on this corpus.
BASE_SPEC = {
    "name": "train-test",
    "model": {
        "arch": "gpt",
        "vocab_size": 512,
        "max_seq_len": 64,
        "d_model": 64,
        "n_layers": 2,
        "n_heads": 4,
        "n_kv_heads": 4,
        "d_ff": 256,
        "position": "learned",
        "norm": "layernorm",
        "activation": "gelu",
        "dropout": 0.0,
        "attention_dropout": 0.0,
    },
    "data": {
        "sources": [{"path": "corpus/**/*.py"}],
        "tokenizer": {"kind": "bpe", "vocab_size": 512},
        "dedup": {"exact": True, "near": None},
        "shard_size": "1MB",
        "validation_fraction": 0.15,
    },
    "train": {
        "objective": "causal_lm",
        "seq_len": 64,
        "global_batch_size": 8,
        "micro_batch_size": 4,
        "steps": 30,
        "optimizer": {"lr": 3.0e-3, "weight_decay": 0.1},
        "schedule": {"name": "cosine", "warmup_steps": 3, "min_lr": 3.0e-4},
        "precision": "fp32",
        "seed": 1234,
        "log_interval": 1,
        "eval_interval": 30,
        "eval_batches": 2,
        "checkpoint_interval": 15,
    },
    "parallel": {
        "data": 2,
        "tensor": 1,
        "pipeline": 1,
        "zero_stage": 0,
        "sequence_parallel": False,
        "activation_checkpointing": "none",
    },
    "cluster": {"gpu": "cpu", "nodes": 1, "gpus_per_node": 2},
    "tracking": {"tensorboard": False},
}


def deep_merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def write_corpus(folder: Path) -> Path:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for rel in CORPUS_FILES:
        target = folder / "corpus" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(stdlib / rel, target)
    return folder / "corpus"


def write_spec(folder: Path, name: str, **overrides) -> Path:
    """A spec beside `folder/corpus` with `overrides` deep-merged over BASE_SPEC."""
    spec = deep_merge(BASE_SPEC, {"name": name, **overrides})
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=True))
    return path


def build(spec_path: Path, out: Path) -> Path:
    build_project(spec_path, out)
    return out


def cpu_env() -> dict:
    """scripts/env.sh, for subprocesses."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    env["DS_ACCELERATOR"] = "cpu"
    env.setdefault(
        "TORCH_EXTENSIONS_DIR",
        str(Path.home() / ".cache/llmspec/torch_extensions/torch2.13.0-ds0.19.8"),
    )
    env["PYTHONHASHSEED"] = "0"
    env["NO_COLOR"] = "1"
    return env


def prepare_data(project: Path, data_dir: Path) -> Path:
    """Run the project's own prepare_data.py and move its out/data to `data_dir`."""
    out = project / "out"
    subprocess.run(
        [sys.executable, "prepare_data.py"],
        cwd=project,
        env=cpu_env(),
        check=True,
        timeout=300,
    )
    shutil.move(out / "data", data_dir)
    return data_dir


def launch(
    project: Path,
    *args: str,
    nproc: int = 2,
    launcher: str = "torchrun",
    timeout: int = 600,
    check: bool = True,
    script: str = "train.py",
) -> subprocess.CompletedProcess:
    """Run train.py (or `script`, from the project folder) with `nproc` CPU processes; raises
    with the log on failure (`check`)."""
    port = free_port()
    if launcher == "torchrun":
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            f"--nproc_per_node={nproc}",
            f"--master_port={port}",
            script,
        ]
    else:
        deepspeed = shutil.which("deepspeed") or str(Path(sys.executable).parent / "deepspeed")
        command = [
            deepspeed,
            "--num_gpus",
            str(nproc),
            "--no_ssh_check",
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            str(port),
            script,
        ]
    # A session of its own, so that a timeout kills the launcher's workers too.
    with subprocess.Popen(
        command + list(args),
        cwd=project,
        env=cpu_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
            raise AssertionError(
                f"{' '.join(command)} timed out after {timeout} s\n{stdout[-3000:]}\n{stderr[-3000:]}"
            ) from None
    result = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(command + list(args))} exited {result.returncode}\n"
            f"--- stdout ---\n{result.stdout[-6000:]}\n--- stderr ---\n{result.stderr[-6000:]}"
        )
    return result


def read_metrics(out: Path) -> list[dict]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def losses_by_step(out: Path) -> dict[int, float]:
    return {m["step"]: m["loss"] for m in read_metrics(out)}


def assert_loss_falls(out: Path, window: int = 5, min_drop: float = 0.5) -> tuple[float, float]:
    """Mean of the last `window` logged losses is at least `min_drop` nats below the first."""
    losses = [m["loss"] for m in read_metrics(out)]
    assert len(losses) >= 2 * window, f"only {len(losses)} logged steps"
    first = sum(losses[:window]) / window
    last = sum(losses[-window:]) / window
    assert last < first - min_drop, f"loss did not fall: first {first:.3f}, last {last:.3f}"
    return first, last


def free_port() -> int:
    """A port nobody listens on now (other test sessions may share the machine)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------- shared runs
# Every training test trains a variant of BASE_SPEC on one prepared data folder. Runs are
# cached for the pytest process, so a test that compares against the ZeRO-0 reference
# or resumes the ZeRO-2 trajectory does not launch it again.

VARIANTS: dict[str, dict] = {
    "zero0": {},
    "zero1": {"parallel": {"zero_stage": 1}},
    "zero2": {"parallel": {"zero_stage": 2}},
    "zero3": {"parallel": {"zero_stage": 3}},
    "zero3-bf16": {"parallel": {"zero_stage": 3}, "train": {"precision": "bf16"}},  # build only
    # per-op selective recompute under ZeRO-3: the policy runs inside DeepSpeed's gathered linears
    "zero3-ops": {"parallel": {"zero_stage": 3, "activation_checkpointing": "ops"}},
    "bf16": {"parallel": {"zero_stage": 1}, "train": {"precision": "bf16"}},
    "offload": {"parallel": {"zero_stage": 2, "offload_optimizer": "cpu"}},
    # pipeline with ZeRO-1 (DeepSpeed's pipeline engine takes 0-1) and full recompute
    "pipeline2": {
        "parallel": {
            "data": 1,
            "pipeline": 2,
            "zero_stage": 1,
            "activation_checkpointing": "full",
        }
    },
    # per-op selective recompute inside DeepSpeed's PipelineEngine (its layers are our blocks)
    "pipeline2-ops": {
        "parallel": {
            "data": 1,
            "pipeline": 2,
            "zero_stage": 1,
            "activation_checkpointing": "ops",
        }
    },
    # tensor parallel as the planner picks it for big models: ZeRO-3, sequence parallel
    "tensor2": {
        "parallel": {
            "data": 1,
            "tensor": 2,
            "zero_stage": 3,
            "sequence_parallel": True,
            "activation_checkpointing": "selective",
        }
    },
    # trains on the shared data prepared for seq_len 64: train.py must refuse it
    "seq32": {"train": {"seq_len": 32}},
    # every tracker on (W&B offline, MLflow to a file store under out/mlruns)
    "trackers": {"tracking": {"tensorboard": True, "mlflow": True, "wandb": True}},
    # masked LM with dropout: masks and dropout draw random numbers that a resume must replay
    "bert-mlm-dropout": {
        "model": {"arch": "bert", "dropout": 0.1, "attention_dropout": 0.1},
        "train": {"objective": "masked_lm"},
        "parallel": {"zero_stage": 1},
    },
    # tensor parallel 2 at ZeRO 0 and 2, vocabulary 513 (padded to 514: export.py cuts it back)
    "tensor2-zero0": {
        "model": {"vocab_size": 513},
        "parallel": {"data": 1, "tensor": 2, "zero_stage": 0},
    },
    "tensor2-zero2": {
        "model": {"vocab_size": 513},
        "parallel": {"data": 1, "tensor": 2, "zero_stage": 2},
    },
    # BERT as Hugging Face's BertForMaskedLM computes it (post-norm, token types): export.py
    "bert-hf": {
        "model": {"arch": "bert", "norm_position": "post", "type_vocab_size": 2},
        "train": {"objective": "masked_lm"},
        "parallel": {"zero_stage": 1},
    },
}


@functools.cache
def workspace() -> Path:
    """A temporary folder with the corpus and the prepared data every variant trains on."""
    folder = Path(tempfile.mkdtemp(prefix="llmspec-train-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    write_corpus(folder)
    base = build(write_spec(folder, "base"), folder / "base")
    prepare_data(base, folder / "data")
    return folder


@functools.cache
def project(name: str) -> Path:
    folder = workspace()
    return build(write_spec(folder, name, **VARIANTS[name]), folder / name)


@functools.cache
def trained(name: str, launcher: str = "torchrun") -> Path:
    """Train variant `name` for the full BASE_SPEC steps; returns its out/ folder."""
    proj = project(name)
    out = proj / "out"
    launch(proj, "--data", str(workspace() / "data"), "--out", str(out), launcher=launcher)
    return out


@functools.cache
def trained_with_fp8_model(name: str) -> Path:
    """Variant `name`'s project with the model.py its spec renders at precision fp8 (the block
    linears through torch._scaled_mm), trained as `trained` does; returns its out/ folder. The
    planner and the spec check refuse fp8 on the cpu entry (no FP8 units), so the project is
    the fp32 build with its model.py re-rendered for the same layout."""
    from llmspec.codegen.model_code import render_model_py
    from llmspec.pipeline import fitting_plan
    from llmspec.spec.load import load_spec

    folder = workspace()
    proj = folder / f"{name}-fp8-model"
    shutil.copytree(project(name), proj, ignore=shutil.ignore_patterns("out"))
    spec = load_spec(folder / f"{name}.yaml")
    plan = fitting_plan(spec)
    fp8 = spec.model_copy(update={"train": spec.train.model_copy(update={"precision": "fp8"})})
    (proj / "model.py").write_text(render_model_py(fp8, plan.layout, plan.stage_layers))
    out = proj / "out"
    launch(proj, "--data", str(folder / "data"), "--out", str(out))
    return out


@functools.cache
def build_probed(name: str) -> list[dict]:
    """Each rank's parameter storage while variant `name`'s own train.py builds its model, and
    the parameter groups it passes on (build_probe.py: train.py with --max-steps 0)."""
    proj = project(name)
    out = proj / "build_probe.json"
    probe = Path(__file__).resolve().parent / "build_probe.py"
    data, run_dir = workspace() / "data", proj / "probe-out"
    launch(proj, str(out), str(data), str(run_dir), script=str(probe), timeout=300)
    return json.loads(out.read_text())
