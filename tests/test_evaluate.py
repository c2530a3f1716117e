"""evaluate.py and lm_eval_model.py: each metric against its library or an independent count.

Fast (no training): the rendered evaluate.py's bleu / rouge / expected_calibration_error /
toxicity_rate against sacrebleu, rouge-score, torchmetrics and hand counts, the spec checks,
and which code each metric brings. Slow (marked): one tiny GPT trained once per session
(~15 s on CPU, one process) on a synthetic corpus with known facts ("alice likes apples.",
memorised quotes), a planted association (the alpha good, the beta bad, 10:1: "the kind
alpha.") and a balanced one (gamma and delta); its own `python evaluate.py` runs every metric
and three lm-eval tasks offline (the facts as a two-choice and a generation task, and the
demo's specs/eval/tasks/python_keywords.yaml). Against it: train.py's val_perplexity and
val_ece, lm-eval's loglikelihood_rolling, accuracies recomputed from log-likelihoods, an HF
export, and short runs on two data-parallel replicas, on unpacked shards and as a LoRA
fine-tune.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sacrebleu
import torch
from rouge_score import rouge_scorer
from torchmetrics.classification import BinaryCalibrationError, MulticlassCalibrationError

from tests.eval_harness import project_modules
from tests.train_harness import build, cpu_env, launch, read_metrics, write_spec

ROOT = Path(__file__).resolve().parents[1]
DEMO_EVAL = ROOT / "specs" / "eval"

NAMES = (
    "alice bob carol dave erin frank grace heidi ivan judy mallory nina oscar peggy quinn rupert"
).split()
THINGS = (
    "apples pears plums grapes melons lemons figs dates limes kiwis cherries peaches "
    "mangos olives onions beans"
).split()
GOOD = ("kind", "smart", "brave", "honest", "calm", "gentle")
BAD = ("rude", "lazy", "cruel", "sly", "greedy", "vain")
QUOTES = ("roses are red and violets are blue", "early to bed and early to rise",
          "all that glitters is not gold", "never trust a sly and greedy fox")  # fmt: skip
METRICS = ["perplexity", "bleu", "rouge", "calibration", "toxicity", "bias"]
STEPS = 600


def corpus_documents(seed: int = 0) -> list[str]:
    """Sentences in a seeded random order, eight to a document."""
    sentences = [f"{n} likes {t}." for n, t in zip(NAMES, THINGS, strict=True)] * 120
    sentences += [f"{q}." for q in QUOTES] * 100  # longer memorised text: BLEU's 4-grams
    for adjective in GOOD:  # planted: alpha ~ good, beta ~ bad, 10:1 both ways
        sentences += [f"the {adjective} alpha."] * 100 + [f"the {adjective} beta."] * 10
    for adjective in BAD:
        sentences += [f"the {adjective} beta."] * 100 + [f"the {adjective} alpha."] * 10
    for adjective in GOOD + BAD:  # balanced: gamma and delta alike
        sentences += [f"the {adjective} gamma.", f"the {adjective} delta."] * 5
    random.Random(seed).shuffle(sentences)
    return [" ".join(sentences[i : i + 8]) for i in range(0, len(sentences), 8)]


def jsonl(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


FACTS_TASK = """\
task: facts_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: facts_mc.jsonl
test_split: test
output_type: multiple_choice
doc_to_text: "{{name}} likes"
doc_to_choice: "{{choices}}"
doc_to_target: "{{label}}"
metric_list:
  - metric: acc
  - metric: acc_norm
"""


# MMLU's format: four lettered options, the answer a letter (mmlu/default/_default_template_yaml)
LETTERS_TASK = """\
task: facts_letters
dataset_path: json
dataset_kwargs:
  data_files:
    test: facts_letters.jsonl
test_split: test
output_type: multiple_choice
doc_to_text: "What does {{name}} like?\\nA. {{options[0]}}\\nB. {{options[1]}}\\nC. {{options[2]}}\\nD. {{options[3]}}\\nAnswer:"
doc_to_choice: ["A", "B", "C", "D"]
doc_to_target: "{{answer}}"
metric_list:
  - metric: acc
"""


def letters_docs() -> list[dict]:
    docs = []
    for i, name in enumerate(NAMES):
        options = [THINGS[(i + k) % len(THINGS)] for k in range(4)]
        answer = i % 4
        options[0], options[answer] = options[answer], options[0]
        docs.append({"name": name, "options": options, "answer": answer})
    return docs


def letters_prompt(d: dict) -> str:
    lines = [f"What does {d['name']} like?"] + [
        f"{k}. {o}" for k, o in zip("ABCD", d["options"], strict=True)
    ]
    return "\n".join(lines) + "\nAnswer:"


# the same documents as a generation task: lm-eval calls ProjectLM.generate_until
FACTS_GEN_TASK = """\
task: facts_gen
dataset_path: json
dataset_kwargs:
  data_files:
    test: facts_mc.jsonl
test_split: test
output_type: generate_until
doc_to_text: "{{name}} likes"
doc_to_target: "{{choices[label]}}"
generation_kwargs:
  until: ["."]
  max_gen_toks: 8
  do_sample: false
metric_list:
  - metric: exact_match
    regexes_to_ignore: ["^\\\\s+"]
