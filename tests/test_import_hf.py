"""`llmspec import hf DIR` writes a spec whose generated model is the HF model in the folder.

For tiny HF models of each family built here (random weights, no hub): the written spec
validates, and the model.py built from it, given the folder's weights through the generated
export.py's name table read backwards, computes transformers' logits (≤ 1e-5, fp32).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from model_harness.hf import copy_from_hf, export_module
from model_harness.specs import plan_for

from llmspec.cli.main import main
from llmspec.codegen.model_code import load_model_module, render_model_py
from llmspec.spec.hf_config import FIELDS
from llmspec.spec.load import load_spec

transformers = pytest.importorskip("transformers")

VOCAB, SEQ, BATCH = 320, 16, 2  # ≥ 260: the spec trains a byte-level BPE when no tokenizer.json


def tiny_configs():
    t = transformers
    common = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=64, max_position_embeddings=64)  # fmt: skip
    return {
        "gpt2": t.GPT2Config(vocab_size=VOCAB, n_positions=64, n_embd=32, n_layer=2, n_head=4,
                             n_inner=80, layer_norm_epsilon=1e-6, resid_pdrop=0.0,
                             embd_pdrop=0.0, attn_pdrop=0.0),
        "gpt2-relu-untied": t.GPT2Config(vocab_size=VOCAB, n_positions=64, n_embd=32, n_layer=2,
                                         n_head=4, activation_function="relu",
                                         tie_word_embeddings=False),
        "llama": t.LlamaConfig(**common, num_key_value_heads=2, rms_norm_eps=1e-5,
                               rope_theta=500.0, tie_word_embeddings=False),
        "llama-tied": t.LlamaConfig(**common, tie_word_embeddings=True),
        "mistral": t.MistralConfig(**common, num_key_value_heads=1, sliding_window=None,
                                   rope_theta=20000.0),
        "bert": t.BertConfig(**common, hidden_act="gelu_new", type_vocab_size=2,
                             layer_norm_eps=1e-12),
    }  # fmt: skip


def save_model(name: str, config, folder: Path) -> Path:
    torch.manual_seed(0)
    bert = config.model_type == "bert"
    auto = transformers.AutoModelForMaskedLM if bert else transformers.AutoModelForCausalLM
    model = auto.from_config(config)
    with torch.no_grad():  # biases and norms off their zero / one initialisation
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    model.save_pretrained(folder / name)
    return folder / name


@pytest.mark.parametrize("name", sorted(tiny_configs()))
def test_imported_spec_builds_the_same_model(name, tmp_path, capsys):
    config = tiny_configs()[name]
    folder = save_model(name, config, tmp_path)
    spec_path = tmp_path / f"{name}.yaml"
    assert main(["import", "hf", str(folder), "-o", str(spec_path)]) == 0
    assert main(["validate", str(spec_path)]) == 0
    text = spec_path.read_text()
    assert "# HF " in text and "model_type" in text  # every field names its HF origin

    spec = load_spec(spec_path)
    layout, stages = plan_for(spec)
    ours = load_model_module(render_model_py(spec, layout, stages), f"imp_{name}").build_model()
    auto = (
        transformers.AutoModelForMaskedLM
        if spec.model.arch == "bert"
        else transformers.AutoModelForCausalLM
    )
    ref = auto.from_pretrained(folder)
    ours.eval(), ref.eval()
    export = export_module(spec, layout, f"imp_export_{name}")
    copy_from_hf(export, ref, ours)
    input_ids = torch.randint(0, VOCAB, (BATCH, SEQ), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        delta = (ours(input_ids) - ref(input_ids).logits).abs().max().item()
    print(f"import {name}: max |Δlogits| = {delta:.3g}")
    assert delta <= 1e-5, delta

    # and back: the spec's export config holds the folder's values for every mapped key
    original = json.loads((folder / "config.json").read_text())
    model_type = original["model_type"]
    for field in FIELDS[model_type]:
        if field.hf in original and original[field.hf] is not None:
            assert export.HF_CONFIG[field.hf] == original[field.hf], field.hf


def test_tokenizer_json_becomes_the_spec_tokenizer(tmp_path):
    from tokenizers import Tokenizer, models

    folder = save_model("llama", tiny_configs()["llama"], tmp_path)
    Tokenizer(models.BPE(unk_token="<unk>")).save(str(folder / "tokenizer.json"))
    (tmp_path / "specs").mkdir()
    spec_path = tmp_path / "specs" / "llama.yaml"
    assert main(["import", "hf", str(folder), "-o", str(spec_path), "--name", "my-llama"]) == 0
    spec = load_spec(spec_path)
    assert spec.name == "my-llama"
    assert (spec_path.parent / spec.data.tokenizer.path).resolve() == folder / "tokenizer.json"


def test_import_to_stdout(tmp_path, capsys):
    folder = save_model("gpt2", tiny_configs()["gpt2"], tmp_path)
    assert main(["import", "hf", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "arch: gpt  # HF model_type: gpt2" in out and "n_layers: 2  # HF n_layer" in out


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"model_type": "t5"}, "model_type"),
        ({"foo_bar": 1}, "foo_bar"),
        ({"hidden_act": "gelu"}, "hidden_act"),  # exact GELU: model.py has the tanh one
        ({"attention_bias": True}, "attention_bias"),
        ({"rope_scaling": {"rope_type": "linear", "factor": 2.0}}, "rope_scaling"),
        ({"head_dim": 16}, "head_dim"),
        ({"rope_parameters": {"rope_type": "yarn", "rope_theta": 1e4}}, "rope_parameters"),
    ],
)
def test_unsupported_fields_are_named_without_a_traceback(change, field, tmp_path, capsys):
    base = "bert" if field == "hidden_act" else "llama"
    folder = tmp_path / base
    folder.mkdir()
    tiny_configs()[base].to_json_file(folder / "config.json")
    config = json.loads((folder / "config.json").read_text())
    config.update(change)
    (folder / "config.json").write_text(json.dumps(config))
    assert main(["import", "hf", str(folder), "-o", str(tmp_path / "out.yaml")]) == 2
    err = capsys.readouterr().err
    assert f"{field}:" in err and "Traceback" not in err
    assert not (tmp_path / "out.yaml").exists()


def test_mistral_sliding_window_shorter_than_the_context_is_refused(tmp_path, capsys):
    folder = tmp_path / "mistral"
    folder.mkdir()
    config = transformers.MistralConfig(max_position_embeddings=64, sliding_window=32)
    config.to_json_file(folder / "config.json")
    assert main(["import", "hf", str(folder)]) == 2
    assert "sliding_window: 32 < max_position_embeddings 64" in capsys.readouterr().err


def test_missing_config_is_a_clear_error(tmp_path, capsys):
    assert main(["import", "hf", str(tmp_path)]) == 2
    assert "config.json: no such file" in capsys.readouterr().err
