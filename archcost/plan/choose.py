"""From the kernel's screened plans to what a search reports: the plans priced in full (pipeline
simulated op by op), ranked by ``rank.rank``, and the Pareto front, each plan with one set of
figures wherever it appears.

The kernel's best candidates are priced in full. A plan of the kernel's Pareto front is priced
too when its kernel figures are no worse anywhere than the chosen best's full figures (it might
dominate it once priced); the best is then chosen again, until no unpriced front plan can
dominate it. So the best plan is undominated among every plan the search shows, by
construction, and only the few front plans that could matter pay for a simulation (a 64-stage
pipeline of 2048 micro-batches takes 0.4 s to simulate). The front shows the undominated plans
of the priced ones (full figures) and of the kernel's fastest front plans left unpriced (kernel
figures, ``simulated: false``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from archcost.plan.rank import (
    MEMORY_TIE,
    MOVING_PARTS,
    OBJECTIVE_TIE,
    moving_parts,
    rank,
    undominated,
)
from archcost.plan.space import Plan

__all__ = ["Priced", "Screened", "choose", "front_columns"]


@dataclass(frozen=True, slots=True)
class Priced:
    """One plan priced in full: its ``estimate_plan`` document with economics."""

    row: int
    plan: Plan
    est: dict[str, Any]
    objective: float


@dataclass(frozen=True, slots=True)
class Screened:
    """The kernel's Pareto front: plan rows and their kernel figures, fastest first."""

    rows: np.ndarray  # [n] plan rows
    points: np.ndarray  # [n, d] as ``front_columns``
    mfu: np.ndarray  # [n]
    plans: Sequence[Plan]


def front_columns(step, memory, gpus, objective_values, objective: str) -> np.ndarray:
    """Columns a front is taken over: step time, memory per GPU, GPUs, and the objective when it
    is not the step time (joules per token need not follow time and GPUs)."""
    cols = [np.asarray(step, dtype=np.float64), np.asarray(memory, dtype=np.float64),
            np.asarray(gpus, dtype=np.float64)]
    if objective != "time":
        cols.append(np.asarray(objective_values, dtype=np.float64))
    return np.stack(cols, 1)


def _figures(pool: list[Priced], objective: str):
    step = np.array([p.est["step_time_s"] for p in pool])
    mem = np.array([p.est["memory_bytes"]["peak_per_gpu"] for p in pool])
    gpus = np.array([p.est["plan"]["gpus"] for p in pool])
    obj = np.array([p.objective for p in pool])
    return step, mem, gpus, obj, front_columns(step, mem, gpus, obj, objective)


def choose(price: Callable[[int], Priced | None], candidates: Sequence[int],
           screened: Screened, objective: str, top: int, pareto_max: int,
           device_bytes: float, screen_step: Callable[[int], float],
           progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """``plans`` (the top ranks), ``pareto`` and ``ranking`` of a search document."""
    priced: dict[int, Priced | None] = {}

    def add(rows: Sequence[int]) -> None:
        todo = list(dict.fromkeys(int(r) for r in rows if int(r) not in priced))
        total = len(priced) + len(todo)
        for r in todo:
            priced[r] = price(r)
            if progress:
                progress(len(priced), total)

    add(candidates)
    while True:
        pool = [p for p in priced.values() if p is not None]
        if not pool:
            return {"plans": [], "pareto": []}
        step, mem, gpus, obj, pts = _figures(pool, objective)
        names = [p.plan.to_string() for p in pool]
        order = rank(pts, obj, gpus, mem, [moving_parts(p.plan) for p in pool], names,
                     device_bytes, top=top)
        near = np.all(screened.points <= pts[order[0]], axis=1)
        threats = [int(r) for r in screened.rows[near] if int(r) not in priced]
        if not threats:
            break
        add(threats)
    plans = [{"rank": j + 1, "plan": names[k], "fields": pool[k].est["plan"],
              "objective_value": float(obj[k]), "estimate": pool[k].est,
              "screen_step_time_s": screen_step(pool[k].row)} for j, k in enumerate(order)]
    least = int(np.argmin(obj))
    return {"plans": plans,
            "pareto": _front(pool, pts, order[0], screened, priced, pareto_max),
            "ranking": {"objective_tie": OBJECTIVE_TIE,
                        "memory_tie_bytes": MEMORY_TIE * device_bytes,
                        "moving_parts": list(MOVING_PARTS), "plans_priced": len(priced),
                        "least_objective_plan": names[least],
                        "least_objective_value": float(obj[least])}}


def _front(pool: list[Priced], pts: np.ndarray, best: int, screened: Screened,
           priced: dict, pareto_max: int) -> list[dict[str, Any]]:
    """Undominated plans among the priced ones and the kernel's fastest unpriced front plans,
    one per distinct point (the fewest moving parts: dp=2,cp=4 and dp=1,cp=8 often price the
    same), fastest first, at most ``pareto_max``, the best always among them."""
    if pareto_max <= 0:
        return []
    entries = [{"plan": p.plan, "gpus": int(p.est["plan"]["gpus"]),
                "step_time_s": float(p.est["step_time_s"]),
                "peak_per_gpu_bytes": float(p.est["memory_bytes"]["peak_per_gpu"]),
                "mfu": float(p.est["mfu"]), "objective_value": float(p.objective),
                "simulated": True} for p in pool]
    points = list(pts)
    for j in range(len(screened.rows)):
        if int(screened.rows[j]) in priced:
            continue
        q = screened.points[j]
        entries.append({"plan": screened.plans[j], "gpus": int(q[2]),
                        "step_time_s": float(q[0]), "peak_per_gpu_bytes": float(q[1]),
                        "mfu": float(screened.mfu[j]),
                        "objective_value": float(q[3] if len(q) > 3 else q[0]),
                        "simulated": False})
        points.append(q)
        if len(entries) >= len(pool) + pareto_max:
            break
    same: dict[tuple, int] = {}
    for k in np.flatnonzero(undominated(np.array(points))).tolist():
        key = tuple(points[k])
        held = same.get(key)
        if held is None or _simpler(entries[k]["plan"], entries[held]["plan"]):
            same[key] = k
    front = sorted(same.values(), key=lambda k: entries[k]["step_time_s"])[:pareto_max]
    if best not in front:  # undominated, but past the truncation
        front = sorted(front[:-1] + [best], key=lambda k: entries[k]["step_time_s"])
    return [{**entries[k], "plan": entries[k]["plan"].to_string()} for k in front]


def _simpler(a: Plan, b: Plan) -> bool:
    return (moving_parts(a), a.to_string()) < (moving_parts(b), b.to_string())
