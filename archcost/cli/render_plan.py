"""Rich rendering of plan searches and plan estimates (display only, no computation)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from archcost.cli.render import _seconds, si

__all__ = ["render_search", "render_plan_estimate"]

_GIB = 2**30


def _gib(b: float) -> str:
    return f"{b / _GIB:.1f} GiB" if b >= 0.1 * _GIB else si(b, "B", 1024)


_DEFAULTS = {"ep": "1", "zero": "0", "sp": "0", "vpp": "1", "schedule": "1f1b",
             "recompute": "none", "offload": "none"}


def short_plan(text: str) -> str:
    """``dp=2,tp=8,pp=4,cp=1,...`` without the keys at their defaults (and gbs): for tables."""
    keep = []
    for item in text.split(","):
        key, _, value = item.partition("=")
        if key == "gbs" or _DEFAULTS.get(key) == value or (key == "cp" and value == "1"):
            continue
        keep.append(f"{key}={'interleaved' if value == 'interleaved-1f1b' else value}")
    return ",".join(keep)


def _header(doc: dict[str, Any]) -> str:
    w, hw = doc["workload"], doc["hardware"]
    runtime = doc.get("runtime", {}).get("name", "eager")
    return (f"{doc['model']['name']}  {si(w['params'])} params, {w['layers']} layers, "
            f"s={w['seq_len']} {w['precision']}  on {hw['cluster']} ({hw['gpu']}), "
            f"runtime {runtime}")


def _components(est: dict[str, Any]) -> Table:
    tab = Table(title="where the step goes (critical pipeline rank)", title_justify="left")
    tab.add_column("component")
    tab.add_column("seconds", justify="right")
    tab.add_column("share", justify="right")
    step = est["step_time_s"]
    for name, t in est["components_s"].items():
        if t <= 0:
            continue
        tab.add_row(name.replace("_", " "), _seconds(t), f"{100 * t / step:.1f}%")
    tab.add_row("step", _seconds(step), "100%", style="bold")
    return tab


def _memory(est: dict[str, Any]) -> Table:
    mem = est["memory_bytes"]
    tab = Table(title=f"memory per GPU (pipeline rank {mem['peak_rank']}, the fullest)",
                title_justify="left")
    tab.add_column("part")
    tab.add_column("bytes", justify="right")
    for part in ("weights", "gradients", "optimizer_states", "activations", "transient"):
        tab.add_row(part.replace("_", " "), _gib(mem[part]))
    style = "bold green" if est["fits"] else "bold red"
    tab.add_row(f"peak / usable of {_gib(mem['capacity_per_gpu'])} "
                f"({'fits' if est['fits'] else 'does NOT fit'})",
                f"{_gib(mem['peak_per_gpu'])} / {_gib(mem['usable_per_gpu'])}", style=style)
    return tab


def _comm(est: dict[str, Any], top: int = 8) -> Table:
    tab = Table(title="collectives per step (critical rank)", title_justify="left")
    for col in ("group", "collective", "size", "ranks", "levels", "each", "per step"):
        tab.add_column(col, justify="right" if col in ("size", "ranks", "each", "per step")
                       else "left")
    for c in est["comm"][:top]:
        tab.add_row(c["group"], c["collective"], si(c["bytes"], "B", 1024), str(c["ranks"]),
                    ",".join(c["levels"]), _seconds(c["seconds_each"]),
                    f"{c['per_step']:g}")
    return tab


def _summary(est: dict[str, Any]) -> str:
    econ = est.get("economics") or {}
    parts = [f"step {_seconds(est['step_time_s'])}", f"{si(est['tokens_per_s'])} tokens/s",
             f"MFU {100 * est['mfu']:.1f}%", f"HFU {100 * est['hfu']:.1f}%",
             f"peak {_gib(est['memory_bytes']['peak_per_gpu'])}/GPU"]
    if econ.get("tokens_per_joule"):
        parts.append(f"{econ['tokens_per_joule']:.3g} tokens/J")
    if econ.get("usd_per_million_tokens") is not None:
        parts.append(f"${econ['usd_per_million_tokens']:.3g}/M tokens")
    p = est["pipeline"]
    if p["stages"] > 1:
        parts.append(f"bubble {100 * p['bubble_fraction']:.1f}% ({p['partition']} stages "
                     f"{p['layers_per_stage']})")
    return "  ".join(parts)


def render_plan_estimate(console: Console, doc: dict[str, Any]) -> None:
    est = doc["estimate"]
    console.print(_header(doc))
    console.print(f"plan {doc['plan']}  ({est['plan']['gpus']} GPUs, "
                  f"{est['plan']['num_microbatches']} micro-batches per replica)")
    console.print(_summary(est))
    console.print(f"MFU/HFU against {si(est['peak_flops_per_s'], 'FLOP/s')} dense per GPU",
                  style="dim")
    console.print(_components(est))
    console.print(_memory(est))
    if est["comm"]:
        console.print(_comm(est))


def render_search(console: Console, doc: dict[str, Any]) -> None:
    console.print(_header(doc))
    s = doc["search"]
    console.print(f"{s['plans_valid']:,} valid plans scored in {s['score_seconds']:.2f} s "
                  f"({si(s['plans_per_second'])} plans/s), {s['plans_fitting']:,} fit in "
                  f"memory; best {s['plans_reranked']} re-ranked with the simulated pipeline; "
                  f"gbs={doc['gbs']} sequences; objective {doc['objective']}")
    if not doc["plans"]:
        closest = doc.get("closest")
        msg = "no plan fits in memory"
        if closest:
            msg += (f"; the smallest needs {_gib(closest['peak_per_gpu_bytes'])} per GPU of "
                    f"{_gib(closest['capacity_per_gpu_bytes'])} ({closest['plan']}): add GPUs, "
                    "allow recompute or a smaller micro-batch")
        console.print(msg, style="bold red")
        return
    tab = Table(title="best plans", title_justify="left")
    for col in ("#", "plan", "GPUs", "step", "tok/s", "MFU", "mem/GPU", "bubble", "comm"):
        tab.add_column(col, justify="left" if col == "plan" else "right",
                       overflow="fold" if col == "plan" else "ellipsis", no_wrap=col != "plan",
                       min_width=24 if col == "plan" else None)
    for row in doc["plans"]:
        est = row["estimate"]
        c = est["components_s"]
        comm = sum(c[k] for k in ("tp_comm", "cp_comm", "ep_comm", "pp_comm", "dp_comm"))
        tab.add_row(str(row["rank"]), short_plan(row["plan"]), str(est["plan"]["gpus"]),
                    _seconds(est["step_time_s"]), si(est["tokens_per_s"]),
                    f"{100 * est['mfu']:.1f}%", _gib(est["memory_bytes"]["peak_per_gpu"]),
                    _seconds(c["bubble"]), _seconds(comm))
    console.print(tab)
    best = doc["plans"][0]["estimate"]
    console.print(f"best plan: {doc['plans'][0]['plan']}", soft_wrap=True)
    console.print(f"best: {_summary(best)}")
    console.print(_components(best))
    console.print(_memory(best))
    if doc["pareto"]:
        tab = Table(title="Pareto front: step time vs memory per GPU vs GPUs", title_justify="left")
        for col in ("plan", "GPUs", "step", "mem/GPU", "MFU"):
            tab.add_column(col, justify="left" if col == "plan" else "right",
                       overflow="fold" if col == "plan" else "ellipsis", no_wrap=col != "plan")
        for p in doc["pareto"][:10]:
            tab.add_row(short_plan(p["plan"]), str(p["gpus"]), _seconds(p["step_time_s"]),
                        _gib(p["peak_per_gpu_bytes"]), f"{100 * p['mfu']:.1f}%")
        console.print(tab)
