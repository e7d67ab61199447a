"""Pure numerics of calibration: spreads of timed samples, peaks, efficiency curves, collective fits.

Nothing here times anything (``calibrate.py`` and ``collective_worker.py`` do); every function
takes plain numbers and returns plain numbers, so each is checked on synthetic data with a
known answer (tests/test_calibrate.py).

Conventions, chosen so a profile built from these figures reproduces what was measured when the
cost engine evaluates it (``archcost/cost/kernels.py``):

- FLOPs: a matmul of (m, k) by (k, n) is ``2*m*n*k`` (a multiply-add is 2 FLOPs, as
  ``torch.utils.flop_counter``); scaled-dot-product attention is ``2*B*H*Sq*Sk*(Dq + Dv)``,
  causal at half — the rule of ``archcost/trace/rules_attention.py`` (flash-attention's
  convention).
- Launch overhead: the engine adds ``kernel_launch`` to every op, outside the efficiency curves
  (``hardware_profiles/gpus/h200.yaml``), so the rate of a measured op is its size over its
  median time *less* the launch overhead. That difference is floored at half the median: the
  launch figure comes from another op (an add of 1-element tensors) and never accounts for more
  than half of a measured one.
- Peak = the best such rate; an efficiency curve's points are [op size, rate / peak], one point
  per distinct size (shapes of equal size averaged), sorted by size: the reader's rule (x
  increasing, y in (0, 1]). Sizes are integers (FLOPs, bytes), so no two points collide by
  rounding.
- Collectives: ring formulas of nccl-tests' PERFORMANCE.md as ``kernels.collective_time`` has
  them, with ``n`` ranks, ``S`` bytes of the full buffer, latency ``alpha`` per hop and
  bandwidth ``bw`` per rank per direction: all-reduce ``2(n-1) alpha + 2(n-1)/n S/bw``,
  all-gather and reduce-scatter ``(n-1) alpha + (n-1)/n S/bw``, send/recv ``alpha + S/bw``.
  Each is linear in (alpha, 1/bw), fitted by least squares on relative errors (each equation
  divided by its measured time, so a 64 MB point does not drown an 8-byte one), with alpha >= 0,
  over the two ends of each collective's size range (Hockney's two regimes): its smallest size,
  where the time is latency, and the largest quarter of its sizes (at least two), where it is
  bandwidth. Sizes in between do not pull the fit: on a shared CPU their times bend with the
  caches (a 1 MB gloo reduce-scatter can beat a 256 KB one), and a fit that splits the
  difference with them misses the large buffers a training step sends by half. Their errors are
  still reported (``rms_rel_error``, ``max_rel_error`` are over every point).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Spread", "spread", "shape_table", "matmul_flops", "sdpa_flops", "kernel_seconds",
    "best_rate", "per_op_overhead", "cache_capacity", "CACHED_SHARE",
    "efficiency_curve", "held_out_error", "COLLECTIVES", "ring_coefficients", "CollectiveFit",
    "fit_collective", "predict_collective", "regime_points", "FitError",
]

COLLECTIVES = ("all_reduce", "all_gather", "reduce_scatter", "send_recv")


class FitError(ValueError):
    """Measurements a model cannot be fitted to (the caller names the benchmark and the fix)."""


@dataclass(frozen=True, slots=True)
class Spread:
    """Median and 10th/90th percentiles of one benchmark point's samples, in seconds."""

    median: float
    p10: float
    p90: float
    reps: int


def spread(samples: Sequence[float]) -> Spread:
    """Median, p10 and p90 (linear interpolation between order statistics) of ``samples``."""
    if not samples:
        raise FitError("no samples to summarise")
    arr = np.asarray(samples, dtype=np.float64)
    p10, med, p90 = np.percentile(arr, [10.0, 50.0, 90.0])
    return Spread(median=float(med), p10=float(p10), p90=float(p90), reps=len(samples))


def matmul_flops(m: int, n: int, k: int) -> int:
    """FLOPs of an (m, k) @ (k, n) matmul: one multiply-add = 2 FLOPs."""
    return 2 * m * n * k


def sdpa_flops(batch: int, heads: int, sq: int, sk: int, dq: int, dv: int, causal: bool) -> int:
    """FLOPs of one forward scaled-dot-product attention: QK^T and PV, causal at half."""
    flops = 2 * batch * heads * sq * sk * (dq + dv)
    return flops // 2 if causal else flops


def kernel_seconds(median_s: float, launch_s: float) -> float:
    """An op's time less the launch overhead the engine adds on top, at least half of it."""
    return max(median_s - launch_s, 0.5 * median_s)


