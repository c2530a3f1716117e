"""LoRA fine-tuning for real: 2 CPU ranks (gloo) at ZeRO 0, 2 and 3, from the shared trained
base of `train_harness` (ZeRO 0, 30 steps), on prompt/response records with the loss on the
responses only.

What cannot be faked: after the fine-tune every base tensor in its checkpoint equals the base
checkpoint's, bit for bit, while the adapters moved; the optimizer holds Adam state for the
adapters only (2·Φ values, Φ = params.trainable of plan.json); the adapters file holds the
checkpoint's adapters; and step 0's validation loss is the base's own.
"""

from __future__ import annotations

import copy
import functools
import glob
import json
import os
import random
import shutil

import pytest
import torch
from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint
from safetensors.torch import load_file

from tests.train_harness import (
    build,
    launch,
    prepare_data,
    read_metrics,
    trained,
    workspace,
    write_spec,
)

pytestmark = pytest.mark.slow
STEPS = 6
WORDS = "def class return import from yield lambda while for if else try except with".split()


METHODS = {
    "lora": {"method": "lora", "lora": {"rank": 4, "alpha": 8, "targets": ["q", "v", "down"]}},
    "p_tuning": {"method": "p_tuning", "p_tuning": {"tokens": 4, "encoder": "mlp"}},
    "prefix": {"method": "prefix", "prefix": {"tokens": 4}},
}


def lora_overrides(zero_stage: int, method: str = "lora") -> dict:
    # virtual tokens and prefixes take positions of the base's 64: the records get 60
    seq_len = 64 if method == "lora" else 60
    return {
        "finetune": {
            "base": {"path": "zero0/out/checkpoints"},  # the shared base, beside the spec
            **copy.deepcopy(METHODS[method]),
        },
        "data": {
            "sources": [{"path": "sft/*.jsonl"}],
            "tokenizer": {"path": "data/tokenizer.json"},  # the base's (prepared once for all)
            "validation_fraction": 0.1,
        },
        "train": {
            "objective": "sft",
            "seq_len": seq_len,
            "steps": STEPS,
            "log_interval": 1,
            "eval_interval": STEPS,
            "checkpoint_interval": STEPS,
            "optimizer": {"lr": 1.0e-2, "weight_decay": 0.0},
            "schedule": {"name": "constant", "warmup_steps": 0},
        },
        "parallel": {"zero_stage": zero_stage},
    }


@functools.cache
def sft_data(method: str = "lora") -> str:
    """Records {prompt, response} (a list of words, reversed), prepared by a project's own
    prepare_data.py with the base's tokenizer, once per method (their seq_len differs)."""
    folder = workspace()
    trained("zero0")  # the base must exist before any fine-tune reads it
    rng = random.Random(0)
    (folder / "sft").mkdir(exist_ok=True)
    lines = []
    for _ in range(400):
        words = rng.sample(WORDS, 4)
        lines.append(json.dumps({"prompt": f"# reverse: {' '.join(words)}\n#",
                                 "response": " " + " ".join(reversed(words))}))  # fmt: skip
    (folder / "sft" / "reverse.jsonl").write_text("\n".join(lines) + "\n")
    proj = build(
        write_spec(folder, f"{method}-data", **lora_overrides(0, method)), folder / f"{method}-data"
    )
    return str(prepare_data(proj, folder / f"sft-data-{method}"))


@functools.cache
def fine_tuned(zero_stage: int, method: str = "lora"):
    folder = workspace()
    data = sft_data(method)
    name = f"{method}-zero{zero_stage}"
    proj = build(write_spec(folder, name, **lora_overrides(zero_stage, method)), folder / name)
    result = launch(proj, "--data", data, "--out", str(proj / "out"))
    return proj, result


def checkpoint_state(checkpoints, tag: str) -> dict[str, torch.Tensor]:
    folder = os.path.join(checkpoints, tag)
    if glob.glob(os.path.join(folder, "*zero_pp_rank_*")):
        return get_fp32_state_dict_from_zero_checkpoint(str(checkpoints), tag=tag)
    path = os.path.join(folder, "mp_rank_00_model_states.pt")
    return torch.load(path, map_location="cpu", weights_only=False)["module"]


