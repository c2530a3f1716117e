"""`params.trainable` of a fine-tuning spec against peft's count on the same architecture.

The oracle is peft applied to the Hugging Face implementation of the same shapes (tiny
configs, and Llama-2-7B on the meta device: no weights are allocated). GPT-2 fuses q, k, v
into one `c_attn`, which is not three LoRA adapters, so GPT-2 parity covers the unfused
linears (o, up, down); Llama and BERT cover all of theirs (POSTTRAINING-NOTES §1.2).
"""

from __future__ import annotations

import json
import re

import pytest

from llmspec.graph.dims import ModelDims
from llmspec.graph.layers import count_params
from llmspec.spec.load import load_spec_text
from llmspec.spec.schema import Spec

torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")

LLAMA = dict(arch="llama", vocab_size=512, max_seq_len=64, d_model=128, n_layers=4, n_heads=4,
             n_kv_heads=2, d_ff=344, position="rope", norm="rmsnorm", activation="swiglu",
             bias=False, tie_embeddings=False)  # fmt: skip
GPT = dict(arch="gpt", vocab_size=512, max_seq_len=64, d_model=96, n_layers=3, n_heads=4,
           n_kv_heads=4, d_ff=384, position="learned", norm="layernorm", activation="gelu",
           bias=True, tie_embeddings=True)  # fmt: skip
BERT = dict(arch="bert", vocab_size=512, max_seq_len=64, d_model=64, n_layers=2, n_heads=4,
            n_kv_heads=4, d_ff=256, position="learned", norm="layernorm", norm_position="post",
            activation="gelu", bias=True, tie_embeddings=True, type_vocab_size=2)  # fmt: skip

# our target name → the HF module path suffix (regex) of the same linear
HF_NAMES = {
    "llama": {"q": r"self_attn\.q_proj", "k": r"self_attn\.k_proj", "v": r"self_attn\.v_proj",
              "o": r"self_attn\.o_proj", "gate": r"mlp\.gate_proj", "up": r"mlp\.up_proj",
              "down": r"mlp\.down_proj"},
    "gpt": {"o": r"attn\.c_proj", "up": r"mlp\.c_fc", "down": r"mlp\.c_proj"},
    "bert": {"q": r"attention\.self\.query", "k": r"attention\.self\.key",
             "v": r"attention\.self\.value", "o": r"attention\.output\.dense",
             "up": r"intermediate\.dense", "down": r"layer\.\d+\.output\.dense"},
}  # fmt: skip
MODELS = {"llama": LLAMA, "gpt": GPT, "bert": BERT}


def spec_of(model: dict, finetune: dict) -> Spec:
    objective = "masked_lm" if model["arch"] == "bert" else "sft"
    return Spec.model_validate(
        {
            "name": "ft",
            "model": model,
            "train": {"objective": objective, "seq_len": 32},
            "finetune": {"base": {"path": "base"}, **finetune},
        }
    )


def hf_model(model: dict):
    m = model
    if m["arch"] == "llama":
        cfg = transformers.LlamaConfig(
            vocab_size=m["vocab_size"], hidden_size=m["d_model"], intermediate_size=m["d_ff"],
            num_hidden_layers=m["n_layers"], num_attention_heads=m["n_heads"],
            num_key_value_heads=m["n_kv_heads"], max_position_embeddings=m["max_seq_len"],
        )  # fmt: skip
        return transformers.LlamaForCausalLM(cfg)
    if m["arch"] == "gpt":
        cfg = transformers.GPT2Config(
            vocab_size=m["vocab_size"], n_embd=m["d_model"], n_layer=m["n_layers"],
            n_head=m["n_heads"], n_inner=m["d_ff"], n_positions=m["max_seq_len"],
        )  # fmt: skip
        return transformers.GPT2LMHeadModel(cfg)
    cfg = transformers.BertConfig(
        vocab_size=m["vocab_size"], hidden_size=m["d_model"], num_hidden_layers=m["n_layers"],
        num_attention_heads=m["n_heads"], intermediate_size=m["d_ff"],
        max_position_embeddings=m["max_seq_len"], type_vocab_size=m["type_vocab_size"],
    )  # fmt: skip
    return transformers.BertForMaskedLM(cfg)


def peft_trainable(model, config) -> tuple[int, int]:
    wrapped = peft.get_peft_model(model, config)
    trainable, total = wrapped.get_nb_trainable_parameters()
    return trainable, total


TARGET_SETS = {
    "llama": [("q", "v"), ("k",), ("q", "k", "v", "o", "gate", "up", "down")],
    "gpt": [("o",), ("up", "down"), ("o", "up", "down")],
    "bert": [("q", "v"), ("q", "k", "v", "o", "up", "down")],
}
LORA_CASES = [
    (arch, r, targets) for arch, sets in TARGET_SETS.items() for targets in sets for r in (4, 8, 16)
]


