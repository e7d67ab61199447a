"""Compute C: per-op roofline time of an operator graph on one GPU profile.

time(op) = max(FLOPs / (peak(dtype, class) * eff(op)), bytes / (mem_bw * eff(bytes)))
         + per-op overhead,
times the op's ``count``. Matmul, convolution and attention run at the tensor-core peak of their
dtype scaled by the profile's measured efficiency, the most specific the profile and the op
give: matmuls (mm, addmm, _scaled_mm; bmm, baddbmm read as (b*m, n, k)) by their (m, n, k) in
the shape table of their dtype; attention ops by head dim, sequence, mask and phase in the table
of the attention kernel the caller names (``attention_kernel``: the runtime's choice, e.g.
flash3; None keeps the curves); attention by the FLOPs of one (batch, head) slice where the
profile has that curve; convolutions by their own curve; else the curve by the op's FLOPs. Every
other op runs at the fp32 vector peak and is in practice memory-bound, at the op's own measured
fraction of bandwidth where the profile has one (``op_efficiency``; between the op's points no
faster against ``memory_efficiency`` than at them: ``EfficiencyCurve.capped_by``). The
overhead is the profile's per-phase figure (``op_overhead``), else ``kernel_launch``, once per
kernel the op launches (a node of a fused group carries the group's bytes and kernel, the others
none: ``cost.fusion``). NB: ops execute one after another on one stream (no overlap between
kernels), as eager PyTorch does on one device.

Low-precision GEMMs (``aten._scaled_mm``) run at the peak of their operands' format (``fp8``,
``mxfp8``, ``nvfp4``; the node's ``compute_dtype``), not of their bf16 output, at the shape
table of their format where the profile has one (b200, gb200: measured fp8). Elsewhere their
efficiency is read from the bf16 table (or curve) at the size a bf16 GEMM of the same duration
has: FLOPs times bf16 peak / format peak (each of m, n, k times its cube root), the rule by which
``GpuProfile.scaled`` moves curves to a faster part. NB: there the bf16 measurements stand in
for the format's own; a large fp8 GEMM reaches the bf16 ceiling fraction of the fp8 peak. A
calibration's one table of every dtype names the dtype it was measured in, and a matmul of any
other dtype reads it by the same rule (an fp32 matmul on a GPU's bf16 table: a larger shape).

A GEMM on a 2:4-sparse operand (node ``sparsity``, ``cost.fusion``'s ``dequant`` family) runs
at its dtype's peak times the profile's sparse speedup (``hardware.sparsity``), its FLOPs those
of the dense GEMM.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import networkx as nx
import numpy as np

from archcost.cost.kernels import roofline
from archcost.hardware.sparsity import sparse_speedup
from archcost.hardware.tables import ALL_DTYPES
from archcost.trace.graph import key_op
from archcost.trace.rules_attention import attention_slices

__all__ = ["OpArrays", "ComputeResult", "lower", "compute_times", "roofline_seconds",
           "peak_flops_for", "PEAK_KEY", "memory_curve_index", "overhead_seconds", "floor_seconds",
           "curve_for",
           "op_mnk", "op_attention", "peak_keys", "SHAPED_MATMULS", "BATCHED_MATMULS",
           "LOW_PRECISION_KEYS", "require_peak", "runtime_attention_kernel"]

PEAK_KEY = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16",
            "float8_e4m3fn": "fp8", "float8_e5m2": "fp8", "float64": "fp32",
            "mxfp8": "mxfp8", "nvfp4": "nvfp4"}
LOW_PRECISION_KEYS = ("fp8", "mxfp8", "nvfp4")
TENSOR_CORE_CLASSES = ("matmul", "conv", "attention")
(CURVE_MATMUL, CURVE_ATTENTION, CURVE_CONV, CURVE_ATTENTION_SLICE, CURVE_CONV_BACKWARD,
 CURVE_ATTENTION_DECODE) = range(6)
BATCHED_MATMULS = ("aten.bmm", "aten.baddbmm")  # (b, m, k) @ (b, k, n): read as (b*m, n, k)
# priced by (m, n, k)
SHAPED_MATMULS = ("aten.mm", "aten.addmm", "aten._scaled_mm", *BATCHED_MATMULS)


def runtime_attention_kernel(gpu, runtime) -> str | None:
    """The attention kernel ``runtime`` (a RuntimeProfile) runs on ``gpu``: the first of its
    preference list the profile has a table for (None: no runtime, or none rated: the profile's
    attention curves)."""
    if runtime is None:
        return None
    return gpu.attention_kernel([k.value for k in runtime.attention_kernel])


def curve_for(op_class: str, op: str = "") -> int:
    """The compute-efficiency curve of an op of ``op_class`` (-1: none, efficiency 1);
    a convolution's backward (``op``) has its own."""
    if op_class == "conv" and op == "aten.convolution_backward":
        return CURVE_CONV_BACKWARD
    return {"matmul": CURVE_MATMUL, "conv": CURVE_CONV, "attention": CURVE_ATTENTION}.get(
        op_class, -1)


