"""generate.py: the KV cache gives the logits of a full recompute; sampling filters do what they say."""

from __future__ import annotations

import pytest
import torch

from tests.eval_harness import project_modules
from tests.train_harness import build, write_spec

EVAL = {"eval": {"metrics": ["perplexity"]}}
VARIANTS = {
    # GPT: learned positions (the position table is indexed from the cache's offset)
    "gpt": {},
    # Llama: RoPE from the offset, grouped-query heads, RMSNorm, SwiGLU
    "llama": {
        "model": {"arch": "llama", "position": "rope", "norm": "rmsnorm", "activation": "swiglu",
                  "n_kv_heads": 2, "bias": False},
    },
}  # fmt: skip


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def project(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"gen-{request.param}")
    (folder / "corpus").mkdir()
    spec = write_spec(folder, f"gen-{request.param}", **EVAL, **VARIANTS[request.param])
    return build(spec, folder / "project")


def test_kv_cached_logits_equal_full_recompute(project):
    with project_modules(project, "model") as (model_py,):
        torch.manual_seed(0)
        model = model_py.build_model().eval()
        for p in model.parameters():  # break the init's symmetry: biases and norms too
            p.data.add_(torch.randn_like(p) * 0.05)
        ids = torch.randint(0, model_py.VOCAB_SIZE, (3, 20))
        cache = model_py.KVCache()
        with torch.no_grad():
            # a 7-token prefill, a 5-token chunk (mask offset by the cache), then one at a time
            chunks = [ids[:, :7], ids[:, 7:12]] + [ids[:, i : i + 1] for i in range(12, 20)]
            cached = torch.cat([model(chunk, cache=cache) for chunk in chunks], dim=1)
            full = model(ids)
        assert cache.length == 20
        torch.testing.assert_close(cached, full, rtol=0, atol=2e-5)
        assert (cached - full).abs().max() < 1e-3 * full.abs().max()


def test_sample_with_and_without_cache_agree(project):
    with project_modules(project, "generate", "model") as (gen, model_py):
        torch.manual_seed(1)
        model = model_py.build_model().eval()
        for p in model.parameters():
            p.data.add_(torch.randn_like(p) * 0.05)
        prompt = torch.randint(0, model_py.VOCAB_SIZE, (2, 5))
        greedy = gen.sample(model, prompt, 12)
        assert greedy.shape == (2, 12)
        assert torch.equal(greedy, gen.sample(model, prompt, 12, use_cache=False))
        # the same generator seed draws the same tokens from the same distributions
        kwargs = {"temperature": 0.8, "top_p": 0.9, "top_k": 50}
        a = gen.sample(model, prompt, 12, generator=torch.Generator().manual_seed(3), **kwargs)
        b = gen.sample(model, prompt, 12, generator=torch.Generator().manual_seed(3),
                       use_cache=False, **kwargs)  # fmt: skip
        assert torch.equal(a, b)
        # generation never runs past the context: a prompt of the whole context is cut
        long = torch.randint(0, model_py.VOCAB_SIZE, (1, gen.CONTEXT_LEN))
        assert gen.sample(model, long, 4).shape == (1, 4)


def test_sampling_filters_and_stops(project):
    with project_modules(project, "generate") as (gen,):
        logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
        kept = lambda out: torch.isfinite(out[0]).tolist()  # noqa: E731
        assert kept(gen.filter_logits(logits, 1.0, top_k=2)) == [True, True, False, False]
        # nucleus: the smallest set reaching p; 0.8 is reached by {0.5, 0.3}
        assert kept(gen.filter_logits(logits, 1.0, top_p=0.8)) == [True, True, False, False]
        assert kept(gen.filter_logits(logits, 1.0, top_p=0.81)) == [True, True, True, False]
        assert kept(gen.filter_logits(logits, 1.0, top_p=0.1)) == [True, False, False, False]
        scaled = gen.filter_logits(logits, 0.5)
        torch.testing.assert_close(scaled, logits / 0.5)

        class Counter(torch.nn.Module):  # next token = last + 1: a known continuation
            def forward(self, ids, cache=None):
                return torch.nn.functional.one_hot((ids + 1) % 16, 16).float() * 10

        ids = torch.tensor([[3], [9]])
        out = gen.sample(Counter(), ids, 10, eos_id=7, use_cache=False)
        # row 0 reaches eos (7) after 4 tokens and is padded with it; row 1 runs on
        assert out.tolist() == [
            [4, 5, 6, 7, 7, 7, 7, 7, 7, 7],
            [10, 11, 12, 13, 14, 15, 0, 1, 2, 3],
        ]
        stop = gen.sample(Counter(), ids[:1], 10, stop=lambda new: 6 in new, use_cache=False)
        assert stop.tolist() == [[4, 5, 6]]
