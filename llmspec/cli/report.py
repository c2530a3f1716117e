"""`llmspec report SPEC -o report.html`: the plan as one self-contained HTML page.

Figures are drawn with matplotlib into inline SVG (no script, no network at view
time): memory per pipeline stage stacked by category against the GPU's capacity,
the 1F1B pipeline schedule of the chosen layout as a timeline, and the
alternatives as step time against memory. Tables give the layer → stage → GPU map
and why each alternative lost. Everything is read from the plan's contract-2 form,
so the page shows what `plan --json` says. Output is deterministic: a fixed SVG hash
salt and no date in the metadata.
"""

from __future__ import annotations

import html
import io

import matplotlib

matplotlib.use("svg")
import matplotlib.pyplot as plt  # noqa: E402

from llmspec.plan.types import MEMORY_CATEGORIES, Layout  # noqa: E402
from llmspec.text import duration  # noqa: E402
from llmspec.units import GIB  # noqa: E402

COLOURS = {
    "params": "#4e79a7",
    "grads": "#f28e2b",
    "optimizer": "#e15759",
    "activations": "#76b7b2",
    "temporary": "#59a14f",
    "forward": "#4e79a7",
    "backward": "#f28e2b",
    "after": "#bab0ac",
}


def svg(figure) -> str:
    """A figure as inline SVG, byte-identical across runs."""
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": "llmspec", "svg.fonttype": "none"}):
        figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(figure)
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # inline: drop the XML prolog and doctype


def memory_figure(plan: dict) -> str:
    stages = plan["memory"]["stages"]
    figure, ax = plt.subplots(figsize=(7, 3.2))
    labels = [f"stage {s['stage']}\n{s['layers']} blocks" for s in stages]
    bottom = [0.0] * len(stages)
    for category in MEMORY_CATEGORIES:
        heights = [s[category] / GIB for s in stages]
        ax.bar(labels, heights, bottom=bottom, label=category, color=COLOURS[category])
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    capacity = plan["memory"]["capacity_bytes"] / GIB
    ax.axhline(capacity, color="black", linestyle="--", linewidth=1)
    ax.text(len(stages) - 0.5, capacity, f" capacity {capacity:.1f} GiB", va="bottom", ha="right")
    ax.set_ylabel("GiB per GPU (peak)")
    ax.set_title("Memory per GPU, by pipeline stage")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return svg(figure)


def one_f_one_b(stages: int, micro_batches: int, forward: float, backward: float) -> list:
    """Start times of DeepSpeed's 1F1B schedule (uniform stages): [(stage, kind, mb, t0, t1)].

    Stage s runs min(p-1-s, m) forwards, then alternates forward and backward, then
    drains its backwards; a forward waits for the previous stage's, a backward for the
    next stage's (Narayanan et al. 2021, Sec. 2.2, PipeDream-Flush)."""
    order = []
    for s in range(stages):
        warm = min(stages - 1 - s, micro_batches)
        seq = [("F", i) for i in range(warm)]
        f, b = warm, 0
        while b < micro_batches:
            if f < micro_batches:
                seq.append(("F", f))
                f += 1
            seq.append(("B", b))
            b += 1
        order.append(seq)
    done: dict = {}
    free = [0.0] * stages
    position = [0] * stages
    events = []
    while any(position[s] < len(order[s]) for s in range(stages)):
        progressed = False
        for s in range(stages):
            if position[s] >= len(order[s]):
                continue
            kind, i = order[s][position[s]]
            need = (s - 1, "F", i) if kind == "F" else (s + 1, "B", i)
            if kind == "B" and s == stages - 1:
                need = (s, "F", i)
            if kind == "F" and s == 0:
                need = None
            if need is not None and need not in done:
                continue
            start = max(free[s], done[need] if need else 0.0)
            end = start + (forward if kind == "F" else backward)
            done[(s, kind, i)] = end
            free[s] = end
            events.append((s, kind, i, start, end))
            position[s] += 1
            progressed = True
        if not progressed:  # cannot happen for a valid 1F1B order
            raise RuntimeError("1F1B schedule deadlocked")
    return events


def schedule_figure(plan: dict) -> str:
    layout, parts = plan["layout"], plan["performance"]["breakdown_s"]
    stages, micro = layout["pipeline"], layout["grad_accum_steps"]
    per_micro = (parts.get("compute", 0.0) + parts.get("elementwise", 0.0)) / micro
    per_micro += (parts.get("tensor_parallel", 0.0) + parts.get("pipeline_p2p", 0.0)) / micro
    share = 1 / 4 if layout["activation_checkpointing"] == "full" else 1 / 3  # fwd : bwd FLOPs
    events = one_f_one_b(stages, micro, per_micro * share, per_micro * (1 - share))
    end = max(e[4] for e in events)
    after = sum(
        parts.get(k, 0.0) for k in ("data_parallel", "zero3_gather", "optimizer", "offload")
    )
    figure, ax = plt.subplots(figsize=(8, 0.5 + 0.45 * stages))
    for kind, colour in (("F", COLOURS["forward"]), ("B", COLOURS["backward"])):
        for s in range(stages):
            bars = [(t0, t1 - t0) for st, k, _, t0, t1 in events if st == s and k == kind]
            ax.broken_barh(
                bars, (s - 0.4, 0.8), facecolors=colour, edgecolor="white", linewidth=0.3
            )
    if after > 0:
        ax.broken_barh([(end, after)] * 1, (-0.4, stages - 0.2), facecolors=COLOURS["after"])
    ax.set_yticks(range(stages), [f"stage {s}" for s in range(stages)])
    ax.invert_yaxis()
    ax.set_xlabel("seconds into the optimizer step")
    ax.set_title(
        f"1F1B schedule: {micro} micro-batches over {stages} stage(s); forward (blue), "
        "backward (orange), then gradient sync / optimizer (grey)",
        fontsize=9,
    )
    return svg(figure)


