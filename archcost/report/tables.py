"""A result document as a title, a few facts and titled tables: the content Markdown and HTML
share. Cells are plain, unescaped text (the renderers escape); numbers are formatted here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from archcost.report import fmt
from archcost.report.document import chosen_estimate, model_title, point_label, sweep_keys
from archcost.report.timeline import Timeline

__all__ = ["Table", "Report", "build_report", "short_plan", "fitting_points", "fastest_point"]


@dataclass
class Table:
    key: str  # stable identifier (HTML id, tests)
    title: str
    columns: list[str]
    rows: list[list[str]]
    align: str = ""  # one letter per column, "l" or "r"; default: first left, others right
    note: str | None = None

    def alignment(self) -> str:
        if self.align:
            return self.align
        return "l" + "r" * (len(self.columns) - 1)


@dataclass
class Report:
    title: str
    facts: list[tuple[str, str]] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)

    def add(self, table: Table | None) -> None:
        if table is not None and table.rows:
            self.tables.append(table)


_PLAN_DEFAULTS = {"ep": "1", "cp": "1", "zero": "0", "sp": "0", "vpp": "1",
                  "schedule": "1f1b", "recompute": "none", "offload": "none",
                  "placement": "tp-cp-dp-pp"}


def short_plan(text: str) -> str:
    """``dp=2,tp=8,pp=4,cp=1,...`` without the keys at their defaults (and gbs)."""
    keep = []
    for item in str(text).split(","):
        key, _, value = item.partition("=")
        if key == "gbs" or _PLAN_DEFAULTS.get(key) == value:
            continue
        keep.append(f"{key}={'interleaved' if value == 'interleaved-1f1b' else value}")
    return ",".join(keep) or str(text)


def _get(d: Any, *keys, default=None):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d


def _num(v) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else 0.0


def _n(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _share(part, whole) -> str:
    return fmt.percent(_num(part) / _num(whole)) if _num(whole) else "-"


# ---------------------------------------------------------------- common facts

def _facts(doc: dict[str, Any]) -> list[tuple[str, str]]:
    facts = [("model", model_title(doc))]
    model = doc.get("model") or {}
    if model.get("file"):
        facts.append(("file", str(model["file"])))
    w = doc.get("workload") or {}
    parts = []
    for key, label in (("batch_size", "batch"), ("seq_len", "seq_len"), ("precision", ""),
                       ("dtype", ""), ("optimizer", ""), ("recompute", "recompute")):
        if key in w and not (key == "recompute" and w[key] == "none"):
            parts.append(f"{label}={w[key]}" if label else str(w[key]))
    if "params" in w:
        parts.append(f"{fmt.si(w['params'])} params")
    if "layers" in w:
        parts.append(f"{w['layers']} layers")
    if parts:
        facts.append(("workload", ", ".join(parts)))
    hw = doc.get("hardware")
    if isinstance(hw, dict):
        text = ", ".join(f"{k} {v}" for k, v in hw.items() if isinstance(v, (str, int)))
        if text:
            facts.append(("hardware", text))
    return facts


# ---------------------------------------------------------------- analysis

def _analysis(doc: dict[str, Any], rep: Report) -> None:
    t = doc.get("totals") or {}
    est = doc.get("estimate") if isinstance(doc.get("estimate"), dict) else None
    rows = []
    for key, label in (("params", "parameters"), ("trainable_params", "trainable parameters"),
                       ("frozen_params", "frozen parameters")):
        if key in t and not (key == "frozen_params" and not t[key]):
            rows.append([label, fmt.si(t[key]), fmt.count(t[key])])
    ops = _get(doc, "capture", "ops_executed")
    if ops is not None:
        rows.append(["ops executed", fmt.si(ops), fmt.count(ops)])
    for key in ("read", "written"):
        v = _get(t, "bytes", key)
        if v is not None:
            rows.append([f"bytes {key}", fmt.nbytes(v), fmt.count(v)])
    if "arithmetic_intensity" in t:
        rows.append(["arithmetic intensity", f"{fmt.sig(_num(t['arithmetic_intensity']))} FLOP/B",
                     ""])
    rep.add(Table("totals", "Totals", ["quantity", "value", "exact"], rows))

    flops = t.get("flops") or {}
    rows = []
    for phase in ("forward", "backward", "recompute", "optimizer", "total"):
        if phase in flops and not (phase == "recompute" and not flops[phase]):
            rows.append([phase, fmt.si(flops[phase], "FLOP"), fmt.count(flops[phase]),
                         _share(flops[phase], flops.get("total"))])
    rep.add(Table("flops", "FLOPs per phase", ["phase", "FLOPs", "exact", "share"], rows))

    mem = t.get("memory_bytes") or {}
    rows = []
    static = 0.0
    for key, label in (("weights", "weights"), ("buffers", "buffers"),
                       ("gradients", "gradients"),
                       ("optimizer_states", "optimizer states (with master weights)"),
                       ("activations_saved", "saved activations")):
        if key in mem and not (key == "buffers" and not mem[key]):
            rows.append([label, fmt.nbytes(mem[key]), fmt.count(mem[key])])
            static += _num(mem[key])
    if rows:
        rows.append(["sum", fmt.nbytes(static), fmt.count(static)])
    if est:
        em = est.get("memory_bytes") or {}
        for key, label in (("persistent", "persistent (liveness)"),
                           ("activations_and_temporaries_at_peak",
                            "activations and temporaries at peak"),
                           ("peak", "peak (liveness)"), ("capacity", "device capacity")):
            if key in em:
                rows.append([label, fmt.nbytes(em[key]), fmt.count(em[key])])
        at = em.get("peak_at") or {}
        if at:
            rows.append(["peak at", f"{at.get('phase', '?')} {at.get('module', '') or '(model)'}",
                         ""])
        if "fits" in est:
            rows.append(["fits", "yes" if est["fits"] else "no", ""])
    rep.add(Table("memory", f"Memory{' (one GPU)' if est else ''}", ["part", "bytes", "exact"],
                  rows))

    if est:
        rows = [["step time", fmt.seconds(est.get("step_time_s"))],
                ["MFU", fmt.percent(est.get("mfu"))], ["HFU", fmt.percent(est.get("hfu"))],
                ["peak used", fmt.si(est.get("peak_flops_per_s"), "FLOP/s")]]
        if "ops_compute_bound" in est:
            rows.append(["ops compute / memory bound",
                         f"{est['ops_compute_bound']} / {est.get('ops_memory_bound', '?')}"])
        ridge = _get(est, "roofline", "ridge_point_flop_per_byte")
        if ridge is not None:
            rows.append(["ridge point", f"{fmt.sig(_num(ridge))} FLOP/B"])
        comps = est.get("components") or {}
        for key, label, f in (("C_compute_s", "C: compute time", fmt.seconds),
                              ("S_peak_bytes", "S: peak memory", fmt.nbytes),
                              ("C_comm_bytes", "C_comm: bytes between devices", fmt.nbytes)):
            if key in comps:
                rows.append([label, f(comps[key])])
        rep.add(Table("step", f"Step on {est.get('hardware', '?')}", ["quantity", "value"],
                      rows))
        step = est.get("step_time_s")
        phases = est.get("phase_seconds") or {}
        rep.add(Table("time-phase", "Time by phase", ["phase", "time", "share"],
                      [[p, fmt.seconds(s), _share(s, step)] for p, s in phases.items()
                       if _num(s) > 0]))
        mods = [m for m in est.get("modules") or [] if isinstance(m, dict)]
        rep.add(Table("time-module", "Time by module", ["module", "time", "share"],
                      [[m.get("path") or "(model)", fmt.seconds(m.get("seconds")),
                        _share(m.get("seconds"), step)] for m in mods[:20]]))

    mod_time = {m.get("path"): m.get("seconds") for m in (est or {}).get("modules") or []
                if isinstance(m, dict)}
    modules = [m for m in doc.get("modules") or [] if isinstance(m, dict)
               and _num(m.get("depth")) <= 2]
    total = flops.get("total")
    cols = ["module", "class", "repeat", "params", "fwd FLOPs", "bwd FLOPs", "opt FLOPs",
            "share", "saved act."] + (["time"] if mod_time else [])
    rows = []
    for m in sorted(modules, key=lambda m: -_num(_get(m, "flops", "total")))[:25]:
        f = m.get("flops") or {}
        row = [m.get("path") or "(model)", str(m.get("class", "")),
               str(m["repeat"]) if _num(m.get("repeat")) > 1 else "",
               fmt.si(m.get("params")), fmt.si(f.get("forward")), fmt.si(f.get("backward")),
               fmt.si(f.get("optimizer")), _share(f.get("total"), total),
               fmt.nbytes(m.get("activations_saved"))]
        if mod_time:
            row.append(fmt.seconds(mod_time.get(m.get("path"))))
        rows.append(row)
    rep.add(Table("modules", "Modules (to depth 2, by FLOPs)", cols, rows, "ll" + "r" * 8
                  + ("r" if mod_time else "")))

    est_class = {c.get("class"): c for c in (est or {}).get("op_classes") or []
                 if isinstance(c, dict)}
    cols = ["class", "ops", "FLOPs", "share", "bytes moved", "FLOP/B"]
    if est_class:
        cols += ["time", "time share", "bound", "achieved"]
    rows = []
    for c in doc.get("op_classes") or []:
        moved = _num(c.get("bytes_read")) + _num(c.get("bytes_written"))
        row = [str(c.get("class")), fmt.count(c.get("ops")), fmt.si(c.get("flops"), "FLOP"),
               fmt.percent(c.get("flops_share")), fmt.nbytes(moved),
               fmt.sig(_num(c.get("flops")) / moved) if moved else "-"]
        if est_class:
            e = est_class.get(c.get("class"), {})
            row += [fmt.seconds(e.get("seconds")), fmt.percent(e.get("share")),
                    str(e.get("bound", "-")), fmt.si(e.get("achieved_flops_per_s"), "FLOP/s")]
        rows.append(row)
    rep.add(Table("op-classes", "Op classes" + (" (time and roofline)" if est_class else ""),
                  cols, rows, "l" + "r" * 7 + "lr" if est_class else ""))

    rows = [[str(r.get("op")), fmt.count(r.get("occurrences")), fmt.nbytes(r.get("bytes_read")),
             fmt.nbytes(r.get("bytes_written")), ", ".join(map(str, r.get("phases") or []))]
            for r in doc.get("ops_without_rule") or [] if isinstance(r, dict)]
    rep.add(Table("no-rule", "Ops without a FLOP rule",
                  ["op", "occurrences", "bytes read", "bytes written", "phases"], rows,
                  "lrrrl", note="their bytes are counted, their FLOPs are not"))

    sym = doc.get("symbolic")
    if isinstance(sym, dict):
        rows = [[str(k), "-" if v is None else str(v)]
                for k, v in (sym.get("formulas") or {}).items()]
        rep.add(Table("symbolic", "Exact formulas in b and s", ["quantity", "formula"], rows,
                      "ll", note=sym.get("method")))
    solve = doc.get("solve")
    if isinstance(solve, dict):
        rows = [["query", str(solve.get("query"))], ["answer", f"{solve.get('variable')} = "
                                                              f"{solve.get('max')}"],
                ["peak memory at answer", fmt.nbytes(solve.get("peak_memory_bytes_at_max"))],
                ["limit", fmt.nbytes(solve.get("limit_bytes"))]]
        rep.add(Table("solve", "Largest size that fits", ["quantity", "value"], rows, "ll",
                      note=solve.get("method")))


# ---------------------------------------------------------------- plan estimates

def _estimate_tables(est: dict[str, Any], rep: Report, prefix: str = "") -> None:
    """Components, per-rank memory, pipeline and collectives of a plan estimate; titles start
    with ``prefix`` (e.g. "Best plan: ") or are capitalised."""
    def title(text: str) -> str:
        return prefix + text if prefix else text[:1].upper() + text[1:]

    step = est.get("step_time_s")
    comps = est.get("components_s") or {}
    rows = [[name.replace("_", " "), fmt.seconds(t), _share(t, step)]
            for name, t in comps.items() if _num(t) > 0]
    if rows:
        rows.append(["step", fmt.seconds(step), "100.0%"])
    rep.add(Table("components", title("components of the step (critical pipeline rank)"),
                  ["component", "time", "share"], rows))

    parts = ("weights", "gradients", "optimizer_states", "activations", "transient")
    rows = []
    for rk in est.get("ranks") or []:
        mem = rk.get("memory_bytes") or {}
        rows.append([str(rk.get("rank")), str(rk.get("layers", "")),
                     str(rk.get("micro_batches_in_flight", ""))]
                    + [fmt.nbytes(mem.get(p)) for p in parts] + [fmt.nbytes(mem.get("total"))])
    mem = est.get("memory_bytes") or {}
    note = None
    if mem:
        note = (f"usable {fmt.nbytes(mem.get('usable_per_gpu'))} of "
                f"{fmt.nbytes(mem.get('capacity_per_gpu'))} per GPU; "
                f"{'fits' if est.get('fits') else 'does not fit'}")
    rep.add(Table("ranks", title("memory per GPU by pipeline rank"),
                  ["rank", "layers", "in flight", "weights", "gradients", "optimizer states",
                   "activations", "transient", "total"], rows, note=note))

    pipe = est.get("pipeline") or {}
    if pipe:
        rows = [["schedule", str(pipe.get("schedule"))],
                ["stages x virtual", f"{pipe.get('stages')} x {pipe.get('virtual_stages')}"],
                ["layers per stage", ", ".join(map(str, pipe.get("layers_per_stage") or []))],
                ["micro-batches", str(pipe.get("micro_batches"))],
                ["makespan", fmt.seconds(pipe.get("makespan_s"))],
                ["bubble", fmt.percent(pipe.get("bubble_fraction"))],
                ["critical rank", str(pipe.get("critical_rank"))],
                ["partition", str(pipe.get("partition"))], ["method", str(pipe.get("method"))]]
        rep.add(Table("pipeline", title("pipeline"), ["quantity", "value"], rows, "lr"))

    rows = []
    for c in (est.get("comm") or [])[:12]:
        each, per = _num(c.get("seconds_each")), _num(c.get("per_step"))
        rows.append([str(c.get("group")), str(c.get("collective")), fmt.nbytes(c.get("bytes")),
                     str(c.get("ranks")), "/".join(map(str, c.get("levels") or [])),
                     str(c.get("algorithm")), fmt.number(per), fmt.seconds(each),
                     fmt.seconds(each * per), str(c.get("note", ""))])
    rep.add(Table("comm", title("collectives (critical rank)"),
                  ["group", "collective", "size", "ranks", "levels", "algorithm", "per step",
                   "each", "total", "note"], rows, "llrrllrrrl",
                  note="total is the collective's time if nothing hid it; components show what "
                       "is exposed"))


def _summary_rows(est: dict[str, Any]) -> list[list[str]]:
    mem = est.get("memory_bytes") or {}
    rows = [["step time", fmt.seconds(est.get("step_time_s"))],
            ["tokens/s", fmt.si(est.get("tokens_per_s"))],
            ["MFU", fmt.percent(est.get("mfu"))], ["HFU", fmt.percent(est.get("hfu"))],
            ["memory per GPU (peak rank)", fmt.nbytes(mem.get("peak_per_gpu"))],
            ["usable per GPU", fmt.nbytes(mem.get("usable_per_gpu"))],
            ["fits", "yes" if est.get("fits") else "no"]]
    eco = est.get("economics") or {}
    if eco.get("joules_per_token") is not None:
        rows.append(["energy per token", fmt.si(_num(eco["joules_per_token"]), "J")])
    if eco.get("usd_per_million_tokens") is not None:
        rows.append(["cost per million tokens", fmt.usd(_num(eco["usd_per_million_tokens"]))])
    return rows


def _plan(doc: dict[str, Any], rep: Report) -> None:
    plans = [p for p in doc.get("plans") or [] if isinstance(p, dict)]
    objective = doc.get("objective", "time")
    cols = ["rank", "plan", "GPUs", "step time", "tokens/s", "MFU", "memory/GPU"]
    if objective != "time":
        cols.append(str(objective))
    rows = []
    for p in plans:
        e = p.get("estimate") or {}
        row = [str(p.get("rank")), short_plan(p.get("plan", "")),
               str(_get(p, "fields", "gpus", default="")), fmt.seconds(e.get("step_time_s")),
               fmt.si(e.get("tokens_per_s")), fmt.percent(e.get("mfu")),
               fmt.nbytes(_get(e, "memory_bytes", "peak_per_gpu"))]
        if objective != "time":
            row.append(fmt.number(p.get("objective_value")))
        rows.append(row)
    rep.add(Table("plans", f"Plan ranking (by {objective})", cols, rows, "rl" + "r" * 5
                  + ("r" if objective != "time" else ""),
                  note=f"best: {plans[0].get('plan')}" if plans else None))
    if not plans:
        closest = doc.get("closest") or {}
        rows = [[k.replace("_", " "), fmt.nbytes(v) if "bytes" in k else str(v)]
                for k, v in closest.items()]
        rep.add(Table("closest", "No plan fits: the closest", ["quantity", "value"],
                      rows or [["plans", "none fits"]], "ll"))
    best = chosen_estimate(doc)
    if best:
        rep.add(Table("best", "Best plan", ["quantity", "value"], _summary_rows(best)))
        _estimate_tables(best, rep, "Best plan: ")
    rows = [[short_plan(p.get("plan", "")), str(p.get("gpus")), fmt.seconds(p.get("step_time_s")),
             fmt.nbytes(p.get("peak_per_gpu_bytes")), fmt.percent(p.get("mfu"))]
            for p in doc.get("pareto") or [] if isinstance(p, dict)]
    rep.add(Table("pareto", "Pareto front (step time, memory per GPU, GPUs)",
                  ["plan", "GPUs", "step time", "memory/GPU", "MFU"], rows))
    s = doc.get("search") or {}
    rows = [[k.replace("_", " "), fmt.seconds(v) if k.endswith("seconds") else fmt.number(v)]
            for k, v in s.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    rep.add(Table("search", "Search", ["quantity", "value"], rows))


def _estimate(doc: dict[str, Any], rep: Report) -> None:
    est = chosen_estimate(doc) or {}
    rep.add(Table("summary", "Estimate", ["quantity", "value"], _summary_rows(est)))
    _estimate_tables(est, rep)


def _validation(doc: dict[str, Any], rep: Report) -> None:
    rows = []
    for c in _get(doc, "validation", "components", default=[]) or []:
        f = fmt.seconds if c.get("unit") == "s" else fmt.nbytes
        err = c.get("error")
        rows.append([str(c.get("name", "")).replace("_", " "), f(c.get("predicted")),
                     f(c.get("measured")), "-" if err is None else fmt.signed_percent(err, 1)])
    rep.add(Table("validation", "Predicted vs measured", ["component", "predicted", "measured",
                                                          "error"], rows,
                  note="error = predicted / measured - 1; measured: median over the timed steps "
                       "on the slowest rank"))
    rows = []
    for r in _get(doc, "validation", "measured", default=[]) or []:
        med = r.get("median") or {}
        spread = (r.get("spread") or {}).get("step") or []
        rows.append([str(r.get("rank")), fmt.seconds(med.get("step")),
                     " - ".join(fmt.seconds(x) for x in spread[:2]) if spread else "-",
                     fmt.seconds(med.get("forward")), fmt.seconds(med.get("backward")),
                     fmt.seconds(med.get("optimizer")),
                     fmt.nbytes(_get(r, "memory", "peak_bytes"))])
    rep.add(Table("measured", "Measured per rank", ["rank", "step (median)", "step range",
                                                    "forward", "backward", "optimizer",
                                                    "peak memory"], rows))
    est = chosen_estimate(doc)
    if est:
        rep.add(Table("components", "Predicted components of the step", ["component", "time",
                                                                          "share"],
                      [[n.replace("_", " "), fmt.seconds(t), _share(t, est.get("step_time_s"))]
                       for n, t in (est.get("components_s") or {}).items() if _num(t) > 0]))
    rep.add(Table("warnings", "Warnings", ["warning"], [[str(w)] for w in doc.get("warnings")
                                                         or []], "l"))


def _timeline_table(tl: Timeline) -> Table:
    rows = []
    for i, lane in enumerate(tl.lanes):
        bars = [b for b in tl.bars if b.lane == i]
        busy = sum(b.dur for b in bars if b.category != "bubble")
        idle = sum(b.dur for b in bars if b.category == "bubble")
        rows.append([lane, str(len(bars)), fmt.seconds(busy), fmt.seconds(idle),
                     _share(busy, tl.span)])
    return Table("timeline", f"Pipeline timeline ({tl.source})",
                 ["lane", "events", "busy", "bubble", "busy share"], rows,
                 note=f"span {fmt.seconds(tl.span)}")


# ---------------------------------------------------------------- sweeps

def fitting_points(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The grid points where some plan fits, with a step time."""
    return [p for p in doc.get("points") or [] if isinstance(p, dict) and p.get("fits")
            and _num(p.get("step_time_s")) > 0]


