"""What a fine-tuning method trains, in numbers: the `finetune:` slice of a spec.

`FinetuneDims` is the torch-free, hashable view of `spec.finetune` that the layer graph
and the memory model compute with. `adapter_params` counts exactly the parameters that
train (contract 5 `params.trainable`), following peft's conventions, which the generated
`model.py` copies (POSTTRAINING-NOTES §1.1, §1.5):

* LoRA (Hu et al. 2021): every adapted linear W (d_out × d_in) gets A (r × d_in) and
  B (d_out × r), no bias: Φ = Σ r·(d_in + d_out). K and V are n_kv·d_head wide (GQA).
* Prefix tuning (Li & Liang 2021): a key and a value prefix per layer, sized to the K/V
  width n_kv·d_head (peft PR #1901): Φ = n_vt·L·2·n_kv·d_head. With the projection
  (peft's `prefix_projection`): Embedding(n_vt, d_kv) → Linear(d_kv, h) → Tanh →
  Linear(h, 2L·d_kv), h = d_kv by default (peft `_prepare_prompt_learning_config`).
* P-tuning (Liu et al. 2021): Embedding(n_vt, d) and a prompt encoder: an MLP
  Linear(d,h) ReLU Linear(h,h) ReLU Linear(h,d), or a 2-layer bidirectional LSTM of
  hidden h followed by Linear(2h,2h) ReLU Linear(2h,d) (peft `PromptEncoder`); h = d
  by default.
* full: every base parameter.
"""

from __future__ import annotations

from dataclasses import dataclass

LSTM_LAYERS = 2  # peft PromptEncoderConfig.encoder_num_layers default


@dataclass(frozen=True)
class FinetuneDims:
    method: str  # full | lora | prefix | p_tuning
    lora_rank: int = 0
    lora_targets: tuple[str, ...] = ()
    lora_dropout: float = 0.0
    virtual_tokens: int = 0  # prefix length (prefix) or virtual input tokens (p_tuning)
    prefix_projection: bool = False
    encoder: str = "mlp"  # p_tuning: mlp | lstm
    encoder_hidden: int | None = None  # p_tuning hidden size; None = d_model

    @classmethod
    def from_spec(cls, spec) -> FinetuneDims | None:
        ft = spec.finetune
        if ft is None:
            return None
        if ft.method == "lora":
            return cls(
                method="lora",
                lora_rank=ft.lora.rank,
                lora_targets=tuple(sorted(ft.lora.targets, key=TARGET_ORDER.index)),
                lora_dropout=ft.lora.dropout,
            )
        if ft.method == "prefix":
            return cls(
                method="prefix",
                virtual_tokens=ft.prefix.tokens,
                prefix_projection=ft.prefix.projection,
            )
        if ft.method == "p_tuning":
            return cls(
                method="p_tuning",
                virtual_tokens=ft.p_tuning.tokens,
                encoder=ft.p_tuning.encoder,
                encoder_hidden=ft.p_tuning.hidden,
            )
        return cls(method="full")

    @property
    def frozen_base(self) -> bool:
        """True when the base weights do not train (every method but full)."""
        return self.method != "full"

    @property
    def extra_tokens(self) -> int:
        """Positions P-tuning prepends to every sequence (0 for the other methods)."""
        return self.virtual_tokens if self.method == "p_tuning" else 0

    @property
    def prefix_tokens(self) -> int:
        return self.virtual_tokens if self.method == "prefix" else 0


TARGET_ORDER = ("q", "k", "v", "o", "gate", "up", "down")


def linear_shape(dims, target: str) -> tuple[int, int]:
    """(d_in, d_out) of one block's linear named `target` in the generated model
    (gelu/relu MLPs name up/down fc_in/fc_out; there is no gate)."""
    h, kv, ff = dims.d_model, dims.n_kv_heads * dims.head_dim, dims.d_ff
    q = dims.n_heads * dims.head_dim
    shapes = {
        "q": (h, q),
        "k": (h, kv),
        "v": (h, kv),
        "o": (q, h),
        "gate": (h, ff),
        "up": (h, ff),
        "down": (ff, h),
    }
    return shapes[target]


def lora_scale(alpha: float, rank: int, rslora: bool) -> float:
    """ΔW = scale · B·A: alpha/r (Hu et al. 2021 §4.1), or alpha/√r with rsLoRA
    (Kalajdzievski 2023), as peft's LoraLayer.update_layer computes it."""
    return alpha / (rank**0.5 if rslora else rank)


def lora_targets(dims, ft: FinetuneDims) -> tuple[str, ...]:
    """The targets that exist in this architecture (gate only under SwiGLU)."""
    return tuple(t for t in ft.lora_targets if t != "gate" or dims.activation == "swiglu")


def lora_params_per_layer(dims, ft: FinetuneDims) -> int:
    """Σ r·(d_in + d_out) over one block's adapted linears (Hu et al. 2021, §4.1)."""
    return sum(ft.lora_rank * sum(linear_shape(dims, t)) for t in lora_targets(dims, ft))


def prefix_params(dims, ft: FinetuneDims) -> int:
    """Li & Liang 2021 prefixes, GQA-sized (peft PrefixEncoder)."""
    n, L = ft.virtual_tokens, dims.n_layers
    kv = dims.n_kv_heads * dims.head_dim
    if not ft.prefix_projection:
        return n * L * 2 * kv
    h = kv  # peft: encoder_hidden_size defaults to token_dim (= n_kv·d_head under GQA)
    return n * kv + (kv * h + h) + (h * 2 * L * kv + 2 * L * kv)


def p_tuning_params(dims, ft: FinetuneDims) -> int:
    """Virtual-token table + prompt encoder (peft PromptEncoder)."""
    d, n = dims.d_model, ft.virtual_tokens
    h = ft.encoder_hidden or d
    if ft.encoder == "mlp":
        return n * d + (d * h + h) + (h * h + h) + (h * d + d)
    # torch.nn.LSTM per layer and direction: W_ih (4h × in), W_hh (4h × h), b_ih, b_hh (4h)
    lstm = 0
    for layer in range(LSTM_LAYERS):
        width_in = d if layer == 0 else 2 * h
        lstm += 2 * (4 * h * (width_in + h) + 8 * h)
    return n * d + lstm + (2 * h * 2 * h + 2 * h) + (2 * h * d + d)


def adapter_params(dims, ft: FinetuneDims | None) -> int:
    """Parameters the method adds to the base model (0 for full fine-tuning)."""
    if ft is None or ft.method == "full":
        return 0
    if ft.method == "lora":
        return dims.n_layers * lora_params_per_layer(dims, ft)
    if ft.method == "prefix":
        return prefix_params(dims, ft)
    return p_tuning_params(dims, ft)
