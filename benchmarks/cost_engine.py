"""Benchmark: cost-engine evaluation of the Llama-3 405B graph on one GPU profile.

Reports, in one run: tracing time (for reference), numba compile time (first call with an empty
cache directory), evaluation time of the one-device estimate (lowering, roofline, liveness),
and the numba kernels against their pure-Python twins from the tests on the same arrays.

    python benchmarks/cost_engine.py [--seq-len 8192] [--out BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from _section import publish

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHILD = r"""
import sys, time, json
sys.path.insert(0, sys.argv[1])
t0 = time.perf_counter()
from archcost.cost import kernels  # noqa: E402  (compiles lazily on first call)
import numpy as np
a = np.ones(4); i = np.zeros(4, dtype=np.int64); c = np.zeros((1, 2)); o = np.ones((1, 2))
n = np.ones(1, dtype=np.int64)
t1 = time.perf_counter()
kernels.roofline(a, a, a, i - 1, a, c, o, n, 1.0, i, c, o, n, a)
kernels.liveness_peak(i, i, a, a, 4, 0.0)
kernels.best_collective(0, 1.0, 4, 1e-6, 1e9)
t2 = time.perf_counter()
print(json.dumps({"compile_s": t2 - t1}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seq-len", type=int, default=8192)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        first = subprocess.run([sys.executable, "-c", CHILD, str(ROOT)], capture_output=True,
                               text=True, env=env, check=True)
        again = subprocess.run([sys.executable, "-c", CHILD, str(ROOT)], capture_output=True,
                               text=True, env=env, check=True)
    import json

    compile_s = json.loads(first.stdout)["compile_s"]
    cached_s = json.loads(again.stdout)["compile_s"]

    import numpy as np

    from archcost.analysis import summarize
    from archcost.cost import kernels
    from archcost.cost.compute import compute_times, lower
    from archcost.cost.estimate import estimate_single_device
    from archcost.cost.memory import liveness_arrays
    from archcost.hardware.profile import load_gpu
    from archcost.loader import load_model_file
    from archcost.trace import trace_model
    from archcost.trace.precision import parse_precision
    from tests.test_kernels import py_roofline

    policy = parse_precision("bf16-mixed")
    spec = load_model_file(str(ROOT / "models" / "llama.py"), {"preset": "405b"})
    t0 = time.perf_counter()
    traced = trace_model(spec, 1, args.seq_len, policy)
    trace_s = time.perf_counter() - t0
    doc = summarize(traced.graph, traced.capture, policy, {})
    gpu = load_gpu("h100-sxm")
    estimate_single_device(traced.graph, doc, gpu, policy.compute_dtype)  # warm
    reps = 5
    t0 = time.perf_counter()
    for _ in range(reps):
        est = estimate_single_device(traced.graph, doc, gpu, policy.compute_dtype)
    eval_s = (time.perf_counter() - t0) / reps

    arrays = lower(traced.graph)
    from archcost.cost.compute import (
        _curve_rows,
        _curves,
        _memory_curves,
        _peak,
        curve_for,
        memory_curve_index,
        overhead_seconds,
    )

    peak = np.array([_peak(gpu, d, c) for d, c in zip(arrays.dtype, arrays.op_class)])
    curve = np.array([curve_for(c, op) for c, op in zip(arrays.op_class, arrays.op)],
                     dtype=np.int64)
    cx, cy, cn = _curves(_curve_rows(gpu))
    mx, my, mn = _curves(_memory_curves(gpu))
    # tile the op arrays so each kernel call does measurable work
    tile = 200
    fl, nb, pk, cv, mc, la = (np.tile(x, tile) for x in (
        arrays.flops, arrays.nbytes, peak, curve,
        memory_curve_index(gpu, arrays.op), overhead_seconds(gpu, arrays.phase)))
    roof_args = (fl, nb, pk, cv, fl, cx, cy, cn, gpu.mem_bw_bytes_per_s, mc, mx, my, mn, la)
    t0 = time.perf_counter()
    kernels.roofline(*roof_args)
    numba_roof = time.perf_counter() - t0
    t0 = time.perf_counter()
    py_roofline(*roof_args)
    py_roof = time.perf_counter() - t0

    alloc, last, size, weight, order = liveness_arrays(traced.graph)
    t0 = time.perf_counter()
    for _ in range(100):
        kernels.liveness_peak(alloc, last, size, weight, len(order), 0.0)
    numba_live = (time.perf_counter() - t0) / 100
    t0 = time.perf_counter()
    _py_sweep(alloc, last, size, weight, len(order))
    py_live = time.perf_counter() - t0
    compute_times(arrays, gpu)

    lines = [
        f"### cost engine on Llama-3 405B ({date.today().isoformat()}, {platform.machine()}, "
        f"{len(os.sched_getaffinity(0))} cores, seq_len {args.seq_len}, h100-sxm, bf16-mixed)",
        "",
        f"Command: `python benchmarks/cost_engine.py --seq-len {args.seq_len}`",
        "",
        "| what | value |",
        "|---|---:|",
        f"| graph: ops recorded / executed | {len(order):,} / {int(arrays.count.sum()):,} |",
        f"| tracing (reference, not the engine) | {trace_s:.2f} s |",
        f"| numba compile, empty cache (first call of the three kernels) | {compile_s:.2f} s |",
        f"| same, from the on-disk cache | {cached_s:.3f} s |",
        f"| one-device estimate (lower + roofline + liveness + breakdowns) | {eval_s * 1e3:.1f} ms |",
        f"| roofline kernel, {len(fl):,} ops: numba / pure Python | {numba_roof * 1e3:.2f} ms / "
        f"{py_roof * 1e3:.0f} ms = **{py_roof / numba_roof:.0f}x** |",
        f"| liveness sweep, {len(alloc):,} tensors: numba / pure Python (same sweep) | "
        f"{numba_live * 1e6:.0f} us / {py_live * 1e6:.0f} us = **{py_live / numba_live:.0f}x** |",
        f"| predicted step time, peak memory | {est['step_time_s']:.2f} s, "
        f"{est['memory_bytes']['peak'] / 1e12:.2f} TB |",
    ]
    publish(lines, args.out)


def _py_sweep(alloc, last, size, weight, n_steps):
    """The liveness kernel's delta sweep in plain Python, for the speed comparison."""
    delta = [0.0] * (n_steps + 1)
    for a, e, s, w in zip(alloc.tolist(), last.tolist(), size.tolist(), weight.tolist()):
        delta[a] += s * w
        delta[max(a, e) + 1] -= s * w
    cur = peak = 0.0
    for k in range(n_steps):
        cur += delta[k]
        peak = max(peak, cur)
    return peak


if __name__ == "__main__":
    main()
