"""LoRA in the generated model.py, held to peft (peft/tuners/lora): the same trainable
parameters, the same logits on copied weights, B = 0 starting exactly at the base, and
merge() folding ΔW into W without changing the function.

The slow tests fine-tune a trained base (the shared ZeRO-0 run of `train_harness`) on 2
CPU ranks at ZeRO 0, 2 and 3, on prompt/response records, and check that no base tensor
moved, that the optimizer holds state for the adapters only, and that the adapters file
holds what the checkpoint holds.
"""

from __future__ import annotations

import json

import pytest
import torch
from model_harness.hf import copy_from_hf, export_module
from model_harness.specs import plan_for, tiny_spec

from llmspec.codegen.model_code import load_model_module, render_model_py
from llmspec.graph.dims import ModelDims
from llmspec.graph.finetune import FinetuneDims, adapter_params
from llmspec.spec.schema import Spec

peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")

ALL_TARGETS = ["q", "k", "v", "o", "gate", "up", "down"]
HF_LINEAR = {"q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "o_proj", "gate": "gate_proj",
             "up": "up_proj", "down": "down_proj"}  # fmt: skip


def with_lora(spec: Spec, **lora) -> Spec:
    fields = spec.model_dump()
    fields["finetune"] = {"base": {"path": "base/out/checkpoints"}, "method": "lora", "lora": lora}
    return Spec.model_validate(fields)


def build(spec: Spec, name: str):
    layout, stages = plan_for(spec)
    return load_model_module(render_model_py(spec, layout, stages), name)


def lora_modules(model):
    return {n: m for n, m in model.named_modules() if hasattr(m, "lora_a")}


def randomise(model, scale=0.05, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)


