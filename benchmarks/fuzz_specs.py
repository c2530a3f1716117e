"""Fuzz the spec layer and the planner: N mutated specs through load + plan, counted.

    python benchmarks/fuzz_specs.py                 # 10,000 specs, seed 0, 10 s per spec
    python benchmarks/fuzz_specs.py -n 500 --seed 3 --keep /tmp/fuzz-failures

Each mutant starts from an example spec (specs/*.yaml) and gets 1-4 mutations of the
classes issue 16 found: huge, tiny and odd numbers (1e308, 401-digit integers, 2**64,
NaN), odd strings in names and values (300 characters, NUL, control and format
characters, emoji codes, rich markup, lone surrogates), hostile `extends` paths (too
long, NUL, /dev/zero, a FIFO, cycles, `${VAR}`), YAML 1.1 numbers (010, 1:30, 0b11,
1_000) and random edits of the text. Each is written to a file and run in a worker
process: `load_located`, the CLI's error printer on a rejection, then `make_plan` and
the arithmetic of the accepted plan. A worker that takes longer than the timeout is
killed and counted as a hang.

Printed counts (the targets are 0 for the first four):
  traceback         an exception other than SpecError / UserError
  hang              no answer within the timeout
  unlocated         a SpecError problem without a line in the spec
  bad arithmetic    an accepted plan whose own numbers disagree (degrees × = GPUs,
                    micro × accumulation × data = global batch, memory parts sum to the
                    total, tokens/s = batch tokens / step time, non-finite numbers, ...)
  plan refused      the spec validated but the planner refused it (a UserError without
                    a location: what the spec checks should have caught)
  rejected          a located SpecError (the expected outcome for most mutants)
  planned           accepted and planned (fits or not)
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import math
import multiprocessing as mp
import os
import random
import shutil
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SEED_FILES = sorted((ROOT / "specs").glob("*.yaml"))

NUMBERS = [
    0,
    1,
    2,
    3,
    7,
    8,
    255,
    256,
    260,
    480,
    1000,
    4096,
    65536,
    10**6,
    10**9,
    10**9 + 1,
    2**31,
    2**32 - 1,
    2**32,
    2**63,
    2**64,
    10**30,
    10**100,
    int("9" * 401),
    -1,
    -(10**30),
    0.5,
    0.1,
    1.5,
    1e-9,
    1e-300,
    1e300,
    1e308,
    float("inf"),
    float("nan"),
    -0.0,
]
STRINGS = [
    "auto",
    "none",
    "cpu",
    "nvme",
    "gpt",
    "bert",
    "rope",
    "bf16",
    "fp8",
    "h100-sxm",
    "masked_lm",
    "gpt2-small",
    "1GB",
    "9" * 400 + "GB",
    ":fire:",
    ":100:",
    "[bold]x[/bold]",
    "\x1b[31mred",
    "a\u202eb",
    "tab\there",
    "line\nbreak",
    "a" * 300,
    "x\x00y",
    "a\ud800b",
    "${X",
    "${HOME}",
    "1:30",
    "010",
    "",
    " ",
    "ünïcødé 🔥",
]
EXTENDS = [
    "base.yaml",
    "a" * 300 + ".yaml",
    "x\x00.yaml",
    "b\ud800.yaml",
    "/dev/zero",
    ".",
    "../" * 50 + "etc/passwd",
    "spec.yaml",  # itself: a cycle
    "nope.yaml",
    "pipe.yaml",  # a FIFO in the work folder
    "${NOPE}",
    "${BASE}/base.yaml",
    "d/" * 2100 + "x.yaml",
]
MILD = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 256, 512, 1024, 2048, 8192, 100000]
YAML_11 = ["010", "0777", "1:30", "0b11", "1_000", "0x1F", "0o17", "+1", "1e3", ".5"]
JUNK_KEYS = ["n_layer", "", "\x1b[31m", ":fire:", "extends", "preset", "<<", "a" * 300]


def field_names() -> list[str]:
    from llmspec.spec.schema import Spec

    names: set[str] = set()

    def walk(model) -> None:
        for name, info in model.model_fields.items():
            names.add(name)
            for arg in [info.annotation, *getattr(info.annotation, "__args__", ())]:
                for inner in [arg, *getattr(arg, "__args__", ())]:
                    if isinstance(inner, type) and hasattr(inner, "model_fields"):
                        walk(inner)

    walk(Spec)
    return sorted(names)


def _paths(data, prefix=()):
    yield prefix
    if isinstance(data, dict):
        for k, v in data.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from _paths(v, (*prefix, i))


def _get(data, path):
    for part in path:
        data = data[part]
    return data


def _set(data, path, value):
    if not path:
        return value
    _get(data, path[:-1])[path[-1]] = value
    return data


class Mutator:
    def __init__(self, rng: random.Random, keys: list[str]):
        self.rng = rng
        self.keys = keys + JUNK_KEYS
        self.seeds = [(p.name, yaml.safe_load(p.read_text())) for p in SEED_FILES]

    def value(self):
        r = self.rng.random()
        if r < 0.25:  # plausible sizes: mutants that validate and stress the planner
            return self.rng.choice(MILD)
        if r < 0.45:
            return self.rng.choice(NUMBERS)
        if r < 0.8:
            return self.rng.choice(STRINGS)
        if r < 0.9:
            return self.rng.choice([None, True, False, [], {}])
        return {self.rng.choice(self.keys): self.rng.choice(NUMBERS + STRINGS)}

    def spec(self) -> str:
        _, data = self.rng.choice(self.seeds)
        data = copy.deepcopy(data)
        for _ in range(self.rng.randint(1, 4)):
            data = self.mutate(data)
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
        if self.rng.random() < 0.25:
            text = self.edit_text(text)
        return text

    def mutate(self, data):
        paths = list(_paths(data))
        path = self.rng.choice(paths)
        op = self.rng.choice(["delete", "insert", "retype", "retype", "swap", "extends"])
        node = _get(data, path)
        if op == "delete" and path and isinstance(_get(data, path[:-1]), dict):
            del _get(data, path[:-1])[path[-1]]
        elif op == "insert" and isinstance(node, dict):
            node[self.rng.choice(self.keys)] = self.value()
        elif op == "retype":
            data = _set(data, path, self.value())
        elif op == "swap" and path:
            other = self.rng.choice(paths)
            if other and other[: len(path)] != path and path[: len(other)] != other:
                a, b = copy.deepcopy(_get(data, path)), copy.deepcopy(_get(data, other))
                data = _set(_set(data, path, b), other, a)
        elif op == "extends" and isinstance(data, dict):
            picks = [self.rng.choice(EXTENDS) for _ in range(self.rng.randint(1, 2))]
            data["extends"] = picks[0] if len(picks) == 1 else picks
        return data

    def edit_text(self, text: str) -> str:
        lines = text.splitlines(keepends=True)
        numeric = [i for i, line in enumerate(lines) if line.rstrip().split(": ")[-1].isdigit()]
        if numeric and self.rng.random() < 0.6:  # a YAML 1.1 number where a number was
            i = self.rng.choice(numeric)
            head = lines[i].rstrip("\n").rsplit(": ", 1)[0]
            lines[i] = f"{head}: {self.rng.choice(YAML_11)}\n"
            return "".join(lines)
        i = self.rng.randrange(len(text) + 1)
        j = min(len(text), i + self.rng.randint(0, 20))
        junk = "".join(self.rng.choice("{}[]:,-#&*!|>'\"%@` \n\t\x07\x1b01ab") for _ in range(6))
        return text[:i] + junk[: self.rng.randint(0, 6)] + text[j:]


# ----------------------------------------------------------------------------- the worker
def check_plan(plan: dict, spec) -> list[str]:
    """What is wrong with an accepted plan's own arithmetic (empty when nothing is)."""
    bad = []
    try:
        json.dumps(plan, allow_nan=False)
    except ValueError:
        bad.append("a non-finite number in the plan")
    lay, mem, perf = plan["layout"], plan["memory"], plan["performance"]
    world = spec.cluster.nodes * spec.cluster.gpus_per_node
    if lay["data"] * lay["tensor"] * lay["pipeline"] != world:
        bad.append(f"data × tensor × pipeline ≠ {world} GPUs")
    if lay["micro_batch_size"] * lay["grad_accum_steps"] * lay["data"] != (
        spec.train.global_batch_size
    ):
        bad.append("micro × accumulation × data ≠ global_batch_size")
    parts = mem["per_gpu_bytes"]
    summed = sum(parts[k] for k in ("params", "grads", "optimizer", "activations", "temporary"))
    if summed != parts["total"]:
        bad.append("memory parts do not sum to the total")
    if any(v < 0 for v in parts.values()):
        bad.append("negative memory")
    if mem["fits"] != (mem["headroom_bytes"] >= 0 and mem.get("host_bytes", 0) >= 0):
        bad.append("fits disagrees with the headroom")
    if mem["fits"] and parts["total"] > mem["capacity_bytes"]:
        bad.append("fits, but the total exceeds the capacity")
    if len(mem["stages"]) != lay["pipeline"] or sum(s["layers"] for s in mem["stages"]) != (
        spec.model.n_layers
    ):
        bad.append("stages do not hold the layers")
    step = perf["step_time_s"]
    if not (isinstance(step, (int, float)) and math.isfinite(step) and step > 0):
        bad.append(f"step time {step!r}")
    else:
        tokens = spec.train.global_batch_size * spec.train.seq_len
        if not math.isclose(perf["tokens_per_s"], tokens / step, rel_tol=2e-3):
            bad.append("tokens_per_s ≠ batch tokens / step time")
        if not math.isclose(perf["time_to_train_s"], spec.train.total_steps * step, rel_tol=2e-3):
            bad.append("time_to_train_s ≠ steps × step time")
    return bad


