"""Compute C: per-op roofline time of an operator graph on one GPU profile.

time(op) = max(FLOPs / (peak(dtype, class) * eff(op FLOPs)), bytes / (mem_bw * eff(bytes)))
         + kernel launch overhead,
times the op's ``count``. Matmul, convolution and attention run at the tensor-core peak of their
dtype scaled by the profile's measured efficiency curve; every other op runs at the fp32 vector
peak and is in practice memory-bound. NB: ops execute one after another on one stream (no
overlap between kernels), as eager PyTorch does on one device.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import numpy as np

from archcost.cost.kernels import roofline

__all__ = ["OpArrays", "ComputeResult", "lower", "compute_times", "roofline_seconds",
           "peak_flops_for", "PEAK_KEY"]

PEAK_KEY = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16",
            "float8_e4m3fn": "fp8", "float8_e5m2": "fp8", "float64": "fp32"}
TENSOR_CORE_CLASSES = ("matmul", "conv", "attention")
CURVE_MATMUL, CURVE_ATTENTION = 0, 1


@dataclass(frozen=True)
class OpArrays:
    """Struct-of-arrays view of a graph, in execution order."""

    node: np.ndarray  # node ids
    flops: np.ndarray  # per occurrence
    nbytes: np.ndarray  # read + written per occurrence
    count: np.ndarray
    op_class: list[str]
    dtype: list[str]
    phase: list[str]
    module: list[str]


def lower(g: nx.DiGraph) -> OpArrays:
    nodes = sorted(g.nodes(data=True), key=lambda kv: kv[1]["index"])
    return OpArrays(
        node=np.array([n for n, _ in nodes], dtype=np.int64),
        flops=np.array([d["flops"] for _, d in nodes], dtype=np.float64),
        nbytes=np.array([d["bytes_read"] + d["bytes_written"] for _, d in nodes], dtype=np.float64),
        count=np.array([d["count"] for _, d in nodes], dtype=np.float64),
        op_class=[d["op_class"] for _, d in nodes],
        dtype=[(d["out_dtypes"] or ["float32"])[0] for _, d in nodes],
        phase=[d["phase"] for _, d in nodes],
        module=[d["module"] for _, d in nodes],
    )


@dataclass(frozen=True)
class ComputeResult:
    seconds: np.ndarray  # per op, all occurrences (already times count)
    bound: np.ndarray  # 0 compute, 1 memory, 2 free
    peak_used: np.ndarray  # FLOP/s ceiling used per op


def peak_flops_for(gpu, dtype: str, tensor_core: bool) -> float:
    """The FLOP/s ceiling of an op: the tensor-core peak of its dtype, else the fp32 peak."""
    peaks = gpu.peak_flops_per_s
    key = PEAK_KEY.get(dtype, "fp32") if tensor_core else "fp32"
    return float(peaks.get(key) or peaks["fp32"])


def _peak(gpu, dtype: str, op_class: str) -> float:
    return peak_flops_for(gpu, dtype, op_class in TENSOR_CORE_CLASSES)


def _curves(gpu):
    curves = [gpu.matmul_efficiency, gpu.attention_efficiency]
    m = max(len(c.points) for c in curves)
    cx = np.zeros((len(curves), m))
    cy = np.ones((len(curves), m))
    cn = np.zeros(len(curves), dtype=np.int64)
    for i, c in enumerate(curves):
        xs, ys = np.asarray(c.xs_log10, dtype=np.float64), np.asarray(c.ys, dtype=np.float64)
        cx[i, : len(xs)] = xs
        cy[i, : len(ys)] = ys
        cn[i] = len(xs)
    return cx, cy, cn


def roofline_seconds(gpu, flops: np.ndarray, nbytes: np.ndarray, peak: np.ndarray,
                     curve: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(seconds, bound) of one occurrence of each op on ``gpu``: the roofline kernel with the
    profile's efficiency curves, bandwidth and launch overhead."""
    cx, cy, cn = _curves(gpu)
    mem = gpu.memory_efficiency
    mx = np.asarray(mem.xs_log10, dtype=np.float64)
    my = np.asarray(mem.ys, dtype=np.float64)
    return roofline(flops, nbytes, peak, curve, cx, cy, cn, float(gpu.mem_bw_bytes_per_s), mx,
                    my, len(mx), float(gpu.kernel_launch_s))


def compute_times(arrays: OpArrays, gpu) -> ComputeResult:
    """Roofline time of every op on ``gpu`` (a GpuProfile)."""
    peak = np.array([_peak(gpu, d, c) for d, c in zip(arrays.dtype, arrays.op_class)])
    curve = np.array(
        [CURVE_MATMUL if c in ("matmul", "conv") else CURVE_ATTENTION if c == "attention" else -1
         for c in arrays.op_class],
        dtype=np.int64,
    )
    t, bound = roofline_seconds(gpu, arrays.flops, arrays.nbytes, peak, curve)
    return ComputeResult(seconds=t * arrays.count, bound=bound, peak_used=peak)


def class_roofline_parts(arrays: OpArrays, gpu) -> dict[str, dict[str, float]]:
    """Per op class: summed compute-only and memory-only seconds and op count (all occurrences).

    The effective efficiency of a class is then FLOPs / (peak * compute seconds), the same
    per-op curves as :func:`compute_times` folded into one number per class.
    """
    out: dict[str, dict[str, float]] = {}
    mem = gpu.memory_efficiency
    for i, cls in enumerate(arrays.op_class):
        row = out.setdefault(cls, {"compute_s": 0.0, "memory_s": 0.0, "ops": 0.0})
        n = arrays.count[i]
        row["ops"] += n
        if arrays.flops[i] > 0:
            if cls in TENSOR_CORE_CLASSES:
                curve = gpu.attention_efficiency if cls == "attention" else gpu.matmul_efficiency
                eff = curve.at(arrays.flops[i])
            else:
                eff = 1.0
            row["compute_s"] += n * arrays.flops[i] / (_peak(gpu, arrays.dtype[i], cls) * eff)
        if arrays.nbytes[i] > 0:
            row["memory_s"] += n * arrays.nbytes[i] / (gpu.mem_bw_bytes_per_s * mem.at(arrays.nbytes[i]))
    return out
