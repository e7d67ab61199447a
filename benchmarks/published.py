"""Fidelity benchmark: predict every published large-scale run with ``archcost estimate``.

Reads the cases (Korthikanti et al. 2022 Table 5: step time; Narayanan et al. SC'21 Table 1:
TFLOP/s per GPU counted with the 96·B·s·l·h²·(1 + s/6h + V/16lh) formula), builds each GPT
with ``models/gpt2.py`` (explicit attention with dropout 0.1, tied embeddings, as Megatron-LM
ran them), evaluates the published plan on ``dgx-a100-hdr`` sized to the run and reports the
error per case, the mean absolute error and the maximum.

Plan mapping: ``selective+SP`` is recompute=selective with sp=1; ``full`` is recompute=full with
sp=0; vpp > 1 is the interleaved schedule; stages are uniform (Megatron's layers / stages).

    python benchmarks/published.py [--cases PATH] [--out BENCHMARKS.md] [--no-overlap-dp]
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import sys
import time
from datetime import date
from pathlib import Path

from _section import publish

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_CASES = ROOT.parent / "shared" / "data" / "published_cases.csv"

_PRECISION = {"fp16": "fp16-mixed", "bf16": "bf16-mixed"}


def narayanan_flops(gbs: int, s: int, l: int, h: int, V: int) -> float:  # noqa: E741
    """Model FLOPs per step with full recompute, Narayanan et al. SC'21 Eq. (3)."""
    return 96 * gbs * s * l * h * h * (1 + s / (6 * h) + V / (16 * l * h))