def classify(path: str, env: dict) -> tuple[str, str]:
    from llmspec.cli.output import print_error
    from llmspec.errors import SpecError, UserError
    from llmspec.plan import make_plan
    from llmspec.spec.load import load_located

    try:
        try:
            loaded = load_located(path, env=env)
        except SpecError as exc:
            saved, sys.stderr = sys.stderr, io.StringIO()
            try:
                print_error(exc)  # the CLI's printer must cope with whatever the spec held
            finally:
                sys.stderr = saved
            unlocated = [p.format() for p in exc.problems if p.line is None]
            return ("unlocated", unlocated[0]) if unlocated else ("rejected", "")
        try:
            plan = make_plan(loaded.spec)
        except UserError as exc:
            return "plan refused", str(exc)
        bad = check_plan(plan.to_dict(), loaded.spec)
        if bad:
            return "bad arithmetic", "; ".join(bad)
        return "planned", ""
    except Exception:  # noqa: BLE001 - counting these is the point
        return "traceback", traceback.format_exc(limit=-4)


def _serve(conn, env: dict) -> None:
    while True:
        path = conn.recv()
        if path is None:
            return
        conn.send(classify(path, env))


class Worker:
    def __init__(self, env: dict):
        self.env = env
        self.start()

    def start(self) -> None:
        ctx = mp.get_context("fork")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, self.env), daemon=True)
        self.proc.start()

    def run(self, path: str, timeout: float) -> tuple[str, str, float]:
        started = time.perf_counter()
        self.conn.send(path)
        if self.conn.poll(timeout):
            kind, detail = self.conn.recv()
            return kind, detail, time.perf_counter() - started
        self.proc.kill()
        self.proc.join()
        self.start()
        return "hang", f"no answer in {timeout:g} s", time.perf_counter() - started

    def close(self) -> None:
        self.conn.send(None)
        self.proc.join(5)


