"""Hostile strings in a spec stay inert in the project built from it.

A spec whose data paths, JSON text field and tracking project (and the folders
of the spec and of the output) contain quotes, newlines, `$(...)`, backticks,
`; rm -rf`, Python and jinja syntax and unicode is built for real. Every shell
file must parse and every Python file compile; the shell launchers and the real
data preparation are then executed (the training launchers are stand-ins) and
no file named PWNED may appear anywhere. Where the text is in a file it must be
a literal: a Python string or comment, a comment or single-quoted word in shell.
"""

from __future__ import annotations

import ast
import io
import json
import os
import py_compile
import shlex
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest
import yaml

from llmspec.pipeline import build_project

MARK = "PWNED"
PAYLOADS = [
    "$(touch PWNED)",
    "`touch PWNED`",
    "; touch PWNED; rm -rf /nonexistent-llmspec ;",
    "'; touch PWNED; echo '",
    '"; touch PWNED; echo "',
    "line one\ntouch PWNED\n",
    "''' + __import__('os').system('touch PWNED') + '''",
    '""" + __import__("os").system("touch PWNED") + """',
    "{__import__('os').system('touch PWNED')} {{ 7 * 7 }} {% raw %}",
    "\\'; touch PWNED #",
    "ünïcødé \u202e 🚀 PWNED",
]
FOLDER = "dir $(touch PWNED) `touch PWNED` 'q\" ü\n; touch PWNED"  # a folder name (no slash)


def hostile_spec(folder: Path) -> Path:
    spec = yaml.safe_load((Path(__file__).parents[1] / "specs" / "tiny-cpu.yaml").read_text())
    corpus = folder / "corpus"
    corpus.mkdir()
    for i in range(12):  # a small real corpus, so that data preparation runs to the end
        words = " ".join(f"w{(i * 7 + j) % 50}" for j in range(400))
        (corpus / f"doc{i}.txt").write_text(f"document {i}\n{words}\n")
    # The real corpus by absolute path: the hostile folder name reaches prepare_data.py too.
    spec["data"]["sources"] = [{"path": f"{corpus}/*.txt"}] + [
        {"path": f"corpus/{payload}*.txt"} for payload in PAYLOADS
    ]
    spec["data"]["sources"].append({"path": "corpus/x.jsonl", "text_field": PAYLOADS[6]})
    spec["data"]["tokenizer"] = {"kind": "bpe", "vocab_size": 300}
    spec["model"]["vocab_size"] = 300
    spec["tracking"] = {"tensorboard": True, "project": " ".join(PAYLOADS)}
    path = folder / "hostile.yaml"
    path.write_text(yaml.safe_dump(spec, allow_unicode=True, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def hostile_project(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("hostile")
    spec_dir = base / FOLDER
    spec_dir.mkdir()
    spec_path = hostile_spec(spec_dir)
    out = base / f"out {FOLDER}"
    build_project(spec_path, out)
    return out


def no_pwned_anywhere(*roots: Path) -> None:
    for root in {*roots, Path.cwd(), Path.home()}:
        found = [str(p) for p in root.rglob(MARK)] if root != Path.home() else []
        found += [str(root / MARK)] if (root / MARK).exists() else []
        assert not found, f"a payload ran: {found}"


def test_every_file_parses(hostile_project):
    files = [p for p in hostile_project.rglob("*") if p.is_file()]
    assert {"launch.sh", "train.py", "prepare_data.py", "README.md"} <= {p.name for p in files}
    for path in files:
        if path.suffix in (".sh", ".sbatch"):
            check = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
            assert check.returncode == 0, f"{path.name}: {check.stderr}"
        elif path.suffix == ".py":
            py_compile.compile(str(path), doraise=True)
        elif path.suffix == ".json":
            json.loads(path.read_text())


def test_hostile_text_in_python_is_only_literals_and_comments(hostile_project):
    seen = 0
    for path in sorted(hostile_project.glob("*.py")):
        for token in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
            if MARK not in token.string:
                continue
            seen += 1
            assert token.type in (tokenize.STRING, tokenize.COMMENT), (path.name, token)
            if token.type == tokenize.STRING:
                value = ast.literal_eval(token.string)  # a plain literal, never an f-string
                assert isinstance(value, (str, bytes)), (path.name, token)
    assert seen, "the hostile strings should reach the generated Python (sources, project)"


def test_hostile_text_in_shell_is_only_comments_or_quoted_words(hostile_project):
    for path in sorted(hostile_project.iterdir()):
        if path.suffix not in (".sh", ".sbatch") and path.name != "hostfile":
            continue
        for line in path.read_text().splitlines():
            if MARK in line and not line.lstrip().startswith("#"):
                words = shlex.split(line, comments=True)
                assert any(MARK in word for word in words), (path.name, line)
                assert all(shlex.quote(word) in line for word in words if MARK in word)


def test_running_the_launchers_and_data_preparation_runs_no_payload(hostile_project, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for program in ("deepspeed", "torchrun", "srun"):  # training itself is not under test here
        stub = bin_dir / program
        stub.write_text(f'#!/bin/sh\necho "{program} $*" >> "$STANDIN_LOG"\n')
        stub.chmod(0o755)
    scontrol = bin_dir / "scontrol"
    scontrol.write_text("#!/bin/sh\necho localhost\n")
    scontrol.chmod(0o755)
    log = tmp_path / "calls.log"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "PYTHON": sys.executable,
        "STANDIN_LOG": str(log),
        "SLURM_SUBMIT_DIR": str(hostile_project),
        "SLURM_JOB_NODELIST": "localhost",
        "SLURM_NNODES": "1",
        "SLURM_JOB_ID": "1",
    }
    for script in ("launch.sh", "launch_torchrun.sh", "slurm.sbatch"):
        proc = subprocess.run(
            ["bash", str(hostile_project / script), MARK],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, f"{script}: {proc.stderr[-3000:]}"
    manifest = json.loads((hostile_project / "out" / "data" / "manifest.json").read_text())
    assert manifest["documents"]["kept"] > 0  # the real data preparation ran to the end
    assert len(log.read_text().splitlines()) == 3
    no_pwned_anywhere(hostile_project, hostile_project.parent, tmp_path)
