"""Continuous batching against TensorRT-LLM's published max-load runs, under both schedulers.

``benchmarks/data/trtllm_v1.0_max_load_cases.csv`` holds the Llama 3.1 8B rows (TP 1, H100 SXM
and H200) of TensorRT-LLM's ``docs/source/performance/perf-overview.md`` (the v1.0 tables):
``trtllm-bench throughput`` runs, every request queued at once, in-flight batching, the PyTorch
backend, total output tokens/s. Each row runs ``archcost infer`` as continuous batching flooded
past capacity, once with ``--no-chunked-prefill`` (a prefill and the decode steps apart) and
once with ``--chunked-prefill`` (decodes and prompt chunks in one forward, as in-flight batching
with chunked context runs them; the ``tensorrt-llm`` runtime's default):

    archcost infer hf:llama-3.1-8b --hardware GPU --dtype fp8 --kv-dtype fp8
        --runtime tensorrt-llm -i I -n O --rate 1000000 --max-seqs 2048
        --max-batched-tokens 8192 --ignore-memory --json --[no-]chunked-prefill

Assumptions, none read from the rows: the scheduler's caps are TensorRT-LLM's build defaults
(``max_batch_size`` 2048, ``max_num_tokens`` 8192; trtllm-bench may pick its own per data set,
which the page does not print); the FP8 checkpoint's cache in FP8; usable memory 0.9 of the GPU.

    python benchmarks/inference_max_load.py [--cases PATH] [--only ID,...] [--jobs N]
        [--out BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

from _section import publish

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CASES = ROOT / "benchmarks" / "data" / "trtllm_v1.0_max_load_cases.csv"
_PROFILES = {"H100-SXM-80GB": "h100-sxm", "H200-SXM-141GB": "h200"}
SCHEDULERS = (("apart", ["--no-chunked-prefill"]), ("chunked", ["--chunked-prefill"]))


def command(row: dict, extra: list[str]) -> list[str]:
    """The ``archcost infer`` run that prices ``row``."""
    return [sys.executable, "-m", "archcost", "infer", "hf:llama-3.1-8b",
            "--hardware", _PROFILES[row["gpu"]], "--dtype", "fp8", "--kv-dtype", "fp8",
            "--runtime", "tensorrt-llm", "-i", row["input_len"], "-n", row["output_len"],
            "--rate", "1000000", "--max-seqs", "2048", "--max-batched-tokens", "8192",
            "--ignore-memory", "--json", *extra]


def price(row: dict, extra: list[str]) -> dict:
    """The row's continuous-batching section, and the seconds it took."""
    t0 = time.perf_counter()
    done = subprocess.run(command(row, extra), capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"{row['id']}: archcost infer failed: {done.stderr.strip()[-400:]}")
    section = json.loads(done.stdout)["inference"]["continuous"]
    return {**section, "wall_s": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=str(DEFAULT_CASES))
    ap.add_argument("--only", default=None, help="comma list of row ids")
    ap.add_argument("--jobs", type=int, default=2, help="rows priced at once")
    ap.add_argument("--out", default=None, help="append the section to this file")
    args = ap.parse_args()
    with open(args.cases, newline="") as fh:
        rows = [r for r in csv.DictReader(fh)
                if args.only is None or r["id"] in args.only.split(",")]
    if not rows:
        raise SystemExit(f"no rows in {args.cases} (--only {args.only})")
    t0 = time.perf_counter()
    work = [(r, name, extra) for r in rows for name, extra in SCHEDULERS]
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        runs = list(pool.map(lambda job: price(job[0], job[2]), work))
    by = {(r["id"], name): run for (r, name, _), run in zip(work, runs)}
    lines = [f"### Out of sample: TensorRT-LLM's trtllm-bench max-load rows, both schedulers "
             f"({date.today().isoformat()}, {platform.machine()}, nothing fitted on them)", "",
             f"`python benchmarks/inference_max_load.py` ({time.perf_counter() - t0:.0f} s, "
             f"{args.jobs} rows at once). Error = predicted / published - 1; the running batch "
             "is the mean over the decode steps.", "",
             "| GPU | input | output | published tok/s | apart | error | chunked | error | "
             "batch apart / chunked |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    errors: dict[str, list[float]] = {name: [] for name, _ in SCHEDULERS}
    for r in rows:
        published = float(r["value"])
        cells = []
        for name, _ in SCHEDULERS:
            got = by[(r["id"], name)]["output_tokens_per_s"]
            errors[name].append(got / published - 1)
            cells += [f"{got:.0f}", f"{got / published - 1:+.1%}"]
        batches = " / ".join(f"{by[(r['id'], n)]['mean_batch']:.0f}" for n, _ in SCHEDULERS)
        lines.append(f"| {_PROFILES[r['gpu']]} | {r['input_len']} | {r['output_len']} | "
                     f"{published:.0f} | {' | '.join(cells)} | {batches} |")
    lines.append("")
    for name, errs in errors.items():
        mean = sum(abs(e) for e in errs) / len(errs)
        signed = sum(errs) / len(errs)
        lines.append(f"- {name}: mean absolute error {mean:.1%}, max "
                     f"{max(abs(e) for e in errs):.1%}, signed {signed:+.1%} ({len(errs)} rows)")
    publish(lines, args.out)


if __name__ == "__main__":
    main()
