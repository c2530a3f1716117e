"""Throughput and memory of the generated prepare_data.py (stage 1 as tasks), beside `tokenizers`.

    python benchmarks/data_throughput.py                 # 30 MB corpus: all three sections
    python benchmarks/data_throughput.py --mb 100 --skip-memory --compare-minhash

The corpus is built from text every machine has: this Python's standard-library sources
(site-packages excluded), written out again and again until it reaches --mb. Copy 0 is
verbatim; in copy c >= 1 every word whose salted hash picks it (about one distinct word
in four) gets the suffix `_c<c>`, a deterministic rename that leaves most 5-word shingles
of a file different from every other copy, so exact and near dedup keep the copies
(files the stdlib itself holds twice are still removed).

Printed, a script that prints figures (not a timed test; on a shared machine every wall
figure scales with the load, which is printed, and the per-CPU-second figures much less):
  1. workers: the whole pipeline with 1 and with 2 worker processes, MB/s (input bytes /
     wall seconds) of each stage and of the run, the speed-up, and the outputs' sha256 equal;
  2. per core: the pipeline's MB per CPU second (workers included) beside plain
     Tokenizer.encode_batch_fast over the same files with the tokenizer it trained
     (1 worker is pinned to one core, 2 workers to two);
  3. memory: every task run alone (prepare_data.py --stage S --rank R, as
     prepare_data.sbatch runs them) and the steps between (gather + tokenizer training,
     pack + shards), peak RSS (VmHWM) of each, the largest per stage, at --mb / 10 and
     --mb. The generated TASK_BYTES is lowered to 256 KiB here, so both corpora are past
     MIN_TASKS tasks and grow in tasks rather than in task size, as a corpus past
     TASK_BYTES x MIN_TASKS (512 MiB) does with the default.

Measured 2026-12-03 on the 2-core dev machine, shared with other agents' jobs (the load
average is printed with every run; at load 5-10 the wall figures halve and CPU seconds
inflate up to 1.8x, so only quiet runs are quoted):
  --mb 30, load 1.5 before / 1.6 after: 1 worker 15.48 s (1.9 MB/s), 2 workers 10.22 s
  (2.9 MB/s): 1.51x, with 0.99 and 1.86 cores obtained; documents 1.25x (1.29 vs 1.03 s: the
  stage is small now and the pool's start is in it), tokenizer 1.58x, shards 1.54x. The same
  script before this code's one-permutation MinHash and streaming tokenize tasks: 18.99 s vs
  10.35 s, 1.84x at load 2.1 (its 1-worker documents stage took 3.0 CPU s, now 1.1).
  --mb 30 --skip-memory, load 1.1 (the other jobs ended): 16.87 s vs 9.25 s, 1.83x, 0.99 and
  1.82 cores obtained: the 1.51x above was the load's.
  Outputs sha256-identical for 1 and 2 workers in every run.
  per CPU second, --mb 100 --skip-memory (1 worker, load 2.8 before, 0.94 cores obtained):
  pipeline 2.73 MB/s (36.6 CPU s: documents 3.3, tokenizer training 6.5, shards 26.6; 2.07
  MB/s before this code). Its encode_batch_fast baseline ran at load 7.9 (2.14 MB/s, so
  1.28x): rerun alone at load 1.3 (baseline_encode on the same corpus and tokenizer) it gave
  3.53 MB/s: 0.77x, and 0.95x less tokenizer training.
  per CPU second, --mb 30 (1 worker): pipeline 1.97 MB/s = 0.52x encode_batch_fast alone
  (3.77 MB/s); less tokenizer training 0.88x. Stages: documents 1.1 CPU s (3.0 before),
  tokenizer training 6.1 s (the whole corpus is under the 32 MiB sample cap), shards 7.9 s
  (encode alone 8.0 s: the tokenize tasks cost what tokenizing costs).
  --tokenizer-samples 3,6,12,32 (BPE 8192, 3.0 MB held out): 2.1 / 5.5 / 7.4 / 24.5 MiB
  samples trained in 0.75 / 1.95 / 2.91 / 11.12 CPU s to 3.447 / 3.485 / 3.496 / 3.534
  bytes per token: the cap is not lowered to meet the 0.8x target at 30 MB, since a smaller
  sample costs more tokens on every training step.
  --compare-minhash: own 66.5 MB/s, datasketch 9.2 MB/s; mean |error| 0.0283 vs 0.0287.
Measured 2026-12-04, per-core baseline changed: encode_batch_fast now runs in a child process
pinned to one core (as the 1-worker pipeline), one call over all files and in the tokenize
tasks' 256 KiB calls (the faster is the baseline: 2.69-2.95 vs 1.49-2.26 MB/CPU-s; before, one
call on 2 threads), and --repeats alternates runs, each side keeping its fastest. Identical
runs still differ a lot here: the pinned 256 KiB encode of 100 MB took 45.9 and 37.1 CPU s
back to back, and a 30 MB one 8.5 to 12.0 s over four runs.
  --mb 100 --skip-memory --repeats 2 --profile, load 0.7 before / 1.0 after: pipeline 1 worker
  45.7 CPU s = 0.74x tokenizer-only (33.9 CPU s), 0.90x less tokenizer training (7.9 CPU s);
  documents 4.2, shards 33.3 CPU s (1.02x the baseline). Profiled run: encode_batch_fast 40.6 of
  57.3 s, training 8.8 s: 0.71x the pipeline's own tokenizer calls, 0.84x less training. Wall,
  2 workers / 1: 1.64x (1.88 cores obtained); the run before it, 2.01x.
  --mb 300 --skip-memory --repeats 2: 1 worker 146.3 CPU s = 0.73x (baseline 107.0 CPU s; its
  second run 125.9), 0.78x less training (8.1 CPU s); documents 11.3, shards 126.6 (0.85x the
  baseline). 2 workers / 1 worker wall 1.97x. Outputs identical for 1 and 2 workers.
  cProfile, --mb 30, 1 worker, one core: encode_batch_fast 10.27 s of tokenize_documents'
  10.63 s (the tasks' own Python 3.5 %), training 8.32 s of 21.7 s.
  So the 0.8x target is not met at 100-300 MB: the tokenizer's fixed ~8 CPU s (its 32 MiB
  sample) is 6-17 % of these runs, the documents stage 9 %, and the rest is encode_batch_fast.
Measured 2026-12-04 on a fresh, quiet machine (load 0.3 before, 1.1 after; nothing else ran):
  --mb 100 --skip-memory --repeats 2: wall 2 workers / 1 worker 2.05x (1.90 cores obtained);
  outputs identical. Per core: the 1-worker pipeline took 50.5 and 38.4 CPU s back to back
  (identical runs), the baseline in 256 KiB calls 30.2 and 25.8 (one call: 44.1, 38.0);
  best of each, 0.67x tokenizer-only, and 0.82x less tokenizer training: documents 3.2,
  tokenizer training 6.8, shards 28.2 CPU s (0.91x the baseline's 25.8). So the streaming
  stages meet 0.8x per core; the fixed ~7 CPU s of training on the 32 MiB sample is what a
  100 MB corpus cannot amortise (at 1 GB it would be ~2 % of the run).
  --mb 1000 --skip-memory --repeats 2 --baseline batched (load 0.6 before, 1.1 after; ~31 min):
  wall 2 workers / 1 worker 2.02x (435.5 vs 215.3 s; 0.98 and 1.84 cores); outputs identical.
  Per core: pipeline 428.3 and 446.2 CPU s, baseline (256 KiB calls) 356.6 and 319.3: 0.75x,
  0.76x less tokenizer training (7.1 CPU s, now 2 %). The documents stage grew 13x for 10x the
  corpus (42.2 CPU s, 10 % of the run: exact and near dedup over 10x the documents) and the
  shards stage is 0.84x the baseline (378.7 s). Not met at 1 GB either. Identical encode runs
  of the 100 MB kept text right after differed by 37 % (41.6 and 30.4 CPU s; the raw files
  42.6 and 33.9), so best-of-2 figures here carry about +-20 %.
Measured again 2026-12-03 (lsh by hash partition, numpy clusters, whitespace without a regex):
  per CPU second, --mb 100 --skip-memory --tokenizer-cost, load 0.2 before / 1.4 after (1.89
  cores obtained by 2 workers, so quiet): pipeline 1 worker 42.4 CPU s = 2.36 MB/s, 0.62x
  encode_batch_fast alone (3.80 MB/s, 26.3 CPU s on 2 threads); less tokenizer training 0.75x.
  Stages: documents 3.2 CPU s, tokenizer training 6.9 s, shards 32.0 s (0.82x the baseline on
  its own: one pinned thread, against the baseline's two). The same command on main at load
  0.2 / 1.6 gave 41.9 CPU s, 0.66x (documents 3.8, training 8.3, shards 29.5 s; baseline 3.63
  MB/s): the 0.77x quoted above came from a baseline rerun apart, and run to run the shards
  stage moves by +-3 CPU s, more than this branch's changes. Wall: 1.95x for 2 workers.
  Tokenizer training, where its CPU goes (--tokenizer-cost, one core): the 31.5 MiB sample
  (1,672 documents, one a sequence, 75,537 distinct words among 9.2 million pieces) trains in
  8.04 CPU s to 8192 tokens and 9.00 s to 260 (alphabet and special tokens only, no merge):
  the merges cost nothing measurable, pre-tokenizing and counting every piece is all of it
  (perf: 45% glibc malloc/free inside tokenizers, 11% the ByteLevel regex). Feeding lines
  (838,458 sequences) or 1 MiB sequences instead of documents took 6.74 and 8.9 s against
  6.63 s at load 2-3; a Split pre-tokenizer without the byte mapping 4.61 s. tokenizers' API
  takes text only (BpeTrainer has no feed of word counts), so the sample's 9.2 million pieces
  are the work: ~7 CPU s that the 32 MiB cap fixes, which alone holds a 100 MB run under
  26.3 / (26.3 + 6.9) = 0.79x even were every other stage free. Past the cap the training
  share shrinks, but in this run the rest alone was 0.75x (the shards stage 0.82x), so no
  corpus size reaches 0.8x here; in main's run above the rest was 0.83x. Not met.
  --mb 30, load 3.7 before / 1.6 after: 1 worker 13.60 s, 2 workers 7.72 s: 1.76x (0.99 and
  1.85 cores); per CPU second 0.61x (2.23 vs 3.65 MB/s), 1.06x less tokenizer training
  (5.5 CPU s). Outputs sha256-identical for 1 and 2 workers in every run.
  peak RSS, --mb 30 (12 -> 115 read tasks): read 41 -> 47, exact 41 -> 41, minhash 47 -> 59,
  lsh 41 -> 42, clusters 40 -> 42, gather + tokenizer 93 -> 219, tokenize 83 -> 90, pack 54 -> 55.
  --near-dedup-memory (JSON-lines records of 100 words, half near copies, TASK_BYTES 1 MiB,
  load ~4): 20,000 -> 200,000 records, 14 -> 132 read tasks: lsh 42 -> 44 MiB (main: 57 ->
  156, its memory-mapped signatures and keys: a page read, and the 64 KiB the kernel maps
  around it, stay in RSS), clusters 42 -> 58 (main 41 -> 59; 16 bytes a document in a pair,
  ~5x while the ids merge), 9,988 and 99,880 near copies dropped, as main.
Earlier:
  peak RSS, --mb 30 (3 -> 30 MB, 12 -> 115 read tasks): read 41 -> 46 MiB, exact 40 -> 41,
  minhash 47 -> 59 (a document's words and their hashes: follows the largest document,
  bounded by data.max_document_size), lsh 41 -> 43 (14 tasks), clusters 40 -> 40, tokenize
  83 -> 90 (was 97 -> 151: ids stream to the task's file, one encode call holds at most
  TOKENIZE_BATCH_BYTES = 256 KiB, a longer document is cut before a space), pack 55 -> 55
  (was 59 -> 115: a shard streams to its file, PACK_CHUNK_TOKENS at a time), gather +
  tokenizer 93 -> 210 (the training sample grows to its 32 MiB cap, then stops)
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from data_harness.project import render_data_files  # noqa: E402

from llmspec.spec.schema import Spec  # noqa: E402

WORD_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def stdlib_files() -> list[Path]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    return sorted(p for p in stdlib.rglob("*.py") if "site-packages" not in p.parts and p.is_file())


def vary(text: str, copy: int) -> str:
    if copy == 0:
        return text
    salt = f"{copy}:".encode()

    def rename(match: re.Match) -> str:
        word = match.group(0)
        picked = hashlib.blake2b(salt + word.encode(), digest_size=1).digest()[0] < 64
        return f"{word}_c{copy}" if picked else word

    return WORD_RE.sub(rename, text)


def build_corpus(corpus: Path, target_bytes: int) -> int:
    """Write varied copies of the stdlib under corpus/ until target_bytes; returns bytes."""
    files = stdlib_files()
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    written, copy = 0, 0
    while written < target_bytes:
        for path in files:
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            data = vary(text, copy).encode("utf-8")
            out = corpus / f"copy{copy}" / path.relative_to(stdlib)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(data)
            written += len(data)
            if written >= target_bytes:
                break
        copy += 1
    return written


BASELINE_CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from tokenizers import Tokenizer
corpus, tokenizer_json, batch = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
tokenizer = Tokenizer.from_file(tokenizer_json)
texts = [p.read_text(encoding="utf-8", errors="replace") for p in sorted(corpus.rglob("*.py"))]
size = sum(len(t.encode("utf-8")) for t in texts)
calls, call, held = [], [], 0
for text in texts:  # batch 0: one call; else consecutive files, at most `batch` bytes a call
    if batch and call and held + len(text) > batch:
        calls.append(call)
        call, held = [], 0
    call.append(text)
    held += len(text)
calls.append(call)
usage = resource.getrusage(resource.RUSAGE_SELF)
cpu, start, tokens = usage.ru_utime + usage.ru_stime, time.perf_counter(), 0
for call in calls:
    tokens += sum(len(e.ids) for e in tokenizer.encode_batch_fast(call, add_special_tokens=False))
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"wall": time.perf_counter() - start, "bytes": size, "tokens": tokens,
                  "cpu": usage.ru_utime + usage.ru_stime - cpu}))
"""


