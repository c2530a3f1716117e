"""export.py writes a Hugging Face folder that transformers loads, with the logits the project's
own model computes from the same checkpoint.

The slow tests train the tiny project on 2 CPU ranks (ZeRO 0 and ZeRO 3, the shared runs of
`train_harness`), export its last checkpoint with the project's own export.py, and hold the
HF model to model.py loaded from that checkpoint (≤ 1e-5, fp32) and to the validation loss the
run itself logged. Tensor-parallel runs (ZeRO 0, 2, 3) are held to their
logged validation loss. The fast ones export a hand-written ZeRO-0 checkpoint of every family.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from model_harness.hf import export_module
from model_harness.specs import plan_for, tiny_spec
from safetensors.torch import load_file

from llmspec.codegen.model_code import load_model_module, render_model_py

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

VOCAB, SEQ, BATCH = 101, 16, 2
SPECIAL = ["<pad>", "<eos>", "<unk>", "<mask>"]  # as prepare_data.py trains them


def import_file(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def loading_problems(info: dict) -> dict:
    """from_pretrained's missing, unexpected and mismatched keys and errors, the non-empty ones."""
    return {kind: keys for kind, keys in info.items() if keys}


def write_data_dir(folder: Path) -> Path:
    """A tokenizer.json and a manifest naming its special tokens, as prepare_data.py writes."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=80, special_tokens=SPECIAL, show_progress=False)
    tok.train_from_iterator(["def f(x):\n    return x + 1\n"] * 20, trainer)
    folder.mkdir(parents=True)
    tok.save(str(folder / "tokenizer.json"))
    special = {name.strip("<>"): tok.token_to_id(name) for name in SPECIAL}
    (folder / "manifest.json").write_text(json.dumps({"special_tokens": special}))
    return folder


def write_zero0_checkpoint(out: Path, state: dict, tag: str = "step_7") -> None:
    """What DeepSpeed's engine.save_checkpoint writes at ZeRO 0, as far as export reads it."""
    (out / "checkpoints" / tag).mkdir(parents=True)
    torch.save({"module": state}, out / "checkpoints" / tag / "mp_rank_00_model_states.pt")
    (out / "checkpoints" / "latest").write_text(tag)


def run_main(module, monkeypatch, *argv: str) -> None:
    monkeypatch.setattr(sys, "argv", ["export.py", *argv])
    module.main()


