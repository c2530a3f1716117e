"""Hugging Face `config.json` ↔ the spec's `model:` section, for the families llmspec generates.

One table per family says which HF config key holds which spec field (`FIELDS`), which HF
values the generated model.py implements and which it does not (`FIXED`, `ACTIVATIONS`), and
which keys carry nothing the model computes (`IGNORED`: token ids, initialisation, caching).
`spec_from_hf` reads a config (`llmspec import hf`); `hf_config` writes one for a spec
(`export.py`, through `codegen.export_context`). Both are pure functions over plain dicts:
no transformers, no torch.

Families: gpt ↔ GPT2LMHeadModel (`gpt2`), llama ↔ LlamaForCausalLM (`llama`, and `mistral`
read as llama when its sliding window covers every position), bert ↔ BertForMaskedLM (`bert`).
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from llmspec.errors import UserError


@dataclass(frozen=True)
class HfField:
    """The spec's `model.<spec>` is HF's `<hf>`; `default` is HF's value when the key is absent."""

    spec: str
    hf: str
    default: object = None


# HF model_type → (spec arch, HF class the export writes)
FAMILIES = {
    "gpt2": ("gpt", "GPT2LMHeadModel"),
    "llama": ("llama", "LlamaForCausalLM"),
    "mistral": ("llama", "LlamaForCausalLM"),
    "bert": ("bert", "BertForMaskedLM"),
}
MODEL_TYPE = {"gpt": "gpt2", "llama": "llama", "bert": "bert"}  # the family an arch exports as

FIELDS: dict[str, tuple[HfField, ...]] = {
    "gpt2": (
        HfField("vocab_size", "vocab_size", 50257),
        HfField("max_seq_len", "n_positions", 1024),
        HfField("d_model", "n_embd", 768),
        HfField("n_layers", "n_layer", 12),
        HfField("n_heads", "n_head", 12),
        HfField("d_ff", "n_inner", None),  # None = 4 × n_embd in both
        HfField("norm_eps", "layer_norm_epsilon", 1e-5),
        HfField("dropout", "resid_pdrop", 0.1),
        HfField("attention_dropout", "attn_pdrop", 0.1),
        HfField("tie_embeddings", "tie_word_embeddings", True),
    ),
    "llama": (
        HfField("vocab_size", "vocab_size", 32000),
        HfField("max_seq_len", "max_position_embeddings", 2048),
        HfField("d_model", "hidden_size", 4096),
        HfField("n_layers", "num_hidden_layers", 32),
        HfField("n_heads", "num_attention_heads", 32),
        HfField("n_kv_heads", "num_key_value_heads", None),  # None = num_attention_heads
        HfField("d_ff", "intermediate_size", 11008),
        HfField("norm_eps", "rms_norm_eps", 1e-6),
        HfField("rope_theta", "rope_theta", 10000.0),
        HfField("attention_dropout", "attention_dropout", 0.0),
        HfField("tie_embeddings", "tie_word_embeddings", False),
    ),
    "bert": (
        HfField("vocab_size", "vocab_size", 30522),
        HfField("max_seq_len", "max_position_embeddings", 512),
        HfField("d_model", "hidden_size", 768),
        HfField("n_layers", "num_hidden_layers", 12),
        HfField("n_heads", "num_attention_heads", 12),
        HfField("d_ff", "intermediate_size", 3072),
        HfField("type_vocab_size", "type_vocab_size", 2),
        HfField("norm_eps", "layer_norm_eps", 1e-12),
        HfField("dropout", "hidden_dropout_prob", 0.1),
        HfField("attention_dropout", "attention_probs_dropout_prob", 0.1),
    ),
}
# Mistral is Llama's computation with other defaults (MistralConfig) and a sliding window.
MISTRAL_DEFAULTS = {"max_position_embeddings": 4096 * 32, "intermediate_size": 14336,
                    "num_key_value_heads": 8, "rms_norm_eps": 1e-6}  # fmt: skip