def adam_state_values(checkpoints, tag: str, zero_stage: int) -> int:
    """Adam's exp_avg + exp_avg_sq elements held over all ranks (alignment padding included)."""
    folder = os.path.join(checkpoints, tag)
    if zero_stage == 0:
        states = torch.load(os.path.join(folder, "mp_rank_00_model_states.pt"), map_location="cpu",
                            weights_only=False)["optimizer"]["state"]  # fmt: skip
    else:
        states = {}
        for path in sorted(glob.glob(os.path.join(folder, "*zero_pp_rank_*optim_states.pt"))):
            osd = torch.load(path, map_location="cpu", weights_only=False)["optimizer_state_dict"]
            inner = osd.get("base_optimizer_state", osd.get("optimizer_state_dict"))
            state = inner["state"] if isinstance(inner, dict) else inner[0]["state"]
            states |= {(path, k): v for k, v in state.items()}
    return sum(v[k].numel() for v in states.values() for k in ("exp_avg", "exp_avg_sq"))


@pytest.mark.parametrize(
    "zero_stage, method",
    [(0, "lora"), (2, "lora"), (3, "lora"), (2, "p_tuning"), (3, "prefix")],
)
def test_adapters_train_and_every_base_tensor_stays_as_it_was(zero_stage, method):
    proj, result = fine_tuned(zero_stage, method)
    base = checkpoint_state(workspace() / "zero0" / "out" / "checkpoints", "step_30")
    tuned = checkpoint_state(proj / "out" / "checkpoints", f"step_{STEPS}")
    trains = {"lora": (".lora_a", ".lora_b"), "p_tuning": "prompt_encoder.", "prefix": "prefix."}
    is_adapter = (lambda n: n.endswith(trains["lora"])) if method == "lora" else (
        lambda n: n.startswith(trains[method]))  # fmt: skip
    adapters = sorted(n for n in tuned if is_adapter(n))
    assert adapters and sorted(set(tuned) - set(adapters)) == sorted(base)
    for name, tensor in base.items():
        assert torch.equal(tuned[name].float(), tensor.float()), name  # frozen: bit-identical
    if method == "lora":
        lora_b = [tuned[n] for n in adapters if n.endswith(".lora_b")]
        assert all(torch.count_nonzero(b) > 0 for b in lora_b)  # B started at zero and trained

    trainable = json.loads((proj / "plan.json").read_text())["params"]["trainable"]
    assert sum(tuned[n].numel() for n in adapters) == trainable
    held = adam_state_values(proj / "out" / "checkpoints", f"step_{STEPS}", zero_stage)
    # 2·Φ, plus at most DeepSpeed's alignment padding of each rank's flat partition
    assert 2 * trainable <= held <= 2 * trainable + 2 * 2 * 64, (held, trainable)
    assert held < 2 * trainable + len(base)  # far from the base's size: no state for frozen weights

    saved = load_file(proj / "out" / "adapters" / f"step_{STEPS}.safetensors")
    assert sorted(saved) == adapters
    for name in adapters:
        torch.testing.assert_close(saved[name], tuned[name].float(), rtol=0, atol=0)


def test_step_zero_is_the_base_and_the_response_loss_falls():
    proj, result = fine_tuned(0, "lora")
    assert "fine-tuning (lora)" in result.stdout and "base model: val_loss" in result.stdout
    metrics = read_metrics(proj / "out")
    assert metrics[0]["step"] == 0 and "loss" not in metrics[0]
    val = [m["val_loss"] for m in metrics if "val_loss" in m]
    assert len(val) == 2 and val[1] < val[0] - 0.3, val  # the task is learnt, fast


def test_a_base_that_is_not_the_spec_model_is_refused_clearly():
    folder = workspace()
    sft_data()
    overrides = lora_overrides(0)
    overrides["model"] = {"d_model": 96, "n_heads": 4}
    proj = build(write_spec(folder, "lora-wrong", **overrides), folder / "lora-wrong")
    result = launch(proj, "--data", sft_data(), "--out", str(proj / "out"), check=False)
    assert result.returncode != 0
    # the rank's own message (torchrun adds its own report of the failed child after it)
    assert (
        "is not this spec's model: tok_emb.weight is (512, 64) in the base, (512, 96) here"
        in result.stderr
    )
    assert not (proj / "out" / "checkpoints").exists()
    shutil.rmtree(proj / "out", ignore_errors=True)


def test_a_lora_fine_tune_as_base_is_refused_until_merged():
    """Its adapters would be dropped or reused as the new run's adapters (and a DPO reference,
    the policy with adapters off, would be the pretrained model): say to merge them first."""
    folder = workspace()
    fine_tuned(0)
    overrides = lora_overrides(0)
    overrides["finetune"]["base"] = {"path": "lora-zero0/out/checkpoints"}
    proj = build(write_spec(folder, "lora-on-lora", **overrides), folder / "lora-on-lora")
    result = launch(proj, "--data", sft_data(), "--out", str(proj / "out"), check=False)
    assert result.returncode != 0
    assert "is a LoRA fine-tune with unmerged adapters" in result.stderr, result.stderr[-2000:]
    assert "export.py --format hf" in result.stderr
    assert not (proj / "out" / "checkpoints").exists()
    shutil.rmtree(proj / "out", ignore_errors=True)


