"""The generated prepare_data.py on a planted corpus: counts, shard contents, determinism, crashes."""

from __future__ import annotations

import importlib.util
import itertools
import json
import random
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from data_harness import fixtures
from data_harness.corpus import plant_corpus, planted_spec
from data_harness.project import render_data_files, run_prepare, sibling_copy
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from llmspec.spec.schema import Spec

prepared = fixtures.prepared
prepared_unpacked = fixtures.prepared_unpacked


def shard_tokens(data_dir: Path, manifest: dict, split: str) -> np.ndarray:
    files = manifest["splits"][split]["files"]
    parts = [np.fromfile(data_dir / f, dtype=np.dtype(manifest["dtype"])) for f in files]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def split_at(ids: np.ndarray, eos: int) -> list[np.ndarray]:
    """Token runs between <eos> tokens; the last run (no <eos> after it) is included."""
    cuts = np.flatnonzero(ids == eos)
    return np.split(ids, cuts + 1)


def test_every_manifest_count_is_what_was_planted(prepared):
    docs = prepared.manifest["documents"]
    assert docs == prepared.planted.expected
    skipped = sum(docs["skipped"].values())
    assert docs["read"] == (
        docs["kept"]
        + docs["exact_duplicates"]
        + docs["near_duplicates"]
        + docs["filtered"]
        + skipped
    )
    assert "documents" in prepared.stderr and "read" in prepared.stderr  # the summary table


def test_shards_hold_exactly_the_tokens_the_manifest_claims(prepared):
    manifest, data_dir = prepared.manifest, prepared.data_dir
    itemsize = np.dtype(manifest["dtype"]).itemsize
    assert manifest["dtype"] == "uint16" and manifest["vocab_size"] <= 600
    on_disk = sorted(p.name for p in data_dir.glob("*.bin"))
    listed = sorted(f for s in manifest["splits"].values() for f in s["files"])
    assert on_disk == listed
    for split in manifest["splits"].values():
        sizes = [(data_dir / f).stat().st_size for f in split["files"]]
        assert sum(sizes) == split["tokens"] * itemsize
        assert split["tokens"] == split["sequences"] * manifest["seq_len"]
        assert all(size <= 8 * 1024 for size in sizes)  # data.shard_size: 8KB
    assert len(manifest["splits"]["train"]["files"]) > 3
    assert manifest["splits"]["val"]["sequences"] > 0
    assert manifest["special_tokens"] == {"pad": 0, "eos": 1, "unk": 2, "mask": 3}


def test_packed_sequences_decode_back_to_the_kept_documents(prepared):
    manifest, data_dir = prepared.manifest, prepared.data_dir
    tokenizer = Tokenizer.from_file(str(data_dir / "tokenizer.json"))
    eos = manifest["special_tokens"]["eos"]
    seen = []
    for split in ("train", "val"):
        ids = shard_tokens(data_dir, manifest, split)
        pieces = split_at(ids, eos)
        whole, tail = pieces[:-1], pieces[-1]
        texts = [tokenizer.decode(p[:-1].tolist(), skip_special_tokens=False) for p in whole]
        assert all(t in prepared.planted.kept_texts for t in texts), split
        # The stream ends inside a document: the tail shorter than seq_len was dropped.
        tail_text = tokenizer.decode(tail.tolist(), skip_special_tokens=False)
        dropped = manifest["splits"][split]["dropped_tail_tokens"]
        following = [k for k in prepared.planted.kept_texts if k.startswith(tail_text)]
        assert following and 0 <= dropped < manifest["seq_len"]
        seen += texts + following[:1]
    # Every kept document appears once, in exactly one split (a split by document).
    assert len(seen) == len(set(seen))
    assert set(seen) == prepared.planted.kept_texts
    assert manifest["splits"]["val"]["documents"] + manifest["splits"]["train"]["documents"] == 50


