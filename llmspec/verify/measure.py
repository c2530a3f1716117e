"""Measure one training step of the generated model without allocating it.

``measure_step(spec, layout)`` renders the ``model.py`` that ``llmspec build``
would write (``llmspec.codegen.model_code.render_model_py``), builds it under
``torch._subclasses.fake_tensor.FakeTensorMode`` (shapes and dtypes only, no
storage) and records one steady-state step with PyTorch's ``MemTracker``:

1. warm-up step: creates the gradient buffers and the AdamW state;
2. measured step: forward, backward and the optimizer update, with the model,
   its gradients and the optimizer tracked (``track_external``), so the peak
   includes every persistent state, as ``torch.cuda.max_memory_allocated``
   would on a GPU.

How the harness stands in for DeepSpeed (single device, ZeRO-0; checked on
real DeepSpeed runs with ``benchmarks/zero_states_worker.py``):

* fp32: fp32 weights; gradients created by autograd during backward and
  freed after the step (``zero_grad(set_to_none=True)``); fused AdamW (one
  kernel, no scratch, like DeepSpeed's FusedAdam).
* bf16 / fp16: the module in 16-bit (its weights, and the 16-bit gradients
  autograd produces), plus what DeepSpeed's mixed-precision optimizer holds:
  an fp32 master copy of every weight and the AdamW moments. At the step the
  16-bit gradients are upcast into fp32 gradients of the master weights (both
  alive at once, as in DeepSpeed), the update runs on the fp32 copy, which is
  copied back into the 16-bit weights, and all gradients are freed.

Torch is imported only here: the planner itself never needs it.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace

from llmspec.codegen.model_code import load_model_module, render_model_py
from llmspec.graph.dims import ModelDims
from llmspec.plan.memory import estimate_memory
from llmspec.plan.ppo_memory import plan_ppo
from llmspec.plan.types import Layout, MemoryEstimate


@dataclass(frozen=True)
class MeasuredMemory:
    """Bytes at the measured step's peak, by category, and the peak itself."""

    params: int
    grads: int
    optimizer: int
    activations: int
    temporary: int
    total: int  # the peak (sum of the categories at the peak moment)
    seconds: float  # wall time of the measurement

    def to_dict(self) -> dict:
        return asdict(self)


@contextmanager
def fake_world(world: int):
    """A process group of `world` ranks inside this process, as rank 0, on torch's fake
    backend (collectives return at once, shapes intact), so that one tensor-parallel rank's
    step runs, and is measured, without its peers. Nothing is set up for one rank."""
    import torch.distributed as dist
    from torch.testing._internal.distributed.fake_pg import FakeStore

    if world == 1:
        yield
        return
    if dist.is_initialized():
        raise RuntimeError("measure_step needs this process's default process group free")
    dist.init_process_group("fake", rank=0, world_size=world, store=FakeStore())
    try:
        yield
    finally:
        dist.destroy_process_group()


class _NoHook:
    def remove(self) -> None:
        pass


_NO_HOOK = _NoHook()


