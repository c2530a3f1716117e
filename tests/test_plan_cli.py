"""`llmspec plan`: JSON on stdout, tables for people, exit 2 with fixes when nothing fits."""

from __future__ import annotations

import json

import pytest

from llmspec.cli.main import main

HUGE = """
name: too-big
model: {d_model: 12288, n_layers: 96, n_heads: 96, max_seq_len: 2048, vocab_size: 51200}
train: {seq_len: 2048, global_batch_size: 8, steps: 10}
cluster: {gpu: a100-80gb, nodes: 1, gpus_per_node: 8}
"""


def test_json_is_contract_2_only(root, capsys):
    assert main(["plan", str(root / "specs" / "tiny-cpu.yaml"), "--json"]) == 0
    out = capsys.readouterr().out
    d = json.loads(out)  # nothing but the object on stdout
    assert d["name"] == "tiny-cpu" and d["memory"]["fits"] is True


def test_human_report_and_dot(root, capsys, tmp_path):
    dot = tmp_path / "plan.dot"
    spec = str(root / "specs" / "gpt2-small.yaml")
    assert main(["plan", spec, "--layout", "pipeline=2", "--dot", str(dot), "--top", "2"]) == 0
    out = capsys.readouterr().out
    for heading in ("Layout", "Memory per GPU", "Speed", "Stage map", "Alternatives", "fits"):
        assert heading in out
    assert "pinned" in out
    text = dot.read_text()
    assert text.startswith("digraph plan {") and "cluster_stage1" in text


def test_nothing_fits_exits_2_with_fixes(tmp_path, capsys):
    spec = tmp_path / "huge.yaml"
    spec.write_text(HUGE)
    assert main(["plan", str(spec), "--json"]) == 2
    captured = capsys.readouterr()
    assert json.loads(captured.out)["memory"]["fits"] is False  # still printed
    assert "does not fit" in captured.err
    assert "hint:" in captured.err and "GPUs" in captured.err


def test_bad_layout_flag_is_a_user_error(root, capsys):
    spec = str(root / "specs" / "tiny-cpu.yaml")
    assert main(["plan", spec, "--layout", "tensor"]) == 2
    assert "key=value" in capsys.readouterr().err
    assert main(["plan", spec, "--layout", "activation_checkpointing=most"]) == 2
    assert "expected one of" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["plan", "build"])
def test_a_layout_field_given_twice_is_refused_not_last_wins(command, root, capsys, tmp_path):
    spec = str(root / "specs" / "tiny-cpu.yaml")
    out = ["-o", str(tmp_path / "out")] if command == "build" else []
    assert main([command, spec, *out, "--layout", "data=2, data=4"]) == 2
    err = capsys.readouterr().err
    assert "data is given twice" in err and "give each field once" in err
    assert not (tmp_path / "out").exists()


def test_measure_prints_predicted_beside_measured(root, capsys):
    assert main(["plan", str(root / "specs" / "tiny-cpu.yaml"), "--measure"]) == 0
    out = capsys.readouterr().out
    assert "Predicted vs measured" in out
    for category in ("params", "grads", "optimizer", "activations", "temporary", "total"):
        assert category in out
