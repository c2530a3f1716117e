"""Prefix tuning in the generated model.py, held to peft's PrefixTuning over transformers
(GPT-2 and Llama with grouped-query heads): the same trainable parameters and the same
logits on copied weights, with and without the MLP reparameterisation; generation with the
KV cache continues exactly as the full forward."""

from __future__ import annotations

import pytest
import torch
from model_harness.hf import copy_from_hf, export_module
from model_harness.specs import plan_for, tiny_spec

from llmspec.codegen.model_code import load_model_module, render_model_py
from llmspec.plan import make_plan
from llmspec.spec.schema import Spec

peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")

HF = {"gpt": ("GPT2Config", "GPT2LMHeadModel"), "llama": ("LlamaConfig", "LlamaForCausalLM")}
N = 6


def with_prefix(spec: Spec, **prefix) -> Spec:
    fields = spec.model_dump()
    fields["finetune"] = {"base": {"path": "b"}, "method": "prefix", "prefix": prefix}
    return Spec.model_validate(fields)


@pytest.mark.parametrize("family", ["gpt", "llama"])
@pytest.mark.parametrize("projection", [False, True])
def test_prefix_tuning_equals_peft_on_copied_weights(family, projection):
    base_spec = tiny_spec(family)
    spec = with_prefix(base_spec, tokens=N, projection=projection)
    layout, stages = plan_for(spec)
    name = f"{family}_{projection}"
    export = export_module(base_spec, layout, f"export_prefix_{name}")
    config_class, model_class = (getattr(transformers, n) for n in HF[family])
    config = config_class(**{k: v for k, v in export.HF_CONFIG.items() if k != "architectures"})
    torch.manual_seed(0)
    hf = model_class(config).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    base = load_model_module(
        render_model_py(base_spec, layout, stages), f"pfb_{name}"
    ).build_model()
    copy_from_hf(export, hf, base)
    module = load_model_module(render_model_py(spec, layout, stages), f"pf_{name}")
    model = module.build_model().eval()
    missing, unexpected = model.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and all(n.startswith("prefix.") for n in missing)
    module.freeze_base(model)

    kv = spec.model.kv_heads * spec.model.head_dim
    ref = peft.get_peft_model(hf, peft.PrefixTuningConfig(
        task_type="CAUSAL_LM", num_virtual_tokens=N, prefix_projection=projection,
        encoder_hidden_size=kv)).eval()  # fmt: skip
    theirs = {n.removeprefix("prompt_encoder.default."): p for n, p in ref.named_parameters()
              if p.requires_grad}  # fmt: skip
    ours = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert sum(p.numel() for p in ours.values()) == sum(p.numel() for p in theirs.values())
    assert sum(p.numel() for p in ours.values()) == make_plan(spec).params.trainable
    with torch.no_grad():
        model.prefix.embedding.copy_(theirs["embedding.weight"])
        if projection:
            model.prefix.w1.copy_(theirs["transform.0.weight"])
            model.prefix.b1.copy_(theirs["transform.0.bias"])
            model.prefix.w2.copy_(theirs["transform.2.weight"])
            model.prefix.b2.copy_(theirs["transform.2.bias"])
    ids = torch.randint(0, 101, (2, 12), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        got, expected = model(ids), ref(input_ids=ids).logits
    assert got.shape == expected.shape
    assert (got - expected).abs().max().item() <= 1e-5
    with torch.no_grad():  # the prefixes matter
        assert (base(ids) - expected).abs().max().item() > 1e-3
        # generation: a cache the prefixes open, then token by token, gives the same logits
        cache = module.KVCache()
        steps = [model(ids[:, :5], cache=cache)] + [
            model(ids[:, i : i + 1], cache=cache) for i in range(5, 12)
        ]
    torch.testing.assert_close(torch.cat(steps, dim=1), got, rtol=0, atol=2e-5)
    assert cache.length == N + 12