def measure_step(spec, layout: Layout) -> MeasuredMemory:
    """Peak bytes of one steady-state training step of the generated model.

    One rank: ``layout`` must have data = pipeline = 1 and ZeRO stage 0 (a tensor-parallel
    rank runs under ``fake_world``) (sharded states are measured on real DeepSpeed runs, see
    ``benchmarks/memory_accuracy.py``); precision comes from the spec,
    recompute, micro-batch size and gradient accumulation from ``layout``.
    """
    import time
    import warnings
    import zlib

    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.distributed._tools.mem_tracker import MemTracker

    if layout.data != 1 or layout.pipeline != 1 or layout.zero_stage != 0:
        raise ValueError("measure_step measures one rank: data = pipeline = 1, ZeRO 0")
    started = time.perf_counter()
    precision = spec.train.precision
    if precision not in ("fp32", "bf16", "fp16"):
        raise ValueError(f"cannot measure precision {precision!r} on CPU")
    source = render_model_py(spec, layout, (spec.model.n_layers,))
    module = load_model_module(source, f"llmspec_measured_{zlib.crc32(source.encode()):08x}")
    low = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    b, s = layout.micro_batch_size, spec.train.seq_len
    vocab = spec.model.vocab_size

    with fake_world(layout.tensor), FakeTensorMode(allow_non_fake_inputs=False):
        torch.manual_seed(0)
        # DeepSpeed builds in fp32 and casts; building straight in the 16-bit dtype
        # reaches the same steady state (module.to() cannot swap fake parameters).
        default_dtype = torch.get_default_dtype()
        torch.set_default_dtype(low)
        try:
            model = (
                module.build_model(module.init_parallel())
                if layout.tensor > 1
                else module.build_model()
            )
        finally:
            torch.set_default_dtype(default_dtype)
        model.train()
        if hasattr(module, "freeze_base"):  # LoRA, P-tuning: as train.py, only adapters train
            module.freeze_base(model)
        params = [p for p in model.parameters() if p.requires_grad]
        mixed = low != torch.float32
        masters = [torch.nn.Parameter(p.detach().float()) for p in params] if mixed else params
        # the optimizer train.py gets on CPU: ds_config.json's torch_adam, which DeepSpeed 0.19
        # builds with foreach=None (engine.py get_optimizer_configuration) = the single-tensor
        # loop on CPU tensors, whose temporaries count (plan.memory.cpu_adam_transient)
        optimizer = torch.optim.AdamW(masters, lr=1e-4, foreach=False)

        def step(tracker=None) -> None:
            for i in range(max(1, layout.grad_accum_steps)):  # gradients accumulate
                if tracker is not None and i:
                    tracker.reset_mod_stats()  # MemTracker tracks one pass per module
                ids = torch.randint(0, vocab, (b, s))
                if spec.train.objective == "masked_lm":
                    inputs, labels = module.mask_tokens(ids, 3, None)
                else:
                    inputs, labels = ids, ids
                loss = model(inputs, labels)
                loss.backward()
                del loss, ids, inputs, labels
            if mixed:
                for p, m in zip(params, masters, strict=True):
                    m.grad = p.grad.float()
            optimizer.step()
            if mixed:
                with torch.no_grad():
                    for p, m in zip(params, masters, strict=True):
                        p.copy_(m)
                        m.grad = None
            model.zero_grad(set_to_none=True)

        step()  # warm-up: creates the AdamW moments
        tracker = MemTracker()
        # MemTracker hooks every parameter's gradient, and a frozen one (LoRA's base) cannot
        # take a hook: mark those as hooked already, with handles whose remove() does nothing.
        for p in model.parameters():
            if not p.requires_grad:
                tracker._param_to_grad_hook_handles[p] = (_NO_HOOK, _NO_HOOK)
        with warnings.catch_warnings():  # MemTracker warns about parameters without .grad
            warnings.simplefilter("ignore", UserWarning)
            tracker.track_external(model, optimizer, *(masters if mixed else ()))
            with tracker:
                step(tracker)
        snapshot = tracker.get_tracker_snapshot("peak")
    peak = next(iter(snapshot.values()))
    by_kind = {str(k.value) if hasattr(k, "value") else str(k): v for k, v in peak.items()}
    params_b = by_kind.get("Parameter", 0) + by_kind.get("Buffer", 0)
    opt_b = by_kind.get("Optstate", 0) + by_kind.get("Other", 0)  # Other: the fp32 masters
    grads_b = by_kind.get("Gradient", 0)
    return MeasuredMemory(
        params=params_b,
        grads=grads_b,
        optimizer=opt_b,
        activations=by_kind.get("Activation", 0),
        temporary=by_kind.get("Temp", 0),
        total=by_kind.get("Total", sum(peak.values())),
        seconds=time.perf_counter() - started,
    )


def measure_against_plan(spec, plan) -> tuple[Layout, MemoryEstimate, MeasuredMemory]:
    """One rank of the plan's layout (its tensor-parallel degree, micro-batch and recompute;
    no data or pipeline parallelism, ZeRO 0): predicted for the CPU kernels the measurement
    runs, so both count the same tensors, and measured."""
    single = replace(
        Layout(),
        tensor=plan.layout.tensor,
        sequence_parallel=plan.layout.sequence_parallel,
        micro_batch_size=plan.layout.micro_batch_size,
        activation_checkpointing=plan.layout.activation_checkpointing,
    )
    dims = ModelDims.from_spec(spec)
    predicted = estimate_memory(dims, single, spec.train.precision, kernels="cpu")
    return single, predicted, measure_step(spec, single)


