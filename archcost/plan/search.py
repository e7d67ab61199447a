"""Plan search: enumerate every valid plan, score all of them with the plan kernel, drop those
that do not fit in memory, rank by the objective, then price the best and the kernel's Pareto
front with the full model (``evaluate.estimate_plan``: pipeline simulated op by op) and report,
on those figures, the top K ranked by ``rank`` (the best on the Pareto front by construction,
ties to more headroom and fewer moving parts) and the Pareto front of step time, memory per GPU
and GPUs used (and the objective when it is not the time).

Objectives: ``time`` (step time), ``cost`` (dollars per million tokens at the profile's price
per GPU-hour) and ``energy`` (joules per token from TDP, idle power and node overhead).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from archcost.cost.energy import price_per_gpu_hour, step_cost_usd, step_energy_j
from archcost.errors import PlanError
from archcost.plan.arrays import enumerate_plans, plan_from_row
from archcost.plan.choose import Priced, Screened, choose, front_columns
from archcost.plan.costmodel import CostModel
from archcost.plan.evaluate import estimate_plan
from archcost.plan.kernel import OUT_INDEX, score_plans
from archcost.plan.table import COMBO_KEYS

__all__ = ["OBJECTIVES", "score", "search", "pareto_front", "objective_values", "economics",
           "add_economics"]

OBJECTIVES = ("time", "cost", "energy")
_COLS = ("dp", "tp", "pp", "cp", "ep", "zero", "hybrid_shard", "shard_group", "sp", "vpp",
         "schedule", "mbs", "gbs", "recompute", "offload", "placement", "num_micro")
_CHUNK = 1 << 20
RERANK_MARGIN = 0.10  # re-rank kernel candidates within 10% of the kernel's best


def score(cm: CostModel, plans: np.ndarray, progress: Callable[[int, int], None] | None = None
          ) -> np.ndarray:
    """Kernel results ([n, len(OUT)]) for a PLAN_DTYPE array."""
    out = np.zeros((len(plans), len(OUT_INDEX)))
    if not len(plans):
        return out
    combos = np.stack([plans[k] for k in COMBO_KEYS], 1).astype(np.int64)
    # one int64 key per row (recompute < 4, mbs < 2**24, sp < 2, the others < 2**12: 63
    # bits): unique on 1-D is fast
    key = ((((combos[:, 0] * (1 << 24) + combos[:, 1]) * (1 << 12) + combos[:, 2]) * 2
            + combos[:, 3]) * (1 << 12) + combos[:, 4]) * (1 << 12) + combos[:, 5]
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    unique = combos[first]
    table = cm.table(unique)
    vec = cm.model_vector(table)
    dom, bw, lat, share = cm.levels()
    placements = cm.placements()
    inverse = np.asarray(inverse, dtype=np.int64).ravel()
    for lo in range(0, len(plans), _CHUNK):
        part = plans[lo:lo + _CHUNK]
        cols = [np.ascontiguousarray(part[k]) for k in _COLS]
        out[lo:lo + len(part)] = score_plans(*cols, inverse[lo:lo + len(part)], table.rows, vec,
                                             placements, dom, bw, lat, share)
        if progress:
            progress(min(lo + _CHUNK, len(plans)), len(plans))
    return out


def economics(cm: CostModel, step_s: float, busy_s: float, gpus: int, tokens: float
              ) -> dict[str, float | None]:
    """Joules and dollars per step and per token for a step on ``gpus`` GPUs."""
    gpu, cl = cm.gpu, cm.cluster
    energy = step_energy_j(step_s, busy_s, gpus, gpu.tdp_w, gpu.idle_power_fraction,
                           cl.gpus_per_node, cl.node_power_overhead_w)
    price = price_per_gpu_hour(cl)
    cost = step_cost_usd(step_s, gpus, price) if price is not None else None
    return {
        "joules_per_step": energy, "joules_per_token": energy / tokens,
        "tokens_per_joule": tokens / energy if energy else 0.0,
        "usd_per_gpu_hour": price, "usd_per_step": cost,
        "usd_per_million_tokens": cost / tokens * 1e6 if cost is not None else None,
    }


def objective_values(cm: CostModel, plans: np.ndarray, res: np.ndarray, objective: str
                     ) -> np.ndarray:
    """Lower is better: step seconds, dollars per token or joules per token per plan."""
    step = res[:, OUT_INDEX["step_s"]]
    if objective == "time":
        return step.copy()
    gpus = plans["gpus"].astype(np.float64)
    tokens = plans["gbs"].astype(np.float64) * cm.workload.seq_len
    if objective == "cost":
        price = price_per_gpu_hour(cm.cluster)
        if price is None:
            raise PlanError(f"--objective cost needs a price: profile {cm.cluster.name} has no "
                            "price_per_gpu_hour; set it in the cluster or GPU profile")
        return step_cost_usd(step, gpus, price) / tokens
    if objective == "energy":
        gpu, cl = cm.gpu, cm.cluster
        busy = res[:, OUT_INDEX["compute_s"]] + res[:, OUT_INDEX["recompute_s"]]
        return step_energy_j(step, busy, gpus, gpu.tdp_w, gpu.idle_power_fraction,
                             cl.gpus_per_node, cl.node_power_overhead_w) / tokens
    raise PlanError(f"objective {objective!r}: allowed {', '.join(OBJECTIVES)}")


def pareto_front(points: np.ndarray) -> np.ndarray:
    """Indices of the rows of ``points`` ([n, d]: time, memory, GPUs and optionally the
    objective; lower is better) no other row dominates, one per distinct point.

    Sorted lexicographically, a row is dominated (or repeats a kept point) exactly when an
    earlier kept row is no larger anywhere. With three columns the earlier rows' least memory is
    kept per GPU count (few distinct counts), so the sweep is linear in the rows; with more,
    each row is compared with the kept rows."""
    points = np.asarray(points, dtype=np.float64)
    order = np.lexsort(points.T[::-1])
    if points.shape[1] != 3:
        kept = np.empty((0, points.shape[1]))
        front: list[int] = []
        for i in order.tolist():
            if np.any(np.all(kept <= points[i], axis=1)):
                continue
            front.append(i)
            kept = np.vstack([kept, points[i]])
        return np.array(front, dtype=np.int64)
    gvals = np.unique(points[:, 2])
    best = np.full(len(gvals), np.inf)  # least memory so far per GPU count
    gidx = np.searchsorted(gvals, points[:, 2])
    mem = points[:, 1]
    front = []
    for i in order.tolist():
        g = gidx[i]
        if best[: g + 1].min() <= mem[i]:
            continue
        front.append(i)
        if mem[i] < best[g]:
            best[g] = mem[i]
    return np.array(front, dtype=np.int64)


def add_economics(cm: CostModel, est: dict[str, Any]) -> dict[str, Any]:
    """``est`` (an ``estimate_plan`` document) with its ``economics``: the GPUs count as busy
    while they compute or recompute."""
    plan = est["plan"]
    busy = est["components_s"]["compute"] + est["components_s"]["recompute"]
    est["economics"] = economics(cm, est["step_time_s"], busy, plan["gpus"],
                                 plan["gbs"] * cm.workload.seq_len)
    return est


def _doc_objective(doc: dict[str, Any], objective: str) -> float:
    if objective == "time":
        return doc["step_time_s"]
    if objective == "cost":
        return doc["economics"]["usd_per_million_tokens"]
    return doc["economics"]["joules_per_token"]


def search(
    cm: CostModel,
    gpus: Iterable[int],
    gbs: int,
    *,
    constraints: Iterable[str] = (),
    fixed: Iterable[str] | None = None,
    objective: str = "time",
    top: int = 5,
    max_tp: int | None = None,
    rerank: int | None = None,
    pareto_max: int = 20,
    placements: str = "default",
    progress: Callable[[str, int, int], None] | None = None,
    enumerated: dict | None = None,
) -> dict[str, Any]:
    """Search every valid plan on each GPU count in ``gpus``; the ``search`` document.
    ``enumerated``: a dict kept by the caller across searches of the same model shape, so
    plan arrays are enumerated once (what-if grids); ``pareto_max=0`` skips the front."""
    if objective not in OBJECTIVES:
        raise PlanError(f"objective {objective!r}: allowed {', '.join(OBJECTIVES)}")
    t0 = time.perf_counter()
    w = cm.workload
    traced = [r.value for r in w.ops]
    fixed = list(fixed or [])
    constraints = list(constraints) + list(cm.runtime.plan_constraints)  # what the stack runs
    if not any(f.replace(" ", "").startswith("recompute=") for f in fixed):
        constraints += [f"recompute!={r.value}" for r in _untraced(w)]
    max_tp = max_tp if max_tp is not None else cm.cluster.gpus_per_node
    arrays = []
    for n in sorted(set(gpus)):
        key = (w.shape, n, gbs, max_tp, tuple(constraints), tuple(fixed), placements)
        if enumerated is not None and key in enumerated:
            arrays.append(enumerated[key])
            continue
        arrays.append(enumerate_plans(w.shape, n, gbs, max_tp=max_tp, constraints=constraints,
                                      fixed=fixed or None, placements=placements))
        if enumerated is not None:
            enumerated[key] = arrays[-1]
    plans = np.concatenate(arrays) if arrays else np.empty(0)
    t_enum = time.perf_counter() - t0
    if progress:
        progress("scoring plans", 0, len(plans))
    t1 = time.perf_counter()
    res = score(cm, plans, (lambda d, n: progress("scoring plans", d, n)) if progress else None)
    t_score = time.perf_counter() - t1
    fits = res[:, OUT_INDEX["fits"]] > 0
    doc: dict[str, Any] = {
        "objective": objective,
        "gpus": sorted(set(gpus)),
        "gbs": gbs,
        "constraints": constraints,
        "fixed": fixed,
        "recompute_traced": traced,
    }
    idx = np.flatnonzero(fits)
    if not len(idx):
        lowest = int(np.argmin(res[:, OUT_INDEX["mem_peak"]])) if len(plans) else None
        doc.update(plans=[], pareto=[])
        doc["search"] = _stats(plans, res, fits, t0, t_enum, t_score, 0)
        if lowest is not None:
            doc["closest"] = {"plan": plan_from_row(plans[lowest]).to_string(),
                              "peak_per_gpu_bytes": float(res[lowest, OUT_INDEX["mem_peak"]]),
                              "capacity_per_gpu_bytes": cm.usable_bytes}
        return doc
    obj = objective_values(cm, plans[idx], res[idx], objective)
    ranked = np.argsort(obj, kind="stable")
    order = idx[ranked]
    n_rerank = rerank if rerank is not None else max(4 * top, 32)
    candidates = order[:n_rerank]
    if rerank is None:
        # the kernel is within a few percent of the simulated pipeline: re-rank the candidates
        # that could still win, not ones far behind (each simulation of a deep pipeline costs)
        ranked_obj = obj[ranked[:n_rerank]]
        keep = ranked_obj <= ranked_obj[0] * (1 + RERANK_MARGIN)
        keep[:top] = True
        candidates = candidates[keep]
    # the Pareto front of every fitting plan on the kernel's figures (time, memory, GPUs, and
    # the objective when it is not the time), fastest first
    front = np.empty(0, dtype=np.int64)
    pts = np.empty((0, 3 if objective == "time" else 4))
    if pareto_max > 0:
        cols = front_columns(res[idx, OUT_INDEX["step_s"]], res[idx, OUT_INDEX["mem_peak"]],
                             plans["gpus"][idx], obj, objective)
        on = pareto_front(cols)
        on = on[np.argsort(cols[on, 0], kind="stable")]
        front, pts = idx[on], cols[on]
    screened = Screened(front, pts, res[front, OUT_INDEX["mfu"]],
                        _LazyPlans(plans, front))

    def price(i: int) -> Priced | None:
        plan = plan_from_row(plans[i])
        est = add_economics(cm, estimate_plan(plan, cm, with_schedule=False)[0])
        return Priced(i, plan, est, _doc_objective(est, objective)) if est["fits"] else None

    t2 = time.perf_counter()
    doc.update(choose(
        price, [int(i) for i in candidates], screened, objective, top, pareto_max,
        cm.gpu.mem_bytes, lambda i: float(res[i, OUT_INDEX["step_s"]]),
        (lambda d, n: progress("re-ranking with the simulated pipeline", d, n))
        if progress else None))
    t_rerank = time.perf_counter() - t2
    doc["search"] = _stats(plans, res, fits, t0, t_enum, t_score,
                           doc.get("ranking", {}).get("plans_priced", 0))
    doc["search"]["rerank_seconds"] = t_rerank
    doc["search"]["seconds"] = time.perf_counter() - t0
    return doc


class _LazyPlans:
    """``Plan`` of each front row, built when asked for (a front can hold thousands)."""

    def __init__(self, plans: np.ndarray, rows: np.ndarray) -> None:
        self._plans, self._rows = plans, rows

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, j: int):
        return plan_from_row(self._plans[self._rows[j]])


def _untraced(w) -> list:
    from archcost.options import Recompute

    return [r for r in Recompute if r not in w.ops]


def _stats(plans, res, fits, t0, t_enum, t_score, reranked) -> dict[str, Any]:
    n = len(plans)
    return {
        "plans_evaluated": int(n),
        "plans_valid": int(n),
        "plans_fitting": int(fits.sum()),
        "plans_reranked": int(reranked),
        "enumerate_seconds": t_enum,
        "score_seconds": t_score,
        "plans_per_second": n / t_score if t_score > 0 else 0.0,
        "seconds": time.perf_counter() - t0,
    }
