"""Pipeline schedules, simulated op by op: GPipe, 1F1B and interleaved 1F1B.

Each pipeline rank runs its list of forward (F) and backward (B) micro-batch ops in a fixed
order; an op starts when its rank is free and its inputs have arrived:
- F(mb, stage s) needs F(mb, s-1) plus one point-to-point send;
- B(mb, s) needs B(mb, s+1) plus a send, and F(mb, s).
Orders follow the papers: GPipe (Huang et al. 2019) runs all forwards then all backwards;
1F1B (PipeDream-Flush, Narayanan et al. SC'21, Sec. 2.2) warms up with p - r - 1 forwards then
alternates; interleaved 1F1B (same paper, Sec. 2.2.2) gives each rank v model chunks, stage
``chunk * p + rank``, and needs the micro-batch count to be a multiple of p.
With uniform stage times the simulated bubble equals the closed forms (p-1)/m and (p-1)/(m v);
with uneven stages, point-to-point time or different F/B times it is what the closed form misses.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Schedule", "Op", "ScheduleResult", "rank_orders", "simulate", "chrome_trace"]


class Schedule(str, enum.Enum):
    GPIPE = "gpipe"
    ONE_F_ONE_B = "1f1b"
    INTERLEAVED = "interleaved-1f1b"


@dataclass(frozen=True, slots=True)
class Op:
    rank: int
    kind: str  # "F" or "B"
    microbatch: int
    chunk: int  # model chunk on this rank (0 unless interleaved)
    start_s: float
    end_s: float


@dataclass(frozen=True)
class ScheduleResult:
    schedule: Schedule
    p: int
    m: int
    v: int
    makespan_s: float
    busy_s: tuple[float, ...]  # per rank
    ideal_s: float  # the most work any rank does (no bubble)
    ops: tuple[Op, ...]
    # per rank: forward units (micro-batch x chunk) done whose backward has not run yet; each
    # holds one chunk's activations
    peak_in_flight: tuple[int, ...]

    @property
    def bubble_s(self) -> tuple[float, ...]:
        return tuple(self.makespan_s - b for b in self.busy_s)

    @property
    def bubble_fraction(self) -> float:
        """(makespan - ideal) / ideal: the closed forms' definition."""
        return (self.makespan_s - self.ideal_s) / self.ideal_s if self.ideal_s else 0.0

    def stage_of(self, op: Op) -> int:
        return op.chunk * self.p + op.rank


def _interleaved_unit(k: int, p: int, v: int, forward: bool) -> tuple[int, int]:
    """(micro-batch, chunk) of a rank's k-th forward or backward unit (Megatron's order)."""
    group = k // (p * v)
    chunk = (k // p) % v
    if not forward:
        chunk = v - 1 - chunk
    return group * p + k % p, chunk


def rank_orders(schedule: Schedule, p: int, m: int, v: int = 1) -> list[list[tuple[str, int, int]]]:
    """Per rank, the (kind, micro-batch, chunk) ops in execution order."""
    orders = []
    for r in range(p):
        if schedule is Schedule.GPIPE:
            ops = [("F", i, 0) for i in range(m)] + [("B", i, 0) for i in reversed(range(m))]
        elif schedule is Schedule.ONE_F_ONE_B:
            warm = min(p - r - 1, m)
            ops = [("F", i, 0) for i in range(warm)]
            f, b = warm, 0
            while f < m:
                ops.append(("F", f, 0))
                f += 1
                ops.append(("B", b, 0))
                b += 1
            ops += [("B", i, 0) for i in range(b, m)]
        else:
            total = m * v
            warm = min((p - r - 1) * 2 + (v - 1) * p, total)
            fw = [("F", *_interleaved_unit(k, p, v, True)) for k in range(total)]
            bw = [("B", *_interleaved_unit(k, p, v, False)) for k in range(total)]
            ops = fw[:warm]
            f, b = warm, 0
            while f < total:
                ops.append(fw[f])
                f += 1
                ops.append(bw[b])
                b += 1
            ops += bw[b:]
        orders.append(ops)
    return orders


def simulate(
    schedule: Schedule, p: int, m: int, forward_s, backward_s, v: int = 1, p2p_s: float = 0.0
) -> ScheduleResult:
    """Simulate one step. ``forward_s[s]`` / ``backward_s[s]`` are the times of one micro-batch
    on (virtual) stage ``s`` (p * v stages)."""
    if schedule is not Schedule.INTERLEAVED:
        v = 1
    elif m % p:
        raise ValueError(f"interleaved 1F1B needs micro-batches({m}) % pipeline stages({p}) == 0")
    n_stages = p * v
    if len(forward_s) != n_stages or len(backward_s) != n_stages:
        raise ValueError(f"need {n_stages} stage times, got {len(forward_s)} and {len(backward_s)}")
    orders = rank_orders(schedule, p, m, v)
    done: dict[tuple[str, int, int], float] = {}  # (kind, mb, stage) -> end time
    free = [0.0] * p
    pos = [0] * p
    ops: list[Op] = []
    in_flight = [0] * p
    peak = [0] * p
    remaining = sum(len(o) for o in orders)
    while remaining:
        progressed = False
        for r in range(p):
            while pos[r] < len(orders[r]):
                kind, mb, chunk = orders[r][pos[r]]
                stage = chunk * p + r
                deps = []
                if kind == "F":
                    if stage > 0:
                        deps.append((("F", mb, stage - 1), p2p_s))
                else:
                    deps.append((("F", mb, stage), 0.0))
                    if stage < n_stages - 1:
                        deps.append((("B", mb, stage + 1), p2p_s))
                if any(key not in done for key, _ in deps):
                    break
                start = max([free[r]] + [done[key] + lag for key, lag in deps])
                dur = forward_s[stage] if kind == "F" else backward_s[stage]
                end = start + dur
                done[(kind, mb, stage)] = end
                free[r] = end
                ops.append(Op(r, kind, mb, chunk, start, end))
                in_flight[r] += 1 if kind == "F" else -1
                peak[r] = max(peak[r], in_flight[r])
                pos[r] += 1
                remaining -= 1
                progressed = True
        if not progressed:
            raise RuntimeError(f"{schedule.value} schedule deadlocked (p={p}, m={m}, v={v})")
    busy = [0.0] * p
    for op in ops:
        busy[op.rank] += op.end_s - op.start_s
    makespan = max(op.end_s for op in ops)
    return ScheduleResult(schedule, p, m, v, makespan, tuple(busy), max(busy), tuple(ops),
                          tuple(peak))


def chrome_trace(result: ScheduleResult) -> dict:
    """Chrome/Perfetto trace events: one process per rank, complete events in microseconds."""
    events = [
        {"ph": "M", "name": "process_name", "pid": r, "tid": 0, "args": {"name": f"rank {r}"}}
        for r in range(result.p)
    ]
    for op in result.ops:
        events.append({
            "ph": "X", "pid": op.rank, "tid": 0, "cat": "compute",
            "name": f"{op.kind}{op.microbatch}" + (f".c{op.chunk}" if result.v > 1 else ""),
            "ts": op.start_s * 1e6, "dur": (op.end_s - op.start_s) * 1e6,
            "args": {"stage": result.stage_of(op), "microbatch": op.microbatch},
        })
    return {"traceEvents": events, "displayTimeUnit": "ms"}
