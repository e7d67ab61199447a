"""Terminal rendering of plan searches and plan estimates (display only, no computation), laid
out for the console's width by ``layout``; numbers by ``report.fmt``."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from archcost.cli.layout import Col, Grid, say, say_parts
from archcost.report import fmt
from archcost.report.tables import short_plan

__all__ = ["render_search", "render_plan_estimate"]

_PLAN_LEGEND = ("plans name only the keys away from their defaults (cp=1, ep=1, zero=0, sp=0, "
                "vpp=1, schedule=1f1b, recompute=none, offload=none) and leave out gbs; "
                "interleaved: interleaved-1f1b")
_TABLE_LEGEND = ("tok/s: tokens per second; mem/GPU: peak memory of the fullest GPU; bubble: "
                 "pipeline idle time; comm: exposed tp, cp, ep, pp and dp communication")
_COMM = ("tp_comm", "cp_comm", "ep_comm", "pp_comm", "dp_comm")


def _header(doc: dict[str, Any]) -> str:
    w, hw = doc["workload"], doc["hardware"]
    runtime = doc.get("runtime", {}).get("name", "eager")
    return (f"{doc['model']['name']}  {fmt.si(w['params'])} params, {w['layers']} layers, "
            f"s={w['seq_len']} {w['precision']}"
            + (f" ({w['fp8_recipe']})" if w.get("fp8_recipe") else "")
            + (f", {gather} all-gather" if (gather := doc.get("assumptions", {}).get(
                "param_all_gather")) else "")
            + f"  on {hw['cluster']} ({hw['gpu']}), runtime {runtime}")


def _components(est: dict[str, Any]) -> Grid:
    g = Grid("where the step goes (critical pipeline rank)",
             [Col("component", "left", key=True), Col("time"), Col("share")])
    step = est["step_time_s"]
    for name, t in est["components_s"].items():
        if t > 0:
            g.row(name.replace("_", " "), fmt.seconds(t), fmt.percent(t / step))
    g.row("step", fmt.seconds(step), "100%", style="bold")
    return g


def _memory(est: dict[str, Any]) -> Grid:
    mem = est["memory_bytes"]
    g = Grid(f"memory per GPU (pipeline rank {mem['peak_rank']}, the fullest)",
             [Col("part", "left", "words", key=True), Col("bytes", wrap="words")])
    for part in ("weights", "gradients", "optimizer_states", "activations", "transient"):
        g.row(part.replace("_", " "), fmt.nbytes(mem[part]))
    g.row(f"peak / usable of {fmt.nbytes(mem['capacity_per_gpu'])} "
          f"({'fits' if est['fits'] else 'does NOT fit'})",
          f"{fmt.nbytes(mem['peak_per_gpu'])} / {fmt.nbytes(mem['usable_per_gpu'])}",
          style="bold green" if est["fits"] else "bold red")
    return g


def _comm(est: dict[str, Any], top: int = 8) -> Grid:
    g = Grid("collectives per step (critical rank)",
             [Col("group", "left", key=True), Col("collective", "left"), Col("size"),
              Col("ranks"), Col("levels", "left", "list"), Col("each"), Col("per step")],
             notes=["size: bytes per GPU; each: time of one"])
    for c in est["comm"][:top]:
        g.row(c["group"], c["collective"], fmt.nbytes(c["bytes"]), str(c["ranks"]),
              ",".join(c["levels"]), fmt.seconds(c["seconds_each"]), fmt.number(c["per_step"]))
    return g


def _summary(est: dict[str, Any]) -> list[str]:
    econ = est.get("economics") or {}
    parts = [f"step {fmt.seconds(est['step_time_s'])}",
             f"{fmt.si(est['tokens_per_s'])} tokens/s",
             f"MFU {fmt.percent(est['mfu'])}", f"HFU {fmt.percent(est['hfu'])}",
             f"peak {fmt.nbytes(est['memory_bytes']['peak_per_gpu'])}/GPU"]
    if econ.get("tokens_per_joule"):
        parts.append(f"{fmt.si(econ['tokens_per_joule'])} tokens/J")
    if econ.get("usd_per_million_tokens") is not None:
        parts.append(f"{fmt.usd(econ['usd_per_million_tokens'])}/M tokens")
    p = est["pipeline"]
    if p["stages"] > 1:
        layers = p["layers_per_stage"]
        shape = (f"{len(layers)} stages of {layers[0]} layers" if len(set(layers)) == 1
                 else f"stages of {','.join(map(str, layers))} layers")
        parts.append(f"bubble {fmt.percent(p['bubble_fraction'])} ({p['partition']}: {shape})")
    return parts


def render_plan_estimate(console: Console, doc: dict[str, Any]) -> None:
    est = doc["estimate"]
    say(console, _header(doc))
    say(console, f"plan {doc['plan']} ({est['plan']['gpus']} GPUs, "
                 f"{est['plan']['num_microbatches']} micro-batches per replica)", indent=5)
    say_parts(console, _summary(est))
    say(console, f"MFU/HFU against {fmt.si(est['peak_flops_per_s'], 'FLOP/s')} dense per GPU",
        style="dim")
    _components(est).print(console)
    _memory(est).print(console)
    if est["comm"]:
        _comm(est).print(console)


def _plans(doc: dict[str, Any]) -> Grid:
    g = Grid("best plans", [Col("#", key=True), Col("plan", "left", "list", below=True),
                            Col("GPUs"), Col("step"), Col("tok/s"), Col("MFU"), Col("mem/GPU"),
                            Col("bubble"), Col("comm")],
             notes=[_TABLE_LEGEND, _PLAN_LEGEND])
    for row in doc["plans"]:
        est = row["estimate"]
        c = est["components_s"]
        g.row(str(row["rank"]), short_plan(row["plan"]), str(est["plan"]["gpus"]),
              fmt.seconds(est["step_time_s"]), fmt.si(est["tokens_per_s"]),
              fmt.percent(est["mfu"]), fmt.nbytes(est["memory_bytes"]["peak_per_gpu"]),
              fmt.seconds(c["bubble"]), fmt.seconds(sum(c[k] for k in _COMM)))
    return g


def _pareto(doc: dict[str, Any]) -> Grid:
    g = Grid("Pareto front: step time vs memory per GPU vs GPUs",
             [Col("plan", "left", "list"), Col("GPUs"), Col("step"), Col("mem/GPU"),
              Col("MFU")])
    for p in doc["pareto"][:10]:
        g.row(short_plan(p["plan"]), str(p["gpus"]), fmt.seconds(p["step_time_s"]),
              fmt.nbytes(p["peak_per_gpu_bytes"]), fmt.percent(p["mfu"]))
    return g


def render_search(console: Console, doc: dict[str, Any]) -> None:
    say(console, _header(doc))
    s = doc["search"]
    say(console, f"{s['plans_valid']:,} valid plans scored in {fmt.seconds(s['score_seconds'])} "
                 f"({fmt.si(s['plans_per_second'])} plans/s), {s['plans_fitting']:,} fit in "
                 f"memory; best {s['plans_reranked']} re-ranked with the simulated pipeline; "
                 f"gbs={doc['gbs']} sequences; objective {doc['objective']}")
    if not doc["plans"]:
        closest = doc.get("closest")
        msg = "no plan fits in memory"
        if closest:
            msg += (f"; the smallest needs {fmt.nbytes(closest['peak_per_gpu_bytes'])} per GPU "
                    f"of {fmt.nbytes(closest['capacity_per_gpu_bytes'])} ({closest['plan']}): "
                    "add GPUs, allow recompute or a smaller micro-batch")
        say(console, msg, style="bold red")
        return
    _plans(doc).print(console)
    best = doc["plans"][0]["estimate"]
    say(console, f"best plan: {doc['plans'][0]['plan']}", indent=11)
    first, *rest = _summary(best)
    say_parts(console, [f"best: {first}", *rest])
    ranking = doc.get("ranking") or {}
    if ranking.get("least_objective_plan") not in (None, doc["plans"][0]["plan"]):
        gap = doc["plans"][0]["objective_value"] / ranking["least_objective_value"] - 1
        what = {"time": "step time"}.get(doc["objective"], doc["objective"])
        say(console, f"chosen over {short_plan(ranking['least_objective_plan'])} "
                     f"({100 * gap:.2f}% lower {what}): within "
                     f"{100 * ranking['objective_tie']:g}% of the least {what}, plans go to "
                     "more memory headroom, then fewer moving parts", style="dim")
    _components(best).print(console)
    _memory(best).print(console)
    if doc["pareto"]:
        _pareto(doc).print(console)
