"""Benchmark: speed of the parallel-plan search (``archcost plan``).

Reports, in one run:

1. the plan kernel alone (``kernel.score_plans``, compiled and warm, cost table built, inputs
   prepared) on the Llama-3 405B plan array for 4096 GPUs of ``dgx-h100-ndr`` tiled to at least
   2,000,000 rows: median plan evaluations per second over several repetitions, on numba's
   default thread count and on one thread (the reference); the kernel's compile time with an
   empty numba cache (a child process with ``NUMBA_CACHE_DIR`` set to a temporary directory)
   and from that cache;
2. whole searches after tracing (``search.search``: enumerate, cost table, kernel, re-rank with
   the simulated pipeline) for Llama-3 405B on 4096 H100s and a 1T-parameter GPT on 5120 A100s,
   each on a fresh ``CostModel`` so the cost table is built inside the timing; tracing (all
   three recompute policies) is shown apart;
3. the end-to-end command ``archcost plan ... --json`` as a subprocess, for reference.

    python benchmarks/plan_speed.py [--reps 5] [--min-rows 2000000] [--out BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
from _section import publish

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

KERNEL_TARGET = 1_000_000  # plan evaluations per second on 2 cores (issue)
SEARCH_TARGET_S = 5.0  # whole search after tracing (issue)

# The kernel compiled alone on one synthetic plan with the argument types the search passes
# (int32 plan columns, int64 combo index, float64 table and model vector, int64 placements and
# level domains, float64 [level, kind] bandwidths and latencies, int64 GPUs per link), so the
# signature matches the cached one.
CHILD = r"""
import sys, time, json
sys.path.insert(0, sys.argv[1])
t0 = time.perf_counter()
import numpy as np
from archcost.plan.arrays import PLAN_DTYPE
from archcost.plan.costmodel import CostModel
from archcost.plan.kernel import MODEL_KEYS, score_plans
from archcost.plan.search import _COLS
from archcost.plan.table import COLUMNS
t1 = time.perf_counter()
plans = np.ones(1, dtype=PLAN_DTYPE)
cols = [np.ascontiguousarray(plans[k]) for k in _COLS]
combo = np.zeros(1, dtype=np.int64)
table = np.full((1, len(COLUMNS)), 1e-3)
model = np.ones(len(MODEL_KEYS))
placements = CostModel.placements()
dom, share = np.array([8, 0], dtype=np.int64), np.ones(2, dtype=np.int64)
bw = np.array([[4.5e11] * 6, [5e10] * 6])
lat = np.array([[1e-6] * 6, [5e-6] * 6])
t2 = time.perf_counter()
score_plans(*cols, combo, table, model, placements, dom, bw, lat, share)
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "compile_s": t3 - t2}))
"""

LLAMA = {"name": "Llama-3 405B", "file": "models/llama.py", "set": {"preset": "405b"},
         "seq": 8192, "precision": "bf16-mixed", "cluster": "dgx-h100-ndr", "gpus": 4096,
         "gbs": 2048}
GPT_1T = {"name": "GPT 1T (128 x 25600)", "file": "models/gpt2.py",
          "set": {"layers": 128, "hidden": 25600, "heads": 160, "ffn": 102400, "vocab": 51200,
                  "dropout": 0.1, "flash": False},
          "seq": 2048, "precision": "fp16-mixed", "cluster": "dgx-a100-hdr", "gpus": 5120,
          "gbs": 3072}
CLI = ["plan", "models/llama.py", "--set", "preset=405b", "--gpus", "4096", "--hardware",
       "dgx-h100-ndr", "-s", "8192", "--gbs", "2048", "--dtype", "bf16-mixed", "--json"]


def compile_times() -> tuple[float, float]:
    """Kernel compile seconds with an empty numba cache, then loaded from that cache."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        runs = [subprocess.run([sys.executable, "-c", CHILD, str(ROOT)], capture_output=True,
                               text=True, env=env, check=True) for _ in range(2)]
    first, again = (json.loads(r.stdout.strip().splitlines()[-1]) for r in runs)
    return first["compile_s"], again["compile_s"]


