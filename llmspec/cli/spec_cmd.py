"""Spec commands: validate, show, schema, hardware, presets."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from dataclasses import asdict

import yaml
from rich.table import Table
from rich.text import Text

from llmspec.cli.output import print_error, stderr_console, stdout_console, user_text
from llmspec.errors import SpecError
from llmspec.spec.hardware import CATALOG
from llmspec.spec.load import load_located
from llmspec.spec.presets import PRESETS, SOURCES
from llmspec.spec.schema import Spec


def register(subparsers) -> None:
    def add(name: str, help_: str, description: str, examples: str) -> argparse.ArgumentParser:
        return subparsers.add_parser(
            name,
            help=help_,
            description="\n".join(textwrap.fill(part, 90) for part in description.split("\n")),
            epilog="examples:\n" + examples,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    p = add(
        "validate",
        "check spec files; every problem with file:line:col and a hint",
        "Load each spec (extends, preset, defaults), validate every field and the rules "
        "between fields. Prints one ok line per good file on stderr; exits 2 if any file fails.",
        "  llmspec validate specs/*.yaml\n",
    )
    p.add_argument("specs", nargs="+", metavar="SPEC", help="spec files (YAML)")
    p.add_argument(
        "--json",
        action="store_true",
        help="also print the results as JSON on stdout: per file, ok and the problems "
        "(file, line, col, field, message, hint, code)",
    )
    p.set_defaults(func=cmd_validate)

    p = add(
        "show",
        "print the fully resolved spec (extends, preset and defaults applied)",
        "Print SPEC after following extends, filling its model preset and every default, "
        "as YAML (or JSON) on stdout. The output is itself a valid spec.",
        "  llmspec show specs/llama2-7b.yaml\n  llmspec show specs/tiny-cpu.yaml --json\n",
    )
    p.add_argument("spec", metavar="SPEC", help="spec file (YAML)")
    p.add_argument("--json", action="store_true", help="print JSON instead of YAML")
    p.set_defaults(func=cmd_show)

    p = add(
        "schema",
        "print the JSON Schema of a spec (for editors)",
        "Print the JSON Schema (draft 2020-12) of spec v1 on stdout. Editors with the YAML "
        "language server validate and complete a spec that starts with\n"
        "  # yaml-language-server: $schema=llmspec.schema.json",
        "  llmspec schema > llmspec.schema.json\n",
    )
    p.set_defaults(func=cmd_schema)

    p = add(
        "hardware",
        "list the GPU catalog with its datasheet figures",
        "The accelerators `cluster.gpu` can name, with dense peak FLOP/s, memory and bandwidth "
        "from vendor datasheets. Peaks are dense (no sparsity); links are per GPU, per direction.",
        "  llmspec hardware\n  llmspec hardware --json\n",
    )
    p.add_argument("--json", action="store_true", help="print the catalog as JSON on stdout")
    p.set_defaults(func=cmd_hardware)

    p = add(
        "presets",
        "list the named architectures `model.preset` accepts",
        "Named architectures with their source; fields a spec gives explicitly override them.",
        "  llmspec presets\n  llmspec presets --json\n",
    )
    p.add_argument("--json", action="store_true", help="print the presets as JSON on stdout")
    p.set_defaults(func=cmd_presets)


def cmd_validate(args) -> int:
    console = stderr_console()
    failed = 0
    results = []
    for path in args.specs:
        try:
            loaded = load_located(path)
        except SpecError as exc:
            print_error(exc)
            failed += 1
            results.append(
                {"path": path, "ok": False, "problems": [asdict(p) for p in exc.problems]}
            )
            continue
        results.append({"path": path, "ok": True, "problems": []})
        spec = loaded.spec
        m = spec.model
        summary = f"{spec.name}: {m.arch}, {m.n_layers} layers, d_model {m.d_model}"
        if m.preset:
            summary += f", preset {m.preset}"
        console.print(Text.assemble(("ok", "green"), "  ", user_text(f"{path}  ({summary})")))
    if failed and len(args.specs) > 1:
        console.print(f"{failed} of {len(args.specs)} specs failed", markup=False)
    if args.json:
        sys.stdout.write(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    return 2 if failed else 0


def resolved_dict(spec: Spec) -> dict:
    """The spec as plain data, without `extends` (already applied)."""
    data = spec.model_dump(mode="json", by_alias=True)  # sweep params write `int`
    data.pop("extends", None)
    return data


def cmd_show(args) -> int:
    loaded = load_located(args.spec)
    data = resolved_dict(loaded.spec)
    if args.json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return 0
    header = f"# {args.spec} resolved by llmspec show"
    if len(loaded.files) > 1:
        header += " (extends " + ", ".join(loaded.files[1:]) + ")"
    sys.stdout.write(header + "\n")
    sys.stdout.write(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100))
    return 0


def spec_schema() -> dict:
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **Spec.model_json_schema()}


def cmd_schema(args) -> int:
    sys.stdout.write(json.dumps(spec_schema(), indent=2, ensure_ascii=False) + "\n")
    return 0


def cmd_hardware(args) -> int:
    if args.json:
        rows = {
            name: {
                "memory_bytes": g.memory_bytes,
                "peak_tflops": g.peak_tflops,
                "fp8_tflops": g.fp8_tflops,
                "hbm_gbps": g.hbm_gbps,
                "intra_node_gbps": g.intra_node_gbps,
                "inter_node_gbps": g.inter_node_gbps,
                "source": g.source,
            }
            for name, g in CATALOG.items()
        }
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return 0
    table = Table(title="GPU catalog (dense peaks; links per GPU, per direction)")
    for column in (
        "name",
        "memory GB",
        "BF16 TFLOP/s",
        "FP8 TFLOP/s",
        "HBM GB/s",
        "node link GB/s",
        "network GB/s",
    ):
        table.add_column(column, justify="left" if column == "name" else "right")
    for name, g in CATALOG.items():
        table.add_row(
            name,
            f"{g.memory_bytes / 1e9:.4g}",
            f"{g.peak_tflops:g}",
            f"{g.fp8_tflops:g}" if g.fp8_tflops else "-",
            f"{g.hbm_gbps:g}",
            f"{g.intra_node_gbps:g}",
            f"{g.inter_node_gbps:g}",
        )
    console = stdout_console()
    console.print(table)
    for name, g in CATALOG.items():
        console.print(f"  {name}: {g.source}", markup=False)
    return 0


def cmd_presets(args) -> int:
    if args.json:
        rows = {
            name: {"source": SOURCES[name], "model": fields} for name, fields in PRESETS.items()
        }
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return 0
    table = Table(title="model presets (`model: {preset: NAME}`; explicit fields override)")
    for column in ("name", "arch", "layers", "d_model", "heads", "kv", "d_ff", "vocab", "seq"):
        table.add_column(column, justify="left" if column in ("name", "arch") else "right")
    for name, f in PRESETS.items():
        table.add_row(
            name,
            f["arch"],
            str(f["n_layers"]),
            str(f["d_model"]),
            str(f["n_heads"]),
            str(f.get("n_kv_heads", f["n_heads"])),
            str(f["d_ff"]),
            str(f["vocab_size"]),
            str(f["max_seq_len"]),
        )
    console = stdout_console()
    console.print(table)
    for name in PRESETS:
        console.print(f"  {name}: {SOURCES[name]}", markup=False)
    return 0
