"""The generated export.py's Hugging Face name table, used both ways: model.py → HF is what a
project's export does; HF → model.py (the table read backwards) copies an HF model's weights
into the generated model, so the tests hold one mapping, the generated one."""

from __future__ import annotations

import torch

from llmspec.codegen.export_code import render_export_py
from llmspec.codegen.model_code import load_model_module


def export_module(spec, layout, name: str):
    """The generated export.py of `spec` under `layout`, imported as module `name`."""
    return load_model_module(render_export_py(spec, layout), name=name)


def copy_from_hf(export, ref: torch.nn.Module, ours: torch.nn.Module) -> None:
    """Assign every parameter of `ours` from HF model `ref` through export.py's table read
    backwards; every parameter of both sides must be covered exactly once (tied ones once)."""
    mine = dict(ours.named_parameters())
    theirs = dict(ref.named_parameters())  # tied parameters appear once
    entries = list(export.hf_names())
    covered = sorted(n for _, names, _ in entries for n in names)
    assert covered == sorted(mine), set(covered) ^ set(mine)
    assert sorted(hf for hf, _, _ in entries) == sorted(theirs), {h for h, _, _ in entries} ^ set(
        theirs
    )
    with torch.no_grad():
        for hf_name, names, entry in entries:
            tensor = theirs[hf_name]
            if entry in getattr(export, "TRANSPOSED", ()):
                tensor = tensor.t()
            rows = [mine[n].shape[0] for n in names]
            if entry in export.VOCAB_ROWS:  # padded rows stay zero
                rows = [tensor.shape[0]]
            for name, part in zip(names, torch.split(tensor, rows), strict=True):
                target = mine[name][: part.shape[0]] if entry in export.VOCAB_ROWS else mine[name]
                assert target.shape == part.shape, (name, target.shape, part.shape)
                target.copy_(part)