def trace(case: dict):
    from archcost.loader import load_model_file
    from archcost.options import Recompute
    from archcost.plan.workload import trace_workload
    from archcost.trace.precision import parse_precision

    spec = load_model_file(str(ROOT / case["file"]), dict(case["set"]))
    t0 = time.perf_counter()
    workload = trace_workload(spec, case["seq"], parse_precision(case["precision"]), "adamw",
                              tuple(Recompute))
    return workload, time.perf_counter() - t0


def kernel_inputs(cm, plans: np.ndarray) -> tuple[list, float, int]:
    """The kernel's arguments for ``plans`` as ``search.score`` builds them, the seconds spent
    building the cost table for the distinct (recompute, mbs, tp, sp, cp, ep) combinations and
    its row count."""
    from archcost.plan.search import _COLS
    from archcost.plan.table import COMBO_KEYS

    combos = np.stack([plans[k] for k in COMBO_KEYS], 1).astype(np.int64)
    _, first, inverse = np.unique(combos, axis=0, return_index=True, return_inverse=True)
    t0 = time.perf_counter()
    table = cm.table(combos[first])
    table_s = time.perf_counter() - t0
    vec = cm.model_vector(table)
    dom, bw, lat, share = cm.levels()
    cols = [np.ascontiguousarray(plans[k]) for k in _COLS]
    inverse = np.asarray(inverse, dtype=np.int64).ravel()
    return ([*cols, inverse, table.rows, vec, cm.placements(), dom, bw, lat, share], table_s,
            len(table.rows))


def time_kernel(args: list, reps: int) -> list[float]:
    from archcost.plan.kernel import score_plans

    score_plans(*args)  # warm: compiled (or loaded from the cache) and pages touched once
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        score_plans(*args)
        times.append(time.perf_counter() - t0)
    return times


def time_search(workload, case: dict, reps: int) -> tuple[list[float], dict]:
    from archcost.hardware.profile import load_cluster
    from archcost.plan.costmodel import CostModel
    from archcost.plan.search import search

    cluster = load_cluster(case["cluster"], case["gpus"])
    times, doc = [], {}
    for _ in range(reps):
        cm = CostModel(workload, cluster)  # fresh: the cost table is built inside the timing
        t0 = time.perf_counter()
        doc = search(cm, [case["gpus"]], case["gbs"], max_tp=cluster.gpus_per_node)
        times.append(time.perf_counter() - t0)
    return times, doc


