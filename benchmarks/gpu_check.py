"""The first GPU check: planned vs measured peak memory and tokens/s on the GPU this machine has.

Finds the GPU (torch.cuda), picks its `llmspec hardware` catalog entry, writes a spec for a
~250M-parameter Llama-style model on 1 node x 1 GPU in bf16, builds it with llmspec, prepares
data from Python's own standard-library sources, trains STEPS steps with the generated
project (its train.py, DeepSpeed, one process), and prints

  peak memory  plan.json memory.per_gpu_bytes.total  vs  torch.cuda.max_memory_allocated()
  throughput   plan.json performance.tokens_per_s    vs  the median tokens_per_s the project
               logs in out/metrics.jsonl, after WARMUP steps

with the error of each. Without a CUDA device it prints one line and exits 0.

  python benchmarks/gpu_check.py [--steps 40] [--keep DIR]
  python benchmarks/gpu_check.py --precision fp8           # Hopper: the FP8 linears (fp8_linear)
  python benchmarks/gpu_check.py --gpu h200 --dry-run    # build and print the plan only (no GPU)

Runs in a few minutes: data preparation ~1 min, DeepSpeed start-up (its FusedAdam may JIT-build
once, ~1 min; TORCH_EXTENSIONS_DIR caches it), well under 1 s per step on an H100, one final checkpoint (~3 GB).
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
GIB = 2**30
WARMUP = 5  # logged steps left out of the throughput median (allocator, kernels, FusedAdam build)


def catalog_name(device_name: str, memory_bytes: int) -> str | None:
    """The catalog entry of a torch.cuda device name (e.g. "NVIDIA H100 80GB HBM3"), or None."""
    name = device_name.lower()
    if "h200" in name:
        return "h200"
    if "h100" in name:
        return "h100-sxm"  # the catalog has the SXM part; PCIe / NVL parts are slower
    if "a100" in name:
        return "a100-80gb" if memory_bytes > 60e9 else "a100-40gb"
    if "mi300x" in name:
        return "mi300x"
    if "mi250x" in name:
        return "mi250x"
    return None


def check_spec(gpu: str, steps: int, precision: str = "bf16") -> dict:
    """~250M parameters (24 layers, d_model 1024, vocab 8192): fits one GPU of 40 GB and more
    without recomputation; the planner picks the micro-batch."""
    return {
        "name": f"gpu-check-{gpu}",
        "model": {
            "arch": "llama",
            "vocab_size": 8192,
            "max_seq_len": 1024,
            "d_model": 1024,
            "n_layers": 24,
            "n_heads": 16,
            "n_kv_heads": 16,
            "d_ff": 2816,
            "dropout": 0.0,
            "attention_dropout": 0.0,
        },
        "data": {
            "sources": [{"path": "${PYTHON_STDLIB}/*.py"}],  # ~5 MB of text on any machine
            "tokenizer": {"kind": "bpe", "vocab_size": 8192},
            "dedup": {"exact": True, "near": None},
            "validation_fraction": 0.02,
        },
        "train": {
            "objective": "causal_lm",
            "seq_len": 1024,
            "global_batch_size": 32,
            "micro_batch_size": "auto",
            "steps": steps,
            "optimizer": {"lr": 3.0e-4},
            "schedule": {"name": "cosine", "warmup_steps": 5, "min_lr": 3.0e-5},
            "precision": precision,
            "log_interval": 1,
            "eval_interval": 10**6,  # train.py still evaluates once, after the last step
            "eval_batches": 1,
            "checkpoint_interval": 10**6,  # and checkpoints once, at the last step
        },
        "parallel": {
            "data": 1,
            "tensor": 1,
            "pipeline": 1,
            "zero_stage": 0,
            "sequence_parallel": False,
            "activation_checkpointing": "none",
        },
        "cluster": {"gpu": gpu, "nodes": 1, "gpus_per_node": 1},
        "tracking": {"tensorboard": False},
    }


def build(spec: dict, folder: Path) -> tuple[Path, dict]:
    spec_path = folder / f"{spec['name']}.yaml"
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    project = folder / spec["name"]
    run([sys.executable, "-m", "llmspec", "build", str(spec_path), "-o", str(project)], ROOT)
    return project, json.loads((project / "plan.json").read_text())


def run(command: list[str], cwd: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT), NO_COLOR="1")
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-4000:]}")


def worker(project: Path, peak_file: Path, train_args: list[str]) -> None:
    """Inside torchrun: the project's own train.py, then its peak allocated bytes to peak_file.
    train.py leaves through os._exit (CPU-DISTRIBUTED.md trap 1), so that is where we record."""
    import torch

    exit_now = os._exit

    def record_peak_and_exit(code: int) -> None:
        peak = torch.cuda.max_memory_allocated()
        peak_file.write_text(json.dumps({"max_memory_allocated": peak}))
        exit_now(code)

    os.chdir(project)
    sys.path.insert(0, str(project))
    os._exit = record_peak_and_exit
    sys.argv = ["train.py", *train_args]
    runpy.run_path("train.py", run_name="__main__")


def report(plan: dict, measured_peak: int | None, measured_tps: float | None) -> None:
    layout, memory = plan["layout"], plan["memory"]["per_gpu_bytes"]
    micro, accum = layout["micro_batch_size"], layout["grad_accum_steps"]
    print(f"layout: micro-batch {micro} x {accum} accumulation")
    rows = [
        ("peak memory GiB", memory["total"] / GIB, measured_peak and measured_peak / GIB, ".2f"),
        ("tokens/s", plan["performance"]["tokens_per_s"], measured_tps, ",.0f"),
    ]
    for label, planned, measured, fmt in rows:
        line = f"{label:>16}: planned {planned:{fmt}}"
        if measured is not None:
            error = (planned - measured) / measured
            line += f"  measured {measured:{fmt}}  error {error:+.1%}"
        print(line)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--gpu", help="catalog entry to plan for (default: the GPU found)")
    parser.add_argument("--precision", choices=("bf16", "fp8"), default="bf16")
    parser.add_argument("--dry-run", action="store_true", help="build and print the plan only")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    parser.add_argument("--worker", nargs=2, metavar=("PROJECT", "PEAK"), help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.worker:
        worker(Path(args.worker[0]), Path(args.worker[1]), rest)
        return 0

    import torch

    gpu = args.gpu
    if not args.dry_run:
        if not torch.cuda.is_available():
            print("no CUDA device: nothing to check")
            return 0
        props = torch.cuda.get_device_properties(0)
        print(f"device: {props.name}, {props.total_memory / GIB:.1f} GiB")
        gpu = gpu or catalog_name(props.name, props.total_memory)
        if gpu is None:
            print(f"{props.name} matches no catalog entry (llmspec hardware); pass --gpu NAME")
            return 2
    gpu = gpu or "h100-sxm"
    print(f"catalog: {gpu}")

    folder = args.keep or Path(tempfile.mkdtemp(prefix="llmspec-gpu-check-"))
    folder.mkdir(parents=True, exist_ok=True)
    project, plan = build(check_spec(gpu, args.steps, args.precision), folder)
    print(f"built {project}: {plan['params']['total'] / 1e6:.0f}M parameters")
    if args.dry_run:
        report(plan, None, None)
        return 0

    print("preparing data (prepare_data.py) ...", flush=True)
    run([sys.executable, "prepare_data.py"], project)
    print(f"training {args.steps} steps (train.py under torchrun, 1 process) ...", flush=True)
    peak_file, out = folder / "peak.json", project / "out"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1"]
    worker_args = ["--worker", str(project), str(peak_file), "--out", str(out)]
    run([*torchrun, str(Path(__file__).resolve()), *worker_args], project)
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    tokens_per_s = statistics.median(m["tokens_per_s"] for m in metrics[WARMUP:])
    peak = json.loads(peak_file.read_text())["max_memory_allocated"]
    first, last = metrics[0], metrics[-1]
    print(f"trained {last['step']} steps: loss {first['loss']:.3f} -> {last['loss']:.3f}")
    report(plan, peak, tokens_per_s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
