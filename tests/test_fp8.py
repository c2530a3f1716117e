"""precision fp8: the generated model.py's block linears multiply in FP8, as torchao's
Float8Linear (tensorwise recipe) does, and only they do.

torchao is the oracle: the generated fp8_linear's output, input gradient and weight gradient
are bit-identical to a torchao-converted nn.Linear holding the same weight. torch._scaled_mm
runs on the CPU (torch 2.13), so the whole model trains here; the GPU only makes it fast.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch
from model_harness.launch import torchrun
from model_harness.specs import plan_for, tiny_spec
from torch.utils._python_dispatch import TorchDispatchMode

from llmspec.codegen.model_code import load_model_module, render_model_py
from llmspec.graph import recompute

# Widths that are multiples of 16 per tensor-parallel rank up to tensor 2 (cuBLAS's FP8 rule).
WIDE = dict(d_model=64, n_heads=4, d_ff=128, max_seq_len=64)
SEQ = 16


def fp8_model(family: str = "llama", *, seed_module: str, precision="fp8", **layout):
    """model.py of a tiny spec rendered for `precision` (the layout planned for bf16 on the
    CPU cluster the harness uses: the planner refuses fp8 on a GPU without FP8 units)."""
    model = {**WIDE, **({"n_kv_heads": 2} if family == "llama" else {})}
    if family != "llama":
        model.update(dropout=0.0, attention_dropout=0.0)
    plan = plan_for(tiny_spec(family, train={"seq_len": SEQ}, **model), **layout)
    spec = tiny_spec(family, train={"seq_len": SEQ, "precision": precision}, **model)
    return load_model_module(render_model_py(spec, *plan), seed_module)


class CountOps(TorchDispatchMode):
    """Counts every aten op dispatched (forward and backward run on this thread on the CPU)."""

    def __init__(self):
        super().__init__()
        self.ops = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


@pytest.fixture(scope="module")
def torchao_linear():
    torchao = pytest.importorskip("torchao.float8")

    def make(weight: torch.Tensor, bias: torch.Tensor | None):
        linear = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
        linear = linear.to(weight.dtype)
        with torch.no_grad():
            linear.weight.copy_(weight)
            if bias is not None:
                linear.bias.copy_(bias)
        holder = torch.nn.Sequential(linear)
        torchao.convert_to_float8_training(holder)  # default config: the tensorwise recipe
        assert type(holder[0]).__name__ == "Float8Linear"
        return holder[0]

    return make


@pytest.mark.parametrize("family", ["llama", "gpt"])  # no bias / bias
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_generated_linear_is_torchao_float8_linear_bit_for_bit(family, dtype, torchao_linear):
    module = fp8_model(family, seed_module=f"fp8_linear_{family}_{dtype}".replace(".", "_"))
    linear = module.Linear("probe", 64, 128).to(dtype)
    if family == "gpt":
        with torch.no_grad():
            linear.bias.normal_(generator=torch.Generator().manual_seed(3))
    reference = torchao_linear(linear.weight.detach(), getattr(linear, "bias", None))
    generator = torch.Generator().manual_seed(5)
    x = (torch.randn(3, SEQ, 64, generator=generator) * 4).to(dtype)
    grad = torch.randn(3, SEQ, 128, generator=generator).to(dtype)
    ours_x = x.clone().requires_grad_()
    ref_x = x.clone().requires_grad_()
    ours, ref = linear(ours_x), reference(ref_x)
    ours.backward(grad)
    ref.backward(grad)
    assert ours.dtype == ref.dtype == dtype
    assert torch.equal(ours, ref)
    assert torch.equal(ours_x.grad, ref_x.grad)
    assert torch.equal(linear.weight.grad, reference.weight.grad)
    if family == "gpt":
        assert torch.equal(linear.bias.grad, reference.bias.grad)
    # and FP8 is not the 16-bit product: E4M3 carries 3 mantissa bits
    exact = x.float() @ linear.weight.detach().float().t()
    if family == "gpt":
        exact += linear.bias.detach().float()
    error = ((ours.float() - exact).norm() / exact.norm()).item()
    assert 1e-3 < error < 0.1, error


def linears_per_block(family: str) -> int:
    return len(recompute.linear_names(_dims(family)))


def _dims(family: str):
    from llmspec.graph.dims import ModelDims

    model = {**WIDE, **({"n_kv_heads": 2} if family == "llama" else {})}
    return ModelDims.from_spec(tiny_spec(family, train={"seq_len": SEQ}, **model))


def batch(vocab: int = 101):
    generator = torch.Generator().manual_seed(11)
    ids = torch.randint(0, vocab, (2, SEQ), generator=generator)
    return ids, ids


@pytest.mark.parametrize("family", ["llama", "bert"])
def test_every_block_linear_and_only_they_run_in_fp8(family):
    module = fp8_model(family, seed_module=f"fp8_count_{family}")
    model = module.build_model()
    ids, labels = batch()
    if family == "bert":
        labels = ids.masked_fill(torch.arange(SEQ) % 3 != 0, -100)
    with CountOps() as forward:
        loss = model(ids, labels)
    with CountOps() as backward:
        loss.backward()
    gemms = module.N_LAYERS * linears_per_block(family)
    assert forward.ops["_scaled_mm"] == gemms
    assert backward.ops["_scaled_mm"] == 2 * gemms  # input and weight gradients
    # the 16-bit matmuls left: the LM head (and BERT's masked-LM dense layer)
    head = 2 if family == "bert" else 1
    assert forward.ops["mm"] + forward.ops["addmm"] == head, forward.ops


def test_fp8_model_trains_as_the_bf16_model_does_within_fp8_rounding():
    models = {}
    for precision in ("bf16", "fp8"):
        module = fp8_model("llama", seed_module=f"fp8_train_{precision}", precision=precision)
        models[precision] = module.build_model().to(torch.bfloat16)
    ids, labels = batch()
    first = {}
    losses = {p: [] for p in models}
    for precision, model in models.items():
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
        for step in range(12):
            loss = model(ids, labels)
            loss.backward()
            if step == 0:
                first[precision] = {n: p.grad.float().clone() for n, p in model.named_parameters()}
            optimizer.step()
            optimizer.zero_grad()
            losses[precision].append(loss.item())
    # the same start: first losses within FP8's rounding of the block outputs
    assert losses["fp8"][0] == pytest.approx(losses["bf16"][0], rel=2e-2)
    for name, grad in first["bf16"].items():
        fp8 = first["fp8"][name]
        cosine = torch.nn.functional.cosine_similarity(grad.flatten(), fp8.flatten(), dim=0)
        assert cosine > 0.97, (name, cosine.item())
    # both memorise the batch at the same pace
    for precision, curve in losses.items():
        assert curve[-1] < 0.6 * curve[0], (precision, curve)
    assert losses["fp8"][-1] == pytest.approx(losses["bf16"][-1], rel=0.1)


def test_per_op_recompute_keeps_every_other_fp8_matmul():
    """Under activation_checkpointing: ops the policy counts FP8 matmuls as matmuls: the
    backward replays the forward GEMM of the linears the policy does not keep, and only those."""
    dims = _dims("llama")
    replayed = len(recompute.recomputed_linear_names(dims))
    assert 0 < replayed < linears_per_block("llama")
    runs = {}
    for mode in ("none", "ops"):
        module = fp8_model("llama", seed_module=f"fp8_ops_{mode}", activation_checkpointing=mode)
        model = module.build_model()
        model.train()
        ids, labels = batch()
        loss = model(ids, labels)
        with CountOps() as backward:
            loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters()}
        runs[mode] = (loss.item(), backward.ops["_scaled_mm"], grads, module.N_LAYERS)
    (loss_none, bwd_none, grads_none, layers), (loss_ops, bwd_ops, grads_ops, _) = (
        runs["none"],
        runs["ops"],
    )
    assert bwd_ops - bwd_none == layers * replayed
    assert loss_ops == loss_none
    for name, grad in grads_none.items():
        assert torch.equal(grads_ops[name], grad), name


TP_CASES = {"llama-fp8": False, "llama-fp8-sp": True}


@pytest.mark.slow
def test_tensor_parallel_fp8_matches_one_rank_within_fp8_rounding(tmp_path):
    """Tensor parallel 2, with and without sequence parallel (the sequence-parallel linears
    have their own FP8 path), against tensor 1 on 2 gloo ranks. Each rank scales its own shard
    of a split weight, so the products differ from one rank's by FP8 rounding, no more."""
    cases = []
    for name, sequence_parallel in TP_CASES.items():
        model = {**WIDE, "n_kv_heads": 2}
        bf16 = tiny_spec("llama", train={"seq_len": SEQ}, **model)
        spec = tiny_spec("llama", train={"seq_len": SEQ, "precision": "fp8"}, **model)
        single = render_model_py(spec, *plan_for(bf16))
        parallel = render_model_py(
            spec, *plan_for(bf16, tensor=2, sequence_parallel=sequence_parallel)
        )
        assert ("_GatherColumnParallel" in parallel) == sequence_parallel
        assert "fp8_linear" in parallel
        paths = {}
        for kind, source in (("single", single), ("parallel", parallel)):
            paths[kind] = str(tmp_path / f"{kind}_{name.replace('-', '_')}.py")
            (tmp_path / f"{kind}_{name.replace('-', '_')}.py").write_text(source)
        cases.append({
            "name": name, "vocab_size": spec.model.vocab_size, "seq_len": SEQ, "masked": False,
            **paths,
        })  # fmt: skip
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    torchrun("tp_equivalence.py", str(tmp_path / "cases.json"), str(tmp_path / "out.json"))
    results = json.loads((tmp_path / "out.json").read_text())
    print(json.dumps(results, indent=1))
    assert sorted(results) == sorted(TP_CASES)
    for name, r in results.items():
        assert r["max_param_diff"] == 0.0, name
        assert r["loss_parallel"] == pytest.approx(r["loss_single"], rel=2e-3), name
        assert r["grad_norm_parallel"] == pytest.approx(r["grad_norm_single"], rel=1e-2), name
        # FP8's rounding, not a wrong sum or a missing shard (those are O(grad_scale))
        assert r["max_grad_diff"] <= 0.15 * r["grad_scale"], (name, r)
