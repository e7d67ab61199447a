"""Communication C_comm: collectives of a parallel group placed on a cluster's link levels.

A group of ``n`` ranks whose members sit ``stride`` ranks apart (rank order fills the innermost
link level first) spans the smallest level whose domain holds ``n * stride`` GPUs. Inside one
domain a collective runs on that level alone; across domains it may run flat (ring or tree,
bounded by the slowest level it crosses) or hierarchically (reduce-scatter inside, all-reduce
across, all-gather inside). The fastest choice is taken, as NCCL's tuner does. The kernels and
their formulas are in ``kernels.py``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from archcost.cost import kernels as k
from archcost.hardware.profile import COLLECTIVE_NAMES

__all__ = ["Collective", "CommCost", "collective_cost", "span_levels", "level_arrays"]


class Collective(str, enum.Enum):
    ALL_REDUCE = "all-reduce"
    ALL_GATHER = "all-gather"
    REDUCE_SCATTER = "reduce-scatter"
    ALL_TO_ALL = "all-to-all"
    BROADCAST = "broadcast"
    SEND_RECV = "send-recv"


_KIND = {
    Collective.ALL_REDUCE: k.COLL_ALL_REDUCE,
    Collective.ALL_GATHER: k.COLL_ALL_GATHER,
    Collective.REDUCE_SCATTER: k.COLL_REDUCE_SCATTER,
    Collective.ALL_TO_ALL: k.COLL_ALL_TO_ALL,
    Collective.BROADCAST: k.COLL_BROADCAST,
    Collective.SEND_RECV: k.COLL_SEND_RECV,
}

# bytes each rank sends per byte of buffer, ring algorithms (n ranks): used for traffic totals
_RING_SEND_FACTOR = {
    Collective.ALL_REDUCE: lambda n: 2 * (n - 1) / n,
    Collective.ALL_GATHER: lambda n: (n - 1) / n,
    Collective.REDUCE_SCATTER: lambda n: (n - 1) / n,
    Collective.ALL_TO_ALL: lambda n: (n - 1) / n,
    Collective.BROADCAST: lambda n: 1.0,
    Collective.SEND_RECV: lambda n: 1.0,
}


def level_arrays(cluster) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(domain sizes (0: unbounded), bandwidth, latency) of the cluster's link levels, the last
    two ``[level, collective kind]`` (kinds in ``kernels.COLL_*`` order): the plan kernels'
    view of ``collective_cost``'s figures."""
    levels = cluster.levels
    figs = [[lv.figures(name) for name in COLLECTIVE_NAMES] for lv in levels]
    dom = np.array([lv.domain_size or 0 for lv in levels], dtype=np.int64)
    lat = np.array([[f[0] for f in row] for row in figs], dtype=np.float64)
    bw = np.array([[f[1] for f in row] for row in figs], dtype=np.float64)
    return dom, bw, lat


@dataclass(frozen=True)
class CommCost:
    seconds: float
    algorithm: str  # "ring", "tree", "hierarchical"
    bytes_per_level: dict[str, float]  # bytes sent per rank on each link level crossed


def span_levels(cluster, n: int, stride: int = 1) -> tuple[int, int]:
    """(index of the outermost level the group crosses, ranks of the group per inner domain)."""
    extent = n * stride
    levels = cluster.levels
    for i, lvl in enumerate(levels):
        dom = lvl.domain_size
        if dom is None or extent <= dom:
            if i == 0:
                return 0, n
            inner = levels[0].domain_size or extent
            per_inner = max(1, min(n, inner // stride))
            return i, per_inner
    return len(levels) - 1, max(1, min(n, (levels[0].domain_size or extent) // stride))


def collective_cost(kind: Collective, size_bytes: float, n: int, cluster, stride: int = 1) -> CommCost:
    """Time and per-level traffic of one collective over a group of ``n`` ranks."""
    if n <= 1 or size_bytes <= 0:
        return CommCost(0.0, "none", {})
    kind_id = _KIND[kind]
    name = COLLECTIVE_NAMES[kind_id]
    outer, per_inner = span_levels(cluster, n, stride)
    levels = cluster.levels
    lo = levels[outer]
    send = _RING_SEND_FACTOR[kind](n) * size_bytes
    if outer == 0:
        t, algo = k.best_collective(kind_id, float(size_bytes), n, *lo.figures(name))
        return CommCost(t, "tree" if algo == k.ALGO_TREE else "ring", {lo.name: send})
    # flat: ring/tree over the slowest level crossed (all its hops are bounded by it)
    crossed = levels[: outer + 1]
    slow = min(crossed, key=lambda lv: lv.figures(name)[1])
    alpha = max(lv.figures(name)[0] for lv in crossed)
    t_flat, algo = k.best_collective(kind_id, float(size_bytes), n, alpha, slow.figures(name)[1])
    best = CommCost(t_flat, "tree" if algo == k.ALGO_TREE else "ring", {slow.name: send})
    n_outer = n // per_inner
    inner = levels[0]
    if kind is Collective.ALL_REDUCE and per_inner > 1 and n_outer > 1:
        t_h = k.hierarchical_all_reduce(
            float(size_bytes), per_inner, n_outer, *inner.figures("reduce_scatter"),
            *inner.figures("all_gather"), *lo.figures("all_reduce"))
        if t_h < best.seconds:
            in_bytes = 2 * (per_inner - 1) / per_inner * size_bytes
            out_bytes = 2 * (n_outer - 1) / n_outer * size_bytes / per_inner
            best = CommCost(t_h, "hierarchical", {inner.name: in_bytes, lo.name: out_bytes})
    return best
