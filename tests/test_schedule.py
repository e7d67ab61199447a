"""Pipeline schedules: simulated bubbles against the closed forms of Narayanan et al. SC'21,
and every simulated op against its dependencies (brute force)."""

from __future__ import annotations

import json

import pytest

from archcost.errors import PlanError
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
    assert res.ideal_s == pytest.approx(m * (F + B))


@pytest.mark.parametrize("p, m", [(4, 2), (8, 3), (4, 4)])
def test_fewer_microbatches_than_stages_still_follows_the_closed_form(p, m):
    for schedule in (Schedule.ONE_F_ONE_B, Schedule.GPIPE):
        res = simulate(schedule, p, m, *uniform(p))
        assert res.makespan_s == pytest.approx((m + p - 1) * (F + B))


@pytest.mark.parametrize("p", [2, 4, 8])
@pytest.mark.parametrize("m", [8, 16, 32])
@pytest.mark.parametrize("v", [2, 4])
def test_interleaved_bubble_equals_p_minus_1_over_m_v(p, m, v):
    # each of the v chunks on a rank does 1/v of the rank's work
    res = simulate(Schedule.INTERLEAVED, p, m, [F / v] * (p * v), [B / v] * (p * v), v=v)
    assert res.bubble_fraction == pytest.approx((p - 1) / (m * v))
    assert res.makespan_s == pytest.approx((m + (p - 1) / v) * (F + B))


def test_one_stage_has_no_bubble():
    for schedule, v in ((Schedule.GPIPE, 1), (Schedule.ONE_F_ONE_B, 1), (Schedule.INTERLEAVED, 3)):
        res = simulate(schedule, 1, 4, F / v, B / v, v=v, p2p_s=0.5)  # sends within a rank: free
        assert res.makespan_s == pytest.approx(4 * (F + B))
        assert res.bubble_fraction == pytest.approx(0.0, abs=1e-12)


def _check_dependencies(res, fwd, bwd, p2p):
    """Every op ran once, for its stage's time, after its inputs (plus a send), one at a time per
    rank, and as early as those allow (no idle time the dependencies do not explain)."""
    n_stages = res.p * res.v
    ends = {(op.kind.value, op.microbatch, res.stage_of(op)): op for op in res.ops}
    assert len(ends) == len(res.ops) == 2 * res.m * n_stages

    def send(boundary):  # time from stage boundary-1 to boundary
        return p2p[boundary - 1] if isinstance(p2p, list) else p2p

    prev_end = {}
    for op in sorted(res.ops, key=lambda o: (o.rank, o.start_s)):
        s = res.stage_of(op)
        ready = [prev_end.get(op.rank, 0.0)]
        if op.kind == "F":
            assert op.end_s - op.start_s == pytest.approx(fwd[s])
            if s > 0:
                ready.append(ends[("F", op.microbatch, s - 1)].end_s + send(s))
        else:
            assert op.end_s - op.start_s == pytest.approx(bwd[s])
            ready.append(ends[("F", op.microbatch, s)].end_s)
            if s < n_stages - 1:
                ready.append(ends[("B", op.microbatch, s + 1)].end_s + send(s + 1))
        assert op.start_s == pytest.approx(max(ready))  # hence >= every dependency
        prev_end[op.rank] = op.end_s


@pytest.mark.parametrize("schedule, v", [(Schedule.GPIPE, 1), (Schedule.ONE_F_ONE_B, 1),
                                         (Schedule.INTERLEAVED, 2), (Schedule.INTERLEAVED, 3)])
@pytest.mark.parametrize("p, m", [(4, 8), (3, 6), (2, 4)])
def test_every_op_respects_its_dependencies(schedule, v, p, m):
    n = p * v
    fwd = [0.5 + 0.1 * i for i in range(n)]
    bwd = [1.1 + 0.05 * ((i * 7) % n) for i in range(n)]
    res = simulate(schedule, p, m, fwd, bwd, v=v, p2p_s=0.03)
    _check_dependencies(res, fwd, bwd, 0.03)
    sends = [0.01 * (i + 1) for i in range(n - 1)]  # one send time per stage boundary
    res = simulate(schedule, p, m, fwd, bwd, v=v, p2p_s=sends)
    _check_dependencies(res, fwd, bwd, sends)


