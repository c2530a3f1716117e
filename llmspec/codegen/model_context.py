"""What the model templates read: `ModelContext`, every derived value and named option of model.py.

`templates/model.py.j2` and its partials under `templates/_model/` only place these values:
the rules that decide them (padded vocabulary, which layers exist, which code an option
brings) live here, computed once from the spec and the plan, and are named so a template
says `{% if model.tensor_parallel %}`, not `{% if layout.tensor > 1 %}`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from llmspec.graph.dims import ModelDims
from llmspec.graph.finetune import FinetuneDims, lora_scale, lora_targets
from llmspec.graph.recompute import block_matmuls
from llmspec.plan.types import Layout
from llmspec.rules.layout import padded_vocab
from llmspec.rules.loss import LOSS_CHUNK_TOKENS

CLASS_NAMES = {"gpt": "GPT", "llama": "Llama", "bert": "Bert"}


@dataclass(frozen=True)
class Constant:
    """One line of model.py's settings block: `NAME = value  # origin`."""

    name: str
    value: object  # plain data: the template writes it with the `py` filter
    origin: str


@dataclass(frozen=True)
class ModelContext:
    """The generated model.py of one spec under one plan: values first, then named conditions."""

    # -- settings block: the spec's values as model.py declares them
    class_name: str  # the nn.Module model.py defines: GPT | Llama | Bert
    vocab_size: int  # model.vocab_size
    padded_vocab_size: int  # vocab_size rounded up to a multiple of `tensor` (= vocab_size at 1)
    d_model: int
    n_layers: int
    n_heads: int
    kv_heads: int  # model.n_kv_heads, n_heads when unset
    head_dim: int  # d_model / n_heads
    d_ff: int  # model.d_ff, 4 × d_model when unset
    max_seq_len: int
    rope_theta: float
    type_vocab_size: int  # 0 = no token-type embedding
    norm_eps: float
    dropout: float  # probability; 0 = no dropout layers
    attention_dropout: float
    drop_path: float  # the last block's stochastic-depth rate
    label_smoothing: float  # train.label_smoothing
    mask_prob: float  # train.mask_prob (masked LM only)
    seed: int  # train.seed: initialisation
    # -- architecture options
    position: Literal["learned", "sinusoidal", "rope"]
    norm: Literal["layernorm", "rmsnorm"]
    norm_position: Literal["pre", "post"]
    activation: Literal["gelu", "relu", "swiglu"]
    bias: bool  # biases on linears and LayerNorms
    tied: bool  # model.tie_embeddings: the token embedding is the output projection
    causal: bool  # attends to earlier positions only (gpt, llama); bert is bidirectional
    masked_lm: bool  # train.objective == masked_lm
    fp8: bool  # train.precision == fp8: the block linears multiply in FP8 (_model/fp8.py.j2)
    # -- plan: the layout model.py is cut for
    tensor: int  # layout.tensor
    pipeline: int  # layout.pipeline
    sequence_parallel: bool  # layout.sequence_parallel, only ever with tensor > 1
    recompute: Literal["none", "selective", "ops", "full"]  # layout.activation_checkpointing
    ops_kept: tuple[str, ...]  # under ops: the matmuls the policy keeps (llmspec.graph.recompute)
    zero_stage: int  # layout.zero_stage: 3 builds the model inside deepspeed.zero.Init
    blocks_per_stage: tuple[int, ...]  # plan.memory.stages[*].layers; () without pipeline
    # -- generation (generate.py): a key/value cache, when the spec evaluates or runs PPO rollouts
    kv_cache: bool = False
    # -- fine-tuning (finetune.method lora): LoRA adapters on these linears of every block
    lora_targets: tuple[str, ...] = ()  # among q k v o gate up down (model.py's names below)
    lora_rank: int = 0
    lora_alpha: float = 0.0
    lora_dropout: float = 0.0
    rslora: bool = False
    # -- fine-tuning (finetune.method p_tuning): virtual input tokens from a prompt encoder
    virtual_tokens: int = 0
    prompt_encoder: str = ""  # mlp | lstm; "" = no P-tuning
    prompt_hidden: int = 0
    # -- fine-tuning (finetune.method prefix): learned keys and values in front of every layer's
    prefix_tokens: int = 0
    prefix_projection: bool = False
    # -- objective reward: a scalar score read at each sequence's last labelled token
    reward_head: bool = False
    # -- objective ppo: the same head read at every position (the critic's values); the
    # reward model it loads has the head too
    value_head: bool = False
    # -- objective dpo: the reference is the policy with its adapters switched off
    switchable_adapters: bool = False

    # -- the settings block
    @property
    def spec_constants(self) -> tuple[Constant, ...]:
        """The constants model.py takes from the spec, in order; an option's only when it is on."""
        constants = [Constant("VOCAB_SIZE", self.vocab_size, "model.vocab_size")]
        if self.tensor_parallel:
            constants.append(
                Constant(
                    "PADDED_VOCAB_SIZE",
                    self.padded_vocab_size,
                    "vocab_size rounded up to a multiple of parallel.tensor",
                )
            )
        gqa_note = " (grouped-query attention)" if self.grouped_query else ""
        constants += [
            Constant("D_MODEL", self.d_model, "model.d_model"),
            Constant("N_LAYERS", self.n_layers, "model.n_layers"),
            Constant("N_HEADS", self.n_heads, "model.n_heads"),
            Constant("N_KV_HEADS", self.kv_heads, f"model.n_kv_heads{gqa_note}"),
            Constant("HEAD_DIM", self.head_dim, "d_model / n_heads"),
            Constant("D_FF", self.d_ff, "model.d_ff"),
        ]
        if self.uses_rope:
            constants.append(Constant("ROPE_THETA", self.rope_theta, "model.rope_theta"))
        else:
            constants.append(
                Constant(
                    "MAX_SEQ_LEN", self.max_seq_len, "model.max_seq_len: rows of the position table"
                )
            )
        if self.type_embedding:
            constants.append(
                Constant("TYPE_VOCAB_SIZE", self.type_vocab_size, "model.type_vocab_size")
            )
        constants.append(Constant("NORM_EPS", self.norm_eps, "model.norm_eps"))
        if self.uses_dropout:
            constants.append(Constant("DROPOUT", self.dropout, "model.dropout"))
        if self.uses_attention_dropout:
            constants.append(
                Constant("ATTENTION_DROPOUT", self.attention_dropout, "model.attention_dropout")
            )
        if self.uses_drop_path:
            constants.append(
                Constant(
                    "DROP_PATH",
                    self.drop_path,
                    "model.drop_path: the last block's rate, 0 for the first",
                )
            )
        if self.uses_label_smoothing:
            constants.append(
                Constant("LABEL_SMOOTHING", self.label_smoothing, "train.label_smoothing")
            )
        if self.masked_lm:
            constants += [
                Constant("MASK_PROB", self.mask_prob, "train.mask_prob"),
                Constant(
                    "FIRST_ORDINARY_TOKEN",
                    4,
                    "0-3 are <pad> <eos> <unk> <mask>: never random replacements",
                ),
            ]
        if not self.tensor_parallel:
            constants.append(
                Constant(
                    "LOSS_CHUNK_TOKENS",
                    LOSS_CHUNK_TOKENS,
                    "llmspec: tokens per chunk of the loss (fp32 working set: chunk x vocab)",
                )
            )
        constants.append(Constant("SEED", self.seed, "train.seed: initialisation"))
        if self.lora:
            constants += [
                Constant("LORA_RANK", self.lora_rank, "finetune.lora.rank"),
                Constant("LORA_SCALE", self.lora_scale, self.lora_scale_origin),
            ]
            if self.uses_lora_dropout:
                constants.append(
                    Constant("LORA_DROPOUT", self.lora_dropout, "finetune.lora.dropout")
                )
        if self.prefix_tuning:
            constants.append(
                Constant("N_PREFIX_TOKENS", self.prefix_tokens, "finetune.prefix.tokens")
            )
        if self.p_tuning:
            constants += [
                Constant("N_VIRTUAL_TOKENS", self.virtual_tokens, "finetune.p_tuning.tokens"),
                Constant(
                    "PROMPT_HIDDEN", self.prompt_hidden, "finetune.p_tuning.hidden (null: d_model)"
                ),
            ]
        return tuple(constants)

    @property
    def layout_constants(self) -> tuple[Constant, ...]:
        """The constants model.py takes from the plan (none without model parallelism)."""
        constants = []
        if self.tensor_parallel:
            sp_note = ", sequence parallel" if self.sequence_parallel else ""
            constants.append(
                Constant("TENSOR_PARALLEL", self.tensor, f"plan: layout.tensor{sp_note}")
            )
        if self.pipeline_parallel:
            constants += [
                Constant("PIPELINE_STAGES", self.pipeline, "plan: layout.pipeline"),
                Constant(
                    "BLOCKS_PER_STAGE",
                    list(self.blocks_per_stage),
                    "plan: memory.stages[*].layers",
                ),
            ]
        return tuple(constants)

    # -- parallel layout
    @property
    def tensor_parallel(self) -> bool:
        return self.tensor > 1

    @property
    def pipeline_parallel(self) -> bool:
        return self.pipeline > 1

    @property
    def sharded_build(self) -> bool:
        """ZeRO-3: train.py builds the model inside `deepspeed.zero.Init`, which partitions each
        module's parameters as its __init__ returns and makes torch's float constructors
        (torch.empty, zeros, arange, randn, ...) return the training dtype
        (deepspeed/runtime/zero/partition_parameters.py). The init code must not round twice."""
        return self.zero_stage == 3

    @property
    def distributed(self) -> bool:
        """Needs torch.distributed, and build_model takes an mpu / grid."""
        return self.tensor_parallel or self.pipeline_parallel

    @property
    def column_linear(self) -> str:
        """The class of the linears that open a tensor-parallel region (q, k, v, MLP in)."""
        return "ColumnParallelLinear" if self.tensor_parallel else "Linear"

    @property
    def row_linear(self) -> str:
        """The class of the linears that close it (attention output, MLP out)."""
        return "RowParallelLinear" if self.tensor_parallel else "Linear"

    def linear_for(self, target: str) -> str:
        """The class of one block's linear `target` (q k v o gate up down): LoRALinear when the
        spec adapts it, else the layout's column- or row-parallel linear."""
        if target in self.lora_targets:
            return "LoRALinear"
        return self.row_linear if target in ("o", "down") else self.column_linear

    # -- fine-tuning
    @property
    def lora(self) -> bool:
        return bool(self.lora_targets)

    @property
    def p_tuning(self) -> bool:
        return bool(self.prompt_encoder)

    @property
    def prefix_tuning(self) -> bool:
        return self.prefix_tokens > 0

    @property
    def frozen_base(self) -> bool:
        """The base does not train (LoRA, prefix tuning, P-tuning): model.py says what does."""
        return self.lora or self.p_tuning or self.prefix_tuning

    @property
    def adapter_kind(self) -> str:
        """What trains, for docstrings."""
        if self.lora:
            return "LoRA adapters"
        return "prefixes" if self.prefix_tuning else "prompt encoder"

    @property
    def adapter_prefix(self) -> str:
        """The parameter-name prefix of what trains under prefix tuning or P-tuning."""
        return "prefix." if self.prefix_tuning else "prompt_encoder."

    @property
    def uses_lora_dropout(self) -> bool:
        return self.lora and self.lora_dropout > 0

    @property
    def lora_scale(self) -> float:
        return lora_scale(self.lora_alpha, self.lora_rank, self.rslora)

    @property
    def lora_scale_origin(self) -> str:
        root = "√" if self.rslora else ""
        return f"finetune.lora.alpha / {root}rank ({self.lora_alpha:g} / {root}{self.lora_rank})"

    # -- precision
    @property
    def block_matmul(self) -> str:
        """The function a block linear multiplies with: FP8 (fp8.py.j2) or 16-bit."""
        return "fp8_linear" if self.fp8 else "F.linear"

    # -- recompute
    @property
    def recompute_full(self) -> bool:
        return self.recompute == "full"

    @property
    def recompute_selective(self) -> bool:
        return self.recompute == "selective"

    @property
    def recompute_ops(self) -> bool:
        """Per-op selective: each block under a policy that keeps its attention outputs and
        every other matmul output (llmspec.graph.recompute)."""
        return self.recompute == "ops"

    @property
    def recompute_block(self) -> bool:
        """The whole block runs inside one checkpoint (full, or ops under its policy)."""
        return self.recompute in ("full", "ops")

    @property
    def uses_checkpoint(self) -> bool:
        return self.recompute != "none"

    # -- attention, MLP, norms
    @property
    def grouped_query(self) -> bool:
        return self.kv_heads < self.n_heads

    @property
    def uses_attention_dropout(self) -> bool:
        return self.attention_dropout > 0

    @property
    def swiglu(self) -> bool:
        return self.activation == "swiglu"

    @property
    def activation_summary(self) -> str:
        """The MLP activation as model.py computes it, for its docstring."""
        return {
            "gelu": 'F.gelu(x, approximate="tanh")',
            "relu": "F.relu",
            "swiglu": "SwiGLU = F.silu(gate) * up",
        }[self.activation]

    @property
    def activation_function(self) -> bool:
        """model.py defines `activation()`: SwiGLU's two inputs, or the region selective
        recompute checkpoints."""
        return self.swiglu or self.recompute_selective

    @property
    def layer_norm(self) -> bool:
        """LayerNorm; else RMSNorm."""
        return self.norm == "layernorm"

    @property
    def norm_function(self) -> str:
        return "F.layer_norm" if self.layer_norm else "F.rms_norm"

    @property
    def norm_bias(self) -> bool:
        """RMSNorm has a weight only."""
        return self.layer_norm and self.bias

    @property
    def post_norm(self) -> bool:
        return self.norm_position == "post"

    # -- residual branches
    @property
    def uses_dropout(self) -> bool:
        return self.dropout > 0

    @property
    def uses_drop_path(self) -> bool:
        return self.drop_path > 0

    def residual_branch(self, branch: str) -> str:
        """`branch` (code) wrapped in the drop path and dropout the block applies to it."""
        if self.uses_dropout:
            branch = f"self.dropout({branch})"
        if self.uses_drop_path:
            branch = f"self.drop_path({branch})"
        return branch

    def replicated(self, param: str) -> str:
        """`param` (code) as the sequence-parallel code applies it: its gradient is summed over
        the tensor-parallel ranks, since each rank applies it to its own sequence shard."""
        return f"replicated({param})" if self.sequence_parallel else param

    # -- embeddings
    @property
    def learned_positions(self) -> bool:
        return self.position == "learned"

    @property
    def sinusoidal_positions(self) -> bool:
        return self.position == "sinusoidal"

    @property
    def uses_rope(self) -> bool:
        return self.position == "rope"

    @property
    def type_embedding(self) -> bool:
        return self.type_vocab_size > 0

    @property
    def indexes_positions(self) -> bool:
        """The input encoding adds rows picked by position (a position table, token types)."""
        return not self.uses_rope or self.type_embedding

    @property
    def cached_positions(self) -> bool:
        """Generation with the KV cache indexes the position table from the cached length."""
        return self.kv_cache and self.indexes_positions

    @property
    def input_encoding(self) -> bool:
        """An `InputEncoding` layer follows the token embedding: positions, token types,
        the post-norm embedding norm or the embedding dropout."""
        return self.indexes_positions or self.post_norm or self.uses_dropout

    @property
    def input_encoding_parts(self) -> str:
        """What InputEncoding does, for its docstring."""
        parts = [
            {
                "learned": "learned positions",
                "sinusoidal": "sinusoidal positions",
                "rope": "no positions (RoPE acts in attention)",
            }[self.position]
        ]
        if self.type_embedding:
            parts.append("token types")
        if self.post_norm:
            parts.append("norm")
        if self.uses_dropout:
            parts.append("dropout")
        return ", ".join(parts)

    @property
    def layers_before_blocks(self) -> int:
        """Pipeline layers ahead of block 0: the token embedding, then the input encoding."""
        return 2 if self.input_encoding else 1

    # -- output side
    @property
    def final_norm(self) -> bool:
        """A norm after the last block (pre-norm); post-norm models normalise the embeddings."""
        return not self.post_norm

    @property
    def output_head(self) -> bool:
        """An `OutputHead` layer after the blocks: the final norm and/or the MLM transform."""
        return self.final_norm or self.masked_lm

    @property
    def output_head_summary(self) -> str:
        """What OutputHead does, for its docstring."""
        parts = []
        if self.final_norm:
            parts.append("The final norm")
        if self.masked_lm:
            parts.append("BERT's masked-LM transform: dense → GELU → norm")
        return ", then ".join(parts)

    @property
    def decoder_bias(self) -> bool:
        """The masked-LM decoder adds a bias per vocabulary entry (`LogitsBias`)."""
        return self.masked_lm and self.bias

    @property
    def uses_label_smoothing(self) -> bool:
        return self.label_smoothing > 0


