"""Memory against measured: archcost's predicted peak per GPU against the memory published runs
report.

torchtitan publishes, for each run of its Llama 3.1 H100 benchmark
(benchmarks/llama3_h100_202412_torchtitan.md), the caching allocator's peak *reserved* memory
in GiB (2^30 B), the maximum over all GPUs (torchtitan 9dec370 train.py:393 and
metrics.py:46-64: ``reserved_bytes.all.peak``). Reserved memory is what tensors hold plus the
allocator's rounding and cached free blocks; it leaves out the CUDA context, NCCL buffers and
library workspaces, which are allocated outside the caching allocator. The published plan of
each run is mapped by ``published_cases.py`` and priced as ``published.py`` prices it (its
runtime profile included); the prediction is ``estimate_plan``'s ``peak_per_gpu`` (the fullest
pipeline rank).

    python benchmarks/memory_measured.py [--cache DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from datetime import date

import published
from _section import publish
from published_cases import load_cases

GIB = 2**30


def predict(case, cache_dir, memo) -> dict:
    return published.predict(published.fp8_ready(case), cache_dir, memo)["est"]["memory_bytes"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=str(published.DEFAULT_CASES))
    ap.add_argument("--cache", default=None, help="keep traced workloads in this folder")
    ap.add_argument("--out", default=None, help="append the result section to this file")
    args = ap.parse_args()
    cases = [c for c in load_cases(args.cases) if c.memory_gib]
    memo: dict = {}
    lines = [f"### predicted peak memory against torchtitan's ({date.today().isoformat()}, "
             f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores)", "",
             "Command: `python benchmarks/memory_measured.py`", "",
             "| case | plan | measured GiB | predicted GiB | gap | states | activations "
             "| transient |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    gaps = []
    t0 = time.perf_counter()
    for c in cases:
        if published.pending_reason(c):
            lines.append(f"| {c.id} | - | {c.memory_gib:g} | - | not expressed: "
                         f"{published.pending_reason(c)} "
                         "| | | |")
            continue
        m = predict(c, args.cache, memo)
        peak = m["peak_per_gpu"] / GIB
        gap = peak / c.memory_gib - 1
        gaps.append(gap)
        states = (m["weights"] + m["gradients"] + m["optimizer_states"]) / GIB
        lines.append(f"| {c.id} | `{c.plan}` | {c.memory_gib:g} | {peak:.1f} | "
                     f"{100 * gap:+.1f}% | {states:.1f} | {m['activations'] / GIB:.1f} | "
                     f"{m['transient'] / GIB:.1f} |")
        print(lines[-1], flush=True)
    if gaps:
        lines += ["", f"Mean absolute gap {100 * sum(map(abs, gaps)) / len(gaps):.1f}% over "
                  f"{len(gaps)} runs; {time.perf_counter() - t0:.0f} s wall including tracing."]
    publish(lines, args.out)


if __name__ == "__main__":
    main()