def fastest_point(doc: dict[str, Any]) -> dict[str, Any] | None:
    pts = fitting_points(doc)
    return min(pts, key=lambda p: _num(p["step_time_s"])) if pts else None


def _sweep_facts(doc: dict[str, Any]) -> list[tuple[str, str]]:
    b = doc.get("base") if isinstance(doc.get("base"), dict) else {}
    facts = []
    if b:
        facts.append(("base", f"cluster {b.get('cluster', '?')}, {b.get('gpus', '?')} GPUs, "
                              f"global batch {b.get('gbs', '?')} sequences of "
                              f"{b.get('seq_len', '?')} tokens, {b.get('dtype', '?')}; best "
                              f"plan searched again at every point (objective: "
                              f"{b.get('objective', 'time')})"))
    keys = sweep_keys(doc)
    axes = [a for a in doc.get("axes") or [] if isinstance(a, dict)]
    if axes:
        facts.append(("varied", "; ".join(f"{a.get('key')} = "
                                          f"{', '.join(map(str, a.get('values') or []))}"
                                          for a in axes)))
    prices = doc.get("prices_usd_per_gpu_hour")
    if isinstance(prices, dict) and prices:
        facts.append(("prices per GPU-hour", ", ".join(f"{k} ${_num(v):g}"
                                                        for k, v in prices.items())))
    points = [p for p in doc.get("points") or [] if isinstance(p, dict)]
    fit = fitting_points(doc)
    grid = f"{len(points)} points, {len(fit)} with a plan that fits"
    if _num(doc.get("seconds")):
        grid += f", searched in {fmt.seconds(_num(doc['seconds']))}"
    facts.append(("grid", grid))
    best = fastest_point(doc)
    if best:
        facts.append(("fastest", f"{point_label(best.get('point'), keys)}: "
                                 f"{fmt.seconds(best.get('step_time_s'))}, "
                                 f"{short_plan(best.get('plan') or '')}"))
    return facts


