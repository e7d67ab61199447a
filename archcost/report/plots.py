"""Which plots a document gets, and their data (drawn by ``svg``, ``gantt`` and ``heatmap``):

- analysis: roofline of the op classes (with ``--hardware``), memory breakdown, time (or FLOPs)
  by phase, by module and by op class
- plan: Pareto front of the searched plans, step time of the top plans by component, the best
  plan's memory per GPU by pipeline rank and its pipeline timeline
- estimate: step time by component, memory per GPU by pipeline rank, pipeline timeline
- validation: predicted against measured, times and bytes
- inference and inference sweeps: see ``infer_plots``
- sweep: step time against each varied parameter (one line per combination of the other
  parameters, or the fastest, median and slowest of them when there are more than
  ``MAX_SERIES``; bars from zero, one per value, when the values are names), a heatmap of
  step time when exactly two parameters vary, step time by component at every point, the sensitivity (signed
  elasticities, sorted), tokens per joule and dollars per million tokens per point

A plot is ``(id, svg_figure)``; ids are stable (tests and anchors use them).
"""

from __future__ import annotations

import math
import re
import statistics
from typing import Any

from archcost.report import fmt
from archcost.report.document import chosen_estimate, point_label, sweep_keys
from archcost.report.frame import PALETTE, Axis
from archcost.report.gantt import gantt_chart
from archcost.report.heatmap import heatmap_chart
from archcost.report.svg import Line, Point, hbar_chart, scatter_chart, signed_bar_chart
from archcost.report.tables import short_plan
from archcost.report.timeline import Timeline, from_estimate

__all__ = ["plots", "TIMELINE_COLORS", "COMPONENT_COLORS", "MAX_SERIES", "sweep_x_axis",
           "roofline_chart", "BOUND_COLORS"]

TIMELINE_COLORS = {"forward": "#4e79a7", "backward": "#59a14f", "compute": "#76b7b2",
                   "bubble": "#cfcfcf", "pp send": "#f28e2b", "dp collectives": "#e15759",
                   "optimizer": "#b07aa1"}
COMPONENT_COLORS = {"compute": "#4e79a7", "recompute": "#76b7b2", "tp_comm": "#f28e2b",
                    "cp_comm": "#edc948", "ep_comm": "#9c755f", "pp_comm": "#ff9da7",
                    "bubble": "#cfcfcf", "dp_comm": "#e15759", "optimizer": "#b07aa1"}
BOUND_COLORS = {"compute": "#4e79a7", "memory": "#f28e2b", "none": "#9c9c9c"}


def _n(v) -> float | None:
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
        return float(v)
    return None


def _seconds_axis(label: str = "time (s)") -> Axis:
    return Axis(label, fmt.seconds)


def _bytes_axis(label: str = "memory per GPU (bytes)") -> Axis:
    return Axis(label, fmt.nbytes, binary=True)


# ---------------------------------------------------------------- analysis

def roofline_chart(plot_id: str, title: str, points: list[Point], peak: float, bw: float,
                   subtitle: str, bounds: list[str], y_label: str = "achieved (FLOP/s)") -> str:
    """Points on the roofline of a GPU: arithmetic intensity (FLOP/B) against FLOP/s, log-log,
    under the memory roof (``bw`` B/s) up to the ridge point and the compute roof (``peak``
    FLOP/s) after it; the legend names ``bounds`` (their colours in ``BOUND_COLORS``)."""
    ridge = peak / bw
    xs = [p.x for p in points] + [ridge]
    ys = [p.y for p in points]
    xlo, xhi = min(xs) / 4, max(xs) * 4
    ylo = min(ys + [peak]) / 4
    xlo = max(xlo, ylo / bw / 4)
    lines = [Line([xlo, ridge], [bw * xlo, peak], f"memory roof {fmt.si(bw, 'B/s')}", "#555",
                  "6,3"),
             Line([ridge, xhi], [peak, peak], f"compute roof {fmt.si(peak, 'FLOP/s')}", "#111")]
    return scatter_chart(
        plot_id, title, points,
        Axis("arithmetic intensity (FLOP/byte)", fmt.sig, log=True, lo=xlo, hi=xhi),
        Axis(y_label, lambda v: fmt.si(v, "FLOP/s"), log=True, lo=ylo, hi=peak * 2),
        lines=lines, legend_items=[(f"{b}-bound", BOUND_COLORS.get(b, "#9c9c9c"))
                                   for b in bounds],
        subtitle=f"{subtitle}; ridge at {fmt.sig(ridge)} FLOP/B")


