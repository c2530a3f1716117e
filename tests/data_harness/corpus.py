"""Plant a corpus whose every document has a known fate, and say what the manifest must count.

Unique documents are random words from a private vocabulary, so two of them share almost
no 5-word shingles; near copies change a known fraction of the words, and their true
Jaccard similarity (exact, over shingle sets) is computed here, not estimated.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

BLOCKED_WORD = "zzblockedzz"


def vocabulary(rng: random.Random, size: int = 4000) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = {"".join(rng.choice(letters) for _ in range(rng.randint(3, 9))) for _ in range(size)}
    return sorted(words)


def random_document(rng: random.Random, vocab: list[str], n_words: int) -> str:
    """Lines of 6-14 words; already in normal form (no trailing spaces, LF, no blank runs)."""
    words = [rng.choice(vocab) for _ in range(n_words)]
    lines, i = [], 0
    while i < len(words):
        width = rng.randint(6, 14)
        lines.append(" ".join(words[i : i + width]))
        i += width
    return "\n".join(lines)


def edit_words(rng: random.Random, text: str, rate: float, vocab: list[str]) -> str:
    """Replace round(rate * words) distinct word positions with other vocabulary words."""
    lines = [line.split(" ") for line in text.split("\n")]
    positions = [(li, wi) for li, line in enumerate(lines) for wi in range(len(line))]
    for li, wi in rng.sample(positions, round(rate * len(positions))):
        old = lines[li][wi]
        new = old
        while new == old:
            new = rng.choice(vocab)
        lines[li][wi] = new
    return "\n".join(" ".join(line) for line in lines)


def shingles(text: str, k: int) -> set[tuple[str, ...]]:
    words = text.split()
    k = min(k, len(words))
    return {tuple(words[i : i + k]) for i in range(len(words) - k + 1)}


def jaccard(a: str, b: str, k: int) -> float:
    sa, sb = shingles(a, k), shingles(b, k)
    return len(sa & sb) / len(sa | sb)


@dataclass
class PlantedCorpus:
    spec_dir: Path
    expected: dict  # manifest["documents"] as it must read
    kept_texts: set[str] = field(default_factory=set)  # normalised text of every kept document
    near_pairs: list[tuple[str, str, float]] = field(default_factory=list)  # (orig, copy, J)


def write(path: Path, data: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.write_bytes(data)


def plant_corpus(spec_dir: Path, *, seed: int = 7, shingle: int = 5) -> PlantedCorpus:
    """Files under spec_dir/corpus/ (sources: corpus/**/*.txt and corpus/*.jsonl)."""
    rng = random.Random(seed)
    vocab = vocabulary(rng)
    corpus = spec_dir / "corpus"
    planted = PlantedCorpus(spec_dir=spec_dir, expected={})
    kept = planted.kept_texts
    counts = dict.fromkeys(
        ["kept", "exact_duplicates", "near_duplicates", "decode_errors_replaced"], 0
    )
    filtered = dict.fromkeys(["too_short", "too_long", "repeated_lines", "blocklist"], 0)
    skipped = dict.fromkeys(
        ["binary", "empty", "unreadable", "bad_json", "bad_unicode", "too_large"], 0
    )

    originals = []
    for i in range(40):
        text = random_document(rng, vocab, rng.randint(150, 600))
        write(corpus / "base" / f"doc-{i:03d}.txt", text)  # sorts first: originals lead
        originals.append(text)
        kept.add(text)
    counts["kept"] += 40

    # Exact duplicates that differ before normalisation: CRLF, trailing spaces, extra blank lines.
    for i, text in enumerate(originals[:6]):
        variant = text.replace("\n", "  \r\n") if i % 2 else "\n\n" + text.replace("\n", "\t\n")
        write(corpus / "exact" / f"copy-{i}.txt", variant + "\n\n\n")
    counts["exact_duplicates"] += 6

    # Near duplicates: 0.5% of words edited (Jaccard 0.93-0.97, over the 0.8 threshold) ...
    for i, text in enumerate(originals[6:12]):
        copy = edit_words(rng, text, 0.005, vocab)
        planted.near_pairs.append((text, copy, jaccard(text, copy, shingle)))
        write(corpus / "near" / f"near-{i}.txt", copy)
    counts["near_duplicates"] += 6
    # ... and 30% edited (Jaccard about 0.1): different documents, kept.
    for i, text in enumerate(originals[12:16]):
        copy = edit_words(rng, text, 0.30, vocab)
        planted.near_pairs.append((text, copy, jaccard(text, copy, shingle)))
        write(corpus / "far" / f"far-{i}.txt", copy)
        kept.add(copy)
    counts["kept"] += 4

    write(corpus / "binary" / "a.txt", b"text then \x00\x01\x02 binary")
    write(corpus / "binary" / "b.txt", bytes(range(256)))
    skipped["binary"] += 2
    write(corpus / "empty" / "zero.txt", b"")
    write(corpus / "empty" / "blank.txt", " \n\t\r\n  \n")
    skipped["empty"] += 2

    # Invalid UTF-8 (a lone continuation byte, a truncated sequence): replaced, still kept.
    for i in range(2):
        text = random_document(rng, vocab, 200)
        raw = text.encode() + (b" \x80 tail" if i == 0 else b" \xe2\x82")
        write(corpus / "latin" / f"bad-{i}.txt", raw)
        kept.add(raw.decode("utf-8", errors="replace"))
    counts["kept"] += 2
    counts["decode_errors_replaced"] += 2

    unreadable = corpus / "unreadable"
    unreadable.mkdir(parents=True)
    os.symlink(unreadable / "missing-target", unreadable / "dangling.txt")
    os.mkfifo(unreadable / "fifo.txt")  # reading it would block forever: must not be opened
    skipped["unreadable"] += 2
    (corpus / "folder.txt").mkdir()  # a directory the glob matches: not a document

    write(corpus / "filters" / "short.txt", "tiny")
    filtered["too_short"] += 1
    write(corpus / "filters" / "repeated.txt", "\n".join(["the same line again"] * 30 + ["x y z"]))
    filtered["repeated_lines"] += 1
    blocked = random_document(rng, vocab, 120) + f" {BLOCKED_WORD.upper()} end"
    write(corpus / "filters" / "blocked.txt", blocked)
    filtered["blocklist"] += 1
    write(spec_dir / "blocklist.txt", f"# words that drop a document\n{BLOCKED_WORD}\n")

    records = []
    for _ in range(4):
        text = random_document(rng, vocab, rng.randint(100, 300))
        records.append(json.dumps({"id": len(records), "body": text}))
        kept.add(text)
    counts["kept"] += 4
    records.append(json.dumps({"body": originals[20]}))  # exact duplicate of a .txt file
    counts["exact_duplicates"] += 1
    records += ['{"body": "unterminated', '{"other": "no body field"}', '{"body": 42}', "[1, 2]"]
    skipped["bad_json"] += 4
    records.append(json.dumps({"body": "   \n "}))
    skipped["empty"] += 1
    # A lone surrogate (valid JSON, common in scraped data) is no text: skipped, not fatal.
    surrogate = random_document(rng, vocab, 80)
    records.append(json.dumps({"body": surrogate[:40] + "\ud800" + surrogate[40:]}))
    skipped["bad_unicode"] += 1
    records.append("")  # a blank line is no record, and not counted
    write(corpus / "records.jsonl", "\n".join(records) + "\n")

    total_filtered = sum(filtered.values())
    read = (
        counts["kept"]
        + counts["exact_duplicates"]
        + counts["near_duplicates"]
        + total_filtered
        + sum(skipped.values())
    )
    planted.expected = {
        "read": read,
        **counts,
        "filtered": total_filtered,
        "filtered_by": filtered,
        "skipped": skipped,
    }
    return planted


def planted_spec(**data_overrides) -> dict:
    """Spec for a planted corpus in the spec's folder (small tokenizer, small shards)."""
    data = {
        "sources": [
            {"path": "corpus/**/*.txt"},
            {"path": "corpus/*.jsonl", "text_field": "body"},
        ],
        "tokenizer": {"kind": "bpe", "vocab_size": 600},
        "dedup": {"exact": True, "near": {"threshold": 0.8}},
        "filters": {"min_chars": 20, "blocklist": "blocklist.txt"},
        "shard_size": "8KB",
        "validation_fraction": 0.1,
    }
    data.update(data_overrides)
    return {"name": "planted", "data": data, "train": {"seq_len": 64, "seed": 3}}