def alternatives_figure(plan: dict) -> str:
    figure, ax = plt.subplots(figsize=(7, 3.2))
    chosen = plan["memory"]["per_gpu_bytes"]["total"] / GIB, plan["performance"]["step_time_s"]
    for fits, marker, label in ((True, "o", "fits"), (False, "x", "does not fit")):
        points = [a for a in plan["alternatives"] if a["fits"] == fits]
        if points:
            ax.scatter(
                [a["memory_total_bytes"] / GIB for a in points],
                [a["step_time_s"] for a in points],
                marker=marker,
                label=f"alternative ({label})",
                color="#9c755f" if fits else "#e15759",
            )
    ax.scatter([chosen[0]], [chosen[1]], marker="*", s=160, color="#4e79a7", label="chosen")
    ax.axvline(plan["memory"]["capacity_bytes"] / GIB, color="black", linestyle="--", linewidth=1)
    ax.set_xlabel("peak GiB per GPU")
    ax.set_ylabel("step time (s)")
    ax.set_title("Layouts weighed: step time against memory (dashed: capacity)")
    ax.legend(frameon=False, fontsize=8)
    return svg(figure)


def _table(headers: list[str] | None, rows: list[list]) -> str:
    if headers is None:
        head_row = ""
    else:
        head_row = "<thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in headers)
        head_row += "</tr></thead>"
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table>{head_row}<tbody>{body}</tbody></table>"


def describe(layout: dict) -> str:
    """Contract 2's layout in the words the plan uses (`Layout.describe`)."""
    return Layout(**layout).describe()


def report_html(plan: dict) -> str:
    """The page for one plan (contract 2 dict)."""
    perf, mem = plan["performance"], plan["memory"]
    facts = [
        ["layout", describe(plan["layout"])],
        ["peak per GPU", f"{mem['per_gpu_bytes']['total'] / GIB:.2f} of {mem['capacity_bytes'] / GIB:.2f} GiB ({'fits' if mem['fits'] else 'does not fit'})"],
        ["step time", f"{perf['step_time_s']:.4g} s"],
        ["throughput", f"{perf['tokens_per_s']:,.0f} tokens/s"],
        ["time to train", duration(perf["time_to_train_s"])],
        ["parameters", f"{plan['params']['total']:,}"],
    ]  # fmt: skip
    if plan["cluster"]["gpu"] != "cpu":  # the cpu entry's peak is nominal: no MFU for it
        facts.insert(4, ["MFU", f"{perf['mfu']:.1%}"])
    stage_rows = [
        [r["stage"], f"{r['blocks'][0]}–{r['blocks'][1]}", ", ".join(r["also"]) or "—",
         f"{r['ranks'][0]}–{r['ranks'][1]}", f"{r['nodes'][0]}–{r['nodes'][1]}"]
        for r in plan["stage_map"]
    ]  # fmt: skip
    alt_rows = [
        [describe(a["layout"]), f"{a['memory_total_bytes'] / GIB:.2f}", "yes" if a["fits"] else "no",
         f"{a['step_time_s']:.4g}", a["rejected_because"]]
        for a in plan["alternatives"]
    ]  # fmt: skip
    sections = [
        f"<h1>llmspec plan · {html.escape(plan['name'])}</h1>",
        f"<p class='sub'>{html.escape(plan['cluster']['gpu'])}, {plan['cluster']['nodes']} node(s) × "
        f"{plan['cluster']['gpus_per_node']}, {html.escape(plan['cluster']['precision'])}; "
        f"llmspec {html.escape(plan['llmspec_version'])}</p>",
        _table(None, facts),
        "<h2>Memory per stage</h2>",
        f"<figure id='memory'>{memory_figure(plan)}</figure>",
        "<h2>Pipeline schedule</h2>",
        f"<figure id='schedule'>{schedule_figure(plan)}</figure>",
        "<h2>Layers → stages → GPUs</h2>",
        _table(["stage", "blocks", "also", "ranks", "nodes"], stage_rows),
        "<h2>Alternatives</h2>",
        f"<figure id='alternatives'>{alternatives_figure(plan)}</figure>",
        _table(["layout", "peak GiB", "fits", "step s", "why it lost"], alt_rows),
        "<h2>Why this layout</h2>",
        "<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in plan["explanation"]) + "</ul>",
    ]
    style = (
        "body{font-family:Helvetica,Arial,sans-serif;max-width:980px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.2em .5em;"
        "text-align:left;font-size:.9em}figure{margin:0}svg{max-width:100%;height:auto}"
        ".sub{color:#666}"
    )
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>llmspec plan · {html.escape(plan['name'])}</title><style>{style}</style></head>"
        "<body>\n" + "\n".join(sections) + "\n</body></html>\n"
    )
