"""Write reverse.jsonl: the tiny LoRA spec's SFT records (python specs/sft/make_reverse.py).

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


def main() -> None:
    rng = random.Random(0)
    lines = []
    for _ in range(4000):
        words = rng.sample(WORDS, rng.randint(3, 5))
        record = {"prompt": f"# reverse: {' '.join(words)}\n#", "response": " " + " ".join(reversed(words)) + "\n"}
        lines.append(json.dumps(record))
    (Path(__file__).parent / "reverse.jsonl").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
