"""Human views of a `Plan`: rich tables for the terminal and a Graphviz (dot) export.

The terminal report reads top to bottom: verdict, chosen layout, memory per
GPU and per stage, speed and time to train, the stage map (layers → stages →
GPUs), then the alternatives and why each lost.
"""

from __future__ import annotations

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from llmspec.plan import devices
from llmspec.plan.plan import Plan
from llmspec.plan.ppo_memory import MODELS, PHASES, PPOPlan
from llmspec.plan.types import MEMORY_CATEGORIES
from llmspec.text import duration
from llmspec.units import GIB

CATEGORIES = (*MEMORY_CATEGORIES, "total")
MAX_STAGE_ROWS = 12


def gib(n: float) -> str:
    return f"{n / GIB:,.2f}"


def verdict(plan: Plan) -> Panel:
    mem = plan.memory
    used = mem.total + mem.overhead_bytes
    if plan.fits:
        text = Text.assemble(
            ("fits", "bold green"),
            f": peak {gib(mem.total)} GiB + {gib(mem.overhead_bytes)} GiB runtime overhead = "
            f"{gib(used)} of {gib(plan.capacity_bytes)} GiB per {plan.cluster.gpu.name} "
            f"({used / plan.capacity_bytes:.0%}), headroom {gib(plan.headroom_bytes)} GiB",
        )
    else:
        text = Text.assemble(
            ("does not fit", "bold red"),
            f": {gib(used)} GiB needed of {gib(plan.capacity_bytes)} GiB "
            f"(OOM by {gib(-plan.headroom_bytes)} GiB) even in the closest layout",
        )
    return Panel(text, title=f"llmspec plan · {plan.name}", expand=False)


def layout_table(plan: Plan) -> Table:
    pinned = {p.split("=")[0] for p in plan.pinned}
    table = Table(title="Layout", title_justify="left")
    table.add_column("field")
    table.add_column("value", justify="right")
    table.add_column("from")
    for key, value in plan.layout.to_dict().items():
        source = "pinned" if key in pinned else ("derived" if key == "grad_accum_steps" else "auto")
        table.add_row(key, str(value), source)
    return table


def memory_table(plan: Plan) -> Table:
    """Per-GPU breakdown of the worst stage, then every stage (runs of equal stages merged)."""
    table = Table(title="Memory per GPU (GiB)", title_justify="left")
    table.add_column("stage")
    table.add_column("blocks", justify="right")
    for cat in CATEGORIES:
        table.add_column(cat, justify="right")
    table.add_column("host", justify="right")
    stages = plan.memory.stages
    # Long pipelines: the first and last stages are the interesting ones (1F1B holds the most
    # micro-batches on the first; the head sits on the last); the middle is summarised.
    shown = range(len(stages))
    if len(stages) > MAX_STAGE_ROWS:
        shown = [*range(4), None, *range(len(stages) - 3, len(stages))]
    for i in shown:
        if i is None:
            table.add_row("…", "", *("" for _ in CATEGORIES), "")
            continue
        s = stages[i]
        table.add_row(
            str(i),
            str(s.layers),
            *(gib(getattr(s, c)) for c in CATEGORIES),
            gib(s.host_bytes),
        )
    mem = plan.memory
    table.add_row(
        "worst",
        "",
        *(gib(getattr(mem, c)) for c in CATEGORIES),
        gib(mem.host_bytes),
        style="bold",
    )
    table.caption = (
        f"runtime overhead (CUDA context, NCCL, fragmentation) {gib(mem.overhead_bytes)} GiB, "
        f"not in total; capacity {gib(plan.capacity_bytes)} GiB"
    )
    return table


def performance_table(plan: Plan) -> Table:
    perf = plan.performance
    table = Table(title="Speed", title_justify="left")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("step time", f"{perf.step_time_s:.4g} s")
    table.add_row("tokens/s", f"{perf.tokens_per_s:,.0f}")
    table.add_row("TFLOP/s per GPU (model FLOPs)", f"{perf.tflops_per_gpu:.4g}")
    table.add_row("MFU", f"{perf.mfu:.1%} of {plan.peak_tflops:g} TFLOP/s ({plan.precision})")
    table.add_row("time to train", duration(perf.time_to_train_s))
    total = perf.step_time_s
    for part, seconds in plan.step.to_dict().items():
        if seconds > 0:
            table.add_row(f"  {part.replace('_', ' ')}", f"{seconds:.4g} s ({seconds / total:.0%})")
    return table


