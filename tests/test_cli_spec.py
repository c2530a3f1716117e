"""The spec commands end to end: validate, show, schema, hardware, presets, help and goldens.

Golden files freeze the public surface (the spec's JSON Schema and the --help text): a new
field or flag shows up as a diff. When a change is intended, regenerate them with

    LLMSPEC_UPDATE_GOLDEN=1 python -m pytest tests/test_cli_spec.py -k golden
"""

from __future__ import annotations

import difflib
import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from llmspec import __version__
from llmspec.cli.main import build_parser, main
from llmspec.cli.spec_cmd import spec_schema
from llmspec.spec.hardware import CATALOG
from llmspec.spec.load import load_spec
from llmspec.spec.presets import PRESETS
from llmspec.spec.source import read_yaml_file

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden"
SPEC_FILES = sorted((ROOT / "specs").glob("*.yaml"))
UPDATE = "LLMSPEC_UPDATE_GOLDEN=1 python -m pytest tests/test_cli_spec.py -k golden"


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "NO_COLOR")}
    full_env.update(COLUMNS="100", **env)
    return subprocess.run(
        [sys.executable, "-m", "llmspec", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=120,
    )


def check_golden(name: str, current: str) -> None:
    path = GOLDEN / name
    if os.environ.get("LLMSPEC_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(current)
    expected = path.read_text() if path.exists() else ""
    if current != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(True), current.splitlines(True), f"golden/{name}", "current"
            )
        )
        pytest.fail(f"{name} drifted from its golden file; if intended, run:\n  {UPDATE}\n{diff}")


# ----------------------------------------------------------------------------- validate
def test_every_example_spec_validates_through_the_cli():
    result = run_cli("validate", *[str(p.relative_to(ROOT)) for p in SPEC_FILES])
    assert result.returncode == 0, result.stderr
    for path in SPEC_FILES:
        assert f"ok  specs/{path.name}" in result.stderr
    assert result.stdout == ""


def test_required_example_specs_exist():
    names = {p.name for p in SPEC_FILES}
    assert {
        "tiny-cpu.yaml",
        "gpt2-small.yaml",
        "llama2-7b.yaml",
        "gpt3-175b.yaml",
        "bert-base.yaml",
        "tiny-cpu-zero2.yaml",
    } <= names
    assert any("extends" in (read_yaml_file(p).data or {}) for p in SPEC_FILES)
    assert load_spec(ROOT / "specs/bert-base.yaml").train.objective == "masked_lm"
    zero2 = load_spec(ROOT / "specs/tiny-cpu-zero2.yaml")
    tiny = load_spec(ROOT / "specs/tiny-cpu.yaml")
    assert zero2.parallel.zero_stage == 2
    assert zero2.model == tiny.model and zero2.cluster == tiny.cluster  # trains where tiny does
    gpt3 = load_spec(ROOT / "specs/gpt3-175b.yaml")
    assert (gpt3.cluster.nodes * gpt3.cluster.gpus_per_node, gpt3.cluster.gpu) == (
        1024,
        "a100-80gb",
    )


def test_bad_spec_in_a_pipe_is_plain_text_without_traceback(tmp_path):
    junk = {
        "empty.yaml": b"",
        "binary.yaml": bytes(range(256)),
        "list.yaml": b"- 1\n- 2\n",
        "deep.yaml": b"[" * 100000,
        "huge.yaml": b"model: {n_layers: " + b"9" * 10000 + b"}\n",
        "syntax.yaml": b"model:\n  d_model: 768\n   n_layers: 12\n",
    }
    for name, content in junk.items():
        (tmp_path / name).write_bytes(content)
    (tmp_path / "dir.yaml").mkdir()
    paths = [str(tmp_path / n) for n in [*junk, "dir.yaml", "missing.yaml"]]
    result = run_cli("validate", *paths)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "\x1b[" not in result.stderr  # piped: no colour codes
    for path in paths:
        assert f"{path}" in result.stderr
    assert f"{tmp_path / 'syntax.yaml'}:3:12: error: YAML syntax error" in result.stderr
    assert "8 of 8 specs failed" in result.stderr


