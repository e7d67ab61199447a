"""Speed of the plan search: plan evaluations per second of the numba plan kernel, and the wall
time of whole searches after tracing (Llama-3 405B on 4096 H100s; a 1T-parameter GPT on 5120
A100s), with tracing and the end-to-end command shown apart.

    python benchmarks/plan_speed.py [--out BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHILD = r"""
import sys, time, json
sys.path.insert(0, sys.argv[1])
import numpy as np
from archcost.plan.kernel import score_plans, MODEL_KEYS
i = np.ones(4, dtype=np.int32)
t0 = time.perf_counter()
score_plans(*([i] * 17), np.zeros(4, dtype=np.int64), np.ones((1, 13)), np.ones(len(MODEL_KEYS)),
            np.zeros((24, 4), dtype=np.int64), np.zeros(1, dtype=np.int64), np.ones(1), np.ones(1))
print(json.dumps({"compile_s": time.perf_counter() - t0}))
"""


def _compile_times() -> tuple[float, float]:
    import json

    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        runs = [subprocess.run([sys.executable, "-c", CHILD, str(ROOT)], capture_output=True,
                               text=True, env=env, check=True) for _ in range(2)]
    return tuple(json.loads(r.stdout)["compile_s"] for r in runs)


def _case(model: str, overrides: dict, seq: int, precision: str, cluster: str, gpus: int,
          gbs: int):
    from archcost.hardware.profile import load_cluster
    from archcost.loader import load_model_file
    from archcost.plan.costmodel import CostModel
    from archcost.plan.search import search
    from archcost.plan.workload import trace_workload
    from archcost.trace.precision import parse_precision

    spec = load_model_file(str(ROOT / "models" / model), overrides)
    t0 = time.perf_counter()
    w = trace_workload(spec, seq, parse_precision(precision))
    trace_s = time.perf_counter() - t0
    cm = CostModel(w, load_cluster(cluster, gpus))
    search(cm, [gpus], gbs, top=1)  # warm: numba from cache, tables
    cm = CostModel(w, load_cluster(cluster, gpus))
    t0 = time.perf_counter()
    doc = search(cm, [gpus], gbs)
    return w, cm, doc, trace_s, time.perf_counter() - t0


def _kernel_rate(cm, gpus: int, gbs: int, target: int = 2_000_000) -> tuple[int, int, float]:
    import numba
    import numpy as np

    from archcost.plan.arrays import enumerate_plans
    from archcost.plan.kernel import score_plans
    from archcost.plan.search import _COLS

    plans = enumerate_plans(cm.workload.shape, gpus, gbs)
    big = np.tile(plans, target // len(plans) + 1)
    combos = np.stack([big[k] for k in ("recompute", "mbs", "tp", "sp", "cp")], 1)
    unique, inverse = np.unique(combos, axis=0, return_inverse=True)
    table = cm.table(unique)
    args = ([np.ascontiguousarray(big[k]) for k in _COLS], inverse.astype(np.int64).ravel(),
            table.rows, cm.model_vector(table), cm.placements(), *cm.levels())
    score_plans(*[c[:100] for c in args[0]], args[1][:100], *args[2:])
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        score_plans(*args[0], *args[1:])
        times.append(time.perf_counter() - t0)
    return len(plans), len(big), len(big) / statistics.median(times), numba.get_num_threads()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    compile_s, cached_s = _compile_times()
    cases = [
        ("Llama-3 405B, seq 8192, 4096 x H100 (dgx-h100-ndr), gbs 2048",
         ("llama.py", {"preset": "405b"}, 8192, "bf16-mixed", "dgx-h100-ndr", 4096, 2048)),
        ("GPT 1T (128 x 25600, 160 heads), seq 2048, 5120 x A100 (dgx-a100-hdr), gbs 3072",
         ("gpt2.py", {"layers": 128, "hidden": 25600, "heads": 160, "ffn": 102400,
                      "vocab": 51200, "dropout": 0.1, "flash": False}, 2048, "fp16-mixed",
          "dgx-a100-hdr", 5120, 3072)),
    ]
    rows = []
    rate = None
    for name, case in cases:
        w, cm, doc, trace_s, search_s = _case(*case)
        if rate is None:
            rate = _kernel_rate(cm, case[5], case[6])
        best = doc["plans"][0]
        rows.append((name, trace_s, search_s, doc["search"], best["plan"],
                     best["estimate"]["step_time_s"], best["estimate"]["mfu"]))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "archcost", "plan", "models/llama.py", "--set",
                    "preset=405b", "--gpus", "4096", "--cluster", "dgx-h100-ndr", "-s", "8192",
                    "--gbs", "2048", "--json"], cwd=ROOT, check=True, capture_output=True)
    cli_s = time.perf_counter() - t0
    n_plans, n_big, per_s, threads = rate
    lines = [
        f"### plan search speed ({date.today().isoformat()}, {platform.machine()}, "
        f"{len(os.sched_getaffinity(0))} cores, {threads} numba threads)",
        "",
        "Command: `python benchmarks/plan_speed.py`",
        "",
        "| what | value |",
        "|---|---:|",
        f"| plan kernel: {n_big:,} plans (the {n_plans:,} valid 405B plans, tiled), median of 5 "
        f"| **{per_s / 1e6:.2f} M plan evaluations/s** (target >= 1 M) |",
        f"| kernel compile, empty cache / from cache | {compile_s:.1f} s / {cached_s:.2f} s |",
    ]
    for name, trace_s, search_s, s, plan, step, mfu in rows:
        lines += [
            f"| {name}: tracing (3 recompute policies) | {trace_s:.1f} s |",
            f"| same: whole search after tracing (enumerate, score {s['plans_valid']:,} plans, "
            f"{s['plans_fitting']:,} fit, re-rank {s['plans_reranked']} with the simulated "
            f"pipeline) | **{search_s:.2f} s** (target < 5 s) |",
            f"| same: best plan | `{plan}`: {step:.2f} s/step, MFU {100 * mfu:.1f}% |",
        ]
    lines.append(f"| `archcost plan models/llama.py --set preset=405b --gpus 4096 --cluster "
                 f"dgx-h100-ndr -s 8192 --gbs 2048 --json` end to end (imports, tracing, "
                 f"search) | {cli_s:.1f} s |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "a") as fh:
            fh.write("\n" + text)


if __name__ == "__main__":
    main()
