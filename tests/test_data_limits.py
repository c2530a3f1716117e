"""Inputs that used to kill data preparation: huge documents, binary without NUL bytes, a
worker that dies. Each is skipped and counted, or a clear error, never an OOM or a hang."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap

import pytest
from data_harness.corpus import random_document, vocabulary, write
from data_harness.project import render_data_files, run_prepare

from llmspec.spec.schema import Spec

CAP = 4096  # data.max_document_size of these tests


def limits_spec(**data) -> Spec:
    base = {
        "sources": [{"path": "corpus/*.txt"}, {"path": "corpus/*.jsonl", "text_field": "body"}],
        "tokenizer": {"kind": "bpe", "vocab_size": 300},
        "max_document_size": CAP,
        "shard_size": "4KB",
        "validation_fraction": 0.0,
    }
    return Spec.model_validate(
        {"name": "limits", "data": {**base, **data}, "train": {"seq_len": 16}}
    )


def one_line(rng: random.Random, vocab: list[str], n_bytes: int) -> str:
    """Words on one line, exactly n_bytes long (ASCII, no trailing space)."""
    text = " ".join(rng.choices(vocab, k=n_bytes // 3 + 1))[:n_bytes]
    return text[:-1] + "x" if text.endswith(" ") else text


def test_documents_over_the_cap_are_skipped_unread_and_counted(tmp_path):
    rng = random.Random(5)
    vocab = vocabulary(rng)
    corpus = tmp_path / "spec" / "corpus"
    kept = []
    for name, size in (("at-cap", CAP), ("small", 900)):
        text = one_line(rng, vocab, size)
        write(corpus / f"{name}.txt", text)
        kept.append(text)
    write(corpus / "over-cap.txt", one_line(rng, vocab, CAP + 1))
    write(corpus / "huge.txt", one_line(rng, vocab, 50 * CAP))
    small_records = [random_document(rng, vocab, 60) for _ in range(2)]
    lines = [
        json.dumps({"body": small_records[0]}),
        json.dumps({"body": one_line(rng, vocab, 3 * CAP)}),  # one record over the cap ...
        json.dumps({"body": small_records[1]}),  # ... and reading resumes after it
        json.dumps({"body": one_line(rng, vocab, 2 * CAP)}),  # the last line, no newline
    ]
    write(corpus / "records.jsonl", "\n".join(lines))
    kept += small_records
    project = tmp_path / "project"
    render_data_files(limits_spec(), project, tmp_path / "spec")
    run_prepare(project, "--workers", "1")
    docs = json.loads((project / "out/data/manifest.json").read_text())["documents"]
    assert docs["skipped"]["too_large"] == 4
    assert docs["read"] == 8 and docs["kept"] == 4
    stages = project / "out/data/stages"
    assert (stages / "documents.bin").read_bytes() == "".join(kept).encode()


def test_a_binary_file_without_nul_bytes_is_skipped_as_binary(tmp_path):
    rng = random.Random(9)
    vocab = vocabulary(rng)
    corpus = tmp_path / "spec" / "corpus"
    noise = bytes(b or 1 for b in rng.randbytes(3000))  # random bytes, no NUL among them
    write(corpus / "noise.txt", noise)
    latin1 = "Le café était fermé ; il a déjà commencé à pleuvoir sur la forêt. " * 20
    write(corpus / "latin1.txt", latin1.encode("latin-1"))  # not UTF-8, but text
    write(corpus / "plain.txt", random_document(rng, vocab, 200))
    project = tmp_path / "project"
    render_data_files(limits_spec(dedup={"exact": True, "near": None}), project, tmp_path / "spec")
    run_prepare(project, "--workers", "1")
    docs = json.loads((project / "out/data/manifest.json").read_text())["documents"]
    assert docs["skipped"]["binary"] == 1
    assert docs["kept"] == 2 and docs["decode_errors_replaced"] == 2  # noise and latin1


def test_memory_stays_bounded_with_a_huge_one_line_document(tmp_path):
    """A 16 MB one-line document (as text and as a JSON-lines record) under a 1 MB cap:
    both skipped, and the whole run stays within a few hundred MB (without the cap a
    21 MB document took 3.1 GB)."""
    rng = random.Random(2)
    vocab = vocabulary(rng)
    corpus = tmp_path / "spec" / "corpus"
    huge = one_line(rng, vocab, 16 * 2**20)
    write(corpus / "huge.txt", huge)
    write(corpus / "huge.jsonl", json.dumps({"body": huge}) + "\n")
    write(corpus / "small.txt", random_document(rng, vocab, 300))
    del huge
    project = tmp_path / "project"
    spec = limits_spec(max_document_size="1MB")
    render_data_files(spec, project, tmp_path / "spec")
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork and exec,
    # so it reads at least the size of this pytest process (~600 MB once peft/trl are loaded).
    measure = (
        "import re, resource, runpy, sys; sys.argv = ['prepare_data.py', '--workers', '1']; "
        "runpy.run_path('prepare_data.py', run_name='__main__'); "
        "own = int(re.search(r'VmHWM:\\s+(\\d+) kB', open('/proc/self/status').read()).group(1)); "
        "print(max(own, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))"
    )  # the largest of this process and its worker processes, in KiB
    result = subprocess.run(
        [sys.executable, "-c", measure], cwd=project, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    peak_mib = int(result.stdout.split()[-1]) / 1024  # Linux: KiB
    print(f"\npeak RSS with two 16 MB documents under a 1 MB cap: {peak_mib:.0f} MiB")
    docs = json.loads((project / "out/data/manifest.json").read_text())["documents"]
    assert docs["skipped"]["too_large"] == 2 and docs["kept"] == 1
    assert peak_mib < 600


@pytest.mark.timeout(120)
def test_a_dead_worker_is_a_clear_error_not_a_hang(tmp_path):
    """A worker killed mid-task (here: os._exit, as the OOM killer would) must end the run."""
    project = tmp_path / "project"
    render_data_files(limits_spec(), project, tmp_path / "spec")
    (project / "kill_a_worker.py").write_text(
        textwrap.dedent(
            """
            import os

            import prepare_data

            if __name__ == "__main__":
                with prepare_data.worker_pool(2) as imap:
                    print(list(imap(os._exit, [3, 3, 3, 3])))
            """
        )
    )
    result = subprocess.run(
        [sys.executable, "kill_a_worker.py"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 1
    assert "a worker process died" in result.stderr
    assert "Traceback" not in result.stderr


def test_prepare_data_writes_beside_the_project_whatever_the_working_directory(tmp_path):
    """As train.py: the default out/ is the project's, not the caller's working directory."""
    import subprocess
    import sys

    from data_harness.project import render_data_files

    from llmspec.spec.schema import Spec

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(6):
        (corpus / f"doc{i}.txt").write_text(f"document {i} " + "words and more words " * (20 + i))
    spec = Spec.model_validate(
        {
            "name": "out-dir",
            "model": {"vocab_size": 512, "max_seq_len": 64},
            "data": {
                "sources": [{"path": "corpus/*.txt"}],
                "tokenizer": {"kind": "bpe", "vocab_size": 300},
                "dedup": {"exact": True, "near": None},
                "validation_fraction": 0.2,
            },
            "train": {"seq_len": 16},
        }
    )
    project = tmp_path / "project"
    render_data_files(spec, project, spec_dir=tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = subprocess.run(
        [sys.executable, str(project / "prepare_data.py"), "--workers", "1"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (project / "out" / "data" / "manifest.json").is_file()
    assert not (elsewhere / "out").exists()