@pytest.mark.parametrize("p, m", [(4, 16), (8, 4), (4, 4), (2, 9), (8, 32)])
def test_in_flight_microbatches(p, m):
    one_f_one_b = simulate(Schedule.ONE_F_ONE_B, p, m, *uniform(p))
    gpipe = simulate(Schedule.GPIPE, p, m, *uniform(p))
    assert one_f_one_b.peak_in_flight[0] == min(p, m)
    assert one_f_one_b.peak_in_flight[p - 1] == 1  # the last stage holds one at a time
    assert gpipe.peak_in_flight == (m,) * p


def test_uneven_stages_are_bounded_by_the_slowest():
    fwd, bwd = [1.0, 1.0, 3.0, 1.0], [2.0, 2.0, 6.0, 2.0]
    for schedule in (Schedule.ONE_F_ONE_B, Schedule.GPIPE):
        res = simulate(schedule, 4, 8, fwd, bwd)
        slowest = 8 * (3.0 + 6.0)
        assert slowest <= res.makespan_s <= slowest + sum(fwd) + sum(bwd)
        assert res.busy_s[2] == slowest and res.ideal_s == slowest
        assert res.bubble_s[0] > 0.5 * res.makespan_s  # the others wait most of the step
    fwd8, bwd8 = [0.5] * 8, [1.0] * 8
    fwd8[5], bwd8[5] = 2.0, 4.0  # rank 1's second chunk is slow
    res = simulate(Schedule.INTERLEAVED, 4, 8, fwd8, bwd8, v=2)
    assert res.makespan_s >= 8 * (0.5 + 1.0 + 2.0 + 4.0)


def test_point_to_point_time_adds_to_the_bubble():
    d = 0.1
    # GPipe streams forwards then backwards: the sends delay only the fill and the drain, so
    # the critical path crosses 2(p-1) boundaries (by hand for p=2, m=2: 9 + 2d)
    base = simulate(Schedule.GPIPE, 4, 8, *uniform(4))
    slow = simulate(Schedule.GPIPE, 4, 8, *uniform(4), p2p_s=d)
    assert slow.makespan_s == pytest.approx(base.makespan_s + 2 * 3 * d)
    assert simulate(Schedule.GPIPE, 2, 2, F, B, p2p_s=d).makespan_s == pytest.approx(9 + 2 * d)
    # 1F1B's steady state waits for each backward to come back, so sends show more often
    base = simulate(Schedule.ONE_F_ONE_B, 4, 8, *uniform(4))
    slow = simulate(Schedule.ONE_F_ONE_B, 4, 8, *uniform(4), p2p_s=d)
    assert slow.makespan_s >= base.makespan_s + 2 * 3 * d - 1e-9


def test_bad_inputs_raise_plan_errors():
    with pytest.raises(PlanError, match=r"micro-batches\(6\) % pipeline stages\(4\)"):
        simulate(Schedule.INTERLEAVED, 4, 6, [1.0] * 8, [2.0] * 8, v=2)
    with pytest.raises(PlanError, match=r"v\(2\) > 1 needs schedule interleaved-1f1b"):
        simulate(Schedule.ONE_F_ONE_B, 4, 8, [1.0] * 8, [2.0] * 8, v=2)
    with pytest.raises(PlanError, match="3 stage times, the pipeline has 4"):
        simulate(Schedule.GPIPE, 4, 8, [1.0] * 3, [2.0] * 4)
    with pytest.raises(PlanError, match=">= 0 seconds"):
        simulate(Schedule.GPIPE, 2, 8, [1.0, -1.0], [2.0, 2.0])


def test_chrome_trace_has_one_event_per_op():
    res = simulate(Schedule.INTERLEAVED, 2, 4, [0.5] * 4, [1.0] * 4, v=2)
    trace = json.loads(json.dumps(chrome_trace(res)))
    complete = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    assert len(complete) == len(res.ops) == 2 * 4 * 4
    assert {e["pid"] for e in complete} == {0, 1}
    assert all(e["dur"] > 0 and e["cat"] == "compute" for e in complete)
    assert max(e["ts"] + e["dur"] for e in complete) == pytest.approx(res.makespan_s * 1e6)
    meta = {(e["pid"], e["name"]): e["args"]["name"] for e in trace["traceEvents"]
            if e["ph"] == "M"}
    assert meta == {(0, "process_name"): "rank 0", (1, "process_name"): "rank 1",
                    (0, "thread_name"): "compute", (1, "thread_name"): "compute"}
    named = chrome_trace(res, rank_names=["stage A", "stage B"])
    assert named["traceEvents"][0]["args"]["name"] == "stage A"


def test_large_pipeline():
    res = simulate(Schedule.ONE_F_ONE_B, 64, 512, *uniform(64))
    assert res.bubble_fraction == pytest.approx(63 / 512)
