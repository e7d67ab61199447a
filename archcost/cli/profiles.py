"""``archcost profiles list|show``: the bundled GPU, cluster and runtime profiles, printed with
units.

Mounted by the main app as ``app.add_typer(profiles.app, name="profiles")``. Profiles hold SI
units; this is the display boundary where they become "989 TFLOP/s", "3.35 TB/s", "4 us".
``--json`` prints the SI values under the dataclass field names.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from archcost.cli.common import DebugOpt, out_console, reports_errors

__all__ = ["app", "to_json"]

app = typer.Typer(
    help="Hardware and runtime profiles: the bundled GPUs, clusters and software stacks, or "
         "your own YAML files.",
    no_args_is_help=True,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON in SI units instead of tables.")]


@app.command("list")
@reports_errors
def list_(as_json: JsonOpt = False, debug: DebugOpt = False) -> None:
    """List the bundled GPUs, clusters and runtimes with their headline figures."""
    from archcost.hardware.profile import list_profiles, load_cluster, load_gpu
    from archcost.runtime import list_runtimes, load_runtime

    names = list_profiles()
    gpus = [load_gpu(n) for n in names["gpus"]]
    clusters = [load_cluster(n) for n in names["clusters"]]
    runtimes = [load_runtime(n) for n in list_runtimes()]
    if as_json:
        typer.echo(json.dumps({"gpus": [to_json(g) for g in gpus],
                               "clusters": [to_json(c) for c in clusters],
                               "runtimes": [to_json(r) for r in runtimes]}, indent=2))
        return
    tab = Table(title="GPUs (dense peaks, per GPU)", title_justify="left")
    tab.add_column("name", no_wrap=True)
    tab.add_column("vendor")
    for col in ("bf16 TFLOP/s", "fp8 TFLOP/s", "memory GB", "mem BW TB/s", "TDP W"):
        tab.add_column(col, justify="right")
    for g in gpus:
        fp8 = g.peak_flops_per_s.get("fp8")
        tab.add_row(g.name, g.vendor, f"{g.peak_flops_per_s.get('bf16', 0) / 1e12:,.0f}",
                    f"{fp8 / 1e12:,.0f}" if fp8 else "-", f"{g.mem_bytes / 1e9:,.0f}",
                    f"{g.mem_bw_bytes_per_s / 1e12:.2f}", f"{g.tdp_w:,.0f}")
    out_console.print(tab)
    tab = Table(title="clusters (link levels innermost first; bandwidth per GPU, each way)",
                title_justify="left")
    for col in ("name", "gpu", "GPUs/node", "levels"):
        tab.add_column(col, justify="right" if col == "GPUs/node" else "left", no_wrap=col != "levels")
    for c in clusters:
        levels = ", ".join(f"{lv.name} ({_domain(lv.domain_size)}, {_si(lv.bandwidth_per_gpu_bytes_per_s, 'B/s')})"
                           for lv in c.levels)
        tab.add_row(c.name, c.gpu.name, str(c.gpus_per_node), levels)
    out_console.print(tab)
    tab = Table(title="runtimes (software stacks; --runtime)", title_justify="left")
    for col in ("name", "attention", "fused", "optimizer", "selective", "grad reduce"):
        tab.add_column(col, no_wrap=col == "name")
    for r in runtimes:
        tab.add_row(r.name, ", ".join(k.value for k in r.attention_kernel),
                    ", ".join(sorted(f.value for f in r.fusions)) or "-", r.optimizer.value,
                    r.selective_recompute.value, r.gradient_reduce_dtype.value)
    out_console.print(tab)


@app.command("show")
@reports_errors
def show(
    name: Annotated[str, typer.Argument(help="A bundled profile name, or a path to a .yaml file.")],
    gpus: Annotated[int | None, typer.Option("--gpus", help="Size a cluster to this many GPUs.")] = None,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Show every field of a GPU, cluster or runtime profile, with units."""
    from archcost.errors import ConfigError
    from archcost.hardware.profile import ClusterProfile, list_profiles, load_any
    from archcost.hardware.reader import read_yaml
    from archcost.runtime import list_runtimes, load_runtime

    hw = list_profiles()
    is_file = name.endswith((".yaml", ".yml")) or "/" in name
    if (name in list_runtimes() and name not in hw["gpus"] + hw["clusters"]) or (
            is_file and Path(name).is_file() and not {"peak_flops", "levels", "gpus_per_node"}
            & set(read_yaml(Path(name)))):
        rt = load_runtime(name)
        if as_json:
            typer.echo(json.dumps(to_json(rt), indent=2))
            return
        out_console.print(_table(f"runtime {rt.name}", _runtime_rows(rt)))
        return
    prof = load_any(name)
    if gpus is not None:
        if not isinstance(prof, ClusterProfile):
            raise ConfigError(f"--gpus sizes a cluster, but '{name}' is a GPU profile; drop --gpus "
                              "or give a cluster")
        prof = prof.with_gpus(gpus)
    if as_json:
        typer.echo(json.dumps(to_json(prof), indent=2))
        return
    if isinstance(prof, ClusterProfile):
        out_console.print(_table(f"cluster {prof.name}", _cluster_rows(prof)))
        prof = prof.gpu
    out_console.print(_table(f"GPU {prof.name}", _gpu_rows(prof)))