def per_op_overhead(phase_s: float, work_s: float, n_ops: int, floor_s: float) -> float:
    """What one op of a phase costs beyond its work: the phase's measured time less the work
    the engine gives its ops, over the ops; at least ``floor_s`` (a bare launch)."""
    if n_ops < 1:
        raise FitError("a phase without ops has no per-op overhead")
    return max((phase_s - work_s) / n_ops, floor_s)


def best_rate(sizes: Sequence[float], seconds: Sequence[float]) -> float:
    """The highest size/time over the points: a dtype's peak, or the memory bandwidth."""
    rates = [x / t for x, t in zip(sizes, seconds) if t > 0]
    if not rates:
        raise FitError("no point with a positive time")
    return max(rates)


def efficiency_curve(sizes: Sequence[int], seconds: Sequence[float], peak: float,
                     digits: int = 4, work: Sequence[float] | None = None
                     ) -> tuple[tuple[int, float], ...]:
    """[size, rate / peak] per distinct size, sorted by size; y rounded to ``digits``
    significant digits, clipped to (0, 1] (attention against the matmul peak can exceed it).
    The rate is ``work / seconds``, the work being the size unless given (a curve indexed by
    the FLOPs of one slice of an op still rates the whole op's FLOPs)."""
    if not peak > 0:
        raise FitError(f"peak {peak!r} must be positive")
    groups: dict[int, list[float]] = {}
    for i, (x, t) in enumerate(zip(sizes, seconds)):
        if x > 0 and t > 0:
            groups.setdefault(int(x), []).append((x if work is None else work[i]) / t)
    if not groups:
        raise FitError("no point with a positive size and time")
    floor = 10.0 ** -digits
    out = []
    for x in sorted(groups):
        y = min(1.0, sum(groups[x]) / len(groups[x]) / peak)
        out.append((x, max(floor, _round_sig(y, digits))))
    return tuple(out)


# a working set counts as cached while reads over it take at most this share of their time from
# memory (halfway, in time, between an LLC's ~0.5 and memory's 1 on the machines measured)
CACHED_SHARE = 0.75


def cache_capacity(sizes: Sequence[float], seconds: Sequence[float],
                   share: float = CACHED_SHARE) -> float | None:
    """The largest working set read from cache: of reads timed over working sets of ``sizes``
    bytes (the largest one out of every cache: the reference), the largest size up to which
    every smaller one too took at most ``share`` of the reference's time. None: even the
    smallest did not."""
    pts = sorted((float(x), float(t)) for x, t in zip(sizes, seconds) if x > 0 and t > 0)
    if len(pts) < 2:
        raise FitError("a cache capacity needs two or more working sets with positive times")
    ref = pts[-1][1]
    best = None
    for x, t in pts[:-1]:
        if t > share * ref:
            break
        best = x
    return best


def shape_table(dims: Sequence[int], seconds: dict[tuple[int, int, int], float], peak: float,
                fill, digits: int = 4, m_dims: Sequence[int] | None = None
                ) -> tuple[list, list[tuple[int, int, int]]]:
    """Efficiency of each (m, n, k) cell of the grid ``m_dims`` x ``dims`` x ``dims``
    (``m_dims`` defaults to ``dims``; nested m, n, k): FLOPs /
    seconds / ``peak`` where the cell was timed (``seconds``), clipped to (0, 1]; else
    ``fill(FLOPs)`` (the curve by FLOPs: cells too large to time are on its plateau).
    Returns the values and the cells filled."""
    if not peak > 0:
        raise FitError(f"peak {peak!r} must be positive")
    floor = 10.0 ** -digits
    values, filled = [], []
    for m in (dims if m_dims is None else m_dims):
        plane = []
        for n in dims:
            row = []
            for k in dims:
                flops = matmul_flops(m, n, k)
                t = seconds.get((m, n, k), 0.0)
                if t > 0:
                    y = min(1.0, flops / t / peak)
                else:
                    y = min(1.0, float(fill(flops)))
                    filled.append((m, n, k))
                row.append(max(floor, _round_sig(y, digits)))
            plane.append(row)
        values.append(plane)
    return values, filled


def held_out_error(sizes: Sequence[float], seconds: Sequence[float], peak: float,
                   work: Sequence[float] | None = None) -> float:
    """How well an efficiency curve indexed by ``sizes`` (rating ``work``, default the sizes)
    predicts points it was not fitted to: the root mean square of log(predicted / measured
    time) over the points, each predicted by the curve of all the others (leave one out).
    Compares two ways of indexing the same measurements (attention by its FLOPs, or by the
    FLOPs of one (batch, head) slice)."""
    from archcost.hardware.profile import EfficiencyCurve

    w = list(sizes) if work is None else list(work)
    pts = [(float(x), float(t), float(f)) for x, t, f in zip(sizes, seconds, w) if x > 0 and t > 0]
    if len(pts) < 3:
        raise FitError("need at least three points to compare curves")
    errs = []
    for i, (x, t, f) in enumerate(pts):
        rest = pts[:i] + pts[i + 1:]
        curve = EfficiencyCurve(efficiency_curve([r[0] for r in rest], [r[1] for r in rest], peak,
                                                 digits=12, work=[r[2] for r in rest]))
        errs.append(math.log(f / (peak * curve.at(x)) / t))
    return math.sqrt(sum(e * e for e in errs) / len(errs))