def run_case(row: dict[str, str], overlap_dp: bool, cache: dict, uniform: bool = True,
             flash: bool = False, dropout: float = 0.1) -> dict:
    from archcost.hardware.profile import load_cluster
    from archcost.loader import load_model_file
    from archcost.options import Recompute
    from archcost.plan.costmodel import CostModel
    from archcost.plan.evaluate import estimate_plan
    from archcost.plan.space import Plan, Schedule
    from archcost.plan.workload import trace_workload
    from archcost.trace.precision import parse_precision

    layers, hidden, heads = int(row["layers"]), int(row["hidden"]), int(row["heads"])
    ffn, vocab, seq = int(row["ffn"]), int(row["vocab"]), int(row["seq"])
    recompute = Recompute.SELECTIVE if row["recompute"].startswith("selective") else \
        Recompute.FULL if row["recompute"] == "full" else Recompute.NONE
    sp = "SP" in row["recompute"]
    precision = _PRECISION[row["precision"]]
    key = (layers, hidden, heads, ffn, vocab, seq, precision, recompute, flash, dropout)
    if key not in cache:
        spec = load_model_file(str(ROOT / "models" / "gpt2.py"), {
            "layers": layers, "hidden": hidden, "heads": heads, "ffn": ffn, "vocab": vocab,
            "dropout": dropout, "flash": flash})
        t0 = time.perf_counter()
        cache[key] = (trace_workload(spec, seq, parse_precision(precision), "adam",
                                     (recompute,)), time.perf_counter() - t0)
    workload, trace_s = cache[key]
    vpp = int(row["vpp"])
    plan = Plan(dp=int(row["dp"]), tp=int(row["tp"]), pp=int(row["pp"]), cp=int(row["cp"]),
                ep=int(row["ep"]), sp=sp, vpp=vpp, mbs=int(row["mbs"]), gbs=int(row["gbs"]),
                recompute=recompute,
                schedule=Schedule.INTERLEAVED if vpp > 1 else Schedule.ONE_F_ONE_B)
    cluster = load_cluster("dgx-a100-hdr", plan.gpus)
    cm = CostModel(workload, cluster, overlap_dp=overlap_dp, uniform_stages=uniform)
    t0 = time.perf_counter()
    est, _ = estimate_plan(plan, cm, with_schedule=False)
    eval_s = time.perf_counter() - t0
    step = est["step_time_s"]
    measured = float(row["value"])
    if row["metric"] == "step_time_s":
        predicted = step
    else:  # tflops_per_gpu, Narayanan's formula over the predicted step
        predicted = narayanan_flops(plan.gbs, seq, layers, hidden, vocab) / (
            step * plan.gpus) / 1e12
    return {
        "id": row["id"], "model": row["model"], "metric": row["metric"], "plan": plan,
        "measured": measured, "predicted": predicted, "error": predicted / measured - 1,
        "mfu": est["mfu"], "bubble": est["components_s"]["bubble"] / step,
        "exposed_comm": sum(est["components_s"][k] for k in ("tp_comm", "pp_comm", "dp_comm",
                                                             "cp_comm", "ep_comm")) / step,
        "fits": est["fits"], "peak_gib": est["memory_bytes"]["peak_per_gpu"] / 2**30,
        "trace_s": trace_s, "eval_s": eval_s,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", default=str(DEFAULT_CASES))
    ap.add_argument("--out", default=None, help="append the result table to this file")
    ap.add_argument("--no-overlap-dp", action="store_true")
    ap.add_argument("--only", default=None, help="comma list of case ids")
    ap.add_argument("--variants", action="store_true",
                    help="also report mean/max error under alternative modelling choices")
    args = ap.parse_args()
    with open(args.cases, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if args.only:
        keep = set(args.only.split(","))
        rows = [r for r in rows if r["id"] in keep]
    cache: dict = {}
    results = []
    t_all = time.perf_counter()
    for row in rows:
        r = run_case(row, not args.no_overlap_dp, cache)
        results.append(r)
        print(f"{r['id']:12s} {r['metric']:15s} measured {r['measured']:8.2f} predicted "
              f"{r['predicted']:8.2f} error {100 * r['error']:+6.1f}%  bubble "
              f"{100 * r['bubble']:4.1f}% comm {100 * r['exposed_comm']:4.1f}% "
              f"peak {r['peak_gib']:5.1f} GiB", flush=True)
    wall = time.perf_counter() - t_all
    errs = [abs(r["error"]) for r in results]
    mean, worst = sum(errs) / len(errs), max(errs)
    lines = [
        f"### published runs ({date.today().isoformat()}, {platform.machine()}, "
        f"{len(os.sched_getaffinity(0))} cores, dgx-a100-hdr, overlap_dp="
        f"{not args.no_overlap_dp})",
        "",
        "Command: `python benchmarks/published.py" + (" --no-overlap-dp" if args.no_overlap_dp
                                                      else "") + "`",
        "",
        "| case | model | plan | metric | measured | predicted | error | bubble | exposed comm "
        "| peak GiB/GPU |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        p = r["plan"]
        plan = (f"tp{p.tp} pp{p.pp} dp{p.dp}" + (f" v{p.vpp}" if p.vpp > 1 else "")
                + f" mbs{p.mbs} gbs{p.gbs} {p.recompute.value}" + (" sp" if p.sp else ""))
        lines.append(f"| {r['id']} | {r['model']} | {plan} | {r['metric']} | {r['measured']:g} "
                     f"| {r['predicted']:.3g} | {100 * r['error']:+.1f}% | "
                     f"{100 * r['bubble']:.1f}% | {100 * r['exposed_comm']:.1f}% | "
                     f"{r['peak_gib']:.1f} |")
    lines += ["", f"Mean absolute error **{100 * mean:.1f}%**, max **{100 * worst:.1f}%** over "
              f"{len(results)} cases (target: mean <= 10%, max <= 20%); {wall:.0f} s wall "
              "including tracing."]
    if args.variants:
        lines += ["", "Which modelling choices move it (mean / max absolute error over the same "
                  "cases):", "", "| variant | mean | max |", "|---|---:|---:|",
                  f"| as above | {100 * mean:.1f}% | {100 * worst:.1f}% |"]
        variants = [
            ("data-parallel collectives not overlapped (--no-overlap-dp)",
             dict(overlap_dp=args.no_overlap_dp)),
            ("pipeline stages balanced on traced costs instead of Megatron's uniform split",
             dict(uniform=False)),
            ("flash attention (SDPA) instead of explicit attention", dict(flash=True)),
            ("no dropout", dict(dropout=0.0)),
        ]
        for label, kw in variants:
            errs_v = []
            for row in rows:
                opts = dict(overlap_dp=not args.no_overlap_dp, uniform=True, flash=False,
                            dropout=0.1)
                opts.update(kw)
                r = run_case(row, opts.pop("overlap_dp"), cache, **opts)
                errs_v.append(abs(r["error"]))
            lines.append(f"| {label} | {100 * sum(errs_v) / len(errs_v):.1f}% | "
                         f"{100 * max(errs_v):.1f}% |")
            print(lines[-1], flush=True)
    publish(lines, args.out)


if __name__ == "__main__":
    main()
