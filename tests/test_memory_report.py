"""The memory renderables: verdict wording and that every table renders."""

from rich.console import Console

from llmspec.plan.measure import MeasuredMemory
from llmspec.plan.memory import estimate_memory
from llmspec.plan.memory_report import comparison_table, memory_report, verdict
from llmspec.plan.types import Layout, ModelDims

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


def test_verdict_says_fits_or_by_how_much_it_does_not():
    est = estimate_memory(DIMS, Layout(micro_batch_size=8), "bf16")
    needed = est.total + est.overhead_bytes
    assert "fits" in verdict(est, needed + 1).plain
    assert "does not fit" in verdict(est, needed - 2**30).plain


def test_report_shows_stages_only_when_pipelined():
    single = render(memory_report(estimate_memory(DIMS, Layout(), "bf16"), 80 * 2**30))
    assert "headroom" in single and "Per pipeline stage" not in single
    piped = estimate_memory(DIMS, Layout(pipeline=4, grad_accum_steps=8), "bf16")
    text = render(memory_report(piped, 80 * 2**30))
    assert "Per pipeline stage" in text


def test_comparison_table_reports_errors():
    est = estimate_memory(DIMS, Layout(), "fp32", kernels="cpu")
    measured = MeasuredMemory(
        params=est.params, grads=est.grads, optimizer=est.optimizer,
        activations=est.activations, temporary=est.temporary, total=est.total // 2, seconds=1.0,
    )  # fmt: skip
    text = render(comparison_table(est, measured))
    assert "+100.0%" in text and "peak" in text