FIELDS["mistral"] = tuple(
    HfField(f.spec, f.hf, MISTRAL_DEFAULTS.get(f.hf, f.default)) for f in FIELDS["llama"]
)
MISTRAL_SLIDING_WINDOW = 4096  # MistralConfig's default when the key is absent

# The architecture each family is; a spec must match it to be exported as that family.
FIXED: dict[str, dict[str, object]] = {
    "gpt": dict(position="learned", norm="layernorm", norm_position="pre", bias=True),
    "llama": dict(position="rope", norm="rmsnorm", norm_position="pre", activation="swiglu",
                  bias=False),
    "bert": dict(position="learned", norm="layernorm", norm_position="post", bias=True,
                 tie_embeddings=True),
}  # fmt: skip

# HF activation name → the spec's; model.py's GELU is the tanh approximation (GPT-2's gelu_new).
ACTIVATIONS = {"gelu_new": "gelu", "gelu_pytorch_tanh": "gelu", "relu": "relu"}
ACTIVATION_KEY = {"gpt2": "activation_function", "bert": "hidden_act"}
HF_ACTIVATION = {"gelu": "gelu_new", "relu": "relu"}  # what the export writes

# Keys that must hold the value model.py computes with (HF's default when absent).
REQUIRED: dict[str, dict[str, object]] = {
    "gpt2": dict(scale_attn_weights=True, scale_attn_by_inverse_layer_idx=False,
                 add_cross_attention=False),
    "llama": dict(hidden_act="silu", attention_bias=False, mlp_bias=False, pretraining_tp=1,
                  rope_scaling=None, head_dim=None),
    "bert": dict(position_embedding_type="absolute", is_decoder=False, add_cross_attention=False,
                 tie_word_embeddings=True),
}  # fmt: skip
REQUIRED["mistral"] = dict(REQUIRED["llama"], sliding_window=None)

# Keys read by their own rule below: the activation, GPT-2's second dropout, transformers 5's
# rope_parameters.
READ_APART = {
    "gpt2": {"activation_function", "embd_pdrop"},
    "llama": {"rope_parameters"},
    "mistral": {"rope_parameters"},
    "bert": {"hidden_act"},
}

# Keys that change nothing model.py computes: token ids, initialisation, caching, bookkeeping.
IGNORED = frozenset({
    "_name_or_path", "architectures", "model_type", "transformers_version", "torch_dtype", "dtype",
    "bos_token_id", "eos_token_id", "pad_token_id", "sep_token_id", "decoder_start_token_id",
    "initializer_range", "use_cache", "output_attentions", "output_hidden_states",
    "return_dict", "id2label", "label2id", "problem_type", "task_specific_params",
    "tokenizer_class", "prefix", "chunk_size_feed_forward", "is_encoder_decoder",
    "n_ctx", "summary_type", "summary_use_proj", "summary_activation", "summary_proj_to_labels",
    "summary_first_dropout", "reorder_and_upcast_attn", "classifier_dropout", "attn_implementation",
    "gradient_checkpointing",
})  # fmt: skip


class HfConfigError(UserError):
    """A config.json llmspec cannot represent, naming the field."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class ImportedModel:
    """What `spec_from_hf` read: the spec's model fields, each with the HF key it came from."""

    model_type: str
    architecture: str  # the HF class the folder's config names (or the family's)
    fields: tuple[tuple[str, object, str], ...]  # (spec field, value, origin)
    objective: str  # causal_lm | masked_lm

    def model_dict(self) -> dict[str, object]:
        return {name: value for name, value, _ in self.fields}


