"""Communication C_comm: collectives of a parallel group placed on a cluster's link levels.

A ``Group`` names the ranks a collective runs over (one axis of the plan's rank layout, or a
window of the block of two axes, see ``placement``); ``collective_cost`` prices one collective
on the links its members' placement makes it cross: a flat ring or tree bounded by its slowest
hop, or (all-reduce) the hierarchical algorithm, the fastest taken as NCCL's tuner does. The
kernels and their formulas are in ``kernels.py`` and ``placement.py``; this module gives them
Python names and the cluster's figures.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from archcost.cost import kernels as k
from archcost.cost import placement as pl
from archcost.hardware.profile import COLLECTIVE_NAMES

__all__ = ["Collective", "CommCost", "Group", "collective_cost", "level_arrays"]


class Collective(str, enum.Enum):
    ALL_REDUCE = "all-reduce"
    ALL_GATHER = "all-gather"
    REDUCE_SCATTER = "reduce-scatter"
    ALL_TO_ALL = "all-to-all"
    BROADCAST = "broadcast"
    SEND_RECV = "send-recv"


KIND = {
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


def level_arrays(cluster) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(domain sizes (0: unbounded), bandwidth, latency, GPUs per link) of the cluster's link
    levels; bandwidth and latency ``[level, collective kind]`` (kinds in ``kernels.COLL_*``
    order): the kernels' view of the cluster."""
    levels = cluster.levels
    figs = [[lv.figures(name) for name in COLLECTIVE_NAMES] for lv in levels]
    dom = np.array([lv.domain_size or 0 for lv in levels], dtype=np.int64)
    lat = np.array([[f[0] for f in row] for row in figs], dtype=np.float64)
    bw = np.array([[f[1] for f in row] for row in figs], dtype=np.float64)
    share = np.array([lv.gpus_per_link for lv in levels], dtype=np.int64)
    return dom, bw, lat, share


@dataclass(frozen=True)
class Group:
    """``size`` ranks of a parallel group among ``world``: indices ``step`` apart of the
    combined index over an axis of ``n1`` ranks ``s1`` apart inside one of ``n2`` ranks ``s2``
    apart (``placement``'s geo); ``Group.axis`` for one axis."""

    n1: int
    s1: int
    n2: int
    s2: int
    size: int
    step: int
    world: int

    @classmethod
    def axis(cls, n: int, stride: int, world: int) -> Group:
        """``n`` ranks ``stride`` apart (a tensor-, context- or pipeline-parallel group)."""
        return cls(n, stride, 1, stride * n, n, 1, world)

    @classmethod
    def block(cls, axes: tuple[tuple[int, int], tuple[int, int]], size: int, step: int,
              world: int) -> Group:
        """A window of ``size`` indices ``step`` apart over two axes ((n, stride) each), the
        physically inner first: the data-parallel block and its expert windows."""
        geo = np.empty(pl.GEO_LEN, dtype=np.int64)
        (n_a, s_a), (n_b, s_b) = axes
        pl.block_geo(n_a, s_a, n_b, s_b, size, step, world, geo)
        return cls(*(int(x) for x in geo))

    @property
    def geo(self) -> np.ndarray:
        return np.array([self.n1, self.s1, self.n2, self.s2, self.size, self.step, self.world],
                        dtype=np.int64)


@dataclass(frozen=True)
class CommCost:
    seconds: float
    algorithm: str  # "ring", "tree", "hierarchical", "none"
    bytes_per_level: dict[str, float]  # bytes a rank sends on each link level it uses
    bandwidth_bytes_per_s: float = 0.0  # the flat algorithm's slowest hop
    levels: tuple[str, ...] = ()  # the levels its hops use, innermost first


def collective_cost(kind: Collective, size_bytes: float, group: Group | int, cluster,
                    stride: int = 1) -> CommCost:
    """Time and per-level traffic of one collective over ``group`` (or over ``group`` ranks
    ``stride`` apart among the cluster's GPUs)."""
    if not isinstance(group, Group):
        group = Group.axis(int(group), int(stride), int(cluster.gpus))
    n = group.size
    if n <= 1 or size_bytes <= 0:
        return CommCost(0.0, "none", {})
    dom, bw, lat, share = level_arrays(cluster)
    geo = group.geo
    m = np.empty(len(dom), dtype=np.int64)
    fig = np.empty(pl.FIG_LEN)
    regular = pl.group_figures(geo, dom, bw, lat, share, m, fig)
    kid = KIND[kind]
    b, _, _, mask = pl.figures(kid, geo, m, regular, dom, bw, lat, share)
    seconds, algo = pl.group_seconds(kid, float(size_bytes), n, fig)
    names = [lv.name for lv in cluster.levels]
    used = tuple(names[i] for i in range(len(names)) if mask & (1 << i))
    if algo == pl.ALGO_HIERARCHICAL:
        n_in = int(m[0])
        n_out = n // n_in
        per = {names[0]: 2 * (n_in - 1) / n_in * size_bytes,
               used[-1]: 2 * (n_out - 1) / n_out * size_bytes / n_in}
        return CommCost(float(seconds), "hierarchical", per, float(b), used)
    send = _RING_SEND_FACTOR[kind](2 if kind is Collective.SEND_RECV else n) * size_bytes
    return CommCost(float(seconds), "tree" if algo == k.ALGO_TREE else "ring",
                    {name: send for name in used}, float(b), used)
