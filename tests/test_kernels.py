"""Every numba kernel equals a plain-Python twin on random inputs; collectives equal the
closed forms of nccl-tests PERFORMANCE.md."""

from __future__ import annotations

import math

import numpy as np
import pytest

from archcost.cost import kernels as k

RNG = np.random.default_rng(0)


def py_interp(x, xs, ys):
    if len(xs) == 0:
        return 1.0
    if x <= 0:
        return ys[0]
    lx = math.log10(x)
    if lx <= xs[0]:
        return ys[0]
    if lx >= xs[-1]:
        return ys[-1]
    for i in range(1, len(xs)):
        if lx <= xs[i]:
            w = (lx - xs[i - 1]) / (xs[i] - xs[i - 1])
            return ys[i - 1] + w * (ys[i] - ys[i - 1])
    return ys[-1]


def py_roofline(flops, nbytes, peak, curve, size, cx, cy, cn, bw, mcurve, mx, my, mn, launch):
    out, bound = [], []
    for i in range(len(flops)):
        if flops[i] <= 0 and nbytes[i] <= 0:
            out.append(0.0)
            bound.append(2)
            continue
        eff = py_interp(size[i], cx[curve[i]][: cn[curve[i]]], cy[curve[i]][: cn[curve[i]]]) if curve[i] >= 0 else 1.0
        tc = flops[i] / (peak[i] * eff) if flops[i] > 0 else 0.0
        m = mcurve[i]
        tm = nbytes[i] / (bw * py_interp(nbytes[i], mx[m][: mn[m]], my[m][: mn[m]])) \
            if nbytes[i] > 0 else 0.0
        out.append(max(tc, tm) + launch[i])
        bound.append(0 if tc >= tm else 1)
    return np.array(out), np.array(bound)


def py_liveness(alloc, last, size, weight, n_steps, base):
    live = []
    for step in range(n_steps):
        cur = base
        for a, e, s, w in zip(alloc, last, size, weight):
            if a <= step <= max(a, e):
                cur += s * w
        live.append(cur)
    peak = max([base] + live)
    at = live.index(peak) if peak in live and peak > base else 0
    return peak, at, np.array(live)


@pytest.mark.parametrize("trial", range(5))
def test_roofline_equals_python(trial):
    n = 200
    flops = RNG.choice([0.0, 1.0], n) * 10 ** RNG.uniform(3, 13, n)
    nbytes = RNG.choice([0.0, 1.0], n, p=[0.2, 0.8]) * 10 ** RNG.uniform(2, 10, n)
    peak = 10 ** RNG.uniform(12, 15, n)
    curve = RNG.integers(-1, 2, n)
    cx = np.array([[3.0, 6.0, 9.0, 12.0], [4.0, 8.0, 10.0, 0.0]])
    cy = np.array([[0.05, 0.3, 0.7, 0.85], [0.1, 0.5, 0.75, 1.0]])
    cn = np.array([4, 3])
    mx = np.array([[3.0, 6.0, 9.0], [4.0, 7.0, 0.0]])
    my = np.array([[0.1, 0.6, 0.9], [0.02, 0.3, 1.0]])
    mn = np.array([3, 2])
    mcurve = RNG.integers(0, 2, n)
    launch = 10 ** RNG.uniform(-6, -4, n)
    size = flops / RNG.choice([1.0, 96.0], n)  # some ops read their curve per slice
    t, b = k.roofline(flops, nbytes, peak, curve, size, cx, cy, cn, 3e12, mcurve, mx, my, mn,
                      launch)
    rt, rb = py_roofline(flops, nbytes, peak, curve, size, cx, cy, cn, 3e12, mcurve, mx, my, mn,
                         launch)
    np.testing.assert_allclose(t, rt, rtol=1e-12)
    np.testing.assert_array_equal(b, rb)


