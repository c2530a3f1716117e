"""Run under `torchrun --nproc_per_node N`: pipeline parallel against one process.

argv: cases.json out.json. Each case names a rendered model.py without pipeline (`single`)
and one with pipeline stages (`pipeline`). Every rank computes the single model's loss on two
micro-batches, then trains one step of the PipelineModule through DeepSpeed on the same
micro-batches. Rank 0 writes {case: {loss_single, loss_pipeline, ranks: [{rank, stage,
parts, blocks, tied, built_params, params}]}} to out.json: `built_params` counts the parameters
this rank's stage holds right after build_model, before DeepSpeed sees it.
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

MICRO_BATCHES, MICRO_BATCH_SIZE = 2, 2


def micro_batches(case: dict) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(5)
    batches = []
    for _ in range(MICRO_BATCHES):
        ids = torch.randint(
            0, case["vocab_size"], (MICRO_BATCH_SIZE, case["seq_len"]), generator=generator
        )
        labels = ids
        if case["masked"]:  # a fixed masked-LM pattern: every third token labelled
            labels = ids.masked_fill(torch.arange(case["seq_len"]) % 3 != 0, -100)
        batches.append((ids, labels))
    return batches


def run_case(case: dict) -> dict:
    batches = micro_batches(case)
    single = load(case["single"], "single_" + case["name"]).build_model()
    with torch.no_grad():
        loss_single = sum(single(ids, labels).item() for ids, labels in batches) / len(batches)

    module = load(case["pipeline"], "pipeline_" + case["name"])
    grid = module.init_parallel()
    model = module.build_model(grid)
    built_params = sum(p.numel() for p in model.parameters())
    config = {
        "train_micro_batch_size_per_gpu": MICRO_BATCH_SIZE,
        "gradient_accumulation_steps": MICRO_BATCHES,
        "train_batch_size": MICRO_BATCH_SIZE * MICRO_BATCHES * grid.get_data_parallel_world_size(),
        "steps_per_print": 10**9,
    }
    if case["sequence_parallel"]:
        # DeepSpeed splits stage-boundary activations across the tensor ranks assuming they are
        # replicated; under sequence parallel each rank already holds its own shard.
        config["pipeline"] = {"pipe_partitioned": False, "grad_partitioned": False}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config=config)
    loss_pipeline = engine.train_batch(iter(batches)).item()
    local = {
        "rank": dist.get_rank(),
        "stage": grid.get_stage_id(),
        "parts": list(model.parts),
        "blocks": sorted(
            int(name) - module.LAYERS_BEFORE_BLOCKS
            for name, child in model.named_children()
            if isinstance(child, module.Block)
        ),
        "tied": sorted(model.tied_modules.keys()),
        "built_params": built_params,
        "params": sum(p.numel() for p in model.parameters()),
    }
    ranks = [None] * dist.get_world_size()
    dist.all_gather_object(ranks, local)
    return {"loss_single": loss_single, "loss_pipeline": loss_pipeline, "ranks": ranks}


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
