"""Every supported combination of options renders a model.py that is formatted, lint-clean,
deterministic, carries only the code its options use, and (single process) trains a step."""

from __future__ import annotations

import random
import subprocess
import sys
from functools import cache

import pytest
import torch
from model_harness.specs import plan_for, tiny_spec

from llmspec.codegen.model_code import load_model_module, render_model_py

MODEL_AXES = {
    "position": ["learned", "sinusoidal", "rope"],
    "norm": ["layernorm", "rmsnorm"],
    "norm_position": ["pre", "post"],
    "activation": ["gelu", "relu", "swiglu"],
    "n_kv_heads": [4, 2, 1],
    "tie_embeddings": [True, False],
    "bias": [True, False],
    "dropout": [0.0, 0.1],
    "attention_dropout": [0.0, 0.1],
    "drop_path": [0.0, 0.1],
    "type_vocab_size": [0, 2],
}
LAYOUT_AXES = {
    "tensor": [1, 2],
    "sequence_parallel": [False, True],
    "pipeline": [1, 2],
    "activation_checkpointing": ["none", "selective", "full"],
}
FAMILY = ["gpt", "llama", "bert"]
SMOOTHING = [0.0, 0.1]


def combinations(n_random: int = 24) -> list[tuple[str, dict, dict, float]]:
    """Each value of every axis at least once, then a fixed random sample of mixtures."""
    rng = random.Random(0)
    combos = []
    axes = [("model", k, v) for k, v in MODEL_AXES.items()]
    axes += [("layout", k, v) for k, v in LAYOUT_AXES.items()]
    for where, key, values in axes:
        for value in values:
            model, layout = {}, {"tensor": 2} if key == "sequence_parallel" else {}
            (model if where == "model" else layout)[key] = value
            combos.append((rng.choice(FAMILY), model, layout, rng.choice(SMOOTHING)))
    for _ in range(n_random):
        model = {k: rng.choice(v) for k, v in MODEL_AXES.items()}
        layout = {k: rng.choice(v) for k, v in LAYOUT_AXES.items()}
        if layout["tensor"] == 2 and model["n_kv_heads"] == 1:
            model["n_kv_heads"] = 2  # tensor parallel splits whole key/value heads
        combos.append((rng.choice(FAMILY), model, layout, rng.choice(SMOOTHING)))
    return combos


COMBINATIONS = combinations()


def render(family, model, layout, smoothing):
    spec = tiny_spec(family, train={"label_smoothing": smoothing}, **model)
    return spec, render_model_py(spec, *plan_for(spec, **layout))


@cache
def rendered(index: int):
    return render(*COMBINATIONS[index])