def baseline_encode(corpus: Path, tokenizer_json: Path, batch_bytes: int) -> dict:
    """Tokenizer.encode_batch_fast alone over every corpus file (UTF-8), in a child process
    pinned to one core as the 1-worker pipeline is (so tokenizers' thread pool has one thread,
    and no idle spinning of a second one is counted): one call over all the files
    (batch_bytes 0), or consecutive files in calls of at most batch_bytes of text, as a
    tokenize task calls it. Wall and CPU seconds of the encoding alone, bytes, tokens."""
    core = min(os.sched_getaffinity(0))
    result = subprocess.run(
        [sys.executable, "-c", BASELINE_CHILD, str(corpus), str(tokenizer_json), str(batch_bytes)],
        check=True,
        capture_output=True,
        text=True,
        preexec_fn=lambda: os.sched_setaffinity(0, {core}),
    )
    return json.loads(result.stdout)


def cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def compare_minhash(project: Path, corpus: Path, n_docs: int = 400) -> None:
    """Own numpy MinHash vs datasketch: speed, and error of the estimated Jaccard."""
    import random

    import numpy as np
    from datasketch import MinHash

    sys.path.insert(0, str(project))  # the MinHash code is in the generated data_stages.py
    spec = importlib.util.spec_from_file_location("bench_data_stages", project / "data_stages.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    k, perms = module.SHINGLE_WORDS, module.MINHASH_PERMUTATIONS
    texts = [p.read_text(errors="replace") for p in sorted((corpus / "copy0").rglob("*.py"))]
    texts = [t for t in texts if len(t.split()) > 50][:n_docs]
    size = sum(len(t.encode()) for t in texts) / 1e6

    def datasketch_signature(text: str) -> MinHash:
        words = text.split()
        m = MinHash(num_perm=perms, seed=1)
        m.update_batch([" ".join(words[i : i + k]).encode() for i in range(len(words) - k + 1)])
        return m

    def utf8(text: str) -> np.ndarray:
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8)

    start = time.perf_counter()
    for t in texts:
        module.minhash(utf8(t))  # as minhash_task passes it: the stored UTF-8 bytes
    own_s = time.perf_counter() - start
    start = time.perf_counter()
    for t in texts:
        datasketch_signature(t)
    ds_s = time.perf_counter() - start
    print(f"\nMinHash, {len(texts)} stdlib files ({size:.1f} MB), {perms} permutations, one core:")
    print(f"  own numpy   {own_s:6.2f} s  {size / own_s:6.1f} MB/s")
    print(f"  datasketch  {ds_s:6.2f} s  {size / ds_s:6.1f} MB/s")

    # Accuracy: pairs of (document, copy with a fraction of its words replaced).
    rng = random.Random(0)
    errors_own, errors_ds = [], []
    for text in texts[:200]:
        words = text.split()
        edited = list(words)
        for i in rng.sample(range(len(words)), int(len(words) * rng.choice([0.01, 0.03, 0.1]))):
            edited[i] = f"w{rng.randrange(10**9)}"
        other = " ".join(edited)
        a = {tuple(words[i : i + k]) for i in range(len(words) - k + 1)}
        b = {tuple(edited[i : i + k]) for i in range(len(edited) - k + 1)}
        true = len(a & b) / len(a | b)
        own_est = float(np.mean(module.minhash(utf8(text)) == module.minhash(utf8(other))))
        errors_own.append(abs(own_est - true))
        errors_ds.append(
            abs(datasketch_signature(text).jaccard(datasketch_signature(other)) - true)
        )
    print(f"  |estimated - true Jaccard| over {len(errors_own)} edited pairs (mean / max):")
    print(f"  own numpy   {np.mean(errors_own):.4f} / {np.max(errors_own):.4f}")
    print(f"  datasketch  {np.mean(errors_ds):.4f} / {np.max(errors_ds):.4f}")


