"""The issue-14 figure: 8 real trials of generated/tiny-cpu-sweep on 2 CPU processes.

Copies the committed project to a scratch folder and runs its own `python sweep.py` (Optuna
TPE, median pruner; d_model 512 does not fit the spec's 0.15 GiB per process, so trials that
draw it are infeasible and never launched). Prints each trial's state, values, metric and
wall time, and the total. The first launched trial also prepares the data (the whole
standard library, tokenizer trained), unless --data names a folder prepared before.

  source scripts/env.sh && python benchmarks/sweep_tiny_cpu.py [--data DIR] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ROOT / "generated" / "tiny-cpu-sweep"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="prepared data to reuse (a folder with manifest.json)")
    parser.add_argument("--keep", help="run in this folder and keep it (default: a temp folder)")
    args = parser.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="llmspec-sweep-")) / "tiny-cpu-sweep"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(PROJECT, work)
    command = [sys.executable, "sweep.py"] + (["--data", args.data] if args.data else [])
    start = time.perf_counter()
    subprocess.run(command, cwd=work, check=True, stdout=subprocess.DEVNULL)
    total = time.perf_counter() - start
    rows = [json.loads(line) for line in (work / "out/sweep/trials.jsonl").read_text().splitlines()]
    for r in rows:
        params = ", ".join(
            f"{k.split('.')[-1]} {v:.3g}" if isinstance(v, float) else f"{k.split('.')[-1]} {v}"
            for k, v in r["params"].items()
        )
        value = "-" if r["value"] is None else f"{r['value']:.4f}"
        seconds = "-" if r.get("seconds") is None else f"{r['seconds']:.0f} s"
        print(f"trial {r['number']}: {r['state']:<10} {params:<48} {value:>8} {seconds:>6}")
    states = [r["state"] for r in rows]
    counts = ", ".join(f"{states.count(s)} {s}" for s in dict.fromkeys(states))
    print(f"{len(rows)} trials ({counts}) in {total:.0f} s; results in {work}/out/sweep")
    if not args.keep:
        shutil.rmtree(work.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
