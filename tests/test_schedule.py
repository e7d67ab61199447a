"""Pipeline schedules: simulated bubbles against the closed forms of Narayanan et al. SC'21,
and every simulated op against its dependencies (brute force)."""

from __future__ import annotations

import json

import pytest

from archcost.plan.schedule import Schedule, chrome_trace, simulate

F, B = 1.0, 2.0


def uniform(n):
    return [F] * n, [B] * n


@pytest.mark.parametrize("p", [2, 4, 8])
@pytest.mark.parametrize("m", [8, 16, 32])
@pytest.mark.parametrize("schedule", [Schedule.ONE_F_ONE_B, Schedule.GPIPE])
def test_bubble_equals_p_minus_1_over_m(schedule, p, m):
    res = simulate(schedule, p, m, *uniform(p))
    assert res.bubble_fraction == pytest.approx((p - 1) / m)
    assert res.makespan_s == pytest.approx((m + p - 1) * (F + B))


@pytest.mark.parametrize("p, m, v", [(2, 8, 2), (4, 8, 2), (4, 16, 4), (8, 16, 2), (8, 32, 4)])
def test_interleaved_bubble_equals_p_minus_1_over_m_v(p, m, v):
    # each of the v chunks on a rank does 1/v of the rank's work
    res = simulate(Schedule.INTERLEAVED, p, m, [F / v] * (p * v), [B / v] * (p * v), v=v)
    assert res.bubble_fraction == pytest.approx((p - 1) / (m * v))


def _check_dependencies(res, p2p):
    ends = {(op.kind, op.microbatch, res.stage_of(op)): op for op in res.ops}
    n_stages = res.p * res.v
    assert len(ends) == 2 * res.m * n_stages  # every op ran exactly once
    per_rank = {}
    for op in res.ops:
        s = res.stage_of(op)
        if op.kind == "F" and s > 0:
            assert op.start_s >= ends[("F", op.microbatch, s - 1)].end_s + p2p - 1e-12
        if op.kind == "B":
            assert op.start_s >= ends[("F", op.microbatch, s)].end_s - 1e-12
            if s < n_stages - 1:
                assert op.start_s >= ends[("B", op.microbatch, s + 1)].end_s + p2p - 1e-12
        per_rank.setdefault(op.rank, []).append(op)
    for ops in per_rank.values():  # one op at a time on a rank
        ops.sort(key=lambda o: o.start_s)
        for a, b in zip(ops, ops[1:]):
            assert b.start_s >= a.end_s - 1e-12


@pytest.mark.parametrize("schedule, v", [(Schedule.GPIPE, 1), (Schedule.ONE_F_ONE_B, 1),
                                         (Schedule.INTERLEAVED, 2)])
def test_every_op_respects_its_dependencies(schedule, v):
    n = 4 * v
    fwd = [0.5 + 0.1 * i for i in range(n)]
    bwd = [1.1 + 0.05 * i for i in range(n)]
    res = simulate(schedule, 4, 8, fwd, bwd, v=v, p2p_s=0.03)
    _check_dependencies(res, 0.03)


def test_in_flight_microbatches_on_the_first_stage():
    assert simulate(Schedule.ONE_F_ONE_B, 4, 16, *uniform(4)).peak_in_flight[0] == 4
    assert simulate(Schedule.ONE_F_ONE_B, 8, 4, *uniform(8)).peak_in_flight[0] == 4
    assert simulate(Schedule.GPIPE, 4, 16, *uniform(4)).peak_in_flight[0] == 16
    # the last stage of 1F1B holds one micro-batch at a time
    assert simulate(Schedule.ONE_F_ONE_B, 4, 16, *uniform(4)).peak_in_flight[3] == 1


def test_uneven_stages_are_bounded_by_the_slowest():
    fwd, bwd = [1.0, 1.0, 3.0, 1.0], [2.0, 2.0, 6.0, 2.0]
    res = simulate(Schedule.ONE_F_ONE_B, 4, 8, fwd, bwd)
    slowest = 8 * (3.0 + 6.0)
    assert slowest <= res.makespan_s <= slowest + sum(fwd) + sum(bwd)
    # the slow stage is nearly always busy; the others wait most of the step
    assert res.busy_s[2] == slowest and res.bubble_s[0] > 0.5 * res.makespan_s


def test_point_to_point_time_adds_to_the_bubble():
    base = simulate(Schedule.ONE_F_ONE_B, 4, 8, *uniform(4))
    slow = simulate(Schedule.ONE_F_ONE_B, 4, 8, *uniform(4), p2p_s=0.1)
    assert slow.makespan_s > base.makespan_s


def test_interleaved_needs_microbatches_divisible_by_stages():
    with pytest.raises(ValueError, match=r"micro-batches\(6\) % pipeline stages\(4\)"):
        simulate(Schedule.INTERLEAVED, 4, 6, [1.0] * 8, [2.0] * 8, v=2)


def test_chrome_trace_has_one_event_per_op():
    res = simulate(Schedule.INTERLEAVED, 2, 4, [0.5] * 4, [1.0] * 4, v=2)
    trace = json.loads(json.dumps(chrome_trace(res)))
    complete = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    assert len(complete) == len(res.ops) == 2 * 4 * 4
    assert {e["pid"] for e in complete} == {0, 1}
    assert all(e["dur"] > 0 for e in complete)
