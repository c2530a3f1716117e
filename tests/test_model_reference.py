"""The generated model.py is the architecture it claims: parameter counts and logits equal
Hugging Face's reference implementations at tiny widths after copying the weights across
(through the generated export.py's name table: the one mapping the project itself uses)."""

from __future__ import annotations

import pytest
import torch
from model_harness.hf import copy_from_hf, export_module
from model_harness.specs import plan_for, tiny_spec

from llmspec.codegen.model_code import load_model_module, render_model_py

transformers = pytest.importorskip("transformers")

VOCAB, SEQ, BATCH = 101, 16, 2


def build_generated(spec, name):
    module = load_model_module(render_model_py(spec, *plan_for(spec)), name=name)
    return module.build_model().eval()


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def reference(family: str, spec):
    m = spec.model
    torch.manual_seed(0)
    if family == "gpt":
        config = transformers.GPT2Config(
            vocab_size=m.vocab_size, n_positions=m.max_seq_len, n_embd=m.d_model,
            n_layer=m.n_layers, n_head=m.n_heads, n_inner=m.ff_dim,
            activation_function="gelu_new", layer_norm_epsilon=m.norm_eps,
            resid_pdrop=m.dropout, embd_pdrop=m.dropout, attn_pdrop=m.attention_dropout,
        )  # fmt: skip
        return transformers.GPT2LMHeadModel(config)
    if family == "llama":
        config = transformers.LlamaConfig(
            vocab_size=m.vocab_size, hidden_size=m.d_model, intermediate_size=m.ff_dim,
            num_hidden_layers=m.n_layers, num_attention_heads=m.n_heads,
            num_key_value_heads=m.kv_heads, max_position_embeddings=m.max_seq_len,
            rms_norm_eps=m.norm_eps, rope_theta=m.rope_theta, tie_word_embeddings=False,
            attention_bias=False, mlp_bias=False,
        )  # fmt: skip
        return transformers.LlamaForCausalLM(config)
    config = transformers.BertConfig(
        vocab_size=m.vocab_size, hidden_size=m.d_model, num_hidden_layers=m.n_layers,
        num_attention_heads=m.n_heads, intermediate_size=m.ff_dim, hidden_act="gelu_new",
        max_position_embeddings=m.max_seq_len, type_vocab_size=m.type_vocab_size,
        layer_norm_eps=m.norm_eps, hidden_dropout_prob=m.dropout,
        attention_probs_dropout_prob=m.attention_dropout,
    )  # fmt: skip
    return transformers.BertForMaskedLM(config)


@pytest.mark.parametrize("family", ["gpt", "llama", "bert"])
def test_generated_model_matches_reference(family):
    spec = tiny_spec(family, vocab_size=VOCAB, rope_theta=500.0)
    ours = build_generated(spec, f"ref_{family}")
    ref = reference(family, spec)
    ref.eval()
    assert n_params(ours) == n_params(ref)

    # the weights cross through the generated export.py's name table, read backwards
    export = export_module(spec, plan_for(spec).layout, f"export_{family}")
    copy_from_hf(export, ref, ours)
    # and the config.json export.py writes holds what this hand-built reference config does
    written = type(ref.config)(**export.HF_CONFIG).to_dict()
    for key, value in ref.config.to_dict().items():
        if key not in ("architectures", "dtype", "transformers_version"):
            assert written.get(key) == value, (key, written.get(key), value)
    input_ids = torch.randint(0, VOCAB, (BATCH, SEQ), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = ref(input_ids).logits
        got = ours(input_ids)
    assert got.shape == expected.shape == (BATCH, SEQ, VOCAB)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)

    # And the loss: HF shifts causal labels itself; masked LM labels are used as given.
    labels = input_ids if family != "bert" else input_ids.masked_fill(input_ids % 3 != 0, -100)
    with torch.no_grad():
        torch.testing.assert_close(ours(input_ids, labels), ref(input_ids, labels=labels).loss)
