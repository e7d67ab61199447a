"""One-device estimate: the three components C (seconds), S (bytes), C_comm (bytes moved).

They are kept apart, never summed across units (the founding article's min{C + S + C_comm}).
On one device they combine into a step time as ``step_time = C`` (compute, kernels in sequence)
+ exposed communication (none on one device), subject to ``S <= usable_memory * device memory`` (``fits``; 0.9 by default, as the planner).

MFU = model FLOPs (forward + backward, no recompute) / (step time * dense peak of the dtype
the GEMMs run in: the fp8 peak for ``--dtype fp8``, though attention and the LM head run in
bf16); HFU counts recompute FLOPs too (PaLM, Chowdhery et al. 2022, Appendix B). NB: published
MFUs of fp8 runs differ: torchtitan divides by the bf16 peak whatever the precision
(torchtitan @9dec370 ``torchtitan/utils.py`` ``get_peak_flops``), NVIDIA's tables give model
TFLOP/s and no MFU.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import networkx as nx
import numpy as np

from archcost.cost.compute import PEAK_KEY, compute_times, lower, runtime_attention_kernel
from archcost.cost.fusion import executed_graph
from archcost.cost.memory import peak_memory
from archcost.runtime import load_runtime

__all__ = ["estimate_single_device"]

_BOUND = {0: "compute", 1: "memory", 2: "none"}


def estimate_single_device(
    g: nx.DiGraph, doc: dict[str, Any], gpu, compute_dtype: str, usable_memory: float = 0.9,
    attention_kernel: str | None = None, runtime=None,
) -> dict[str, Any]:
    """The ``estimate`` section of an analysis document for ``gpu`` (a GpuProfile), as
    ``runtime`` (a RuntimeProfile; default: the default runtime) executes ``g``; the step fits
    when its peak is within ``usable_memory`` of the device's memory, as a plan does; attention
    ops read ``attention_kernel``'s table (default: the runtime's kernel) where the profile has
    attention tables."""
    runtime = runtime or load_runtime()
    usable = int(gpu.mem_bytes * usable_memory)
    arrays = lower(executed_graph(g, runtime))
    res = compute_times(arrays, gpu, attention_kernel or runtime_attention_kernel(gpu, runtime))
    seconds = res.seconds
    step = float(seconds.sum())
    by_phase: dict[str, float] = defaultdict(float)
    by_class: dict[str, dict[str, float]] = defaultdict(lambda: {"seconds": 0.0, "compute": 0.0,
                                                                 "memory": 0.0, "flops": 0.0,
                                                                 "bytes": 0.0})
    by_module: dict[str, float] = defaultdict(float)
    for i in range(len(seconds)):
        t = float(seconds[i])
        by_phase[arrays.phase[i]] += t
        row = by_class[arrays.op_class[i]]
        row["seconds"] += t
        if res.bound[i] in (0, 1):
            row[_BOUND[int(res.bound[i])]] += t
        row["flops"] += arrays.flops[i] * arrays.count[i]
        row["bytes"] += arrays.nbytes[i] * arrays.count[i]
        parts = arrays.module[i].split(".") if arrays.module[i] else []
        for d in range(min(len(parts), 2) + 1):
            by_module[".".join(parts[:d])] += t
    flops = doc["totals"]["flops"]
    peak = float(gpu.peak_flops_per_s.get(PEAK_KEY.get(compute_dtype, "fp32")) or
                 gpu.peak_flops_per_s["fp32"])
    model_flops = flops["forward"] + flops["backward"]
    mem = doc["totals"]["memory_bytes"]
    persistent = (mem["weights"] + mem["buffers"] + mem["optimizer_states"]
                  + mem.get("lowp_state", 0))
    pm = peak_memory(g, persistent, runtime.fusions)
    classes = []
    for cls, row in sorted(by_class.items(), key=lambda kv: -kv[1]["seconds"]):
        bound = "compute" if row["compute"] >= row["memory"] else "memory"
        if row["compute"] == 0 and row["memory"] == 0:
            bound = "none"
        intensity = row["flops"] / row["bytes"] if row["bytes"] else 0.0
        attainable = min(peak, intensity * gpu.mem_bw_bytes_per_s) if row["bytes"] else peak
        classes.append({
            "class": cls, "seconds": row["seconds"], "share": row["seconds"] / step if step else 0,
            "bound": bound, "flops": row["flops"], "bytes": row["bytes"],
            "arithmetic_intensity": intensity, "attainable_flops_per_s": attainable,
            "achieved_flops_per_s": row["flops"] / row["seconds"] if row["seconds"] else 0.0,
        })
    modules = sorted(
        ({"path": p, "seconds": t} for p, t in by_module.items()), key=lambda r: -r["seconds"]
    )
    ridge = peak / gpu.mem_bw_bytes_per_s
    headroom = runtime.allocator_headroom
    return {
        "hardware": gpu.name,
        "runtime": runtime.name,
        "peak_flops_per_s": peak,
        "step_time_s": step,
        "phase_seconds": {p: by_phase.get(p, 0.0) for p in ("forward", "backward", "recompute", "optimizer")},
        "mfu": model_flops / (step * peak) if step else 0.0,
        "hfu": (model_flops + flops["recompute"]) / (step * peak) if step else 0.0,
        "memory_bytes": {
            "peak": pm.peak_bytes,
            "persistent": pm.persistent_bytes,
            "activations_and_temporaries_at_peak": pm.activations_at_peak,
            "capacity": int(gpu.mem_bytes),
            # what the caching allocator holds at the peak, where the runtime says (None: unknown)
            "reserved": None if headroom is None else pm.peak_bytes * (1.0 + headroom),
            "usable": usable,
            "peak_at": {"phase": pm.peak_phase, "module": pm.peak_module, "op_index": pm.peak_index},
        },
        "fits": bool(pm.peak_bytes <= usable),
        "components": {
            "C_compute_s": step,
            "S_peak_bytes": pm.peak_bytes,
            "C_comm_bytes": 0,
            "combination": "step_time = C_compute + exposed C_comm time (0 on one device); "
                           "feasible when S_peak <= usable share of device memory",
        },
        "op_classes": classes,
        "modules": modules[:50],
        "roofline": {"ridge_point_flop_per_byte": ridge, "mem_bw_bytes_per_s": gpu.mem_bw_bytes_per_s},
        "ops_compute_bound": int(np.sum(res.bound == 0)),
        "ops_memory_bound": int(np.sum(res.bound == 1)),
    }
