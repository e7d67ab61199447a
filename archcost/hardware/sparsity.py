"""2:4 structured sparsity on a GPU profile: how much faster a 2:4-sparse GEMM runs.

Sparse tensor cores (Ampere and later) skip the zero half of a 2:4-sparse operand and run its
GEMM at twice the dense rate: NVIDIA A100 Tensor Core GPU Architecture whitepaper (2020),
"Fine-Grained Structured Sparsity"; the datasheets quote these rates "with sparsity". A GPU
profile states them as a mapping of sparse peaks (dtype key -> FLOP/s, dense-equivalent, as
the datasheets count them: ``sparse_peak_flops_per_s``, or ``sparse_peak_flops``) or as one
``sparsity_speedup``; the FLOPs of a sparse GEMM stay those of its dense form (2*M*N*K), so
the speedup is the ratio of the two peaks. This module is the one place that reads them.
"""

from __future__ import annotations

__all__ = ["sparse_speedup"]


def sparse_speedup(gpu, key: str) -> tuple[float, str | None]:
    """(sparse / dense peak of ``key`` (a ``peak_flops_per_s`` key), note): 1.0 and a note
    saying so where the profile states no sparse rate (the GEMM priced at the dense peak)."""
    dense = gpu.peak_flops_per_s.get(key)
    peaks = getattr(gpu, "sparse_peak_flops_per_s", None) or getattr(
        gpu, "sparse_peak_flops", None) or {}
    sparse = peaks.get(key)
    if dense and sparse:
        return float(sparse) / float(dense), None
    speedup = getattr(gpu, "sparsity_speedup", None)
    if dense and speedup:
        return float(speedup), None
    return 1.0, (f"{gpu.name} states no 2:4-sparse {key} rate: 2:4-sparse GEMMs are priced at "
                 "the dense peak")
