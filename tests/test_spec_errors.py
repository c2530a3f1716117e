"""Bad specs: each class exits 2 and names file:line:col, the dotted field and a hint.

Every case is a small spec that is valid except for one mistake (the defaults
fill the rest), run through `llmspec validate` in-process.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import pytest

from llmspec.cli.main import main


@dataclass
class Bad:
    id: str
    yaml: str
    where: tuple[int, int]  # line, column (1-based)
    field: str
    message: str  # a fragment of the message
    hint: str  # a fragment of the hint


CASES = [
    Bad(
        "unknown-field",
        "model:\n  n_layer: 3\n",
        (2, 3),
        "model.n_layer",
        "unknown field; did you mean 'n_layers'?",
        "fields of model: preset, arch",
    ),
    Bad(
        "unknown-section",
        "name: x\ntrian:\n  steps: 3\n",
        (2, 1),
        "trian",
        "did you mean 'train'?",
        "fields of the top level",
    ),
    Bad(
        "wrong-type-string",
        "model:\n  n_layers: twelve\n",
        (2, 13),
        "model.n_layers",
        "expected an integer, got 'twelve'",
        "",
    ),
    Bad(
        "wrong-type-bool",
        "model:\n  d_model: true\n",
        (2, 12),
        "model.d_model",
        "expected an integer, got true",
        "",
    ),
    Bad(
        "list-where-mapping",
        "model: [1, 2]\n",
        (1, 8),
        "model",
        "expected a mapping (key: value), got a list of 2",
        "",
    ),
    Bad(
        "string-or-mapping",
        "cluster:\n  gpu: 5\n",
        (2, 8),
        "cluster.gpu",
        "expected a string or a mapping (key: value), got 5",
        "",
    ),
    Bad(
        "list-too-short",
        "train:\n  optimizer: {betas: [0.9]}\n",
        (2, 22),
        "train.optimizer.betas",
        "the list is too short: item [1] is missing",
        "",
    ),
    Bad(
        "empty-source-list",
        "data:\n  sources: []\n",
        (2, 12),
        "data.sources",
        "expected at least 1 item(s), got a list of 0",
        "",
    ),
    Bad(
        "non-positive-batch",
        "train:\n  global_batch_size: 0\n",
        (2, 22),
        "train.global_batch_size",
        "expected a value > 0, got 0",
        "",
    ),
    Bad(
        "negative-lr",
        "train:\n  optimizer: {name: adamw, lr: -0.1}\n",
        (2, 32),
        "train.optimizer.lr",
        "expected a value > 0.0, got -0.1",
        "",
    ),
    Bad(
        "bad-choice",
        "model:\n  arch: lama\n",
        (2, 9),
        "model.arch",
        "expected one of 'gpt', 'llama', 'bert', got 'lama'",
        "did you mean 'llama'?",
    ),
    Bad(
        "auto-or-int",
        "parallel:\n  data: many\n",
        (2, 9),
        "parallel.data",
        "expected an integer or 'auto', got 'many'",
        "",
    ),
    Bad(
        "name-slug",
        "name: My Run\n",
        (1, 7),
        "name",
        "'My Run' is not a slug",
        "name: my-run",
    ),
    Bad(
        "heads-divide-width",
        "model:\n  d_model: 1000\n  n_heads: 12\n",
        (3, 12),
        "model.n_heads",
        "model.d_model = 1000 is not divisible by model.n_heads = 12",
        "n_heads values that divide d_model: 4, 5, 8, 10",
    ),
    Bad(
        "kv-heads-divide-heads",
        "model:\n  n_heads: 12\n  n_kv_heads: 5\n",
        (3, 15),
        "model.n_kv_heads",
        "model.n_kv_heads = 5 does not divide model.n_heads = 12",
        "valid values: 1, 2, 3, 4, 6, 12",
    ),
    Bad(
        "tensor-divides-heads",
        "model:\n  d_model: 4096\n  n_heads: 32\nparallel:\n  tensor: 3\n",
        (5, 11),
        "parallel.tensor",
        "parallel.tensor = 3 does not divide model.n_heads = 32 — valid values: 1, 2, 4, 8",
        "equal share of the heads",
    ),
    Bad(
        "tensor-beyond-node",
        "model: {n_heads: 16, d_model: 1024}\nparallel: {tensor: 16}\n"
        "cluster: {nodes: 2, gpus_per_node: 8}\n",
        (2, 20),
        "parallel.tensor",
        "parallel.tensor = 16 exceeds cluster.gpus_per_node = 8",
        "valid values: 1, 2, 4, 8",
    ),
    Bad(
        "pipeline-beyond-layers",
        "model: {n_layers: 4}\nparallel: {pipeline: 8}\n",
        (2, 22),
        "parallel.pipeline",
        "parallel.pipeline = 8 exceeds model.n_layers = 4",
        "between 1 and 4",
    ),
    Bad(
        "degrees-vs-world",
        "parallel: {data: 2, tensor: 2, pipeline: 1}\ncluster: {nodes: 1, gpus_per_node: 8}\n",
        (1, 18),
        "parallel.data",
        "parallel.data × tensor × pipeline = 2 × 2 × 1 = 4 ≠ cluster.nodes × gpus_per_node "
        "= 1 × 8 = 8",
        "set parallel.data = 4",
    ),
    Bad(
        "batch-arithmetic",
        "train: {global_batch_size: 100, micro_batch_size: 8}\nparallel: {data: 2}\n"
        "cluster: {gpus_per_node: 2}\n",
        (1, 28),
        "train.global_batch_size",
        "train.global_batch_size = 100 is not a multiple of micro_batch_size = 8 × data = 2 = 16",
        "nearest valid: 96 or 112",
    ),
    Bad(
        "seq-len-beyond-model",
        "model:\n  max_seq_len: 512\ntrain:\n  seq_len: 2048\n",
        (4, 12),
        "train.seq_len",
        "train.seq_len = 2048 exceeds model.max_seq_len = 512",
        "set train.seq_len <= 512",
    ),
    Bad(
        "fp8-without-hardware",
        "train: {precision: fp8}\ncluster: {gpu: a100-80gb}\n",
        (1, 20),
        "train.precision",
        "fp8 needs FP8 tensor cores, and a100-80gb has none",
        "h100-sxm",
    ),
    Bad(
        "fp8-width-not-a-multiple-of-16",
        "model: {d_model: 1000, n_heads: 10}\ntrain: {precision: fp8}\ncluster: {gpu: h100-sxm}\n",
        (2, 20),
        "train.precision",
        "precision fp8: model.d_model = 1000 is not a multiple of 16",
        "or precision: bf16",
    ),
    Bad(
        "fp8-seq-len-not-a-multiple-of-16",
        "train: {precision: fp8, seq_len: 1000}\ncluster: {gpu: h100-sxm}\n",
        (1, 34),
        "train.seq_len",
        "train.seq_len = 1000 is not a multiple of 16",
        "multiples of 16",
    ),
    Bad(
        "fp8-width-per-tensor-rank",
        "model: {d_model: 1088, n_heads: 8, n_kv_heads: 4}\n"
        "train: {precision: fp8}\nparallel: {tensor: 4}\ncluster: {gpu: h100-sxm}\n",
        (2, 20),
        "train.precision",
        "model.n_kv_heads x head_dim / parallel.tensor 4 = 136 is not a multiple of 16",
        "per tensor-parallel rank",
    ),
    Bad(
        "rope-odd-head-dim",
        "model: {d_model: 60, n_heads: 4, position: rope}\n",
        (1, 44),
        "model.position",
        "head_dim = d_model / n_heads = 60 / 4 = 15 is odd",
        "even quotient",
    ),
    Bad(
        "masked-lm-needs-bert",
        "model: {arch: gpt}\ntrain: {objective: masked_lm}\n",
        (2, 20),
        "train.objective",
        "masked_lm trains a bidirectional encoder",
        "model.arch: bert",
    ),
    Bad(
        "bert-needs-masked-lm",
        "model:\n  preset: bert-base\ntrain:\n  seq_len: 512\n",
        (2, 11),  # objective is a default: located at the arch, which the preset line gives
        "train.objective",
        "model.arch = bert attends in both directions",
        "objective: masked_lm",
    ),
    Bad(
        "offload-params-needs-zero3",
        "parallel: {zero_stage: 2, offload_params: cpu}\n",
        (1, 43),
        "parallel.offload_params",
        "offload_params = cpu needs ZeRO stage 3",
        "zero_stage: 3",
    ),
    Bad(
        "zero3-with-pipeline",
        "parallel:\n  pipeline: 2\n  zero_stage: 3\n",
        (3, 15),
        "parallel.zero_stage",
        "parallel.zero_stage = 3 cannot be combined with parallel.pipeline = 2",
        "zero_stage: 1",
    ),
    Bad(
        "sequence-parallel-needs-tensor",
        "parallel:\n  tensor: 1\n  sequence_parallel: true\n",
        (3, 22),
        "parallel.sequence_parallel",
        "parallel.tensor = 1",
        "tensor > 1",
    ),
    Bad(
        "ops-recompute-needs-one-tensor-rank",
        "model: {n_heads: 16, d_model: 1024}\nparallel:\n  tensor: 2\n  activation_checkpointing: ops\n",
        (4, 29),
        "parallel.activation_checkpointing",
        "it runs with parallel.tensor = 1, not 2",
        "activation_checkpointing: selective or full",
    ),
    Bad(
        "unknown-gpu",
        "cluster:\n  gpu: h100\n",
        (2, 8),
        "cluster.gpu",
        "unknown GPU 'h100'",
        "did you mean 'h200'? catalog: a100-40gb",
    ),
    Bad(
        "unknown-gpu-in-override",
        "cluster:\n  gpu: {name: a100-80, memory_gib: 40}\n",
        (2, 15),
        "cluster.gpu.name",
        "unknown GPU 'a100-80'",
        "did you mean 'a100-80gb'?",
    ),
    Bad(
        "unknown-preset",
        "model:\n  preset: llama-2-7b\n",
        (2, 11),
        "model.preset",
        "unknown preset 'llama-2-7b'",
        "presets: gpt2-small, gpt2-medium",
    ),
    Bad(
        "tokenizer-beyond-embedding",
        "model: {vocab_size: 1000}\ndata:\n  tokenizer: {vocab_size: 4096}\n",
        (3, 27),
        "data.tokenizer.vocab_size",
        "data.tokenizer.vocab_size = 4096 exceeds model.vocab_size = 1000",
        "<= 1000",
    ),
    Bad(
        "malformed-data-path-variable",
        'data:\n  sources:\n    - path: "${HOME/corpus/*.txt"\n',
        (3, 13),
        "data.sources[0].path",
        "malformed variable reference",
        "${NAME:-default}",
    ),
    Bad(
        "data-path-with-nul",
        'data:\n  tokenizer: {path: "tok\\0.json"}\n',
        (2, 21),
        "data.tokenizer.path",
        "the path contains a NUL character",
        "write the path of a file or a glob",
    ),
    Bad(
        "data-path-name-too-long",
        "data:\n  sources:\n    - path: corpus/" + "x" * 300 + "/*.txt\n",
        (3, 13),
        "data.sources[0].path",
        "a name in the path is longer than 255 bytes",
        "",
    ),
    Bad(
        "steps-and-tokens",
        "train:\n  steps: 10\n  tokens: 1.0e9\n",
        (2, 3),
        "train",
        "give either steps or tokens, not both",
        "",
    ),
    Bad(
        "extends-name-too-long",
        "name: x\nextends: " + "a" * 300 + ".yaml\n",
        (2, 10),
        "extends",
        "a name in the path is longer than 255 bytes (the file-system limit)",
        "short path relative to this file",
    ),
    Bad(
        "extends-with-nul",
        'extends: "base\\0.yaml"\n',
        (1, 10),
        "extends",
        "cannot extend 'base\\x00.yaml': the path contains a NUL character",
        "short path relative to this file",
    ),
    Bad(
        "extends-with-lone-surrogate",
        'extends: [ok.yaml, "b\\ud800.yaml"]\n',
        (1, 20),
        "",
        "'b\\ud800.yaml' contains a lone surrogate (a \\ud800-\\udfff escape), which no UTF-8 "
        "text can hold",
        "write the character itself",
    ),
    Bad(
        "host-memory-beyond-range",
        "cluster:\n  host_memory_gib: 1e308\n",
        (2, 20),
        "cluster.host_memory_gib",
        "expected a value <= 1048576.0, got 1e+308",
        "Host RAM per node",
    ),
    Bad(
        "gpu-memory-beyond-range",
        "cluster:\n  gpu: {name: a100-80gb, memory_gib: 1e300}\n",
        (2, 38),
        "cluster.gpu.memory_gib",
        "expected a value <= 1048576.0, got 1e+300",
        "Usable device memory (GiB)",
    ),
    Bad(
        "steps-with-401-digits",
        "train:\n  steps: " + "9" * 401 + "\n",
        (2, 10),
        "train.steps",
        "expected a value <= 1000000000, got a 401-digit integer",
        "at most 10**9",
    ),
    Bad(
        "seed-beyond-2-32",
        "train: {seed: 20000000000000}\n",
        (1, 15),
        "train.seed",
        "expected a value < 4294967296, got 20000000000000",
        "below 2**32",
    ),
    Bad(
        "seq-len-one",
        "train:\n  seq_len: 1\n",
        (2, 12),
        "train.seq_len",
        "expected a value >= 2, got 1",
        "a 1-token sequence has no target",
    ),
    Bad(
        "name-too-long",
        "name: " + "a" * 300 + "\n",
        (1, 7),
        "name",
        "expected at most 64 characters, got 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa... (300 characters)",
        "at most 64 characters; names the output folder",
    ),
    Bad(
        "workers-uncapped",
        "data:\n  workers: 100000000\n",
        (2, 12),
        "data.workers",
        "expected a value <= 1024 or 'auto', got 100000000",
        "Processes for tokenizing, at most 1024",
    ),
    Bad(
        "shard-size-beyond-range",
        'data: {shard_size: "' + "9" * 400 + 'GB"}\n',
        (1, 20),
        "data.shard_size",
        "is larger than 1TB",
        "",
    ),
    Bad(
        "byte-level-bpe-too-small",
        "model: {vocab_size: 256}\ndata:\n  tokenizer: {kind: bpe, vocab_size: 256}\n",
        (3, 38),
        "data.tokenizer.vocab_size",
        "data.tokenizer.vocab_size = 256 is too small: a byte-level bpe has a token for each of "
        "the 256 byte values besides its 4 special tokens (<pad>, <eos>, <unk>, <mask>), so at "
        "least 260",
        "data.tokenizer.vocab_size >= 260",
    ),
    Bad(
        "model-vocab-too-small-for-default-tokenizer",
        "model:\n  vocab_size: 256\n",
        (2, 15),
        "model.vocab_size",
        "model.vocab_size = 256 is too small for the bpe tokenizer, whose size follows it "
        "(data.tokenizer.vocab_size is not set)",
        "set model.vocab_size >= 260",
    ),
    Bad(
        "min-lr-above-lr",
        "train:\n  optimizer: {lr: 1.0e-4}\n  schedule: {min_lr: 1.0e-3}\n",
        (3, 22),
        "train.schedule.min_lr",
        "train.schedule.min_lr = 0.001 exceeds train.optimizer.lr = 0.0001",
        "set train.schedule.min_lr <= 0.0001",
    ),
    Bad(
        "warmup-beyond-steps",
        "train:\n  steps: 100\n  schedule: {warmup_steps: 2000}\n",
        (3, 28),
        "train.schedule.warmup_steps",
        "train.schedule.warmup_steps = 2000 exceeds the run's 100 steps (train.steps)",
        "warmup_steps <= 100",
    ),
    Bad(
        "tokens-make-too-many-steps",
        "train: {tokens: 1.0e16, seq_len: 2, global_batch_size: 1}\n",
        (1, 17),
        "train.tokens",
        "makes 5000000000000000 steps",
        "lower train.tokens",
    ),
    Bad(
        "no-layout-splits-the-batch",
        "cluster:\n  nodes: 4096\ntrain:\n  global_batch_size: 480\n",
        (4, 22),
        "train.global_batch_size",
        "train.global_batch_size = 480 cannot be split over the data-parallel replicas of any "
        "layout of the 32768 GPUs (cluster.nodes × gpus_per_node = 4096 × 8): data = GPUs / "
        "(tensor × pipeline) is one of 1024, 2048, 4096, 8192, 16384, 32768, and must divide it",
        "nearest valid global_batch_size: 1024",
    ),
    Bad(
        "cluster-beyond-range",
        "cluster: {nodes: 65536, gpus_per_node: 1024}\n",
        (1, 18),
        "cluster.nodes",
        "= 67108864 GPUs, more than the 1048576 llmspec plans for",
        "lower cluster.nodes",
    ),
    Bad(
        "sweep-path-misspelt",
        "sweep:\n  params:\n    train.optimizr.lr: {log_uniform: [1.0e-4, 1.0e-2]}\n",
        (3, 24),
        "sweep.params.train.optimizr.lr",
        "train.optimizr.lr names no value of the spec",
        "write a dotted path to a scalar field",
    ),
    Bad(
        "sweep-path-is-a-section",
        "sweep:\n  params:\n    train: {choice: [1, 2]}\n",
        (3, 12),
        "sweep.params.train",
        "train names no value of the spec",
        "e.g. train.optimizer.lr",
    ),
    Bad(
        "sweep-range-on-a-name",
        "sweep:\n  params:\n    model.arch: {uniform: [0.0, 1.0]}\n",
        (3, 17),
        "sweep.params.model.arch",
        "model.arch is not a real number, so it cannot be drawn from a continuous range",
        "use int: [low, high] or choice",
    ),
    Bad(
        "sweep-structural-range",
        "sweep:\n  params:\n    model.dropout: {uniform: [0.0, 0.2]}\n",
        (3, 20),
        "sweep.params.model.dropout",
        "model.dropout changes the plan or the generated project, so every value is planned",
        "use choice: [...] (or int: [low, high]); continuous ranges are for train.optimizer.lr",
    ),
    Bad(
        "sweep-metric-not-logged",
        "sweep:\n  metric: val_los\n  params:\n    train.optimizer.lr: {uniform: [0.1, 0.2]}\n",
        (2, 11),
        "sweep.metric",
        "sweep.metric val_los is not written to metrics.jsonl by a causal_lm run, which logs",
        "did you mean val_loss?",
    ),
    Bad(
        "sweep-too-many-variants",
        "sweep:\n  params:\n    model.d_model: {int: [64, 1024]}\n",
        (3, 5),
        "sweep.params",
        "the structural parameters make 961 variants, more than the 64 a build plans",
        "fewer values per structural parameter",
    ),
    Bad(
        "yaml-11-octal",
        "model:\n  n_layers: 010\n",
        (2, 13),
        "",
        "010 has a leading zero: YAML 1.1 reads it as octal, YAML 1.2 as decimal; write 10",
        "",
    ),
    Bad(
        "yaml-11-sexagesimal",
        "train:\n  steps: 1:30\n",
        (2, 10),
        "train.steps",
        "expected an integer, got '1:30'",
        "specs are read as YAML 1.2: numbers have no '_' separators, ':' (sexagesimal)",
    ),
    Bad(
        "yaml-syntax",
        "model:\n  d_model: 768\n   n_layers: 12\n",
        (3, 12),
        "",
        "YAML syntax error",
        "check indentation",
    ),
    Bad(
        "duplicate-key",
        "model:\n  d_model: 768\n  d_model: 512\n",
        (3, 3),
        "",
        "duplicate key 'd_model' (first given on line 2)",
        "silently keep only the last",
    ),
    Bad(
        "top-level-list",
        "- name: x\n- model: {}\n",
        (1, 1),
        "",
        "a spec is a mapping of sections",
        "specs/tiny-cpu.yaml",
    ),
    Bad(
        "empty-file",
        "# nothing but a comment\n",
        (1, 1),
        "",
        "the file is empty",
        "specs/tiny-cpu.yaml",
    ),
]

LINE = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<col>\d+): error: (?P<rest>.*)$")


def run_validate(path, capsys) -> tuple[int, str]:
    code = main(["validate", str(path)])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_spec_is_located_with_field_and_hint(case: Bad, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # one problem per line, no wrapping
    spec = tmp_path / "spec.yaml"
    spec.write_text(case.yaml)
    code, err = run_validate(spec, capsys)
    assert code == 2, err
    assert "Traceback" not in err
    heads = [m for m in map(LINE.match, err.splitlines()) if m]
    assert heads, err
    line, col = case.where
    match = [
        m for m in heads if (int(m["line"]), int(m["col"]), m["file"]) == (line, col, str(spec))
    ]
    assert match, f"no problem at {spec}:{line}:{col}\n{err}"
    rest = match[0]["rest"]
    assert case.message in rest, err
    if case.field:
        assert rest.startswith(case.field + ":") or rest.startswith(case.field + " "), rest
    if case.hint:
        assert any(case.hint in h for h in err.splitlines() if h.startswith("  hint: ")), err


def test_every_problem_is_reported_at_once(tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "name: Bad Name\nmodel:\n  n_layer: 3\n  arch: gtp\ntrain:\n  optimizer: {lr: 0}\n"
        "cluster:\n  gpu: a100-80g\n"
    )
    code, err = run_validate(spec, capsys)
    assert code == 2
    located = [m for m in map(LINE.match, err.splitlines()) if m]
    assert [(int(m["line"]), int(m["col"])) for m in located] == [
        (1, 7),
        (3, 3),
        (4, 9),
        (6, 19),
        (8, 8),
    ]
    assert "5 problems found" in err


def test_cross_field_problems_are_reported_beside_field_errors(tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "model:\n  n_layer: 3\n  n_heads: 32\n  d_model: 4096\n"
        "train:\n  seq_len: 8192\n  optimizer: {lr: 0}\nparallel: {tensor: 3}\n"
    )
    code, err = run_validate(spec, capsys)
    assert code == 2
    fields = [m["rest"].split(":")[0].split(" ")[0] for m in map(LINE.match, err.splitlines()) if m]
    assert fields == [
        "model.n_layer",
        "train.seq_len",
        "train.optimizer.lr",
        "parallel.tensor",  # does not divide n_heads = 32
        "parallel.tensor",  # does not divide the 8 GPUs
    ]


def test_no_cross_field_problem_rests_on_an_invalid_value(tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    # n_heads is invalid, so the default 12 stands in: neither 1000 % 12 nor 12 % 8 may be
    # reported (tensor 8 itself fits the 8 GPUs)
    spec.write_text("model:\n  n_heads: twelve\n  d_model: 1000\nparallel: {tensor: 8}\n")
    code, err = run_validate(spec, capsys)
    assert code == 2
    located = [m for m in map(LINE.match, err.splitlines()) if m]
    assert [(int(m["line"]), m["rest"].split(":")[0]) for m in located] == [(2, "model.n_heads")]


def test_source_line_and_caret_point_at_the_value(tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text("parallel:\n  tensor: 3\nmodel: {n_heads: 32, d_model: 4096}\n")
    _, err = run_validate(spec, capsys)
    lines = err.splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith(f"{spec}:2:11"))
    assert lines[i + 1].endswith("|   tensor: 3")
    caret = lines[i + 2]
    assert caret.index("^") == lines[i + 1].index("3")


def test_one_bad_file_fails_the_run_but_good_ones_are_reported(tmp_path, capsys, root):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {n_layers: 0}\n")
    code = main(["validate", str(root / "specs/tiny-cpu.yaml"), str(bad)])
    err = capsys.readouterr().err
    assert code == 2
    assert "ok  " in err and "tiny-cpu.yaml" in err
    assert f"{bad}:1:19: error: model.n_layers: expected a value > 0, got 0" in err
    assert "1 of 2 specs failed" in err


def test_validate_json_lists_problems_for_machines(tmp_path, capsys, root):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  n_layer: 3\n")
    code = main(["validate", "--json", str(root / "specs/tiny-cpu.yaml"), str(bad)])
    captured = capsys.readouterr()
    assert code == 2
    good, broken = json.loads(captured.out)
    assert good == {"path": str(root / "specs/tiny-cpu.yaml"), "ok": True, "problems": []}
    (problem,) = broken["problems"]
    assert broken["ok"] is False
    assert {k: problem[k] for k in ("file", "line", "col", "field", "code")} == {
        "file": str(bad),
        "line": 2,
        "col": 3,
        "field": "model.n_layer",
        "code": "unknown-field",
    }


# ----------------------------------------------------------------------------- plain output
def test_line_100_is_not_an_emoji_code(tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text("\n" * 99 + "model: {n_layer: 1}\n")
    _, err = run_validate(spec, capsys)
    assert f"{spec}:100:9: error: model.n_layer: unknown field" in err
    assert "💯" not in err


def test_values_and_paths_are_printed_as_written_not_as_markup_or_emoji(tmp_path, capsys):
    spec = tmp_path / "[bold]spec :fire:.yaml"
    spec.write_text('model: {arch: ":fire: [red]x[/red]"}\n')
    _, err = run_validate(spec, capsys)
    assert f"{spec}:1:15: error: model.arch: expected one of 'gpt', 'llama', 'bert', got " in err
    assert "':fire: [red]x[/red]'" in err
    assert "🔥" not in err
    good = tmp_path / "[bold]ok :fire:.yaml"
    good.write_text("name: ok\n")
    _, err = run_validate(good, capsys)
    assert err.startswith(f"ok  {good}  (ok: gpt")


def test_control_characters_in_keys_are_shown_escaped(tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text('model: {"\\e[31mred\\u202e\\x07": 1}\n')
    _, err = run_validate(spec, capsys)
    assert f"{spec}:1:9: error: model.\\x1b[31mred\\u202e\\x07: unknown field" in err
    assert not any(c in err for c in "\x1b\u202e\x07")


def test_a_user_error_keeps_its_line_breaks_and_escapes_the_rest(capsys):
    from llmspec.cli.output import print_error
    from llmspec.errors import UserError

    print_error(UserError("these files block it:\n  a\x1b[2J.txt\n  :fire: [red]b[/]"))
    assert capsys.readouterr().err == (
        "error: these files block it:\n  a\\x1b[2J.txt\n  :fire: [red]b[/]\n"
    )