@pytest.mark.parametrize("trial", range(5))
def test_liveness_equals_python(trial):
    m, steps = 60, 80
    alloc = RNG.integers(0, steps, m)
    last = np.minimum(alloc + RNG.integers(-2, 30, m), steps - 1)
    size = RNG.integers(1, 1000, m).astype(float)
    weight = RNG.integers(1, 4, m).astype(float)
    peak, at, live = k.liveness_peak(alloc, last, size, weight, steps, 500.0)
    rpeak, rat, rlive = py_liveness(alloc, last, size, weight, steps, 500.0)
    np.testing.assert_allclose(live, rlive)
    assert peak == rpeak and at == rat


def test_liveness_brute_force_tiny():
    # two tensors overlapping at step 1: 10 + 20*2 live at once
    peak, at, _ = k.liveness_peak(np.array([0, 1]), np.array([1, 2]), np.array([10.0, 20.0]),
                                  np.array([1.0, 2.0]), 3, 5.0)
    assert peak == 55.0 and at == 1


@pytest.mark.parametrize("n", [2, 3, 8, 64])
@pytest.mark.parametrize("size", [1e3, 1e6, 1e9])
def test_collectives_equal_ring_and_tree_formulas(n, size):
    a, bw = 5e-6, 100e9
    assert k.collective_time(k.COLL_ALL_REDUCE, k.ALGO_RING, size, n, a, bw) == pytest.approx(
        2 * (n - 1) / n * size / bw + 2 * (n - 1) * a)
    for kind in (k.COLL_ALL_GATHER, k.COLL_REDUCE_SCATTER, k.COLL_ALL_TO_ALL):
        assert k.collective_time(kind, k.ALGO_RING, size, n, a, bw) == pytest.approx(
            (n - 1) / n * size / bw + (n - 1) * a)
    assert k.collective_time(k.COLL_ALL_REDUCE, k.ALGO_TREE, size, n, a, bw) == pytest.approx(
        2 * size / bw + 2 * math.ceil(math.log2(n)) * a)
    assert k.collective_time(k.COLL_SEND_RECV, k.ALGO_RING, size, n, a, bw) == pytest.approx(size / bw + a)
    t, algo = k.best_collective(k.COLL_ALL_REDUCE, size, n, a, bw)
    ring = k.collective_time(k.COLL_ALL_REDUCE, k.ALGO_RING, size, n, a, bw)
    tree = k.collective_time(k.COLL_ALL_REDUCE, k.ALGO_TREE, size, n, a, bw)
    assert t == min(ring, tree) and algo == (k.ALGO_TREE if tree < ring else k.ALGO_RING)


def test_tree_wins_small_messages_ring_wins_large():
    _, small = k.best_collective(k.COLL_ALL_REDUCE, 1e3, 64, 5e-6, 100e9)
    _, large = k.best_collective(k.COLL_ALL_REDUCE, 1e10, 64, 5e-6, 100e9)
    assert small == k.ALGO_TREE and large == k.ALGO_RING


def test_single_rank_and_empty_cost_nothing():
    assert k.collective_time(k.COLL_ALL_REDUCE, k.ALGO_RING, 1e6, 1, 1e-6, 1e9) == 0.0
    assert k.collective_time(k.COLL_ALL_REDUCE, k.ALGO_RING, 0.0, 8, 1e-6, 1e9) == 0.0


def test_hierarchical_all_reduce_is_the_sum_of_its_phases():
    size, g, nodes = 1e9, 8, 16
    t = k.hierarchical_all_reduce(size, g, nodes, 3e-6, 450e9, 3e-6, 450e9, 10e-6, 50e9)
    rs = 7 / 8 * size / 450e9 + 7 * 3e-6
    ar = min(2 * 15 / 16 * size / 8 / 50e9 + 2 * 15 * 10e-6, 2 * size / 8 / 50e9 + 2 * 4 * 10e-6)
    assert t == pytest.approx(2 * rs + ar)