def to_json(prof: Any) -> dict[str, Any]:
    """A profile as plain JSON data: SI values under the dataclass field names."""
    from archcost.runtime import RuntimeProfile

    if isinstance(prof, RuntimeProfile):
        return {"kind": "runtime", **prof.summary(), "description": prof.description,
                "source_path": prof.source_path}
    kind = "cluster" if hasattr(prof, "levels") else "gpu"
    doc = _plain(dataclasses.asdict(prof))
    for lv in doc.get("levels", []):  # (name, latency, bandwidth) triples as a mapping
        lv["collectives"] = {name: {"latency_s": lat, "bandwidth_per_gpu_bytes_per_s": bw}
                             for name, lat, bw in lv["collectives"]}
    return {"kind": kind, **doc}


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, enum.Enum):
        return obj.value
    return obj


def _table(title: str, rows: list[tuple[str, str]]) -> Table:
    tab = Table(title=title, show_header=False, title_justify="left")
    tab.add_column("field", style="bold")
    tab.add_column("value", overflow="fold")
    for key, value in rows:
        tab.add_row(key, value)
    return tab


def _gpu_rows(g) -> list[tuple[str, str]]:
    from archcost.hardware.profile import DTYPES

    rows = [("name", g.name), ("vendor", g.vendor)]
    for dt in DTYPES:
        peak = g.peak_flops_per_s.get(dt)
        rows.append((f"peak {dt} (dense)", f"{peak / 1e12:,.4g} TFLOP/s" if peak else "- (unsupported)"))
    rows += [
        ("memory", f"{_si(g.mem_bytes, 'B')} ({g.mem_bytes / 2**30:.1f} GiB)"),
        ("memory bandwidth", _si(g.mem_bw_bytes_per_s, "B/s")),
        ("last-level cache", _si(g.l2_bytes, "B")),
        ("kernel launch", _si(g.kernel_launch_s, "s")),
        ("TDP", _si(g.tdp_w, "W")),
        ("idle power", f"{g.idle_power_fraction:.0%} of TDP ({_si(g.tdp_w * g.idle_power_fraction, 'W')})"),
        ("price per GPU-hour", _price(g.price_per_gpu_hour_usd)),
        ("matmul efficiency (FLOPs: fraction)", _curve(g.matmul_efficiency)),
        *([("matmul by shape (m, n, k)", _shape(g.matmul_shape_efficiency))]
          if g.matmul_shape_efficiency else []),
        ("attention efficiency (FLOPs: fraction)", _curve(g.attention_efficiency)),
        *([("attention per (batch, head) slice (FLOPs: fraction)",
            _curve(g.attention_head_efficiency))] if g.attention_head_efficiency else []),
        ("memory efficiency (bytes: fraction)", _curve(g.memory_efficiency)),
        *[(label, _curve(c)) for label, c in (
            ("convolution forward (FLOPs: fraction)", g.conv_efficiency),
            ("convolution backward (FLOPs: fraction)", g.conv_backward_efficiency)) if c],
        ("file", g.source_path),
    ]
    return rows


