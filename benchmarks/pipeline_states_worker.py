"""One rank (one pipeline stage) of the pipeline memory measurement (run by memory_accuracy.py).

Renders the generated model.py of a small GPT for ``pipeline = world size``
stages cut where the plan says, builds the stage like train.py (the
PipelineModule with the decay / no-decay groups), wraps it in DeepSpeed's
PipelineEngine on CPU (gloo; ``deepspeed --num_gpus P``) with the
ds_config.json the build writes, and runs two ``train_batch`` calls of
``grad_accum_steps`` micro-batches (DeepSpeed's 1F1B ``TrainSchedule``).

During the second one it records, on this rank:

* ``in_step``: the bytes of every tensor storage alive when the inner
  optimizer's step begins, split as zero_states_worker.py splits them
  (parameters, optimizer state, the rest: gradients and buffers);
* ``peak``: the most bytes of live tensor storages at any time of the call.
  A TorchDispatchMode sees every tensor an aten op returns (autograd's
  backward runs on this thread for CPU tensors, so its gradients too); the
  storages alive before the call are found through the garbage collector.
  Each storage is counted once, from when it is first seen until a
  ``weakref.finalize`` on it fires (storages keep their Python object while
  any tensor, saved ones included, holds them);
* ``peak_buckets``: of ``peak``, the bytes in storages of exactly DeepSpeed's reduce
  bucket size (ZeRO-1 allocates it, twice at the pipeline's gradient reduce);
* ``before``: the live bytes when the call starts (model states between steps).

``pipeline × data`` ranks: ``data`` processes per stage (``deepspeed --num_gpus``
pipeline × data; ZeRO-1 and BF16_Optimizer partition over a stage's data ranks).

Prints one JSON line on rank 0 holding every stage's counts.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import weakref
from dataclasses import replace

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from zero_states_worker import count, live_tensors, remove_shm_buffer

from llmspec.rules.deepspeed import REDUCE_BUCKET_ELEMENTS

BUCKET_BYTES = {REDUCE_BUCKET_ELEMENTS * size for size in (2, 4)}  # bf16/fp16, fp32


class LiveBytes(TorchDispatchMode):
    """Bytes of the live CPU tensor storages, and their most, while the mode is on."""

    def __init__(self, existing):
        super().__init__()
        self.live: dict[int, int] = {}  # storage data_ptr → bytes
        self.now = self.peak = 0
        # of those, in storages of exactly a reduce bucket's size (16- or 32-bit), now and
        # at the peak
        self.buckets_now = self.peak_buckets = 0
        for t in existing:
            self._see(t)

    def _gone(self, key: int) -> None:
        size = self.live.pop(key, 0)
        self.now -= size
        if size in BUCKET_BYTES:
            self.buckets_now -= size

    def _see(self, t) -> None:
        if not isinstance(t, torch.Tensor) or t.device.type != "cpu":
            return
        st = t.untyped_storage()
        key, size = st.data_ptr(), st.nbytes()
        if not size or key in self.live:
            return
        self.live[key] = size
        self.now += size
        if size in BUCKET_BYTES:
            self.buckets_now += size
        if self.now > self.peak:
            self.peak, self.peak_buckets = self.now, self.buckets_now
        weakref.finalize(st, self._gone, key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            self._see(t)
        return out


def main() -> None:
    import deepspeed
    import torch.distributed as dist

    from llmspec.codegen.ds_config import build_ds_config
    from llmspec.codegen.model_code import load_model_module, render_model_py
    from llmspec.plan.types import Layout
    from llmspec.spec.schema import Spec

    args = [a for a in sys.argv[1:] if not a.startswith("--local_rank")]
    spec = Spec.model_validate(json.loads(args[0]))
    stage_layers = tuple(int(n) for n in args[1].split(","))
    zero_stage, micro_batches, micro_batch = int(args[2]), int(args[3]), int(args[4])
    deepspeed.init_distributed(dist_backend="gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    layout = Layout(
        pipeline=len(stage_layers),
        data=world // len(stage_layers),
        micro_batch_size=micro_batch,
        grad_accum_steps=micro_batches,
        zero_stage=zero_stage,
    )
    source = render_model_py(spec, layout, stage_layers)
    module = load_model_module(source, f"pipeline_model_{rank}")
    torch.manual_seed(0)
    mpu = module.init_parallel()
    model = module.build_model(mpu)
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [
        g for g in ({"params": decay}, {"params": no_decay, "weight_decay": 0.0}) if g["params"]
    ]
    config = build_ds_config(layout=replace(layout), train=spec.train, on_cpu=True)
    engine, *_ = deepspeed.initialize(model=model, model_parameters=groups, config=config)

    counts: dict = {}
    measuring = [False]

    def record_step(*_):
        if measuring[0] and "in_step" not in counts:
            counts["in_step"] = count(engine)

    inner = getattr(engine.optimizer, "optimizer", engine.optimizer)
    inner.register_step_pre_hook(record_step)

    def batches():
        while True:
            ids = torch.randint(0, spec.model.vocab_size, (micro_batch, spec.train.seq_len))
            yield ids, ids

    data = batches()
    engine.train_batch(data_iter=data)  # warm-up: creates the optimizer state
    measuring[0] = True
    existing = live_tensors(engine.module)
    tracker = LiveBytes(existing)
    del existing
    counts["before"] = tracker.now
    with tracker:
        engine.train_batch(data_iter=data)
    counts["peak"] = tracker.peak
    counts["peak_buckets"] = tracker.peak_buckets
    counts["after"] = tracker.now
    counts["stage"] = engine.stage_id
    counts["params_local"] = sum(p.numel() for p in engine.module.parameters())
    gathered = [None] * world
    dist.all_gather_object(gathered, counts)
    if rank == 0:
        print("PIPELINE_STATES " + json.dumps({"ranks": gathered}), flush=True)
    gc.collect()
    dist.barrier()
    remove_shm_buffer(rank)


if __name__ == "__main__":
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    main()