def time_cli() -> tuple[float, dict | None]:
    exe = shutil.which("archcost")
    cmd = [exe, *CLI] if exe else [sys.executable, "-m", "archcost", *CLI]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    try:
        return wall, json.loads(proc.stdout)
    except json.JSONDecodeError:
        print(proc.stderr, file=sys.stderr)
        return wall, None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5, help="kernel repetitions (median reported)")
    ap.add_argument("--search-reps", type=int, default=3, help="search repetitions (median)")
    ap.add_argument("--min-rows", type=int, default=2_000_000, help="tile the plan array to "
                    "at least this many rows for the kernel timing")
    ap.add_argument("--out", default=None, help="append the result section to this file")
    args = ap.parse_args()

    load = os.getloadavg()[0]  # the hosts are shared: a busy one slows every figure here
    compile_s, cached_s = compile_times()

    import numba

    from archcost.hardware.profile import load_cluster
    from archcost.plan.arrays import enumerate_plans
    from archcost.plan.costmodel import CostModel

    threads = numba.get_num_threads()
    results = {}
    for case in (LLAMA, GPT_1T):
        workload, trace_s = trace(case)
        results[case["name"]] = {"workload": workload, "trace_s": trace_s}

    # 1. the kernel alone on the Llama-3 405B plans, tiled
    llama = results[LLAMA["name"]]
    cluster = load_cluster(LLAMA["cluster"], LLAMA["gpus"])
    cm = CostModel(llama["workload"], cluster)
    base = enumerate_plans(llama["workload"].shape, LLAMA["gpus"], LLAMA["gbs"],
                           max_tp=cluster.gpus_per_node)
    tiles = -(-args.min_rows // len(base))
    plans = np.tile(base, tiles)
    kargs, table_s, n_combos = kernel_inputs(cm, plans)
    times = time_kernel(kargs, args.reps)
    numba.set_num_threads(1)
    times_1 = time_kernel(kargs, max(1, args.reps // 2))
    numba.set_num_threads(threads)
    rate = len(plans) / statistics.median(times)
    rate_1 = len(plans) / statistics.median(times_1)

    # 2. whole searches after tracing
    for case in (LLAMA, GPT_1T):
        r = results[case["name"]]
        r["times"], r["doc"] = time_search(r["workload"], case, args.search_reps)

    # 3. the CLI end to end
    cli_s, cli_doc = time_cli()

    cores = len(os.sched_getaffinity(0))
    lines = [
        f"### plan search ({date.today().isoformat()}, {platform.machine()}, {cores} cores, "
        f"numba {numba.__version__}, {threads} numba threads, load average {load:.1f} at "
        "start)",
        "",
        "Command: `python benchmarks/plan_speed.py" + (
            f" --reps {args.reps}" if args.reps != 5 else "") + (
            f" --search-reps {args.search_reps}" if args.search_reps != 3 else "") + (
            f" --min-rows {args.min_rows}" if args.min_rows != 2_000_000 else "") + "`",
        "",
        "| what | value |",
        "|---|---:|",
        f"| kernel input: Llama-3 405B plans, {LLAMA['gpus']} GPUs {LLAMA['cluster']}, seq "
        f"{LLAMA['seq']}, gbs {LLAMA['gbs']} | {len(base):,} plans x {tiles} = "
        f"{len(plans):,} rows, {n_combos} cost-table rows |",
        f"| cost table build for those rows (not in the kernel timing) | {table_s * 1e3:.0f} ms |",
        f"| `score_plans` alone, {threads} threads: median of {len(times)} | "
        f"{statistics.median(times):.2f} s = **{rate:,.0f} plans/s** "
        f"(target >= {KERNEL_TARGET:,}) |",
        f"| same, 1 thread (reference): median of {len(times_1)} | "
        f"{statistics.median(times_1):.2f} s = {rate_1:,.0f} plans/s; "
        f"{threads} threads = **{rate / rate_1:.2f}x** |",
        f"| kernel runs, {threads} threads (s) | {', '.join(f'{t:.2f}' for t in times)} |",
        f"| numba compile of `score_plans`, empty cache | {compile_s:.2f} s |",
        f"| same, from the on-disk cache | {cached_s:.3f} s |",
    ]
    for case in (LLAMA, GPT_1T):
        r = results[case["name"]]
        st = r["doc"]["search"]
        best = r["doc"]["plans"][0] if r["doc"]["plans"] else None
        label = (f"{case['name']}, {case['gpus']} GPUs {case['cluster']}, seq {case['seq']}, "
                 f"gbs {case['gbs']}, {case['precision']}")
        lines += [
            f"| {label}: tracing (3 recompute policies, not in the search) | "
            f"{r['trace_s']:.2f} s |",
            f"| {label}: **search** median of {len(r['times'])} (target < {SEARCH_TARGET_S:g} "
            f"s) | **{statistics.median(r['times']):.2f} s** "
            f"(runs {', '.join(f'{t:.2f}' for t in r['times'])}) |",
            f"| {label}: enumerate / table + kernel / re-rank (last run) | "
            f"{st['enumerate_seconds']:.2f} s / {st['score_seconds']:.2f} s / "
            f"{st['rerank_seconds']:.2f} s ({st['plans_reranked']} re-ranked) |",
            f"| {label}: plans valid / fitting | {st['plans_valid']:,} / "
            f"{st['plans_fitting']:,} |",
            f"| {label}: best plan, step time | "
            + (f"`{best['plan']}`, {best['estimate']['step_time_s']:.2f} s |" if best else
               "none fits |"),
        ]
    cli_best = cli_doc["plans"][0] if cli_doc and cli_doc.get("plans") else None
    lines.append(f"| `archcost {' '.join(CLI)}` wall (imports, tracing, search) | "
                 f"{cli_s:.2f} s" + (f"; best `{cli_best['plan']}`, "
                                     f"{cli_best['estimate']['step_time_s']:.2f} s"
                                     if cli_best else "; no plan") + " |")
    publish(lines, args.out)


if __name__ == "__main__":
    main()
