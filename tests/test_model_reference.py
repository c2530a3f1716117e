"""The generated model.py is the architecture it claims: parameter counts and logits equal
Hugging Face's reference implementations at tiny widths after copying the weights across."""

from __future__ import annotations

import pytest
import torch
from model_harness.specs import plan_for, tiny_spec

from llmspec.codegen.model_code import load_model_module, render_model_py

transformers = pytest.importorskip("transformers")

VOCAB, SEQ, BATCH = 101, 16, 2


def build_generated(spec, name):
    module = load_model_module(render_model_py(spec, *plan_for(spec)), name=name)
    return module.build_model().eval()


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def copy_weights(ours: torch.nn.Module, pairs: dict[str, torch.Tensor]) -> None:
    """Assign every parameter of ours from the reference; each must be covered exactly once."""
    mine = dict(ours.named_parameters())
    assert sorted(pairs) == sorted(mine), set(pairs) ^ set(mine)
    with torch.no_grad():
        for name, value in pairs.items():
            assert mine[name].shape == value.shape, name
            mine[name].copy_(value)


def gpt2_pairs(ref, n_layers: int) -> dict[str, torch.Tensor]:
    t = ref.transformer
    pairs = {
        "tok_emb.weight": t.wte.weight,
        "input_encoding.pos_emb": t.wpe.weight,
        "head.norm.weight": t.ln_f.weight,
        "head.norm.bias": t.ln_f.bias,
    }
    for i in range(n_layers):
        h, p = t.h[i], f"blocks.{i}."
        # GPT-2's Conv1D stores [in, out]: transpose; c_attn holds q, k, v side by side.
        q, k, v = h.attn.c_attn.weight.t().chunk(3, dim=0)
        qb, kb, vb = h.attn.c_attn.bias.chunk(3)
        pairs.update({
            p + "attn_norm.weight": h.ln_1.weight, p + "attn_norm.bias": h.ln_1.bias,
            p + "attn.q.weight": q, p + "attn.k.weight": k, p + "attn.v.weight": v,
            p + "attn.q.bias": qb, p + "attn.k.bias": kb, p + "attn.v.bias": vb,
            p + "attn.o.weight": h.attn.c_proj.weight.t(), p + "attn.o.bias": h.attn.c_proj.bias,
            p + "mlp_norm.weight": h.ln_2.weight, p + "mlp_norm.bias": h.ln_2.bias,
            p + "mlp.fc_in.weight": h.mlp.c_fc.weight.t(), p + "mlp.fc_in.bias": h.mlp.c_fc.bias,
            p + "mlp.fc_out.weight": h.mlp.c_proj.weight.t(), p + "mlp.fc_out.bias": h.mlp.c_proj.bias,
        })  # fmt: skip
    return pairs


def llama_pairs(ref, n_layers: int) -> dict[str, torch.Tensor]:
    pairs = {
        "tok_emb.weight": ref.model.embed_tokens.weight,
        "head.norm.weight": ref.model.norm.weight,
        "lm_head.weight": ref.lm_head.weight,
    }
    for i in range(n_layers):
        layer, p = ref.model.layers[i], f"blocks.{i}."
        a, f = layer.self_attn, layer.mlp
        pairs.update({
            p + "attn_norm.weight": layer.input_layernorm.weight,
            p + "mlp_norm.weight": layer.post_attention_layernorm.weight,
            p + "attn.q.weight": a.q_proj.weight, p + "attn.k.weight": a.k_proj.weight,
            p + "attn.v.weight": a.v_proj.weight, p + "attn.o.weight": a.o_proj.weight,
            p + "mlp.gate.weight": f.gate_proj.weight, p + "mlp.up.weight": f.up_proj.weight,
            p + "mlp.down.weight": f.down_proj.weight,
        })  # fmt: skip
    return pairs


def bert_pairs(ref, n_layers: int) -> dict[str, torch.Tensor]:
    e, pred = ref.bert.embeddings, ref.cls.predictions
    pairs = {
        "tok_emb.weight": e.word_embeddings.weight,
        "input_encoding.pos_emb": e.position_embeddings.weight,
        "input_encoding.type_emb": e.token_type_embeddings.weight,
        "input_encoding.norm.weight": e.LayerNorm.weight,
        "input_encoding.norm.bias": e.LayerNorm.bias,
        "head.dense.weight": pred.transform.dense.weight,
        "head.dense.bias": pred.transform.dense.bias,
        "head.mlm_norm.weight": pred.transform.LayerNorm.weight,
        "head.mlm_norm.bias": pred.transform.LayerNorm.bias,
        "logits_bias.bias": pred.bias,
    }
    for i in range(n_layers):
        layer, p = ref.bert.encoder.layer[i], f"blocks.{i}."
        s, ao = layer.attention.self, layer.attention.output
        pairs.update({
            p + "attn.q.weight": s.query.weight, p + "attn.q.bias": s.query.bias,
            p + "attn.k.weight": s.key.weight, p + "attn.k.bias": s.key.bias,
            p + "attn.v.weight": s.value.weight, p + "attn.v.bias": s.value.bias,
            p + "attn.o.weight": ao.dense.weight, p + "attn.o.bias": ao.dense.bias,
            p + "attn_norm.weight": ao.LayerNorm.weight, p + "attn_norm.bias": ao.LayerNorm.bias,
            p + "mlp.fc_in.weight": layer.intermediate.dense.weight,
            p + "mlp.fc_in.bias": layer.intermediate.dense.bias,
            p + "mlp.fc_out.weight": layer.output.dense.weight,
            p + "mlp.fc_out.bias": layer.output.dense.bias,
            p + "mlp_norm.weight": layer.output.LayerNorm.weight,
            p + "mlp_norm.bias": layer.output.LayerNorm.bias,
        })  # fmt: skip
    return pairs


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
        return transformers.GPT2LMHeadModel(config), gpt2_pairs
    if family == "llama":
        config = transformers.LlamaConfig(
            vocab_size=m.vocab_size, hidden_size=m.d_model, intermediate_size=m.ff_dim,
            num_hidden_layers=m.n_layers, num_attention_heads=m.n_heads,
            num_key_value_heads=m.kv_heads, max_position_embeddings=m.max_seq_len,
            rms_norm_eps=m.norm_eps, rope_theta=m.rope_theta, tie_word_embeddings=False,
            attention_bias=False, mlp_bias=False,
        )  # fmt: skip
        return transformers.LlamaForCausalLM(config), llama_pairs
    config = transformers.BertConfig(
        vocab_size=m.vocab_size, hidden_size=m.d_model, num_hidden_layers=m.n_layers,
        num_attention_heads=m.n_heads, intermediate_size=m.ff_dim, hidden_act="gelu_new",
        max_position_embeddings=m.max_seq_len, type_vocab_size=m.type_vocab_size,
        layer_norm_eps=m.norm_eps, hidden_dropout_prob=m.dropout,
        attention_probs_dropout_prob=m.attention_dropout,
    )  # fmt: skip
    return transformers.BertForMaskedLM(config), bert_pairs


@pytest.mark.parametrize("family", ["gpt", "llama", "bert"])
def test_generated_model_matches_reference(family):
    spec = tiny_spec(family, vocab_size=VOCAB, rope_theta=500.0)
    ours = build_generated(spec, f"ref_{family}")
    ref, pairs = reference(family, spec)
    ref.eval()
    assert n_params(ours) == n_params(ref)

    copy_weights(ours, pairs(ref, spec.model.n_layers))
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
