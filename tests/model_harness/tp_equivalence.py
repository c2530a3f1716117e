"""Run under `torchrun --nproc_per_node 2`: tensor parallel 2 against tensor parallel 1.

argv: cases.json out.json. Each case names two rendered model.py files, `single` (tensor 1)
and `parallel` (tensor 2). Every rank builds both, runs one forward and backward on the same
batch, gathers the sharded parameters and gradients of the parallel model and compares them
with the single model's. Rank 0 writes {case: {loss_single, loss_parallel, max_param_diff,
max_grad_diff, grad_scale, grad_norm_single, grad_norm_parallel}} to out.json.
"""

from __future__ import annotations

import json
import os
import sys

import deepspeed
import torch
import torch.distributed as dist
from deepspeed.runtime.utils import clip_grad_norm_

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from loading import load  # noqa: E402


def gather_full(local: torch.Tensor, full_shape: torch.Size, group) -> torch.Tensor:
    """Reassemble a tensor sharded along the one dimension where its shape differs."""
    differing = [d for d in range(local.dim()) if local.shape[d] != full_shape[d]]
    if not differing:
        return local
    dim = differing[0]
    parts = [torch.empty_like(local) for _ in range(dist.get_world_size(group))]
    dist.all_gather(parts, local.contiguous(), group=group)
    return torch.cat(parts, dim=dim).narrow(dim, 0, full_shape[dim])  # drop vocab padding


def run_case(case: dict, batch: torch.Tensor, labels: torch.Tensor) -> dict:
    single = load(case["single"], "single_" + case["name"]).build_model()
    loss_single = single(batch, labels)
    loss_single.backward()

    module = load(case["parallel"], "parallel_" + case["name"])
    mpu = module.init_parallel()
    parallel = module.build_model(mpu)
    loss_parallel = parallel(batch, labels)
    loss_parallel.backward()

    group = mpu.get_model_parallel_group()
    reference = dict(single.named_parameters())
    max_param, max_grad, grad_scale = 0.0, 0.0, 0.0
    for name, param in parallel.named_parameters():
        full = reference[name]
        weights = gather_full(param.detach(), full.shape, group)
        grads = gather_full(param.grad, full.shape, group)
        max_param = max(max_param, (weights - full.detach()).abs().max().item())
        max_grad = max(max_grad, (grads - full.grad).abs().max().item())
        grad_scale = max(grad_scale, full.grad.abs().max().item())
    assert sorted(reference) == sorted(n for n, _ in parallel.named_parameters())
    # DeepSpeed's gradient norm (what clipping uses) counts sharded parameters on every rank and
    # replicated ones once: it must equal the single model's norm.
    norm_parallel = clip_grad_norm_(list(parallel.parameters()), max_norm=1e30, mpu=mpu)
    norm_single = torch.cat([p.grad.flatten() for p in single.parameters()]).norm()
    return {
        "grad_norm_single": norm_single.item(),
        "grad_norm_parallel": float(norm_parallel),
        "loss_single": loss_single.item(),
        "loss_parallel": loss_parallel.item(),
        "max_param_diff": max_param,
        "max_grad_diff": max_grad,
        "grad_scale": grad_scale,
    }


def main() -> None:
    cases_path, out_path = sys.argv[1], sys.argv[2]
    deepspeed.init_distributed("gloo")
    torch.manual_seed(0)
    with open(cases_path) as f:
        cases = json.load(f)
    results = {}
    for case in cases:
        generator = torch.Generator().manual_seed(11)
        batch = torch.randint(0, case["vocab_size"], (2, case["seq_len"]), generator=generator)
        labels = batch
        if case["masked"]:  # a fixed masked-LM pattern: every third token labelled
            labels = batch.masked_fill(torch.arange(case["seq_len"]) % 3 != 0, -100)
        results[case["name"]] = run_case(case, batch, labels)
    if dist.get_rank() == 0:
        with open(out_path, "w") as f:
            json.dump(results, f, indent=1)
    dist.barrier()
    dist.destroy_process_group()
    os._exit(0)  # gloo sometimes aborts at interpreter exit (CPU-DISTRIBUTED.md, trap 1)


if __name__ == "__main__":
    main()
