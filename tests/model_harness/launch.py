"""Launch a harness script on N local processes (torchrun, gloo, one thread each)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

HARNESS = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(script: str, *args: str, nproc: int = 2, timeout_s: int = 240) -> str:
    env = dict(os.environ, OMP_NUM_THREADS="1", DS_ACCELERATOR="cpu")
    env.setdefault(
        "TORCH_EXTENSIONS_DIR",
        str(Path.home() / ".cache/llmspec/torch_extensions/torch2.13.0-ds0.19.8"),
    )
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
        "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
        str(HARNESS / script), *args,
    ]  # fmt: skip
    result = subprocess.run(
        ["timeout", str(timeout_s), *command],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(
            f"{script} failed (exit {result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-8000:]}"
        )
    return result.stdout
