"""The generated data.py over real prepared shards: order, resume, ranks, workers, padding."""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path

import numpy as np
import torch
from data_harness import fixtures

prepared = fixtures.prepared
prepared_unpacked = fixtures.prepared_unpacked


def load_data_module(project: Path):
    spec = importlib.util.spec_from_file_location(
        f"data_{project.parent.name}", project / "data.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def take(iterator, n: int) -> list:
    return list(itertools.islice(iterator, n))


def test_packed_batches_are_shard_rows(prepared):
    data = load_data_module(prepared.project)
    manifest = data.load_manifest(prepared.data_dir)
    assert manifest == prepared.manifest
    batches = take(data.train_batches(prepared.data_dir, 4, dp_rank=0, dp_world=1, seed=5), 3)
    rows = np.concatenate(
        [
            np.fromfile(prepared.data_dir / f, dtype=np.uint16)
            for f in manifest["splits"]["train"]["files"]
        ]
    ).reshape(-1, manifest["seq_len"])
    for batch in batches:
        assert batch.shape == (4, manifest["seq_len"]) and batch.dtype == torch.long
        for row in batch.numpy():
            assert (rows == row).all(axis=1).any()


def test_resume_at_any_micro_step_is_exact_across_epochs(prepared):
    data = load_data_module(prepared.project)
    args = {"dp_rank": 1, "dp_world": 2, "seed": 9}
    per_epoch = data.TrainBatches(prepared.data_dir, 16, **args).per_epoch
    total = 2 * per_epoch + 5  # into the third epoch
    reference = take(data.train_batches(prepared.data_dir, 16, **args), total)
    for start in (1, per_epoch - 1, per_epoch, per_epoch + 3, 2 * per_epoch + 1):
        resumed = take(
            data.train_batches(prepared.data_dir, 16, start_micro_step=start, **args), total - start
        )
        assert len(resumed) == total - start
        assert all(torch.equal(a, b) for a, b in zip(resumed, reference[start:], strict=True)), (
            start
        )
    # Epochs differ in order (a fresh permutation each), and the seed matters.
    assert not torch.equal(reference[0], reference[per_epoch])
    other_seed = take(data.train_batches(prepared.data_dir, 16, dp_rank=1, dp_world=2, seed=10), 1)
    assert not torch.equal(other_seed[0], reference[0])


def test_ranks_get_disjoint_equal_shares(prepared):
    data = load_data_module(prepared.project)
    sequences = data.Sequences(prepared.data_dir, "train")
    for epoch in range(3):
        shares = [
            data.epoch_batches(sequences, 8, dp_rank=r, dp_world=3, seed=1, epoch=epoch)
            for r in range(3)
        ]
        assert len({len(s) for s in shares}) == 1 and len(shares[0]) > 0
        flat = [np.concatenate(s) for s in shares]
        assert sum(len(f) for f in flat) == len(np.unique(np.concatenate(flat)))
    val = [
        list(data.val_batches(prepared.data_dir, 8, dp_rank=r, dp_world=2, max_batches=100))
        for r in range(2)
    ]
    assert len(val[0]) == len(val[1]) > 0
    rows = [{tuple(row.tolist()) for b in v for row in b} for v in val]
    assert not rows[0] & rows[1]
    again = list(data.val_batches(prepared.data_dir, 8, dp_rank=0, dp_world=2, max_batches=2))
    assert len(again) == 2 and all(
        torch.equal(a, b) for a, b in zip(again, val[0][:2], strict=True)
    )


def test_dataloader_workers_do_not_change_the_order(prepared):
    data = load_data_module(prepared.project)
    args = {"dp_rank": 0, "dp_world": 1, "seed": 4, "start_micro_step": 3}
    alone = take(data.train_batches(prepared.data_dir, 8, **args), 7)
    workers = take(data.train_batches(prepared.data_dir, 8, num_workers=2, **args), 7)
    assert all(torch.equal(a, b) for a, b in zip(alone, workers, strict=True))


def test_unpacked_batches_pad_to_the_longest_and_bucket_by_length(prepared_unpacked):
    data = load_data_module(prepared_unpacked.project)
    manifest = data.load_manifest(prepared_unpacked.data_dir)
    pad = manifest["special_tokens"]["pad"]
    sequences = data.Sequences(prepared_unpacked.data_dir, "train")
    lengths = sequences.lengths()
    mbs = 4
    batches = data.epoch_batches(sequences, mbs, dp_rank=0, dp_world=1, seed=2, epoch=0)
    iterator = data.train_batches(prepared_unpacked.data_dir, mbs, dp_rank=0, dp_world=1, seed=2)
    spread_bucketed = []
    for indices, (input_ids, labels) in zip(batches, take(iterator, len(batches)), strict=True):
        longest = int(lengths[indices].max())
        assert input_ids.shape == labels.shape == (mbs, longest)
        for row, i in enumerate(indices):
            n = int(lengths[i])
            assert torch.equal(
                input_ids[row, :n], torch.from_numpy(sequences[int(i)].astype(np.int64))
            )
            assert (input_ids[row, n:] == pad).all() and (labels[row, n:] == -100).all()
            assert torch.equal(labels[row, :n], input_ids[row, :n])
        spread_bucketed.append(int(lengths[indices].max() - lengths[indices].min()))
    # Bucketing pads less than batching the same shuffled order without sorting would.
    order = np.random.default_rng([2, 0]).permutation(len(sequences))
    usable = len(order) // mbs * mbs
    plain = order[:usable].reshape(-1, mbs)
    spread_plain = [int(lengths[b].max() - lengths[b].min()) for b in plain]
    assert sum(spread_bucketed) < sum(spread_plain) / 2