def model_context(spec, layout: Layout, stage_layers: tuple[int, ...]) -> ModelContext:
    """The model context of `spec` under `layout`, pipeline stages holding `stage_layers`
    transformer blocks each."""
    m, train = spec.model, spec.train
    tensor, pipeline = layout.tensor, layout.pipeline
    return ModelContext(
        class_name=CLASS_NAMES[m.arch],
        vocab_size=m.vocab_size,
        padded_vocab_size=padded_vocab(m.vocab_size, tensor),
        d_model=m.d_model,
        n_layers=m.n_layers,
        n_heads=m.n_heads,
        kv_heads=m.kv_heads,
        head_dim=m.head_dim,
        d_ff=m.ff_dim,
        max_seq_len=m.max_seq_len,
        rope_theta=m.rope_theta,
        type_vocab_size=m.type_vocab_size,
        norm_eps=m.norm_eps,
        dropout=m.dropout,
        attention_dropout=m.attention_dropout,
        drop_path=m.drop_path,
        label_smoothing=train.label_smoothing,
        mask_prob=train.mask_prob,
        seed=train.seed,
        position=m.position,
        norm=m.norm,
        norm_position=m.norm_position,
        activation=m.activation,
        bias=m.bias,
        tied=m.tie_embeddings,
        causal=m.arch != "bert",
        masked_lm=train.objective == "masked_lm",
        fp8=train.precision == "fp8",
        tensor=tensor,
        pipeline=pipeline,
        sequence_parallel=tensor > 1 and layout.sequence_parallel,
        recompute=layout.activation_checkpointing,
        ops_kept=_ops_kept(spec) if layout.activation_checkpointing == "ops" else (),
        zero_stage=layout.zero_stage,
        blocks_per_stage=tuple(stage_layers) if pipeline > 1 else (),
        # prefix tuning's prefixes are a key/value cache of N_PREFIX_TOKENS positions
        kv_cache=generates(spec, layout) or _method(spec) == "prefix",
        reward_head=train.objective in ("reward", "ppo"),
        value_head=train.objective == "ppo",
        switchable_adapters=train.objective == "dpo",
        **_finetune_fields(spec),
    )


