"""Pipeline stage partitioning: contiguous runs of identical layers over ``k`` stages, the first
stage also running the pre-block ops (embeddings) and the last the post-block ops (head, loss).

``balanced`` minimises the slowest stage (the pipeline's steady-state period) with every stage
holding at least one layer; among the optimal splits it leaves the spare layers to the later
stages, since under 1F1B the first stage keeps the most micro-batches in flight. ``uniform`` is
Megatron-LM's ``layers / k`` per stage (what the published runs used; interleaved schedules
require it). Both are njit functions the plan kernel calls per plan.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["balanced_counts", "uniform_counts", "stage_costs"]


@njit(cache=True)
def _capacity(t, cost, extra):
    """Layers a stage with ``extra`` fixed cost can take within period ``t`` (may be < 0)."""
    if cost <= 0.0:
        return 1 << 30
    return int(np.floor((t - extra) / cost + 1e-9))


@njit(cache=True)
def _fits(t, n, k, cost, first, last):
    if k == 1:
        return n * cost + first + last <= t * (1.0 + 1e-12)
    c0 = _capacity(t, cost, first)
    cl = _capacity(t, cost, last)
    cm = _capacity(t, cost, 0.0)
    if c0 < 1 or cl < 1 or cm < 1:
        return False
    return c0 + cl + (k - 2) * cm >= n


@njit(cache=True)
def balanced_counts(n, k, cost, first, last, out):
    """Fill ``out[:k]`` with layers per stage (sum ``n``, each >= 1; needs n >= k) minimising
    the slowest stage ``max(count * cost + fixed)``; returns that period."""
    if k == 1:
        out[0] = n
        return n * cost + first + last
    lo = max(cost, first + cost, last + cost)  # every stage holds at least one layer
    hi = (n - k + 1) * cost + first + last
    if not _fits(hi, n, k, cost, first, last):
        hi = n * cost + first + last
    for _ in range(100):
        if hi - lo <= 1e-12 * hi:
            break
        mid = 0.5 * (lo + hi)
        if _fits(mid, n, k, cost, first, last):
            hi = mid
        else:
            lo = mid
    t = hi
    # spare layers to the later stages: fill from the back, the first stage takes the rest
    left = n
    for s in range(k - 1, 0, -1):
        extra = last if s == k - 1 else 0.0
        cap = _capacity(t, cost, extra)
        take = min(cap, left - s)  # leave one layer for each earlier stage
        if take < 1:
            take = 1
        out[s] = take
        left -= take
    out[0] = left
    worst = 0.0
    for s in range(k):
        c = out[s] * cost + (first if s == 0 else 0.0) + (last if s == k - 1 else 0.0)
        if c > worst:
            worst = c
    return worst


@njit(cache=True)
def uniform_counts(n, k, cost, first, last, out):
    """``n // k`` layers per stage, the remainder one each to the last stages."""
    base = n // k
    rem = n - base * k
    worst = 0.0
    for s in range(k):
        out[s] = base + (1 if s >= k - rem else 0)
        c = out[s] * cost + (first if s == 0 else 0.0) + (last if s == k - 1 else 0.0)
        if c > worst:
            worst = c
    return worst


def stage_costs(counts, cost: float, first: float, last: float) -> np.ndarray:
    """Per-stage cost of a partition (for tests and reports)."""
    c = np.asarray(counts, dtype=np.float64) * cost
    c[0] += first
    c[-1] += last
    return c
