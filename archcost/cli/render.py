"""Rich rendering of analysis documents for the terminal (display only, no computation)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["render_analysis", "si", "count"]


def si(value: float, unit: str = "", base: int = 1000) -> str:
    """1.5e12 -> '1.50 T' + unit."""
    prefixes = ["", "K", "M", "G", "T", "P", "E"]
    v = float(value)
    i = 0
    while abs(v) >= base and i < len(prefixes) - 1:
        v /= base
        i += 1
    return f"{v:.3g} {prefixes[i]}{unit}".rstrip() if i or unit else f"{v:.4g}"


def count(n: int) -> str:
    return f"{n:,}"


def _totals_table(doc: dict[str, Any]) -> Table:
    t = doc["totals"]
    w = doc["workload"]
    tab = Table(title=f"{doc['model']['name']}  b={w['batch_size']} s={w['seq_len']} "
                f"{w['precision']} {w['optimizer']}", show_header=False, title_justify="left")
    tab.add_column("quantity")
    tab.add_column("value", justify="right")
    tab.add_column("exact", justify="right", style="dim")
    tab.add_row("parameters", si(t["params"]), count(t["params"]))
    tab.add_row("trainable parameters", si(t["trainable_params"]), count(t["trainable_params"]))
    for phase in ("forward", "backward", "recompute", "optimizer", "total"):
        v = t["flops"][phase]
        if phase == "recompute" and not v:
            continue
        tab.add_row(f"FLOPs {phase}", si(v, "FLOP"), count(v))
    tab.add_row("bytes read", si(t["bytes"]["read"], "B"), count(t["bytes"]["read"]))
    tab.add_row("bytes written", si(t["bytes"]["written"], "B"), count(t["bytes"]["written"]))
    mem = t["memory_bytes"]
    for key in ("weights", "gradients", "optimizer_states", "activations_saved"):
        tab.add_row(f"memory {key.replace('_', ' ')}", si(mem[key], "B"), count(mem[key]))
    tab.add_row("arithmetic intensity", f"{t['arithmetic_intensity']:.2f} FLOP/B", "")
    return tab


def _modules_table(doc: dict[str, Any], depth: int, top: int) -> Table:
    tab = Table(title=f"modules (depth <= {depth}, top {top} by FLOPs)", title_justify="left")
    for col, just in (("module", "left"), ("class", "left"), ("x", "right"), ("params", "right"),
                      ("fwd FLOP", "right"), ("bwd FLOP", "right"), ("opt FLOP", "right"),
                      ("share", "right"), ("saved act.", "right")):
        tab.add_column(col, justify=just)
    rows = [m for m in doc["modules"] if m["depth"] <= depth]
    total = doc["totals"]["flops"]["total"] or 1
    rows.sort(key=lambda m: -m["flops"]["total"])
    shown = sorted(rows[:top], key=lambda m: m["path"])
    for m in shown:
        f = m["flops"]
        name = ("  " * max(m["depth"] - 1, 0)) + (m["path"].rsplit(".", 1)[-1] or "(model)")
        tab.add_row(
            name, m["class"], str(m["repeat"]) if m["repeat"] > 1 else "",
            si(m["params"]), si(f["forward"]), si(f["backward"]), si(f["optimizer"]),
            f"{100 * f['total'] / total:.1f}%", si(m["activations_saved"], "B"),
        )
    return tab


def _classes_table(doc: dict[str, Any]) -> Table:
    tab = Table(title="op classes", title_justify="left")
    for col in ("class", "ops", "FLOPs", "share", "bytes read", "bytes written", "FLOP/B"):
        tab.add_column(col, justify="left" if col == "class" else "right")
    for row in doc["op_classes"]:
        moved = row["bytes_read"] + row["bytes_written"]
        tab.add_row(
            row["class"], count(row["ops"]), si(row["flops"]), f"{100 * row['flops_share']:.1f}%",
            si(row["bytes_read"], "B"), si(row["bytes_written"], "B"),
            f"{row['flops'] / moved:.2f}" if moved else "-",
        )
    return tab


def _norule_table(doc: dict[str, Any]) -> Table:
    tab = Table(title="ops without a FLOP rule (bytes still counted)", title_justify="left")
    for col in ("op", "occurrences", "phases", "bytes read", "bytes written"):
        tab.add_column(col, justify="left" if col in ("op", "phases") else "right")
    for row in doc["ops_without_rule"]:
        tab.add_row(row["op"], count(row["occurrences"]), ",".join(row["phases"]),
                    si(row["bytes_read"], "B"), si(row["bytes_written"], "B"))
    return tab


def render_analysis(console: Console, doc: dict[str, Any], depth: int = 2, top: int = 15) -> None:
    console.print(_totals_table(doc))
    console.print(_modules_table(doc, depth, top))
    console.print(_classes_table(doc))
    if doc["ops_without_rule"]:
        console.print(_norule_table(doc))
    else:
        console.print("ops without a FLOP rule: none")
    cap = doc["capture"]
    console.print(
        f"captured by {cap['method']} in {cap['seconds']:.2f} s: {cap['ops_recorded']:,} ops "
        f"recorded, {cap['ops_executed']:,} executed"
    )
    for note in cap["notes"]:
        console.print(note)
    if "solve" in doc:
        sv = doc["solve"]
        (other, fixed), = sv["fixed"].items()
        console.print(
            f"[bold]{sv['query']}[/]: {sv['variable']} = {sv['max']:,} at {other} = {fixed:,} "
            f"(peak {si(sv['peak_memory_bytes_at_max'], 'B')} <= {si(sv['limit_bytes'], 'B')}; "
            f"{sv['method']})"
        )
    if "symbolic" in doc:
        sym = doc["symbolic"]
        tab = Table(title=f"formulas in b, s ({sym['method']})", title_justify="left")
        tab.add_column("quantity")
        tab.add_column("polynomial")
        for name, expr in sym["formulas"].items():
            tab.add_row(name, expr if expr is not None else "(no exact polynomial of degree 1 in b, 2 in s)")
        if "step_time_note" in sym:
            tab.caption = sym["step_time_note"]
        console.print(tab)


def _seconds(t: float) -> str:
    if t >= 1:
        return f"{t:.3g} s"
    if t >= 1e-3:
        return f"{t * 1e3:.3g} ms"
    return f"{t * 1e6:.3g} us"


def render_estimate(console: Console, est: dict[str, Any]) -> None:
    mem = est["memory_bytes"]
    tab = Table(title=f"estimate on one {est['hardware']} (peak {si(est['peak_flops_per_s'], 'FLOP/s')}), "
                f"runtime {est.get('runtime', 'eager')}", show_header=False, title_justify="left")
    tab.add_column("quantity")
    tab.add_column("value", justify="right")
    tab.add_row("step time (C)", _seconds(est["step_time_s"]))
    for phase, t in est["phase_seconds"].items():
        if t:
            tab.add_row(f"  {phase}", f"{_seconds(t)}  ({100 * t / est['step_time_s']:.1f}%)")
    tab.add_row("MFU / HFU", f"{100 * est['mfu']:.1f}% / {100 * est['hfu']:.1f}%")
    tab.add_row("peak memory (S)", si(mem["peak"], "B"))
    tab.add_row("  persistent (weights, states)", si(mem["persistent"], "B"))
    tab.add_row("  activations and temporaries", si(mem["activations_and_temporaries_at_peak"], "B"))
    tab.add_row("  peak reached in", f"{mem['peak_at']['phase']} {mem['peak_at']['module'] or '(model)'}")
    if mem.get("reserved") is not None:
        tab.add_row("  reserved by the allocator", si(mem["reserved"], "B"))
    tab.add_row("device memory", si(mem["capacity"], "B"))
    tab.add_row("fits", "yes" if est["fits"] else "[bold red]no[/]")
    tab.add_row("communication (C_comm)", "0 B on one device")
    console.print(tab)
    roof = Table(title=f"roofline by op class (ridge point "
                 f"{est['roofline']['ridge_point_flop_per_byte']:.0f} FLOP/B)", title_justify="left")
    for col in ("class", "time", "share", "bound", "FLOP/B", "attainable", "achieved"):
        roof.add_column(col, justify="left" if col in ("class", "bound") else "right")
    for row in est["op_classes"]:
        roof.add_row(row["class"], _seconds(row["seconds"]), f"{100 * row['share']:.1f}%", row["bound"],
                     f"{row['arithmetic_intensity']:.1f}", si(row["attainable_flops_per_s"], "FLOP/s"),
                     si(row["achieved_flops_per_s"], "FLOP/s"))
    console.print(roof)
    mods = Table(title="time by module (top 10)", title_justify="left")
    mods.add_column("module")
    mods.add_column("time", justify="right")
    for row in est["modules"][:10]:
        mods.add_row(row["path"] or "(model)", _seconds(row["seconds"]))
    console.print(mods)
    console.print(f"[dim]{est['components']['combination']}[/]")
