"""Stand-in for the generated data.py until templates/data.py.j2 lands (same API)."""

import json
import os

import numpy as np
import torch


def load_manifest(data_dir):
    with open(os.path.join(data_dir, "manifest.json")) as f:
        return json.load(f)


def _sequences(data_dir, split):
    manifest = load_manifest(data_dir)
    parts = [
        np.fromfile(os.path.join(data_dir, name), dtype=manifest["dtype"])
        for name in manifest["splits"][split]["files"]
    ]
    tokens = np.concatenate(parts).astype(np.int64)
    n = len(tokens) // manifest["seq_len"]
    return torch.from_numpy(tokens[: n * manifest["seq_len"]].reshape(n, manifest["seq_len"]))


def train_batches(data_dir, micro_batch_size, *, dp_rank, dp_world, seed, start_micro_step=0):
    sequences = _sequences(data_dir, "train")
    per_epoch = len(sequences) // (micro_batch_size * dp_world)
    epoch, offset = divmod(start_micro_step, per_epoch)
    while True:
        order = torch.randperm(
            len(sequences), generator=torch.Generator().manual_seed(seed + epoch)
        )
        mine = order[dp_rank::dp_world]
        for i in range(offset, per_epoch):
            yield sequences[mine[i * micro_batch_size : (i + 1) * micro_batch_size]]
        epoch, offset = epoch + 1, 0


def val_batches(data_dir, micro_batch_size, *, dp_rank, dp_world, max_batches):
    mine = _sequences(data_dir, "val")[dp_rank::dp_world]
    for i in range(min(max_batches, len(mine) // micro_batch_size)):
        yield mine[i * micro_batch_size : (i + 1) * micro_batch_size]
