"""Where a parallel group's ranks sit on a cluster's link levels, and the links its collectives
cross (numba kernels: pure functions of integers and arrays, shared by the plan kernel and the
full estimate).

Ranks are numbered as the plan's placement lays them out (innermost axis fastest) and fill the
innermost link level first: rank r sits in domain r // D of a level whose domain holds D GPUs.
A group is a window of a composite axis, ``geo = (n1, s1, n2, s2, g, q, world)``: ``g``
consecutive indices, ``q`` apart, of the combined index c = i1 + n1 * i2 over an axis of ``n1``
ranks ``s1`` apart inside one of ``n2`` ranks ``s2`` apart (s2 >= n1 * s1), among ``world``
ranks. A tensor-parallel group is (tp, s_tp, 1, ., tp, 1, world); the block of dp x cp ranks that
hold the same weights is two axes, inner first; an expert-parallel group is the first ep of
that block (Megatron-LM's rank order "tp-cp-ep-dp-pp"), its complement every ep-th.

What a collective crosses, with m_j the group's members in a level-j domain:
- ring and tree collectives: NCCL's rings visit each domain once; a hop inside a level-0 domain
  runs at that level's bandwidth B_0; a hop that leaves (or enters) a level-j domain runs on
  the links of the group's m_j members there, m_j x B_{j+1}: NCCL opens several channels that
  cross the boundary at different GPUs, so every NIC of those GPUs is in flight. A flat
  all-reduce over 4 nodes of 8 GPUs (8 x 50 GB/s NICs each) measured 22.05 ms for 4 GiB, where
  a ring over the node's 400 GB/s gives 20.8 ms and one NIC's 50 GB/s 166 ms (stas00/
  ml-engineering@744d01e network/README.md, "Inter-node speed depends on intra-node speed";
  NCCL chose Ring on the p5en cluster measured there). The ring is bounded by its slowest hop.
- point-to-point sends (pipeline stages, ring attention): one flow on its GPU's own link:
  B_j per level crossed, up to ``gpus_per_link`` x B_j when the group's other members in the
  domain leave that link idle (min(gpus_per_link, m_{j-1}) shares).
- all-to-all: every member sends (g - m_j)/g of its buffer out of its level-j domain, over its
  own share B_{j+1}, and (m_0 - 1)/g inside its level-0 domain, all at once: the largest of
  those times.
- hierarchical all-reduce (all-reduce only): reduce-scatter inside each level-0 domain, m_0
  concurrent all-reduces of 1/m_0 of the buffer across domains (one member per domain each, so
  (m_j / m_0) x B_{j+1} per level crossed), all-gather inside.
Latency: every step of a ring waits for its slowest hop: the largest latency of the levels its
hops use.

Sharing: all groups of an axis run the same collective at the same time, so each GPU has its
``bandwidth_per_gpu`` share of a level's links (a node with fewer NICs than GPUs says so with a
smaller share and ``gpus_per_link``).

When every level's domain size lines up with the group's strides (each divides, or is a
multiple of, the strides and extents of the group's lattice), all groups are translates with
the same m_j in every domain, and the figures are closed forms (``describe`` returns 1). Any
other layout (a 72-GPU NVLink domain under power-of-two groups; an ep that splits the cp axis
unevenly) is simulated: every group's members, their domains and every hop of its ring
(``describe`` returns 0, ``figures`` enumerates), and the slowest group bounds the step.

NB: not modelled: contention between different axes' collectives at the same time (a
data-parallel reduce-scatter behind the pipeline's sends on the same NICs); in-network
reductions (NVLink SHARP, SHARP/CollNet); PXN relays and cross-rail hops through the spine of a
rail-optimized fabric; per-hop latencies (the slowest level's latency bounds every step); the
hierarchical algorithm on layouts that are simulated.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from archcost.cost.kernels import (
    ALGO_RING,
    COLL_ALL_GATHER,
    COLL_ALL_REDUCE,
    COLL_ALL_TO_ALL,
    COLL_REDUCE_SCATTER,
    COLL_SEND_RECV,
    best_collective,
    hierarchical_all_reduce,
)

__all__ = ["ALGO_HIERARCHICAL", "GEO_LEN", "FIG_LEN", "axis_geo", "block_geo", "describe",
           "figures", "hierarchical_figures", "group_figures", "group_seconds"]

ALGO_HIERARCHICAL = 2
GEO_LEN = 7  # n1, s1, n2, s2, g, q, world
_INF = np.inf


@njit(cache=True)
def axis_geo(n, stride, world, out):
    """``out`` (int64[GEO_LEN]) = the group of one axis: ``n`` ranks ``stride`` apart."""
    out[0] = n
    out[1] = stride
    out[2] = 1
    out[3] = stride * n
    out[4] = n
    out[5] = 1
    out[6] = world


@njit(cache=True)
def block_geo(n_a, s_a, n_b, s_b, g, q, world, out):
    """``out`` = a window of ``g`` indices ``q`` apart over the block of two axes (``n_a`` ranks
    ``s_a`` apart, ``n_b`` ranks ``s_b`` apart), the physically inner axis first."""
    if n_a == 1 or (n_b > 1 and s_b < s_a):
        n_a, s_a, n_b, s_b = n_b, s_b, n_a, s_a
    out[0] = n_a
    out[1] = s_a
    out[2] = n_b
    out[3] = s_b if n_b > 1 else s_a * n_a
    out[4] = g
    out[5] = q
    out[6] = world


@njit(cache=True)
def _lattice(geo):
    """(k1, t1, k2, t2): the group as k1 ranks t1 apart inside k2 blocks t2 apart, or k1 = 0
    when the window does not fall on the axes' lattice."""
    n1, s1, s2, g, q = geo[0], geo[1], geo[3], geo[4], geo[5]
    span = g * q
    if span <= n1:
        if n1 % span:
            return 0, 0, 0, 0
        return g, s1 * q, 1, s1 * q * g
    if q >= n1:
        if q % n1:
            return 0, 0, 0, 0
        t = s2 * (q // n1)
        return g, t, 1, t * g
    if n1 % q or span % n1:
        return 0, 0, 0, 0
    return n1 // q, s1 * q, span // n1, s2


@njit(cache=True)
def _comparable(a, b):
    return a % b == 0 or b % a == 0


@njit(cache=True)
def _count(k, t, d):
    """Members of a run of ``k`` ranks ``t`` apart in one aligned domain of ``d`` GPUs."""
    if t >= d:
        return 1
    if t * k <= d:
        return k
    return d // t


@njit(cache=True)
def describe(geo, dom, m):
    """Members of the group in each level's domain into ``m`` (int64[levels]); 1 when every
    group has exactly those counts in every domain it touches (closed forms apply), 0 when
    the layout must be simulated (``m`` then undefined)."""
    k1, t1, k2, t2 = _lattice(geo)
    g, world = geo[4], geo[6]
    if k1 == 0:
        return 0
    for lv in range(dom.shape[0]):
        d = dom[lv]
        if d <= 0 or d >= world:
            m[lv] = g
            continue
        if not (_comparable(d, t1) and _comparable(d, t1 * k1)):
            return 0
        if k2 > 1 and not (_comparable(d, t2) and _comparable(d, t2 * k2)):
            return 0
        m[lv] = _count(k1, t1, d) * (_count(k2, t2, d) if k2 > 1 else 1)
    return 1


@njit(cache=True)
def _top(m, g):
    """Outermost level a hop of the group uses: the first whose domain holds all of it."""
    nlev = m.shape[0]
    for lv in range(nlev):
        if m[lv] >= g:
            return lv
    return nlev - 1


@njit(cache=True)
def _closed_figures(kind, m, g, bw, lat, share):
    top = _top(m, g)
    mask = 0
    alpha = 0.0
    for lv in range(top + 1):
        if (m[0] >= 2) if lv == 0 else (m[lv - 1] < m[lv]):
            mask |= 1 << lv
            alpha = max(alpha, lat[lv, kind])
    b = bw[0, kind] if m[0] >= 2 else _INF
    if kind == COLL_ALL_TO_ALL:
        worst = (m[0] - 1) / bw[0, kind]
        for j in range(top):
            worst = max(worst, (g - m[j]) / bw[j + 1, kind])
        return (g - 1) / worst, alpha, top, mask
    for j in range(top):
        per = m[j]
        if kind == COLL_SEND_RECV:
            per = min(share[j + 1], m[j])
        b = min(b, per * bw[j + 1, kind])
    return b, alpha, top, mask


@njit(cache=True)
def _simulated_figures(kind, geo, dom, bw, lat, share):
    """The figures of every group's actual members, hop by hop; the slowest group's."""
    n1, s1, n2, s2, g, q, world = geo[0], geo[1], geo[2], geo[3], geo[4], geo[5], geo[6]
    nlev = dom.shape[0]
    span = g * q
    ranks = np.empty(g, dtype=np.int64)
    ids = np.empty((nlev, g), dtype=np.int64)
    run = np.empty((nlev, g), dtype=np.int64)
    b = _INF
    worst_a2a = 0.0
    top = 0
    mask = 0
    for r in range(world):
        d1 = (r // s1) % n1
        d2 = (r // s2) % n2
        c = d1 + n1 * d2
        if c % span >= q:  # not the first member of its group
            continue
        for j in range(g):
            cj = c + j * q
            ranks[j] = r + (cj % n1 - d1) * s1 + (cj // n1 - d2) * s2
        for lv in range(nlev):
            d = dom[lv]
            for j in range(g):
                ids[lv, j] = ranks[j] // d if d > 0 else 0
            start = 0
            for j in range(1, g + 1):  # members sorted by rank: a domain's members are a run
                if j == g or ids[lv, j] != ids[lv, start]:
                    for i in range(start, j):
                        run[lv, i] = j - start
                    start = j
        for j in range(g):
            if kind == COLL_ALL_TO_ALL:
                t = (run[0, j] - 1) / bw[0, kind]
                for lv in range(nlev - 1):
                    if run[lv, j] < g:
                        t = max(t, (g - run[lv, j]) / bw[lv + 1, kind])
                worst_a2a = max(worst_a2a, t)
            k = (j + 1) % g  # the ring's next member (the last wraps to the first)
            hop = nlev - 1
            for lv in range(nlev):
                if ids[lv, j] == ids[lv, k]:
                    hop = lv
                    break
            mask |= 1 << hop
            top = max(top, hop)
            if hop == 0:
                cap = bw[0, kind]
            else:
                cap = _INF
                for lv in range(hop):
                    per = min(run[lv, j], run[lv, k])  # the links out of one, into the other
                    if kind == COLL_SEND_RECV:
                        per = min(share[lv + 1], per)
                    cap = min(cap, per * bw[lv + 1, kind])
            b = min(b, cap)
    alpha = 0.0
    for lv in range(nlev):
        if mask & (1 << lv):
            alpha = max(alpha, lat[lv, kind])
    if kind == COLL_ALL_TO_ALL:
        return (g - 1) / worst_a2a, alpha, top, mask
    return b, alpha, top, mask


@njit(cache=True)
def figures(kind, geo, m, regular, dom, bw, lat, share):
    """(bandwidth B/s, latency s, outermost level, bit mask of the levels its hops use) of the
    flat algorithm of collective ``kind`` over the group: its ring's slowest hop (ring, tree,
    broadcast, reduce-scatter, all-gather), its slowest point-to-point hop (send/recv), or the
    rate that makes the pairwise-exchange formula exact (all-to-all)."""
    if regular:
        return _closed_figures(kind, m, geo[4], bw, lat, share)
    return _simulated_figures(kind, geo, dom, bw, lat, share)


@njit(cache=True)
def hierarchical_figures(m, g, regular, bw, lat):
    """(ranks per level-0 domain, bandwidth and latency of the all-reduce across domains) of a
    hierarchical all-reduce; 0 ranks when it does not apply (one domain, one member per
    domain, or a layout that is simulated)."""
    if not regular or m[0] < 2 or m[0] >= g or g % m[0]:
        return 0, 0.0, 0.0
    top = _top(m, g)
    b = _INF
    alpha = 0.0
    for j in range(top):
        b = min(b, (m[j] // m[0]) * bw[j + 1, COLL_ALL_REDUCE])
        if m[j] < m[j + 1]:
            alpha = max(alpha, lat[j + 1, COLL_ALL_REDUCE])
    return m[0], b, alpha


# a placed group's figures, float64[FIG_LEN]: per collective kind the flat algorithm's
# bandwidth and latency; the hierarchical all-reduce's ranks per domain (0: none), bandwidth and
# latency across domains, and the level-0 reduce-scatter and all-gather figures it runs inside
FIG_BW, FIG_LAT, FIG_HIER = 0, 6, 12
FIG_LEN = 19


@njit(cache=True)
def group_figures(geo, dom, bw, lat, share, m, out):
    """``out`` (float64[FIG_LEN]) = the figures of every collective over the group ``geo``
    (``m``: scratch int64[levels]); 1 when the closed forms applied, 0 when simulated."""
    regular = describe(geo, dom, m)
    for kind in range(6):
        b, a, _, _ = figures(kind, geo, m, regular, dom, bw, lat, share)
        out[FIG_BW + kind] = b
        out[FIG_LAT + kind] = a
    n_in, b_out, a_out = hierarchical_figures(m, geo[4], regular, bw, lat)
    out[FIG_HIER] = n_in
    out[FIG_HIER + 1] = b_out
    out[FIG_HIER + 2] = a_out
    out[FIG_HIER + 3] = lat[0, COLL_REDUCE_SCATTER]
    out[FIG_HIER + 4] = bw[0, COLL_REDUCE_SCATTER]
    out[FIG_HIER + 5] = lat[0, COLL_ALL_GATHER]
    out[FIG_HIER + 6] = bw[0, COLL_ALL_GATHER]
    return regular


@njit(cache=True)
def group_seconds(kind, size, g, fig):
    """(seconds, algorithm) of one collective of ``size`` bytes over a group of ``g`` ranks
    with figures ``fig`` (``group_figures``): the fastest of ring and tree on its slowest hop
    and, for all-reduce, the hierarchical algorithm."""
    if g <= 1 or size <= 0.0:
        return 0.0, ALGO_RING
    t, algo = best_collective(kind, size, 2 if kind == COLL_SEND_RECV else g,
                              fig[FIG_LAT + kind], fig[FIG_BW + kind])
    if kind == COLL_ALL_REDUCE and fig[FIG_HIER] > 0:
        n_in = int(fig[FIG_HIER])
        t_h = hierarchical_all_reduce(size, n_in, g // n_in, fig[FIG_HIER + 3],
                                      fig[FIG_HIER + 4], fig[FIG_HIER + 5], fig[FIG_HIER + 6],
                                      fig[FIG_HIER + 2], fig[FIG_HIER + 1])
        if t_h < t:
            return t_h, ALGO_HIERARCHICAL
    return t, algo
