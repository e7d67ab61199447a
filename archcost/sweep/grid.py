"""The what-if grid and the sensitivity of step time to each resource.

At every grid point the best plan is searched again (a better machine deserves a different
plan) with the plan kernel, and the winner is evaluated in full; the record keeps step time,
tokens/s, MFU, memory per GPU, energy and cost, the chosen plan and the binding bottleneck (the
largest component of the step). Sensitivity, at one point with its best plan fixed, is the
elasticity d ln T / d ln r of step time to each resource r, by central differences of the full
estimate at r·(1 ± 5%): the model is a max/sum of roofline and collective terms, piecewise
smooth, so the derivative is taken where it is evaluated rather than from a global formula.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from collections.abc import Callable
from typing import Any

from archcost.errors import ConfigError
from archcost.sweep.axes import RESOURCES, WORKLOAD_KEYS, Axis, apply_hardware

__all__ = ["run_grid", "grid_result", "build_point", "load_system", "sensitivity", "bottleneck"]


def bottleneck(estimate: dict[str, Any]) -> str:
    """The largest component of the step (compute split by what bounds it)."""
    comps = estimate["components_s"]
    return max(comps, key=lambda k: comps[k])


def _compute_key(workload) -> str:
    from archcost.cost.compute import PEAK_KEY

    return PEAK_KEY.get(workload.gemm_dtype or workload.compute_dtype, "fp32")


def sensitivity(cm, plan, resources=RESOURCES, eps: float = 0.05) -> list[dict[str, Any]]:
    """Elasticity of the step time of ``plan`` to each resource, largest magnitude first."""
    from archcost.plan.costmodel import CostModel
    from archcost.plan.evaluate import estimate_plan

    key = _compute_key(cm.workload)

    def step(cluster) -> float:
        m = CostModel(cm.workload, cluster, overlap_dp=cm.overlap_dp,
                      uniform_stages=cm.uniform_stages, usable_memory=cm.usable_memory)
        return estimate_plan(plan, m, with_schedule=False)[0]["step_time_s"]

    base = step(cm.cluster)
    rows = []
    for r in resources:
        if r in ("net_bw", "net_latency") and len(cm.cluster.levels) == 1:
            continue
        up = step(apply_hardware(cm.cluster, r, ("x", 1 + eps), key))
        down = step(apply_hardware(cm.cluster, r, ("x", 1 / (1 + eps)), key))
        e = (math.log(up) - math.log(down)) / (2 * math.log(1 + eps))
        rows.append({"resource": r, "elasticity": e,
                     "step_time_if_doubled_s": step(apply_hardware(cm.cluster, r, ("x", 2.0),
                                                                   key)),
                     "predicted_if_doubled_s": base * 2 ** e})
    rows.sort(key=lambda row: -abs(row["elasticity"]))
    return rows


def load_system(text: str):
    """A cluster profile, optionally with another GPU in it: ``dgx-h100-ndr+h200``."""
    from archcost.hardware.profile import load_cluster

    name, _, gpu = text.partition("+")
    cluster = load_cluster(name)
    return apply_hardware(cluster, "gpu", gpu) if gpu else cluster


def build_point(axes: list[Axis], idx, *, cluster_name: str, gpus: int, gbs: int,
                seq_len: int, dtype: str, workload_for: Callable[[int, str], Any],
                prices: dict[str, float] | None = None):
    """(labels, cluster sized to the point's GPUs, gpus, seq_len, gbs, dtype, workload) of the
    grid point with value indices ``idx``."""
    setting = {a.key: a.values[i] for a, i in zip(axes, idx)}
    labels = {a.key: a.labels[i] for a, i in zip(axes, idx)}

    def scaled(key: str, base: int) -> int:
        v = setting.get(key, base)
        return int(round(base * v[1])) if isinstance(v, tuple) else int(v)

    n, s, b = scaled("gpus", gpus), scaled("seq_len", seq_len), scaled("gbs", gbs)
    d = setting.get("dtype", dtype)
    workload = workload_for(s, d)
    cluster = load_system(setting.get("cluster", cluster_name))
    hardware = [a.key for a in axes if a.key not in ("gpu", "cluster", *WORKLOAD_KEYS)]
    for key in (["gpu"] if "gpu" in setting else []) + hardware:
        cluster = apply_hardware(cluster, key, setting[key], _compute_key(workload))
    if workload.gemm_dtype and workload.gemm_dtype != workload.compute_dtype:
        from archcost.cost.compute import require_peak

        require_peak(cluster.gpu, _compute_key(workload), f"grid point {labels}: --dtype {d}")
    if prices and cluster.gpu.name in prices:
        cluster = dataclasses.replace(cluster, price_per_gpu_hour_usd=prices[cluster.gpu.name])
    try:
        cluster = cluster.with_gpus(n)
    except Exception as exc:
        raise ConfigError(f"grid point {labels}: {exc}") from None
    return labels, cluster, n, s, b, d, workload


def grid_result(axes: list[Axis], points: list[dict[str, Any]], total: int, t0: float
                ) -> dict[str, Any]:
    """A sweep's grid as its document holds it: the axes, the points, and the pace since
    ``t0`` (a ``time.perf_counter`` reading)."""
    seconds = time.perf_counter() - t0
    return {"axes": [{"key": a.key, "values": list(a.labels)} for a in axes],
            "points": points, "grid_points": total, "seconds": seconds,
            "points_per_second": total / seconds if seconds else 0.0}


def run_grid(
    axes: list[Axis],
    *,
    cluster_name: str,
    gpus: int,
    gbs: int,
    seq_len: int,
    dtype: str,
    workload_for: Callable[[int, str], Any],
    search_kw: dict[str, Any],
    cm_kw: dict[str, Any] | None = None,
    prices: dict[str, float] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Search the best plan at every point of the grid spanned by ``axes``."""
    from archcost.plan.costmodel import CostModel
    from archcost.plan.search import search

    t0 = time.perf_counter()
    sizes = [len(a.values) for a in axes]
    total = math.prod(sizes) if sizes else 1
    points = []
    enumerated: dict = {}  # plan arrays by (shape, GPUs, batch, ...): enumerate each once
    for k, idx in enumerate(itertools.product(*[range(n) for n in sizes])):
        labels, cluster, n, s, b, d, workload = build_point(
            axes, idx, cluster_name=cluster_name, gpus=gpus, gbs=gbs, seq_len=seq_len,
            dtype=dtype, workload_for=workload_for, prices=prices)
        cm = CostModel(workload, cluster, **(cm_kw or {}))
        res = search(cm, [n], b, enumerated=enumerated, pareto_max=0, **search_kw)
        row: dict[str, Any] = {"point": labels, "index": list(idx), "gpus": n, "seq_len": s,
                               "gbs": b, "dtype": d, "gpu": cluster.gpu.name,
                               "cluster": cluster.name,
                               "plans_valid": res["search"]["plans_valid"]}
        if res["plans"]:
            est = res["plans"][0]["estimate"]  # with its economics, from the search
            row.update({
                "fits": True, "plan": res["plans"][0]["plan"],
                "step_time_s": est["step_time_s"], "tokens_per_s": est["tokens_per_s"],
                "mfu": est["mfu"], "peak_per_gpu_bytes": est["memory_bytes"]["peak_per_gpu"],
                "bottleneck": bottleneck(est), "components_s": est["components_s"],
                **est["economics"],
            })
        else:
            row.update({"fits": False, "plan": None, "step_time_s": None})
        points.append(row)
        if progress:
            progress(k + 1, total)
    return grid_result(axes, points, total, t0)
