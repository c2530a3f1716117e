"""Rich renderables for memory: per-GPU breakdown, per-stage table, verdict, and
predicted vs measured. ``llmspec plan`` composes them; nothing here prints."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from llmspec.plan.types import MemoryEstimate

GIB = 1024**3
CATEGORIES = ("params", "grads", "optimizer", "activations", "temporary")
CATEGORY_NOTES = {
    "params": "weights on this GPU (training dtype; ZeRO-3: 1/data of them)",
    "grads": "gradients alive at the peak",
    "optimizer": "AdamW m, v (+ fp32 master weights under bf16/fp16 or ZeRO)",
    "activations": "tensors saved for backward (all in-flight micro-batches)",
    "temporary": "loss gradients, backward transients, ZeRO buckets, gathered params",
}


def gib(n: float) -> str:
    """Bytes as GiB with two decimals."""
    return f"{n / GIB:.2f}"


def needed_bytes(memory: MemoryEstimate) -> int:
    """What the GPU must hold: the tensor peak plus the non-tensor overheads."""
    return memory.total + memory.overhead_bytes


def breakdown_table(memory: MemoryEstimate, capacity_bytes: int) -> Table:
    """Per-GPU breakdown of the worst rank at its peak, with capacity and headroom."""
    table = Table(title="Memory per GPU (worst rank, at its peak)", title_justify="left")
    table.add_column("category")
    table.add_column("GiB", justify="right")
    table.add_column("share", justify="right")
    table.add_column("what it is", style="dim")
    for name in CATEGORIES:
        value = getattr(memory, name)
        share = f"{value / memory.total:.0%}" if memory.total else "—"
        table.add_row(name, gib(value), share, CATEGORY_NOTES[name])
    table.add_row("[bold]peak (tensors)", f"[bold]{gib(memory.total)}", "", "max_memory_allocated")
    table.add_row(
        "overhead", gib(memory.overhead_bytes), "", "CUDA context, NCCL, fragmentation (estimate)"
    )
    table.add_row("[bold]needed", f"[bold]{gib(needed_bytes(memory))}", "", "")
    table.add_row("capacity", gib(capacity_bytes), "", "")
    headroom = capacity_bytes - needed_bytes(memory)
    style = "green" if headroom >= 0 else "red"
    table.add_row(f"[{style}]headroom", f"[{style}]{gib(headroom)}", "", "")
    if memory.host_bytes:
        table.add_row("host (offload)", gib(memory.host_bytes), "", "per rank, in host RAM")
    return table


def stages_table(memory: MemoryEstimate) -> Table:
    """One row per pipeline stage (worst rank of each), GiB."""
    table = Table(title="Per pipeline stage (GiB)", title_justify="left")
    for col in ("stage", "blocks", *CATEGORIES, "peak", "host"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    worst = max(s.total for s in memory.stages)
    for s in memory.stages:
        mark = "[bold]" if s.total == worst else ""
        table.add_row(
            f"{mark}{s.stage}",
            str(s.layers),
            *(gib(getattr(s, c)) for c in CATEGORIES),
            f"{mark}{gib(s.total)}",
            gib(s.host_bytes),
        )
    return table


def verdict(memory: MemoryEstimate, capacity_bytes: int) -> Text:
    """One line: fits (with headroom) or does not (by how much)."""
    needed = needed_bytes(memory)
    if needed <= capacity_bytes:
        spare = capacity_bytes - needed
        return Text.from_markup(
            f"[bold green]fits[/]: {gib(needed)} of {gib(capacity_bytes)} GiB per GPU "
            f"({gib(spare)} GiB, {spare / capacity_bytes:.0%} to spare)"
        )
    return Text.from_markup(
        f"[bold red]does not fit[/]: needs {gib(needed)} GiB per GPU, has "
        f"{gib(capacity_bytes)} GiB ({gib(needed - capacity_bytes)} GiB over)"
    )


def memory_report(memory: MemoryEstimate, capacity_bytes: int) -> Group:
    """Breakdown, the stage table when pipelined, and the verdict."""
    parts = [breakdown_table(memory, capacity_bytes)]
    if len(memory.stages) > 1:
        parts.append(stages_table(memory))
    parts.append(verdict(memory, capacity_bytes))
    return Group(*parts)


def comparison_table(predicted, measured, *, title: str | None = None) -> Table:
    """Predicted vs measured per category and for the peak (GiB; error vs measured).

    ``predicted`` is a MemoryEstimate (``kernels="cpu"`` for a CPU measurement),
    ``measured`` a ``llmspec.plan.measure.MeasuredMemory``. Categories are split
    the way MemTracker labels tensors at the peak; the peak is what to judge.
    """
    table = Table(
        title=title or f"Predicted vs measured (measured in {measured.seconds:.1f} s)",
        title_justify="left",
    )
    for col in ("category", "predicted GiB", "measured GiB", "error"):
        table.add_column(col, justify="left" if col == "category" else "right")
    for name in (*CATEGORIES, "total"):
        p, m = getattr(predicted, name), getattr(measured, name)
        err = f"{(p - m) / m:+.1%}" if m else "—"
        label = "[bold]peak" if name == "total" else name
        table.add_row(label, gib(p), gib(m), err)
    return table