def measure_ppo_update(spec, layout: Layout) -> MeasuredMemory:
    """Peak bytes of PPO's update phases (objective ppo) on one rank, ZeRO 0: the generated
    model.py built four times under FakeTensorMode (actor and critic trained, each with its
    AdamW state; the reference, and the reward model when the spec has one, frozen), then one
    actor update and one critic update as train_ppo.py runs them (the actor's log-probs of
    the response tokens and the clipped policy loss; the critic's values and the clipped
    value loss), recorded by one MemTracker. Compare with the PPO plan's models plus its
    larger update phase (`llmspec.plan.ppo_memory`)."""
    import time
    import warnings
    import zlib

    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.distributed._tools.mem_tracker import MemTracker

    if layout.data != 1 or layout.tensor != 1 or layout.pipeline != 1 or layout.zero_stage != 0:
        raise ValueError(
            "measure_ppo_update measures one rank: data = tensor = pipeline = 1, ZeRO 0"
        )
    started = time.perf_counter()
    precision = spec.train.precision
    if precision not in ("fp32", "bf16", "fp16"):
        raise ValueError(f"cannot measure precision {precision!r} on CPU")
    rlhf = spec.rlhf
    source = render_model_py(spec, layout, (spec.model.n_layers,))
    module = load_model_module(source, f"llmspec_measured_{zlib.crc32(source.encode()):08x}")
    low = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    b, s = layout.micro_batch_size, spec.train.seq_len
    new = rlhf.rollout.max_new_tokens
    prompt = s - new
    vocab = spec.model.vocab_size
    mixed = low != torch.float32

    with FakeTensorMode(allow_non_fake_inputs=False):
        torch.manual_seed(0)
        default_dtype = torch.get_default_dtype()
        torch.set_default_dtype(low)
        try:
            actor, critic, reference = (module.build_model() for _ in range(3))
            reward = module.build_model() if rlhf.reward_model is not None else None
        finally:
            torch.set_default_dtype(default_dtype)
        actor.score_head.requires_grad_(False)  # as train_ppo.py: the value head is the critic's
        for name, p in critic.named_parameters():
            if name.startswith(("lm_head.", "logits_bias.")):
                p.requires_grad_(False)
        frozen_models = [m for m in (reference, reward) if m is not None]
        for m in frozen_models:
            m.requires_grad_(False).eval()
        trained = []
        for model in (actor, critic):
            model.train()
            params = [p for p in model.parameters() if p.requires_grad]
            masters = [torch.nn.Parameter(p.detach().float()) for p in params] if mixed else params
            trained.append(
                (model, params, masters, torch.optim.AdamW(masters, lr=1e-4, fused=True))
            )

        def optimizer_step(params, masters, optimizer) -> None:
            if mixed:
                for p, m in zip(params, masters, strict=True):
                    m.grad = p.grad.float()
            optimizer.step()
            if mixed:
                with torch.no_grad():
                    for p, m in zip(params, masters, strict=True):
                        p.copy_(m)
                        m.grad = None

        def update(tracker=None) -> None:
            sequences = torch.randint(0, vocab, (b, s))
            responses = sequences[:, prompt:]
            mask = torch.ones(b, new)
            advantages, returns = torch.randn(b, new), torch.randn(b, new)
            (model, params, masters, optimizer) = trained[0]
            logits = model(sequences)[:, prompt - 1 : -1].float() / rlhf.rollout.temperature
            logprobs = (
                torch.log_softmax(logits, dim=-1).gather(-1, responses[..., None]).squeeze(-1)
            )
            del logits
            ratio = torch.exp(logprobs - logprobs.detach())
            clipped = torch.clamp(ratio, 1 - rlhf.ppo.clip_range, 1 + rlhf.ppo.clip_range)
            loss = (
                (torch.max(-advantages * ratio, -advantages * clipped)) * mask
            ).sum() / mask.sum()
            loss.backward()
            del loss, logprobs, ratio, clipped
            optimizer_step(params, masters, optimizer)
            model.zero_grad(set_to_none=True)
            if tracker is not None:
                tracker.reset_mod_stats()
            (model, params, masters, optimizer) = trained[1]
            values = model(sequences, values=True)[:, prompt - 1 : -1].float()
            old = values.detach()
            clipped_values = torch.clamp(
                values, old - rlhf.ppo.value_clip, old + rlhf.ppo.value_clip
            )
            losses = torch.max((values - returns) ** 2, (clipped_values - returns) ** 2)
            loss = 0.5 * (losses * mask).sum() / mask.sum()
            loss.backward()
            del loss, losses, values, clipped_values
            optimizer_step(params, masters, optimizer)
            model.zero_grad(set_to_none=True)

        update()  # warm-up: creates the AdamW moments
        tracker = MemTracker()
        for model in (actor, critic, *frozen_models):
            for p in model.parameters():
                if not p.requires_grad:
                    tracker._param_to_grad_hook_handles[p] = (_NO_HOOK, _NO_HOOK)
        externals = [actor, critic, *frozen_models]
        for _, _, masters, optimizer in trained:
            externals.append(optimizer)
            if mixed:
                externals.extend(masters)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            tracker.track_external(*externals)
            with tracker:
                update(tracker)
        snapshot = tracker.get_tracker_snapshot("peak")
    peak = next(iter(snapshot.values()))
    by_kind = {str(k.value) if hasattr(k, "value") else str(k): v for k, v in peak.items()}
    return MeasuredMemory(
        params=by_kind.get("Parameter", 0) + by_kind.get("Buffer", 0),
        grads=by_kind.get("Gradient", 0),
        optimizer=by_kind.get("Optstate", 0) + by_kind.get("Other", 0),
        activations=by_kind.get("Activation", 0),
        temporary=by_kind.get("Temp", 0),
        total=by_kind.get("Total", sum(peak.values())),
        seconds=time.perf_counter() - started,
    )


def measure_ppo_against_plan(spec, plan) -> tuple[Layout, float, MeasuredMemory]:
    """Objective ppo: one rank of the plan's micro-batch and recompute at ZeRO 0, the PPO
    plan's models plus its larger update phase (CPU kernels) beside `measure_ppo_update`."""
    single = replace(
        Layout(),
        micro_batch_size=plan.layout.micro_batch_size,
        activation_checkpointing=plan.layout.activation_checkpointing,
    )
    dims = ModelDims.from_spec(spec)
    stage = plan_ppo(spec, dims, single, plan.capacity_bytes, "cpu").stage(0)
    planned = sum(stage.models.values()) + max(
        stage.phases["actor update"], stage.phases["critic update"]
    )
    return single, planned, measure_ppo_update(spec, single)