def _round_sig(v: float, digits: int) -> float:
    if v == 0 or not math.isfinite(v):
        return v
    return round(v, digits - 1 - int(math.floor(math.log10(abs(v)))))


def ring_coefficients(op: str, n: int) -> tuple[float, float]:
    """(c_alpha, c_bytes) of ``t = c_alpha * alpha + c_bytes * S / bw`` for ``op`` on ``n``
    ranks, the formulas of ``kernels.collective_time`` (ring algorithm)."""
    if n < 2:
        raise FitError(f"a collective needs at least 2 ranks, got {n}")
    frac = (n - 1) / n
    if op == "all_reduce":
        return 2.0 * (n - 1), 2.0 * frac
    if op in ("all_gather", "reduce_scatter"):
        return float(n - 1), frac
    if op == "send_recv":
        return 1.0, 1.0
    raise FitError(f"unknown collective {op!r}; use one of {', '.join(COLLECTIVES)}")


@dataclass(frozen=True, slots=True)
class CollectiveFit:
    """Latency per hop and bandwidth per rank (one direction) fitted to measured medians."""

    alpha_s: float
    bw_bytes_per_s: float
    rms_rel_error: float  # root mean square of (model - measured) / measured over the points
    max_rel_error: float
    points: int


def predict_collective(op: str, n: int, nbytes: float, alpha_s: float, bw: float) -> float:
    """Seconds of ``op`` over ``nbytes`` on ``n`` ranks (ring formula)."""
    c_alpha, c_bytes = ring_coefficients(op, n)
    return c_alpha * alpha_s + c_bytes * nbytes / bw


def fit_collective(points: Iterable[tuple[str, float, float]], n: int) -> CollectiveFit:
    """Least-squares (alpha, bw) over ``(op, bytes, median seconds)`` points on ``n`` ranks.

    One op's points give that op's fit; several ops' points give the single (alpha, bw) pair a
    link level holds. The fit uses each op's latency and bandwidth points (``regime_points``);
    relative errors are minimised, alpha is kept >= 0 (refitted at 0 when the free fit goes
    negative); a bandwidth that does not come out positive is an error.
    """
    pts = [(op, float(s), float(t)) for op, s, t in points]
    if len(pts) < 2 or any(t <= 0 or s <= 0 for _, s, t in pts):
        raise FitError("need at least two points with positive sizes and times")
    coef = np.array([ring_coefficients(op, n) for op, _, _ in pts], dtype=np.float64)
    sizes = np.array([s for _, s, _ in pts])
    times = np.array([t for _, _, t in pts])
    a_all = np.column_stack([coef[:, 0], coef[:, 1] * sizes]) / times[:, None]
    used = regime_points(pts)
    a, b = a_all[used], np.ones(len(used))
    (alpha, inv_bw), *_ = np.linalg.lstsq(a, b, rcond=None)
    if alpha < 0:  # the latency term is not resolved: bandwidth alone, alpha at its bound
        alpha, col = 0.0, a[:, 1]
        inv_bw = float(col @ b / (col @ col))
    if not inv_bw > 0:
        raise FitError("times do not grow with size: the bandwidth cannot be fitted; "
                       "measure larger sizes")
    bw = 1.0 / inv_bw
    model = coef[:, 0] * alpha + coef[:, 1] * sizes / bw
    rel = model / times - 1.0
    return CollectiveFit(alpha_s=float(alpha), bw_bytes_per_s=float(bw),
                         rms_rel_error=float(np.sqrt(np.mean(rel**2))),
                         max_rel_error=float(np.max(np.abs(rel))), points=len(pts))


def regime_points(points: Sequence[tuple[str, float, float]]) -> list[int]:
    """Indices of the points a collective fit uses: per op, its smallest size (the latency
    regime) and the largest quarter of its distinct sizes, at least two (the bandwidth regime);
    every point at one of those sizes."""
    by_op: dict[str, list[float]] = {}
    for op, s, _ in points:
        by_op.setdefault(op, []).append(s)
    keep: dict[str, set[float]] = {}
    for op, sizes in by_op.items():
        distinct = sorted(set(sizes))
        keep[op] = {distinct[0], *distinct[-max(2, len(distinct) // 4):]}
    return [i for i, (op, s, _) in enumerate(points) if s in keep[op]]