def _roofline(est: dict[str, Any], model: str) -> str | None:
    classes = [c for c in est.get("op_classes") or [] if isinstance(c, dict)]
    peak = _n(est.get("peak_flops_per_s"))
    bw = _n((est.get("roofline") or {}).get("mem_bw_bytes_per_s"))
    if not classes or not peak or not bw:
        return None
    drawn, skipped = [], []
    for c in classes:
        x, y = _n(c.get("arithmetic_intensity")), _n(c.get("achieved_flops_per_s"))
        (drawn if x and y and x > 0 and y > 0 else skipped).append(c)
    points = []
    for c in drawn:
        share = _n(c.get("share")) or 0.0
        bound = str(c.get("bound", "none"))
        tip = (f"{c.get('class')}: {fmt.sig(c['arithmetic_intensity'])} FLOP/B, "
               f"{fmt.si(c['achieved_flops_per_s'], 'FLOP/s')} achieved, "
               f"{fmt.seconds(c.get('seconds'))} ({fmt.percent(share)} of the step), {bound}-bound")
        points.append(Point(float(c["arithmetic_intensity"]), float(c["achieved_flops_per_s"]),
                            str(c.get("class")), BOUND_COLORS.get(bound, "#9c9c9c"),
                            4.0 + 10.0 * math.sqrt(max(share, 0.0)), tip, show=True))
    points.sort(key=lambda p: -p.r)  # the largest shares drawn, and labelled, first
    sub = f"op classes on {est.get('hardware', '?')}; point area ~ share of step time"
    if skipped:
        sub += f"; not drawn (no FLOPs): {', '.join(str(c.get('class')) for c in skipped)}"
    bounds = list(dict.fromkeys(str(c.get("bound", "none")) for c in drawn))
    return roofline_chart("roofline", f"Roofline: {model}", points, peak, bw, sub, bounds)


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
                colors=[BOUND_COLORS[b] for b in ("compute", "memory", "none")
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
        legend_items=legend,
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


# ---------------------------------------------------------------- sweeps

MAX_SERIES = 6  # lines per step-time plot before the other axes are summarised
MAX_BARS = 60  # grid points in the per-point bar charts
_COUNT_UNITS = {"gpus": "GPUs", "scaleup_domain": "GPUs", "gpus_per_node": "GPUs",
                "seq_len": "tokens", "gbs": "sequences"}
_QUANTITY_UNITS = {"flops_rate": "FLOP/s", "bytes": "B", "bandwidth": "B/s", "time": "s",
                   "power": "W", "usd_per_hour": "$/h"}
_DESCRIPTIONS = {"cluster": "cluster profile (NAME or NAME+GPU)"}
_PLAIN = re.compile(r"^\s*[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\s*$")


def sweep_x_axis(key: str, labels: list[str]) -> tuple[list[float], Axis] | None:
    """Positions of a swept parameter's values on an x axis and the axis, or None when the
    values are names. Multipliers (``2x``), counts and quantities with units (``1.8TB/s``)
    are placed at their value (log scale when they span a factor of 4 or more), ticks at the
    swept values labelled as written; anything else (GPU, cluster or dtype names, mixed
    forms) is categorical: drawn as bars, one per value in sweep order, not as a line."""
    from archcost.sweep.axes import AXES

    kind, desc = AXES.get(key, ("", ""))
    desc = _DESCRIPTIONS.get(key, desc)
    name = f"{key}: {desc}" if desc else key
    values: list[float] | None = None
    unit = ""
    if labels and all(lb.strip().lower().endswith("x") and _PLAIN.match(lb.strip()[:-1])
                      for lb in labels):
        values, unit = [float(lb.strip()[:-1]) for lb in labels], "multiple of the base"
    elif labels and all(_PLAIN.match(lb) for lb in labels):
        values, unit = [float(lb) for lb in labels], _COUNT_UNITS.get(key, "")
    elif labels and kind in _QUANTITY_UNITS:
        from archcost.hardware.units import UnitError, parse_quantity

        try:
            values, unit = [parse_quantity(lb, kind) for lb in labels], _QUANTITY_UNITS[kind]
        except UnitError:
            values = None
    if values is not None and all(math.isfinite(v) for v in values) \
            and len(set(values)) == len(values):
        text = dict(zip(values, labels))

        def label_of(v: float) -> str:
            return text.get(v, fmt.number(v))

        lo, hi = min(values), max(values)
        if lo > 0 and hi / lo >= 4:
            axis = Axis(f"{name} ({unit}, log scale)" if unit else f"{name} (log scale)",
                        label_of, log=True, lo=lo / 1.25, hi=hi * 1.25, ticks=values)
        else:
            pad = 0.08 * ((hi - lo) or abs(lo) or 1.0)
            axis = Axis(f"{name} ({unit})" if unit else name, label_of, lo=lo - pad,
                        hi=hi + pad, zero=False, ticks=values)
        return values, axis
    return None


def _step_axis(times: list[float], label: str = "step time (s)") -> Axis:
    """Step time on a padded linear axis (log past a factor of 20), its tick labels with
    enough digits to tell close ticks apart."""
    pos = [t for t in times if t > 0]
    log = bool(pos) and max(pos) / min(pos) > 20
    digits = 3
    if pos and not log:
        _, ticks, _ = Axis(label, zero=False).domain(pos)
        step = (ticks[-1] - ticks[0]) / max(len(ticks) - 1, 1)
        while digits < 7 and any(abs(float(f"{t:.{digits}g}") - t) > 1e-6 * step
                                 for t in ticks):
            digits += 1

    def text(v: float) -> str:
        return fmt.seconds(v, digits)

    return Axis(label + (", log scale" if log else ""), text, log=log, zero=False)


def _grid(doc: dict[str, Any]) -> tuple[list[str], list[list[str]], dict[tuple, dict]]:
    """Axis keys, their value labels, and the points by their tuple of labels."""
    axes = [a for a in doc.get("axes") or [] if isinstance(a, dict)]
    keys = [str(a.get("key")) for a in axes]
    labels = [[str(v) for v in a.get("values") or []] for a in axes]
    by = {}
    for p in doc.get("points") or []:
        if isinstance(p, dict) and isinstance(p.get("point"), dict):
            by[tuple(str(p["point"].get(k, "")) for k in keys)] = p
    return keys, labels, by


def _time(p: dict | None) -> float | None:
    if not p or not p.get("fits"):
        return None
    t = _n(p.get("step_time_s"))
    return t if t and t > 0 else None


def _plot_id(prefix: str, key: str, used: set[str]) -> str:
    base = f"{prefix}-{re.sub(r'[^A-Za-z0-9_-]+', '_', key) or 'axis'}"
    pid, k = base, 2
    while pid in used:
        pid, k = f"{base}-{k}", k + 1
    used.add(pid)
    return pid


def _series_against(keys, labels, by, a: int
                    ) -> tuple[list[tuple[str, list[float | None], list[str]]], str]:
    """Step times along axis ``a``: one series per combination of the other axes (or their
    fastest, median and slowest past ``MAX_SERIES``), each (name, times, plan tips), and the
    subtitle saying which."""
    import itertools

    others = [i for i in range(len(keys)) if i != a]
    combos = list(itertools.product(*[labels[i] for i in others]))
    n = len(labels[a])

    def at(combo, j):
        full = [""] * len(keys)
        for i, v in zip(others, combo):
            full[i] = v
        full[a] = labels[a][j]
        return by.get(tuple(full))

    series: list[tuple[str, list[float | None], list[str]]] = []
    if len(combos) <= MAX_SERIES:
        for combo in combos:
            name = ", ".join(f"{keys[i]}={v}" for i, v in zip(others, combo)) or "step time"
            series.append((name, [_time(at(combo, j)) for j in range(n)],
                           [short_plan((at(combo, j) or {}).get("plan") or "no plan fits")
                            for j in range(n)]))
        sub = ("one series per combination of the other parameters" if others
               else "the best plan at every point")
        missing = sum(1 for _, ts, _ in series for t in ts if t is None)
        if missing:
            sub += f"; {missing} point{'s' if missing > 1 else ''} where no plan fits not drawn"
        return series, sub
    rows: dict[str, list[float | None]] = {"fastest": [], "median": [], "slowest": []}
    for j in range(n):
        ts = sorted(t for t in (_time(at(c, j)) for c in combos) if t is not None)
        rows["fastest"].append(ts[0] if ts else None)
        rows["median"].append(statistics.median(ts) if ts else None)
        rows["slowest"].append(ts[-1] if ts else None)
    sub = (f"{len(combos)} combinations of the other parameters: fastest, median and slowest "
           "at each value")
    if any(_time(at(c, j)) is None for c in combos for j in range(n)):
        sub += " (of those where a plan fits)"
    return [(name, ts, [""] * n) for name, ts in rows.items()], sub


def _step_against(doc: dict[str, Any], used: set[str]) -> list[tuple[str, str]]:
    """Step time against each varied parameter: points joined by lines along a numeric axis;
    bars from zero, one per value, along names (GPUs, clusters, dtypes)."""
    keys, labels, by = _grid(doc)
    out = []
    for a, key in enumerate(keys):
        series, sub = _series_against(keys, labels, by, a)
        if not any(t is not None for _, ts, _ in series for t in ts):
            continue
        pid = _plot_id("step", key, used)
        title = f"Step time against {key}"
        placed = sweep_x_axis(key, labels[a])
        if placed is None:
            out.append((pid, hbar_chart(
                pid, title, labels[a], [(name, ts) for name, ts, _ in series],
                _seconds_axis("step time (s)"), subtitle=f"{key}: {sub}")))
            continue
        xs, xaxis = placed
        points, lines, legend = [], [], []
        for s, (name, ts, tips) in enumerate(series):
            color = PALETTE[s % len(PALETTE)]
            legend.append((name, color))
            segment: tuple[list[float], list[float]] = ([], [])
            for j, t in enumerate(ts):
                if t is None:
                    if len(segment[0]) > 1:
                        lines.append(Line(*segment, color=color))
                    segment = ([], [])
                    continue
                segment[0].append(xs[j])
                segment[1].append(t)
                tip = f"{key}={labels[a][j]}" + (f", {name}" if len(keys) > 1 else "") + \
                    f": {fmt.seconds(t)}" + (f" ({tips[j]})" if tips[j] else "")
                points.append(Point(xs[j], t, "", color, 4.5, tip))
            if len(segment[0]) > 1:
                lines.append(Line(*segment, color=color))
        out.append((pid, scatter_chart(
            pid, title, points, xaxis, _step_axis([p.y for p in points]), lines=lines,
            legend_items=legend if len(series) > 1 or len(keys) > 1 else [], subtitle=sub,
            height=380)))
    return out


def _heatmap(doc: dict[str, Any]) -> str | None:
    keys, labels, by = _grid(doc)
    if len(keys) != 2:
        return None
    values = [[_time(by.get((r, c))) for c in labels[1]] for r in labels[0]]
    flat = [v for row in values for v in row if v is not None]
    if not flat:
        return None
    log = max(flat) / min(flat) > 20
    best = min(flat)
    return heatmap_chart(
        "heatmap", f"Step time over {keys[0]} and {keys[1]}", labels[0], labels[1], values,
        Axis("step time (s)", fmt.seconds, log=log), row_label=keys[0], column_label=keys[1],
        missing="no plan fits",
        subtitle=f"the best plan at every point; darker: slower; fastest {fmt.seconds(best)}")


def _sweep_components(doc: dict[str, Any], keys: list[str]) -> str | None:
    pts = [p for p in doc.get("points") or [] if isinstance(p, dict) and _time(p)
           and isinstance(p.get("components_s"), dict)][:MAX_BARS]
    if not pts:
        return None
    names = list(dict.fromkeys(k for p in pts for k in p["components_s"]))
    series = [(k, [max(_n(p["components_s"].get(k)) or 0.0, 0.0) for p in pts]) for k in names]
    series = [(k, v) for k, v in series if any(x > 0 for x in v)]
    if not series:
        return None
    colors = [COMPONENT_COLORS.get(k, PALETTE[i % len(PALETTE)]) for i, (k, _) in
              enumerate(series)]
    return hbar_chart("sweep-components", "Step time by component at every point",
                      [point_label(p["point"], keys) for p in pts],
                      [(k.replace("_", " "), v) for k, v in series],
                      _seconds_axis("step time (s)"), stacked=True, colors=colors,
                      subtitle="the best plan's critical pipeline rank at each point")


def _sensitivity(doc: dict[str, Any], keys: list[str]) -> str | None:
    sens = doc.get("sensitivity")
    if not isinstance(sens, dict):
        return None
    rows = [(str(r.get("resource")), _n(r.get("elasticity"))) for r in sens.get("resources")
            or [] if isinstance(r, dict) and _n(r.get("elasticity")) is not None]
    if not rows:
        return None
    rows.sort(key=lambda r: (r[1], r[0]))
    return signed_bar_chart(
        "sensitivity", f"Sensitivity of step time at {point_label(sens.get('point'), keys)}",
        [r for r, _ in rows], [e for _, e in rows],
        Axis("elasticity d ln(step time) / d ln(resource) (dimensionless)",
             lambda v: f"{v:+.3g}" if v else "0"),
        legend_names=("more of it: faster", "more of it: slower"),
        subtitle=f"plan fixed: {short_plan(sens.get('plan') or '?')}; -1: step time halves "
                 "when the resource doubles")


def _per_point(doc: dict[str, Any], keys: list[str], field: str, pid: str, title: str,
               axis: Axis, sub: str) -> str | None:
    pts = [p for p in doc.get("points") or [] if isinstance(p, dict) and p.get("fits")
           and _n(p.get(field)) is not None]
    if not pts:
        return None
    shown = pts[:MAX_BARS]
    if len(pts) > len(shown):
        sub += f"; the first {len(shown)} of {len(pts)} points"
    return hbar_chart(pid, title, [point_label(p["point"], keys) for p in shown],
                      [(field.replace("_", " "), [_n(p.get(field)) for p in shown])], axis,
                      subtitle=sub)


def _sweep(doc: dict[str, Any]) -> list[tuple[str, str]]:
    keys = sweep_keys(doc)
    used = {"heatmap", "sweep-components", "sensitivity", "tokens-per-joule",
            "usd-per-million-tokens"}
    out = _step_against(doc, used)
    for pid, svg in (("heatmap", _heatmap(doc)),
                     ("sweep-components", _sweep_components(doc, keys)),
                     ("sensitivity", _sensitivity(doc, keys)),
                     ("tokens-per-joule", _per_point(
                         doc, keys, "tokens_per_joule", "tokens-per-joule",
                         "Tokens per joule at every point",
                         Axis("tokens per joule (tokens/J)", lambda v: fmt.si(v)),
                         "energy: GPUs between idle and TDP as they compute, plus node "
                         "overhead; higher is better")),
                     ("usd-per-million-tokens", _per_point(
                         doc, keys, "usd_per_million_tokens", "usd-per-million-tokens",
                         "Cost per million tokens at every point",
                         Axis("cost per million tokens ($)", fmt.usd),
                         "price per GPU-hour times GPU-hours; lower is better"))):
        if svg:
            out.append((pid, svg))
    return out


def plots(doc: dict[str, Any], timeline: Timeline | None = None) -> list[tuple[str, str]]:
    """``(id, figure)`` for every plot the document's parts allow."""
    kind = doc["kind"]
    if kind == "inference" or doc.get("mode") == "inference":
        from archcost.report import infer_plots

        return (infer_plots.inference_plots if kind == "inference"
                else infer_plots.infer_sweep_plots)(doc)
    if kind == "analysis":
        return _analysis(doc)
    if kind == "plan":
        return _plan(doc, timeline)
    if kind == "estimate":
        return _estimate(doc, timeline)
    if kind == "sweep":
        return _sweep(doc)
    return _validation(doc, timeline)