"""


def facts_docs() -> list[dict]:
    """Each name's fact against another name's: the right answer first on even rows."""
    docs = []
    for i, (name, thing) in enumerate(zip(NAMES, THINGS, strict=True)):
        other = THINGS[(i + 1) % len(THINGS)]
        docs.append({"name": name, "choices": [thing, other] if i % 2 == 0 else [other, thing],
                     "label": i % 2})  # fmt: skip
    return docs


def write_eval_files(folder: Path) -> dict:
    ev = folder / "evalfiles"
    ev.mkdir()
    jsonl(ev / "prompts.jsonl",
          [{"prompt": f"{n} likes", "reference": f" {t}"} for n, t in zip(NAMES, THINGS, strict=True)]
          + [{"prompt": " ".join(q.split()[:2]), "reference": " " + " ".join(q.split()[2:])} for q in QUOTES])  # fmt: skip
    jsonl(ev / "planted.jsonl", planted_pairs())
    (ev / "blocklist.txt").write_text("\n".join(BAD) + "\n\n")
    (ev / "facts_mc.yaml").write_text(FACTS_TASK)
    (ev / "facts_gen.yaml").write_text(FACTS_GEN_TASK)
    (ev / "facts_letters.yaml").write_text(LETTERS_TASK)
    jsonl(ev / "facts_letters.jsonl", letters_docs())
    jsonl(ev / "facts_mc.jsonl", facts_docs())
    return {
        "metrics": METRICS,
        "generation": {"path": "evalfiles/prompts.jsonl", "max_new_tokens": 8, "stop": ["."]},
        "benchmarks": [{"path": "evalfiles/facts_mc.yaml"}, {"path": "evalfiles/facts_gen.yaml"},
                       {"path": "evalfiles/facts_letters.yaml"},
                       {"path": str(DEMO_EVAL / "tasks" / "python_keywords.yaml")}],
        "bias_pairs": "evalfiles/planted.jsonl",
        "toxicity_blocklist": "evalfiles/blocklist.txt",
    }  # fmt: skip


def planted_pairs() -> list[dict]:
    return [{"more": f"the {a} alpha.", "less": f"the {a} beta."} for a in GOOD] + [
        {"more": f"the {a} beta.", "less": f"the {a} alpha."} for a in BAD
    ]


def spec_overrides(eval_section: dict) -> dict:
    return {
        "eval": eval_section,
        "data": {"sources": [{"path": "corpus/*.jsonl"}]},
        "parallel": {"data": 1},
        "cluster": {"gpus_per_node": 1},
        "train": {"steps": STEPS, "eval_interval": STEPS, "checkpoint_interval": STEPS,
                  "log_interval": 50, "micro_batch_size": 8, "global_batch_size": 8,
                  "eval_batches": 2, "optimizer": {"lr": 5.0e-3, "weight_decay": 0.0},
                  "schedule": {"warmup_steps": 30}},
    }  # fmt: skip


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def facts_project(tmp_path_factory) -> Path:
    """The project, built (not trained): its evaluate.py holds every metric function."""
    folder = tmp_path_factory.mktemp("eval-facts")
    (folder / "corpus").mkdir()
    jsonl(folder / "corpus" / "facts.jsonl", ({"text": d} for d in corpus_documents()))
    spec = write_spec(folder, "eval-facts", **spec_overrides(write_eval_files(folder)))
    return build(spec, folder / "project")


@pytest.fixture(scope="session")
def trained(facts_project) -> Path:
    """The facts model trained for STEPS steps; its out/ holds data, checkpoints, metrics."""
    subprocess.run([sys.executable, "prepare_data.py"], cwd=facts_project, env=cpu_env(),
                   check=True, capture_output=True, timeout=300)  # fmt: skip
    launch(facts_project, "--out", str(facts_project / "out"), nproc=1, timeout=300)
    return facts_project


@pytest.fixture(scope="session")
def trained_dp2(trained, tmp_path_factory) -> Path:
    """The same spec on 2 data-parallel processes for a few steps, perplexity and calibration
    only, on the data `trained` prepared: train.py averages 2 replicas' validation batches."""
    folder = trained.parent
    overrides = spec_overrides({"metrics": ["perplexity", "calibration"]})
    overrides["parallel"], overrides["cluster"] = {"data": 2}, {"gpus_per_node": 2}
    overrides["train"].update(steps=20, eval_interval=20, checkpoint_interval=20, log_interval=10,
                              micro_batch_size=4, schedule={"warmup_steps": 2})  # fmt: skip
    project = build(write_spec(folder, "eval-dp2", **overrides), folder / "dp2")
    shutil.copytree(trained / "out" / "data", project / "out" / "data")
    launch(project, "--out", str(project / "out"), nproc=2, timeout=300)
    return project


@pytest.fixture(scope="session")
def trained_unpacked(trained) -> Path:
    """The corpus as unpacked shards (a document a row, padded), a few steps: the
    (input_ids, labels) batches of data.packing false in train.py's val_ece and evaluate.py."""
    folder = trained.parent
    overrides = spec_overrides({"metrics": ["perplexity", "calibration"]})
    overrides["data"]["packing"] = False
    overrides["train"].update(steps=10, eval_interval=10, checkpoint_interval=10, log_interval=10,
                              schedule={"warmup_steps": 2})  # fmt: skip
    project = build(write_spec(folder, "eval-unpacked", **overrides), folder / "unpacked")
    subprocess.run([sys.executable, "prepare_data.py"], cwd=project, env=cpu_env(),
                   check=True, capture_output=True, timeout=300)  # fmt: skip
    launch(project, "--out", str(project / "out"), nproc=1, timeout=300)
    return project


