"""What is alive at the measured peak: every storage MemTracker holds at the moment of one
training step's peak, with the op that made it, the module running then, and whether it was
made in forward or backward. A diagnostic for the memory model (llmspec/plan/memory.py): when
the plan and `measure_step` disagree, this says which tensors the plan is missing or has too
many of.

    python benchmarks/memory_live_tensors.py bert fp32 --tensor 4 --recompute full
    python benchmarks/memory_live_tensors.py gpt fp32 --recompute full --model '{"vocab_size": 64}'

The model is tests/test_measure_fake.py's small spec of the family (d_model 128, 2 layers,
8 heads); `--model` overrides its fields. Parameters and optimizer states are summed, not
listed. It wraps private MemTracker methods (torch.distributed._tools.mem_tracker, torch
2.13): a diagnostic, not a test.

Found with it (2026-12-04), tensor 4, full recompute, fp32: BERT's peak is the first op of
the bottom block's recomputed backward (its output norm's backward), 125 KiB below the plan
of the time, which charged a post-norm block the pre-norm block's MLP transient; GPT's peak
is inside the down-projection's backward (incoming gradient, its input's gradient, its
weight's gradient beside every recomputed tensor), one hidden below the plan's
BLOCK_BACKWARD_TRANSIENT_WIDTHS bound (+2.3 %); a frozen base's recompute peaks inside the
recomputed attention instead (math kernel with dropout), a moment the plan does not model.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def patch_tracker(state: dict) -> None:
    """Record each storage's origin when MemTracker first sees it, and the live set each time
    the tracked total reaches a new peak."""
    import torch.distributed._tools.mem_tracker as mt

    origin: dict[int, tuple] = {}
    dispatch, create, update_peak, init = (
        mt.MemTracker.__torch_dispatch__,
        mt._WeakRefInfo.create_winfo,
        mt.MemTracker._update_peak_stats,
        mt.MemTracker.__init__,
    )

    def traced_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        state["tracker"] = self

    def traced_dispatch(self, func, types, args=(), kwargs=None):
        outer, state["op"] = state.get("op", "-"), str(func)
        try:
            return dispatch(self, func, types, args, kwargs)
        finally:
            state["op"] = outer

    def traced_create(storage, device, reftype, callback):
        winfo, ref = create(storage, device, reftype, callback)
        tracker = state.get("tracker")
        modules = tracker._mod_tracker.parents if tracker else ()
        module = max(modules, key=len) if modules else "-"
        phase = "backward" if tracker and tracker._mod_tracker.is_bw else "forward"
        origin[id(winfo)] = (state.get("op", "-"), module, phase)
        return winfo, ref

    def traced_peak(self, peak_state):
        update_peak(self, peak_state)
        for snapshot in self._curr_mem_snap.values():
            if snapshot[mt._TOTAL_KEY] > state.get("peak", 0):
                state["peak"] = snapshot[mt._TOTAL_KEY]
                state["at"] = (max(self._mod_tracker.parents, key=len), state.get("op", "-"))
                state["live"] = [
                    (w.mem_consumed, w.reftype.name, origin.get(id(w), ("-", "-", "-")))
                    for w, _ in self._WINFO.values()
                ]

    mt.MemTracker.__init__ = traced_init
    mt.MemTracker.__torch_dispatch__ = traced_dispatch
    mt._WeakRefInfo.create_winfo = staticmethod(traced_create)
    mt.MemTracker._update_peak_stats = traced_peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("family", choices=("gpt", "llama", "bert"))
    parser.add_argument("precision", choices=("fp32", "bf16", "fp16"))
    parser.add_argument("--tensor", type=int, default=1)
    parser.add_argument("--sequence-parallel", action="store_true")
    parser.add_argument("--recompute", default="none")
    parser.add_argument("--micro-batch", type=int, default=2)
    parser.add_argument("--model", default="{}", help="JSON: model fields to override")
    args = parser.parse_args()

    from test_measure_fake import small_spec

    from llmspec.graph.dims import ModelDims
    from llmspec.plan.memory import estimate_memory
    from llmspec.plan.types import Layout
    from llmspec.verify.measure import measure_step

    state: dict = {}
    patch_tracker(state)
    fields = {"n_heads": 8, "n_kv_heads": 4 if args.family == "llama" else 8}
    try:
        overrides = json.loads(args.model)
    except json.JSONDecodeError as error:
        parser.error(f"--model: not JSON ({error}); e.g. --model '{{\"vocab_size\": 64}}'")
    if not isinstance(overrides, dict):
        parser.error("--model: a JSON object of model fields, e.g. '{\"vocab_size\": 64}'")
    from pydantic import ValidationError

    try:
        spec = small_spec(args.family, args.precision, **{**fields, **overrides})
    except ValidationError as error:
        parser.error(f"--model: {error}")
    layout = Layout(
        tensor=args.tensor,
        sequence_parallel=args.sequence_parallel,
        activation_checkpointing=args.recompute,
        micro_batch_size=args.micro_batch,
    )
    measured = measure_step(spec, layout)
    planned = estimate_memory(ModelDims.from_spec(spec), layout, args.precision, kernels="cpu")
    kib = 1024
    print(f"planned  {planned.total / kib:9.1f} KiB", end="  ")
    print(f"(grads {planned.grads / kib:.1f}, activations {planned.activations / kib:.1f},"
          f" temporary {planned.temporary / kib:.1f})")  # fmt: skip
    print(f"measured {measured.total / kib:9.1f} KiB", end="  ")
    print(f"(grads {measured.grads / kib:.1f}, activations {measured.activations / kib:.1f},"
          f" temporary {measured.temporary / kib:.1f})")  # fmt: skip
    module, op = state["at"]
    print(f"peak in {module}, at {op}\n")
    states = sum(
        size for size, kind, _ in state["live"] if kind in ("PARAM", "BUFFER", "OPT", "OTH")
    )
    print(f"{states / kib:9.1f} KiB  parameters and optimizer states")
    rows = [
        row for row in state["live"] if row[1] not in ("PARAM", "BUFFER", "OPT", "OTH") and row[0]
    ]
    for size, kind, (op, module, phase) in sorted(rows, key=lambda r: -r[0]):
        print(f"{size / kib:9.1f} KiB  {kind:<5} {phase:<8} {op:<48} {module}")


if __name__ == "__main__":
    main()
