"""The generated chunked cross-entropy (llmspec/rules/loss.py) equals the plain loss.

model.py computes the loss LOSS_CHUNK_TOKENS tokens at a time and writes the gradient of the
logits in forward. On the tiny models, with chunks small enough that the last one is ragged,
its loss and every parameter gradient must equal those of F.cross_entropy on the full logits.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from model_harness.specs import plan_for, tiny_spec

from llmspec.codegen.model_code import load_model_module, render_model_py

CASES = {
    "gpt": ("gpt", {}),
    "gpt-label-smoothing": ("gpt", {"label_smoothing": 0.1}),
    "llama": ("llama", {}),
    "bert-masked": ("bert", {}),
}


def plain_loss(logits, labels, smoothing: float, causal: bool):
    if causal:
        labels = F.pad(labels[:, 1:], (0, 1), value=-100)
    return F.cross_entropy(
        logits.float().view(-1, logits.shape[-1]),
        labels.reshape(-1),
        ignore_index=-100,
        label_smoothing=smoothing,
    )


@pytest.mark.parametrize("name", list(CASES))
def test_chunked_loss_equals_the_plain_loss(name: str):
    family, train = CASES[name]
    spec = tiny_spec(family, dropout=0.0, attention_dropout=0.0, train=train)
    source = render_model_py(spec, *plan_for(spec))
    assert "_ChunkedCrossEntropy" in source
    module = load_model_module(source, name=f"loss_{name}")
    module.LOSS_CHUNK_TOKENS = 7  # 2 × 16 tokens: chunks of 7, 7, 7, 7, 4
    model = module.build_model()
    generator = torch.Generator().manual_seed(3)
    ids = torch.randint(0, spec.model.vocab_size, (2, 16), generator=generator)
    labels = ids if family != "bert" else ids.masked_fill(torch.arange(16) % 3 != 0, -100)

    loss = model(ids, labels)
    loss.backward()
    chunked = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    reference = plain_loss(model(ids), labels, spec.train.label_smoothing, causal=family != "bert")
    reference.backward()

    assert abs(loss.item() - reference.item()) <= 1e-6
    for n, p in model.named_parameters():
        scale = p.grad.abs().max().item()
        assert (chunked[n] - p.grad).abs().max().item() <= 1e-6 * scale + 1e-9, n
