"""Loading: extends, presets, environment interpolation, positions, and hostile input."""

from __future__ import annotations

import os

import pytest

from llmspec.errors import SpecError
from llmspec.spec import source
from llmspec.spec.load import load_located, load_spec, load_spec_text
from llmspec.spec.presets import PRESETS
from llmspec.spec.schema import MAX_BATCH, MAX_GPUS_PER_NODE, MAX_HEADS, MAX_VOCAB, MAX_WIDTH


def problems_of(path, **kw):
    with pytest.raises(SpecError) as exc:
        load_spec(path, **kw)
    return exc.value.problems


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ----------------------------------------------------------------------------- extends
def test_extends_deep_merges_child_wins_lists_replaced(tmp_path):
    write(
        tmp_path / "base.yaml",
        "name: base\nmodel: {n_layers: 4, d_model: 128, n_heads: 4}\n"
        "data:\n  sources: [{path: a/*.txt}, {path: b/*.txt}]\n"
        "train: {optimizer: {lr: 1.0e-3, weight_decay: 0.2}}\n",
    )
    child = write(
        tmp_path / "sub" / "child.yaml",
        "extends: ../base.yaml\nname: child\nmodel: {n_layers: 2}\n"
        "data:\n  sources: [{path: c/*.txt}]\ntrain: {optimizer: {lr: 5.0e-4}}\n",
    )
    spec = load_spec(child)
    assert spec.name == "child"
    assert (spec.model.n_layers, spec.model.d_model, spec.model.n_heads) == (2, 128, 4)
    assert [s.path for s in spec.data.sources] == ["c/*.txt"]  # lists are replaced
    assert spec.train.optimizer.lr == 5.0e-4
    assert spec.train.optimizer.weight_decay == 0.2  # merged from the base
    assert spec.extends is None  # applied, not carried


