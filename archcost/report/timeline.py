"""Pipeline timelines to draw: lanes of bars from a Chrome trace written by ``--timeline``
(every micro-batch as simulated), or from a plan estimate's ``pipeline`` and ``ranks``
(per rank: compute, the bubble, exposed data-parallel collectives, the optimizer step).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from archcost.errors import DocumentError

__all__ = ["Bar", "Timeline", "from_trace", "from_estimate", "check_matches"]

MAX_BARS = 20000


@dataclass(frozen=True)
class Bar:
    lane: int
    start: float  # seconds
    dur: float  # seconds
    name: str
    category: str  # forward, backward, compute, bubble, pp send, dp collectives, optimizer, ...


@dataclass
class Timeline:
    source: str
    lanes: list[str] = field(default_factory=list)
    bars: list[Bar] = field(default_factory=list)
    plan: dict[str, Any] | None = None
    truncated: int = 0

    @property
    def span(self) -> float:
        return max((b.start + b.dur for b in self.bars), default=0.0)


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _category(e: dict[str, Any]) -> str:
    cat = str(e.get("cat", ""))
    args = e.get("args") if isinstance(e.get("args"), dict) else {}
    if cat == "compute":
        kind = args.get("kind")
        if kind in ("forward", "backward"):
            return str(kind)
        return "compute"
    return {"bubble": "bubble", "pp": "pp send", "dp": "dp collectives",
            "optimizer": "optimizer"}.get(cat, cat or "other")


def from_trace(trace: dict[str, Any], source: str = "Chrome trace") -> Timeline:
    """Lanes (one per process and thread, named from the trace's metadata) of its complete
    events; timestamps are microseconds, as Chrome traces define them."""
    procs: dict[Any, str] = {}
    threads: dict[tuple[Any, Any], str] = {}
    events = [e for e in trace.get("traceEvents") or [] if isinstance(e, dict)]
    for e in events:
        if e.get("ph") != "M" or not isinstance(e.get("args"), dict):
            continue
        name = e["args"].get("name")
        if e.get("name") == "process_name":
            procs[e.get("pid")] = str(name)
        elif e.get("name") == "thread_name":
            threads[(e.get("pid"), e.get("tid"))] = str(name)
    complete = [e for e in events if e.get("ph") == "X" and _finite(e.get("ts"))
                and _finite(e.get("dur"))]
    # archcost's traces put a rank's bubbles in a thread of their own; they never overlap its
    # compute, so they share the compute lane (idle time shows where it is)
    compute_tid = {pid: tid for (pid, tid), name in threads.items() if name == "compute"}
    lane_of = {}
    for e in complete:
        key = (e.get("pid"), e.get("tid"))
        if threads.get(key) == "bubble" and key[0] in compute_tid:
            key = (key[0], compute_tid[key[0]])
        lane_of[id(e)] = key
    keys = sorted(set(lane_of.values()),
                  key=lambda k: tuple((0, v, "") if _finite(v) else (1, 0, str(v)) for v in k))
    index = {k: i for i, k in enumerate(keys)}
    lanes = []
    for pid, tid in keys:
        proc = procs.get(pid, f"process {pid}")
        thread = threads.get((pid, tid), f"thread {tid}")
        lanes.append(f"{proc} / {thread}")
    t0 = min((float(e["ts"]) for e in complete), default=0.0)
    bars = [Bar(index[lane_of[id(e)]], (float(e["ts"]) - t0) * 1e-6,
                max(float(e["dur"]), 0.0) * 1e-6, str(e.get("name", "")), _category(e))
            for e in complete]
    truncated = max(0, len(bars) - MAX_BARS)
    other = trace.get("otherData") if isinstance(trace.get("otherData"), dict) else {}
    plan = other.get("plan") if isinstance(other.get("plan"), dict) else None
    return Timeline(source=source, lanes=lanes, bars=bars[:MAX_BARS], plan=plan,
                    truncated=truncated)


def from_estimate(est: dict[str, Any]) -> Timeline | None:
    """Per pipeline rank, the step in aggregate: the rank's forward and backward work over all
    micro-batches, the rest of the pipeline's makespan (bubble and sends), exposed
    data-parallel collectives and the optimizer step. None without the figures."""
    pipe = est.get("pipeline")
    ranks = est.get("ranks")
    if not isinstance(pipe, dict) or not isinstance(ranks, list) or not ranks:
        return None
    m = pipe.get("micro_batches")
    makespan = pipe.get("makespan_s")
    if not (_finite(m) and _finite(makespan)):
        return None
    tl = Timeline(source="estimate.pipeline, aggregated per rank", plan=est.get("plan"))
    for i, rk in enumerate(r for r in ranks if isinstance(r, dict)):
        tl.lanes.append(f"pipeline rank {rk.get('rank', i)}")
        busy = float(m) * float(rk.get("busy_s") or 0.0)
        busy = min(busy, float(makespan))
        if busy > 0:
            tl.bars.append(Bar(i, 0.0, busy, f"forward + backward x {m}", "compute"))
        if makespan - busy > 0:
            tl.bars.append(Bar(i, busy, float(makespan) - busy, "bubble and sends", "bubble"))
        t = float(makespan)
        dp = float(rk.get("dp_comm_exposed_s") or 0.0)
        if dp > 0:
            tl.bars.append(Bar(i, t, dp, "data-parallel collectives (exposed)",
                               "dp collectives"))
            t += dp
        opt = float(rk.get("optimizer_s") or 0.0)
        if opt > 0:
            tl.bars.append(Bar(i, t, opt, "optimizer step", "optimizer"))
    return tl


def check_matches(tl: Timeline, est: dict[str, Any] | None, where: str) -> None:
    """A trace must be of the plan the document is about (its ``otherData.plan``)."""
    if est is None:
        raise DocumentError(f"--timeline {where}: this document has no plan to match the trace "
                            "with; give it with a plan, estimate or validation document")
    want = est.get("plan")
    if tl.plan is not None and isinstance(want, dict) and tl.plan != want:
        def text(p):
            return ",".join(f"{k}={v}" for k, v in p.items() if k in ("dp", "tp", "pp", "cp",
                                                                       "ep", "zero", "vpp",
                                                                       "mbs", "gbs"))
        raise DocumentError(f"--timeline {where}: the trace is of plan {text(tl.plan)} but the "
                            f"document's plan is {text(want)}; write both with the same "
                            "command (plan/estimate -o ... --timeline ...)")
