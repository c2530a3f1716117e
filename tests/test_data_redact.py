"""data.redact: e-mail addresses, phone numbers and IP addresses planted in a corpus are
replaced before dedup and tokenizing, and the manifest counts exactly the planted ones."""

from __future__ import annotations

import json
import random

import pytest
from data_harness.project import render_data_files, run_prepare

from llmspec.spec.schema import Spec

EMAILS = ["ada.lovelace@example.org", "x_y+tag@mail.co.uk", "root@localhost.localdomain"]
PHONES = ["(555) 123-4567", "+1 555.987.6543", "555-000-1111"]
IPS = ["192.168.0.1", "10.0.0.255", "8.8.8.8"]
# look alike, but are not: a version string, a long number, a date, an address without a dot
DECOYS = ["version 1.2.3.4.5", "id 5551234567890", "2026-12-02", "user@localhost"]


def corpus(folder, n=60, seed=0):
    rng = random.Random(seed)
    planted = {"email": 0, "phone": 0, "ip": 0}
    lines = []
    for i in range(n):
        words = [f"word{rng.randrange(1000)}" for _ in range(30)]
        for kind, pool in (("email", EMAILS), ("phone", PHONES), ("ip", IPS)):
            for _ in range(rng.randrange(3)):
                words.insert(rng.randrange(len(words)), rng.choice(pool))
                planted[kind] += 1
        words.insert(rng.randrange(len(words)), rng.choice(DECOYS))
        lines.append(json.dumps({"text": f"doc {i}: " + " ".join(words)}))
    (folder / "corpus").mkdir()
    (folder / "corpus" / "docs.jsonl").write_text("\n".join(lines) + "\n")
    return planted


@pytest.mark.parametrize("kinds", [["email", "phone", "ip"], ["ip"]])
def test_planted_personal_data_is_replaced_and_counted(kinds, tmp_path):
    planted = corpus(tmp_path)
    spec = Spec.model_validate({
        "model": {"vocab_size": 512},
        "data": {"sources": [{"path": "corpus/*.jsonl"}], "redact": kinds,
                 "dedup": {"exact": True, "near": None}, "validation_fraction": 0.1,
                 "tokenizer": {"vocab_size": 512}},
        "train": {"seq_len": 64},
    })  # fmt: skip
    project = tmp_path / "project"
    render_data_files(spec, project, tmp_path)
    run_prepare(project)
    manifest = json.loads((project / "out" / "data" / "manifest.json").read_text())
    assert manifest["documents"]["redacted"] == {k: planted[k] for k in kinds}
    text = (project / "out" / "data" / "stages" / "documents.bin").read_bytes().decode()
    pools = {"email": EMAILS, "phone": PHONES, "ip": IPS}
    for kind in ("email", "phone", "ip"):
        present = any(value in text for value in pools[kind])
        assert present == (kind not in kinds), kind
        assert (f"[{kind}]" in text) == (kind in kinds)
    for decoy in DECOYS:  # nothing else was touched
        assert decoy in text