@pytest.mark.parametrize("arch,rank,targets", LORA_CASES)
def test_lora_trainable_equals_peft(arch, rank, targets):
    spec = spec_of(
        MODELS[arch], {"method": "lora", "lora": {"rank": rank, "targets": list(targets)}}
    )
    ours = count_params(ModelDims.from_spec(spec))
    pattern = r".*\.(" + "|".join(HF_NAMES[arch][t] for t in targets) + r")$"
    config = peft.LoraConfig(r=rank, lora_alpha=16, target_modules=pattern)
    theirs, _ = peft_trainable(hf_model(MODELS[arch]), config)
    assert ours.trainable == theirs
    assert ours.total == ours.frozen + ours.trainable


def test_llama2_7b_lora_qv_is_torchtunes_figure():
    """Llama-2-7B, r=8 on q,v: 4,194,304 trainable of 6,742,609,920 (torchtune's LoRA
    tutorial), and peft agrees on the HF model built on the meta device."""
    spec = load_spec_text(
        "name: l7\nmodel: {preset: llama2-7b}\ntrain: {objective: sft, seq_len: 512}\n"
        "finetune: {base: {path: base}, method: lora, lora: {rank: 8, targets: [q, v]}}\n"
    )
    ours = count_params(ModelDims.from_spec(spec))
    assert (ours.trainable, ours.total) == (4_194_304, 6_742_609_920)
    cfg = transformers.LlamaConfig(
        vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
        num_attention_heads=32, num_key_value_heads=32,
    )  # fmt: skip
    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(cfg)
    trainable, total = peft_trainable(
        model, peft.LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"])
    )
    assert (ours.trainable, ours.total) == (trainable, total)


def _prompt_model(model, config):
    wrapped = peft.get_peft_model(model, config)
    return wrapped.get_nb_trainable_parameters()[0]


@pytest.mark.parametrize("projection", [False, True])
@pytest.mark.parametrize("arch", ["llama", "gpt"])
def test_prefix_trainable_equals_peft(arch, projection):
    """GQA-sized prefixes (n_kv·d_head), with and without the reparametrising MLP."""
    spec = spec_of(
        MODELS[arch], {"method": "prefix", "prefix": {"tokens": 10, "projection": projection}}
    )
    ours = count_params(ModelDims.from_spec(spec))
    config = peft.PrefixTuningConfig(
        task_type="CAUSAL_LM", num_virtual_tokens=10, prefix_projection=projection
    )
    assert ours.trainable == _prompt_model(hf_model(MODELS[arch]), config)


@pytest.mark.parametrize(
    "encoder,hidden", [("mlp", None), ("mlp", 64), ("lstm", 64), ("lstm", None)]
)
def test_p_tuning_trainable_equals_peft(encoder, hidden):
    p_tuning = {"tokens": 10, "encoder": encoder, "hidden": hidden}
    spec = spec_of(LLAMA, {"method": "p_tuning", "p_tuning": p_tuning})
    ours = count_params(ModelDims.from_spec(spec))
    config = peft.PromptEncoderConfig(
        task_type="CAUSAL_LM",
        num_virtual_tokens=10,
        encoder_reparameterization_type=encoder.upper(),
        encoder_hidden_size=hidden or LLAMA["d_model"],
    )
    assert ours.trainable == _prompt_model(hf_model(LLAMA), config)


def test_notes_figures_on_the_tiny_gqa_llama():
    """The measured table of POSTTRAINING-NOTES §1.2 (d=128, L=4, 4 heads, 2 KV heads)."""
    cases = [
        ({"method": "lora", "lora": {"rank": 8, "targets": ["q", "v"]}}, 14_336),
        ({"method": "lora", "lora": {"rank": 16, "targets": list(HF_NAMES["llama"])}}, 147_968),
        ({"method": "prefix", "prefix": {"tokens": 10}}, 5_120),
        ({"method": "p_tuning", "p_tuning": {"tokens": 10}}, 50_816),
        ({"method": "p_tuning", "p_tuning": {"tokens": 10, "hidden": 64}}, 22_016),
        ({"method": "p_tuning", "p_tuning": {"tokens": 10, "encoder": "lstm", "hidden": 64}},
         232_960),
    ]  # fmt: skip
    for finetune, expected in cases:
        assert count_params(ModelDims.from_spec(spec_of(LLAMA, finetune))).trainable == expected


def test_full_finetune_trains_everything():
    spec = spec_of(LLAMA, {"method": "full"})
    counts = count_params(ModelDims.from_spec(spec))
    base = count_params(ModelDims.from_spec(spec.model_copy(update={"finetune": None})))
    assert counts == base and counts.trainable == counts.total and counts.frozen == 0


def test_plan_json_params_trainable_and_frozen():
    from llmspec.plan import make_plan

    spec = spec_of(LLAMA, {"method": "lora", "lora": {"rank": 8, "targets": ["q", "v"]}})
    params = json.loads(json.dumps(make_plan(spec).to_dict()))["params"]
    assert params["trainable"] == 14_336
    assert params["frozen"] + params["trainable"] == params["total"]
    assert re.fullmatch(r"\d+", str(params["frozen"]))
