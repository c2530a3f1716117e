"""One rank of the ZeRO model-state measurement (run by memory_accuracy.py).

Builds the generated model.py of a small GPT, wraps it in a real DeepSpeed
engine on CPU (gloo, as many processes as the launcher starts: ``deepspeed
--num_gpus N``) for each ZeRO stage, runs two steps, and late in the second
backward, after it (gradients held, before the step), in the step and after
it counts the bytes of every tensor storage alive in this process, split into
parameters (the module's weights — ZeRO-3: this rank's partitions), optimizer
state (the inner optimizer's state and its fp32 master weights) and the rest
(gradient buffers, communication buckets; ``bucket`` is the part of it in
storages exactly the size of the reduce bucket). Prints one JSON line per
stage on rank 0, holding every rank's counts.
"""

from __future__ import annotations

import gc
import json
import os
import sys
from dataclasses import replace

import torch

from llmspec.rules.deepspeed import REDUCE_BUCKET_ELEMENTS


def storages(tensors) -> dict[int, int]:
    """{storage data_ptr: bytes} for tensors, de-duplicated (views share storage)."""
    out = {}
    for t in tensors:
        if isinstance(t, torch.Tensor) and t.device.type == "cpu":
            st = t.untyped_storage()
            if st.nbytes():
                out[st.data_ptr()] = st.nbytes()
    return out


def live_tensors(module):
    """Every tensor with a Python object, plus the parameters' .grad (autograd creates
    those in C++; reading .grad gives them one)."""
    gc.collect()
    found = [o for o in gc.get_objects() if isinstance(o, torch.Tensor)]
    found += [p.grad for p in module.parameters() if p.grad is not None]
    return found


def param_tensors(module):
    for p in module.parameters():
        yield getattr(p, "ds_tensor", None) if hasattr(p, "ds_tensor") else p


def optimizer_tensors(engine):
    inner = getattr(engine.optimizer, "optimizer", engine.optimizer)
    for state in inner.state.values():
        yield from (v for v in state.values() if isinstance(v, torch.Tensor))
    for group in inner.param_groups:
        yield from group["params"]


def count(engine) -> dict[str, int]:
    params = storages(param_tensors(engine.module))
    optimizer = {k: v for k, v in storages(optimizer_tensors(engine)).items() if k not in params}
    everything = storages(live_tensors(engine.module))
    rest = {k: v for k, v in everything.items() if k not in params and k not in optimizer}
    bucket_sizes = {REDUCE_BUCKET_ELEMENTS * size for size in (2, 4)}  # bf16/fp16, fp32
    return {
        "bucket": sum(v for v in rest.values() if v in bucket_sizes),
        "params": sum(params.values()),
        "optimizer": sum(optimizer.values()),
        "grads_and_buffers": sum(rest.values()),
        "total": sum(everything.values()),
    }


def remove_shm_buffer(rank: int) -> None:
    """DeepSpeed's CPU all-reduce maps a shared-memory buffer per rank and never removes it
    (deepspeed/ops/csrc/cpu/comm/shm.cpp, 67 MB, named after MASTER_ADDR and MASTER_PORT);
    call after a barrier, when no rank reads it any more (as train.py does)."""
    addr, port = os.environ.get("MASTER_ADDR"), os.environ.get("MASTER_PORT")
    path = f"/dev/shm/deepspeed_allreduce_buffer_{os.getuid()}_{addr}_{port}_{rank}"
    if os.path.exists(path):
        os.unlink(path)


def measure_stage(module, spec, layout, stage: int, micro_batch: int) -> dict:
    """Two training steps under ZeRO `stage`; tensor bytes at four moments of the second."""
    import deepspeed

    from llmspec.codegen.ds_config import build_ds_config

    torch.manual_seed(0)
    model = module.build_model()
    config = build_ds_config(
        layout=replace(layout, zero_stage=stage), train=spec.train, on_cpu=True
    )
    sub_group = os.environ.get("LLMSPEC_SUB_GROUP_SIZE")  # ZeRO-3 steps in several sub-groups
    if sub_group and stage == 3:
        config["zero_optimization"]["sub_group_size"] = int(sub_group)
    # train.py's two parameter groups (weight decay on matrices only): DeepSpeed's flat
    # optimizers keep one flat buffer per group, and their gradient buffers outlive groups
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [
        g for g in ({"params": decay}, {"params": no_decay, "weight_decay": 0.0}) if g["params"]
    ]
    engine, *_ = deepspeed.initialize(model=model, model_parameters=groups, config=config)
    counts: dict = {}
    measuring = [False]

    def record(name):
        if measuring[0] and name not in counts:
            counts[name] = count(engine)

    def record_in_step():  # ZeRO-3 steps each sub-group in turn: keep the largest moment
        if measuring[0]:
            now = count(engine)
            if now["total"] > counts.get("in_step", {"total": -1})["total"]:
                counts["in_step"] = now

    inner = getattr(engine.optimizer, "optimizer", engine.optimizer)
    inner.register_step_pre_hook(lambda *_: record_in_step())

    def late_backward_hook(_module, inputs):  # block 0's input gradient: end of backward
        if inputs[0].requires_grad:
            inputs[0].register_hook(lambda grad: record("late_backward"))

    engine.module.blocks[0].register_forward_pre_hook(late_backward_hook)
    for step in range(2):
        measuring[0] = step == 1
        ids = torch.randint(0, spec.model.vocab_size, (micro_batch, spec.train.seq_len))
        loss = engine(ids, ids)
        engine.backward(loss)
        del loss
        record("after_backward")
        engine.step()
    counts["after_step"] = count(engine)
    if hasattr(engine, "destroy"):
        engine.destroy()
    return counts


def main() -> None:
    import deepspeed
    import torch.distributed as dist

    from llmspec.codegen.model_code import load_model_module, render_model_py
    from llmspec.plan.types import Layout
    from llmspec.spec.schema import Spec

    args = [a for a in sys.argv[1:] if not a.startswith("--local_rank")]
    spec_fields, micro_batch = json.loads(args[0]), 2
    stages = [int(z) for z in args[1].split(",")]
    spec = Spec.model_validate(spec_fields)
    deepspeed.init_distributed(dist_backend="gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    layout = Layout(data=world, micro_batch_size=micro_batch)
    source = render_model_py(spec, layout, (spec.model.n_layers,))
    module = load_model_module(source, f"zero_model_{rank}")
    for stage in stages:
        counts = measure_stage(module, spec, layout, stage, micro_batch)
        gathered = [None] * world
        dist.all_gather_object(gathered, counts)
        if rank == 0:
            print("ZERO_STATES " + json.dumps({"stage": stage, "ranks": gathered}), flush=True)
        gc.collect()
    dist.barrier()
    remove_shm_buffer(rank)


if __name__ == "__main__":
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    main()