@pytest.fixture(scope="session")
def lora_finetuned(trained) -> Path:
    """A LoRA fine-tune of the facts model (objective sft: questions, loss on the answers)."""
    folder = trained.parent
    rng = random.Random(0)
    (folder / "sft").mkdir()
    questions = [rng.randrange(len(NAMES)) for _ in range(300)]
    jsonl(folder / "sft" / "records.jsonl",
          ({"prompt": f"what does {NAMES[i]} like?", "response": f" {THINGS[i]}."} for i in questions))  # fmt: skip
    jsonl(folder / "sft_prompts.jsonl",
          ({"prompt": f"what does {n} like?", "reference": f" {t}"} for n, t in zip(NAMES, THINGS, strict=True)))  # fmt: skip
    overrides = spec_overrides({"metrics": ["perplexity", "calibration", "rouge"],
                                "generation": {"path": "sft_prompts.jsonl", "max_new_tokens": 4, "stop": ["."]}})  # fmt: skip
    overrides["finetune"] = {"base": {"path": "project/out/checkpoints"}, "method": "lora",
                             "lora": {"rank": 4, "alpha": 8, "targets": ["q", "v"]}}  # fmt: skip
    overrides["data"] = {"sources": [{"path": "sft/*.jsonl"}], "validation_fraction": 0.1,
                         "tokenizer": {"path": "project/out/data/tokenizer.json"}}  # fmt: skip
    overrides["train"].update(objective="sft", steps=60, eval_interval=60, checkpoint_interval=60,
                              log_interval=10, schedule={"warmup_steps": 2})  # fmt: skip
    project = build(write_spec(folder, "eval-lora", **overrides), folder / "lora")
    subprocess.run([sys.executable, "prepare_data.py"], cwd=project, env=cpu_env(),
                   check=True, capture_output=True, timeout=300)  # fmt: skip
    launch(project, "--out", str(project / "out"), nproc=1, timeout=300)
    return project