def spec_from_hf(config: dict) -> ImportedModel:
    """The spec's `model:` fields for an HF config; HfConfigError names the first field that
    llmspec's model.py cannot reproduce (or that it does not know)."""
    model_type = config.get("model_type")
    if model_type not in FAMILIES:
        known = ", ".join(sorted(FAMILIES))
        raise HfConfigError("model_type", f"{model_type!r} is not supported (one of: {known})")
    arch, hf_class = FAMILIES[model_type]
    table = FIELDS[model_type]
    known = {f.hf for f in table} | set(REQUIRED[model_type]) | READ_APART[model_type] | IGNORED
    for key in config:
        if key not in known:
            raise HfConfigError(key, "not supported by llmspec's generated model (unknown field)")
    activation_key = ACTIVATION_KEY.get(model_type)

    fields: list[tuple[str, object, str]] = [("arch", arch, f"model_type: {model_type}")]
    for f in table:
        value = config.get(f.hf, f.default)
        if f.hf == "rope_theta":
            value = _rope_theta(config, f.default)
        if f.hf == "vocab_size" and value is None:
            raise HfConfigError(f.hf, "missing")
        if value is None:
            continue  # both sides default it the same way (4 × d_model, n_heads)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            if f.spec != "tie_embeddings":
                raise HfConfigError(f.hf, f"expected a number, got {value!r}")
        if f.spec in ("norm_eps", "rope_theta", "dropout", "attention_dropout"):
            value = float(value)
        origin = f.hf if f.hf in config else f"{f.hf} (HF default)"
        if f.hf == "rope_theta" and "rope_parameters" in config:
            origin = "rope_parameters.rope_theta"
        fields.append((f.spec, value, origin))
    for spec_field, value in FIXED[arch].items():
        fields.append((spec_field, value, f"{hf_class}"))
    if activation_key:
        act = config.get(activation_key, "gelu_new" if model_type == "gpt2" else "gelu")
        if act not in ACTIVATIONS:
            raise HfConfigError(
                activation_key,
                f"{act!r} is not supported: model.py's activations are "
                f"{', '.join(sorted(ACTIVATIONS))} (its GELU is the tanh approximation)",
            )
        fields.append(("activation", ACTIVATIONS[act], activation_key))
    _check_required(config, model_type)
    if model_type == "gpt2":
        _same(config, "embd_pdrop", "resid_pdrop", 0.1)
    if model_type in ("llama", "mistral"):
        fields.append(("dropout", 0.0, f"{hf_class} has no residual dropout"))
    return ImportedModel(model_type, (config.get("architectures") or [hf_class])[0], tuple(fields),
                         "masked_lm" if arch == "bert" else "causal_lm")  # fmt: skip


def _rope_theta(config: dict, default: float) -> float:
    """transformers 5 writes rope_parameters {rope_type, rope_theta}; older configs rope_theta."""
    params = config.get("rope_parameters")
    if params is not None:
        if not isinstance(params, dict) or params.get("rope_type", "default") != "default":
            raise HfConfigError(
                "rope_parameters", f"only rope_type default is supported, got {params!r}"
            )
        extra = set(params) - {"rope_type", "rope_theta"}
        if extra:
            raise HfConfigError(f"rope_parameters.{sorted(extra)[0]}", "not supported")
        return float(params.get("rope_theta", config.get("rope_theta", default)))
    return float(config.get("rope_theta", default))


def _check_required(config: dict, model_type: str) -> None:
    for key, expected in REQUIRED[model_type].items():
        if key == "sliding_window" and key not in config:
            config = dict(config, sliding_window=MISTRAL_SLIDING_WINDOW)
        if key not in config:
            continue
        value = config[key]
        if key == "head_dim":
            heads = config.get("num_attention_heads", 32)
            if value is None or value * heads == config.get("hidden_size", 4096):
                continue
            raise HfConfigError(key, f"{value} × {heads} heads is not hidden_size (not supported)")
        if key == "sliding_window":
            longest = config.get("max_position_embeddings", 4096 * 32)
            if value is None or value >= longest:
                continue
            raise HfConfigError(
                key, f"{value} < max_position_embeddings {longest}: sliding-window attention is "
                "not supported",
            )  # fmt: skip
        if key == "rope_scaling" and (
            value is None
            or (isinstance(value, dict) and value.get("rope_type", value.get("type")) == "default")
        ):
            continue
        if value != expected:
            raise HfConfigError(
                key, f"{value!r} is not supported (model.py computes with {expected!r})"
            )