def _runtime_rows(r) -> list[tuple[str, str]]:
    return [
        ("name", r.name), ("description", r.description),
        ("attention kernel (first the GPU rates)", ", ".join(k.value for k in r.attention_kernel)),
        ("fused op families", ", ".join(sorted(f.value for f in r.fusions)) or "none"),
        ("optimizer kernel", r.optimizer.value),
        ("selective recompute", r.selective_recompute.value),
        ("gradient reduction dtype", r.gradient_reduce_dtype.value),
        ("data-parallel overlap at ZeRO stages", ", ".join(map(str, sorted(r.overlap_dp)))
         or "none"),
        ("tensor-parallel comm exposed", f"{r.tp_comm_exposed:g}"),
        ("allocator headroom", "-" if r.allocator_headroom is None
         else f"{r.allocator_headroom:g}"),
        ("FP8 recipe", "-" if r.fp8 is None else
         f"{r.fp8.recipe.value}, weight all-gather {'fp8' if r.fp8.weight_all_gather else 'bf16'}"),
        ("file", r.source_path),
    ]


def _shape(t) -> str:
    """A shape table in one line: its grid and the cells at the corners of it."""
    d, v = t.dims, t.values
    lo, hi = d[0], d[-1]
    corners = [(lo, lo, lo, v[0][0][0]), (lo, hi, hi, v[0][-1][-1]), (hi, hi, lo, v[-1][-1][0]),
               (hi, hi, hi, v[-1][-1][-1])]
    return (f"{len(d)}^3 cells over {', '.join(f'{x:g}' for x in d)}; "
            + ", ".join(f"({a:g}, {b:g}, {c:g}): {e:.2f}" for a, b, c, e in corners))


def _cluster_rows(c) -> list[tuple[str, str]]:
    rows = [
        ("name", c.name), ("gpu", c.gpu.name), ("GPUs per node", str(c.gpus_per_node)),
        ("nodes", str(c.nodes)), ("GPUs", str(c.gpus)),
        ("max nodes", str(c.max_nodes) if c.max_nodes is not None else "unbounded"),
        ("node power overhead", _si(c.node_power_overhead_w, "W")),
        ("price per GPU-hour", _price(c.price_per_gpu_hour_usd)),
    ]
    for i, lv in enumerate(c.levels):
        rows.append((f"level {i}: {lv.name}",
                     f"{_domain(lv.domain_size)}, {_si(lv.bandwidth_per_gpu_bytes_per_s, 'B/s')} per GPU "
                     f"each way, latency {_si(lv.latency_s, 's')}, {lv.topology.value}"))
        for name, lat, bw in lv.collectives:
            rows.append((f"  {name}", f"{_si(bw, 'B/s')} per GPU each way, latency {_si(lat, 's')}"))
    if c.notes:
        rows.append(("notes", c.notes))
    rows.append(("file", c.source_path))
    return rows


def _domain(size: int | None) -> str:
    return f"{size} GPUs" if size is not None else "unbounded"


def _price(usd: float | None) -> str:
    return f"${usd:.2f}/h" if usd is not None else "-"


def _curve(curve) -> str:
    return "  ".join(f"{x:.3g}: {y:.3g}" for x, y in curve.points)


_PREFIXES = ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, ""))


def _si(value: float, unit: str) -> str:
    """A value in SI units with a decimal prefix: 3.35e12, 'B/s' -> '3.35 TB/s'; seconds go down to ns."""
    if unit == "s":
        for scale, name in ((1.0, "s"), (1e-3, "ms"), (1e-6, "us"), (1e-9, "ns")):
            if abs(value) >= scale or name == "ns":
                return f"{value / scale:.4g} {name}"
    for scale, prefix in _PREFIXES:
        if abs(value) >= scale:
            return f"{value / scale:.4g} {prefix}{unit}"
    return f"{value:.4g} {unit}"
