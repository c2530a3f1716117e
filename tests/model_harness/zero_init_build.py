"""Run under `torchrun --nproc_per_node N`: model.py built inside deepspeed.zero.Init in bf16.

argv: cases.json out.json. Each case names a model.py rendered for ZeRO-0 (`zero0`) and one
rendered for ZeRO-3 (`zero3`). Every rank builds the ZeRO-0 model in fp32 as train.py does,
and the ZeRO-3 one inside zero.Init with a bf16 config, as train.py does under ZeRO-3. Rank 0
writes {case: {dtypes, rounded_once, buffers_equal, buffer_dtypes}} to out.json: whether every
gathered ZeRO-3 parameter equals the ZeRO-0 one rounded to bf16 (DeepSpeed's cast of a model
built outside zero.Init), and whether the buffers (a sinusoidal table) equal ZeRO-0's.
"""

from __future__ import annotations

import json
import os
import sys

import deepspeed
import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from loading import load  # noqa: E402

CONFIG = {
    "train_micro_batch_size_per_gpu": 1,
    "bf16": {"enabled": True},
    "zero_optimization": {"stage": 3, "memory_efficient_linear": False},
}


def run_case(case: dict) -> dict:
    reference = load(case["zero0"], "zero0_" + case["name"]).build_model()
    module = load(case["zero3"], "zero3_" + case["name"])
    with deepspeed.zero.Init(config_dict_or_path=CONFIG):
        model = module.build_model()
    params = list(model.parameters())
    with deepspeed.zero.GatheredParameters(params):
        rounded_once = all(
            torch.equal(p.data, q.data.to(torch.bfloat16))
            for p, q in zip(params, reference.parameters(), strict=True)
        )
    buffers = dict(model.named_buffers())
    return {
        "dtypes": sorted({str(p.dtype) for p in params}),
        "rounded_once": rounded_once,
        "buffers_equal": all(
            torch.equal(buffers[name], b) for name, b in reference.named_buffers()
        ),
        "buffer_dtypes": sorted({str(b.dtype) for b in buffers.values()}),
    }


def main() -> None:
    cases_path, out_path = sys.argv[1], sys.argv[2]
    deepspeed.init_distributed("gloo")
    with open(cases_path) as f:
        cases = json.load(f)
    results = {case["name"]: run_case(case) for case in cases}
    if dist.get_rank() == 0:
        with open(out_path, "w") as f:
            json.dump(results, f, indent=1)
    dist.barrier()
    dist.destroy_process_group()
    os._exit(0)  # gloo sometimes aborts at interpreter exit (CPU-DISTRIBUTED.md, trap 1)


if __name__ == "__main__":
    main()
