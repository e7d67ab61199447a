"""The what-if grid of generation (``archcost sweep --infer``): at every point, static batching
priced as ``archcost infer`` prices it (``archcost.infer.document.inference_section`` on
:class:`~archcost.infer.price.InferenceCosts`), over batch, prompt and output lengths,
precision, hardware profile and hardware figures.

The traces and workloads of a model at one precision and sequence length do not depend on the
hardware, the batch or the parallel layout (``InferenceCosts`` keys them by what they do depend
on), so one ``memo`` serves the whole grid: a point that differs only in hardware or batch
traces nothing again.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from typing import Any

from archcost.errors import ConfigError
from archcost.sweep.axes import INFER_KEYS, INFER_ONLY_KEYS, Axis, apply_hardware
from archcost.sweep.grid import grid_result

__all__ = ["INFER_DTYPES", "run_infer_grid"]

INFER_DTYPES = ("bf16", "fp16", "fp32")
# figures applied to the point's cluster
_FIGURES = tuple(k for k in INFER_KEYS if k not in (*INFER_ONLY_KEYS, "dtype", "gpu"))


def _setting(axes: list[Axis], idx) -> tuple[dict[str, Any], dict[str, str]]:
    return ({a.key: a.values[i] for a, i in zip(axes, idx)},
            {a.key: a.labels[i] for a, i in zip(axes, idx)})


def _point(axes: list[Axis], idx, base: dict[str, Any], cluster_for, gpus: int):
    """(setting, labels, dtype, precision policy, cluster) of the grid point ``idx``."""
    from archcost.cost.compute import PEAK_KEY
    from archcost.trace.precision import parse_precision

    setting, labels = _setting(axes, idx)
    dtype = str(setting.get("dtype", base["dtype"]))
    if dtype not in INFER_DTYPES:
        raise ConfigError(f"--vary dtype={dtype}: inference prices {', '.join(INFER_DTYPES)}")
    policy = parse_precision(dtype)
    cluster = cluster_for(str(setting.get("hardware", base["hardware"])), gpus)
    if "gpu" in setting:
        cluster = apply_hardware(cluster, "gpu", setting["gpu"])
    for key in (a.key for a in axes if a.key in _FIGURES):
        cluster = apply_hardware(cluster, key, setting[key],
                                 PEAK_KEY.get(policy.compute_dtype, "fp32"))
    return setting, labels, dtype, policy, cluster


def run_infer_grid(
    axes: list[Axis],
    *,
    spec,
    base: dict[str, Any],
    cluster_for: Callable[[str, int], Any],
    runtime,
    options=None,
    memo: dict | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Price generation at every point of the grid spanned by ``axes``. ``base``: hardware, tp,
    pp, batch, input_len, output_len, dtype, usable_memory (what no axis varies);
    ``cluster_for(name, gpus)``: the cluster one replica of ``gpus`` GPUs runs on."""
    from archcost.infer.document import inference_section
    from archcost.infer.price import InferenceCosts

    memo = {} if memo is None else memo
    t0 = time.perf_counter()
    sizes = [len(a.values) for a in axes]
    total = math.prod(sizes) if sizes else 1
    tp, pp = int(base["tp"]), int(base["pp"])
    # every point's precision and cluster first: a point the grid cannot price is refused
    # before anything is traced
    grid = [(idx, *_point(axes, idx, base, cluster_for, tp * pp))
            for idx in itertools.product(*[range(n) for n in sizes])]
    points = []
    for k, (idx, setting, labels, dtype, policy, cluster) in enumerate(grid):
        batch = int(setting.get("batch", base["batch"]))
        input_len = int(setting.get("input_len", base["input_len"]))
        output_len = int(setting.get("output_len", base["output_len"]))
        costs = InferenceCosts(spec, cluster, policy, runtime, build_len=input_len + output_len,
                               tp=tp, pp=pp, usable_memory=base["usable_memory"],
                               options=options, memo=memo)
        costs.check_shapes()
        inf = inference_section(costs, batch, input_len, output_len)
        phases = inf["phases"]
        points.append({
            "point": labels, "index": list(idx), "batch": batch, "input_len": input_len,
            "output_len": output_len, "dtype": dtype, "gpu": cluster.gpu.name,
            "cluster": cluster.name, "gpus": costs.gpus, "fits": inf["fits"],
            "max_batch": inf["max_batch"], "ttft_s": inf["ttft_s"], "tpot_s": inf["tpot_s"],
            "e2e_s": inf["e2e_s"], "output_tokens_per_s": inf["output_tokens_per_s"],
            "output_tokens_per_s_per_gpu": inf["output_tokens_per_s_per_gpu"],
            "peak_per_gpu_bytes": inf["memory_bytes"]["peak_per_gpu"],
            "memory_bytes": {key: inf["memory_bytes"][key] for key in
                             ("weights", "kv_cache", "activations", "peak_per_gpu")},
            "prefill_bound": phases["prefill"]["bound"],
            **({"decode_bound": phases["decode"]["bound"]} if "decode" in phases else {})})
        if progress:
            progress(k + 1, total)
    return grid_result(axes, points, total, t0)
