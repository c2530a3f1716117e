"""Near dedup's lsh and clusters tasks against a direct computation.

The lsh tasks read the band keys one hash partition at a time and the clusters task links
pairs with numpy arrays a chunk at a time (so neither holds the corpus); what they find must
be what one pass over every signature finds: the same confirmed pairs in every band, and
the same dropped documents as a plain union-find over the pairs.
"""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import numpy as np
from data_harness import fixtures

prepared = fixtures.prepared  # 2 workers, 8 read tasks: 2 hash partitions of the band keys


def load_stages(project: Path):
    """The generated data_stages.py of a project, imported under a name of its own."""
    spec = importlib.util.spec_from_file_location("near_dedup_stages", project / "data_stages.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def union_find_dropped(pairs: list[tuple[int, int]]) -> list[int]:
    """Every member of a cluster but its lowest id: a dict union-find, one pair at a time."""
    parent: dict[int, int] = {}

    def root(x: int) -> int:
        while parent.get(x, x) != x:
            x = parent[x]
        return x

    for a, b in pairs:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return sorted(parent)


def test_lsh_pairs_and_clusters_equal_one_pass_over_every_signature(prepared):
    stages = load_stages(prepared.project)
    work = prepared.data_dir / "work"
    tasks = len(list(work.glob("minhash-*.ids.npy")))
    assert tasks == 8
    signatures = np.concatenate([np.load(work / f"minhash-{r:05d}.npy") for r in range(tasks)])
    ids = np.concatenate([np.load(work / f"minhash-{r:05d}.ids.npy") for r in range(tasks)])
    rows, perms = stages.LSH_ROWS, stages.MINHASH_PERMUTATIONS
    every_pair = []
    for band in range(stages.LSH_BANDS):
        buckets: dict[tuple, list[int]] = {}
        for doc, signature in zip(ids.tolist(), signatures, strict=True):
            buckets.setdefault(tuple(signature[band * rows : (band + 1) * rows]), []).append(doc)
        expected = set()
        for members in buckets.values():
            lowest = min(members)
            for other in members:
                agree = np.count_nonzero(
                    signatures[ids == lowest][0] == signatures[ids == other][0]
                )
                if other != lowest and agree / perms >= stages.NEAR_DEDUP_THRESHOLD:
                    expected.add((lowest, other))
        found = np.fromfile(work / f"lsh-{band:05d}.bin", dtype="<u8").reshape(-1, 2)
        assert {tuple(p) for p in found.tolist()} == expected, band
        assert len(found) == len(expected)  # no pair written twice
        every_pair += sorted(expected)
    dropped = np.load(work / "clusters-00000.npy").tolist()
    assert dropped == union_find_dropped(every_pair)
    assert len(dropped) == prepared.manifest["documents"]["near_duplicates"] == 6


def test_clusters_link_chains_and_shared_roots_as_a_dict_union_find(
    prepared, tmp_path, monkeypatch
):
    """Random pairs (chains, stars, a lower id reached only through a higher one: (1, 3) and
    (2, 3) drop 2 as well), spread over the bands and read 7 pairs at a time."""
    stages = load_stages(prepared.project)
    monkeypatch.setattr(stages, "PAIRS_CHUNK", 7)
    rng = random.Random(3)
    nodes = rng.sample(range(1, 2**40), 300)
    pairs = []
    for _ in range(400):
        a, b = sorted(rng.sample(nodes, 2))
        pairs.append((a, b))
    chain = sorted(rng.sample(range(2**41, 2**42), 40))
    pairs += list(zip(chain[1:], chain[:-1], strict=True))  # a chain, linked from its top
    pairs = [(min(a, b), max(a, b)) for a, b in pairs] + [(1, 3), (2, 3)]
    rng.shuffle(pairs)
    work = tmp_path / "work"
    work.mkdir()
    filled = stages.LSH_BANDS - 1  # the last band found nothing: an empty file
    for band in range(stages.LSH_BANDS):
        mine = np.array(pairs[band::filled] if band < filled else [], dtype="<u8").reshape(-1, 2)
        (work / f"lsh-{band:05d}.bin").write_bytes(mine.tobytes())
    result = stages.clusters_task(work, 0, 1)
    dropped = np.load(work / "clusters-00000.npy").tolist()
    assert dropped == union_find_dropped(pairs)
    assert result == {"dropped": len(dropped)}
    assert 2 in dropped and 1 not in dropped
    assert set(chain[1:]) <= set(dropped) and chain[0] not in dropped


def test_word_hashes_equal_each_words_polynomial_over_str_split(prepared, monkeypatch):
    """word_hashes cuts the UTF-8 bytes at ASCII whitespace and takes each word's polynomial
    as a difference of prefix sums; a word-by-word Python polynomial over `str.split()` (each
    byte j of a word times WORD_POINT^(j+1) mod 2^64, then fmix64) must give the same hashes,
    across the HASH_WORDS runs (lowered to 3 words here) and for multi-byte characters."""
    stages = load_stages(prepared.project)
    monkeypatch.setattr(stages, "HASH_WORDS", 3)
    point = int(stages.WORD_POINT)
    rng = random.Random(5)
    alphabet = "ab\u00e9\u4e2d\U0001f600xyz_0"
    spaces = [" ", "  ", "\n", "\t \n", "\r\n", "\x0b", "\x0c", "\x1c"]
    for _ in range(50):
        words = [
            "".join(rng.choices(alphabet, k=rng.randint(1, 12))) for _ in range(rng.randint(0, 20))
        ]
        text = rng.choice(["", " ", "\n"]) + "".join(w + rng.choice(spaces) for w in words)
        expected = []
        for word in text.split():
            h = sum(b * pow(point, j + 1, 2**64) for j, b in enumerate(word.encode())) % 2**64
            expected.append(h)
        expected = stages.finish(np.array(expected, dtype=np.uint64))
        got = stages.word_hashes(np.frombuffer(text.encode(), dtype=np.uint8))
        assert got.dtype == np.uint64 and got.tolist() == expected.tolist(), repr(text)
