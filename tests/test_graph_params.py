"""Exact parameter counts, checked against independent sources.

Expected values come from two places that do not use our formulas: the
parameter counts Hugging Face publishes for each checkpoint, and the HF
reference implementation instantiated on the meta device (no weights).
"""

import networkx as nx
import pytest

from llmspec.graph.dims import ModelDims
from llmspec.graph.layers import build_layer_graph, count_params, node_order


def dims(**kw) -> ModelDims:
    base = dict(
        arch="gpt",
        vocab_size=50257,
        d_model=768,
        n_layers=12,
        n_heads=12,
        n_kv_heads=12,
        d_ff=3072,
        max_seq_len=1024,
        seq_len=1024,
        position="learned",
        norm="layernorm",
        activation="gelu",
        bias=True,
        tie_embeddings=True,
        type_vocab_size=0,
        dropout=0.0,
        attention_dropout=0.0,
        drop_path=0.0,
        objective="causal_lm",
    )
    base.update(kw)
    return ModelDims(**base)


def gpt2(n_layers, d_model, n_heads):
    return dims(
        n_layers=n_layers, d_model=d_model, n_heads=n_heads, n_kv_heads=n_heads, d_ff=4 * d_model
    )


def llama(vocab, h, ff, n_layers, heads, kv_heads, max_seq_len=4096):
    return dims(
        arch="llama",
        vocab_size=vocab,
        d_model=h,
        d_ff=ff,
        n_layers=n_layers,
        n_heads=heads,
        n_kv_heads=kv_heads,
        max_seq_len=max_seq_len,
        seq_len=max_seq_len,
        position="rope",
        norm="rmsnorm",
        activation="swiglu",
        bias=False,
        tie_embeddings=False,
    )


BERT_BASE = dims(
    arch="bert",
    vocab_size=30522,
    max_seq_len=512,
    seq_len=512,
    type_vocab_size=2,
    objective="masked_lm",
)

# Published counts: the "num parameters" of the HF checkpoints (GPT-2 model card
# sizes 124M/355M/774M/1.5B; Llama-2 paper Table 1 sizes 7B/13B/70B; Meta
# Llama-3-8B; Mistral-7B-v0.1; bert-base-uncased with its MLM head).
PUBLISHED = {
    "gpt2-small": (gpt2(12, 768, 12), 124_439_808),
    "gpt2-medium": (gpt2(24, 1024, 16), 354_823_168),
    "gpt2-large": (gpt2(36, 1280, 20), 774_030_080),
    "gpt2-xl": (gpt2(48, 1600, 25), 1_557_611_200),
    "llama2-7b": (llama(32000, 4096, 11008, 32, 32, 32), 6_738_415_616),
    "llama2-13b": (llama(32000, 5120, 13824, 40, 40, 40), 13_015_864_320),
    "llama2-70b": (llama(32000, 8192, 28672, 80, 64, 8), 68_976_648_192),
    "llama3-8b": (llama(128256, 4096, 14336, 32, 32, 8, 8192), 8_030_261_248),
    "mistral-7b": (llama(32000, 4096, 14336, 32, 32, 8, 8192), 7_241_732_096),
    "bert-base": (BERT_BASE, 109_514_298),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_parameter_counts(name):
    model_dims, expected = PUBLISHED[name]
    counts = count_params(model_dims)
    assert counts.total == expected
    assert counts.trainable == counts.total


def _hf_meta_count(name: str) -> int:
    """Instantiate the Hugging Face reference model on the meta device and count."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    if name.startswith("gpt2"):
        d = PUBLISHED[name][0]
        cls, cfg = (
            transformers.GPT2LMHeadModel,
            transformers.GPT2Config(n_layer=d.n_layers, n_embd=d.d_model, n_head=d.n_heads),
        )
    elif name == "bert-base":
        cls, cfg = transformers.BertForMaskedLM, transformers.BertConfig()
    else:
        d = PUBLISHED[name][0]
        cls, cfg = (
            transformers.LlamaForCausalLM,
            transformers.LlamaConfig(
                vocab_size=d.vocab_size,
                hidden_size=d.d_model,
                intermediate_size=d.d_ff,
                num_hidden_layers=d.n_layers,
                num_attention_heads=d.n_heads,
                num_key_value_heads=d.n_kv_heads,
                tie_word_embeddings=False,
            ),
        )
    with torch.device("meta"):
        model = cls(cfg)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", ["gpt2-medium", "llama3-8b", "llama2-70b", "bert-base"])
def test_counts_match_hf_reference_on_meta_device(name):
    assert count_params(PUBLISHED[name][0]).total == _hf_meta_count(name)


def test_breakdown_adds_up_and_tensor_pads_vocab():
    d = PUBLISHED["gpt2-small"][0]
    counts = count_params(d)
    assert counts.embedding == (50257 + 1024) * 768
    assert counts.per_layer == 7_087_872
    final_norm = 2 * 768
    assert counts.total == counts.embedding + 12 * counts.per_layer + final_norm
    # vocabulary padded to a multiple of tensor = 2: 50258 rows
    assert count_params(d, tensor=2).total == counts.total + 768


def test_layer_graph_order_and_totals():
    d = PUBLISHED["llama2-7b"][0]
    g = build_layer_graph(d)
    assert list(nx.lexicographical_topological_sort(g, key=lambda n: g.nodes[n]["index"])) == list(
        node_order(d)
    )
    assert sum(a["params"] for _, a in g.nodes(data=True)) == 6_738_415_616
    assert (
        g.nodes["block.0"]["bwd_flops_per_token"] == 2 * g.nodes["block.0"]["fwd_flops_per_token"]
    )
    saved = g.nodes["block.3"]["saved_bytes"]
    # affine in the micro-batch: per-token tensors plus the per-sequence RoPE tables
    assert saved(3, "bf16") - saved(2, "bf16") == saved(2, "bf16") - saved(1, "bf16") > 0
    assert saved(1, "bf16", "full") < saved(1, "bf16", "selective") <= saved(1, "bf16")
    assert saved(1, "bf16", tensor=4) < saved(1, "bf16")
    assert saved(1, "bf16", tensor=4, sequence_parallel=True) < saved(1, "bf16", tensor=4)


def test_bert_graph_has_embedding_norm_before_blocks():
    g = build_layer_graph(BERT_BASE)
    assert list(g.successors("embedding_norm")) == ["block.0"]
    assert "mlm_head" in g and "lm_head" not in g
    assert sum(a["params"] for _, a in g.nodes(data=True)) == 109_514_298