def stage_map(plan: Plan) -> Text:
    """Layers → stages → GPUs; runs of alike middle stages (same block count) share a line."""
    lines = Text()
    rows = plan.stage_map()
    width = 30
    most = max(r["layers"] for r in rows)
    i = 0
    while i < len(rows):
        j = i
        while (
            j + 1 < len(rows)
            and not rows[i]["also"]
            and not rows[j + 1]["also"]
            and rows[j + 1]["layers"] == rows[i]["layers"]
        ):
            j += 1
        first, last = rows[i], rows[j]
        label = (
            f"stage {first['stage']:>3}" if i == j else f"stages {first['stage']}–{last['stage']}"
        )
        lo, hi = first["blocks"][0], last["blocks"][1]
        blocks = f"block {lo}" if lo == hi else f"blocks {lo}–{hi}"
        if i != j:
            blocks += f" ({first['layers']} each)"
        extra = (" + " + " + ".join(first["also"])) if first["also"] else ""
        bar = "█" * max(1, round(width * first["layers"] / most))
        ranks = (first["ranks"][0], last["ranks"][1])
        nodes = (first["nodes"][0], last["nodes"][1])
        gpus = f"GPUs {ranks[0]}–{ranks[1]}" if ranks[0] != ranks[1] else f"GPU {ranks[0]}"
        where = f"node {nodes[0]}" if nodes[0] == nodes[1] else f"nodes {nodes[0]}–{nodes[1]}"
        lines.append(f"{label:<13} {blocks + extra:<36} ")
        lines.append(bar.ljust(width), style="cyan")
        lines.append(f"  → {gpus} ({where})\n")
        i = j + 1
    lines.rstrip()
    return lines


def alternatives_table(plan: Plan) -> Table:
    table = Table(title="Alternatives", title_justify="left")
    table.add_column("layout")
    table.add_column("step s", justify="right")
    table.add_column("MFU", justify="right")
    table.add_column("tokens/s", justify="right")
    table.add_column("memory GiB", justify="right")
    table.add_column("why not")
    for alt in plan.alternatives:
        table.add_row(
            alt.layout.describe(),
            f"{alt.step_time_s:.4g}",
            f"{alt.mfu:.1%}",
            f"{alt.tokens_per_s:,.0f}",
            gib(alt.memory_total_bytes),
            Text(alt.rejected_because, style="red" if not alt.fits else ""),
        )
    return table


def render(plan: Plan) -> Group:
    parts = [verdict(plan), layout_table(plan), memory_table(plan), performance_table(plan)]
    parts.append(Panel(stage_map(plan), title="Stage map: layers → stages → GPUs", expand=False))
    if plan.ppo is not None:
        parts.append(ppo_table(plan.ppo))
    if plan.alternatives:
        parts.append(alternatives_table(plan))
    parts.append(Text("\n".join(f"• {line}" for line in plan.explanation)))
    return Group(*parts)


def ppo_table(ppo: PPOPlan) -> Table:
    """Objective ppo: one row per resident model and per phase, one column per ZeRO stage of
    actor and critic (the reference and reward follow DeepSpeed-Chat's eval rule)."""
    table = Table(title="PPO memory per GPU (GiB)", title_justify="left")
    table.add_column("row")
    for s in ppo.stages:
        chosen = " (plan)" if s.zero_stage == ppo.chosen_zero_stage else ""
        table.add_column(f"ZeRO {s.zero_stage}{chosen}", justify="right")
    notes = {
        "reference": "frozen base",
        "reward": "frozen" if ppo.reward == "model" else "rule: no model",
        "generate": f"KV cache, {ppo.candidates_per_rank} × {ppo.prompt_len + ppo.new_tokens} tokens",
        "score": "fp32 logits of the rollouts",
    }
    for name in MODELS:
        label = f"{name} ({notes[name]})" if name in notes else f"{name} (trains)"
        table.add_row(label, *(gib(s.models[name]) for s in ppo.stages))
    table.add_row("reference/reward ZeRO stage", *(str(s.frozen_zero_stage) for s in ppo.stages))
    for name in PHASES:
        label = f"phase: {name}" + (f" ({notes[name]})" if name in notes else "")
        cells = []
        for s in ppo.stages:
            mark = " ◀" if name == s.peak_phase else ""
            cells.append(gib(s.phases[name]) + mark)
        table.add_row(label, *cells)
    table.add_row(
        "peak = models + largest phase", *(gib(s.total) for s in ppo.stages), style="bold"
    )
    table.add_row(
        "fits (with runtime overhead)",
        *(("[green]yes[/]" if s.fits else "[red]no[/]") for s in ppo.stages),
    )
    table.caption = "\n".join(f"ZeRO {s.zero_stage}: {s.why()}" for s in ppo.stages)
    table.caption_justify = "left"
    return table


# ----------------------------------------------------------------------------- Graphviz
DOT_DEVICE_LIMIT = 64  # draw every GPU up to this many; larger clusters get one node per stage


