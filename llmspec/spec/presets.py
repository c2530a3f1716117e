"""Named architectures for `model.preset`: plain data, each under the source it was copied from.

A preset fills `model` fields; fields the spec gives explicitly override it.
Only architecture is set here (plus dropout where the source states it);
training hyper-parameters stay in the spec. Parameter counts that follow from
these figures are tested (GPT-2 small 124,439,808; Llama-2-7B 6,738,415,616).
"""

from __future__ import annotations

from typing import Any

# HF hub config.json of openai-community/gpt2{,-medium,-large,-xl} (Radford et al. 2019):
# vocab 50257, n_positions 1024, n_inner null = 4 × n_embd, activation gelu_new (tanh GELU),
# layer_norm_epsilon 1e-5, resid/embd/attn_pdrop 0.1, tied embeddings.
_GPT2 = dict(
    arch="gpt",
    vocab_size=50257,
    max_seq_len=1024,
    position="learned",
    norm="layernorm",
    norm_eps=1e-5,
    norm_position="pre",
    activation="gelu",
    bias=True,
    tie_embeddings=True,
    dropout=0.1,
    attention_dropout=0.1,
)

# HF config.json of meta-llama/Llama-2-{7b,13b,70b}-hf, meta-llama/Meta-Llama-3-8B and
# mistralai/Mistral-7B-v0.1: rms_norm_eps 1e-5, hidden_act silu (SwiGLU MLP), no biases,
# untied LM head, no dropout.
_LLAMA = dict(
    arch="llama",
    position="rope",
    rope_theta=10000.0,
    norm="rmsnorm",
    norm_eps=1e-5,
    norm_position="pre",
    activation="swiglu",
    bias=False,
    tie_embeddings=False,
    dropout=0.0,
    attention_dropout=0.0,
)