def test_extends_list_applies_in_order_then_the_file(tmp_path):
    write(tmp_path / "a.yaml", "model: {n_layers: 3, d_model: 256}\n")
    write(tmp_path / "b.yaml", "model: {n_layers: 5}\n")
    child = write(tmp_path / "c.yaml", "extends: [a.yaml, b.yaml]\nmodel: {n_heads: 4}\n")
    loaded = load_located(child)
    m = loaded.spec.model
    assert (m.n_layers, m.d_model, m.n_heads) == (5, 256, 4)
    assert loaded.files == (str(child), str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml"))


def test_problem_in_base_is_located_in_the_base(tmp_path):
    write(tmp_path / "base.yaml", "name: base\nmodel:\n  n_heads: 5\n")
    child = write(tmp_path / "child.yaml", "extends: base.yaml\nmodel: {d_model: 768}\n")
    (p,) = problems_of(child)
    assert (p.file, p.line, p.col, p.field) == (str(tmp_path / "base.yaml"), 3, 12, "model.n_heads")


def test_extends_cycle_names_the_cycle(tmp_path):
    write(tmp_path / "a.yaml", "extends: b.yaml\n")
    write(tmp_path / "b.yaml", "name: b\nextends: a.yaml\n")
    (p,) = problems_of(tmp_path / "a.yaml")
    a, b = str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml")
    assert p.message == f"extends cycle: {a} -> {b} -> {a}"
    assert (p.file, p.line, p.col) == (b, 2, 10)


def test_extends_itself_is_a_cycle(tmp_path):
    write(tmp_path / "a.yaml", "extends: [a.yaml]\n")
    (p,) = problems_of(tmp_path / "a.yaml")
    assert p.code == "extends-cycle" and p.field == "extends[0]"


def test_missing_extends_target_is_located_at_the_extends_line(tmp_path):
    child = write(tmp_path / "child.yaml", "name: x\nextends: [nope.yaml]\nmodel: {n_layer: 1}\n")
    problems = problems_of(child)
    assert [(p.line, p.col, p.code) for p in problems] == [
        (2, 11, "extends-missing"),
        (3, 9, "unknown-field"),  # the rest of the file is still checked
    ]
    assert "nope.yaml" in problems[0].message


def test_diamond_extends_is_not_a_cycle(tmp_path):
    write(tmp_path / "root.yaml", "model: {n_layers: 2}\n")
    write(tmp_path / "l.yaml", "extends: root.yaml\nmodel: {d_model: 64}\n")
    write(tmp_path / "r.yaml", "extends: root.yaml\nmodel: {n_heads: 4}\n")
    spec = load_spec(write(tmp_path / "top.yaml", "extends: [l.yaml, r.yaml]\n"))
    assert (spec.model.n_layers, spec.model.d_model, spec.model.n_heads) == (2, 64, 4)


# ----------------------------------------------------------------------------- environment
def test_extends_path_expands_environment_variables(tmp_path):
    write(tmp_path / "bases" / "base.yaml", "model: {n_layers: 7}\n")
    child = write(
        tmp_path / "child.yaml", "extends: ${BASES}/base.yaml\nmodel: {d_model: 64, n_heads: 4}\n"
    )
    assert load_spec(child, env={"BASES": str(tmp_path / "bases")}).model.n_layers == 7
    default = write(tmp_path / "d.yaml", "extends: ${UNSET_DIR:-bases}/base.yaml\n")
    assert load_spec(default, env={}).model.n_layers == 7


def test_unknown_variable_in_extends_is_located(tmp_path):
    child = write(tmp_path / "child.yaml", "name: x\nextends: ${NO_SUCH_DIR}/base.yaml\n")
    (p,) = problems_of(child, env={})
    assert (p.line, p.col, p.field, p.code) == (2, 10, "extends", "env")
    assert "NO_SUCH_DIR is not set" in p.message and "${NO_SUCH_DIR:-" in p.hint


def test_data_paths_keep_variables_as_written(tmp_path):
    spec = load_spec_text(
        "data:\n  sources: [{path: '${CORPUS:-corpus}/**/*.txt'}, {path: '${PYTHON_STDLIB}/*.py'}]\n"
        "  filters: {blocklist: '${HOME}/words.txt'}\n",
        env={},
    )
    assert [s.path for s in spec.data.sources] == [
        "${CORPUS:-corpus}/**/*.txt",
        "${PYTHON_STDLIB}/*.py",
    ]
    assert spec.data.filters.blocklist == "${HOME}/words.txt"


# ----------------------------------------------------------------------------- presets
def test_preset_fills_model_and_explicit_fields_win():
    spec = load_spec_text("model:\n  preset: llama2-7b\n  n_layers: 2\ntrain: {seq_len: 4096}\n")
    m = spec.model
    assert (m.n_layers, m.d_model, m.d_ff, m.vocab_size, m.max_seq_len) == (
        2,
        4096,
        11008,
        32000,
        4096,
    )
    assert (m.position, m.norm, m.activation, m.bias, m.tie_embeddings) == (
        "rope",
        "rmsnorm",
        "swiglu",
        False,
        False,
    )
    assert m.preset == "llama2-7b"


def test_value_from_a_preset_is_located_at_the_preset_line(tmp_path):
    spec = write(
        tmp_path / "s.yaml", "name: s\nmodel:\n  preset: gpt2-small\nparallel: {tensor: 8}\n"
    )
    # gpt2-small has 12 heads: tensor 8 does not divide them; the heads come from line 3
    (p,) = problems_of(spec)
    assert (p.field, p.line) == ("parallel.tensor", 4)
    assert "model.n_heads = 12" in p.message


def test_preset_in_base_with_override_in_child(tmp_path):
    write(tmp_path / "base.yaml", "model: {preset: gpt2-small}\n")
    spec = load_spec(write(tmp_path / "c.yaml", "extends: base.yaml\nmodel: {n_layers: 6}\n"))
    assert (spec.model.n_layers, spec.model.d_model, spec.model.preset) == (6, 768, "gpt2-small")


def _params(m: dict) -> int:
    """Parameter count of a GPT/Llama decoder from its preset (independent of the planner)."""
    d, ff, v, heads = m["d_model"], m["d_ff"], m["vocab_size"], m["n_heads"]
    kv = m.get("n_kv_heads", heads)
    hd = d // heads
    bias = m["bias"]
    norm = 2 * d if m["norm"] == "layernorm" else d
    attn = d * (d + 2 * kv * hd) + d * d + (d + 2 * kv * hd + d if bias else 0)
    mlp = (3 if m["activation"] == "swiglu" else 2) * d * ff + (ff + d if bias else 0)
    embed = v * d + (m["max_seq_len"] * d if m["position"] == "learned" else 0)
    head = 0 if m["tie_embeddings"] else v * d
    return embed + m["n_layers"] * (attn + mlp + 2 * norm) + norm + head


@pytest.mark.parametrize(
    "name,published",
    [
        # HF model cards / safetensors metadata of each checkpoint
        ("gpt2-small", 124_439_808),
        ("gpt2-medium", 354_823_168),
        ("gpt2-large", 774_030_080),
        ("gpt2-xl", 1_557_611_200),
        ("llama2-7b", 6_738_415_616),
        ("llama2-13b", 13_015_864_320),
        ("llama2-70b", 68_976_648_192),
        ("llama3-8b", 8_030_261_248),
        ("mistral-7b", 7_241_732_096),
    ],
)
def test_preset_figures_give_the_published_parameter_count(name, published):
    assert _params(PRESETS[name]) == published


def test_gpt3_preset_matches_the_paper():
    m = PRESETS["gpt3-175b"]
    assert (m["n_layers"], m["d_model"], m["n_heads"], m["max_seq_len"], m["vocab_size"]) == (
        96,
        12288,
        96,
        2048,
        50257,
    )
    assert m["d_model"] // m["n_heads"] == 128  # Table 2.1: d_head 128
    assert round(_params(m) / 1e9) == 175


def test_bert_base_preset():
    m = PRESETS["bert-base"]
    assert (m["norm_position"], m["type_vocab_size"], m["norm_eps"], m["max_seq_len"]) == (
        "post",
        2,
        1e-12,
        512,
    )


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_is_a_valid_model(name):
    seq = min(PRESETS[name]["max_seq_len"], 1024)
    objective = "masked_lm" if PRESETS[name]["arch"] == "bert" else "causal_lm"
    text = f"model: {{preset: {name}}}\ntrain: {{seq_len: {seq}, objective: {objective}}}\n"
    text += "data: {tokenizer: {vocab_size: 4096}}\n"
    assert load_spec_text(text).model.preset == name


def test_tiny_presets_alone_are_valid_specs():
    for name in ("tiny-gpt", "tiny-llama"):
        assert load_spec_text(f"model: {{preset: {name}}}\n").model.d_model == 64


# ----------------------------------------------------------------------------- YAML details
def test_yaml_12_floats_are_numbers():
    spec = load_spec_text("train:\n  tokens: 3.0e11\n  optimizer: {lr: 1e-3, eps: 1E-8}\n")
    assert spec.train.tokens == 3.0e11
    assert (spec.train.optimizer.lr, spec.train.optimizer.eps) == (1e-3, 1e-8)


@pytest.mark.parametrize(
    "text,value",
    [
        ("10", 10),
        ("-3", -3),
        ("0", 0),
        ("0o17", 15),
        ("0x1F", 31),
        ("1e-3", 1e-3),
        (".5", 0.5),
        ("+1.5E+3", 1500.0),
        ("1:30", "1:30"),  # YAML 1.1: 90
        ("0b11", "0b11"),  # YAML 1.1: 3
        ("1_000", "1_000"),  # YAML 1.1: 1000
        ("12abc", "12abc"),
    ],
)
def test_numbers_resolve_by_the_yaml_12_core_schema(text, value):
    data = source.read_yaml_text(f"a: {text}\n", "x.yaml").data["a"]
    assert (type(data), data) == (type(value), value)


def test_a_section_with_every_line_commented_out_means_defaults():
    spec = load_spec_text("name: x\nparallel:\n  # tensor: 2\ntrain:\n")
    assert spec.parallel.tensor == "auto" and spec.train.seq_len == 1024


def test_yaml_merge_keys_work_and_own_keys_win():
    spec = load_spec_text("model:\n  <<: {n_layers: 2, d_model: 64, n_heads: 4}\n  n_layers: 3\n")
    assert (spec.model.n_layers, spec.model.d_model) == (3, 64)


@pytest.mark.parametrize(
    "text,fragment",
    [
        ("", "the file is empty"),
        ("\x00\x01junk", "not a YAML text file"),
        ("name: x\n---\nname: y\n", "expected a single document"),
        ("42\n", "not the single value 42"),
        ("[" * 5000, "nested"),
        ("model: " + "[" * 200 + "]" * 200 + "\n", "nested more than"),
        ("model: {n_layers: " + "9" * 5000 + "}\n", "cannot read this number"),
        ("model: {n_layers: 1e999}\n", "expected an integer, got inf"),
        ("train: {tokens: 1e999}\n", "expected a finite number"),
        ("train: {tokens: .nan}\n", "expected a finite number"),
        ("model: !!python/object:os.system {}\n", "unsupported YAML tag"),
        ("model: {d_model: !!binary aGVsbG8=}\n", "expected an integer"),
        ("? [a, b]\n: 1\n", "a key must be a plain word"),
        ("{1: 2}\n", "is not a name"),
        (
            "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
            "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c]\n"
            "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e]\n",
            "more than 100000 values",
        ),
    ],
)
def test_hostile_text_gives_located_problems(text, fragment):
    with pytest.raises(SpecError) as exc:
        load_spec_text(text, "junk.yaml")
    problems = exc.value.problems
    assert problems and all(p.file == "junk.yaml" for p in problems)
    assert any(fragment in p.message for p in problems), [p.format() for p in problems]


def test_binary_file_and_directory_and_missing_file(tmp_path):
    binary = tmp_path / "model.bin"
    binary.write_bytes(bytes(range(256)) * 4)
    (p,) = problems_of(binary)
    assert "not UTF-8" in p.message and (p.line, p.col) == (2, 118)  # first byte 0x80
    (p,) = problems_of(tmp_path)
    assert p.code == "not-a-file"
    (p,) = problems_of(tmp_path / "absent.yaml")
    assert p.code == "no-file"


def test_huge_numbers_are_located_range_errors():
    big = 10**60
    with pytest.raises(SpecError) as exc:
        load_spec_text(
            f"model: {{d_model: {big}, n_heads: {big // 2}, vocab_size: {big}}}\n"
            f"train: {{global_batch_size: {big}}}\n"
            "cluster: {gpus_per_node: 100000000}\n"
        )
    problems = exc.value.problems
    assert [(p.line, p.field) for p in problems] == [
        (1, "model.d_model"),
        (1, "model.n_heads"),
        (1, "model.vocab_size"),
        (2, "train.global_batch_size"),
        (3, "cluster.gpus_per_node"),
    ]
    assert all(p.message.startswith("expected a value <= ") for p in problems)
    assert all(p.hint for p in problems)  # the field's description: what the number is


def test_the_largest_valid_numbers_do_not_hang_the_checks():
    spec = load_spec_text(
        f"model: {{d_model: {MAX_WIDTH}, n_heads: {MAX_HEADS}, vocab_size: {MAX_VOCAB}}}\n"
        f"train: {{global_batch_size: {MAX_BATCH}}}\n"
        f"cluster: {{gpus_per_node: {MAX_GPUS_PER_NODE}}}\n"
    )
    assert spec.model.d_model == MAX_WIDTH
    with pytest.raises(SpecError) as exc:
        load_spec_text(
            f"model: {{d_model: {MAX_WIDTH - 1}, n_heads: 7}}\nparallel: {{tensor: 3}}\n"
        )
    assert {p.field for p in exc.value.problems} == {"model.n_heads", "parallel.tensor"}


# ----------------------------------------------------------------------------- special files
@pytest.mark.timeout(30)
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_special_files_are_refused_without_reading_them(tmp_path):
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)  # opening it for reading would wait for a writer forever
    (p,) = problems_of(fifo)
    assert (p.code, p.message) == ("not-a-file", "is a FIFO (named pipe), not a regular file")
    (p,) = problems_of("/dev/zero")  # never ends
    assert (p.code, p.message) == ("not-a-file", "is a character device, not a regular file")
    (p,) = problems_of(tmp_path)
    assert (p.code, p.message) == ("not-a-file", "is a directory, not a spec file")
    (p,) = problems_of(tmp_path / "spec.yaml" / "x.yaml")
    assert p.code == "no-file"