@pytest.mark.parametrize("zero_stage", [0, 3])
def test_lora_export_merges_and_round_trips_through_transformers(zero_stage, tmp_path):
    """export.py folds the adapters into a plain GPT2LMHeadModel whose logits equal the
    project's own (unmerged) model on the checkpoint, on the validation records."""
    import subprocess
    import sys

    import transformers

    from tests.eval_harness import project_modules
    from tests.train_harness import cpu_env

    proj, _ = fine_tuned(zero_stage, "lora")
    hf_dir = tmp_path / "hf"
    result = subprocess.run(
        [sys.executable, "export.py", "--format", "hf", str(hf_dir), "--data", sft_data()],
        cwd=proj, env=cpu_env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    hf = transformers.AutoModelForCausalLM.from_pretrained(hf_dir).eval()
    state = checkpoint_state(proj / "out" / "checkpoints", f"step_{STEPS}")
    with project_modules(proj, "model", "data") as (model_py, data_py):
        ours = model_py.build_model()
        ours.load_state_dict(state)
        ours.eval()
        batches = list(data_py.val_batches(sft_data(), 4, dp_rank=0, dp_world=1, max_batches=3))
    assert not any(n.endswith(("lora_a", "lora_b")) for n, _ in hf.named_parameters())
    with torch.no_grad():
        for input_ids, labels in batches:
            got = hf(input_ids).logits
            assert (got - ours(input_ids)).abs().max().item() <= 1e-5
            assert (labels == -100).any()  # prompts and padding carry no loss


LLAMA = {"arch": "llama", "position": "rope", "norm": "rmsnorm", "activation": "swiglu",
         "bias": False, "tie_embeddings": False, "n_kv_heads": 2}  # fmt: skip


@pytest.mark.parametrize("family", ["llama", "gpt"])
def test_hf_base_loads_with_the_logits_transformers_computes(family, tmp_path):
    """A Hugging Face folder (save_pretrained: config.json + model.safetensors + the
    tokenizer) as the base: the fine-tune's step-0 validation loss, computed by model.py with
    the imported weights, equals transformers' loss on the same records (1e-5 relative)."""
    import transformers

    from llmspec.codegen.export_code import render_export_py
    from llmspec.codegen.model_code import load_model_module
    from llmspec.plan import make_plan
    from llmspec.spec.load import load_spec
    from tests.eval_harness import project_modules

    folder = workspace()
    data = sft_data()
    overrides = lora_overrides(0)
    overrides["finetune"]["base"] = {"path": f"hf-{family}", "format": "hf"}
    if family == "llama":
        overrides["model"] = LLAMA
        overrides["finetune"]["lora"]["targets"] = ["q", "v", "gate"]
    spec_path = write_spec(folder, f"lora-hf-{family}", **overrides)
    spec = load_spec(spec_path)
    plan = make_plan(spec)
    export = load_model_module(render_export_py(spec, plan.layout), f"export_hf_base_{family}")
    config_class = transformers.LlamaConfig if family == "llama" else transformers.GPT2Config
    config = config_class(**{k: v for k, v in export.HF_CONFIG.items() if k != "architectures"})
    auto = transformers.LlamaForCausalLM if family == "llama" else transformers.GPT2LMHeadModel
    torch.manual_seed(0)
    hf = auto(config).eval()
    with torch.no_grad():  # not the initialisation (biases zero, norms one): every tensor distinct
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    hf.save_pretrained(folder / f"hf-{family}")
    shutil.copyfile(
        os.path.join(data, "tokenizer.json"), folder / f"hf-{family}" / "tokenizer.json"
    )

    proj = build(spec_path, folder / f"lora-hf-{family}")
    result = launch(proj, "--data", data, "--out", str(proj / "out"), "--max-steps", "2")
    assert "fine-tuning (lora)" in result.stdout
    logged = read_metrics(proj / "out")[0]
    assert logged["step"] == 0
    with project_modules(proj, "data") as (data_py,):
        losses = []
        with torch.no_grad():
            for rank in (0, 1):
                for input_ids, labels in data_py.val_batches(
                    data, 4, dp_rank=rank, dp_world=2, max_batches=2
                ):
                    losses.append(hf(input_ids, labels=labels).loss.item())
    assert sum(losses) / len(losses) == pytest.approx(logged["val_loss"], rel=1e-5)
