"""data.sources[].weight: the packed training stream draws its sources in proportion to their
weights by tokens (small sources repeated, large ones cut), recorded in the manifest; the
validation split keeps the corpus as it is."""

from __future__ import annotations

import hashlib
import json
import random

import numpy as np
import pytest
from data_harness.project import render_data_files, run_prepare

from llmspec.spec.schema import Spec


def write_source(folder, name, n_docs, word, seed):
    rng = random.Random(seed)
    docs = [
        " ".join(f"{word}{rng.randrange(50)}" for _ in range(rng.randint(20, 60)))
        for _ in range(n_docs)
    ]
    (folder / name).mkdir(parents=True)
    (folder / name / "docs.jsonl").write_text(
        "\n".join(json.dumps({"text": d}) for d in docs) + "\n"
    )


def prepare(tmp_path, weights, name="project"):
    spec = Spec.model_validate({
        "model": {"vocab_size": 512},
        "data": {"sources": [{"path": "big/*.jsonl", "weight": weights[0]},
                             {"path": "small/*.jsonl", "weight": weights[1]}],
                 "dedup": {"exact": True, "near": None}, "validation_fraction": 0.05,
                 "tokenizer": {"vocab_size": 512}},
        "train": {"seq_len": 32},
    })  # fmt: skip
    project = tmp_path / name
    render_data_files(spec, project, tmp_path)
    run_prepare(project)
    return project / "out" / "data"


@pytest.mark.parametrize("weights", [(1.0, 1.0), (1.0, 3.0), (4.0, 1.0)])
def test_train_tokens_split_as_the_weights_say(weights, tmp_path):
    write_source(tmp_path, "big", 600, "alpha", 0)  # ~4x the tokens of the small one
    write_source(tmp_path, "small", 150, "beta", 1)
    data = prepare(tmp_path, weights)
    manifest = json.loads((data / "manifest.json").read_text())
    if weights == (1.0, 1.0):
        assert "mixture" not in manifest  # no weights, no mixing code
        return
    mix = manifest["mixture"]
    want = [w / sum(weights) for w in weights]
    for s in ("0", "1"):
        assert mix[s]["fraction"] == pytest.approx(want[int(s)], abs=0.01), mix
    # the shards hold what the manifest says: count each source's marker tokens in them
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(data / "tokenizer.json"))
    ids = np.concatenate(
        [
            np.fromfile(data / f, dtype=manifest["dtype"])
            for f in manifest["splits"]["train"]["files"]
        ]
    )
    text = tok.decode(ids.tolist())
    alpha, beta = text.count("alpha"), text.count("beta")
    assert alpha / (alpha + beta) == pytest.approx(want[0], abs=0.03)
    # and the same spec prepares the same bytes again
    again = prepare(tmp_path, weights, name="again")
    digest = lambda d: {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in d.glob("*.bin")}  # noqa: E731
    assert digest(data) == digest(again)
