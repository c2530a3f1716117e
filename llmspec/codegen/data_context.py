"""Template values for the data stage: spec paths as the project sees them, and derived values.

Spec paths (source globs, `tokenizer.path`, `filters.blocklist`) are relative to the
spec file; the generated `prepare_data.py` resolves relative paths against its own
folder. So the build rewrites each relative path to go from the output folder to the
same place. Absolute paths and paths that start with a `${VAR}` stay as written: they
are resolved on the machine that runs the data preparation.

Everything the data templates compute is computed here, so the templates only place
values and pick the partials (`templates/_prepare_data/`, `templates/_data/`) of the
options the spec uses: which input formats can occur (a source's `format: auto` is
settled here when every path its glob can match ends the same way), whether a tokenizer
is trained, and the LSH banding of near-duplicate removal.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

from llmspec.spec.schema import DataSpec

JSONL_SUFFIXES = (".jsonl", ".json")  # format auto: these are JSON lines, the rest text


def project_relative(path: str, *, spec_dir: Path, project_dir: Path) -> str:
    """`path` (relative to `spec_dir`) rewritten relative to `project_dir`, POSIX style."""
    if path.startswith("${") or PurePosixPath(path).is_absolute() or os.path.isabs(path):
        return path
    base = os.path.relpath(spec_dir.resolve(), project_dir.resolve())
    joined = PurePosixPath(Path(base).as_posix()) / path
    return _tidy(joined.as_posix())


def _tidy(path: str) -> str:
    """Drop `./` segments without touching `..` (globs may hold `**`)."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    return "/".join(parts) or "."


def source_format(pattern: str, fmt: str) -> str:
    """`text` or `jsonl` when every path `pattern` can match has that format, else `auto`.

    A glob matches only paths that end with its literal tail (what follows its last
    wildcard or `${VAR}`), so `corpus/**/*.txt` is text and `data/*.jsonl` JSON lines,
    while `corpus/*` is decided per path when prepare_data.py runs, as before.
    """
    if fmt != "auto":
        return fmt
    tail = re.split(r"[*?\[\]}]", pattern.rstrip("/"))[-1]
    if tail.endswith(JSONL_SUFFIXES):
        return "jsonl"
    if any(suffix.endswith(tail) for suffix in JSONL_SUFFIXES):
        return "auto"  # e.g. "*" or "*on": a matched path may end in .json
    return "text"


def _trapezoid(y: list[float], x: list[float]) -> float:
    return sum((x[i + 1] - x[i]) * (y[i + 1] + y[i]) / 2.0 for i in range(len(x) - 1))


def lsh_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """Bands b and rows r (b * r <= num_perm) minimising the weighted false-positive and
    false-negative areas of the S-curve 1 - (1 - s^r)^b around the threshold (Leskovec,
    Rajaraman & Ullman, Mining of Massive Datasets, ch. 3.4). Every LSH candidate is
    confirmed by its estimated Jaccard, so a false candidate costs one comparison while a
    missed one is a duplicate kept: misses weigh 9 times more (at 0.8 and 128 permutations:
    14 bands of 9 rows; a pair at Jaccard 0.8 becomes a candidate with probability 0.87).

    Integrated on 1001 points of [0, 1] by the trapezoid rule (the generated code did this
    with numpy before the build did it; tests/test_data_context.py holds the two equal)."""
    s = [i * 0.001 for i in range(1000)] + [1.0]  # numpy.linspace(0, 1, 1001)
    best = None
    for rows in range(1, num_perm + 1):
        bands = num_perm // rows
        p = [1.0 - (1.0 - v**rows) ** bands for v in s]
        false_pos = _trapezoid([q if v < threshold else 0.0 for v, q in zip(s, p, strict=True)], s)
        false_neg = _trapezoid(
            [1.0 - q if v >= threshold else 0.0 for v, q in zip(s, p, strict=True)], s
        )
        cost = 0.1 * false_pos + 0.9 * false_neg
        if best is None or cost < best[0]:
            best = (cost, bands, rows)
    return best[1], best[2]


