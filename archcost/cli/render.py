"""Terminal rendering of analysis documents (display only, no computation): the totals, module
and op-class tables of ``analyze`` and, with ``--hardware``, the one-device estimate. Laid out
for the console's width by ``layout``; numbers by ``report.fmt``."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from archcost.cli.layout import Col, Grid, say
from archcost.report import fmt

__all__ = ["render_analysis", "render_estimate"]

_MODULE_LEGEND = ("x: occurrences of a repeated block; fwd, bwd, opt: FLOPs of forward, "
                  "backward and optimizer step; share: of the step's FLOPs; act.: saved "
                  "activations")


def _totals(doc: dict[str, Any]) -> Grid:
    t, w = doc["totals"], doc["workload"]
    prec = w["precision"] + (f" ({w['fp8_recipe']})" if w.get("fp8_recipe") else "")
    g = Grid(f"{doc['model']['name']}  b={w['batch_size']} s={w['seq_len']} {prec} "
             f"{w['optimizer']}", [Col("quantity", "left"), Col("value"), Col("exact")],
             header=False)
    g.row("parameters", fmt.si(t["params"]), fmt.count(t["params"]))
    g.row("trainable parameters", fmt.si(t["trainable_params"]),
          fmt.count(t["trainable_params"]))
    for phase in ("forward", "backward", "recompute", "optimizer", "total"):
        v = t["flops"][phase]
        if phase == "recompute" and not v:
            continue
        g.row(f"FLOPs {phase}", fmt.si(v, "FLOP"), fmt.count(v))
    for key in ("read", "written"):
        g.row(f"bytes {key}", fmt.nbytes(t["bytes"][key]), fmt.count(t["bytes"][key]))
    mem = t["memory_bytes"]
    for key in ("weights", "gradients", "optimizer_states", "lowp_state", "activations_saved"):
        if key in mem and (mem[key] or key != "lowp_state"):
            label = "low-precision state" if key == "lowp_state" else key.replace("_", " ")
            g.row(f"memory {label}", fmt.nbytes(mem[key]), fmt.count(mem[key]))
    g.row("arithmetic intensity", f"{fmt.sig(t['arithmetic_intensity'])} FLOP/B", "")
    return g


def _modules(doc: dict[str, Any], depth: int, top: int) -> Grid:
    g = Grid(f"modules (depth <= {depth}, top {top} by FLOPs)",
             [Col("module", "left", "list", key=True), Col("class", "left"), Col("x"),
              Col("params"), Col("fwd"), Col("bwd"), Col("opt"), Col("share"), Col("act.")],
             notes=[_MODULE_LEGEND])
    rows = [m for m in doc["modules"] if m["depth"] <= depth]
    total = doc["totals"]["flops"]["total"] or 1
    rows.sort(key=lambda m: -m["flops"]["total"])
    for m in sorted(rows[:top], key=lambda m: m["path"]):
        f = m["flops"]
        g.row(m["path"] or "(model)", m["class"], str(m["repeat"]) if m["repeat"] > 1 else "",
              fmt.si(m["params"]), fmt.si(f["forward"]), fmt.si(f["backward"]),
              fmt.si(f["optimizer"]), fmt.percent(f["total"] / total),
              fmt.nbytes(m["activations_saved"]))
    return g


def _classes(doc: dict[str, Any]) -> Grid:
    g = Grid("op classes", [Col("class", "left", key=True), Col("ops"), Col("FLOPs"),
                            Col("share"), Col("read"), Col("written"), Col("FLOP/B")],
             notes=["read, written: bytes between memory and compute"])
    for row in doc["op_classes"]:
        moved = row["bytes_read"] + row["bytes_written"]
        g.row(row["class"], fmt.count(row["ops"]), fmt.si(row["flops"]),
              fmt.percent(row["flops_share"]), fmt.nbytes(row["bytes_read"]),
              fmt.nbytes(row["bytes_written"]), fmt.sig(row["flops"] / moved) if moved else "-")
    return g


def _norule(doc: dict[str, Any]) -> Grid:
    g = Grid("ops without a FLOP rule (bytes still counted)",
             [Col("op", "left", "list", key=True), Col("occurrences"),
              Col("phases", "left", "list"), Col("read"), Col("written")])
    for row in doc["ops_without_rule"]:
        g.row(row["op"], fmt.count(row["occurrences"]), ",".join(row["phases"]),
              fmt.nbytes(row["bytes_read"]), fmt.nbytes(row["bytes_written"]))
    return g


def _symbolic(sym: dict[str, Any]) -> Grid:
    g = Grid(f"formulas in b, s ({sym['method']})",
             [Col("quantity", "left", key=True), Col("polynomial", "left", "words")])
    peak = sym.get("peak_memory") or {}
    for name, expr in sym["formulas"].items():
        if expr is None:
            expr = (f"(not fitted: {peak['reason']})" if name == "peak_memory_bytes"
                    and peak.get("reason") else "(no exact polynomial of degree 1 in b, 2 in s)")
        g.row(name, expr)
    if "step_time_note" in sym:
        g.note(sym["step_time_note"])
    return g


def render_analysis(console: Console, doc: dict[str, Any], depth: int = 2, top: int = 15) -> None:
    _totals(doc).print(console)
    _modules(doc, depth, top).print(console)
    _classes(doc).print(console)
    if doc["ops_without_rule"]:
        _norule(doc).print(console)
    else:
        say(console, "ops without a FLOP rule: none")
    cap = doc["capture"]
    say(console, f"captured by {cap['method']} in {fmt.seconds(cap['seconds'])}: "
                 f"{cap['ops_recorded']:,} ops recorded, {cap['ops_executed']:,} executed")
    for note in cap["notes"]:
        say(console, note)
    for line in assumption_lines(cap.get("assumptions")):
        say(console, line)
    if "solve" in doc:
        sv = doc["solve"]
        (other, fixed), = sv["fixed"].items()
        say(console, f"{sv['query']}: {sv['variable']} = {sv['max']:,} at {other} = "
                     f"{fixed:,} (peak {fmt.nbytes(sv['peak_memory_bytes_at_max'])} <= "
                     f"{fmt.nbytes(sv['limit_bytes'])}; {sv['method']})", style="bold")
    if "symbolic" in doc:
        sym = doc["symbolic"]
        _symbolic(sym).print(console)
        peak = sym.get("peak_memory") or {}
        if peak.get("pieces"):
            ranges = [f"{p['formula']} for {p['b_from']:,} <= b" + (
                f" <= {p['b_to']:,}" if p["b_to"] is not None else "") for p in peak["pieces"]]
            say(console, f"peak memory at s={peak['s']:,}, piecewise in b: " + "; ".join(ranges)
                + " (breakpoints checked by tracing on both sides)")


def render_estimate(console: Console, est: dict[str, Any]) -> None:
    mem = est["memory_bytes"]
    step = est["step_time_s"]
    g = Grid(f"estimate on one {est['hardware']} (peak "
             f"{fmt.si(est['peak_flops_per_s'], 'FLOP/s')}), runtime {est.get('runtime', 'eager')}",
             [Col("quantity", "left", "words"), Col("value", wrap="words")], header=False)
    g.row("step time (C)", fmt.seconds(step))
    for phase, t in est["phase_seconds"].items():
        if t:
            g.row(f"  {phase}", f"{fmt.seconds(t)} ({fmt.percent(t / step)})")
    g.row("MFU / HFU", f"{fmt.percent(est['mfu'])} / {fmt.percent(est['hfu'])}")
    g.row("peak memory (S)", fmt.nbytes(mem["peak"]))
    g.row("  persistent (weights, states)", fmt.nbytes(mem["persistent"]))
    g.row("  activations and temporaries", fmt.nbytes(mem["activations_and_temporaries_at_peak"]))
    g.row("  peak reached in", f"{mem['peak_at']['phase']} {mem['peak_at']['module'] or '(model)'}")
    if mem.get("reserved") is not None:
        g.row("  reserved by the allocator", fmt.nbytes(mem["reserved"]))
    g.row("device memory", fmt.nbytes(mem["capacity"]))
    g.row("fits", "yes" if est["fits"] else ("no", "bold red"))
    g.row("communication (C_comm)", "0 B on one device")
    g.print(console)
    roof = Grid(f"roofline by op class (ridge point "
                f"{fmt.sig(est['roofline']['ridge_point_flop_per_byte'])} FLOP/B)",
                [Col("class", "left", key=True), Col("time"), Col("share"), Col("bound", "left"),
                 Col("FLOP/B"), Col("attainable"), Col("achieved")])
    for row in est["op_classes"]:
        roof.row(row["class"], fmt.seconds(row["seconds"]), fmt.percent(row["share"]),
                 row["bound"], fmt.sig(row["arithmetic_intensity"]),
                 fmt.si(row["attainable_flops_per_s"], "FLOP/s"),
                 fmt.si(row["achieved_flops_per_s"], "FLOP/s"))
    roof.print(console)
    mods = Grid("time by module (top 10)", [Col("module", "left", "list", key=True),
                                            Col("time")])
    for row in est["modules"][:10]:
        mods.row(row["path"] or "(model)", fmt.seconds(row["seconds"]))
    mods.print(console)
    say(console, est["components"]["combination"], style="dim")


def assumption_lines(a: dict[str, Any] | None) -> list[str]:
    """One line per assumption the trace made (routing, assumed values, shape fallbacks)."""
    if not a:
        return []
    lines = []
    routers = a["routing"]["routers"]
    if routers:
        calls = sum(r["calls"] for r in routers)
        busiest = max(routers, key=lambda r: r["busiest_expert_tokens"] * r["experts"]
                      / max(1, r["tokens"] * r["top_k"]))
        lines.append(f"routing assumed: {a['routing']['description']} ({calls:,} router calls; "
                     f"e.g. {busiest['tokens']:,} tokens x top-{busiest['top_k']} over "
                     f"{busiest['experts']} experts, busiest {busiest['busiest_expert_tokens']:,})")
    for b in a["bounds"]:
        lines.append(f"value assumed: {b['op']} in '{b['module'] or '(model)'}' read a tensor "
                     f"computed from the weights: {b['rule']} ({b['calls']:,} calls)")
    for f in a["fallbacks"]:
        lines.append(f"shape fallback: {f['op']} in '{f['module'] or '(model)'}': {f['how']}")
    return lines