def _sweep(doc: dict[str, Any], rep: Report) -> None:
    keys = sweep_keys(doc)
    points = [p for p in doc.get("points") or [] if isinstance(p, dict)]
    priced = any(p.get("usd_per_million_tokens") is not None for p in points)
    cols = [*keys, "step time", "tokens/s", "MFU", "memory/GPU", "tokens/J",
            *(["$/M tokens"] if priced else []), "bottleneck", "best plan"]
    rows = []
    for p in points:
        vals = [str((p.get("point") or {}).get(k, "")) for k in keys]
        if not p.get("fits"):
            rows.append(vals + ["no plan fits"] + ["-"] * (len(cols) - len(keys) - 1))
            continue
        usd = p.get("usd_per_million_tokens")
        rows.append(vals + [fmt.seconds(p.get("step_time_s")), fmt.si(p.get("tokens_per_s")),
                            fmt.percent(p.get("mfu")), fmt.nbytes(p.get("peak_per_gpu_bytes")),
                            "-" if p.get("tokens_per_joule") is None
                            else fmt.si(_num(p["tokens_per_joule"])),
                            *([fmt.usd(usd)] if priced else []),
                            str(p.get("bottleneck", "-")).replace("_", " "),
                            short_plan(p.get("plan") or "-")])
    best = fastest_point(doc)
    note = (f"fastest: {point_label(best.get('point'), keys)}; bottleneck: the largest "
            "component of the step" if best else "no plan fits at any point")
    rep.add(Table("grid", "Grid: the best plan at every point", cols, rows,
                  "l" * len(keys) + "r" * (5 + priced) + "ll", note=note))
    sens = doc.get("sensitivity")
    if isinstance(sens, dict):
        rows = [[str(r.get("resource")), "-" if _n(r.get("elasticity")) is None
                 else f"{_num(r['elasticity']):+.3f}",
                 fmt.seconds(r.get("step_time_if_doubled_s")),
                 fmt.seconds(r.get("predicted_if_doubled_s"))]
                for r in sens.get("resources") or [] if isinstance(r, dict)]
        rep.add(Table("sensitivity", "Sensitivity of step time at "
                      f"{point_label(sens.get('point'), keys)}",
                      ["resource", "elasticity", "step time if doubled",
                       "predicted from elasticity"], rows,
                      note=f"elasticity d ln T / d ln r with the plan fixed "
                           f"({short_plan(sens.get('plan') or '?')}): -1: the step time halves "
                           "when the resource doubles; 0: it does not matter"))