def test_a_huge_file_is_rejected_after_reading_only_the_cap(tmp_path, monkeypatch):
    big = tmp_path / "big.yaml"
    with big.open("wb") as fh:
        fh.truncate(2 * 1024**3)  # sparse: 2 GiB of NUL bytes, no disk used
    read = []
    real_read = os.read

    def counting_read(fd, n):
        data = real_read(fd, n)
        read.append(len(data))
        return data

    monkeypatch.setattr(source.os, "read", counting_read)
    (p,) = problems_of(big)
    assert p.code == "too-large" and "larger than 4 MiB" in p.message
    assert sum(read) == source.MAX_BYTES + 1


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_extends_naming_a_special_file_is_located_at_the_extends_line(tmp_path):
    os.mkfifo(tmp_path / "pipe.yaml")
    child = write(tmp_path / "child.yaml", "extends: [pipe.yaml, /dev/zero, .]\n")
    problems = problems_of(child)
    pipe = str(tmp_path / "pipe.yaml")
    assert [(p.line, p.col, p.field) for p in problems] == [
        (1, 11, "extends[0]"),
        (1, 22, "extends[1]"),
        (1, 33, "extends[2]"),
    ]
    assert [p.message for p in problems] == [
        f"cannot extend {pipe!r}: is a FIFO (named pipe), not a regular file",
        "cannot extend '/dev/zero': is a character device, not a regular file",
        f"cannot extend {str(tmp_path)!r}: is a directory, not a spec file",
    ]


@pytest.mark.parametrize(
    "value,why",
    [
        ("a\ud800", "the path contains a character no file name can hold (a lone surrogate?)"),
        ("a\x00b", "the path contains a NUL character"),
        ("d/" * 2100, "the path is longer than 4096 bytes"),
    ],
)
def test_extends_path_from_the_environment_that_no_file_can_have_is_located(value, why):
    with pytest.raises(SpecError) as exc:
        load_spec_text("name: x\nextends: ${BASE}/base.yaml\n", "child.yaml", env={"BASE": value})
    (p,) = exc.value.problems
    assert (p.file, p.line, p.col, p.field) == ("child.yaml", 2, 10, "extends")
    assert p.message.endswith(why)