def _device_clusters(plan: Plan) -> list[str]:
    """The device graph: one box per node holding its GPUs (rank, tensor/data coordinates)."""
    graph = devices.build_device_graph(plan.cluster)
    lay = plan.layout
    out = []
    for host in sorted(
        (n for n, d in graph.nodes(data=True) if d["kind"] == "host"), key=lambda n: int(n[4:])
    ):
        gpus = sorted(
            (n for n in graph.neighbors(host) if graph.nodes[n]["kind"] == "gpu"),
            key=lambda n: int(n[3:]),
        )
        link = graph.edges[gpus[0], gpus[1]]["gbps"] if len(gpus) > 1 else 0
        out.append(f"  subgraph cluster_{host} {{")
        out.append(f'    label="{host} ({link:g} GB/s GPU links)"; style=filled; color=lightgrey;')
        for g in gpus:
            rank = int(g[3:])
            tp, rest = rank % lay.tensor, rank // lay.tensor
            dp, pp = rest % lay.data, rest // lay.data
            out.append(f'    "{g}" [shape=ellipse, label="GPU {rank}\\ntp{tp} dp{dp} pp{pp}"];')
        out.append("  }")
    return out


def to_dot(plan: Plan) -> str:
    """The layer graph grouped by pipeline stage, each stage wired to the GPUs running it.

    Runs of blocks inside a stage are one node ("blocks 0–7") so a 128-layer
    model stays readable; nodes of the cluster are drawn one box per node.
    """
    out = [
        "digraph plan {",
        "  rankdir=LR;",
        '  node [shape=box, fontname="Helvetica"];',
        f'  label="{plan.name}: {plan.layout.describe()}";',
    ]
    rows = plan.stage_map()
    small = plan.cluster.world_size <= DOT_DEVICE_LIMIT
    if small:
        out += _device_clusters(plan)
    previous = None
    for r in rows:
        s = r["stage"]
        out.append(f"  subgraph cluster_stage{s} {{")
        out.append(f'    label="stage {s}";')
        chain = []
        if "embedding" in r["also"]:
            chain.append(("embedding", "embedding"))
        first, last = r["blocks"]
        label = f"block {first}" if first == last else f"blocks {first}–{last}"
        chain.append((f"s{s}_blocks", label))
        if "head" in r["also"]:
            chain.append(("head", "final norm + head"))
        for name, label in chain:
            out.append(f'    "{name}" [label="{label}"];')
        out.append("  }")
        anchor = chain[len(chain) // 2][0]
        if small:  # one edge per GPU of the device graph running this stage
            for rank in range(r["ranks"][0], r["ranks"][1] + 1):
                out.append(f'  "{anchor}" -> "gpu{rank}" [style=dashed, arrowhead=none];')
        else:
            gpus = f"gpus_stage{s}"
            out.append(
                f'  "{gpus}" [shape=ellipse, label="GPUs {r["ranks"][0]}–{r["ranks"][1]}\\n'
                f'nodes {r["nodes"][0]}–{r["nodes"][1]}"];'
            )
            out.append(f'  "{anchor}" -> "{gpus}" [style=dashed, arrowhead=none];')
        for (a, _), (b, _) in zip(chain, chain[1:], strict=False):
            out.append(f'  "{a}" -> "{b}";')
        if previous is not None:
            out.append(f'  "{previous}" -> "{chain[0][0]}" [label="p2p"];')
        previous = chain[-1][0]
    out.append("}")
    return "\n".join(out) + "\n"


def comparison_table(predicted, measured, *, title: str | None = None) -> Table:
    """Predicted vs measured per category and for the peak (GiB; error vs measured).

    ``predicted`` is a MemoryEstimate (``kernels="cpu"`` for a CPU measurement),
    ``measured`` a ``llmspec.verify.measure.MeasuredMemory``. Categories are split
    the way MemTracker labels tensors at the peak; the peak is what to judge.
    """
    table = Table(
        title=title or f"Predicted vs measured (measured in {measured.seconds:.1f} s)",
        title_justify="left",
    )
    for col in ("category", "predicted GiB", "measured GiB", "error"):
        table.add_column(col, justify="left" if col == "category" else "right")
    for name in CATEGORIES:
        p, m = getattr(predicted, name), getattr(measured, name)
        err = f"{(p - m) / m:+.1%}" if m else "—"
        label = "[bold]peak" if name == "total" else name
        table.add_row(label, gib(p), gib(m), err)
    return table


def ppo_comparison_table(planned: float, measured, *, title: str) -> Table:
    """Objective ppo: the PPO plan's models + larger update phase beside the fake-tensor
    measure of one actor and one critic update (`measure_ppo_update`), by MemTracker's
    categories at the measured peak."""
    table = Table(title=title, title_justify="left")
    for col in ("", "GiB"):
        table.add_column(col, justify="left" if not col else "right")
    for name in CATEGORIES[:-1]:
        table.add_row(f"measured {name}", gib(getattr(measured, name)))
    table.add_row("[bold]measured peak", gib(measured.total))
    table.add_row(
        "[bold]planned (models + larger update)",
        f"{gib(planned)} ({(planned - measured.total) / measured.total:+.1%})",
    )
    return table
