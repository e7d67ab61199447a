"""Which plots a document gets, and their data (drawn by ``svg``):

- analysis: roofline of the op classes (with ``--hardware``), memory breakdown, time (or FLOPs)
  by phase, by module and by op class
- plan: Pareto front of the searched plans, step time of the top plans by component, the best
  plan's memory per GPU by pipeline rank and its pipeline timeline
- estimate: step time by component, memory per GPU by pipeline rank, pipeline timeline
- validation: predicted against measured, times and bytes

A plot is ``(id, svg_figure)``; ids are stable (tests and anchors use them).
"""

from __future__ import annotations

import math
from typing import Any

from archcost.report import fmt
from archcost.report.document import chosen_estimate
from archcost.report.svg import PALETTE, Axis, Line, Point, gantt_chart, hbar_chart, scatter_chart
from archcost.report.tables import short_plan
from archcost.report.timeline import Timeline, from_estimate

__all__ = ["plots", "TIMELINE_COLORS", "COMPONENT_COLORS"]

TIMELINE_COLORS = {"forward": "#4e79a7", "backward": "#59a14f", "compute": "#76b7b2",
                   "bubble": "#cfcfcf", "pp send": "#f28e2b", "dp collectives": "#e15759",
                   "optimizer": "#b07aa1"}
COMPONENT_COLORS = {"compute": "#4e79a7", "recompute": "#76b7b2", "tp_comm": "#f28e2b",
                    "cp_comm": "#edc948", "ep_comm": "#9c755f", "pp_comm": "#ff9da7",
                    "bubble": "#cfcfcf", "dp_comm": "#e15759", "optimizer": "#b07aa1"}
_BOUND_COLORS = {"compute": "#4e79a7", "memory": "#f28e2b", "none": "#9c9c9c"}


def _n(v) -> float | None:
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
        return float(v)
    return None


def _seconds_axis(label: str = "time (s)") -> Axis:
    return Axis(label, fmt.seconds)


def _bytes_axis(label: str = "memory per GPU (bytes)") -> Axis:
    return Axis(label, fmt.nbytes, binary=True)


# ---------------------------------------------------------------- analysis

def _roofline(est: dict[str, Any], model: str) -> str | None:
    classes = [c for c in est.get("op_classes") or [] if isinstance(c, dict)]
    peak = _n(est.get("peak_flops_per_s"))
    bw = _n((est.get("roofline") or {}).get("mem_bw_bytes_per_s"))
    if not classes or not peak or not bw:
        return None
    ridge = peak / bw
    drawn, skipped = [], []
    for c in classes:
        x, y = _n(c.get("arithmetic_intensity")), _n(c.get("achieved_flops_per_s"))
        (drawn if x and y and x > 0 and y > 0 else skipped).append(c)
    xs = [float(c["arithmetic_intensity"]) for c in drawn] + [ridge]
    ys = [float(c["achieved_flops_per_s"]) for c in drawn]
    xlo, xhi = min(xs) / 4, max(xs) * 4
    ylo = min(ys + [peak]) / 4
    xlo = max(xlo, ylo / bw / 4)
    points = []
    for c in drawn:
        share = _n(c.get("share")) or 0.0
        bound = str(c.get("bound", "none"))
        tip = (f"{c.get('class')}: {c['arithmetic_intensity']:.3g} FLOP/B, "
               f"{fmt.si(c['achieved_flops_per_s'], 'FLOP/s')} achieved, "
               f"{fmt.seconds(c.get('seconds'))} ({fmt.percent(share)} of the step), {bound}-bound")
        points.append(Point(float(c["arithmetic_intensity"]), float(c["achieved_flops_per_s"]),
                            str(c.get("class")), _BOUND_COLORS.get(bound, "#9c9c9c"),
                            4.0 + 10.0 * math.sqrt(max(share, 0.0)), tip, show=True))
    lines = [Line([xlo, ridge], [bw * xlo, peak], f"memory roof {fmt.si(bw, 'B/s')}", "#555",
                  "6,3"),
             Line([ridge, xhi], [peak, peak], f"compute roof {fmt.si(peak, 'FLOP/s')}", "#111")]
    bounds = list(dict.fromkeys(str(c.get("bound", "none")) for c in drawn))
    sub = (f"op classes on {est.get('hardware', '?')}; point area ~ share of step time; "
           f"ridge at {ridge:.3g} FLOP/B")
    if skipped:
        sub += f"; not drawn (no FLOPs): {', '.join(str(c.get('class')) for c in skipped)}"
    return scatter_chart(
        "roofline", f"Roofline: {model}", points,
        Axis("arithmetic intensity (FLOP/byte)", lambda v: f"{v:g}", log=True, lo=xlo, hi=xhi),
        Axis("achieved (FLOP/s)", lambda v: fmt.si(v, "FLOP/s"), log=True, lo=ylo,
             hi=peak * 2),
        lines=lines, legend=[(f"{b}-bound", _BOUND_COLORS.get(b, "#9c9c9c")) for b in bounds],
        subtitle=sub)


