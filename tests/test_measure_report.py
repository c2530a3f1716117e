"""`llmspec plan --measure`'s predicted-vs-measured table."""

from rich.console import Console

from llmspec.cli.plan_report import comparison_table
from llmspec.graph.dims import ModelDims
from llmspec.plan.memory import estimate_memory
from llmspec.plan.types import Layout
from llmspec.verify.measure import MeasuredMemory

DIMS = ModelDims(
    arch="gpt", vocab_size=50257, d_model=768, n_layers=12, n_heads=12, n_kv_heads=12,
    d_ff=3072, max_seq_len=1024, seq_len=1024, position="learned", norm="layernorm",
    activation="gelu", bias=True, tie_embeddings=True, type_vocab_size=0, dropout=0.0,
    attention_dropout=0.0, drop_path=0.0, objective="causal_lm",
)  # fmt: skip


def render(renderable) -> str:
    console = Console(width=140, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_comparison_table_reports_errors():
    est = estimate_memory(DIMS, Layout(), "fp32", kernels="cpu")
    measured = MeasuredMemory(
        params=est.params, grads=est.grads, optimizer=est.optimizer,
        activations=est.activations, temporary=est.temporary, total=est.total // 2, seconds=1.0,
    )  # fmt: skip
    text = render(comparison_table(est, measured))
    assert "+100.0%" in text and "peak" in text
