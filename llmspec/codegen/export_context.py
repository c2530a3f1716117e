"""What `templates/export.py.j2` reads: `ExportContext`, the Hugging Face side of a spec's model.

The HF family, its `config.json` and the name of every HF tensor in terms of model.py's
parameters are decided here, once, from the spec and the plan; the templates only place
them. The config fields come from `llmspec.spec.hf_config` (the same table `llmspec import
hf` reads configs with), so an exported folder imports back to the spec it came from.
"""

from __future__ import annotations

from dataclasses import dataclass

from llmspec.graph.finetune import lora_scale
from llmspec.plan.types import Layout
from llmspec.spec.hf_config import FAMILIES, FIELDS, MODEL_TYPE, export_problem, hf_config

AUTO_CLASS = {"gpt": "AutoModelForCausalLM", "llama": "AutoModelForCausalLM",
              "bert": "AutoModelForMaskedLM"}  # fmt: skip


@dataclass(frozen=True)
class HfName:
    """One HF tensor: model.py's parameters joined along dim 0, then transposed if `transposed`
    (GPT-2's Conv1D stores [in, out]); `vocab_rows`: cut back to VOCAB_SIZE rows."""

    hf: str  # "{i}" = the block index in per-layer names
    ours: tuple[str, ...]
    transposed: bool = False
    vocab_rows: bool = False


def _gpt2_names(tied: bool) -> tuple[tuple[HfName, ...], tuple[HfName, ...]]:
    top = [
        HfName("transformer.wte.weight", ("tok_emb.weight",), vocab_rows=True),
        HfName("transformer.wpe.weight", ("input_encoding.pos_emb",)),
        HfName("transformer.ln_f.weight", ("head.norm.weight",)),
        HfName("transformer.ln_f.bias", ("head.norm.bias",)),
    ]
    if not tied:
        top.append(HfName("lm_head.weight", ("lm_head.weight",), vocab_rows=True))
    h, b = "transformer.h.{i}.", "blocks.{i}."
    qkv = ("attn.q", "attn.k", "attn.v")
    layer = [
        HfName(h + "ln_1.weight", (b + "attn_norm.weight",)),
        HfName(h + "ln_1.bias", (b + "attn_norm.bias",)),
        HfName(h + "attn.c_attn.weight", tuple(f"{b}{n}.weight" for n in qkv), transposed=True),
        HfName(h + "attn.c_attn.bias", tuple(f"{b}{n}.bias" for n in qkv)),
        HfName(h + "attn.c_proj.weight", (b + "attn.o.weight",), transposed=True),
        HfName(h + "attn.c_proj.bias", (b + "attn.o.bias",)),
        HfName(h + "ln_2.weight", (b + "mlp_norm.weight",)),
        HfName(h + "ln_2.bias", (b + "mlp_norm.bias",)),
        HfName(h + "mlp.c_fc.weight", (b + "mlp.fc_in.weight",), transposed=True),
        HfName(h + "mlp.c_fc.bias", (b + "mlp.fc_in.bias",)),
        HfName(h + "mlp.c_proj.weight", (b + "mlp.fc_out.weight",), transposed=True),
        HfName(h + "mlp.c_proj.bias", (b + "mlp.fc_out.bias",)),
    ]
    return tuple(top), tuple(layer)


def _llama_names(tied: bool) -> tuple[tuple[HfName, ...], tuple[HfName, ...]]:
    top = [
        HfName("model.embed_tokens.weight", ("tok_emb.weight",), vocab_rows=True),
        HfName("model.norm.weight", ("head.norm.weight",)),
    ]
    if not tied:
        top.append(HfName("lm_head.weight", ("lm_head.weight",), vocab_rows=True))
    h, b = "model.layers.{i}.", "blocks.{i}."
    pairs = [
        ("input_layernorm", "attn_norm"), ("post_attention_layernorm", "mlp_norm"),
        ("self_attn.q_proj", "attn.q"), ("self_attn.k_proj", "attn.k"),
        ("self_attn.v_proj", "attn.v"), ("self_attn.o_proj", "attn.o"),
        ("mlp.gate_proj", "mlp.gate"), ("mlp.up_proj", "mlp.up"), ("mlp.down_proj", "mlp.down"),
    ]  # fmt: skip
    layer = [HfName(f"{h}{hf}.weight", (f"{b}{ours}.weight",)) for hf, ours in pairs]
    return tuple(top), tuple(layer)


