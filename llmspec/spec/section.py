"""What every spec section shares: strict parsing, and the bounds on every number.

Its own module so that `schema` (contract 1) and `posttrain` (contract 5) both build on it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

SLUG_RE = r"^[a-z0-9][a-z0-9._-]*$"
AUTO = "auto"

# Bounds on every number a spec gives. Each is far beyond any real run, and low enough that
# what is derived from it (bytes, FLOPs, seconds, seeds) stays a finite float or a 64-bit
# integer, and that every search over it stays small. A value outside is a located error.
MAX_NAME = (
    64  # the output folder's name; build stages beside it as .<name>.llmspec-staging-<random>
)
MAX_VOCAB = 2**24  # tokens (the largest published vocabularies have ~256k)
MAX_SEQ = 2**22  # tokens per sequence (4M)
MAX_WIDTH = 2**20  # d_model and d_ff (GPT-3: 12288 and 49152)
MAX_LAYERS = 4096
MAX_HEADS = 2**14
MAX_TYPE_VOCAB = 1024  # token types (BERT: 2)
MAX_BATCH = 2**20  # sequences per optimizer step (GPT-3: 1536)
MAX_STEPS = 10**9  # optimizer steps (also warm-up and every interval)
MAX_TOKENS = 1e16  # tokens to train on (Llama 3: 1.5e13)
MAX_NODES = 2**16
MAX_GPUS_PER_NODE = 1024
MAX_WORLD = 2**20  # nodes × gpus_per_node (checks.py): the largest clusters have ~1e5 GPUs
MAX_WORKERS = 1024  # data-preparation processes
SEED_LIMIT = 2**32  # seeds are < 2**32: numpy's legacy seeding takes no more, and train.py's
# per-step torch reseed (seed × 1_000_003 + step × replicas + rank) then stays below 2**63
MAX_GIB = 2.0**20  # GiB of memory per GPU or host (1 PiB)
MIN_GIB = 1e-3  # GiB (1 MiB)
MAX_RATE = 1e6  # TFLOP/s and GB/s figures of a GPU override
MIN_RATE = 1e-3
MAX_BYTES_SIZE = 2**40  # bytes per token shard (1 TiB); characters per document filter


class _Section(BaseModel):
    # strict: YAML already gives real ints, floats and bools, so `n_layers: true` or
    # `lr: "fast"` is a mistake to report, not a value to coerce; inf/nan are never meant.
    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_default=True, strict=True, allow_inf_nan=False
    )


PosInt = Annotated[int, Field(gt=0)]
AutoInt = PosInt | Literal["auto"]


def _upto(limit: int) -> type:
    """A positive integer at most `limit`."""
    return Annotated[int, Field(gt=0, le=limit)]
