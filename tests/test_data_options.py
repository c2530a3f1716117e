"""Each data option's code is emitted only when the spec uses it, and each variant still runs.

The generated prepare_data.py / data.py are rendered from the partials in
templates/_prepare_data/ and templates/_data/; these tests render specs that differ
in one option at a time, check which option's code each file holds, and run the
variants the other data tests do not run on the planted corpus.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from data_harness import fixtures
from data_harness.corpus import planted_spec
from data_harness.fixtures import prepare_planted
from data_harness.project import render_data_files
from tokenizers import Tokenizer

from llmspec.spec.schema import Spec

prepared = fixtures.prepared

# Code that belongs to one option: it must appear exactly when the option is in use.
PREPARE_CODE = {
    "jsonl": ["json.loads(text)", '"bad_unicode"\n'],
    "text_and_jsonl": ["text_field is None"],
    "format_by_extension": ["def text_field("],
    "trained_tokenizer": ["train_from_iterator", "TOKENIZER_VOCAB_SIZE"],
    "bpe": ["BpeTrainer", "ByteLevel"],
    "unigram": ["UnigramTrainer", "Metaspace"],
    "wordpiece": ["WordPieceTrainer", "BertPreTokenizer"],
    "lowercase": ["Lowercase()"],
    "given_tokenizer": ["TOKENIZER_PATH", '"[SEP]"'],
    "exact_dedup": ["def exact_task(", '("exact", tasks)'],
    "near_dedup": ["def minhash(", "def lsh_task(", "LSH_BANDS", "def clusters_task("],
    "blocklist": ["BLOCKLIST", "load_blocklist()"],
    "max_chars": ["MAX_CHARS"],
    "unicode_normalization": ["unicodedata"],
    "packed": ["dropped_tail_tokens"],
    "unpacked": ["index_files", "self.pending.popleft()"],
    "dask": ["def dask_cluster(", "DASK_SCHEDULER_ADDRESS"],
    "ray": ["def ray_cluster(", "RAY_ADDRESS"],
    "cluster": ["def on_worker(", "import sys\n"],
}
DATA_CODE = {
    "packed": ["reshape(-1, self.seq_len)"],
    "unpacked": ["BUCKET_BATCHES", "IGNORE_INDEX", "def lengths("],
}
TEXT = {"path": "corpus/**/*.txt"}
JSONL = {"path": "corpus/*.jsonl", "text_field": "body"}
NO_DEDUP = {"exact": False, "near": None}

# name: (data overrides of planted_spec, the options that spec uses)
VARIANTS = {
    "planted": ({}, {"jsonl", "text_and_jsonl", "bpe", "exact_dedup", "near_dedup", "blocklist"}),
    "jsonl_only": (
        {"sources": [JSONL], "dedup": NO_DEDUP, "filters": {}, "packing": False},
        {"jsonl", "bpe", "unpacked"},
    ),
    "text_only": (
        {
            "sources": [TEXT],
            "dedup": NO_DEDUP,
            "tokenizer": {"kind": "unigram", "vocab_size": 500},
            "filters": {"min_chars": 20, "max_chars": 1500},
        },
        {"unigram", "max_chars"},
    ),
    "wordpiece": (
        {"tokenizer": {"kind": "wordpiece", "vocab_size": 500, "lowercase": True}},
        {"jsonl", "text_and_jsonl", "wordpiece", "lowercase", "exact_dedup", "near_dedup"}
        | {"blocklist"},
    ),
    "given_tokenizer": (
        {"sources": [TEXT], "tokenizer": {"path": "given.json"}, "normalize": {"unicode": "none"}},
        {"given_tokenizer", "exact_dedup", "near_dedup", "blocklist"},
    ),
    "dask": (
        {"engine": "dask"},
        {"dask", "cluster", "jsonl", "text_and_jsonl", "bpe", "exact_dedup"}
        | {"near_dedup", "blocklist"},
    ),
    "ray": (
        {"engine": "ray"},
        {"ray", "cluster", "jsonl", "text_and_jsonl", "bpe", "exact_dedup"}
        | {"near_dedup", "blocklist"},
    ),
    "format_by_extension": (
        {"sources": [{"path": "corpus/*", "text_field": "body"}, TEXT]},
        {"jsonl", "text_and_jsonl", "format_by_extension", "bpe", "exact_dedup", "near_dedup"}
        | {"blocklist"},
    ),
}
ALWAYS = {"packed", "unicode_normalization", "trained_tokenizer"}  # unless a variant opts out


def options_in_use(name: str) -> set[str]:
    overrides, used = VARIANTS[name]
    used = set(used)
    if overrides.get("packing") is False:
        used.discard("packed")
    else:
        used.add("packed")
    if overrides.get("normalize", {}).get("unicode") != "none":
        used.add("unicode_normalization")
    if "given_tokenizer" not in used:
        used.add("trained_tokenizer")
    return used


def render(name: str, base: Path) -> dict[str, str]:
    overrides, _ = VARIANTS[name]
    spec = Spec.model_validate(planted_spec(**overrides))
    return render_data_files(spec, base / name / "project", base / "spec")


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_each_generated_file_holds_only_the_code_of_its_options(name, tmp_path):
    files = render(name, tmp_path)
    used = options_in_use(name)
    # prepare_data.py is the driver, data_stages.py the stage code: one program.
    prepare = files["prepare_data.py"] + files["data_stages.py"]
    for text, table in ((prepare, PREPARE_CODE), (files["data.py"], DATA_CODE)):
        for option, snippets in table.items():
            for snippet in snippets:
                assert (snippet in text) == (option in used), (option, snippet)


def test_every_variant_passes_ruff(tmp_path, root):
    paths = []
    for name in VARIANTS:
        render(name, tmp_path)
        files = ("prepare_data.py", "data_stages.py", "data.py")
        paths += [str(tmp_path / name / "project" / f) for f in files]
    config = str(root / "pyproject.toml")
    for args in (["check"], ["format", "--check"]):
        result = subprocess.run(
            [sys.executable, "-m", "ruff", *args, "--config", config, *paths],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stdout + result.stderr


def kept_documents(data_dir: Path) -> list[str]:
    """The kept documents of stage 1, in order."""
    offsets = np.fromfile(data_dir / "stages/documents.idx", dtype="<i8")
    raw = (data_dir / "stages/documents.bin").read_bytes()
    return [raw[a:b].decode() for a, b in zip(offsets[:-1], offsets[1:], strict=True)]


def assert_counts_add_up(docs: dict) -> None:
    assert docs["read"] == (
        docs["kept"]
        + docs["exact_duplicates"]
        + docs["near_duplicates"]
        + docs["filtered"]
        + sum(docs["skipped"].values())
    )


def test_jsonl_only_unpacked_without_dedup_runs(tmp_path, prepared):
    run = prepare_planted(tmp_path, workers=1, **VARIANTS["jsonl_only"][0])
    docs = run.manifest["documents"]
    assert_counts_add_up(docs)
    records = (run.planted.spec_dir / "corpus/records.jsonl").read_bytes().split(b"\n")
    assert docs["read"] == sum(1 for r in records if r.strip())  # every record, no file
    full = prepared.manifest["documents"]["skipped"]  # the only JSON lines are these records
    assert docs["skipped"]["bad_json"] == full["bad_json"] > 0
    assert docs["skipped"]["bad_unicode"] == full["bad_unicode"] == 1
    assert docs["exact_duplicates"] == docs["near_duplicates"] == 0
    # Unpacked shards hold every kept record, cut in seq_len pieces: rejoin and decode them.
    tokenizer = Tokenizer.from_file(str(run.data_dir / "tokenizer.json"))
    eos = run.manifest["special_tokens"]["eos"]
    texts = []
    for split in ("train", "val"):
        files = run.manifest["splits"][split]["files"]
        dtype = np.dtype(run.manifest["dtype"])
        stream = np.concatenate([np.fromfile(run.data_dir / f, dtype=dtype) for f in files])
        assert stream[-1] == eos
        pieces = np.split(stream, np.flatnonzero(stream == eos) + 1)[:-1]
        texts += [tokenizer.decode(p[:-1].tolist()) for p in pieces]
    assert sorted(texts) == sorted(kept_documents(run.data_dir))
    assert len(texts) == docs["kept"] and set(texts) <= run.planted.kept_texts


def test_text_only_max_chars_drops_exactly_the_long_documents(tmp_path):
    overrides = VARIANTS["text_only"][0]
    capped = prepare_planted(tmp_path / "capped", workers=1, **overrides)
    filters = {**overrides["filters"], "max_chars": None}
    uncapped = prepare_planted(
        tmp_path / "uncapped", workers=1, **{**overrides, "filters": filters}
    )
    limit = overrides["filters"]["max_chars"]
    every = kept_documents(uncapped.data_dir)
    long = [t for t in every if len(t) > limit]
    assert long and len(long) < len(every)  # the cap bites, but not on everything
    docs = capped.manifest["documents"]
    assert_counts_add_up(docs)
    assert docs["filtered_by"]["too_long"] == len(long)
    assert kept_documents(capped.data_dir) == [t for t in every if len(t) <= limit]
    assert docs["skipped"]["bad_json"] == docs["skipped"]["bad_unicode"] == 0
    assert capped.manifest["special_tokens"] == {"pad": 0, "eos": 1, "unk": 2, "mask": 3}


def test_format_by_extension_reads_the_same_documents(tmp_path, prepared):
    """corpus/* leaves the format to each path's extension: records.jsonl is JSON lines."""
    run = prepare_planted(tmp_path, workers=1, **VARIANTS["format_by_extension"][0])
    assert run.manifest["documents"] == run.planted.expected
    assert json.loads((run.data_dir / "manifest.json").read_text())["packing"] is True


def test_given_tokenizer_without_normalization_runs(tmp_path, prepared):
    spec_dir = tmp_path / "spec"
    spec_dir.mkdir()
    (spec_dir / "given.json").write_bytes((prepared.data_dir / "tokenizer.json").read_bytes())
    run = prepare_planted(tmp_path, workers=1, **VARIANTS["given_tokenizer"][0])
    given = (spec_dir / "given.json").read_bytes()
    assert (run.data_dir / "tokenizer.json").read_bytes() == given
    docs = run.manifest["documents"]
    assert_counts_add_up(docs)
    assert docs["skipped"]["bad_json"] == 0 and docs["kept"] > 0


def test_partials_are_included_never_emitted(tmp_path, root, monkeypatch):
    from llmspec.codegen.project import is_partial
    from llmspec.pipeline import build_project

    partials = sorted((root / "templates").glob("_*/*.j2"))
    assert len(partials) > 10 and all(
        is_partial(p.relative_to(root / "templates").as_posix()) for p in partials
    )
    assert not is_partial("prepare_data.py.j2") and not is_partial("configs/a.json.j2")
    monkeypatch.chdir(root)
    result = build_project("specs/tiny-cpu.yaml", tmp_path / "out")
    assert "prepare_data.py" in result.files and "data.py" in result.files
    assert not [f for f in result.files if any(part.startswith("_") for part in f.split("/"))]
