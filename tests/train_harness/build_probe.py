"""Run in a generated project under torchrun: its own train.py, up to the model build.

argv: OUT.json DATA_DIR RUN_DIR. Wraps model.build_model so that the build that train.py
runs (inside deepspeed.zero.Init under ZeRO-3) is measured, then runs train.py with
--max-steps 0 (no training). Each rank records right after the build:
- `peak_bytes`: the most bytes of tensor storage alive at once while build_model ran, counted
  by a dispatch mode over every op's outputs (freed when their storage is collected);
- `held_bytes`, `held_numel`: what the parameters hold on this rank (a partitioned ZeRO-3
  parameter holds `ds_tensor`; its `.data` is empty);
- `full_numel`, `full_bytes`: the whole model's parameters (`ds_numel` once partitioned);
- `largest_module_bytes`: the most bytes one module's own parameters take whole;
- `digest`, `digest_bf16`: sha256 of every whole parameter in order, in its own dtype and
  rounded to bf16 (gathered from the ranks under ZeRO-3);
- `param_groups`: [whole elements, weight_decay] of each group train.py hands deepspeed.initialize.
Rank 0 writes every rank's record to OUT.json.
"""

from __future__ import annotations

import hashlib
import json
import os
import runpy
import sys
import weakref

import deepspeed
import torch
import torch._dynamo  # noqa: F401  dispatch modes import it lazily: not under zero.Init's patches
import torch.distributed as dist
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


class LiveBytes(TorchDispatchMode):
    """Bytes of tensor storage alive now and at the peak, over the tensors ops return."""

    def __init__(self):
        super().__init__()
        self.live: dict[int, int] = {}
        self.now = self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and not t.is_meta:
                self.track(t.untyped_storage())
        return out

    def track(self, storage) -> None:
        key, size = storage.data_ptr(), storage.nbytes()
        if size == 0 or key in self.live:
            return
        self.live[key] = size
        self.now += size
        self.peak = max(self.peak, self.now)
        weakref.finalize(storage, self.free, key)

    def free(self, key: int) -> None:
        self.now -= self.live.pop(key, 0)


def full_numel(p) -> int:
    return p.ds_numel if hasattr(p, "ds_tensor") else p.numel()


def held(p) -> torch.Tensor:
    return p.ds_tensor if hasattr(p, "ds_tensor") else p.data


def digests(params: list) -> tuple[str, str]:
    own, bf16 = hashlib.sha256(), hashlib.sha256()
    # gathers ZeRO-3's partitions; a no-op for parameters it did not partition
    with deepspeed.zero.GatheredParameters(params):
        for p in params:
            whole = p.detach().cpu().contiguous()
            own.update(whole.view(torch.uint8).numpy().tobytes())
            bf16.update(whole.to(torch.bfloat16).view(torch.uint8).numpy().tobytes())
    return own.hexdigest(), bf16.hexdigest()


def main() -> None:
    out_path, data_dir, run_dir = sys.argv[1:4]
    sys.path.insert(0, os.getcwd())
    import model as generated

    build_model, initialize, records = generated.build_model, deepspeed.initialize, []

    def measured_build(*args, **kwargs):
        with LiveBytes() as live:
            built = build_model(*args, **kwargs)
        params = list(built.parameters())
        element = params[0].element_size()
        record = {
            "rank": dist.get_rank(),
            "peak_bytes": live.peak,
            "held_numel": sum(held(p).numel() for p in params),
            "held_bytes": sum(held(p).numel() * held(p).element_size() for p in params),
            "data_numel": sum(p.data.numel() for p in params),
            "full_numel": sum(full_numel(p) for p in params),
            "full_bytes": sum(full_numel(p) for p in params) * element,
            "largest_module_bytes": element
            * max(sum(full_numel(p) for p in m.parameters(recurse=False)) for m in built.modules()),
            "n_params": len(params),
            "partitioned": all(hasattr(p, "ds_tensor") for p in params),
        }
        record["digest"], record["digest_bf16"] = digests(params)
        records.append(record)
        return built

    def measured_initialize(*args, model_parameters, **kwargs):
        records[0]["param_groups"] = [
            [sum(full_numel(p) for p in g["params"]), g.get("weight_decay")]
            for g in model_parameters
        ]
        gathered = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, records[0])
        if dist.get_rank() == 0:
            with open(out_path, "w") as f:
                json.dump(gathered, f, indent=1)
        return initialize(*args, model_parameters=model_parameters, **kwargs)

    generated.build_model, deepspeed.initialize = measured_build, measured_initialize
    sys.argv = ["train.py", "--max-steps", "0", "--data", data_dir, "--out", run_dir]
    runpy.run_path("train.py", run_name="__main__")  # ends with os._exit(0)


if __name__ == "__main__":
    main()
