"""Training throughput: the generated tiny project vs a minimal hand-written PyTorch loop.

Both train the same model (`build_model()` from the generated model.py) on the same
prepared data (the generated data.py loader), one process, same micro-batch and
gradient accumulation, AdamW with the spec's settings and gradient clipping:

  generated  `torchrun --standalone --nproc_per_node 1 train.py` (DeepSpeed engine,
             logging, metrics file, progress bar: everything the project does)
  hand loop  forward / backward / clip / AdamW step, nothing else

The generated figure is the run's own tokens/s (metrics.jsonl: timed inside the loop,
evaluation excluded), the median of the intervals logged after W warm-up steps; the
hand loop is timed the same way, inside its loop. (Differencing the wall times of two
launches, as before, let start-up noise swamp the steps: it once printed a negative
rate.) The two are measured in turn, --repeats times, and the best of each is
compared. Target: ratio >= 0.9.

  source scripts/env.sh && python benchmarks/train_throughput.py [--steps 60 --repeats 3]

The spec is specs/tiny-cpu.yaml moved onto one process (data 1); its prepared data
is reused from runs/tiny-cpu/out/data (scripts/demo.sh) when present, else prepared.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BASE_SPEC = ROOT / "specs" / "tiny-cpu.yaml"
DEMO_DATA = ROOT / "runs" / "tiny-cpu" / "out" / "data"


def one_process_spec(folder: Path) -> Path:
    """tiny-cpu on one process: same model, data and global batch; accumulation makes up for it."""
    spec = yaml.safe_load(BASE_SPEC.read_text())
    spec["name"] = "tiny-cpu-bench"
    spec["cluster"]["gpus_per_node"] = 1
    spec["parallel"]["data"] = 1
    # No evaluation or checkpoint inside the timed steps (both happen once at the end).
    spec["train"]["eval_interval"] = 10**6
    spec["train"]["checkpoint_interval"] = 10**6
    for source in spec["data"]["sources"]:  # keep globs valid from the temporary folder
        if not source["path"].startswith(("${", "/")):
            source["path"] = str(BASE_SPEC.parent / source["path"])
    path = folder / "tiny-cpu-bench.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def build(spec_path: Path, project: Path) -> dict:
    subprocess.run(
        [sys.executable, "-m", "llmspec", "build", str(spec_path), "-o", str(project)], check=True
    )
    return json.loads((project / "plan.json").read_text())


def prepared_data(project: Path) -> Path:
    if (DEMO_DATA / "manifest.json").is_file():
        return DEMO_DATA
    subprocess.run([sys.executable, "prepare_data.py"], cwd=project, check=True)
    return project / "out" / "data"


def generated_tokens_per_s(project: Path, data: Path, warmup: int, steps: int, work: Path) -> float:
    """The generated run's own tokens/s (metrics.jsonl, timed inside its loop like the hand
    loop), median over the logged intervals after `warmup` steps. Differencing the wall
    times of two launches instead let start-up noise swamp the steps (it once printed a
    negative rate)."""
    out = work / "out"
    command = ["torchrun", "--standalone", "--nproc_per_node", "1", "train.py"]
    command += ["--max-steps", str(warmup + steps), "--out", str(out), "--data", str(data)]
    subprocess.run(command, cwd=project, check=True, stdout=subprocess.DEVNULL)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rates = sorted(r["tokens_per_s"] for r in records if r["step"] > warmup)
    if not rates:
        raise SystemExit(f"no step logged after warm-up {warmup}: raise --steps")
    return rates[len(rates) // 2]


def hand_loop_tokens_per_s(project: Path, data: Path, warmup: int, steps: int) -> float:
    """Run `hand_loop` in a fresh process, as the generated run gets one."""
    result = subprocess.run(
        [sys.executable, __file__, "--hand-loop", str(project), str(data), str(warmup), str(steps)],
        check=True,
        capture_output=True,
        text=True,
    )
    return float(result.stdout.strip().splitlines()[-1])


def hand_loop(project: Path, data: Path, warmup: int, steps: int) -> float:
    import torch

    sys.path.insert(0, str(project))
    from data import train_batches  # the generated loader
    from model import build_model  # the generated model

    plan = json.loads((project / "plan.json").read_text())
    layout = plan["layout"]
    micro, accum = layout["micro_batch_size"], layout["grad_accum_steps"]
    config = json.loads((project / "ds_config.json").read_text())
    optim = config["optimizer"]["params"]
    clip = config.get("gradient_clipping", 0.0)

    torch.manual_seed(0)
    model = build_model()
    model.train()
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=optim["lr"],
        betas=tuple(optim["betas"]),
        eps=optim["eps"],
        weight_decay=optim["weight_decay"],
    )
    batches = train_batches(str(data), micro, dp_rank=0, dp_world=1, seed=1234)

    def train_step() -> None:
        for _ in range(accum):
            input_ids = next(batches)
            loss = model(input_ids, labels=input_ids) / accum
            loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(warmup):
        train_step()
    started = time.perf_counter()
    for _ in range(steps):
        train_step()
    elapsed = time.perf_counter() - started
    seq_len = json.loads((data / "manifest.json").read_text())["seq_len"]
    return steps * micro * accum * seq_len / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="timed optimizer steps")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs of each")
    parser.add_argument("--keep", action="store_true", help="keep the temporary project")
    parser.add_argument("--hand-loop", nargs=4, metavar=("PROJECT", "DATA", "WARMUP", "STEPS"))
    args = parser.parse_args()
    if args.hand_loop:
        project, data, warmup, steps = args.hand_loop
        print(hand_loop(Path(project), Path(data), int(warmup), int(steps)))
        return

    work = Path(tempfile.mkdtemp(prefix="llmspec-throughput-"))
    try:
        project = work / "project"
        build(one_process_spec(work), project)
        data = prepared_data(project)
        manifest = json.loads((data / "manifest.json").read_text())
        seq_len = manifest["seq_len"]
        layout = json.loads((project / "plan.json").read_text())["layout"]
        tokens_per_step = layout["micro_batch_size"] * layout["grad_accum_steps"] * seq_len

        # Alternate the two, and compare the best of each: on a shared machine other work
        # only ever slows a run down, so the fastest repeat is the least disturbed one.
        generated, hand = [], []
        for repeat in range(args.repeats):
            generated.append(
                generated_tokens_per_s(project, data, args.warmup, args.steps, work / f"r{repeat}")
            )
            hand.append(hand_loop_tokens_per_s(project, data, args.warmup, args.steps))
            print(
                f"repeat {repeat + 1}: generated {generated[-1]:,.0f}, hand {hand[-1]:,.0f} "
                f"tokens/s",
                file=sys.stderr,
            )
        threads = os.environ.get("OMP_NUM_THREADS", "unset")
        print(
            f"tiny-cpu on 1 process, {tokens_per_step} tokens per step, {args.steps} timed steps "
            f"after {args.warmup} warm-up, best of {args.repeats}, OMP_NUM_THREADS={threads}"
        )
        print(f"generated train.py (DeepSpeed): {max(generated):12,.0f} tokens/s")
        print(f"hand-written PyTorch loop:      {max(hand):12,.0f} tokens/s")
        ratio = max(generated) / max(hand)
        print(f"ratio generated / hand-written: {ratio:12.3f}  (target >= 0.9)")
    finally:
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