def _bert_names() -> tuple[tuple[HfName, ...], tuple[HfName, ...]]:
    e, t = "bert.embeddings.", "cls.predictions.transform."
    top = [
        HfName(e + "word_embeddings.weight", ("tok_emb.weight",), vocab_rows=True),
        HfName(e + "position_embeddings.weight", ("input_encoding.pos_emb",)),
        HfName(e + "token_type_embeddings.weight", ("input_encoding.type_emb",)),
        HfName(e + "LayerNorm.weight", ("input_encoding.norm.weight",)),
        HfName(e + "LayerNorm.bias", ("input_encoding.norm.bias",)),
        HfName(t + "dense.weight", ("head.dense.weight",)),
        HfName(t + "dense.bias", ("head.dense.bias",)),
        HfName(t + "LayerNorm.weight", ("head.mlm_norm.weight",)),
        HfName(t + "LayerNorm.bias", ("head.mlm_norm.bias",)),
        HfName("cls.predictions.bias", ("logits_bias.bias",), vocab_rows=True),
    ]
    h, b = "bert.encoder.layer.{i}.", "blocks.{i}."
    pairs = [
        ("attention.self.query", "attn.q"), ("attention.self.key", "attn.k"),
        ("attention.self.value", "attn.v"), ("attention.output.dense", "attn.o"),
        ("attention.output.LayerNorm", "attn_norm"), ("intermediate.dense", "mlp.fc_in"),
        ("output.dense", "mlp.fc_out"), ("output.LayerNorm", "mlp_norm"),
    ]  # fmt: skip
    layer = [
        HfName(f"{h}{hf}.{kind}", (f"{b}{ours}.{kind}",)) for hf, ours in pairs for kind in ("weight", "bias")
    ]  # fmt: skip
    return tuple(top), tuple(layer)


# model.py's tensor-parallel parameters and the dim it splits them on (parallel_linear.py.j2,
# embedding.py.j2, lm_head.py.j2, logits_bias.py.j2); every other parameter is replicated.
COLUMN = ("attn.q", "attn.k", "attn.v", "mlp.fc_in", "mlp.gate", "mlp.up")  # output features
ROW = ("attn.o", "mlp.fc_out", "mlp.down")  # input features (their bias is replicated)
VOCAB_SPLIT = ("tok_emb.weight", "lm_head.weight", "logits_bias.bias")  # vocabulary rows


def shard_dim(name: str) -> int | None:
    """The dim model.py splits parameter `name` on under tensor parallel; None = replicated."""
    if name in VOCAB_SPLIT:
        return 0
    module, _, kind = name.removeprefix("blocks.{i}.").rpartition(".")
    if module in COLUMN:
        return 0
    if module in ROW and kind == "weight":
        return 1
    return None