def _same(config: dict, key: str, like: str, default: object) -> None:
    if key in config and config[key] != config.get(like, default):
        raise HfConfigError(key, f"{config[key]!r} differs from {like} {config.get(like, default)!r}: "
                            "model.dropout is one probability for both")  # fmt: skip


def export_problem(model) -> str | None:
    """Why the spec's `model:` has no HF family that computes what model.py computes; None
    when it has one. `model` is a ModelSpec."""
    fixed = FIXED[model.arch]
    for field, value in fixed.items():
        if getattr(model, field) != value:
            return (f"model.{field}: {getattr(model, field)!r} (a {model.arch} model exports as "
                    f"{FAMILIES[MODEL_TYPE[model.arch]][1]}, which has {field} {value!r})")  # fmt: skip
    if model.arch in ("gpt", "bert") and model.activation not in HF_ACTIVATION:
        return f"model.activation: {model.activation!r} has no {MODEL_TYPE[model.arch]} counterpart"
    if model.arch == "gpt" and model.kv_heads != model.n_heads:
        return "model.n_kv_heads: GPT2LMHeadModel has no grouped-query attention"
    if model.arch == "gpt" and model.type_vocab_size:
        return "model.type_vocab_size: GPT2LMHeadModel has no token-type embedding"
    if model.arch == "llama" and model.type_vocab_size:
        return "model.type_vocab_size: LlamaForCausalLM has no token-type embedding"
    if model.arch == "bert" and not model.type_vocab_size:
        return "model.type_vocab_size: 0, BertForMaskedLM always has a token-type embedding"
    return None


def hf_config(model) -> dict[str, object]:
    """config.json for a spec's `model:` (a ModelSpec that `export_problem` accepts)."""
    model_type = MODEL_TYPE[model.arch]
    config: dict[str, object] = {
        "architectures": [FAMILIES[model_type][1]],
        "model_type": model_type,
    }
    for f in FIELDS[model_type]:
        value = getattr(model, f.spec)
        if f.spec == "n_kv_heads":
            value = model.kv_heads
        if f.spec == "d_ff":
            value = model.ff_dim
        config[f.hf] = value
    if model_type == "gpt2":
        config["activation_function"] = HF_ACTIVATION[model.activation]
        config["embd_pdrop"] = model.dropout
    elif model_type == "llama":
        config.update(hidden_act="silu", attention_bias=False, mlp_bias=False,
                      head_dim=model.head_dim)  # fmt: skip
    else:
        config["hidden_act"] = HF_ACTIVATION[model.activation]
        config["position_embedding_type"] = "absolute"
        config["tie_word_embeddings"] = True
    return config


def _yaml_scalar(value: object) -> str:
    """One YAML scalar; PyYAML writes floats the way it reads them back (1.0e-05)."""
    return yaml.safe_dump(value, default_flow_style=True).removesuffix("\n...\n").strip()


def spec_text(
    imported: ImportedModel, *, name: str, source: str, tokenizer: str | None = None
) -> str:
    """A spec (YAML with comments) for an imported config: the model section with each
    field's HF origin, the objective, seq_len up to what the base supports and, when the
    folder has one, its tokenizer. `source` is the folder as the comment names it."""
    model = imported.model_dict()
    lines = [
        f"# Written by `llmspec import hf` from {source}/config.json ({imported.architecture}).",
        "# The weights are not read yet: finetune.base ({path: DIR, format: hf}) is not in the spec",
        "# schema yet, so until it is this spec trains the base's architecture from random weights.",
        f"name: {_yaml_scalar(name)}",
        "model:",
    ]
    for field, value, origin in imported.fields:
        lines.append(f"  {field}: {_yaml_scalar(value)}  # HF {origin}")
    lines += [
        "train:",
        f"  objective: {imported.objective}",
        f"  seq_len: {min(model['max_seq_len'], 1024)}  # at most model.max_seq_len",
    ]
    if tokenizer is not None:
        lines += [
            "data:",
            "  tokenizer:",
            f"    path: {_yaml_scalar(tokenizer)}  # the base's own tokenizer",
        ]
    return "\n".join(lines) + "\n"