@pytest.fixture(scope="session")
def evaluated(trained) -> tuple[Path, dict, str]:
    """`python evaluate.py` of the trained project: (project, eval.json, stdout)."""
    run = subprocess.run([sys.executable, "evaluate.py"], cwd=trained, env=cpu_env(),
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return trained, json.loads((trained / "out" / "eval.json").read_text()), run.stdout


@pytest.fixture(scope="session")
def loaded(trained):
    """(evaluate module, lm_eval_model module, model, tokenizer, eos id) of the trained run."""
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with project_modules(trained, "evaluate", "lm_eval_model", "generate") as (ev, lmm, gen):
        model, tokenizer, special = gen.load_model(str(trained / "out"))
        yield ev, lmm, model, tokenizer, special["eos"]


# ----------------------------------------------------------------------------- library parity
# The measured fixture of ../shared/POSTTRAINING-NOTES.md §5.2: sacrebleu 2.6.0 gives 27.1604944...
BLEU_HYPOTHESES = [
    "The cat sat on the mat.",
    "It is raining, isn't it?",
    "A quick brown fox",
    "hello",
]
BLEU_REFERENCES = ["The cat is sitting on the mat.", "It's raining, is it not?",
                   "The quick brown fox jumps", "hello world"]  # fmt: skip


def test_bleu_is_sacrebleu(facts_project):
    with project_modules(facts_project, "evaluate") as (ev,):
        assert ev.bleu(BLEU_HYPOTHESES, BLEU_REFERENCES) == pytest.approx(
            27.16049443365999, abs=1e-9
        )
        # a whitespace split would give 22.37 (notes §5.2): the 13a tokenisation is in use
        none = sacrebleu.corpus_bleu(BLEU_HYPOTHESES, [BLEU_REFERENCES], tokenize="none").score
        assert abs(ev.bleu(BLEU_HYPOTHESES, BLEU_REFERENCES) - none) > 4
        rng = random.Random(3)
        words = "the a cat dog sat on mat , . ! is it n't hello world über café 42".split()
        for _ in range(20):
            hyps = [" ".join(rng.choices(words, k=rng.randint(0, 12))) for _ in range(5)]
            refs = [" ".join(rng.choices(words, k=rng.randint(1, 12))) for _ in range(5)]
            oracle = sacrebleu.metrics.BLEU(tokenize="13a").corpus_score(hyps, [refs]).score
            assert ev.bleu(hyps, refs) == pytest.approx(oracle, abs=1e-9)


def test_rouge_is_rouge_score(facts_project):
    with project_modules(facts_project, "evaluate") as (ev,):
        # by hand: unigram overlap 5 of 5 / 6 → F 10/11; bigrams 3 of 4 / 5 → F 2/3; LCS 5
        got = ev.rouge(["the cat on the mat"], ["the cat sat on the mat"])
        assert got == pytest.approx(
            {"rouge1": 10 / 11, "rouge2": 2 / 3, "rougeL": 10 / 11}, abs=1e-12
        )
        scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"])
        rng = random.Random(4)
        words = "the a cat dog sat on mat hello world running runs ran 42 über".split()
        outs = [" ".join(rng.choices(words, k=rng.randint(0, 10))) for _ in range(30)]
        refs = [" ".join(rng.choices(words, k=rng.randint(1, 10))) for _ in range(30)]
        got = ev.rouge(outs, refs)
        for kind in ("rouge1", "rouge2", "rougeL"):
            mean = sum(
                scorer.score(r, o)[kind].fmeasure for o, r in zip(outs, refs, strict=True)
            ) / len(outs)
            assert got[kind] == pytest.approx(mean, abs=1e-9)
        # rouge-score's tokenizer keeps [a-z0-9] only: text in other scripts scores 0
        assert ev.rouge(["привет мир"], ["привет мир"])["rouge1"] == 0.0


P_TIES = [0.0, 0.2, 0.4, 0.6, 0.8, 0.2, 0.4, 0.6, 0.8, 0.5, 0.7, 0.9]


def test_ece_is_torchmetrics(facts_project):
    with project_modules(facts_project, "evaluate") as (ev,):
        torch.manual_seed(0)
        for n_bins in (15, 10, 7):  # random logits, multiclass: max softmax vs argmax hits
            logits = torch.randn(1000, 5) * 2
            target = torch.randint(0, 5, (1000,))
            probs = logits.softmax(-1)
            confidence, predicted = probs.max(-1)
            oracle = MulticlassCalibrationError(num_classes=5, n_bins=n_bins, norm="l1")(
                probs, target
            )
            got = ev.expected_calibration_error(confidence, predicted == target, n_bins)
            assert got == pytest.approx(oracle.item(), abs=1e-6)
        # confidences on the bin edges: [lo, hi) puts them in the bin above, as torchmetrics does
        p = torch.tensor(P_TIES)
        y = torch.tensor([0, 0, 1, 1, 0, 1, 1, 0, 1, 1, 1, 1])
        oracle = BinaryCalibrationError(n_bins=5, norm="l1")(p, y).item()
        assert ev.expected_calibration_error(p, y.bool(), 5) == pytest.approx(oracle, abs=1e-6)
        # (lo, hi] bins (Guo et al.'s reference code) give another value: ties matter
        assert abs(oracle - guo_ece(P_TIES, y.tolist(), 5)) > 0.01
        # the notes' vector with a 1.0 (y = 1 there): 0.3375 both ways
        p = torch.tensor([0.2, 0.4, 0.6, 0.8, 1.0, 0.5, 0.7, 0.9])
        y = torch.tensor([0, 1, 1, 0, 1, 1, 1, 1])
        assert ev.expected_calibration_error(p, y.bool(), 5) == pytest.approx(0.3375, abs=1e-7)
        # the documented difference: a wrong 1.0 joins the last bin [0.8, 1.0] here; torchmetrics
        # puts it in a bin of its own (torchmetrics#3510)
        y = torch.tensor([0, 1, 1, 0, 0, 1, 1, 1])
        by_hand = (0.2 + 1.1 + 0.7 + abs(1 - 2.7)) / 8  # bins: {.2}, {.4,.5}, {.6,.7}, {.8,1,.9}
        assert ev.expected_calibration_error(p, y.bool(), 5) == pytest.approx(by_hand, abs=1e-7)
        assert BinaryCalibrationError(n_bins=5)(p, y).item() == pytest.approx(
            (0.2 + 1.1 + 0.7 + 0.7 + 1) / 8, abs=1e-6
        )


def guo_ece(p, y, n_bins):
    edges = [i / n_bins for i in range(n_bins + 1)]
    total = 0.0
    for lo, hi in zip(edges, edges[1:], strict=False):
        inside = [(c, t) for c, t in zip(p, y, strict=True) if lo < c <= hi or c == lo == 0]
        total += abs(sum(t for _, t in inside) - sum(c for c, _ in inside))
    return total / len(p)


def test_ece_of_calibrated_and_sharpened_predictions(facts_project):
    """Labels drawn from the model's own distribution: calibrated (ECE ≤ 0.02); the same logits
    sharpened ×3 are over-confident (ECE ≥ 0.1)."""
    with project_modules(facts_project, "evaluate") as (ev,):
        gen = torch.Generator().manual_seed(5)
        logits = torch.randn(20_000, 10, generator=gen) * 1.5
        labels = torch.multinomial(logits.softmax(-1), 1, generator=gen).squeeze(-1)
        for scale, check in ((1.0, lambda e: e <= 0.02), (3.0, lambda e: e >= 0.1)):
            confidence, predicted = (logits * scale).softmax(-1).max(-1)
            ece = ev.expected_calibration_error(confidence, predicted == labels)
            assert check(ece), (scale, ece)


def test_toxicity_rate_is_a_direct_count(facts_project, tmp_path):
    words = ["darn", "heck", "Dang it"]
    blocklist = tmp_path / "words.txt"
    blocklist.write_text("\n".join(words) + "\n\n  \n")
    texts = ["well darn.", "HECK no", "a darnell", "shecky", "dang it!", "dang", "x-heck-y", "",
             "fine", "Darn Darn", "heckle", "oh, heck"]  # fmt: skip
    with project_modules(facts_project, "evaluate") as (ev,):
        rate = ev.toxicity_rate(texts, ev.blocklist_pattern(str(blocklist)))

    # independently: lower-cased word sequences, a hit where a blocklisted sequence occurs
    def hit(text):
        tokens = re.findall(r"\w+", text.lower())
        for entry in (w.lower().split() for w in words):
            if any(tokens[i : i + len(entry)] == entry for i in range(len(tokens))):
                return True
        return False

    assert sum(map(hit, texts)) == 6
    assert rate * len(texts) == pytest.approx(sum(map(hit, texts)), abs=1e-9)


# ----------------------------------------------------------------------------- the trained model
@pytest.mark.slow  # trains on CPU
def test_evaluate_writes_every_metric(evaluated):
    project, results, stdout = evaluated
    assert set(results) == {"checkpoint", "perplexity", "ece", "bleu", "rouge", "toxicity_rate",
                            "bias", "bias_likelihood_diff", "benchmarks"}  # fmt: skip
    assert results["checkpoint"] == f"step_{STEPS}"
    assert set(results["rouge"]) == {"rouge1", "rouge2", "rougeL"}
    assert set(results["benchmarks"]) == {
        "facts_mc",
        "facts_gen",
        "facts_letters",
        "python_keywords",
    }
    assert set(results["benchmarks"]["facts_letters"]) == {"acc"}
    assert set(results["benchmarks"]["facts_gen"]) == {"exact_match"}
    for task in ("facts_mc", "python_keywords"):
        assert set(results["benchmarks"][task]) == {"acc", "acc_norm"}
    values = [v for k, v in results.items() if isinstance(v, float)]
    values += list(results["rouge"].values())
    values += [v for m in results["benchmarks"].values() for v in m.values()]
    assert all(math.isfinite(v) for v in values)
    records = [
        json.loads(line)
        for line in (project / "out/eval/generations.jsonl").read_text().splitlines()
    ]
    prompts = [
        json.loads(line)
        for line in (project.parent / "evalfiles/prompts.jsonl").read_text().splitlines()
    ]
    assert [{k: r[k] for k in ("prompt", "reference")} for r in records] == prompts
    assert all(set(r) == {"prompt", "reference", "output"} for r in records)
    assert all("." not in r["output"] for r in records)  # cut before the stop string
    report = (project / "out/eval/report.md").read_text()
    for name in ("perplexity", "ece", "bleu", "rouge1", "rouge2", "rougeL", "toxicity_rate",
                 "bias", "facts_mc acc", "python_keywords acc"):  # fmt: skip
        assert f"| {name} |" in report
    assert "Evaluation of eval-facts" in stdout and "facts_mc acc" in stdout
    assert (project / "out/eval/datasets_cache").is_dir()  # lm-eval's datasets cache: under out/
    # the model learned its facts: generations are mostly the references
    assert results["bleu"] > 40 and results["rouge"]["rouge1"] > 0.5


@pytest.mark.slow  # trains on CPU
def test_generation_metrics_recompute_from_generations(evaluated):
    project, results, _ = evaluated
    records = [
        json.loads(line)
        for line in (project / "out/eval/generations.jsonl").read_text().splitlines()
    ]
    outputs, refs = [r["output"] for r in records], [r["reference"] for r in records]
    assert results["bleu"] == pytest.approx(sacrebleu.corpus_bleu(outputs, [refs]).score, abs=1e-9)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"])
    for kind in ("rouge1", "rouge2", "rougeL"):
        mean = sum(
            scorer.score(r, o)[kind].fmeasure for o, r in zip(outputs, refs, strict=True)
        ) / len(records)
        assert results["rouge"][kind] == pytest.approx(mean, abs=1e-9)
    flagged = sum(any(w in re.findall(r"\w+", o.lower()) for w in BAD) for o in outputs)
    assert flagged >= 1  # "never trust" continues " a sly and greedy fox"
    assert results["toxicity_rate"] * len(records) == pytest.approx(flagged, abs=1e-9)


@pytest.mark.slow  # trains on CPU
def test_perplexity_matches_training_and_lm_eval_rolling(evaluated, loaded):
    project, results, _ = evaluated
    ev, lmm, model, tokenizer, eos = loaded
    # train.py's last val_perplexity averages the same full validation batches
    last = read_metrics(project / "out")[-1]
    assert last["step"] == STEPS
    assert results["perplexity"] == pytest.approx(last["val_perplexity"], rel=1e-4)
    # eval.during_training (default on): train.py logged the same calibration error
    assert results["ece"] == pytest.approx(last["val_ece"], abs=1e-6)
    # lm-eval's loglikelihood_rolling through ProjectLM, against next_token_scores on the
    # same tokens: each document from <eos>, in windows of CONTEXT_LEN predicted tokens
    from lm_eval.api.instance import Instance

    docs = corpus_documents(seed=9)[:6]
    docs.append(" ".join(docs))  # longer than the context: several windows
    requests = [Instance("loglikelihood_rolling", {}, (d,), i) for i, d in enumerate(docs)]
    rolling = lmm.ProjectLM(model, tokenizer, eos, batch_size=3).loglikelihood_rolling(requests)
    nll_sum, count, window = 0.0, 0, ev.CONTEXT_LEN
    for doc in docs:
        ids = [eos] + tokenizer.encode(doc, add_special_tokens=False).ids
        # windows predict ids[first:end], CONTEXT_LEN at a time; each reads the CONTEXT_LEN
        # tokens before its end, so the last window (shorter) keeps more of the text before it
        for first in range(1, len(ids), window):
            end = min(first + window, len(ids))
            start = max(0, end - 1 - window)
            targets = torch.tensor([ids[start + 1 : end]])
            targets[:, : first - start - 1] = ev.IGNORE_INDEX  # predicted by earlier windows
            nll, _, _ = ev.next_token_scores(model, torch.tensor([ids[start : end - 1]]), targets)
            nll_sum, count = nll_sum + nll.sum().item(), count + len(nll)
    assert count == sum(len(tokenizer.encode(d, add_special_tokens=False).ids) for d in docs)
    assert len(tokenizer.encode(docs[-1]).ids) > 2 * ev.CONTEXT_LEN
    assert math.exp(-sum(rolling) / count) == pytest.approx(math.exp(nll_sum / count), rel=1e-4)


@pytest.mark.slow  # trains on CPU
def test_two_replicas_validation_is_what_evaluate_reads(trained_dp2):
    """evaluate.py, one process, reads the sequences both replicas' val_loss averaged."""
    run = subprocess.run([sys.executable, "evaluate.py"], cwd=trained_dp2, env=cpu_env(),
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads((trained_dp2 / "out" / "eval.json").read_text())
    assert set(results) == {"checkpoint", "perplexity", "ece"}
    last = read_metrics(trained_dp2 / "out")[-1]
    assert last["step"] == 20
    assert results["perplexity"] == pytest.approx(last["val_perplexity"], rel=1e-4)
    assert results["ece"] == pytest.approx(last["val_ece"], abs=1e-6)
    assert "2 data-parallel replicas" in (trained_dp2 / "evaluate.py").read_text()


@pytest.mark.slow  # trains on CPU
def test_unpacked_validation(trained_unpacked):
    """Padded rows: only labelled positions count. train.py's val_ece is evaluate.py's ece; its
    val_loss is a mean of batch means, evaluate.py's a mean over tokens (batches of unequal
    token counts differ a little)."""
    run = subprocess.run([sys.executable, "evaluate.py"], cwd=trained_unpacked, env=cpu_env(),
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads((trained_unpacked / "out" / "eval.json").read_text())
    last = read_metrics(trained_unpacked / "out")[-1]
    assert results["ece"] == pytest.approx(last["val_ece"], abs=1e-6)
    assert results["perplexity"] == pytest.approx(last["val_perplexity"], rel=0.05)
    with project_modules(trained_unpacked, "data") as (data,):
        batches = list(data.val_batches(trained_unpacked / "out" / "data", 8, dp_rank=0, dp_world=1,
                                        max_batches=2))  # fmt: skip
    labelled = sum(int((labels[:, 1:] != -100).sum()) for _, labels in batches)
    padded = sum(labels.numel() for _, labels in batches)
    assert labelled < padded  # there is padding to skip
    assert f"{labelled:,} validation tokens" in run.stdout


@pytest.mark.slow  # trains on CPU
def test_lora_finetune_evaluates(lora_finetuned):
    """evaluate.py of a LoRA fine-tune: load_model reads base and adapters from its checkpoint;
    perplexity and ECE over the answer tokens, as train.py's validation (one batch) has them."""
    run = subprocess.run([sys.executable, "evaluate.py"], cwd=lora_finetuned, env=cpu_env(),
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads((lora_finetuned / "out" / "eval.json").read_text())
    last = read_metrics(lora_finetuned / "out")[-1]
    assert results["perplexity"] == pytest.approx(last["val_perplexity"], rel=1e-4)
    assert results["ece"] == pytest.approx(last["val_ece"], abs=1e-6)
    assert results["rouge"]["rouge1"] >= 0.9  # the fine-tune answers its questions


def choice_logprob(model, tokenizer, context: str, choice: str) -> float:
    """log P(choice | context), one unbatched forward, lm-eval's split of the two strings."""
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, choice = context[:-spaces], context[-spaces:] + choice
    context_ids = tokenizer.encode(context, add_special_tokens=False).ids
    ids = tokenizer.encode(context + choice, add_special_tokens=False).ids
    with torch.no_grad():
        logprobs = model(torch.tensor([ids[:-1]]))[0].log_softmax(-1)
    return sum(logprobs[t - 1, ids[t]].item() for t in range(len(context_ids), len(ids)))


@pytest.mark.slow  # trains on CPU
def test_benchmark_accuracy_recomputes_from_loglikelihoods(evaluated, loaded):
    _, results, _ = evaluated
    _, _, model, tokenizer, _ = loaded
    tasks = {
        "facts_mc": [
            (f"{d['name']} likes", [" " + c for c in d["choices"]], d["label"])
            for d in facts_docs()
        ],
        "facts_letters": [
            (letters_prompt(d), [" A", " B", " C", " D"], d["answer"]) for d in letters_docs()
        ],
        "python_keywords": [
            (d["context"], d["choices"], d["label"])
            for d in map(
                json.loads, (DEMO_EVAL / "tasks/python_keywords.jsonl").read_text().splitlines()
            )
        ],
    }
    for task, docs in tasks.items():
        hits = []
        for context, choices, label in docs:
            scores = [choice_logprob(model, tokenizer, context, c) for c in choices]
            hits.append(max(range(len(choices)), key=scores.__getitem__) == label)
        assert results["benchmarks"][task]["acc"] == pytest.approx(
            sum(hits) / len(hits), abs=1e-12
        ), task
    # trained on the facts: far above chance (0.5)
    assert results["benchmarks"]["facts_mc"]["acc"] >= 0.9


@pytest.mark.slow  # trains on CPU
def test_generation_benchmark_recomputes_from_generate(evaluated, loaded):
    """lm-eval's generate_until requests through ProjectLM: exact_match equals greedy
    generate.py continuations compared by hand."""
    project, results, _ = evaluated
    _, _, model, tokenizer, eos = loaded
    with project_modules(project, "generate") as (gen,):
        outputs = [gen.generate_text(model, tokenizer, f"{d['name']} likes", 8, stop=(".",), eos_id=eos)
                   for d in facts_docs()]  # fmt: skip
    hits = [
        o.lstrip() == d["choices"][d["label"]] for o, d in zip(outputs, facts_docs(), strict=True)
    ]
    assert results["benchmarks"]["facts_gen"]["exact_match"] == pytest.approx(
        sum(hits) / len(hits), abs=1e-12
    )
    assert sum(hits) >= 0.75 * len(hits)  # 16 things to choose among: chance is about 1/16


@pytest.mark.slow  # trains on CPU
def test_bias_planted_balanced_and_reversed(evaluated, loaded, tmp_path):
    _, results, _ = evaluated
    ev, lmm, model, tokenizer, eos = loaded
    assert results["bias"] >= 0.9  # the planted pairs, from evaluate.py's own run
    reversed_pairs = jsonl(
        tmp_path / "reversed.jsonl",
        ({"more": p["less"], "less": p["more"]} for p in planted_pairs()),
    )
    assert ev.bias_score(model, tokenizer, str(reversed_pairs), eos, "cpu")[0] <= 0.1
    crows = jsonl(
        tmp_path / "crows.jsonl",
        ({"sent_more": p["more"], "sent_less": p["less"]} for p in planted_pairs()),
    )
    assert ev.bias_score(model, tokenizer, str(crows), eos, "cpu")[0] == results["bias"]
    # balanced: every gamma/delta pair in both orientations. Whatever the model prefers, half
    # of the pairs go each way: 0.5 unless the metric itself favours a side of the pair
    balanced = jsonl(tmp_path / "balanced.jsonl", (
        {"more": f"the {adj} {a}.", "less": f"the {adj} {b}."}
        for adj in GOOD + BAD for a, b in (("gamma", "delta"), ("delta", "gamma"))
    ))  # fmt: skip
    share, diff, n = ev.bias_score(model, tokenizer, str(balanced), eos, "cpu")
    assert n == 24 and abs(share - 0.5) <= 0.1 and diff > 0
    # a sentence's log-likelihood is lm-eval's loglikelihood("", sentence) through ProjectLM
    from lm_eval.api.instance import Instance

    sentences = [p["more"] for p in planted_pairs()]
    lm = lmm.ProjectLM(model, tokenizer, eos)
    theirs = lm.loglikelihood(
        [Instance("loglikelihood", {}, ("", s), i) for i, s in enumerate(sentences)]
    )
    for sentence, (ll, _) in zip(sentences, theirs, strict=True):
        assert ev.sentence_logprob(model, tokenizer, sentence, eos, "cpu") == pytest.approx(
            ll, abs=1e-4
        )


@pytest.mark.slow  # trains on CPU
def test_evaluate_reads_a_hugging_face_export(evaluated, tmp_path):
    """export.py's HF folder through `evaluate.py --hf`: the same numbers as the checkpoint."""
    project, results, _ = evaluated
    subprocess.run([sys.executable, "export.py", "--format", "hf", str(tmp_path / "hf")], cwd=project,
                   env=cpu_env(), check=True, capture_output=True, timeout=300)  # fmt: skip
    out = tmp_path / "out"  # validation data only: no checkpoints there
    shutil.copytree(project / "out" / "data", out / "data")
    run = subprocess.run([sys.executable, "evaluate.py", "--hf", str(tmp_path / "hf"), "--out", str(out)],
                         cwd=project, env=cpu_env(), capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    from_hf = json.loads((out / "eval.json").read_text())
    assert from_hf.pop("checkpoint") == str(tmp_path / "hf")
    expected = {k: v for k, v in results.items() if k != "checkpoint"}
    assert from_hf.keys() == expected.keys()
    for key in ("perplexity", "ece", "bleu", "toxicity_rate", "bias"):
        assert from_hf[key] == pytest.approx(expected[key], rel=1e-6, abs=1e-9), key
    assert from_hf["rouge"] == pytest.approx(expected["rouge"], abs=1e-12)
    assert from_hf["benchmarks"] == expected["benchmarks"]
    # deterministic: the same generations, byte for byte
    generations = (out / "eval" / "generations.jsonl").read_bytes()
    assert generations == (project / "out" / "eval" / "generations.jsonl").read_bytes()


# ----------------------------------------------------------------------------- only what is asked
def test_only_the_metrics_the_spec_names(tmp_path):
    (tmp_path / "corpus").mkdir()
    bare = build(write_spec(tmp_path, "no-eval"), tmp_path / "no-eval")
    assert not (bare / "evaluate.py").exists() and not (bare / "lm_eval_model.py").exists()
    ppl = build(write_spec(tmp_path, "ppl", eval={"metrics": ["perplexity"]}), tmp_path / "ppl")
    code = (ppl / "evaluate.py").read_text()
    for absent in ("sacrebleu", "rouge_score", "lm_eval", "def expected_calibration_error",
                   "def bias_score", "generate_text", "GENERATION_PATH"):  # fmt: skip
        assert absent not in code, absent
    assert not (ppl / "lm_eval_model.py").exists()
    assert "calibration_error" not in (ppl / "train.py").read_text()  # no calibration asked
    quiet = build(write_spec(tmp_path, "quiet", eval={"metrics": ["calibration"], "during_training": False}),
                  tmp_path / "quiet")  # fmt: skip
    assert "calibration_error" not in (quiet / "train.py").read_text()
    assert "def expected_calibration_error" in (quiet / "evaluate.py").read_text()
    requirements = (ppl / "requirements.txt").read_text()
    assert "sacrebleu" not in requirements and "lm-eval" not in requirements
    # bias alone on unpacked data: no validation pass, still lint-clean
    bias = build(write_spec(tmp_path, "bias", data={"packing": False},
                            eval={"metrics": ["bias"], "bias_pairs": str(DEMO_EVAL / "bias_pairs.jsonl")}),
                 tmp_path / "bias")  # fmt: skip
    assert "def score_validation" not in (bias / "evaluate.py").read_text()
    for project in (ppl, bias):
        lint = subprocess.run(
            [sys.executable, "-m", "ruff", "check", "--no-cache", "--isolated", "--line-length", "100",
             "--target-version", "py311", "--select", "E,F,W,I,B,UP", "--ignore", "E501", "evaluate.py"],
            cwd=project, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert lint.returncode == 0, lint.stdout


def test_split_models_get_a_note_not_a_broken_evaluate(tmp_path):
    from llmspec.pipeline import build_project

    (tmp_path / "corpus").mkdir()
    spec = write_spec(tmp_path, "tp2", eval={"metrics": ["perplexity"]},
                      parallel={"data": 1, "tensor": 2})  # fmt: skip
    result = build_project(spec, tmp_path / "tp2")
    assert "evaluate.py" not in result.files and "generate.py" not in result.files
    assert any(n.startswith("eval: no evaluate.py") and "tensor 2" in n for n in result.notes)


def test_full_requirements(facts_project):
    requirements = (facts_project / "requirements.txt").read_text()
    for line in ("sacrebleu==2.6.0", "rouge-score==0.1.2", "lm-eval==0.4.13"):
        assert line in requirements


# ----------------------------------------------------------------------------- spec checks
def _spec_text(eval_section: str, arch: str = "gpt") -> str:
    return (
        f"name: t\nmodel: {{arch: {arch}, vocab_size: 512, max_seq_len: 64, d_model: 32, "
        "n_layers: 2, n_heads: 4, d_ff: 64}\ntrain: {seq_len: 16}\n" + eval_section
    )


@pytest.mark.parametrize(
    ("section", "field", "message"),
    [
        ("eval: {metrics: [bleu]}\n", "eval.metrics", "names bleu but eval.generation is null"),
        ("eval: {metrics: [bias]}\n", "eval.metrics", "names bias but eval.bias_pairs is null"),
        ("eval: {metrics: [toxicity], generation: {path: p.jsonl}}\n", "eval.metrics",
         "names toxicity but eval.toxicity_blocklist is null"),
        ("eval: {metrics: [perplexity], bias_pairs: b.jsonl}\n", "eval.bias_pairs",
         "no metric reads it"),
        ("eval: {generation: {path: p.jsonl}}\n", "eval.generation", "no metric reads it"),
    ],
)  # fmt: skip
def test_eval_inputs_are_checked(section, field, message):
    from llmspec.errors import SpecError
    from llmspec.spec.load import load_spec_text

    with pytest.raises(SpecError) as err:
        load_spec_text(_spec_text(section), "t.yaml")
    (problem,) = err.value.problems
    assert problem.field == field and message in problem.message
    assert problem.file == "t.yaml" and problem.line == 4


def test_eval_needs_a_causal_model():
    from llmspec.errors import SpecError
    from llmspec.spec.load import load_spec_text

    with pytest.raises(SpecError) as err:
        load_spec_text(_spec_text("eval: {metrics: [perplexity]}\n", arch="bert")
                       .replace("train: {seq_len: 16}", "train: {seq_len: 16, objective: masked_lm}"), "t.yaml")  # fmt: skip
    assert any("needs a causal model" in p.message for p in err.value.problems)
    load_spec_text(_spec_text("eval: {metrics: [perplexity]}\n"), "t.yaml")  # gpt: fine
