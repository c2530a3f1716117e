"""`llmspec import hf DIR`: a spec from a Hugging Face model folder's config.json."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import textwrap
from pathlib import Path

from llmspec.errors import UserError
from llmspec.spec.hf_config import FAMILIES, spec_from_hf, spec_text
from llmspec.spec.load import load_spec_text


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "import",
        help="write a spec from another tool's model (hf: a Hugging Face config.json)",
        description=textwrap.fill(
            "Read DIR/config.json of a Hugging Face model ("
            + ", ".join(sorted(FAMILIES))
            + ") and write a spec whose model: section is that architecture, every field with "
            "the HF key it came from; DIR/tokenizer.json, when present, becomes "
            "data.tokenizer.path. A field llmspec's model cannot reproduce is an error naming it.",
            90,
        ),
        epilog="examples:\n  llmspec import hf ./Llama-3.2-1B -o specs/llama-1b.yaml\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("format", choices=["hf"], help="hf: a Hugging Face model folder")
    p.add_argument("dir", metavar="DIR", help="the folder holding config.json")
    p.add_argument("-o", "--output", metavar="FILE", help="write the spec here (default: stdout)")
    p.add_argument("--name", help="the spec's name (default: from DIR)")
    p.set_defaults(func=cmd_import)


def spec_name(folder: Path) -> str:
    """A spec name (slug) from a folder name: Llama-3.2-1B → llama-3.2-1b."""
    slug = re.sub(r"[^a-z0-9._-]+", "-", folder.resolve().name.lower()).strip("-._")
    return slug[:64] or "imported"


def spec_path(path: Path, base: Path) -> str:
    """`path` as the spec names it: relative to the spec's folder `base` when it lies inside,
    else absolute."""
    rel = Path(os.path.relpath(path.resolve(), base.resolve())).as_posix()
    return path.resolve().as_posix() if rel.startswith("..") else rel


def cmd_import(args) -> int:
    folder = Path(args.dir)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise UserError(f"{config_path}: no such file (DIR must be a Hugging Face model folder)")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{config_path}: not readable JSON ({exc})") from None
    if not isinstance(config, dict):
        raise UserError(f"{config_path}: expected a JSON object")
    try:
        imported = spec_from_hf(config)
    except UserError as exc:
        raise UserError(f"{config_path}: {exc}") from None
    # paths in a spec are relative to the spec file (stdout: to the working directory)
    base = Path(args.output).resolve().parent if args.output else Path.cwd()
    tokenizer = folder / "tokenizer.json"
    tokenizer_path = spec_path(tokenizer, base) if tokenizer.is_file() else None
    text = spec_text(
        imported, name=args.name or spec_name(folder), source=args.dir, tokenizer=tokenizer_path
    )
    load_spec_text(text, name=args.output or "<imported spec>")  # what it writes validates
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output} ({imported.architecture})", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
