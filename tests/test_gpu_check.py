"""benchmarks/gpu_check.py: without a GPU it says so and exits 0; its spec builds and plans."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_without_cuda_it_exits_cleanly_with_one_line():
    result = run()
    assert result.returncode == 0, result.stderr
    assert result.stdout == "no CUDA device: nothing to check\n"


def test_dry_run_builds_the_check_spec_and_prints_the_plan(tmp_path):
    result = run("--gpu", "h100-sxm", "--dry-run", "--keep", str(tmp_path))
    assert result.returncode == 0, result.stderr
    project = tmp_path / "gpu-check-h100-sxm"
    assert (project / "train.py").is_file() and (project / "plan.json").is_file()
    assert "peak memory GiB: planned" in result.stdout
    assert "tokens/s: planned" in result.stdout


def test_catalog_names_of_cuda_device_names():
    sys.path.insert(0, str(SCRIPT.parent))
    from gpu_check import catalog_name

    assert catalog_name("NVIDIA H200", 143e9) == "h200"
    assert catalog_name("NVIDIA H100 80GB HBM3", 85e9) == "h100-sxm"
    assert catalog_name("NVIDIA A100-SXM4-80GB", 85e9) == "a100-80gb"
    assert catalog_name("NVIDIA A100-SXM4-40GB", 42e9) == "a100-40gb"
    assert catalog_name("NVIDIA GeForce RTX 4090", 25e9) is None