def data_context(
    data: DataSpec, *, spec_dir: Path, project_dir: Path, objective: str = "causal_lm"
) -> dict:
    """The `data` variable of templates/prepare_data.py.j2 and templates/data.py.j2.

    Under objective sft a JSON-lines record is a (prompt, response) pair: its "text_field"
    is the pair of keys [prompt_field, response_field], and the loss is on the response.
    Under reward and dpo a record is a preference (prompt, chosen, rejected): two sequences,
    chosen then rejected, that the loader keeps together."""
    pairs = objective in ("reward", "dpo")
    sft = objective == "sft" or pairs

    def fields(s) -> list[str] | str:
        if pairs:
            return [s.prompt_field, s.chosen_field, s.rejected_field]
        return [s.prompt_field, s.response_field] if sft else s.text_field

    def rel(path: str | None) -> str | None:
        if path is None:
            return None
        return project_relative(path, spec_dir=spec_dir, project_dir=project_dir)

    weights = [s.weight for s in data.sources]
    sources = [
        {
            "path": rel(s.path),
            "format": source_format(s.path, s.format),
            "text_field": fields(s),
            "exclude": list(s.exclude),
        }
        for s in data.sources
    ]
    formats = {s["format"] for s in sources}
    near = data.dedup.near
    lsh = None
    if near is not None:
        bands, rows = lsh_bands(near.threshold, near.num_perm)
        lsh = {"bands": bands, "rows": rows}
    # What stage 1's key covers: each setting of the emitted code by name, the rest by value.
    documents_key = [
        "STAGE_VERSION",
        "SOURCES",
        "MAX_DOCUMENT_BYTES",
        "UNICODE_FORM" if data.normalize.unicode != "none" else "None",
        repr(data.normalize.whitespace),
        "MIN_CHARS",
        "MAX_CHARS" if data.filters.max_chars is not None else "None",
        "MAX_REPEATED_LINE_FRACTION",
        "sorted(load_blocklist())" if data.filters.blocklist is not None else "[]",
        repr(data.dedup.exact),
        *(["NEAR_DEDUP_THRESHOLD", "MINHASH_PERMUTATIONS", "SHINGLE_WORDS"] if near else []),
        "VALIDATION_FRACTION",
        "SPLIT_SEED",
        "TASK_BYTES",
        "MIN_TASKS",
        *(["sorted(REDACTIONS)"] if data.redact else []),
    ]
    # Stage 1's task stages, in order (templates/_prepare_data/tasks.py.j2).
    stages = [
        "read",
        *(["exact"] if data.dedup.exact else []),
        *(["minhash", "lsh", "clusters"] if lsh else []),
    ]
    return {
        "sources": sources,
        "stages": stages,
        "exact": data.dedup.exact,
        "redact": list(data.redact),
        "dask": data.engine == "dask",
        "cluster": data.engine != "local",  # a Dask or Ray cluster runs the tasks
        "engine_call": {
            "local": "worker_pool(max(1, workers))",
            "dask": "dask_cluster()",
            "ray": "ray_cluster()",
        }[data.engine],
        "engine_text": {
            "local": "worker processes",
            "dask": "a Dask cluster (DASK_SCHEDULER_ADDRESS)",
            "ray": "a Ray cluster (RAY_ADDRESS)",
        }[data.engine],
        "reads_text": bool(formats & {"text", "auto"}),
        "reads_jsonl": bool(formats & {"jsonl", "auto"}),
        "detects_format": "auto" in formats,
        "tokenizer_path": rel(data.tokenizer.path),
        "blocklist": rel(data.filters.blocklist),
        "lsh": lsh,
        "documents_key": documents_key,
        "sft": sft,  # records with a prompt: no loss on it
        "pairs": pairs,  # preference records: sequences 2i (chosen) and 2i + 1 (rejected)
        # data.sources[].weight: the training stream mixes the sources by these token weights
        "mixture": weights if any(w != 1.0 for w in weights) else None,
    }
