import os
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"
_SESSION_START = time.time()


@pytest.fixture
def root() -> Path:
    return ROOT


def pytest_sessionfinish(session, exitstatus):
    """Remove the CPU all-reduce buffers DeepSpeed left in /dev/shm during this session.

    DeepSpeed 0.19.8's shm.cpp creates one 67 MB file per rank and never unlinks it; train.py
    removes its own after the final barrier, but a rank that a test kills or that runs DeepSpeed
    in-process does not (two clean-clone runs left 36 files, 2.4 GB). Only files of this user
    created since the session started; by now every test process has exited, and unlinking a
    mapped file leaves its mappings intact."""
    shm = Path("/dev/shm")
    try:
        names = list(shm.glob("deepspeed_allreduce_buffer_*"))
    except OSError:
        return
    for path in names:
        try:
            st = path.stat()
            if st.st_uid == os.getuid() and st.st_ctime >= _SESSION_START:
                path.unlink()
        except OSError:
            pass
