"""Numba kernels of the cost engine: roofline per op, liveness sweep, collective times.

Pure functions of numpy arrays and scalars (no Python objects, no globals), compiled with
``@njit(cache=True)``; no ``fastmath`` since the results feed validation. Each kernel has a
plain-Python twin in ``tests/test_kernels.py`` that it is compared with on random inputs.

Collective formulas (per link level with latency ``alpha`` s and bandwidth ``bw`` B/s per rank
per direction; ``n`` ranks; ``size`` bytes of the full buffer):
- ring all-reduce: 2(n-1)/n * size/bw + 2(n-1) alpha  (Patarasuk & Yuan 2009; nccl-tests
  PERFORMANCE.md bus-bandwidth convention)
- ring all-gather / reduce-scatter: (n-1)/n * size/bw + (n-1) alpha
- tree all-reduce (double binary tree, pipelined): 2 size/bw + 2 ceil(log2 n) alpha
  (NCCL 2.4 double binary trees: full bandwidth, logarithmic latency)
- all-to-all (pairwise exchange): (n-1)/n * size/bw + (n-1) alpha
- broadcast: ring pipelined size/bw + (n-1) alpha; tree size/bw + ceil(log2 n) alpha
- send/recv: size/bw + alpha
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = [
    "interp_log10",
    "roofline",
    "liveness_peak",
    "collective_time",
    "COLL_ALL_REDUCE",
    "COLL_ALL_GATHER",
    "COLL_REDUCE_SCATTER",
    "COLL_ALL_TO_ALL",
    "COLL_BROADCAST",
    "COLL_SEND_RECV",
    "ALGO_RING",
    "ALGO_TREE",
]

COLL_ALL_REDUCE, COLL_ALL_GATHER, COLL_REDUCE_SCATTER = 0, 1, 2
COLL_ALL_TO_ALL, COLL_BROADCAST, COLL_SEND_RECV = 3, 4, 5
ALGO_RING, ALGO_TREE = 0, 1


@njit(cache=True)
def interp_log10(x, xs_log10, ys, n):
    """Piecewise-linear interpolation in log10(x) over the first ``n`` points, clamped."""
    if n == 0:
        return 1.0
    if x <= 0.0:
        return ys[0]
    lx = math.log10(x)
    if lx <= xs_log10[0]:
        return ys[0]
    if lx >= xs_log10[n - 1]:
        return ys[n - 1]
    for i in range(1, n):
        if lx <= xs_log10[i]:
            x0 = xs_log10[i - 1]
            x1 = xs_log10[i]
            w = (lx - x0) / (x1 - x0)
            return ys[i - 1] + w * (ys[i] - ys[i - 1])
    return ys[n - 1]


@njit(cache=True)
def roofline(flops, nbytes, peak, curve, size, curve_x, curve_y, curve_n,
             mem_bw, mem_curve, mem_x, mem_y, mem_n, launch):
    """Per-op time = max(compute, memory) + launch overhead, and which bound won.

    ``curve[i]`` indexes the compute-efficiency curve of op i (row of ``curve_x``/``curve_y``,
    ``curve_n`` points), read at ``size[i]`` (its FLOPs, or those of one slice for a per-slice
    curve); -1 means efficiency 1. ``mem_curve[i]`` indexes its memory-efficiency
    curve (row of ``mem_x``/``mem_y``, ``mem_n`` points) and ``launch[i]`` is its per-op
    overhead. Ops with neither FLOPs nor bytes take no time (views). Returns (seconds[n],
    bound[n]) with bound 0 = compute, 1 = memory, 2 = none.
    """
    n = flops.shape[0]
    t = np.zeros(n)
    bound = np.full(n, 2, dtype=np.int8)
    for i in range(n):
        if flops[i] <= 0.0 and nbytes[i] <= 0.0:
            continue
        tc = 0.0
        if flops[i] > 0.0:
            eff = 1.0
            c = curve[i]
            if c >= 0:
                eff = interp_log10(size[i], curve_x[c], curve_y[c], curve_n[c])
            tc = flops[i] / (peak[i] * eff)
        tm = 0.0
        if nbytes[i] > 0.0:
            m = mem_curve[i]
            meff = interp_log10(nbytes[i], mem_x[m], mem_y[m], mem_n[m])
            tm = nbytes[i] / (mem_bw * meff)
        if tc >= tm:
            t[i] = tc + launch[i]
            bound[i] = 0
        else:
            t[i] = tm + launch[i]
            bound[i] = 1
    return t, bound


@njit(cache=True)
def liveness_peak(alloc_step, last_step, nbytes, weight, n_steps, base):
    """Peak of live bytes over an executed schedule.

    Tensor j occupies ``nbytes[j] * weight[j]`` from step ``alloc_step[j]`` through step
    ``last_step[j]`` inclusive (its last use; -1 = freed right after allocation). ``base`` is
    memory live throughout (weights, ...). Returns (peak bytes, step of the peak, live[n_steps]).
    """
    delta = np.zeros(n_steps + 1)
    for j in range(alloc_step.shape[0]):
        a = alloc_step[j]
        e = last_step[j]
        if e < a:
            e = a
        s = nbytes[j] * weight[j]
        delta[a] += s
        delta[e + 1] -= s
    live = np.empty(n_steps)
    cur = base
    peak = base
    at = 0
    for k in range(n_steps):
        cur += delta[k]
        live[k] = cur
        if cur > peak:
            peak = cur
            at = k
    return peak, at, live


@njit(cache=True)
def _ceil_log2(n):
    k = 0
    m = 1
    while m < n:
        m *= 2
        k += 1
    return k


@njit(cache=True)
def collective_time(kind, algo, size, n, alpha, bw):
    """Seconds for one collective of ``size`` bytes over ``n`` ranks on one link level."""
    if n <= 1 or size <= 0.0:
        return 0.0
    frac = (n - 1) / n
    if kind == COLL_SEND_RECV:
        return size / bw + alpha
    if kind == COLL_ALL_REDUCE:
        if algo == ALGO_TREE:
            return 2.0 * size / bw + 2.0 * _ceil_log2(n) * alpha
        return 2.0 * frac * size / bw + 2.0 * (n - 1) * alpha
    if kind == COLL_ALL_GATHER or kind == COLL_REDUCE_SCATTER or kind == COLL_ALL_TO_ALL:
        return frac * size / bw + (n - 1) * alpha
    if kind == COLL_BROADCAST:
        if algo == ALGO_TREE:
            return size / bw + _ceil_log2(n) * alpha
        return size / bw + (n - 1) * alpha
    return -1.0


@njit(cache=True)
def best_collective(kind, size, n, alpha, bw):
    """Fastest of ring and tree where both apply (as NCCL's tuner picks): (seconds, algo)."""
    t_ring = collective_time(kind, ALGO_RING, size, n, alpha, bw)
    if kind == COLL_ALL_REDUCE or kind == COLL_BROADCAST:
        t_tree = collective_time(kind, ALGO_TREE, size, n, alpha, bw)
        if t_tree < t_ring:
            return t_tree, ALGO_TREE
    return t_ring, ALGO_RING


@njit(cache=True)
def hierarchical_all_reduce(size, n_inner, n_outer, alpha_rs, bw_rs, alpha_ag, bw_ag, alpha_out,
                            bw_out):
    """Reduce-scatter inside the node, all-reduce of 1/n_inner across nodes, all-gather inside
    (each phase with its collective's figures on its level).

    Each of the n_inner ranks of a node drives its own NIC share of the outer level.
    """
    t = collective_time(COLL_REDUCE_SCATTER, ALGO_RING, size, n_inner, alpha_rs, bw_rs)
    t_out, _ = best_collective(COLL_ALL_REDUCE, size / n_inner, n_outer, alpha_out, bw_out)
    t += t_out
    t += collective_time(COLL_ALL_GATHER, ALGO_RING, size, n_inner, alpha_ag, bw_ag)
    return t