def _curve_rows(gpu) -> list:
    """The compute curves in CURVE_* order, each falling back as the profile lacks it."""
    conv = gpu.conv_efficiency or gpu.matmul_efficiency
    per_slice = gpu.attention_head_efficiency or gpu.attention_efficiency
    return [gpu.matmul_efficiency, gpu.attention_efficiency, conv, per_slice,
            gpu.conv_backward_efficiency or conv, gpu.attention_decode_efficiency or per_slice]


@dataclass(frozen=True)
class OpArrays:
    """Struct-of-arrays view of a graph, in execution order."""

    node: np.ndarray  # node ids
    op: list[str]  # aten op names
    curve_key: list[str]  # each op's key among the per-op efficiency curves (op_curve_key)
    flops: np.ndarray  # per occurrence
    nbytes: np.ndarray  # read + written per occurrence
    count: np.ndarray
    op_class: list[str]
    dtype: list[str]
    phase: list[str]
    module: list[str]
    slices: np.ndarray  # attention: (batch, head) slices per occurrence; 0 otherwise or unknown
    mnk: np.ndarray  # [n, 3] float64: (m, n, k) of matmuls (bmm: (b*m, n, k)); zeros otherwise
    # [n, 5] float64: attention ops' head dim, query and key length, causal, backward; zeros
    # for other ops
    attn: np.ndarray
    launches: np.ndarray  # kernels each op launches (0 inside a fused group, cost.fusion)
    # GEMMs on a 2:4-sparse operand (the ``sparsity`` a fused ``dequant`` prologue marks);
    # None: none
    sparse: np.ndarray | None = None


def op_slices(d: dict) -> int:
    """(batch, head) slices of an attention node (0 for other ops or an unknown shape)."""
    if d["op_class"] != "attention" or not d["out_shapes"]:
        return 0
    return attention_slices(d["op"], d["out_shapes"][0])


def op_mnk(d: dict) -> tuple[float, float, float]:
    """(m, n, k) of a matmul node ((m, k) @ (k, n), from its output and FLOPs = 2mnk); a
    batched one ((b, m, k) @ (b, k, n)) as (b*m, n, k), the batch adding output rows (see
    ``hardware.tables.ShapeTable``); zeros for other ops."""
    if d["op"] not in SHAPED_MATMULS or not d["out_shapes"]:
        return 0.0, 0.0, 0.0
    shape = d.get("gemm_shape") or d["out_shapes"][0]  # a merged GEMM's (``cost.fusion``)
    if len(shape) != (3 if d["op"] in BATCHED_MATMULS else 2):
        return 0.0, 0.0, 0.0
    m, n = shape[-2] * (shape[0] if len(shape) == 3 else 1), shape[-1]
    if m * n <= 0 or d["flops"] <= 0:
        return 0.0, 0.0, 0.0
    return float(m), float(n), d["flops"] / (2.0 * m * n)


def op_dtype(d: dict) -> str:
    """What a node computes in (its peak's dtype): ``compute_dtype``, else its first output's
    dtype (graphs traced before the attribute existed)."""
    return d.get("compute_dtype") or (d["out_dtypes"] or ["float32"])[0]