CASES = {
    "gpt": dict(family="gpt"),
    "gpt-untied": dict(family="gpt", tie_embeddings=False),
    "llama-gqa": dict(family="llama", rope_theta=500.0),
    "llama-tied": dict(family="llama", tie_embeddings=True, n_kv_heads=4),
    "bert": dict(family="bert"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_export_of_every_family_loads_with_the_same_logits(case, tmp_path, monkeypatch):
    fields = dict(CASES[case])
    family = fields.pop("family")
    spec = tiny_spec(family, vocab_size=VOCAB, **fields)
    layout, stages = plan_for(spec)
    torch.manual_seed(0)
    ours = load_model_module(render_model_py(spec, layout, stages), f"exp_{case}").build_model()
    ours.eval()
    with torch.no_grad():  # not the initialisation: every tensor distinct and non-trivial
        for p in ours.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    out = tmp_path / "out"
    write_zero0_checkpoint(out, ours.state_dict())
    data = write_data_dir(out / "data")
    export = export_module(spec, layout, f"export_{case}")
    run_main(export, monkeypatch, "--format", "hf", str(tmp_path / "hf"), "--out", str(out))

    auto = (
        transformers.AutoModelForMaskedLM if family == "bert" else transformers.AutoModelForCausalLM
    )
    hf, info = auto.from_pretrained(tmp_path / "hf", output_loading_info=True)
    assert not loading_problems(info), info
    hf.eval()
    assert type(hf).__name__ == export.HF_CONFIG["architectures"][0]
    assert hf.config.tie_word_embeddings == spec.model.tie_embeddings
    input_ids = torch.randint(0, VOCAB, (BATCH, SEQ), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        delta = (hf(input_ids).logits - ours(input_ids)).abs().max().item()
    assert delta <= 1e-5, delta

    # the tokenizer: AutoTokenizer loads it and encodes as tokenizers does
    tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    text = "def f(x):\n    return x\n"
    raw = tokenizers.Tokenizer.from_file(str(data / "tokenizer.json"))
    assert tok(text, add_special_tokens=False)["input_ids"] == raw.encode(text).ids
    assert (tok.eos_token, tok.pad_token) == ("<eos>", "<pad>")
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["eos_token_id"] == raw.token_to_id("<eos>")


def test_padded_vocabulary_rows_are_cut_and_every_parameter_is_used_once():
    spec = tiny_spec("llama", vocab_size=VOCAB)
    layout, stages = plan_for(spec)
    export = export_module(spec, layout, "export_padded")
    state = load_model_module(render_model_py(spec, layout, stages), "m_pad").build_model()
    state = state.state_dict()
    padded = dict(state)
    padded["tok_emb.weight"] = F.pad(state["tok_emb.weight"], (0, 0, 0, 3))  # as tensor 4 pads
    padded["lm_head.weight"] = F.pad(state["lm_head.weight"], (0, 0, 0, 3))
    hf = export.to_hf(padded)
    assert hf["model.embed_tokens.weight"].shape == (VOCAB, spec.model.d_model)
    assert torch.equal(hf["lm_head.weight"], state["lm_head.weight"])
    with pytest.raises(SystemExit, match="no Hugging Face name for extra.weight"):
        export.to_hf(dict(state, **{"extra.weight": torch.zeros(1)}))
    with pytest.raises(SystemExit, match="has no blocks.1.mlp.up.weight"):
        export.to_hf({k: v for k, v in state.items() if k != "blocks.1.mlp.up.weight"})


def test_checkpoint_tag_latest_then_newest_step(tmp_path):
    spec = tiny_spec("gpt")
    export = export_module(spec, plan_for(spec).layout, "export_tags")
    ckpt = tmp_path / "checkpoints"
    with pytest.raises(SystemExit, match="no checkpoint"):
        export.checkpoint_tag(str(ckpt), None)
    for tag in ("step_5", "step_20", "step_100"):
        (ckpt / tag).mkdir(parents=True)
    assert export.checkpoint_tag(str(ckpt), None) == "step_100"
    (ckpt / "latest").write_text("step_20\n")  # step_100 was still being written
    assert export.checkpoint_tag(str(ckpt), None) == "step_20"
    assert export.checkpoint_tag(str(ckpt), "step_5") == "step_5"
    with pytest.raises(SystemExit, match="no checkpoint step_9"):
        export.checkpoint_tag(str(ckpt), "step_9")


@pytest.mark.parametrize(
    ("fields", "layout", "reason"),
    [
        ({}, {"pipeline": 2}, "parallel.pipeline 2"),
        ({"position": "rope"}, {}, "model.position"),
        ({"n_kv_heads": 2}, {}, "model.n_kv_heads"),
    ],
)
def test_export_says_why_it_cannot_export(fields, layout, reason, tmp_path):
    spec = tiny_spec("gpt", **fields)
    source_module = export_module(spec, plan_for(spec, **layout).layout, f"export_no_{reason[:14]}")
    assert reason in source_module.PROBLEM
    path = Path(source_module.__file__)
    result = subprocess.run(
        [sys.executable, str(path), "--format", "hf", str(tmp_path / "hf")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and reason in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "hf").exists()


# --------------------------------------------------------------------------- trained projects
@pytest.mark.slow
@pytest.mark.parametrize("variant", ["zero0", "zero3", "offload", "bf16", "bert-hf"])
def test_trained_project_exports_and_round_trips(variant, tmp_path):
    """gpt at ZeRO 0, 3, 2 with the optimizer offloaded, 1 in bf16 (export: the fp32 master
    weights); bert (BertForMaskedLM's architecture, masked LM) at ZeRO 1."""
    from train_harness import cpu_env, read_metrics, trained, workspace

    out = trained(variant)
    project, data = out.parent, workspace() / "data"
    hf_dir = tmp_path / "hf"
    result = subprocess.run(
        [sys.executable, "export.py", "--format", "hf", str(hf_dir), "--out", str(out),
         "--data", str(data)],
        cwd=project, env=cpu_env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "step_30" in result.stdout
    assert {p.name for p in hf_dir.iterdir()} == {
        "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"
    }  # fmt: skip

    # the project's own model from the same checkpoint, read without export.py
    checkpoints = out / "checkpoints"
    bert = variant.startswith("bert")
    if variant == "zero0":
        path = checkpoints / "step_30" / "mp_rank_00_model_states.pt"
        state = torch.load(path, map_location="cpu", weights_only=False)["module"]
    else:
        assert list((checkpoints / "step_30").glob("*zero_pp_rank_1_*optim_states.pt"))
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        state = get_fp32_state_dict_from_zero_checkpoint(str(checkpoints), tag="step_30")
    ours = import_file(project / "model.py", f"trained_model_{variant}").build_model()
    ours.load_state_dict(state)
    ours.eval()

    auto = transformers.AutoModelForMaskedLM if bert else transformers.AutoModelForCausalLM
    hf, info = auto.from_pretrained(hf_dir, output_loading_info=True)
    assert not loading_problems(info), info
    hf.eval()
    assert sum(t.numel() for t in load_file(hf_dir / "model.safetensors").values()) == sum(
        p.numel() for p in ours.parameters()
    )

    # logits on the validation batches, and the loss the run logged on them at step 30
    data_py = import_file(project / "data.py", f"trained_data_{variant}")
    losses, deltas = [], []
    with torch.no_grad():
        for rank in (0, 1):
            for input_ids in data_py.val_batches(data, 4, dp_rank=rank, dp_world=2, max_batches=2):
                got = hf(input_ids, labels=None if bert else input_ids)
                deltas.append((got.logits - ours(input_ids)).abs().max().item())
                losses.append(None if bert else got.loss.item())
    print(f"{variant}: max |Δlogits| HF export vs model.py = {max(deltas):.3g}")
    assert max(deltas) <= 1e-5, deltas
    logged = read_metrics(out)[-1]
    assert logged["step"] == 30
    # (masked LM validation draws its masks; a bf16 run evaluated in bf16, not with fp32 masters)
    if not bert and variant != "bf16":
        assert sum(losses) / len(losses) == pytest.approx(logged["val_loss"], rel=1e-5)

    tok = transformers.AutoTokenizer.from_pretrained(hf_dir)
    raw = tokenizers.Tokenizer.from_file(str(data / "tokenizer.json"))
    text = (project / "export.py").read_text()[:2000]
    assert tok(text, add_special_tokens=False)["input_ids"] == raw.encode(text).ids


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["tensor2-zero0", "tensor2-zero2", "tensor2"])
def test_tensor_parallel_project_exports_its_joined_shards(variant, tmp_path):
    """Tensor parallel 2 at ZeRO 0 and 2 (vocabulary 513, padded to 514) and at ZeRO 3 with
    sequence parallel: the shards joined on model.py's split dims give the loss the run logged
    (model.py itself needs 2 ranks to run, so the run's own validation loss is the reference)."""
    from train_harness import cpu_env, read_metrics, trained, workspace

    out = trained(variant)
    project, data = out.parent, workspace() / "data"
    hf_dir = tmp_path / "hf"
    result = subprocess.run(
        [sys.executable, "export.py", "--format", "hf", str(hf_dir), "--out", str(out),
         "--data", str(data)],
        cwd=project, env=cpu_env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    hf, info = transformers.AutoModelForCausalLM.from_pretrained(hf_dir, output_loading_info=True)
    assert not loading_problems(info), info
    hf.eval()
    tensors = load_file(hf_dir / "model.safetensors")
    spec_vocab = 513 if variant != "tensor2" else 512
    assert hf.config.vocab_size == spec_vocab
    assert tensors["transformer.wte.weight"].shape[0] == spec_vocab

    data_py = import_file(project / "data.py", f"tp_data_{variant}")
    losses = []
    with torch.no_grad():
        for input_ids in data_py.val_batches(data, 4, dp_rank=0, dp_world=1, max_batches=2):
            losses.append(hf(input_ids, labels=input_ids).loss.item())
    logged = read_metrics(out)[-1]
    assert logged["step"] == 30
    print(
        f"{variant}: HF val loss {sum(losses) / len(losses):.7f}, logged {logged['val_loss']:.7f}"
    )
    assert sum(losses) / len(losses) == pytest.approx(logged["val_loss"], rel=1e-5)
