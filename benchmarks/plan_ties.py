"""Benchmark: how finely the plan model resolves step time, the measurement behind the planner's
1% objective tie (``archcost/plan/rank.py``).

For each plan search of the README, the kernel's 40 best plans are priced in full (pipeline
simulated op by op) as well as by the screening kernel (closed-form pipeline): the same model
evaluated two ways, so their relative difference, over the plans within 5% of the least step
time, is a difference the model does not resolve. Also shown: the best plan
the search chooses and, when the tie rule moved it, the plan of least step time it was chosen
over.

    python benchmarks/plan_ties.py [--out BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import platform
import sys
from datetime import date
from pathlib import Path

import numpy as np
from _section import publish

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NEAR = 1.05  # plans within 5% of the least step time: those the tie could concern
CASES = [  # (label, model file, overrides, seq, GPUs, gbs)
    ("Llama-3 70B, 64 GPUs", "llama.py", {"preset": "70b"}, 8192, 64, 512),
    ("Mixtral 8x7B, 256 GPUs", "moe.py", {}, 4096, 256, 1024),
    ("Llama-3 8B, 64 GPUs", "llama.py", {"preset": "8b"}, 4096, 64, 256),
    ("GPT-2 small, 8 GPUs", "gpt2.py", {}, 1024, 8, 64),
]


def measure(label, file, overrides, seq, gpus, gbs) -> list[str]:
    from archcost.hardware.profile import load_cluster
    from archcost.loader import load_model_file
    from archcost.plan.costmodel import CostModel
    from archcost.plan.search import search
    from archcost.plan.workload import trace_workload
    from archcost.trace.precision import parse_precision

    spec = load_model_file(str(ROOT / "models" / file), overrides)
    w = trace_workload(spec, seq, parse_precision("bf16-mixed"), "adamw")
    cm = CostModel(w, load_cluster("dgx-h100-ndr", gpus))
    wide = search(cm, [gpus], gbs, top=40, pareto_max=0)  # the 40 best by the kernel, priced
    step = np.array([p["estimate"]["step_time_s"] for p in wide["plans"]])
    near = step <= NEAR * step.min()
    gaps = np.array([abs(p["screen_step_time_s"] / p["estimate"]["step_time_s"] - 1)
                     for p in wide["plans"]])[near]
    doc = search(cm, [gpus], gbs)  # as archcost plan runs it
    best = doc["plans"][0]
    least = doc["ranking"]["least_objective_plan"]
    moved = ""
    if least != best["plan"]:
        other = next(p for p in doc["plans"] + wide["plans"] if p["plan"] == least)
        dt = best["estimate"]["step_time_s"] / other["estimate"]["step_time_s"] - 1
        dm = (other["estimate"]["memory_bytes"]["peak_per_gpu"]
              - best["estimate"]["memory_bytes"]["peak_per_gpu"]) / 2**30
        moved = f"; over `{least}`: {100 * dt:+.2f}% time, {dm:+.1f} GiB headroom"
    return [f"| {label}, seq {seq}, gbs {gbs} | {len(gaps)} | {100 * gaps.max():.2f}% | "
            f"{100 * np.median(gaps):.2f}% | `{best['plan']}`{moved} |"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="append the section to this Markdown file")
    args = ap.parse_args()
    lines = [f"### plan ties ({date.today()}, {platform.machine()}, 2 cores, dgx-h100-ndr, "
             "bf16-mixed)", "", "Command: `python benchmarks/plan_ties.py`", "",
             "| search | plans within 5% of the fastest | max kernel/simulation gap | median | "
             "best plan |",
             "|---|---:|---:|---:|---|"]
    for case in CASES:
        lines += measure(*case)
    publish(lines, args.out)


if __name__ == "__main__":
    main()
