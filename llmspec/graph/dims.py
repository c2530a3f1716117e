"""`ModelDims`: the slice of a spec that the layer graph and the planner compute with.

Small, frozen and torch-free, so the search can evaluate tens of thousands of
layouts without touching pydantic.
"""

from __future__ import annotations

from dataclasses import dataclass

from llmspec.graph.finetune import FinetuneDims


@dataclass(frozen=True)
class ModelDims:
    """Everything about the architecture and the objective that costs memory or FLOPs."""

    arch: str  # gpt | llama | bert
    vocab_size: int
    d_model: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_ff: int
    max_seq_len: int
    seq_len: int
    position: str  # learned | sinusoidal | rope
    norm: str  # layernorm | rmsnorm
    activation: str  # gelu | relu | swiglu
    bias: bool
    tie_embeddings: bool
    type_vocab_size: int
    dropout: float
    attention_dropout: float
    drop_path: float
    objective: str  # causal_lm | masked_lm
    label_smoothing: float = 0.0
    norm_position: str = "pre"  # pre | post: where the one norm outside the blocks sits
    finetune: FinetuneDims | None = None  # None = pretraining: every weight trains
    # PPO's actor update (planner objective "policy"): log-probs of the last response_len
    # positions only
    response_len: int = 0

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @classmethod
    def from_spec(cls, spec) -> ModelDims:  # spec: llmspec.spec.schema.Spec
        m, t = spec.model, spec.train
        return cls(
            arch=m.arch,
            vocab_size=m.vocab_size,
            d_model=m.d_model,
            n_layers=m.n_layers,
            n_heads=m.n_heads,
            n_kv_heads=m.kv_heads,
            d_ff=m.ff_dim,
            max_seq_len=m.max_seq_len,
            seq_len=t.seq_len,
            position=m.position,
            norm=m.norm,
            activation=m.activation,
            bias=m.bias,
            tie_embeddings=m.tie_embeddings,
            type_vocab_size=m.type_vocab_size,
            dropout=m.dropout,
            attention_dropout=m.attention_dropout,
            drop_path=m.drop_path,
            objective=t.objective,
            label_smoothing=t.label_smoothing,
            norm_position=m.norm_position,
            finetune=FinetuneDims.from_spec(spec),
        )
