"""Continuous batching against TensorRT-LLM's published max-load runs, under both schedulers.

``benchmarks/data/trtllm_v1.0_max_load_cases.csv`` holds the Llama 3.1 8B rows (TP 1, H100 SXM
and H200) of TensorRT-LLM's ``docs/source/performance/perf-overview.md`` (the v1.0 tables):
``trtllm-bench throughput`` runs, every request queued at once, in-flight batching, the PyTorch
backend, total output tokens/s. Each row runs ``archcost infer`` as continuous batching flooded
past capacity, once with ``--no-chunked-prefill`` (a prefill and the decode steps apart) and
once with ``--chunked-prefill`` (decodes and prompt chunks in one forward, as in-flight batching
with chunked context runs them; the ``tensorrt-llm`` runtime's default):

    archcost infer hf:llama-3.1-8b --hardware GPU --dtype fp8 --kv-dtype fp8
        --runtime tensorrt-llm -i I -n O --rate 1000000 --max-seqs B
        --max-batched-tokens T --ignore-memory --json --[no-]chunked-prefill

The scheduler's caps B and T are what trtllm-bench sets for the data set (``max_batch_size``
and ``max_num_tokens``; the page does not print them), by its own rule
(NVIDIA/TensorRT-LLM@a7e572fb20c694e7711f0c09f21eeaedeb45ccaa
``tensorrt_llm/bench/build/tuning.py``, ``calc_engine_setting`` and ``finetune_setting``): the
requests of ``I + O`` tokens whose KV cache fits in 0.95 of the GPU's memory less the weights
(one byte a parameter and a cache element in FP8), rounded up (to 32 under 256, 128 under
1,024, 256 above; at least 64, at most 4,096), and that batch times ``1 + I / O`` tokens
rounded up (to 256 under 4,096 and at least 2,048, to 512 under 8,192, to 1,024 above; at most
32,768). Assumptions, none read from the rows: the GPU's memory is the profile's (the rule
reads NVML's total, in GiB); the parameter count is the checkpoint's dims' (8.03 B); the FP8
checkpoint's cache in FP8; usable memory 0.9 of the GPU for archcost's own memory check.

    python benchmarks/inference_max_load.py [--cases PATH] [--only ID,...] [--jobs N]
        [--out BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

from _section import publish

from archcost.hardware.profile import load_gpu

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CASES = ROOT / "benchmarks" / "data" / "trtllm_v1.0_max_load_cases.csv"
_PROFILES = {"H100-SXM-80GB": "h100-sxm", "H200-SXM-141GB": "h200"}
SCHEDULERS = (("apart", ["--no-chunked-prefill"]), ("chunked", ["--chunked-prefill"]))


def _parameters(cfg: dict) -> int:
    """Parameters of a LLaMA-style checkpoint from its config: embeddings and head, per layer
    the q/k/v/o projections, the gated MLP and two norms, the final norm."""
    h, kv = cfg["hidden_size"], cfg["num_key_value_heads"]
    head = h // cfg["num_attention_heads"]
    layer = 2 * h * h + 2 * h * kv * head + 3 * h * cfg["intermediate_size"] + 2 * h
    return 2 * cfg["vocab_size"] * h + cfg["num_hidden_layers"] * layer + h


def _round_up(x: float, bands: tuple[tuple[float, int], ...], least: int) -> int:
    """``x`` rounded up to the step of the first band it lies below, at least ``least``."""
    step = next(step for below, step in bands if x < below)
    return max(least, step * math.ceil(x / step))


def bench_settings(row: dict, kv_fraction: float = 0.95) -> tuple[int, int]:
    """trtllm-bench's (max_batch_size, max_num_tokens) for ``row``'s data set (module
    docstring)."""
    cfg = json.loads((ROOT / "archcost" / "hf" / "configs" / "llama-3.1-8b.json").read_text())
    head = cfg["hidden_size"] // cfg["num_attention_heads"]
    per_token = 2 * cfg["num_hidden_layers"] * cfg["num_key_value_heads"] * head / 2**30
    memory = load_gpu(_PROFILES[row["gpu"]]).mem_bytes / 2**30
    cache = (memory - _parameters(cfg) / 2**30) * kv_fraction
    i, o = int(row["input_len"]), int(row["output_len"])
    requests = cache / (per_token * (i + o))
    bs = min(requests, 4096)
    tokens = min(bs * (1 + i / o), 32768)
    max_bs = _round_up(bs, ((256, 32), (1024, 128), (math.inf, 256)), 64)
    max_tokens = _round_up(tokens, ((4096, 256), (8192, 512), (math.inf, 1024)), 2048)
    return max_bs, max_tokens


def command(row: dict, extra: list[str]) -> list[str]:
    """The ``archcost infer`` run that prices ``row``."""
    max_bs, max_tokens = bench_settings(row)
    return [sys.executable, "-m", "archcost", "infer", "hf:llama-3.1-8b",
            "--hardware", _PROFILES[row["gpu"]], "--dtype", "fp8", "--kv-dtype", "fp8",
            "--runtime", "tensorrt-llm", "-i", row["input_len"], "-n", row["output_len"],
            "--rate", "1000000", "--max-seqs", str(max_bs),
            "--max-batched-tokens", str(max_tokens), "--ignore-memory", "--json", *extra]


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
             "| GPU | input | output | caps B / T | published tok/s | apart | error | chunked | "
             "error | batch apart / chunked |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    errors: dict[str, list[float]] = {name: [] for name, _ in SCHEDULERS}
    for r in rows:
        published = float(r["value"])
        cells = []
        for name, _ in SCHEDULERS:
            got = by[(r["id"], name)]["output_tokens_per_s"]
            errors[name].append(got / published - 1)
            cells += [f"{got:.0f}", f"{got / published - 1:+.1%}"]
        batches = " / ".join(f"{by[(r['id'], n)]['mean_batch']:.0f}" for n, _ in SCHEDULERS)
        caps = "{} / {}".format(*bench_settings(r))
        lines.append(f"| {_PROFILES[r['gpu']]} | {r['input_len']} | {r['output_len']} | "
                     f"{caps} | {published:.0f} | {' | '.join(cells)} | {batches} |")
    lines.append("")
    for name, errs in errors.items():
        mean = sum(abs(e) for e in errs) / len(errs)
        signed = sum(errs) / len(errs)
        lines.append(f"- {name}: mean absolute error {mean:.1%}, max "
                     f"{max(abs(e) for e in errs):.1%}, signed {signed:+.1%} ({len(errs)} rows)")
    publish(lines, args.out)


if __name__ == "__main__":
    main()