def test_two_runs_produce_identical_bytes(prepared, tmp_path):
    rerun = tmp_path / "project"
    render_data_files(prepared.spec, rerun, prepared.planted.spec_dir)
    run_prepare(rerun, "--workers", "1")  # another worker count: same bytes
    first = prepared.data_dir
    second = rerun / "out" / "data"
    names = sorted(p.name for p in first.iterdir() if p.is_file())
    assert names == sorted(p.name for p in second.iterdir() if p.is_file())
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_rerun_skips_every_finished_stage(prepared, tmp_path):
    project = sibling_copy(prepared.project, f"copy-{tmp_path.name}")
    before = (project / "out/data/manifest.json").read_bytes()
    result = run_prepare(project, "--workers", "1")
    for stage in ("documents", "tokenizer", "shards"):
        assert f"{stage}: unchanged since the last run, skipped" in result.stderr
    assert (project / "out/data/manifest.json").read_bytes() == before


def load_generated(project: Path, monkeypatch):
    """Import a generated prepare_data.py (and its data_stages.py) in this process."""
    monkeypatch.syspath_prepend(str(project))
    monkeypatch.delitem(sys.modules, "data_stages", raising=False)
    spec = importlib.util.spec_from_file_location(
        f"prepare_data_{id(project)}", project / "prepare_data.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module.console, "quiet", True)
    return module


class Crash(RuntimeError):
    pass


def test_a_crash_mid_shard_leaves_no_manifest_and_a_rerun_completes(
    prepared, tmp_path, monkeypatch
):
    project = tmp_path / "project"
    render_data_files(prepared.spec, project, prepared.planted.spec_dir)
    driver = load_generated(project, monkeypatch)
    module = driver.data_stages  # the shards are written there
    real_close = module.ShardWriter.close_shard
    shards_written = []

    def dying_close(self, keep: int) -> None:
        if len(shards_written) == 3:  # half of the fourth shard on disk, then the crash
            self.open.flush()
            self.open.truncate(keep * self.dtype.itemsize // 2)
            raise Crash(self.shard_name())
        real_close(self, keep)
        shards_written.append(self.files[-1])

    monkeypatch.setattr(module.ShardWriter, "close_shard", dying_close)
    with pytest.raises(Crash):
        driver.main(["--out", str(project / "out"), "--workers", "1"])
    data_dir = project / "out" / "data"
    assert not (data_dir / "manifest.json").exists()
    assert list(data_dir.glob("*.tmp")) and len(list(data_dir.glob("*.bin"))) == 3

    monkeypatch.setattr(module.ShardWriter, "close_shard", real_close)
    driver.main(["--out", str(project / "out"), "--workers", "1"])
    assert not list(data_dir.glob("*.tmp"))
    for path in prepared.data_dir.iterdir():
        if path.is_file():
            assert (data_dir / path.name).read_bytes() == path.read_bytes(), path.name


def test_a_changed_setting_reruns_the_stages_after_it(prepared, tmp_path, monkeypatch):
    """A new seq_len keeps documents and tokenizer but rewrites shards and manifest."""
    project = sibling_copy(prepared.project, f"copy-{tmp_path.name}")
    spec = Spec.model_validate({**planted_spec(), "train": {"seq_len": 32, "seed": 3}})
    render_data_files(spec, project, prepared.planted.spec_dir)
    result = run_prepare(project, "--workers", "1")
    assert "documents: unchanged" in result.stderr and "tokenizer: unchanged" in result.stderr
    assert "shards: unchanged" not in result.stderr
    manifest = json.loads((project / "out/data/manifest.json").read_text())
    assert manifest["seq_len"] == 32
    assert manifest["splits"]["train"]["tokens"] == manifest["splits"]["train"]["sequences"] * 32
    on_disk = sorted(p.name for p in (project / "out/data").glob("*.bin"))
    assert on_disk == sorted(f for s in manifest["splits"].values() for f in s["files"])


def test_unpacked_shards_store_each_document_with_offsets(prepared_unpacked):
    manifest, data_dir = prepared_unpacked.manifest, prepared_unpacked.data_dir
    assert manifest["packing"] is False
    tokenizer = Tokenizer.from_file(str(data_dir / "tokenizer.json"))
    eos, seq_len = manifest["special_tokens"]["eos"], manifest["seq_len"]
    texts = []
    for split in ("train", "val"):
        info = manifest["splits"][split]
        pieces = []
        for bin_name, idx_name in zip(info["files"], info["index_files"], strict=True):
            tokens = np.fromfile(data_dir / bin_name, dtype=np.dtype(manifest["dtype"]))
            offsets = np.fromfile(data_dir / idx_name, dtype="<i8")
            assert offsets[0] == 0 and offsets[-1] == len(tokens)
            pieces += [tokens[a:b] for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
        assert len(pieces) == info["sequences"]
        assert sum(len(p) for p in pieces) == info["tokens"]
        assert all(0 < len(p) <= seq_len for p in pieces)
        stream = np.concatenate(pieces)  # nothing dropped: pieces rejoin into whole documents
        assert stream[-1] == eos
        texts += [tokenizer.decode(p[:-1].tolist()) for p in split_at(stream, eos)[:-1]]
    assert sorted(texts) == sorted(prepared_unpacked.planted.kept_texts)


def test_near_duplicate_recall_and_false_positives_by_edit_rate(tmp_path):
    """Plant copies at 1/2/5/10/30% word edits; drop decisions must follow the true Jaccard.

    Copies well above the threshold (J >= t + 0.08) must all be dropped and copies well
    below (J <= t - 0.08) all kept; the rates and recall are printed (pytest -s)."""
    import random

    from data_harness.corpus import edit_words, jaccard, random_document, vocabulary, write

    spec_dir = tmp_path / "spec"
    rng = random.Random(11)
    vocab = vocabulary(rng)
    pairs = []
    for rate in (0.01, 0.02, 0.05, 0.10, 0.30):
        for i in range(12):
            text = random_document(rng, vocab, rng.randint(200, 500))
            copy = edit_words(rng, text, rate, vocab)
            write(spec_dir / "corpus" / f"r{rate:.2f}-{i:02d}-a.txt", text)
            write(spec_dir / "corpus" / f"r{rate:.2f}-{i:02d}-b.txt", copy)
            pairs.append((rate, copy, jaccard(text, copy, 5)))
    spec = Spec.model_validate(
        planted_spec(sources=[{"path": "corpus/*.txt"}], filters={}, validation_fraction=0.0)
    )
    project = tmp_path / "project"
    render_data_files(spec, project, spec_dir)
    run_prepare(project, "--workers", "1")
    stages = project / "out/data/stages"
    offsets = np.fromfile(stages / "documents.idx", dtype="<i8")
    raw = (stages / "documents.bin").read_bytes()
    kept = {raw[a:b].decode() for a, b in zip(offsets[:-1], offsets[1:], strict=True)}
    threshold = spec.data.dedup.near.threshold
    print(f"\nnear-dedup at threshold {threshold} (128 permutations, 5-word shingles)")
    for rate in (0.01, 0.02, 0.05, 0.10, 0.30):
        rows = [(copy not in kept, j) for r, copy, j in pairs if r == rate]
        dropped = sum(d for d, _ in rows)
        mean_j = sum(j for _, j in rows) / len(rows)
        print(f"  {rate:4.0%} words edited: mean J {mean_j:.3f}, dropped {dropped}/{len(rows)}")
    high = [d for _, copy, j in pairs if j >= threshold + 0.08 for d in [copy not in kept]]
    low = [d for _, copy, j in pairs if j <= threshold - 0.08 for d in [copy not in kept]]
    assert high and all(high), "recall below 1 for copies well above the threshold"
    assert low and not any(low), "false positives among copies well below the threshold"
    assert len(kept) >= len(pairs)  # every original kept


def test_json_lines_and_a_given_tokenizer(prepared, tmp_path):
    """tokenizer.path loads the given tokenizer.json instead of training one."""
    spec_dir = tmp_path / "spec"
    plant_corpus(spec_dir)
    shutil.copy(prepared.data_dir / "tokenizer.json", spec_dir / "given.json")
    spec = Spec.model_validate(planted_spec(tokenizer={"path": "given.json"}))
    project = tmp_path / "elsewhere" / "project"  # the build rewrites paths from here
    render_data_files(spec, project, spec_dir)
    run_prepare(project, "--workers", "1")
    data_dir = project / "out" / "data"
    assert (data_dir / "tokenizer.json").read_bytes() == (spec_dir / "given.json").read_bytes()
    manifest = json.loads((data_dir / "manifest.json").read_text())
    assert manifest["documents"] == prepared.manifest["documents"]


def test_generated_data_files_pass_ruff(prepared, prepared_unpacked, root):
    config = root / "pyproject.toml"
    for project, name in itertools.product(
        (prepared.project, prepared_unpacked.project),
        ("prepare_data.py", "data_stages.py", "data.py"),
    ):
        path = project / name
        source = path.read_text()
        assert "import llmspec" not in source and "from llmspec" not in source  # ejectable
        for args in (["check"], ["format", "--check"]):
            result = subprocess.run(
                [sys.executable, "-m", "ruff", *args, "--config", str(config), str(path)],
                capture_output=True,
                text=True,
            )
            assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("kind", ["unigram", "wordpiece"])
def test_other_tokenizer_kinds_keep_the_special_token_ids(kind, tmp_path):
    spec_dir = tmp_path / "spec"
    plant_corpus(spec_dir)
    overrides = {"tokenizer": {"kind": kind, "vocab_size": 500, "lowercase": True}}
    spec = Spec.model_validate(planted_spec(dedup={"exact": True, "near": None}, **overrides))
    project = tmp_path / "project"
    render_data_files(spec, project, spec_dir)
    run_prepare(project, "--workers", "1")
    manifest = json.loads((project / "out/data/manifest.json").read_text())
    assert manifest["special_tokens"] == {"pad": 0, "eos": 1, "unk": 2, "mask": 3}
    # Without near-duplicate removal the six near copies are kept.
    assert manifest["documents"]["near_duplicates"] == 0
    assert manifest["documents"]["kept"] == 50 + 6
    tokenizer = Tokenizer.from_file(str(project / "out/data/tokenizer.json"))
    assert tokenizer.get_vocab_size() <= 500
    assert tokenizer.encode("Hello").tokens == tokenizer.encode("hello").tokens


def test_sources_that_match_nothing_or_need_an_unset_variable_fail_clearly(tmp_path):
    project = tmp_path / "project"
    for path, message in (
        ("nothing/*.txt", "matched no files"),
        ("${LLMSPEC_TEST_UNSET_VAR}/*.txt", "LLMSPEC_TEST_UNSET_VAR, which is not set"),
        ("${LLMSPEC_TEST_UNSET_VAR:-elsewhere}/*.txt", "project/elsewhere/*.txt)"),
    ):
        spec = Spec.model_validate(planted_spec(sources=[{"path": path}]))
        render_data_files(spec, project, tmp_path)
        result = run_prepare(project, check=False)
        assert result.returncode == 1 and message in result.stderr
        assert not (project / "out/data/manifest.json").exists()


def test_a_killed_run_leaves_no_manifest_and_a_rerun_completes(prepared, tmp_path):
    """SIGKILL as soon as the first shard is on disk (of about 280: 512-byte shards)."""
    import signal
    import time

    spec = Spec.model_validate(planted_spec(shard_size="512B"))
    project = tmp_path / "project"
    render_data_files(spec, project, prepared.planted.spec_dir)
    data_dir = project / "out" / "data"
    process = subprocess.Popen(
        [sys.executable, "prepare_data.py", "--workers", "1"],
        cwd=project,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        if (data_dir / "train-00000.bin").exists():
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    assert process.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (data_dir / "manifest.json").exists()

    run_prepare(project, "--workers", "1")
    manifest = json.loads((data_dir / "manifest.json").read_text())
    assert manifest["documents"] == prepared.manifest["documents"]
    assert len(manifest["splits"]["train"]["files"]) > 100
    # Shard size does not change the packed stream: the same tokens as the 8KB-shard run.
    for split in ("train", "val"):
        ours = shard_tokens(data_dir, manifest, split)
        assert np.array_equal(ours, shard_tokens(prepared.data_dir, prepared.manifest, split))
    listed = {f for s in manifest["splits"].values() for f in s["files"]}
    assert {p.name for p in data_dir.glob("*.bin")} == listed
    assert not list(data_dir.glob("*.tmp"))


def test_excluded_paths_are_not_read_or_counted(tmp_path):
    """sources[].exclude drops matched files before reading: they are not documents."""
    spec_dir = tmp_path / "spec"
    (spec_dir / "keep").mkdir(parents=True)
    (spec_dir / "skip").mkdir()
    for i in range(6):
        (spec_dir / "keep" / f"{i}.txt").write_text(f"kept document number {i} " * 20)
        (spec_dir / "skip" / f"{i}.txt").write_text(f"excluded document number {i} " * 20)
    source = {"path": "**/*.txt", "exclude": ["*/skip/*"]}
    spec = Spec.model_validate(
        planted_spec(
            sources=[source],
            dedup={"exact": True, "near": None},
            tokenizer={"vocab_size": 300},
            filters={"min_chars": 20},
        )
    )
    project = tmp_path / "project"
    render_data_files(spec, project, spec_dir)
    run_prepare(project, "--workers", "1")
    manifest = json.loads((project / "out/data/manifest.json").read_text())
    assert manifest["documents"]["read"] == 6
    assert manifest["documents"]["kept"] == 6


def test_a_long_document_encodes_to_the_same_ids_in_parts(prepared, tmp_path, monkeypatch):
    """A tokenize task encodes a document longer than TOKENIZE_BATCH_BYTES in parts cut before
    a space followed by a printable ASCII character: the parts' ids end to end must be the
    whole document's, on Python sources and on random text made of the characters where the
    byte-level pre-tokenizer's pattern could differ (whitespace runs, apostrophes, U+00A0)."""
    project = tmp_path / "project"
    render_data_files(prepared.spec, project, prepared.planted.spec_dir)
    stages = load_generated(project, monkeypatch).data_stages
    monkeypatch.setattr(stages, "TOKENIZE_BATCH_BYTES", 300)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    texts = [(stdlib / name).read_text() for name in ("os.py", "textwrap.py", "string.py")]
    rng = random.Random(5)
    alphabet = [" ", "   ", "\n", "\n\n", "\t", "\r", "'", "'s", " 't", "x\ny", ".", "a", "B", "7"]
    alphabet += ["\u00a0", "é", " <eos>", "<eos> ", " \n "]  # U+00A0 is whitespace to the pattern
    texts += ["".join(rng.choice(alphabet) for _ in range(3000)) for _ in range(100)]
    # Trained as stage 2 trains it, on these texts, so that runs of spaces are tokens too.
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=2000,
        special_tokens=stages.SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    cuts = 0
    for text in texts:
        parts = stages.cut(text)
        assert "".join(parts) == text
        cuts += len(parts) - 1
        whole = tokenizer.encode(text, add_special_tokens=False).ids
        in_parts = [i for p in parts for i in tokenizer.encode(p, add_special_tokens=False).ids]
        assert in_parts == whole
    assert cuts > 500
