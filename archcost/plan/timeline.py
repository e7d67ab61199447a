"""The simulated step as a Chrome / Perfetto trace: per pipeline rank a compute stream (forward
and backward micro-batches, the optimizer step), a communication stream (pipeline sends, the
exposed data-parallel collectives) and the bubbles (idle compute) named as such. Open the file
at https://ui.perfetto.dev or chrome://tracing; it needs no network once loaded.
"""

from __future__ import annotations

from typing import Any

from archcost.plan.schedule import ScheduleResult, chrome_trace

__all__ = ["plan_trace"]

_US = 1e6
_COMPUTE, _COMM, _IDLE = 0, 1, 2


def _event(pid: int, tid: int, name: str, start_s: float, dur_s: float, cat: str,
           args: dict | None = None) -> dict[str, Any]:
    return {"ph": "X", "pid": pid, "tid": tid, "name": name, "cat": cat, "ts": start_s * _US,
            "dur": dur_s * _US, "args": args or {}}


def _names(pid: int, rank_name: str) -> list[dict[str, Any]]:
    out = [{"ph": "M", "name": "process_name", "pid": pid, "tid": 0,
            "args": {"name": rank_name}}]
    for tid, label in ((_COMPUTE, "compute"), (_COMM, "communication"), (_IDLE, "bubble")):
        out.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid,
                    "args": {"name": label}})
    return out


def plan_trace(estimate: dict[str, Any], sched: ScheduleResult | None) -> dict[str, Any]:
    """Trace-event JSON of one plan's step from ``evaluate.estimate_plan``'s outputs."""
    pipe = estimate["pipeline"]
    ranks = estimate["ranks"]
    comps = estimate["components_s"]
    events: list[dict[str, Any]] = []
    p2p = comps["pp_comm"] / (2 * (pipe["stages"] - 1)) if pipe["stages"] > 1 else 0.0
    if sched is not None:
        base = chrome_trace(sched, rank_names=[f"pipeline rank {r}" for r in range(sched.p)])
        for e in base["traceEvents"]:
            if e["ph"] == "X":
                events.append(e)
        for r in range(sched.p):
            events += _names(r, f"pipeline rank {r}")
            rows = sorted((e for e in sched.events if e["rank"] == r), key=lambda e: e["start_s"])
            t = 0.0
            for e in rows:
                if e["start_s"] > t + 1e-12:
                    events.append(_event(r, _IDLE, "bubble", t, e["start_s"] - t, "bubble"))
                t = max(t, float(e["end_s"]))
                stage = int(e["chunk"]) * sched.p + r
                last_stage = sched.p * sched.v - 1
                sends = (e["kind"] == 0 and stage < last_stage) or (e["kind"] == 1 and stage > 0)
                if sends and p2p > 0:
                    what = "send activation" if e["kind"] == 0 else "send gradient"
                    events.append(_event(r, _COMM, what, float(e["end_s"]), p2p, "pp"))
            if sched.makespan_s > t + 1e-12:
                events.append(_event(r, _IDLE, "bubble", t, sched.makespan_s - t, "bubble"))
        end = sched.makespan_s
    else:  # one pipeline stage: the micro-batches run back to back
        events += _names(0, "rank 0")
        m = pipe["micro_batches"]
        per = pipe["makespan_s"] / max(m, 1)
        for i in range(m):
            events.append(_event(0, _COMPUTE, f"F+B{i}", i * per, per, "compute",
                                 {"microbatch": i}))
        end = pipe["makespan_s"]
    for rk in ranks:
        r = rk["rank"]
        dp = rk["dp_comm_exposed_s"]
        if dp > 0:
            events.append(_event(r, _COMM, "data-parallel collectives (exposed)", end, dp, "dp"))
        events.append(_event(r, _COMPUTE, "optimizer step", end + dp, rk["optimizer_s"],
                             "optimizer"))
    return {"traceEvents": events, "displayTimeUnit": "ms",
            "otherData": {"plan": estimate["plan"], "step_time_s": estimate["step_time_s"]}}
