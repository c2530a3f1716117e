"""TEMPORARY: a contract-2 plan dict for specs that pin their whole layout.

Used by `build_project` only until `llmspec.plan.make_plan` lands; delete then.
Memory and performance figures are zeros: nothing here is estimated.
"""

from __future__ import annotations

from llmspec import __version__


def provisional_plan(spec, pins: dict) -> dict:
    p, t, m = spec.parallel, spec.train, spec.model

    def pinned(value, default):
        return default if value == "auto" else value

    data = pinned(p.data, spec.cluster.world_size)
    micro = pinned(t.micro_batch_size, 1)
    layout = {
        "data": data,
        "tensor": pinned(p.tensor, 1),
        "pipeline": pinned(p.pipeline, 1),
        "zero_stage": pinned(p.zero_stage, 0),
        "micro_batch_size": micro,
        "grad_accum_steps": max(1, t.global_batch_size // (micro * data)),
        "activation_checkpointing": pinned(p.activation_checkpointing, "none"),
        "sequence_parallel": pinned(p.sequence_parallel, False),
        "offload_optimizer": p.offload_optimizer,
        "offload_params": p.offload_params,
    }
    for key, value in pins.items():
        layout[key] = (
            type(layout[key])(value) if not isinstance(layout[key], bool) else value == "true"
        )
    layout["grad_accum_steps"] = max(
        1, t.global_batch_size // (layout["micro_batch_size"] * layout["data"])
    )
    d, f = m.d_model, m.ff_dim
    per_layer = 4 * d * d + 2 * d * f
    embedding = m.vocab_size * d
    total = embedding + m.n_layers * per_layer
    zero_mem = dict.fromkeys(
        ("params", "grads", "optimizer", "activations", "temporary", "total"), 0
    )
    return {
        "llmspec_version": __version__,
        "name": spec.name,
        "params": {
            "total": total,
            "trainable": total,
            "embedding": embedding,
            "per_layer": per_layer,
        },
        "flops_per_token": 6 * total,
        "layout": layout,
        "memory": {
            "per_gpu_bytes": zero_mem,
            "capacity_bytes": 0,
            "fits": True,
            "stages": [],
        },
        "performance": {
            "step_time_s": 0.0,
            "tokens_per_s": 0.0,
            "tflops_per_gpu": 0.0,
            "mfu": 0.0,
            "time_to_train_s": 0.0,
        },
        "alternatives": [],
    }
