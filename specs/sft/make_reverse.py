"""Write reverse.jsonl, the tiny LoRA spec's SFT records; reverse_eval.jsonl, 50 other
prompts with their references for evaluate.py; and reverse_pairs.jsonl, preference records
for the tiny DPO spec (python specs/sft/make_reverse.py).

Each record asks for a short list of Python words in reverse order. A model pretrained on
Python sources knows the words but not the task, so its loss on the responses falls only
once it fine-tunes; the answer is in the prompt, which a 4-layer model can learn to copy.
Deterministic (seeded), so the file is reproducible byte for byte.
"""

import json
import random
from pathlib import Path

WORDS = (
    "def class return import from yield lambda while for if else elif try except finally "
    "with assert raise pass break continue global nonlocal del async await self args kwargs "
    "list dict set tuple str int float bool None True False print len range open sorted"
).split()


def records(seed: int, n: int, answer: str) -> str:
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        words = rng.sample(WORDS, rng.randint(3, 5))
        record = {"prompt": f"# reverse: {' '.join(words)}\n#", answer: " " + " ".join(reversed(words)) + "\n"}
        lines.append(json.dumps(record))
    return "\n".join(lines) + "\n"


def pairs(seed: int, n: int) -> str:
    """Preference records: the reversed list is chosen, the list as given is rejected."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        words = rng.sample(WORDS, rng.randint(3, 5))
        lines.append(json.dumps({
            "prompt": f"# reverse: {' '.join(words)}\n#",
            "chosen": " " + " ".join(reversed(words)) + "\n",
            "rejected": " " + " ".join(words) + "\n",
        }))
    return "\n".join(lines) + "\n"


def main() -> None:
    here = Path(__file__).parent
    (here / "reverse.jsonl").write_text(records(0, 4000, "response"))
    (here / "reverse_eval.jsonl").write_text(records(1, 50, "reference"))
    (here / "reverse_pairs.jsonl").write_text(pairs(2, 1000))


if __name__ == "__main__":
    main()