def tokenizer_samples(project: Path, data_dir: Path, mib: list[float]) -> None:
    """Held-out compression (bytes per token) of BPE tokenizers trained, as stage 2 trains
    them, on an even stride of the training documents sized `mib` MiB each; every tenth
    training document is held out of every sample and is what each one encodes."""
    import numpy as np
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    sys.path.insert(0, str(project))
    spec = importlib.util.spec_from_file_location("bench_stages", project / "data_stages.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    store = module.DocumentStore(data_dir / "stages")
    train = store.indices(val=False)
    held_out = train[5::10]
    train = np.setdiff1d(train, held_out)
    sizes = store.offsets[train + 1] - store.offsets[train]
    texts = [store.get(i) for i in held_out]
    size = sum(len(t.encode()) for t in texts)
    vocab = module.TOKENIZER_VOCAB_SIZE
    print(f"\ntokenizer sample size: BPE {vocab}, {size / 1e6:.1f} MB held out, one core")
    for target in mib:
        stride = max(1, -(-int(sizes.sum()) // int(target * 2**20)))
        tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab,
            special_tokens=module.SPECIAL_TOKENS,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        cpu = cpu_seconds(resource.RUSAGE_SELF)
        tokenizer.train_from_iterator((store.get(i) for i in train[::stride]), trainer)
        cpu = cpu_seconds(resource.RUSAGE_SELF) - cpu
        tokens = sum(
            len(e.ids) for e in tokenizer.encode_batch_fast(texts, add_special_tokens=False)
        )
        print(
            f"  sample {int(sizes[::stride].sum()) / 2**20:6.1f} MiB  training CPU {cpu:6.2f} s"
            f"  {size / tokens:.4f} bytes/token"
        )


def tokenizer_cost(project: Path, data_dir: Path) -> None:
    """Where tokenizer training's CPU goes: the sample stage 2 trains on (the same stride),
    trained as stage 2 trains it, and again with a vocabulary of the alphabet and special
    tokens only (no merge: reading, pre-tokenizing and counting the words alone)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    sys.path.insert(0, str(project))
    spec = importlib.util.spec_from_file_location("cost_stages", project / "data_stages.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    store = module.DocumentStore(data_dir / "stages")
    train = store.indices(val=False)
    sizes = store.offsets[train + 1] - store.offsets[train]
    stride = -(-int(sizes.sum()) // module.TOKENIZER_TRAIN_MAX_BYTES)
    train = train[::stride]
    texts = [store.get(i) for i in train]
    size = sum(len(t.encode()) for t in texts)
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    cores = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cores)})  # one core, as the 1-worker pipeline
    print(f"\ntokenizer training cost: {len(texts)} documents, {size / 2**20:.1f} MiB, one core")
    for vocab in (module.TOKENIZER_VOCAB_SIZE, len(alphabet) + len(module.SPECIAL_TOKENS)):
        tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab,
            special_tokens=module.SPECIAL_TOKENS,
            initial_alphabet=alphabet,
            show_progress=False,
        )
        cpu = cpu_seconds(resource.RUSAGE_SELF)
        tokenizer.train_from_iterator(texts, trainer, length=len(texts))
        cpu = cpu_seconds(resource.RUSAGE_SELF) - cpu
        print(
            f"  vocabulary {vocab:5d}: CPU {cpu:5.2f} s ({size / 1e6 / cpu:.1f} MB/s),"
            f" {trainer.get_word_count():,} distinct words"
        )
    os.sched_setaffinity(0, cores)


def render(work: Path, name: str, task_bytes: int | None = None) -> Path:
    spec = Spec.model_validate(
        {
            "name": "bench",
            "data": {
                "sources": [{"path": "corpus/**/*.py"}],
                "tokenizer": {"kind": "bpe", "vocab_size": 8192},
                "shard_size": "64MB",
                "validation_fraction": 0.01,
            },
            "train": {"seq_len": 1024},
        }
    )
    project = work / name
    render_data_files(spec, project, work)
    if task_bytes is not None:
        stages = project / "data_stages.py"
        text = stages.read_text()
        assert "TASK_BYTES = 64 * 2**20" in text
        stages.write_text(text.replace("TASK_BYTES = 64 * 2**20", f"TASK_BYTES = {task_bytes}"))
    return project


def run_pipeline(project: Path, out: Path, workers: int) -> tuple[float, float, dict]:
    """Wall and CPU seconds (workers included) of one whole run, and its timings.json. The run
    may use `workers` cores: 1 worker is pinned to one core (tokenizers' thread pool would
    otherwise spread the in-process tokenizing over every core)."""
    if out.exists():
        shutil.rmtree(out)
    cores = sorted(os.sched_getaffinity(0))[:workers]
    cpu_start, start = cpu_seconds(resource.RUSAGE_CHILDREN), time.perf_counter()
    subprocess.run(
        [sys.executable, "prepare_data.py", "--out", str(out), "--workers", str(workers)],
        cwd=project,
        check=True,
        stderr=subprocess.DEVNULL,
        preexec_fn=lambda: os.sched_setaffinity(0, cores),
    )
    wall, cpu = time.perf_counter() - start, cpu_seconds(resource.RUSAGE_CHILDREN) - cpu_start
    return wall, cpu, json.loads((out / "data/stages/timings.json").read_text())


def profile_shares(project: Path, out: Path) -> None:
    """The 1-worker pipeline once more under cProfile, on one core: the share of its time in
    encode_batch_fast, i.e. its throughput over that of its own tokenizer calls in the same
    process. The calls and the pipeline run side by side, so the machine's drift from run to
    run (identical encode runs here differ by up to 40 %) cancels; cProfile's own cost falls
    on the Python around the calls, against the pipeline."""
    import pstats

    if out.exists():
        shutil.rmtree(out)
    profile = out.with_suffix(".prof")
    core = min(os.sched_getaffinity(0))
    subprocess.run(
        [sys.executable, "-m", "cProfile", "-o", str(profile), "prepare_data.py"]
        + ["--out", str(out), "--workers", "1"],
        cwd=project,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=lambda: os.sched_setaffinity(0, {core}),
    )
    stats = pstats.Stats(str(profile))
    own = {func[2]: row[2] for func, row in stats.stats.items()}  # tottime by function name
    encode = sum(t for name, t in own.items() if "encode_batch_fast" in name)
    train = sum(t for name, t in own.items() if "train_from_iterator" in name)
    total = stats.total_tt
    print(f"  profiled 1-worker run ({total:.1f} s, one core): encode_batch_fast {encode:.1f} s,")
    print(
        f"    tokenizer training {train:.1f} s: pipeline = {encode / total:.2f} x its own tokenizer"
    )
    print(f"    calls, {encode / (total - train):.2f} x less tokenizer training")


def output_digest(data: Path) -> str:
    manifest = json.loads((data / "manifest.json").read_text())
    names = ["manifest.json", "tokenizer.json"]
    names += [f for split in manifest["splits"].values() for f in split["files"]]
    h = hashlib.sha256()
    for name in names:
        h.update(hashlib.sha256((data / name).read_bytes()).digest())
    return h.hexdigest()[:16]


TASK_BYTES = 256 * 2**10  # section 3: past MIN_TASKS (8) tasks at both sizes, so tasks are alike

MEASURE = (
    "import re, runpy, sys; sys.argv = ['prepare_data.py', *sys.argv[1:]]; "
    "runpy.run_path('prepare_data.py', run_name='__main__'); "
    "print(re.search(r'VmHWM:\\s+(\\d+) kB', open('/proc/self/status').read()).group(1))"
)


def peak_rss_mib(project: Path, *args: str) -> float:
    """VmHWM of one prepare_data.py process (ru_maxrss would carry over the parent's)."""
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, *args],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
    )
    return int(result.stdout.split()[-1]) / 1024


def memory_by_stage(project: Path, out: Path) -> dict[str, tuple[int, float]]:
    """(tasks, largest peak RSS in MiB) of each step, run as prepare_data.sbatch runs them:
    stage 1's task stages task by task, the gather + tokenizer job, stage 3's tokenize tasks,
    the job that packs the shards (each step one process)."""
    if out.exists():
        shutil.rmtree(out)

    def run(*args: str) -> str:
        command = [sys.executable, "prepare_data.py", "--out", str(out), *args]
        return subprocess.run(
            command, cwd=project, capture_output=True, text=True, check=True
        ).stdout

    peaks = {}

    def tasks(plan: str) -> None:
        for line in plan.split("\n"):
            if line.strip():
                stage, world = line.split()
                rss = [peak_rss_mib(project, "--out", str(out), "--stage", stage, "--rank", str(r))
                       for r in range(int(world))]  # fmt: skip
                peaks[stage] = (int(world), max(rss))

    tasks(run("--plan"))
    peaks["gather+tokenizer"] = (
        1,
        peak_rss_mib(project, "--out", str(out), "--no-shards", "--workers", "1"),
    )
    tasks(run("--plan-shards"))
    peaks["pack+shards"] = (1, peak_rss_mib(project, "--out", str(out), "--workers", "1"))
    return peaks


def near_records(corpus: Path, records: int) -> None:
    """`records` JSON-lines records of 100 random words in records / 1000 files, half of them
    a copy of another with one word replaced (Jaccard of 5-word shingles about 0.9)."""
    import random

    rng = random.Random(1)
    vocab = [f"w{i}" for i in range(50000)]
    corpus.mkdir(parents=True)
    files = [open(corpus / f"part-{i:04d}.jsonl", "w") for i in range(records // 1000)]
    for _ in range(records // 2):
        words = [rng.choice(vocab) for _ in range(100)]
        copy = list(words)
        copy[rng.randrange(100)] = "edited"
        for text in (words, copy):
            files[rng.randrange(len(files))].write(json.dumps({"text": " ".join(text)}) + "\n")
    for f in files:
        f.close()


def near_dedup_memory(work: Path, sizes: tuple[int, ...] = (20_000, 200_000)) -> None:
    """Peak RSS of lsh tasks (the first 3 bands) and of the clusters task, each run alone as
    prepare_data.sbatch runs it, on corpora of many short records, half of them near copies;
    TASK_BYTES 1 MiB, so the corpus grows in read tasks."""
    spec = Spec.model_validate(
        {
            "name": "near",
            "data": {
                "sources": [{"path": "corpus/*.jsonl"}],
                "tokenizer": {"kind": "bpe", "vocab_size": 512},
                "validation_fraction": 0.0,
            },
            "train": {"seq_len": 128},
        }
    )
    print("\nnear dedup, peak RSS (MiB) of a task run alone, records half near copies:")
    for records in sizes:
        base = work / f"near-{records}"
        if not (base / "corpus").is_dir():
            near_records(base / "corpus", records)
        project = base / "project"
        render_data_files(spec, project, base)
        stages = project / "data_stages.py"
        text = stages.read_text()
        assert "TASK_BYTES = 64 * 2**20" in text
        stages.write_text(text.replace("TASK_BYTES = 64 * 2**20", "TASK_BYTES = 2**20"))
        out = base / "out"
        shutil.rmtree(out, ignore_errors=True)
        subprocess.run(
            [sys.executable, "prepare_data.py", "--out", str(out), "--workers", "2", "--no-shards"],
            cwd=project,
            check=True,
            capture_output=True,
        )
        tasks = json.loads((out / "data/work/inputs.json").read_text())["tasks"]
        peaks = {}
        for stage, ranks in (("lsh", 3), ("clusters", 1)):
            peaks[stage] = []
            for rank in range(ranks):
                (out / f"data/work/{stage}-{rank:05d}.json").unlink()  # run it again, alone
                args = ("--out", str(out), "--stage", stage, "--rank", str(rank))
                peaks[stage].append(peak_rss_mib(project, *args))
        dropped = len(np.load(out / "data/work/clusters-00000.npy"))
        print(
            f"  {records:7,d} records, {tasks:4d} read tasks: lsh "
            + " / ".join(f"{p:.0f}" for p in peaks["lsh"])
            + f", clusters {peaks['clusters'][0]:.0f}; {dropped:,} near copies dropped"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=float, default=30.0, help="corpus size (MB)")
    parser.add_argument("--work", type=Path, help="keep corpora and projects here")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="the 1-worker pipeline once more under cProfile: its time in encode_batch_fast",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=2,
        help="runs of the 1-worker pipeline and of the tokenizer alone for the per-core figures",
    )
    parser.add_argument(
        "--baseline",
        choices=("both", "batched"),
        default="both",
        help="tokenizer-only baselines: one call over all files and the tokenize tasks' calls, or "
        "the latter only (one call over a corpus of 1 GB holds every Encoding at once: more "
        "memory than this machine has)",
    )
    parser.add_argument("--compare-minhash", action="store_true")
    parser.add_argument(
        "--near-dedup-memory",
        action="store_true",
        help="peak RSS of the lsh and clusters tasks at 20,000 and 200,000 short records",
    )
    parser.add_argument(
        "--tokenizer-cost",
        action="store_true",
        help="tokenizer training's CPU with and without merges, and its distinct words",
    )
    parser.add_argument(
        "--tokenizer-samples",
        help="comma-separated MiB: held-out compression of tokenizers trained on samples this size",
    )
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="llmspec-data-bench-"))
    sizes = {"large": args.mb, "small": args.mb / 10}
    for name, mb in sizes.items():
        if not (work / name / "corpus").is_dir():
            size = build_corpus(work / name / "corpus", int(mb * 1e6))
            print(f"corpus {name}: {size / 1e6:.1f} MB -> {work / name / 'corpus'}")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"cores {len(os.sched_getaffinity(0))}, load average before {load}")

    # 1. one worker, two workers
    project = render(work / "large", "project")
    runs = {w: run_pipeline(project, work / "large" / f"out-{w}", w) for w in (1, 2)}
    mb = runs[1][2]["input_bytes"] / 1e6
    print(f"\n1. workers, {mb:.1f} MB input ({runs[1][2]['kept_bytes'] / 1e6:.1f} MB kept)")
    print(f"{'':<34}{'1 worker':>16}{'2 workers':>16}")
    for key, label in (("documents_s", "documents (read, dedup, gather)"),
                       ("tokenizer_s", "tokenizer (train BPE 8192)"),
                       ("shards_s", "shards (tokenize tasks, pack)")):  # fmt: skip
        cells = "".join(f"{runs[w][2][key]:7.2f} s {mb / runs[w][2][key]:5.1f}MB/s" for w in (1, 2))
        print(f"{label:<34}{cells}")
    cells = "".join(f"{runs[w][0]:7.2f} s {mb / runs[w][0]:5.1f}MB/s" for w in (1, 2))
    print(f"{'whole pipeline (process wall)':<34}{cells}")
    print(f"2 workers / 1 worker, wall throughput: {runs[1][0] / runs[2][0]:.2f}x (target >= 1.6x)")
    # On a shared machine a run gets the cores others leave: CPU seconds / wall seconds says how
    # many it had (2 workers can only be 2x as fast as 1 when they had 2 cores).
    used = ", ".join(f"{w} worker(s) {runs[w][1] / runs[w][0]:.2f}" for w in (1, 2))
    print(f"cores obtained (CPU s / wall s): {used}")
    same = output_digest(work / "large/out-1/data") == output_digest(work / "large/out-2/data")
    print(f"manifest, tokenizer and shards identical for 1 and 2 workers: {same}")

    # 2. per core, beside the tokenizer alone. On a shared machine CPU seconds inflate with
    # the load (cache and memory-bandwidth contention, frequency), so the 1-worker pipeline
    # and the tokenizer alone run --repeats times, alternating, and each keeps its fastest run
    # (interference only adds time).
    tokenizer_json = work / "large/out-2/data/tokenizer.json"
    batch = int(
        re.search(r"TOKENIZE_BATCH_BYTES = 2\*\*(\d+)", (project / "data_stages.py").read_text())[1]
    )
    modes = {"one call": 0, f"calls of {2**batch >> 10} KiB": 2**batch}
    if args.baseline == "batched":
        del modes["one call"]
    tries = {mode: [] for mode in modes}
    singles = [runs[1]]
    for i in range(args.repeats):
        if i:
            singles.append(run_pipeline(project, work / "large" / "out-1", 1))
        for mode, batch_bytes in modes.items():
            tries[mode].append(
                baseline_encode(work / "large" / "corpus", tokenizer_json, batch_bytes)
            )
    best = {mode: min(runs_, key=lambda r: r["cpu"]) for mode, runs_ in tries.items()}
    base_mode = max(best, key=lambda m: best[m]["bytes"] / best[m]["cpu"])  # the stricter
    base_rate = best[base_mode]["bytes"] / 1e6 / best[base_mode]["cpu"]
    fastest = min(singles, key=lambda r: r[1])
    one = fastest[2]
    print(
        f"\n2. per core: MB per CPU second (threads and worker processes included), best of {args.repeats}"
    )
    print("  pipeline, 1 worker, CPU s of each run: " + ", ".join(f"{r[1]:.1f}" for r in singles))
    rows = [
        ("pipeline, 1 worker (process)", fastest[1]),
        ("pipeline, 2 workers (process)", runs[2][1]),
        ("  documents stage", one["documents_cpu_s"]),
        ("  tokenizer training", one["tokenizer_cpu_s"]),
        ("  shards stage", one["shards_cpu_s"]),
        ("pipeline less tokenizer training", one["documents_cpu_s"] + one["shards_cpu_s"]),
    ]
    for label, cpu in rows:
        print(
            f"  {label:<34}{mb / cpu:7.2f}  (CPU {cpu:5.1f} s)  {mb / cpu / base_rate:5.2f} x tokenizer-only"
        )
    for mode in modes:
        cpus = ", ".join(f"{r['cpu']:.1f}" for r in tries[mode])
        rate = best[mode]["bytes"] / 1e6 / best[mode]["cpu"]
        mark = "  <- tokenizer-only" if mode == base_mode else ""
        print(f"  {'encode_batch_fast, ' + mode:<34}{rate:7.2f}  (CPU s: {cpus}; one core){mark}")
    if args.profile:
        profile_shares(project, work / "large" / "out-profile")
    print("  target: pipeline >= 0.8 x tokenizer-only per core; the tokenizer trains on at most a")
    print("  32 MiB sample, so its share shrinks as the corpus grows past that")

    # 3. memory per task as the corpus grows 10x
    if not args.skip_memory:
        peaks = {}
        for name in ("small", "large"):
            project = render(work / name, "project-tasks", task_bytes=TASK_BYTES)
            peaks[name] = memory_by_stage(project, work / name / "out-tasks")
        print(
            f"\n3. peak RSS (MiB) per task, TASK_BYTES {TASK_BYTES >> 10} KiB: corpus {sizes['small']:.0f} MB -> {sizes['large']:.0f} MB"
        )
        for stage in peaks["large"]:
            (n_small, small), (n_large, large) = peaks["small"][stage], peaks["large"][stage]
            print(
                f"  {stage:<17} {n_small:4d} -> {n_large:4d} tasks   {small:7.0f} -> {large:7.0f} MiB  ({large / small:.2f}x)"
            )
    print(f"\nload average after: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if args.compare_minhash:
        compare_minhash(work / "large" / "project", work / "large" / "corpus")
    if args.near_dedup_memory:
        near_dedup_memory(work)
    if args.tokenizer_cost:
        tokenizer_cost(work / "large" / "project", work / "large/out-1/data")
    if args.tokenizer_samples:
        mib = [float(x) for x in args.tokenizer_samples.split(",")]
        tokenizer_samples(work / "large" / "project", work / "large/out-1/data", mib)


if __name__ == "__main__":
    main()