ORDER = ["traceback", "hang", "unlocated", "bad arithmetic", "plan refused", "rejected", "planned"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=10_000, help="mutated specs (default 10000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the mutations")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per spec")
    parser.add_argument("--keep", metavar="DIR", help="copy the specs that fail a target here")
    parser.add_argument("--show", type=int, default=3, help="failures to print per kind")
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    mutator = Mutator(rng, field_names())
    work = Path(tempfile.mkdtemp(prefix="llmspec-fuzz-"))
    (work / "base.yaml").write_text((ROOT / "specs" / "tiny-cpu.yaml").read_text())
    if hasattr(os, "mkfifo"):
        os.mkfifo(work / "pipe.yaml")
    env = {"BASE": str(work), "HOME": "/home/fuzz"}
    worker = Worker(env)
    counts: Counter[str] = Counter()
    shown: Counter[str] = Counter()
    slowest = 0.0
    started = time.perf_counter()
    try:
        for i in range(args.n):
            spec = work / "spec.yaml"
            spec.write_text(mutator.spec(), errors="surrogatepass")
            kind, detail, seconds = worker.run(str(spec), args.timeout)
            counts[kind] += 1
            slowest = max(slowest, seconds)
            if kind in ORDER[:5]:
                if args.keep:
                    Path(args.keep).mkdir(parents=True, exist_ok=True)
                    shutil.copy(spec, Path(args.keep) / f"{kind.replace(' ', '-')}-{i}.yaml")
                if shown[kind] < args.show:
                    shown[kind] += 1
                    print(f"--- {kind} (spec {i}):\n{detail.strip()[-1500:]}\n", file=sys.stderr)
    finally:
        worker.close()
        shutil.rmtree(work, ignore_errors=True)
    elapsed = time.perf_counter() - started
    print(f"{args.n} mutated specs, seed {args.seed}, timeout {args.timeout:g} s per spec")
    for kind in ORDER:
        print(f"  {kind:<15} {counts[kind]:>6}")
    print(
        f"  slowest spec {slowest:.2f} s; {elapsed:.0f} s in all ({args.n / elapsed:.0f} specs/s)"
    )
    return 0 if not any(counts[k] for k in ORDER[:4]) else 1


if __name__ == "__main__":
    sys.exit(main())