_TITLES = {"analysis": "analysis", "plan": "plan search", "estimate": "plan estimate",
           "validation": "validation", "sweep": "sweep", "inference": "inference"}


def build_report(doc: dict[str, Any], timeline: Timeline | None = None) -> Report:
    """Title, facts and tables of a checked document (``document.check_document``)."""
    kind = doc["kind"]
    rep = Report(title=f"archcost {_TITLES[kind]}: {model_title(doc)}", facts=_facts(doc))
    if kind == "plan":
        facts = [("objective", str(doc.get("objective", "time"))),
                 ("GPUs", ", ".join(map(str, doc.get("gpus") or []))),
                 ("global batch", str(doc.get("gbs")))]
        for key in ("constraints", "fixed"):
            if doc.get(key):
                facts.append((key, ", ".join(map(str, doc[key]))))
        rep.facts += facts
    if kind in ("estimate", "validation") and doc.get("plan"):
        rep.facts.append(("plan", str(doc["plan"])))
    from archcost.report import infer_tables

    if infer_tables.is_infer_sweep(doc):
        rep.title = f"archcost inference sweep: {model_title(doc)}"
        rep.facts += infer_tables.infer_sweep_facts(doc)
    elif kind == "sweep":
        rep.facts += _sweep_facts(doc)
    if kind == "inference":  # its workload is the generation fact
        rep.facts = [f for f in rep.facts if f[0] != "workload"]
        rep.facts += infer_tables.inference_facts(doc)
    if kind == "validation":
        rep.facts.append(("run", f"{doc.get('nproc', '?')} x {doc.get('device', '?')} "
                                 f"({doc.get('machine', '?')}), {doc.get('warmup', '?')} warm-up "
                                 f"+ {doc.get('steps', '?')} timed steps"))
    tables = {"analysis": _analysis, "plan": _plan, "estimate": _estimate,
              "validation": _validation, "sweep": _sweep,
              "inference": infer_tables.inference_tables}[kind]
    if infer_tables.is_infer_sweep(doc):
        tables = infer_tables.infer_sweep_tables
    tables(doc, rep)
    if timeline is not None and timeline.bars:
        rep.add(_timeline_table(timeline))
    return rep