def test_colour_on_a_terminal_and_no_colour_with_NO_COLOR(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {n_layer: 1}\n")
    coloured = run_cli("validate", str(bad), FORCE_COLOR="1")
    assert "\x1b[1;31m" in coloured.stderr  # rich treats FORCE_COLOR as a terminal
    plain = run_cli("validate", str(bad), FORCE_COLOR="1", NO_COLOR="1")
    assert "31m" not in plain.stderr
    assert coloured.returncode == plain.returncode == 2


# ----------------------------------------------------------------------------- show
@pytest.mark.parametrize("name", [p.name for p in SPEC_FILES])
def test_show_prints_a_resolved_spec_that_loads_to_the_same_spec(name, tmp_path, capsys):
    assert main(["show", str(ROOT / "specs" / name)]) == 0
    shown = capsys.readouterr().out
    data = yaml.safe_load(shown)
    assert "extends" not in data
    assert data["model"]["d_ff"] is not None  # preset and defaults filled in
    copy = tmp_path / "shown.yaml"
    copy.write_text(shown)
    assert load_spec(copy) == load_spec(ROOT / "specs" / name)


def test_show_json(capsys):
    assert main(["show", str(ROOT / "specs/llama2-7b.yaml"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["model"]["d_ff"], data["model"]["n_kv_heads"], data["cluster"]["gpu"]) == (
        11008,
        32,
        "h100-sxm",
    )


def test_show_of_a_bad_spec_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {seq_len: 0}\n")
    assert main(["show", str(bad)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "train.seq_len" in captured.err


# ----------------------------------------------------------------------------- schema
def test_schema_validates_every_example_spec_as_written(capsys):
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    validator = jsonschema.Draft202012Validator(schema)
    for path in SPEC_FILES:
        errors = list(validator.iter_errors(read_yaml_file(path).data))
        assert not errors, (path.name, [e.message for e in errors])


def test_schema_rejects_what_the_loader_rejects():
    validator = jsonschema.Draft202012Validator(spec_schema())
    assert not validator.is_valid({"model": {"n_layer": 3}})
    assert not validator.is_valid({"parallel": {"tensor": 0}})
    assert not validator.is_valid({"train": {"precision": "fp4"}})
    assert validator.is_valid({"parallel": {"tensor": "auto", "zero_stage": 3}})


def test_golden_schema():
    check_golden("schema.json", json.dumps(spec_schema(), indent=2, ensure_ascii=False) + "\n")


def _help_text() -> str:
    """`llmspec --help` and every command's --help, at a fixed width."""
    parser = build_parser()
    parts = ["$ llmspec --help\n", parser.format_help()]
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, command in sorted(sub.choices.items()):
        parts += [f"\n$ llmspec {name} --help\n", command.format_help()]
    return "".join(parts)


def test_golden_error_output(monkeypatch, capsys):
    """The full text a person sees for a spec with many mistakes (sqlc keeps such goldens)."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("COLUMNS", "100")
    assert main(["validate", "tests/golden/bad-spec.yaml"]) == 2
    check_golden("bad-spec.errors.txt", capsys.readouterr().err)


def test_golden_help(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    check_golden("help.txt", _help_text())


def test_help_lists_examples_and_commands(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    text = build_parser().format_help()
    for command in ("validate", "show", "schema", "hardware", "presets"):
        assert command in text
    assert "examples:" in text


def test_version():
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"llmspec {__version__}"


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "usage: llmspec" in capsys.readouterr().err


# ----------------------------------------------------------------------------- catalogs
def test_hardware_json_lists_the_design_names(capsys):
    assert main(["hardware", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {
        "a100-40gb",
        "a100-80gb",
        "h100-sxm",
        "h200",
        "mi250x",
        "mi300x",
        "tpu-v4",
        "cpu",
    } <= set(rows)
    assert rows["h100-sxm"]["peak_tflops"] == 989.5  # dense, not the 1,979 "with sparsity"
    assert all(row["source"] for row in rows.values())


def test_hardware_and_presets_tables(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "160")
    assert main(["hardware"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in CATALOG)
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in PRESETS)
    assert "Brown et al. 2020" in out


def test_presets_json(capsys):
    assert main(["presets", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows["llama3-8b"]["model"]["rope_theta"] == 500000.0
    assert set(rows) == set(PRESETS)