def op_attention(d: dict) -> tuple[float, ...]:
    """(head dim, query length, key length, causal, backward) of an attention node; zeros for
    other ops and for graphs traced before the attribute existed."""
    shape = d.get("attention_shape") or ()
    return tuple(float(x) for x in shape) if len(shape) == 5 else (0.0,) * 5


def lower(g: nx.DiGraph) -> OpArrays:
    nodes = sorted(g.nodes(data=True), key=lambda kv: kv[1]["index"])
    return OpArrays(
        node=np.array([n for n, _ in nodes], dtype=np.int64),
        op=[d["op"] for _, d in nodes],
        curve_key=[op_curve_key(d) for _, d in nodes],
        flops=np.array([d["flops"] for _, d in nodes], dtype=np.float64),
        nbytes=np.array([d["bytes_read"] + d["bytes_written"] for _, d in nodes], dtype=np.float64),
        count=np.array([d["count"] for _, d in nodes], dtype=np.float64),
        op_class=[d["op_class"] for _, d in nodes],
        dtype=[op_dtype(d) for _, d in nodes],
        phase=[d["phase"] for _, d in nodes],
        module=[d["module"] for _, d in nodes],
        slices=np.array([op_slices(d) for _, d in nodes], dtype=np.float64),
        mnk=np.array([op_mnk(d) for _, d in nodes], dtype=np.float64).reshape(-1, 3),
        attn=np.array([op_attention(d) for _, d in nodes], dtype=np.float64).reshape(-1, 5),
        launches=np.array([d.get("launches", 1.0) for _, d in nodes], dtype=np.float64),
        sparse=np.array([d.get("sparsity") == "2:4" for _, d in nodes], dtype=bool),
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


def peak_keys(dtypes) -> list[str]:
    """The ``peak_flops_per_s`` key of each op's dtype (what its shape table is keyed by)."""
    return [PEAK_KEY.get(dt, "fp32") for dt in dtypes]


def require_peak(gpu, key: str, option: str, fallback: str = "bf16-mixed") -> None:
    """A one-line ConfigError when ``gpu`` has no ``key`` peak (``--dtype fp8`` on an A100);
    ``fallback``: the ``--dtype`` the fix proposes."""
    from archcost.errors import ConfigError

    if gpu.peak_flops_per_s.get(key):
        return
    have = ", ".join(k for k in LOW_PRECISION_KEYS if gpu.peak_flops_per_s.get(k)) or "none"
    if key == "fp8":
        fix = (f"use --dtype {fallback}, or a GPU profile with an fp8 peak (Hopper, Ada, "
               "Blackwell: h100-sxm, h200, b200, gb200)")
    else:
        other = "fp8" if gpu.peak_flops_per_s.get("fp8") else fallback
        fix = f"use --dtype {other} on this GPU, or a Blackwell GPU profile (b200, gb200)"
    raise ConfigError(f"{option}: GPU profile {gpu.name} has no {key} peak (its low-precision "
                      f"peaks: {have}); {fix}")


def _reference_scale(gpu, keys: list[str] | None, n: int) -> np.ndarray:
    """Per op, the factor from its size to that of a bf16 op of equal duration: bf16 peak /
    its format's peak for low-precision ops on a profile with both peaks, else 1."""
    if keys is None:
        return np.ones(n)
    peaks = gpu.peak_flops_per_s
    ref = peaks.get("bf16")
    ratio = {k: ref / peaks[k] for k in LOW_PRECISION_KEYS if ref and peaks.get(k)}
    return np.array([ratio.get(k, 1.0) for k in keys], dtype=np.float64)


def _peak(gpu, dtype: str, op_class: str) -> float:
    return peak_flops_for(gpu, dtype, op_class in TENSOR_CORE_CLASSES)


def _peaks(arrays: OpArrays, gpu) -> np.ndarray:
    """Each op's FLOP/s ceiling: its dtype's peak, times the profile's 2:4 sparse speedup for
    GEMMs on a sparse operand (``hardware.sparsity``; 1 where the profile states none)."""
    peak = np.array([_peak(gpu, d, c) for d, c in zip(arrays.dtype, arrays.op_class)])
    if arrays.sparse is None or not arrays.sparse.any():
        return peak
    keys = peak_keys(arrays.dtype)
    return peak * np.array([sparse_speedup(gpu, k)[0] if s else 1.0
                            for s, k in zip(arrays.sparse, keys)])


def _curves(curves) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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


def _memory_curves(gpu) -> list:
    """Row 0: memory_efficiency; then the profile's per-op curves, by sorted op name, each
    capped by memory_efficiency between its points (``EfficiencyCurve.capped_by``)."""
    mem = gpu.memory_efficiency
    return [mem] + [_capped(gpu.op_efficiency[k], mem) for k in sorted(gpu.op_efficiency)]


@functools.lru_cache(maxsize=4096)
def _capped(curve, base):
    """``curve.capped_by(base)``, once per pair of (immutable) curves: a serving search or a
    long generation prices thousands of steps on one profile."""
    return curve.capped_by(base)


def op_curve_key(d: dict) -> str:
    """A node's key among the per-op efficiency curves (``trace.graph.efficiency_key``: the op
    name, with its form where forms differ in speed); the op name for graphs traced before."""
    return d.get("efficiency_key") or d["op"]


def memory_curve_index(gpu, keys) -> np.ndarray:
    """Row of each op's memory-efficiency curve by its key (``op_curve_key``; a form without a
    curve of its own reads its op's: a profile calibrated before forms were timed apart), 0:
    the profile's memory_efficiency."""
    rows = {k: i + 1 for i, k in enumerate(sorted(gpu.op_efficiency))}
    return np.array([rows.get(k) or rows.get(key_op(k), 0) for k in keys], dtype=np.int64)


def _by_phase(figure, phases) -> np.ndarray:
    by_phase = {p: figure(p) for p in set(phases)}
    return np.array([by_phase[p] for p in phases], dtype=np.float64)


def overhead_seconds(gpu, phases) -> np.ndarray:
    """Per-op overhead of each op from its phase name."""
    return _by_phase(gpu.overhead_s, phases)


def floor_seconds(gpu, phases) -> np.ndarray:
    """The least time of each op from its phase name: the host's time per op where the host
    runs ahead of the device (``GpuProfile.host_ahead``), zeros elsewhere."""
    return _by_phase(gpu.host_floor_s, phases)


def _per_slice(gpu, curve: np.ndarray, flops: np.ndarray, slices: np.ndarray | None,
               attn: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(curve, size) per op: attention ops with known slices read the profile's per-slice
    attention curve at their FLOPs per slice, a forward of one query (``attn``: a decode
    step's) its decode curve where it has one; every other op its curve at its FLOPs."""
    size = np.asarray(flops, dtype=np.float64)
    if slices is None or (gpu.attention_head_efficiency is None
                          and gpu.attention_decode_efficiency is None):
        return curve, size
    hit = (curve == CURVE_ATTENTION) & (slices > 0)
    decode = np.zeros(len(size), dtype=bool)
    if gpu.attention_decode_efficiency is not None and attn is not None and len(size):
        rows = np.asarray(attn, dtype=np.float64).reshape(-1, 5)
        decode = hit & (rows[:, 1] > 0) & (rows[:, 1] <= 1) & (rows[:, 4] == 0)
    if gpu.attention_head_efficiency is None:
        hit = decode
    return (np.where(decode, CURVE_ATTENTION_DECODE, np.where(hit, CURVE_ATTENTION_SLICE, curve)),
            np.where(hit, size / np.where(hit, slices, 1.0), size))


def _per_shape(gpu, curve: np.ndarray, peak: np.ndarray, mnk: np.ndarray | None,
               keys: list[str] | None) -> tuple[np.ndarray, np.ndarray]:
    """(curve, peak) per op: matmuls with a known (m, n, k) whose dtype (``keys``: peak keys;
    None: the table of every dtype only) has a shape table run at the table's efficiency,
    folded into their peak (curve -1: no curve on top); others unchanged. An op reading a
    table measured in another dtype reads it at its same-duration shape: each of m, n, k times
    the cube root of the table dtype's peak over its own. That dtype is the table's own
    (``ShapeTable.dtype``: a calibration's one table of every dtype), else bf16 for a
    low-precision op on a profile without a table of its format, which reads the bf16 table
    (else the every-dtype one); an fp32 matmul on a bf16 table reads a larger shape, an fp8
    one a smaller."""
    if not gpu.matmul_shape_efficiency or mnk is None or not len(curve):
        return curve, peak
    mnk = np.asarray(mnk, dtype=np.float64).reshape(-1, 3)
    cand = (curve == CURVE_MATMUL) & (mnk[:, 0] > 0)
    if not cand.any():
        return curve, peak
    keys = keys if keys is not None else [ALL_DTYPES] * len(curve)
    tables, peaks = gpu.matmul_shape_efficiency, gpu.peak_flops_per_s
    for key in set(keys[i] for i in np.flatnonzero(cand)):
        borrowed = key in LOW_PRECISION_KEYS and key not in tables
        table = gpu.shape_table("bf16" if borrowed else key)
        if table is None:
            continue
        hit = cand & np.array([k == key for k in keys])
        ref = table.dtype or ("bf16" if borrowed else None)
        dims = mnk
        if ref not in (None, key) and peaks.get(ref) and peaks.get(key):
            dims = mnk * np.cbrt(peaks[ref] / peaks[key])  # its same-duration shape
        eff = table.at(*np.where(hit[:, None], dims, 1.0).T)
        curve, peak = np.where(hit, -1, curve), np.where(hit, peak * eff, peak)
    return curve, peak


def _per_kernel(gpu, curve: np.ndarray, peak: np.ndarray, attn: np.ndarray | None,
                kernel: str | None) -> tuple[np.ndarray, np.ndarray]:
    """(curve, peak) per op: with ``kernel`` named and a profile that has attention tables,
    attention ops with a known geometry run at that kernel's table's efficiency by head dim,
    sequence (the geometric mean of query and key lengths), mask and phase, folded into their
    peak (curve -1); others unchanged. A profile without attention tables keeps its curves."""
    if kernel is None or not gpu.attention_kernels or attn is None or not len(curve):
        return curve, peak
    table = gpu.attention_table(kernel)
    attn = np.asarray(attn, dtype=np.float64).reshape(-1, 5)
    hit = (curve == CURVE_ATTENTION) & (attn[:, 0] > 0)
    if not hit.any():
        return curve, peak
    safe = np.where(hit[:, None], attn, 1.0)
    eff = table.at(safe[:, 0], np.sqrt(safe[:, 1] * safe[:, 2]), safe[:, 3] > 0, safe[:, 4] > 0)
    return np.where(hit, -1, curve), np.where(hit, peak * eff, peak)


def _folded(gpu, flops, peak, curve, slices, mnk, keys, attn, attention_kernel
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(curve, peak, size) per op: the shape and attention-kernel tables folded into the peak
    (curve -1), the peak at the clock a training step holds, and the size each remaining curve
    is read at (per slice, at its bf16-equivalent size)."""
    scale = _reference_scale(gpu, keys, len(np.asarray(flops)))
    curve, peak = _per_shape(gpu, np.asarray(curve), np.asarray(peak, dtype=np.float64), mnk,
                             keys)
    curve, peak = _per_kernel(gpu, curve, peak, attn, attention_kernel)
    peak = peak * gpu.sustained_clock  # the share of the tables' clock a training step holds
    curve, size = _per_slice(gpu, curve, flops, slices, attn)
    return curve, peak, size * scale


def roofline_seconds(gpu, flops: np.ndarray, nbytes: np.ndarray, peak: np.ndarray,
                     curve: np.ndarray, mem_curve: np.ndarray, launch: np.ndarray,
                     slices: np.ndarray | None = None, mnk: np.ndarray | None = None,
                     keys: list[str] | None = None, attn: np.ndarray | None = None,
                     attention_kernel: str | None = None, floor: np.ndarray | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(seconds, bound) of one occurrence of each op on ``gpu``: the roofline kernel with the
    profile's efficiency curves and bandwidth, plus each op's overhead ``launch``, at least
    ``floor`` (:func:`floor_seconds`; ``bound`` stays the roofline's). Where the
    profile has them: ``slices`` (attention ops' (batch, head) slices, 0 where unknown) lets
    attention read a per-slice curve at its FLOPs per slice; ``mnk`` (matmuls' (m, n, k), zeros
    where unknown) with ``keys`` (each op's peak key, :func:`peak_keys`) lets matmuls read the
    shape table of their dtype (low-precision ops without a table of their own: the bf16 one
    at their bf16-equivalent size); ``attn`` (:attr:`OpArrays.attn` rows) with
    ``attention_kernel`` lets attention read that kernel's table."""
    curve, peak, size = _folded(gpu, flops, peak, curve, slices, mnk, keys, attn,
                                attention_kernel)
    cx, cy, cn = _curves(_curve_rows(gpu))
    mx, my, mn = _curves(_memory_curves(gpu))
    t, bound = roofline(flops, nbytes, peak, curve, size, cx, cy, cn,
                        float(gpu.mem_bw_bytes_per_s), mem_curve, mx, my, mn, launch)
    if floor is None:
        return t, bound
    return np.where(bound == 2, t, np.maximum(t, floor)), bound  # views take no time


def _op_curves(arrays: OpArrays) -> np.ndarray:
    return np.array([curve_for(c, op) for c, op in zip(arrays.op_class, arrays.op)],
                    dtype=np.int64)


def compute_times(arrays: OpArrays, gpu, attention_kernel: str | None = None) -> ComputeResult:
    """Roofline time of every op on ``gpu`` (a GpuProfile); attention ops read the table of
    ``attention_kernel`` where the profile has attention tables."""
    peak = _peaks(arrays, gpu)
    t, bound = roofline_seconds(gpu, arrays.flops, arrays.nbytes, peak, _op_curves(arrays),
                                memory_curve_index(gpu, arrays.curve_key),
                                overhead_seconds(gpu, arrays.phase) * arrays.launches,
                                arrays.slices, arrays.mnk,
                                peak_keys(arrays.dtype), arrays.attn, attention_kernel,
                                floor_seconds(gpu, arrays.phase) * arrays.launches)
    return ComputeResult(seconds=t * arrays.count, bound=bound, peak_used=peak)


def class_roofline_parts(arrays: OpArrays, gpu, attention_kernel: str | None = None
                         ) -> dict[str, dict[str, float]]:
    """Per op class: summed compute-only and memory-only seconds and op count (all occurrences).

    The effective efficiency of a class is then FLOPs / (peak * compute seconds), the same
    per-op curves as :func:`compute_times` folded into one number per class.
    """
    out: dict[str, dict[str, float]] = {}
    by_curve = _curve_rows(gpu)
    mem_curves = _memory_curves(gpu)
    mem_rows = memory_curve_index(gpu, arrays.curve_key)
    peak = _peaks(arrays, gpu)
    curve, peak, size = _folded(gpu, arrays.flops, peak, _op_curves(arrays), arrays.slices,
                                arrays.mnk, peak_keys(arrays.dtype), arrays.attn,
                                attention_kernel)
    for i, cls in enumerate(arrays.op_class):
        row = out.setdefault(cls, {"compute_s": 0.0, "memory_s": 0.0, "ops": 0.0})
        n = arrays.count[i]
        row["ops"] += n
        if arrays.flops[i] > 0:
            c = int(curve[i])
            eff = by_curve[c].at(size[i]) if cls in TENSOR_CORE_CLASSES and c >= 0 else 1.0
            row["compute_s"] += n * arrays.flops[i] / (peak[i] * eff)
        if arrays.nbytes[i] > 0:
            mem = mem_curves[mem_rows[i]]
            row["memory_s"] += n * arrays.nbytes[i] / (gpu.mem_bw_bytes_per_s *
                                                       mem.at(arrays.nbytes[i]))
    return out