def _analysis(doc: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    model = str((doc.get("model") or {}).get("name", "?"))
    est = doc.get("estimate") if isinstance(doc.get("estimate"), dict) else None
    t = doc.get("totals") or {}
    if est:
        svg = _roofline(est, model)
        if svg:
            out.append(("roofline", svg))
    mem = t.get("memory_bytes") or {}
    parts = [("weights", mem.get("weights")), ("buffers", mem.get("buffers")),
             ("gradients", mem.get("gradients")), ("optimizer states", mem.get("optimizer_states")),
             ("saved activations", mem.get("activations_saved"))]
    cats = ["by part (counted)"]
    series = [(name, [_n(v)]) for name, v in parts if _n(v)]
    marker = None
    if est:
        em = est.get("memory_bytes") or {}
        cats.append("at peak (liveness)")
        series = [(name, vals + [None]) for name, vals in series]
        series += [("persistent", [None, _n(em.get("persistent"))]),
                   ("activations + temporaries at peak",
                    [None, _n(em.get("activations_and_temporaries_at_peak"))])]
        cap = _n(em.get("capacity"))
        if cap:
            marker = (cap, f"capacity {fmt.nbytes(cap)}")
    if series:
        sub = None
        if marker and marker[0] > 1.5 * sum(v or 0 for _, vals in series for v in vals[-1:]):
            sub = f"device capacity {fmt.nbytes(marker[0])} is off the scale"
        out.append(("memory", hbar_chart("memory", f"Memory per GPU: {model}", cats, series,
                                         _bytes_axis(), stacked=True, marker=marker,
                                         subtitle=sub)))
    if est:
        phases = [(p, _n(s)) for p, s in (est.get("phase_seconds") or {}).items() if _n(s)]
        if phases:
            out.append(("time-phase", hbar_chart(
                "time-phase", "Time by phase", [p for p, _ in phases],
                [("time", [s for _, s in phases])], _seconds_axis(),
                subtitle=f"step {fmt.seconds(est.get('step_time_s'))} on "
                         f"{est.get('hardware', '?')}")))
        mods = [m for m in est.get("modules") or [] if isinstance(m, dict) and m.get("path")
                and _n(m.get("seconds"))][:15]
        if mods:
            out.append(("time-module", hbar_chart(
                "time-module", "Time by module", [str(m["path"]) for m in mods],
                [("time", [_n(m["seconds"]) for m in mods])], _seconds_axis(),
                subtitle="modules to depth 2; repeated blocks count every repeat")))
        classes = [c for c in est.get("op_classes") or [] if isinstance(c, dict)
                   and _n(c.get("seconds"))]
        if classes:
            out.append(("time-class", hbar_chart(
                "time-class", "Time by op class", [str(c.get("class")) for c in classes],
                [(f"{b}-bound", [_n(c.get("seconds")) if c.get("bound") == b else None
                                 for c in classes]) for b in ("compute", "memory", "none")
                 if any(c.get("bound") == b for c in classes)],
                _seconds_axis(), stacked=True,
                colors=[_BOUND_COLORS[b] for b in ("compute", "memory", "none")
                        if any(c.get("bound") == b for c in classes)],
                subtitle="colour: what bounds most of the class's time (roofline)")))
    else:
        flops = t.get("flops") or {}
        phases = [(p, _n(flops.get(p))) for p in ("forward", "backward", "recompute",
                                                  "optimizer") if _n(flops.get(p))]
        if phases:
            out.append(("flops-phase", hbar_chart(
                "flops-phase", "FLOPs by phase", [p for p, _ in phases],
                [("FLOPs", [v for _, v in phases])], Axis("FLOPs", lambda v: fmt.si(v)),
                subtitle="add --hardware to analyze for time, roofline and peak memory")))
        mods = sorted((m for m in doc.get("modules") or [] if isinstance(m, dict)
                       and 1 <= (_n(m.get("depth")) or 0) <= 2
                       and _n((m.get("flops") or {}).get("total"))),
                      key=lambda m: -float(m["flops"]["total"]))[:15]
        if mods:
            out.append(("flops-module", hbar_chart(
                "flops-module", "FLOPs by module", [str(m.get("path")) for m in mods],
                [("FLOPs", [float(m["flops"]["total"]) for m in mods])],
                Axis("FLOPs per step", lambda v: fmt.si(v)))))
    return out


# ---------------------------------------------------------------- plans

_MEM_PARTS = ("weights", "gradients", "optimizer_states", "activations", "transient")


def _rank_memory(est: dict[str, Any], title: str) -> str | None:
    ranks = [r for r in est.get("ranks") or [] if isinstance(r, dict)]
    if not ranks:
        return None
    mem = est.get("memory_bytes") or {}
    usable = _n(mem.get("usable_per_gpu"))
    series = [(p.replace("_", " "), [_n((r.get("memory_bytes") or {}).get(p)) for r in ranks])
              for p in _MEM_PARTS]
    total = max((_n((r.get("memory_bytes") or {}).get("total")) or 0.0) for r in ranks)
    sub = f"usable {fmt.nbytes(usable)} per GPU" if usable else None
    if usable and usable > 1.5 * total:
        sub += " (off the scale)"
    return hbar_chart("memory", title, [f"pipeline rank {r.get('rank')}" for r in ranks], series,
                      _bytes_axis(), stacked=True,
                      marker=(usable, "usable") if usable else None, subtitle=sub)


def _components(est: dict[str, Any], title: str, plan: str = "") -> str | None:
    comps = [(k, _n(v)) for k, v in (est.get("components_s") or {}).items() if _n(v)]
    comps = [(k, v) for k, v in comps if v > 0]
    if not comps:
        return None
    return hbar_chart("components", title, [k.replace("_", " ") for k, _ in comps],
                      [("time", [v for _, v in comps])], _seconds_axis(),
                      subtitle=f"{short_plan(plan) + ': ' if plan else ''}step "
                               f"{fmt.seconds(est.get('step_time_s'))}, critical pipeline rank")


def _timeline(tl: Timeline | None, title: str, plan: str = "") -> str | None:
    if tl is None or not tl.bars:
        return None
    colors = dict(TIMELINE_COLORS)
    extra = [c for c in dict.fromkeys(b.category for b in tl.bars) if c not in colors]
    for i, c in enumerate(extra):
        colors[c] = PALETTE[(i + 5) % len(PALETTE)]
    sub = f"{short_plan(plan) + ' ' if plan else ''}from {tl.source}; span {fmt.seconds(tl.span)}"
    if tl.truncated:
        sub += f"; {tl.truncated} more events not drawn"
    return gantt_chart("pipeline", title, tl.lanes,
                       [(b.lane, b.start, b.dur, b.name, b.category) for b in tl.bars],
                       _seconds_axis("time from step start (s)"), colors, subtitle=sub)


def _pareto(doc: dict[str, Any]) -> str | None:
    front = [p for p in doc.get("pareto") or [] if isinstance(p, dict)
             and _n(p.get("step_time_s")) and _n(p.get("peak_per_gpu_bytes"))]
    if not front:
        return None
    counts = sorted({int(p.get("gpus") or 0) for p in front})
    color = {g: PALETTE[i % len(PALETTE)] for i, g in enumerate(counts)}
    gmin = max(min(counts), 1)
    points = []
    for p in front:
        g = int(p.get("gpus") or 0)
        points.append(Point(float(p["step_time_s"]), float(p["peak_per_gpu_bytes"]),
                            short_plan(p.get("plan", "")), color[g],
                            4.0 + 2.5 * math.log2(max(g, 1) / gmin),
                            f"{p.get('plan')}: {fmt.seconds(p['step_time_s'])}, "
                            f"{fmt.nbytes(p['peak_per_gpu_bytes'])} per GPU, {g} GPUs, MFU "
                            f"{fmt.percent(p.get('mfu'))}"))
    best = chosen_estimate(doc)
    legend = [(f"{g} GPUs", color[g]) for g in counts]
    if best and _n(best.get("step_time_s")):
        bm = _n((best.get("memory_bytes") or {}).get("peak_per_gpu"))
        if bm:
            plan = doc["plans"][0].get("plan", "")
            points.append(Point(float(best["step_time_s"]), bm, "best: " + short_plan(plan),
                                "#111111", 3.5, f"best plan (re-ranked in full): {plan}",
                                show=True))
            legend.append(("best plan, full estimate", "#111111"))
    xs = [p.x for p in points]
    ys = [p.y for p in points]
    logx = max(xs) / min(xs) > 20
    logy = max(ys) / min(ys) > 20
    return scatter_chart(
        "pareto", "Pareto front of the searched plans", points,
        Axis("step time (s)", fmt.seconds, log=logx, zero=False),
        Axis("memory per GPU (bytes)", fmt.nbytes, log=logy, zero=False, binary=True),
        legend=legend,
        subtitle="plans no other beats on step time, memory per GPU and GPU count; colour and "
                 "size: GPUs")


def _ranking(doc: dict[str, Any]) -> str | None:
    plans = [p for p in doc.get("plans") or [] if isinstance(p, dict)
             and isinstance(p.get("estimate"), dict)][:10]
    if not plans:
        return None
    names = list(dict.fromkeys(k for p in plans for k in p["estimate"].get("components_s")
                               or {}))
    series = [(k, [_n((p["estimate"].get("components_s") or {}).get(k)) or 0.0 for p in plans])
              for k in names]
    series = [(k, v) for k, v in series if any(x > 0 for x in v)]
    colors = [COMPONENT_COLORS.get(k, PALETTE[i % len(PALETTE)]) for i, (k, _) in
              enumerate(series)]
    cats = [f"#{p.get('rank')} {short_plan(p.get('plan', ''))}" for p in plans]
    return hbar_chart("ranking", "Top plans: step time by component", cats,
                      [(k.replace("_", " "), v) for k, v in series],
                      _seconds_axis("step time (s)"), stacked=True, colors=colors,
                      subtitle="critical pipeline rank of each plan")


def _plan(doc: dict[str, Any], tl: Timeline | None) -> list[tuple[str, str]]:
    out = []
    svg = _pareto(doc)
    if svg:
        out.append(("pareto", svg))
    svg = _ranking(doc)
    if svg:
        out.append(("ranking", svg))
    best = chosen_estimate(doc)
    if best:
        for pid, svg in (("memory", _rank_memory(best, "Best plan: memory per GPU by pipeline "
                                                       "rank")),
                         ("pipeline", _timeline(tl or from_estimate(best),
                                                "Best plan: pipeline timeline",
                                                str(doc["plans"][0].get("plan", ""))))):
            if svg:
                out.append((pid, svg))
    return out


def _estimate(doc: dict[str, Any], tl: Timeline | None) -> list[tuple[str, str]]:
    est = chosen_estimate(doc) or {}
    out = []
    for pid, svg in (("components", _components(est, "Step time by component",
                                                str(doc.get("plan") or ""))),
                     ("memory", _rank_memory(est, "Memory per GPU by pipeline rank")),
                     ("pipeline", _timeline(tl or from_estimate(est), "Pipeline timeline"))):
        if svg:
            out.append((pid, svg))
    return out


def _validation(doc: dict[str, Any], tl: Timeline | None) -> list[tuple[str, str]]:
    rows = [c for c in (doc.get("validation") or {}).get("components") or []
            if isinstance(c, dict)]
    out = []
    for unit, pid, axis, title in (("s", "validation-time", _seconds_axis(),
                                    "Predicted vs measured: time"),
                                   ("B", "validation-bytes", _bytes_axis("bytes"),
                                    "Predicted vs measured: memory and bytes")):
        sel = [c for c in rows if c.get("unit") == unit]
        if not sel:
            continue
        cats = []
        for c in sel:
            err = c.get("error")
            cats.append(str(c.get("name", "")).replace("_", " ")
                        + ("" if err is None else f" ({fmt.signed_percent(err, 1)})"))
        out.append((pid, hbar_chart(pid, title, cats,
                                    [("predicted", [_n(c.get("predicted")) for c in sel]),
                                     ("measured", [_n(c.get("measured")) for c in sel])],
                                    axis, subtitle="error = predicted / measured - 1")))
    if tl is not None:
        svg = _timeline(tl, "Predicted pipeline timeline")
        if svg:
            out.append(("pipeline", svg))
    return out


def plots(doc: dict[str, Any], timeline: Timeline | None = None) -> list[tuple[str, str]]:
    """``(id, figure)`` for every plot the document's parts allow."""
    kind = doc["kind"]
    if kind == "analysis":
        return _analysis(doc)
    if kind == "plan":
        return _plan(doc, timeline)
    if kind == "estimate":
        return _estimate(doc, timeline)
    return _validation(doc, timeline)
