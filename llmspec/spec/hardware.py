"""Hardware catalog: vendor datasheet figures, one source comment per entry.

Peaks are dense (no 2:4 sparsity). Link figures are per GPU, per direction,
in GB/s (1e9 bytes/s). See docs/planner-references.md section 3.
Memory is what the runtime reports as the device's total (CUDA's
``totalGlobalMem`` from deviceQuery, HIP's for AMD), read off real devices where a
reading is cited; that is the capacity PyTorch's allocator draws from, and the
datasheet's "80 GB" is neither 80e9 bytes (A100 80 GB: 85.1e9) nor 80 GiB. The
planner keeps its own reserve for the runtime on top (CUDA context, NCCL buffers,
fragmentation: ``llmspec.plan.memory``). A part without a cited reading keeps the
datasheet's "GB" read as 1e9 bytes, a conservative lower bound.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, replace

from llmspec.errors import UserError
from llmspec.units import GIB


@dataclass(frozen=True)
class Gpu:
    name: str
    memory_bytes: int
    peak_tflops: float  # dense BF16/FP16 tensor-core peak
    fp8_tflops: float  # dense FP8 peak; 0 = not supported
    hbm_gbps: float
    intra_node_gbps: float  # per direction, per GPU
    inter_node_gbps: float  # per direction, per GPU
    source: str

    @property
    def has_fp8(self) -> bool:
        return self.fp8_tflops > 0


CATALOG: dict[str, Gpu] = {
    # NVIDIA A100 Tensor Core GPU datasheet (2021): 40 GB HBM2, 1,555 GB/s, BF16 312 TFLOPS dense,
    # NVLink 3 600 GB/s total (300 GB/s per direction). Network: one 200 Gb/s HDR HCA per GPU (Selene).
    # Memory: deviceQuery on an A100-SXM4-40GB, "40339 MBytes (42298834944 bytes)"
    # (github.com/bottlerocket-os/bottlerocket pull 3873).
    "a100-40gb": Gpu(
        "a100-40gb",
        42_298_834_944,
        312.0,
        0.0,
        1555.0,
        300.0,
        25.0,
        "NVIDIA A100 datasheet; HDR IB per GPU as on Selene (Narayanan et al. 2021 §5)",
    ),
    # Same datasheet, 80 GB HBM2e SXM: 2,039 GB/s. Memory: deviceQuery on A100-SXM4-80GB,
    # "81158 MBytes (85100068864 bytes)" (github.com/thamada/nvidia-smi,
    # nvsim/A100SXMx4_deviceQuery.py).
    "a100-80gb": Gpu(
        "a100-80gb",
        85_100_068_864,
        312.0,
        0.0,
        2039.0,
        300.0,
        25.0,
        "NVIDIA A100 datasheet; HDR IB per GPU as on Selene (Narayanan et al. 2021 §5)",
    ),
    # NVIDIA H100 datasheet, SXM5: 80 GB HBM3, 3.35 TB/s, BF16 989.5 dense (1,979 with sparsity),
    # FP8 1,979 dense, NVLink 4 900 GB/s total. Network: 400 Gb/s NDR per GPU. Memory: deviceQuery
    # on H100 80GB HBM3, "81106 MBytes (85045477376 bytes)" (github.com/thamada/nvidia-smi,
    # nvsim/H100SXMx8_deviceQuery.py).
    "h100-sxm": Gpu(
        "h100-sxm",
        85_045_477_376,
        989.5,
        1979.0,
        3350.0,
        450.0,
        50.0,
        "NVIDIA H100 datasheet (SXM5); 400G NDR per GPU (Llama 3 paper §3.3)",
    ),
    # NVIDIA H200 datasheet: 141 GB HBM3e, 4.8 TB/s, same GH100 compute as H100 SXM, NVLink 900 GB/s.
    # Memory: no deviceQuery reading found (nvidia-smi shows 143771 MiB, which includes what the
    # driver keeps), so the datasheet's 141e9 bytes; benchmarks/gpu_check.py prints the real total.
    "h200": Gpu(
        "h200",
        141 * 10**9,
        989.5,
        1979.0,
        4800.0,
        450.0,
        50.0,
        "NVIDIA H200 datasheet; 400G NDR per GPU",
    ),
    # AMD Instinct MI250X datasheet: 128 GB HBM2e, 3.2 TB/s, 383 TFLOPS FP16/BF16 (package of 2 GCDs).
    # Infinity Fabric links 8 × 100 GB/s total; modelled as 200 GB/s per direction.
    "mi250x": Gpu(
        "mi250x",
        128 * 10**9,
        383.0,
        0.0,
        3276.8,
        200.0,
        25.0,
        "AMD Instinct MI250X datasheet; Slingshot-11 200 Gb/s per node-GPU (Frontier)",
    ),
    # AMD Instinct MI300X datasheet: 192 GB HBM3, 5.3 TB/s, 1,307.4 TFLOPS BF16 dense, FP8 2,614.9,
    # 7 Infinity Fabric links × 64 GB/s per direction (448 GB/s). Memory: HIP's device query on
    # MI300X, "196592: Total Global Memory (MB)" (github.com/thamada/nvidia-smi,
    # nvsim/MI300X_x4_deviceQuery.py).
    "mi300x": Gpu(
        "mi300x",
        196_592 * 2**20,
        1307.4,
        2614.9,
        5300.0,
        448.0,
        50.0,
        "AMD Instinct MI300X datasheet; 400G network per GPU",
    ),
    # Google Cloud TPU v4 documentation: 32 GiB HBM2, 1,200 GB/s, 275 TFLOPS bf16 per chip;
    # ICI 3D torus, 6 links × 50 GB/s per direction (modelled as 300 GB/s intra-slice).
    "tpu-v4": Gpu(
        "tpu-v4",
        32 * GIB,
        275.0,
        0.0,
        1200.0,
        300.0,
        300.0,
        "cloud.google.com/tpu/docs/v4 (system architecture)",
    ),
    # A CPU "device" for running generated projects here: memory and peak are nominal placeholders
    # sized for the tiny specs (one process per core), not datasheet figures for any processor.
    "cpu": Gpu(
        "cpu",
        8 * GIB,
        0.1,
        0.0,
        20.0,
        10.0,
        1.0,
        "nominal: one CPU process per 'GPU' for local runs; not a datasheet figure",
    ),
}


class UnknownGpu(UserError, KeyError):
    """A GPU name that is not in the catalog (a KeyError too, for dict-like callers)."""

    def __str__(self) -> str:
        return self.args[0]


def lookup(name: str) -> Gpu:
    if name in CATALOG:
        return CATALOG[name]
    close = difflib.get_close_matches(name, CATALOG, n=1, cutoff=0.5)
    guess = f"did you mean {close[0]!r}? " if close else ""
    raise UnknownGpu(f"unknown GPU {name!r}; {guess}catalog: {', '.join(CATALOG)}")


def get_gpu(gpu) -> Gpu:
    """Catalog entry for a name or a `GpuOverride` (overridden figures replace the datasheet's)."""
    if isinstance(gpu, str):
        return lookup(gpu)
    base = lookup(gpu.name)
    changes = {}
    if gpu.memory_gib is not None:
        changes["memory_bytes"] = int(gpu.memory_gib * GIB)
    for field in ("peak_tflops", "fp8_tflops", "hbm_gbps", "intra_node_gbps", "inter_node_gbps"):
        value = getattr(gpu, field)
        if value is not None:
            changes[field] = float(value)
    return (
        replace(base, **changes, source=base.source + " (overridden in spec)") if changes else base
    )
