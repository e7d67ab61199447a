"""``archcost profiles list|show``: the bundled GPU and cluster profiles."""

from __future__ import annotations

import dataclasses
import json
from typing import Annotated

import typer
from rich.table import Table

from archcost.cli.common import DebugOpt, out_console, reports_errors
from archcost.cli.render import si

app = typer.Typer(help="Bundled GPU and cluster hardware profiles.", no_args_is_help=True)


@app.command("list")
@reports_errors
def list_(debug: DebugOpt = False) -> None:
    """List bundled GPUs and clusters with their headline figures."""
    from archcost.hardware.profile import list_profiles, load_cluster, load_gpu

    names = list_profiles()
    gpus = Table(title="GPUs", title_justify="left")
    for col in ("name", "bf16 dense", "fp8 dense", "memory", "mem BW", "TDP"):
        gpus.add_column(col, justify="left" if col == "name" else "right")
    for name in names["gpus"]:
        g = load_gpu(name)
        fp8 = g.peak_flops_per_s.get("fp8")
        gpus.add_row(name, si(g.peak_flops_per_s.get("bf16", 0), "FLOP/s"),
                     si(fp8, "FLOP/s") if fp8 else "-", si(g.mem_bytes, "B"),
                     si(g.mem_bw_bytes_per_s, "B/s"), f"{g.tdp_w:.0f} W")
    out_console.print(gpus)
    clusters = Table(title="clusters", title_justify="left")
    for col in ("name", "gpu", "GPUs/node", "levels (per-GPU bandwidth, one direction)"):
        clusters.add_column(col)
    for name in names["clusters"]:
        c = load_cluster(name)
        levels = ", ".join(
            f"{lv.name} {si(lv.bandwidth_per_gpu_bytes_per_s, 'B/s')}"
            f" x{lv.domain_size if lv.domain_size else 'any'}" for lv in c.levels
        )
        clusters.add_row(name, c.gpu.name, str(c.gpus_per_node), levels)
    out_console.print(clusters)


@app.command("show")
@reports_errors
def show(
    name: Annotated[str, typer.Argument(help="Profile name or path to a .yaml file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON (SI units).")] = False,
    debug: DebugOpt = False,
) -> None:
    """Show every field of a GPU or cluster profile."""
    from archcost.hardware.profile import load_any

    prof = load_any(name)
    data = _plain(dataclasses.asdict(prof))
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    tab = Table(title=name, show_header=False, title_justify="left")
    tab.add_column("field")
    tab.add_column("value")
    for key, value in _flatten(data):
        tab.add_row(key, _fmt(key, value))
    out_console.print(tab)


def _plain(obj):
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if hasattr(obj, "value"):
        return obj.value
    return obj


def _flatten(data, prefix=""):
    for key, value in data.items():
        if isinstance(value, dict) and "points" not in value:
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _fmt(key: str, value) -> str:
    if isinstance(value, float):
        if key.endswith("bytes_per_s"):
            return si(value, "B/s")
        if key.endswith("_bytes"):
            return si(value, "B")
        if "flops_per_s" in key:
            return si(value, "FLOP/s")
        if key.endswith("_s"):
            return f"{value * 1e6:.3g} us"
        if key.endswith("_w"):
            return f"{value:.0f} W"
    if isinstance(value, dict) and "points" in value:
        return "  ".join(f"{x:.0e}:{y:.2f}" for x, y in value["points"])
    return str(value)