def test_every_combination_is_formatted_lint_clean_and_deterministic(tmp_path):
    sources = {}
    for i, combo in enumerate(COMBINATIONS):
        spec, source = rendered(i)
        if i < 3:
            assert source == render(*combo)[1], combo  # two renders are byte-identical
        compile(source, f"model_{i}.py", "exec")
        sources[f"model_{i}.py"] = source
    for name, source in sources.items():
        (tmp_path / name).write_text(source)
    for command in (["check", "--no-cache"], ["format", "--check", "--no-cache"]):
        result = subprocess.run(
            [sys.executable, "-m", "ruff", *command, "--line-length", "100", str(tmp_path)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr


SINGLE_PROCESS = [
    i for i, c in enumerate(COMBINATIONS) if c[2].get("tensor", 1) == c[2].get("pipeline", 1) == 1
]


@pytest.mark.parametrize("index", SINGLE_PROCESS)
def test_single_process_combinations_train_a_step(index):
    spec, source = rendered(index)
    net = load_model_module(source, name=f"combo_{index}").build_model()
    ids = torch.randint(
        0, spec.model.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0)
    )
    loss = net(ids, ids)
    loss.backward()
    assert torch.isfinite(loss)
    # The loss of an untrained model is close to log(vocab): it predicts nearly uniformly.
    assert abs(loss.item() - torch.log(torch.tensor(spec.model.vocab_size)).item()) < 0.5
    assert all(p.grad is not None for p in net.parameters())
    assert net(ids).shape == (2, 16, spec.model.vocab_size)


def test_llama_render_has_only_what_llama_uses():
    spec = tiny_spec("llama")
    source = render_model_py(spec, *plan_for(spec))
    for absent in ["pos_emb", "pos_table", "bias", "Dropout", "DropPath", "checkpoint",
                   "layer_norm", "F.gelu", "type_emb", "dist.", "PipelineModule", "mask_tokens",
                   "tied_logits", "InputEncoding", "TENSOR_PARALLEL", "label_smoothing"]:  # fmt: skip
        assert absent not in source, absent
    for present in ["apply_rope", "F.rms_norm", "F.silu", "enable_gqa=True", "is_causal=True"]:
        assert present in source, present


def test_options_bring_their_code_only_when_used():
    gpt = tiny_spec("gpt", dropout=0.1, attention_dropout=0.0)
    plain = render_model_py(gpt, *plan_for(gpt))
    assert "nn.Dropout(DROPOUT)" in plain and "ATTENTION_DROPOUT" not in plain
    assert "enable_gqa" not in plain and "RowParallelLinear" not in plain
    tp = render_model_py(gpt, *plan_for(gpt, tensor=2, activation_checkpointing="full"))
    assert "RowParallelLinear" in tp and "_VocabParallelCrossEntropy" in tp
    assert (
        "_GatherColumnParallel" not in tp and "checkpoint(self.layer, x, use_reentrant=False)" in tp
    )
    bert = tiny_spec("bert")
    mlm = render_model_py(bert, *plan_for(bert))
    assert "def mask_tokens" in mlm and "is_causal" not in mlm and "LogitsBias" in mlm


def build_with(layout: dict, family="gpt", **model):
    spec = tiny_spec(family, **model)
    name = f"recompute_{family}_{layout.get('activation_checkpointing')}"
    source = render_model_py(spec, *plan_for(spec, **layout))
    return spec, load_model_module(source, name=name).build_model()


@pytest.mark.parametrize("family", ["gpt", "llama"])
def test_recompute_gives_the_same_loss_and_gradients(family):
    # Dropout, attention dropout and drop path on: recomputation must replay the same masks.
    noisy = {"dropout": 0.1, "attention_dropout": 0.1, "drop_path": 0.2}
    results = {}
    for mode in ["none", "selective", "ops", "full"]:
        spec, net = build_with({"activation_checkpointing": mode}, family, **noisy)
        ids = torch.randint(
            0, spec.model.vocab_size, (2, 16), generator=torch.Generator().manual_seed(1)
        )
        torch.manual_seed(42)
        loss = net(ids, ids)
        loss.backward()
        results[mode] = (loss.detach(), {n: p.grad for n, p in net.named_parameters()})
    reference_loss, reference_grads = results["none"]
    for mode in ["selective", "ops", "full"]:
        loss, grads = results[mode]
        assert torch.equal(loss, reference_loss), mode
        for name, grad in grads.items():
            torch.testing.assert_close(grad, reference_grads[name], rtol=1e-6, atol=1e-7)


def test_mask_tokens_follows_bert_proportions():
    spec = tiny_spec("bert", vocab_size=1000)
    module = load_model_module(render_model_py(spec, *plan_for(spec)), name="masking")
    ids = torch.randint(4, 1000, (64, 128), generator=torch.Generator().manual_seed(0))
    inputs, labels = module.mask_tokens(ids, 3, torch.Generator().manual_seed(5))
    again, _ = module.mask_tokens(ids, 3, torch.Generator().manual_seed(5))
    assert torch.equal(inputs, again)  # the generator alone decides
    selected = labels != -100
    assert torch.equal(labels[selected], ids[selected])
    assert torch.equal(inputs[~selected], ids[~selected])
    n = selected.sum().item()
    assert abs(n / ids.numel() - spec.train.mask_prob) < 0.01
    masked = (inputs[selected] == 3).sum().item() / n
    kept = (inputs[selected] == ids[selected]).sum().item() / n
    assert (
        abs(masked - 0.8) < 0.02 and abs(kept - 0.1) < 0.02
    )  # ~10% random (a few hit the same id)


def test_initialisation_is_gpt2_style_and_seeded():
    spec, net = build_with({}, "gpt", n_layers=8, d_model=64, d_ff=256)
    _, again = build_with({}, "gpt", n_layers=8, d_model=64, d_ff=256)
    for (name, p), (_, q) in zip(net.named_parameters(), again.named_parameters(), strict=True):
        assert torch.equal(p, q), name
    params = dict(net.named_parameters())
    assert abs(params["blocks.0.attn.q.weight"].std().item() - 0.02) < 0.002
    residual = 0.02 / (2 * 8) ** 0.5
    assert abs(params["blocks.3.mlp.fc_out.weight"].std().item() - residual) < 0.1 * residual
    assert params["blocks.0.attn.q.bias"].abs().sum() == 0
    assert torch.equal(params["blocks.0.attn_norm.weight"], torch.ones(64))


def test_drop_path_rate_grows_linearly_with_depth_and_is_off_in_eval():
    spec, net = build_with({}, "gpt", n_layers=5, drop_path=0.2)
    rates = [block.drop_path.rate for block in net.blocks]
    assert rates == pytest.approx([0.0, 0.05, 0.1, 0.15, 0.2])
    ids = torch.randint(
        0, spec.model.vocab_size, (4, 16), generator=torch.Generator().manual_seed(2)
    )
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(ids), net(ids))  # no stochastic depth, no dropout at evaluation
    net.train()
    x = torch.ones(4000, 1, 1)
    kept = net.blocks[4].drop_path(x)
    assert set(kept.unique().tolist()) <= {0.0, 1 / 0.8}  # whole samples dropped, the rest rescaled
    assert abs((kept == 0).float().mean().item() - 0.2) < 0.03