CASES = {
    "gpt-r4-qv": ("gpt", {"rank": 4, "targets": ["q", "v"]}),
    "gpt-r16-all": ("gpt", {"rank": 16, "targets": ["q", "k", "v", "o", "up", "down"]}),
    "llama-r8-qv": ("llama", {"rank": 8, "targets": ["q", "v"]}),
    "llama-r8-all-rslora": ("llama", {"rank": 8, "targets": ALL_TARGETS, "rslora": True}),
    "bert-r8-qkv": ("bert", {"rank": 8, "targets": ["q", "k", "v"]}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_trainable_count_equals_plan_and_b_zero_starts_at_the_base(case):
    family, lora = CASES[case]
    base_spec = tiny_spec(family)
    spec = with_lora(base_spec, **lora)
    base = build(base_spec, f"base_{case.replace('-', '_')}").build_model().eval()
    module = build(spec, f"lora_{case.replace('-', '_')}")
    model = module.build_model().eval()
    randomise(base)
    missing, unexpected = model.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and missing and all(module.is_adapter(n) for n in missing)

    module.freeze_base(model)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    planned = adapter_params(ModelDims.from_spec(spec), FinetuneDims.from_spec(spec))
    assert trainable == planned > 0
    assert all(module.is_adapter(n) == p.requires_grad for n, p in model.named_parameters())
    # A is drawn (peft: kaiming_uniform_(a=√5) = U(±1/√d_in)), B is zero
    for m in lora_modules(model).values():
        d_in = m.lora_a.shape[1]
        assert m.lora_a.abs().max() <= 1 / d_in**0.5 and m.lora_a.std() > 0.2 / d_in**0.5
        assert torch.count_nonzero(m.lora_b) == 0
    ids = torch.randint(0, 101, (2, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(model(ids), base(ids))  # bit-identical: B = 0 adds exactly zero


@pytest.mark.parametrize("case", sorted(CASES))
def test_merged_equals_unmerged(case):
    family, lora = CASES[case]
    module = build(with_lora(tiny_spec(family), **lora), f"merge_{case.replace('-', '_')}")
    model = module.build_model().eval()
    randomise(model)
    ids = torch.randint(0, 101, (2, 16), generator=torch.Generator().manual_seed(2))
    weights = {n: m.weight.clone() for n, m in lora_modules(model).items()}
    with torch.no_grad():
        unmerged = model(ids)
        module.set_merged(model, True)
        merged = model(ids)
        module.set_merged(model, True)  # merging twice adds ΔW once
        twice = model(ids)
        module.set_merged(model, False)
        again = model(ids)
    torch.testing.assert_close(merged, unmerged, rtol=0, atol=1e-5)
    torch.testing.assert_close(twice, merged, rtol=0, atol=0)
    torch.testing.assert_close(again, unmerged, rtol=0, atol=1e-5)
    for n, m in lora_modules(model).items():
        torch.testing.assert_close(m.weight, weights[n], rtol=0, atol=1e-6)
    assert not torch.equal(merged, model.eval()(ids) * 0)  # not a degenerate all-zero model


@pytest.mark.parametrize(
    "lora",
    [
        {"rank": 4, "alpha": 8, "targets": ["q", "v"]},
        {"rank": 8, "alpha": 16, "targets": ALL_TARGETS},
        {"rank": 16, "alpha": 8, "targets": ["k", "o", "down"], "rslora": True},
    ],
    ids=["r4-qv", "r8-all", "r16-kod-rslora"],
)
def test_logits_equal_peft_on_copied_weights(lora):
    """Llama with grouped-query heads: peft's LoraModel over transformers' LlamaForCausalLM,
    with every weight (base and adapter) copied across, gives model.py's logits."""
    base_spec = tiny_spec("llama")
    spec = with_lora(base_spec, **lora)
    layout, _ = plan_for(spec)
    export = export_module(base_spec, layout, "export_lora_llama")
    config = transformers.LlamaConfig(
        **{k: v for k, v in export.HF_CONFIG.items() if k != "architectures"}
    )
    torch.manual_seed(0)
    hf = transformers.LlamaForCausalLM(config).eval()
    base = build(base_spec, "peft_base").build_model().eval()
    copy_from_hf(export, hf, base)

    targets = [HF_LINEAR[t] for t in lora["targets"]]
    config = peft.LoraConfig(r=lora["rank"], lora_alpha=lora["alpha"], target_modules=targets,
                             lora_dropout=0.0, use_rslora=lora.get("rslora", False))  # fmt: skip
    ref = peft.get_peft_model(hf, config).eval()
    theirs = {n: p for n, p in ref.named_parameters() if "lora_" in n}
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():  # B is zero in both: give both sides the same non-zero adapters
        for p in theirs.values():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)

    module = build(spec, "peft_lora")
    model = module.build_model().eval()
    model.load_state_dict(base.state_dict(), strict=False)
    # blocks.{i}.attn.q ↔ base_model.model.model.layers.{i}.self_attn.q_proj, by export's table
    hf_of = {ours[0].removesuffix(".weight"): hf_name.removesuffix(".weight")
             for hf_name, ours, _ in export.hf_names() if len(ours) == 1}  # fmt: skip
    with torch.no_grad():
        for name, m in lora_modules(model).items():
            prefix = "base_model.model." + hf_of[name]
            m.lora_a.copy_(theirs[f"{prefix}.lora_A.default.weight"])
            m.lora_b.copy_(theirs[f"{prefix}.lora_B.default.weight"])
    module.freeze_base(model)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == sum(
        p.numel() for p in ref.parameters() if p.requires_grad
    )
    ids = torch.randint(0, 101, (2, 16), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        ours, expected = model(ids), ref(input_ids=ids).logits
    assert (ours - expected).abs().max().item() <= 1e-5
    with torch.no_grad():  # and the adapters matter: without them the logits differ
        assert (base(ids) - expected).abs().max().item() > 1e-3


def test_lora_refuses_what_it_does_not_generate():
    from llmspec.errors import SpecError
    from llmspec.spec.load import load_spec_text

    text = json.dumps(
        {
            "model": {"arch": "gpt", "activation": "gelu"},
            "finetune": {"base": {"path": "b"}, "lora": {"targets": ["gate"]}},
            "parallel": {"tensor": 2},
            "cluster": {"gpu": "cpu", "gpus_per_node": 2},
        }
    )
    with pytest.raises(SpecError) as info:
        load_spec_text(text, "ft.yaml")
    fields = {p.field for p in info.value.problems}
    assert {"finetune.lora.targets", "parallel.tensor"} <= fields, fields


def test_hf_base_that_differs_from_model_is_refused_at_build(tmp_path):
    """config.json of the base folder is read at build: a different width is a clear error."""
    from llmspec.errors import UserError
    from llmspec.pipeline import build_project

    base = tiny_spec("llama")
    layout, _ = plan_for(base)
    config = dict(
        export_module(base, layout, "export_hf_refuse").HF_CONFIG, hidden_size=48, head_dim=12
    )
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text(json.dumps(config))
    fields = base.model_dump(exclude={"data"})
    fields["finetune"] = {"base": {"path": "hf", "format": "hf"}, "method": "lora"}
    spec_path = tmp_path / "ft.yaml"
    spec_path.write_text(json.dumps(fields))
    with pytest.raises(UserError, match=r"model.d_model = 32, the base's hidden_size = 48"):
        build_project(spec_path, tmp_path / "project")
    assert not (tmp_path / "project").exists()


def test_model_is_taken_from_an_hf_base_when_the_spec_has_none(tmp_path):
    """No model: section: the architecture is the HF folder's config.json, and a problem in
    it points at finetune.base.path."""
    from llmspec.errors import SpecError
    from llmspec.spec.load import load_located

    base = tiny_spec("llama")
    layout, _ = plan_for(base)
    (tmp_path / "hf").mkdir()
    config = export_module(base, layout, "export_hf_take").HF_CONFIG
    (tmp_path / "hf" / "config.json").write_text(json.dumps(config))
    spec_path = tmp_path / "ft.yaml"
    spec_path.write_text(
        "finetune:\n  base: {path: hf, format: hf}\n  method: lora\ntrain: {seq_len: 16}\n"
    )
    loaded = load_located(spec_path)
    fields = (
        "arch",
        "d_model",
        "n_layers",
        "n_heads",
        "n_kv_heads",
        "d_ff",
        "vocab_size",
        "activation",
    )
    assert {f: getattr(loaded.spec.model, f) for f in fields} == {
        f: getattr(base.model, f) for f in fields
    }
    assert loaded.spec.data.tokenizer.path == "hf/tokenizer.json"
    (tmp_path / "hf" / "config.json").write_text(json.dumps({**config, "model_type": "t5"}))
    with pytest.raises(SpecError) as info:
        load_located(spec_path)
    (problem,) = info.value.problems
    assert problem.field == "finetune.base.path" and problem.line == 2 and "t5" in problem.message
