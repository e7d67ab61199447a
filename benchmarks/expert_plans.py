"""Sanity against experts: does the planner claim to beat the plans published runs used?

For every published run archcost can express (``published_cases.csv``), the planner searches
every plan on the run's GPUs, global batch and sequence (same model, dtype and cluster, every
traced recompute policy) and the best plan's predicted step time is set against the prediction
for the published plan: ``claimed speedup = published plan's prediction / best's - 1``.
Published plans were tuned by the people who wrote the stack: a claimed speedup over 15% is a
modelling error (a plan the stack cannot run, exposed communication priced as hidden, memory
that would not fit, a pipeline bubble priced too small...), explained in BENCHMARKS.md.

The published runs are read and mapped by ``published_cases.py`` and traced and priced as
``published.py`` prices them (the case's model, runtime profile, precision, cluster and
cost-model options). Runs not searched are listed with the reason (not yet predictable, the
128k Llama 3 run, a source without a record of what its trainer could run).

    python benchmarks/expert_plans.py [--only ID,...] [--all] [--cache DIR] [--out FILE]

Without ``--all`` or ``--only`` a subset runs (one run per source and size class, a few
minutes on 2 cores); ``--all`` takes every expressible run (tens of minutes: tracing).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import re
import time
from datetime import date

from _section import publish
from published import DEFAULT_CASES, cost_model, fp8_ready, pending_reason, predict, workload
from published_cases import SOURCES, Case, load_cases

SUBSET = ("K22B_sel", "K175B_sel", "N21_1.7B", "N21_39B", "MC24_7.1B", "MC24_70B",
          "TT_H100_L31_8B_8")
CLAIM_LIMIT = 0.15  # issue 14: an expert-tuned plan leaves little headroom


# What each trainer could run when the run was published: a plan outside it is no plan an
# expert could have picked. Constraints of ``archcost plan --constraint``.
STACKS = {
    # Megatron-LM of 2021-22 (Narayanan et al. SC'21; Korthikanti et al. 2022): data parallel
    # by all-reduce (the distributed optimizer came later: Megatron-LM
    # --use-distributed-optimizer, 2022), no context parallelism (Megatron-Core 0.5, 2024);
    # sequence parallelism is Korthikanti et al. 2022's own contribution, absent from SC'21.
    "megatron-2021": ("zero=0", "cp=1", "ep=1", "sp=0"),
    "megatron-2022": ("zero=0", "cp=1", "ep=1"),
    # Megatron-Core r0.8.0 (2024): distributed optimizer (ZeRO-1) but no ZeRO-2/3 (Megatron
    # FSDP arrived in Megatron-Core 0.11, 2025); context parallel available.
    "megatron-core-0.8": ("zero<=1", "ep=1"),
    # torchtitan 9dec370 (Dec 2024): FSDP2 (ZeRO-3; ZeRO-2-like without reshard), HSDP, TP,
    # PP and CP (parallel_dims.py): every dense layout archcost enumerates.
    "torchtitan": ("ep=1",),
    # NeMo 24.07 and Megatron-Bridge 25.11 run Megatron-Core: the distributed optimizer (ZeRO-1)
    # as their recipes do (Megatron FSDP exists from Megatron-Core 0.11 but is not what they run)
    "megatron-core-nemo": ("zero<=1",),
}
# the stack of each source of ``published_cases.py`` (SOURCES); a source without one is not
# searched
SOURCE_STACK = {"K22": "megatron-2022", "N21": "megatron-2021", "MC24": "megatron-core-0.8",
                "TT": "torchtitan", "NEMO": "megatron-core-nemo", "MB": "megatron-core-nemo"}
NOT_ATTEMPTED = {
    "L3": "405B at 131,072 tokens on 16,384 GPUs not attempted (three traces at 128k, a 16k-GPU "
          "search)",
    "MB_DSV3_bf16": "DeepSeek-V3: a search over expert parallelism too on 256 GPUs, not "
                    "attempted here (three traces of the 671B model per recompute policy)",
}


def skip_reason(case: Case) -> str:
    """Why the case is not searched ("" when it is)."""
    why = (pending_reason(case) or NOT_ATTEMPTED.get(case.id, "")
           or NOT_ATTEMPTED.get(case.source, ""))
    if not why and case.source not in SOURCE_STACK:
        why = f"no record of what {SOURCES[case.source][0]}'s trainer could run"
    return why


def _recompute(case: Case) -> str:
    return re.search(r"recompute=(\w+)", case.plan)[1]


def _parts(est: dict) -> dict[str, float]:
    c = est["components_s"]
    return {"compute": c["compute"] + c["recompute"], "bubble": c["bubble"],
            "comm": sum(c[k] for k in ("tp_comm", "pp_comm", "dp_comm", "cp_comm", "ep_comm")),
            "other": est["step_time_s"] - c["compute"] - c["recompute"] - c["bubble"]
            - sum(c[k] for k in ("tp_comm", "pp_comm", "dp_comm", "cp_comm", "ep_comm"))}


def run_case(case: Case, cache_dir: str | None, memo: dict) -> dict:
    from archcost.options import Recompute
    from archcost.plan.evaluate import estimate_plan
    from archcost.plan.search import search
    from archcost.plan.space import parse_plan

    case = fp8_ready(case)
    # the published plan as benchmarks/published.py prices it (an unpublished V or micro-batch
    # size: its fastest)
    case = dataclasses.replace(case, plan=predict(case, cache_dir, memo)["plan"],
                               vpp_unpublished=False, mbs_unpublished=False)
    cm = cost_model(case, workload(case, tuple(Recompute), cache_dir, memo))
    plan = parse_plan(case.plan)
    pub, _ = estimate_plan(plan, cm, with_schedule=False)
    out = {"published": pub}
    t0 = time.perf_counter()
    # free: every plan archcost prices; stack: what the trainer could run, the published
    # recompute policy held (a study's fixed axis: Korthikanti 2022 compares policies, SC'21
    # and torchtitan's tables keep one for every row)
    for tag, kw in (("free", {}),
                    ("stack", dict(constraints=STACKS[SOURCE_STACK[case.source]],
                                   fixed=[f"recompute={_recompute(case)}"]))):
        res = search(cm, [case.gpus], plan.gbs, top=1, pareto_max=0, **kw)
        out[tag] = (res["plans"][0]["plan"], res["plans"][0]["estimate"]) if res["plans"] \
            else None
    out["search_s"] = time.perf_counter() - t0
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=str(DEFAULT_CASES))
    ap.add_argument("--only", default=None, help="comma list of case ids")
    ap.add_argument("--all", action="store_true", help="every expressible run")
    ap.add_argument("--cache", default=None, help="keep traced workloads in this folder")
    ap.add_argument("--out", default=None, help="append the result section to this file")
    args = ap.parse_args()
    cases = load_cases(args.cases)
    if args.only:
        keep = set(args.only.split(","))
        cases = [c for c in cases if c.id in keep]
    elif not args.all:
        cases = [c for c in cases if c.id in SUBSET or skip_reason(c)]
    memo: dict = {}
    rows = []
    t_all = time.perf_counter()
    for c in cases:
        if skip_reason(c):
            rows.append((c, None))
            print(f"{c.id:18s} not searched: {skip_reason(c)}", flush=True)
            continue
        r = run_case(c, args.cache, memo)
        rows.append((c, r))
        pub = r["published"]["step_time_s"]
        line = f"{c.id:18s} measured {c.step_s:.3f} s published plan {pub:.3f} s"
        for tag in ("free", "stack"):
            if r[tag] is None:
                line += f"; {tag}: no plan fits"
            else:
                best = r[tag][1]["step_time_s"]
                line += f"; {tag} {r[tag][0]} {best:.3f} s claimed {100 * (pub / best - 1):+.1f}%"
        print(line + f" ({r['search_s']:.0f} s)", flush=True)
    wall = time.perf_counter() - t_all
    publish(report(rows, wall, args), args.out)


def _gain(pub: dict, best: dict) -> str:
    """The step-time parts the best plan saves (or adds) over the published plan."""
    a, b = _parts(pub), _parts(best)
    return ", ".join(f"{k} {b[k] - a[k]:+.2g} s" for k in a
                     if abs(a[k] - b[k]) > 0.02 * pub["step_time_s"]) or "-"


def report(rows, wall: float, args) -> list[str]:
    cmd = "python benchmarks/expert_plans.py" + (" --all" if args.all else "") + (
        f" --only {args.only}" if args.only else "")
    lines = [f"### best plan against the published plan ({date.today().isoformat()}, "
             f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores)", "",
             f"Command: `{cmd}`", "",
             "Claimed speedup = the published plan's predicted step / the best plan's - 1. "
             "*Free*: every plan archcost prices; *stack*: plans the trainer of the run could "
             "run, recompute held at the published policy.", "",
             "| case | GPUs | published plan | measured s | predicted s | its peak GiB "
             "| best free plan | claimed | best stack plan | claimed | where the stack plan "
             "gains |", "|---|---:|---|---:|---:|---:|---|---:|---|---:|---|"]
    claims: dict[str, list[float]] = {"free": [], "stack": []}
    for c, r in rows:
        if r is None:
            lines.append(f"| {c.id} | {c.gpus} | - | - | - | - | not searched: {skip_reason(c)} "
                         "| | | | |")
            continue
        pub = r["published"]
        cells = []
        for tag in ("free", "stack"):
            if r[tag] is None:
                cells += ["no plan fits", "-"]
                continue
            claim = pub["step_time_s"] / r[tag][1]["step_time_s"] - 1
            claims[tag].append(claim)
            cells += [f"`{_short(r[tag][0])}`", f"{100 * claim:+.1f}%"]
        gain = _gain(pub, r["stack"][1]) if r["stack"] else "-"
        mem = pub["memory_bytes"]
        peak = f"{mem['peak_per_gpu'] / 2**30:.0f}" + ("" if pub["fits"] else
                                                       f" (over {mem['usable_per_gpu'] / 2**30:.0f})")
        lines.append(f"| {c.id} | {c.gpus} | `{_short(c.plan)}` | {c.step_s:.3g} | "
                     f"{pub['step_time_s']:.3g} | {peak} | " + " | ".join(cells) + f" | {gain} |")
    lines.append("")
    for tag, xs in claims.items():
        if xs:
            over = sum(x > CLAIM_LIMIT for x in xs)
            lines.append(f"- {tag}: claimed speedup mean {100 * sum(xs) / len(xs):+.1f}%, max "
                         f"{100 * max(xs):+.1f}% over {len(xs)} runs; {over} over "
                         f"{100 * CLAIM_LIMIT:.0f}%.")
    lines += ["", f"{wall:.0f} s wall including tracing."]
    return lines


_DEFAULTS = {"cp": "1", "ep": "1", "zero": "0", "sp": "0", "vpp": "1", "schedule": "1f1b",
             "offload": "none", "placement": "default"}


def _short(plan: str) -> str:
    """A plan's text without the keys at their defaults (nor gbs, the same for both)."""
    keep = []
    for kv in plan.split(","):
        k, _, v = kv.partition("=")
        if k == "gbs" or _DEFAULTS.get(k) == v:
            continue
        keep.append(kv)
    return ",".join(keep)


if __name__ == "__main__":
    main()