@dataclass(frozen=True)
class ExportContext:
    """export.py of one spec under one plan."""

    problem: str | None  # why this project cannot export yet; None = it can
    arch: str  # gpt | llama | bert
    model_type: str  # HF model_type: gpt2 | llama | bert
    hf_class: str  # GPT2LMHeadModel | LlamaForCausalLM | BertForMaskedLM
    auto_class: str  # the transformers Auto class that loads the folder
    config: dict  # config.json, less the token ids export.py reads from the manifest
    names: tuple[HfName, ...]  # once per model
    layer_names: tuple[HfName, ...]  # once per block, "{i}" in both names
    zero_stage: int  # layout.zero_stage: 0 reads the module weights, ≥ 1 gathers the fp32 copy
    tensor: int  # layout.tensor: the checkpoint holds one shard per tensor-parallel rank
    vocab_size: int
    n_layers: int
    max_seq_len: int
    lora_scale: float | None = None  # finetune.method lora: export folds B·A into W first
    lora_scale_origin: str = ""

    @property
    def config_items(self) -> tuple[tuple[str, object, str], ...]:
        """config.json's (key, value, origin): the spec field it holds, or the family's."""
        fields = {f.hf: f.spec for f in FIELDS[self.model_type]}
        fields.update(embd_pdrop="dropout", head_dim="d_model / n_heads")
        items = []
        for key, value in self.config.items():
            if key in fields:
                origin = f"spec: model.{fields[key]}"
            elif key == "rope_parameters":
                origin = "spec: model.rope_theta"
            elif key in ("activation_function", "hidden_act"):
                origin = "spec: model.activation"
            elif key in ("architectures", "model_type"):
                origin = f"spec: model.arch {self.arch}"
            elif key == "dtype":
                origin = "model.safetensors holds fp32 tensors"
            else:
                origin = self.hf_class
            items.append((key, value, origin))
        return tuple(items)

    @property
    def transposed(self) -> tuple[str, ...]:
        return tuple(n.hf for n in self.names + self.layer_names if n.transposed)

    @property
    def vocab_rows(self) -> tuple[str, ...]:
        return tuple(n.hf for n in self.names + self.layer_names if n.vocab_rows)

    @property
    def gathers_zero(self) -> bool:
        return self.zero_stage >= 1

    @property
    def tensor_parallel(self) -> bool:
        return self.tensor > 1

    @property
    def shard_dims(self) -> tuple[tuple[str, int], ...]:
        """(model.py parameter, split dim) of every tensor-parallel parameter, "{i}" per block."""
        names = [n for entry in self.names + self.layer_names for n in entry.ours]
        return tuple((n, shard_dim(n)) for n in names if shard_dim(n) is not None)


def layout_problem(layout: Layout) -> str | None:
    if layout.pipeline > 1:
        return (
            f"parallel.pipeline {layout.pipeline}: export.py does not read pipeline checkpoints "
            "(layer_*-model_states.pt) yet; train with parallel.pipeline 1 to export"
        )
    return None


def export_context(spec, layout: Layout) -> ExportContext:
    m = spec.model
    model_type = MODEL_TYPE[m.arch]
    problem = export_problem(m) or layout_problem(layout)
    if m.arch == "bert" and spec.train.objective != "masked_lm":
        problem = (
            problem or "train.objective: bert exports as BertForMaskedLM, which needs masked_lm"
        )
    if spec.finetune is not None and spec.finetune.method in ("p_tuning", "prefix"):
        problem = problem or (
            f"finetune.method {spec.finetune.method}: a Hugging Face model has no place for "
            "what it trained (virtual tokens); the trained tensors are in out/adapters/"
        )
    if m.arch != "bert" and spec.train.objective not in ("causal_lm", "sft"):
        problem = (
            problem or f"train.objective: {spec.train.objective} has no causal-LM head to export"
        )
    if m.arch == "gpt":
        names, layer_names = _gpt2_names(m.tie_embeddings)
    elif m.arch == "llama":
        names, layer_names = _llama_names(m.tie_embeddings)
    else:
        names, layer_names = _bert_names()
    config = hf_config(m) if problem is None else {}
    if model_type == "llama" and config:
        config["rope_parameters"] = {"rope_type": "default", "rope_theta": m.rope_theta}
    if config:
        config["dtype"] = "float32"
    return ExportContext(
        problem=problem,
        arch=m.arch,
        model_type=model_type,
        hf_class=FAMILIES[model_type][1],
        auto_class=AUTO_CLASS[m.arch],
        config=config,
        names=names,
        layer_names=layer_names,
        zero_stage=layout.zero_stage,
        tensor=layout.tensor,
        vocab_size=m.vocab_size,
        n_layers=m.n_layers,
        max_seq_len=m.max_seq_len,
        **_lora(spec),
    )


def _lora(spec) -> dict:
    ft = spec.finetune
    if ft is None or ft.method != "lora":
        return {}
    lora = ft.lora
    root = "√" if lora.rslora else ""
    return {
        "lora_scale": lora_scale(lora.alpha, lora.rank, lora.rslora),
        "lora_scale_origin": f"spec: finetune.lora.alpha / {root}rank",
    }