PRESETS: dict[str, dict[str, Any]] = {
    # https://huggingface.co/openai-community/gpt2/blob/main/config.json
    "gpt2-small": {**_GPT2, "d_model": 768, "n_layers": 12, "n_heads": 12, "d_ff": 3072},
    # https://huggingface.co/openai-community/gpt2-medium/blob/main/config.json
    "gpt2-medium": {**_GPT2, "d_model": 1024, "n_layers": 24, "n_heads": 16, "d_ff": 4096},
    # https://huggingface.co/openai-community/gpt2-large/blob/main/config.json
    "gpt2-large": {**_GPT2, "d_model": 1280, "n_layers": 36, "n_heads": 20, "d_ff": 5120},
    # https://huggingface.co/openai-community/gpt2-xl/blob/main/config.json
    "gpt2-xl": {**_GPT2, "d_model": 1600, "n_layers": 48, "n_heads": 25, "d_ff": 6400},
    # Brown et al. 2020, "Language Models are Few-Shot Learners", Table 2.1 (GPT-3 175B:
    # n_layers 96, d_model 12288, n_heads 96, d_head 128, n_ctx 2048) and Sec. 2.1
    # (d_ff = 4 × d_model, GPT-2 BPE vocabulary of 50257). GPT-3's alternating locally banded
    # sparse attention layers are not modelled: every layer is dense here.
    "gpt3-175b": {
        **_GPT2,
        "max_seq_len": 2048,
        "d_model": 12288,
        "n_layers": 96,
        "n_heads": 96,
        "d_ff": 49152,
    },
    # https://huggingface.co/meta-llama/Llama-2-7b-hf/blob/main/config.json
    "llama2-7b": {
        **_LLAMA,
        "vocab_size": 32000,
        "max_seq_len": 4096,
        "d_model": 4096,
        "n_layers": 32,
        "n_heads": 32,
        "n_kv_heads": 32,
        "d_ff": 11008,
    },
    # https://huggingface.co/meta-llama/Llama-2-13b-hf/blob/main/config.json
    "llama2-13b": {
        **_LLAMA,
        "vocab_size": 32000,
        "max_seq_len": 4096,
        "d_model": 5120,
        "n_layers": 40,
        "n_heads": 40,
        "n_kv_heads": 40,
        "d_ff": 13824,
    },
    # https://huggingface.co/meta-llama/Llama-2-70b-hf/blob/main/config.json (GQA: 8 kv heads)
    "llama2-70b": {
        **_LLAMA,
        "vocab_size": 32000,
        "max_seq_len": 4096,
        "d_model": 8192,
        "n_layers": 80,
        "n_heads": 64,
        "n_kv_heads": 8,
        "d_ff": 28672,
    },
    # https://huggingface.co/meta-llama/Meta-Llama-3-8B/blob/main/config.json
    # (tiktoken-based 128256-token vocabulary, rope_theta 500000, 8 kv heads)
    "llama3-8b": {
        **_LLAMA,
        "vocab_size": 128256,
        "max_seq_len": 8192,
        "rope_theta": 500000.0,
        "d_model": 4096,
        "n_layers": 32,
        "n_heads": 32,
        "n_kv_heads": 8,
        "d_ff": 14336,
    },
    # https://huggingface.co/mistralai/Mistral-7B-v0.1/blob/main/config.json
    # Its sliding-window attention (window 4096) is NOT modelled: attention here is full causal
    # over max_seq_len, so memory and FLOPs for sequences longer than 4096 are overestimated.
    "mistral-7b": {
        **_LLAMA,
        "vocab_size": 32000,
        "max_seq_len": 32768,
        "d_model": 4096,
        "n_layers": 32,
        "n_heads": 32,
        "n_kv_heads": 8,
        "d_ff": 14336,
    },
    # https://huggingface.co/google-bert/bert-base-uncased/blob/main/config.json (Devlin et al.
    # 2019): post-norm encoder, exact GELU (modelled as tanh GELU), layer_norm_eps 1e-12,
    # 512 positions, 2 token types, hidden/attention dropout 0.1, MLM decoder tied to embeddings.
    "bert-base": {
        "arch": "bert",
        "vocab_size": 30522,
        "max_seq_len": 512,
        "d_model": 768,
        "n_layers": 12,
        "n_heads": 12,
        "n_kv_heads": 12,
        "d_ff": 3072,
        "position": "learned",
        "norm": "layernorm",
        "norm_eps": 1e-12,
        "norm_position": "post",
        "activation": "gelu",
        "bias": True,
        "tie_embeddings": True,
        "type_vocab_size": 2,
        "dropout": 0.1,
        "attention_dropout": 0.1,
    },
    # Tiny members of each family for tests (llmspec's own, no upstream source): same structure
    # as their family, small enough to run a step on CPU in milliseconds. Vocabulary 8192 and
    # positions 1024 match the spec defaults, so `model: {preset: tiny-gpt}` is a valid spec.
    "tiny-gpt": {
        **_GPT2,
        "vocab_size": 8192,
        "d_model": 64,
        "n_layers": 2,
        "n_heads": 4,
        "d_ff": 256,
        "dropout": 0.0,
        "attention_dropout": 0.0,
    },
    "tiny-llama": {
        **_LLAMA,
        "vocab_size": 8192,
        "max_seq_len": 1024,
        "d_model": 64,
        "n_layers": 2,
        "n_heads": 4,
        "n_kv_heads": 2,  # grouped-query attention, as in Llama-2-70B / Llama-3
        "d_ff": 192,
    },
    "tiny-bert": {
        "arch": "bert",
        "vocab_size": 8192,
        "max_seq_len": 512,
        "d_model": 64,
        "n_layers": 2,
        "n_heads": 4,
        "d_ff": 256,
        "position": "learned",
        "norm": "layernorm",
        "norm_eps": 1e-12,
        "norm_position": "post",
        "activation": "gelu",
        "bias": True,
        "tie_embeddings": True,
        "type_vocab_size": 2,
        "dropout": 0.0,
        "attention_dropout": 0.0,
    },
}

# One line per preset for `llmspec presets`.
SOURCES: dict[str, str] = {
    "gpt2-small": "HF openai-community/gpt2 config.json",
    "gpt2-medium": "HF openai-community/gpt2-medium config.json",
    "gpt2-large": "HF openai-community/gpt2-large config.json",
    "gpt2-xl": "HF openai-community/gpt2-xl config.json",
    "gpt3-175b": "Brown et al. 2020, Table 2.1 (sparse layers not modelled)",
    "llama2-7b": "HF meta-llama/Llama-2-7b-hf config.json",
    "llama2-13b": "HF meta-llama/Llama-2-13b-hf config.json",
    "llama2-70b": "HF meta-llama/Llama-2-70b-hf config.json",
    "llama3-8b": "HF meta-llama/Meta-Llama-3-8B config.json",
    "mistral-7b": "HF mistralai/Mistral-7B-v0.1 config.json (sliding window not modelled)",
    "bert-base": "HF google-bert/bert-base-uncased config.json",
    "tiny-gpt": "llmspec test model (GPT family)",
    "tiny-llama": "llmspec test model (Llama family, GQA)",
    "tiny-bert": "llmspec test model (BERT family)",
}


def preset_names() -> list[str]:
    return list(PRESETS)