def _ops_kept(spec) -> tuple[str, ...]:
    """The kept matmuls by the names model.py gives its linears (fc_in / fc_out without a gate)."""
    plain = {"up": "fc_in", "down": "fc_out"} if spec.model.activation != "swiglu" else {}
    names = []
    for m in block_matmuls(ModelDims.from_spec(spec)):
        if m.kept:
            base, _, adapter = m.name.partition(".")
            names.append(plain.get(base, base) + (f".{adapter}" if adapter else ""))
    return tuple(names)


def _method(spec) -> str | None:
    return spec.finetune.method if spec.finetune is not None else None


def _finetune_fields(spec) -> dict:
    """The fine-tuning fields of the context: LoRA's or P-tuning's, none for full fine-tuning
    or pretraining. LoRA targets the architecture lacks (gate without SwiGLU) are dropped, as
    the parameter count drops them."""
    ft = FinetuneDims.from_spec(spec)
    if ft is not None and ft.method == "prefix":
        return {
            "prefix_tokens": ft.virtual_tokens,
            "prefix_projection": ft.prefix_projection,
        }
    if ft is not None and ft.method == "p_tuning":
        return {
            "virtual_tokens": ft.virtual_tokens,
            "prompt_encoder": ft.encoder,
            "prompt_hidden": ft.encoder_hidden or spec.model.d_model,
        }
    if ft is None or ft.method != "lora":
        return {}
    lora = spec.finetune.lora
    return {
        "lora_targets": lora_targets(spec.model, ft),
        "lora_rank": lora.rank,
        "lora_alpha": lora.alpha,
        "lora_dropout": lora.dropout,
        "rslora": lora.rslora,
    }


def generates(spec, layout: Layout) -> bool:
    """Whether the project gets generate.py and model.py a key/value cache: the spec has `eval:`
    or trains with PPO (rollouts), the model is causal, and one process holds all of it (no
    tensor or pipeline split: generation runs outside the DeepSpeed engine)."""
    wants = spec.eval is not None or spec.train.objective == "ppo"
    return wants and spec.model.arch != "bert" and layout.tensor == 1 and layout.pipeline == 1
