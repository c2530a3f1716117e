"""P-tuning in the generated model.py, held to peft's PromptEncoder (MLP and LSTM): the same
trainable parameters, and the same logits on copied weights, virtual tokens first."""

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


def with_p_tuning(spec: Spec, **p_tuning) -> Spec:
    fields = spec.model_dump()
    fields["finetune"] = {"base": {"path": "b"}, "method": "p_tuning", "p_tuning": p_tuning}
    return Spec.model_validate(fields)


@pytest.mark.parametrize("family", ["gpt", "llama"])
@pytest.mark.parametrize("encoder", ["mlp", "lstm"])
def test_p_tuning_equals_peft_on_copied_weights(family, encoder):
    base_spec = tiny_spec(family)
    spec = with_p_tuning(base_spec, tokens=5, encoder=encoder, hidden=24)
    layout, stages = plan_for(spec)
    name = f"{family}_{encoder}"
    export = export_module(base_spec, layout, f"export_pt_{name}")
    config_class, model_class = (getattr(transformers, n) for n in HF[family])
    config = config_class(**{k: v for k, v in export.HF_CONFIG.items() if k != "architectures"})
    torch.manual_seed(0)
    hf = model_class(config).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    base = load_model_module(
        render_model_py(base_spec, layout, stages), f"ptb_{name}"
    ).build_model()
    copy_from_hf(export, hf, base)

    module = load_model_module(render_model_py(spec, layout, stages), f"pt_{name}")
    model = module.build_model().eval()
    missing, unexpected = model.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and all(n.startswith("prompt_encoder.") for n in missing)
    module.freeze_base(model)

    ref = peft.get_peft_model(hf, peft.PromptEncoderConfig(
        task_type="CAUSAL_LM", num_virtual_tokens=5, encoder_hidden_size=24,
        encoder_reparameterization_type=encoder.upper())).eval()  # fmt: skip
    theirs = {n.removeprefix("prompt_encoder.default."): p for n, p in ref.named_parameters()
              if p.requires_grad}  # fmt: skip
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert sum(p.numel() for p in trainable.values()) == sum(p.numel() for p in theirs.values())
    assert sum(p.numel() for p in trainable.values()) == make_plan(spec).params.trainable
    heads = [n for n in theirs if n.startswith("mlp_head.") and n.endswith(".weight")]
    with torch.no_grad():
        model.prompt_encoder.embedding.copy_(theirs["embedding.weight"])
        for i, weight in enumerate(sorted(heads, key=lambda n: int(n.split(".")[1]))):
            model.prompt_encoder.weights[i].copy_(theirs[weight])
            model.prompt_encoder.biases[i].copy_(theirs[weight.replace(".weight", ".bias")])
        for key, p in model.prompt_encoder.lstm.items() if encoder == "lstm" else ():
            p.copy_(theirs[f"lstm_head.{key}"])
    ids = torch.randint(0, 101, (2, 12), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        ours, expected = model(ids), ref(input_ids=ids).logits
    assert expected.shape[1] == 12 + 5 and ours.shape[1] == 12  # the virtual positions cut
    assert (ours - expected[:, 5:]).abs().max().item() <= 1e-5
    # and the loss: no loss on the virtual positions, the last of them predicts token 0
    labels = ids.clone()
    with torch.no_grad():
        assert model(ids, labels).item() == pytest.approx(
            ref(input_ids=ids, labels=labels).loss.item(), rel=1e-5
        )


def test_virtual_tokens_must_fit_the_context():
    from llmspec.errors import SpecError
    from llmspec.spec.load import load_spec_text

    text = """
model: {arch: gpt, max_seq_len: 64}
train: {seq_len: 60}
finetune: {base: {path: b}, method: p_tuning, p_tuning: {tokens: 8}}
"""
    with pytest.raises(SpecError) as info:
        load_spec_text(text, "pt.yaml")
    (problem,) = [p for p in info.value.problems if p.field == "finetune.p_tuning.tokens"]
    assert "8 virtual tokens + train.seq_len 60 = 68" in problem.message and problem.line == 4


@pytest.mark.parametrize("family", ["gpt", "llama"])
def test_generation_with_the_kv_cache_continues_the_virtual_tokens(family):
    """With eval: the model gets a key/value cache; the virtual tokens open it once, and a
    prefill then one token at a time gives the full forward's logits."""
    fields = with_p_tuning(tiny_spec(family), tokens=5, encoder="mlp").model_dump()
    fields["eval"] = {"metrics": ["perplexity"]}
    spec = Spec.model_validate(fields)
    layout, stages = plan_for(spec)
    module = load_model_module(render_model_py(spec, layout, stages), f"pt_gen_{family}")
    model = module.build_model().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        ids = torch.randint(0, 101, (2, 12), generator=torch.Generator().manual_seed(6))
        full = model(ids)
        cache = module.KVCache()
        steps = [model(ids[:, :4], cache=cache)] + [
            model(ids[:, i : i + 1], cache=cache) for i in range(4, 12)
        ]
    assert cache.length == 5 + 12
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=0, atol=2e-5)
