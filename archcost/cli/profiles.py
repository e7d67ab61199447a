"""``archcost profiles list|show``: the bundled GPU, cluster and runtime profiles, printed with
units.

Mounted by the main app as ``app.add_typer(profiles.app, name="profiles")``. Profiles hold SI
units; this is the display boundary where they become "989 TFLOP/s", "3.35 TB/s", "4 us" and,
memory being binary, "74.51 GiB" (``report.fmt``).
``--json`` prints the SI values under the dataclass field names.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from archcost.cli.common import out_console, reports_errors
from archcost.cli.layout import Col, Grid
from archcost.cli.options import DebugOpt, GpusOpt, JsonOpt, gpu_counts
from archcost.report import fmt

__all__ = ["app", "to_json"]

app = typer.Typer(
    help="Hardware and runtime profiles: the bundled GPUs, clusters and software stacks, or "
         "your own YAML files.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@app.command("list")
@reports_errors
def list_(as_json: JsonOpt = False, debug: DebugOpt = False) -> None:
    """List the bundled GPU, cluster and runtime profiles."""
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
    tab = Grid("GPUs (dense peaks, per GPU)",
               [Col("name", "left", key=True), Col("vendor", "left"), Col("bf16 TFLOP/s"),
                Col("fp8 TFLOP/s"), Col("mem GiB"), Col("mem TB/s"), Col("TDP W")],
               notes=["mem GiB: memory; mem TB/s: memory bandwidth; TDP W: board power"])
    for g in gpus:
        fp8 = g.peak_flops_per_s.get("fp8")
        tab.row(g.name, g.vendor, f"{g.peak_flops_per_s.get('bf16', 0) / 1e12:,.0f}",
                f"{fp8 / 1e12:,.0f}" if fp8 else "-", fmt.sig(g.mem_bytes / 2**30),
                f"{g.mem_bw_bytes_per_s / 1e12:.2f}", f"{g.tdp_w:,.0f}")
    tab.print(out_console)
    tab = Grid("clusters (link levels innermost first; bandwidth per GPU, each way)",
               [Col("name", "left", key=True), Col("gpu", "left"), Col("GPUs/node"),
                Col("levels", "left", "words")])
    for c in clusters:
        levels = ", ".join(f"{lv.name} ({_domain(lv.domain_size)}, "
                           f"{fmt.si(lv.bandwidth_per_gpu_bytes_per_s, 'B/s')})"
                           for lv in c.levels)
        tab.row(c.name, c.gpu.name, str(c.gpus_per_node), levels)
    tab.print(out_console)
    tab = Grid("runtimes (software stacks; --runtime)",
               [Col("name", "left", key=True), Col("attention", "left", "list"),
                Col("fused", "left", "list"), Col("optimizer", "left"),
                Col("selective", "left"), Col("reduce", "left")],
               notes=["attention: kernels in the stack's order, the first the GPU rates runs; "
                      "reduce: gradient reduction dtype"])
    for r in runtimes:
        tab.row(r.name, ",".join(k.value for k in r.attention_kernel),
                ",".join(sorted(f.value for f in r.fusions)) or "-", r.optimizer.value,
                r.selective_recompute.value, r.gradient_reduce_dtype.value)
    tab.print(out_console)


@app.command("show", short_help="Show every field of a GPU, cluster or runtime profile, with "
             "units.")
@reports_errors
def show(
    name: Annotated[str, typer.Argument(help="A bundled profile name, or a path to a .yaml file.")],
    gpus: GpusOpt = None,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Show every field of a GPU, cluster or runtime profile, with units (--json: SI values)."""
    from archcost.errors import ConfigError
    from archcost.hardware.profile import ClusterProfile, list_profiles, load_any
    from archcost.hardware.reader import read_yaml
    from archcost.runtime import list_runtimes, load_runtime

    counts = gpu_counts(gpus)
    if counts is not None and len(counts) > 1:
        raise ConfigError(f"--gpus {gpus}: show sizes a cluster to one GPU count, e.g. --gpus 64")
    hw = list_profiles()
    is_file = name.endswith((".yaml", ".yml")) or "/" in name
    if (name in list_runtimes() and name not in hw["gpus"] + hw["clusters"]) or (
            is_file and Path(name).is_file() and not {"peak_flops", "levels", "gpus_per_node"}
            & set(read_yaml(Path(name)))):
        rt = load_runtime(name)
        if as_json:
            typer.echo(json.dumps(to_json(rt), indent=2))
            return
        _table(f"runtime {rt.name}", _runtime_rows(rt)).print(out_console)
        return
    prof = load_any(name)
    if counts is not None:
        if not isinstance(prof, ClusterProfile):
            raise ConfigError(f"--gpus sizes a cluster, but '{name}' is a GPU profile; drop --gpus "
                              "or give a cluster")
        prof = prof.with_gpus(counts[0])
    if as_json:
        typer.echo(json.dumps(to_json(prof), indent=2))
        return
    if isinstance(prof, ClusterProfile):
        _table(f"cluster {prof.name}", _cluster_rows(prof)).print(out_console)
        prof = prof.gpu
    _table(f"GPU {prof.name}", _gpu_rows(prof)).print(out_console)


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


def _table(title: str, rows: list[tuple[str, str]]) -> Grid:
    tab = Grid(title, [Col("field", "left", "words"), Col("value", "left", "words")],
               header=False)
    for key, value in rows:
        tab.row((key, "bold"), value)
    return tab


def _gpu_rows(g) -> list[tuple[str, str]]:
    from archcost.hardware.profile import DTYPES

    rows = [("name", g.name), ("vendor", g.vendor)]
    for dt in DTYPES:
        peak = g.peak_flops_per_s.get(dt)
        rows.append((f"peak {dt} (dense)", _si(peak, _rate(dt)) if peak else "- (unsupported)"))
    rows += [(f"peak {dt} (2:4 sparse)", _si(g.sparse_peak_flops_per_s[dt], _rate(dt)))
             for dt in DTYPES if dt in g.sparse_peak_flops_per_s]
    rows += [
        ("memory", f"{fmt.nbytes(g.mem_bytes, 4)} ({fmt.count(g.mem_bytes)} bytes)"),
        *([("unified memory (shared with the CPU)",
            f"{fmt.nbytes(g.unified_memory_bytes, 4)}; the GPU may use "
            f"{g.mem_bytes / g.unified_memory_bytes:.0%} of it (memory above)")]
          if g.unified_memory_bytes else []),
        ("memory bandwidth", _si(g.mem_bw_bytes_per_s, "B/s")),
        ("last-level cache", fmt.nbytes(g.l2_bytes, 4)),
        ("kernel launch", fmt.seconds(g.kernel_launch_s, 4)),
        ("TDP", _si(g.tdp_w, "W")),
        ("idle power", f"{g.idle_power_fraction:.0%} of TDP "
                       f"({_si(g.tdp_w * g.idle_power_fraction, 'W')})"),
        ("price per GPU-hour", _price(g.price_per_gpu_hour_usd)),
        ("sustained clock in training", f"{g.sustained_clock:.3g} of the tables' clock"),
        ("matmul efficiency (FLOPs=fraction)", _curve(g.matmul_efficiency)),
        *[(f"matmul by shape (m, n, k), {dt}", _shape(t))
          for dt, t in g.matmul_shape_efficiency.items()],
        *[(f"matmul by shape, weights in the last-level cache (decode rows), {dt}", _shape(t))
          for dt, t in g.matmul_shape_efficiency_warm.items()],
        ("attention efficiency (FLOPs=fraction)", _curve(g.attention_efficiency)),
        *([("attention per (batch, head) slice (FLOPs=fraction)",
            _curve(g.attention_head_efficiency))] if g.attention_head_efficiency else []),
        *([("decode attention per (batch, head) slice (FLOPs=fraction)",
            _curve(g.attention_decode_efficiency))] if g.attention_decode_efficiency else []),
        *[(f"attention kernel {k} (head dim x seq)", _attention(t))
          for k, t in g.attention_kernels.items()],
        ("memory efficiency (bytes=fraction)", _curve(g.memory_efficiency, fmt.nbytes)),
        *[(label, _curve(c)) for label, c in (
            ("convolution forward (FLOPs=fraction)", g.conv_efficiency),
            ("convolution backward (FLOPs=fraction)", g.conv_backward_efficiency)) if c],
        ("file", _file(g.source_path)),
    ]
    return rows


def _rate(dtype: str) -> str:
    """The unit of a peak: integer tensor cores do operations, not floating-point ones."""
    return "OP/s" if dtype == "int8" else "FLOP/s"


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
        ("inference: host dispatch per op", "yes (eager Python)" if r.python_dispatch
         else "no (a compiled engine)"),
        ("inference: tp partial sums all-reduced once", "yes" if r.tp_sum_partials else "no"),
        ("inference: in-flight batching", "yes (--chunked-prefill by default)"
         if r.inflight_batching else "no"),
        ("inference: decode steps as CUDA graphs", _graphs(r)),
        ("file", r.source_path),
    ]


def _graphs(r) -> str:
    if not r.cuda_graphs:
        return "no"
    if not r.graph_batch_sizes:
        return "yes, at every batch size"
    return ("yes, padded to the captured batch sizes "
            + ", ".join(str(x) for x in r.graph_batch_sizes))


def _sizes(d) -> str:
    return (f"{fmt.number(d[0])}..{fmt.number(d[-1])}" if len(d) > 2
            else ", ".join(fmt.number(x) for x in d))


def _shape(t) -> str:
    """A shape table in one line: its grid and the cells at the corners of it."""
    (dm, dn, dk), v = t.axes, t.values
    corners = [(dm[0], dn[0], dk[0], v[0][0][0]), (dm[0], dn[-1], dk[-1], v[0][-1][-1]),
               (dm[-1], dn[-1], dk[0], v[-1][-1][0]), (dm[-1], dn[-1], dk[-1], v[-1][-1][-1])]
    return (f"{len(dm)} x {len(dn)} x {len(dk)} cells over m {_sizes(dm)}, n {_sizes(dn)}, "
            f"k {_sizes(dk)}; "
            + ", ".join(f"({fmt.number(a)}, {fmt.number(b)}, {fmt.number(c)}): {e:.2f}"
                        for a, b, c, e in corners))


def _attention(t) -> str:
    """An attention table in one line: its grid and the largest head dim's longest sequence."""
    (fwd_full, fwd_causal), (bwd_full, bwd_causal) = t.values
    return (f"{len(t.head_dims)} x {len(t.seq_lens)} cells over head dims "
            f"{_sizes(t.head_dims)}, seq {_sizes(t.seq_lens)}; at ({t.head_dims[-1]:g}, "
            f"{t.seq_lens[-1]:g}): forward {fwd_full[-1][-1]:.2f} (causal "
            f"{fwd_causal[-1][-1]:.2f}), backward {bwd_full[-1][-1]:.2f} (causal "
            f"{bwd_causal[-1][-1]:.2f})")


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
                     f"{_domain(lv.domain_size)}, {_si(lv.bandwidth_per_gpu_bytes_per_s, 'B/s')} "
                     f"per GPU each way, latency {fmt.seconds(lv.latency_s, 4)}, "
                     f"{lv.topology.value}"
                     + (f", {lv.gpus_per_link} GPUs per link" if lv.gpus_per_link > 1 else "")))
        for name, lat, bw in lv.collectives:
            rows.append((f"  {name}", f"{_si(bw, 'B/s')} per GPU each way, latency "
                                      f"{fmt.seconds(lat, 4)}"))
    if c.notes:
        rows.append(("notes", c.notes))
    rows.append(("file", _file(c.source_path)))
    return rows


def _file(path) -> str:
    """A bundled profile as ``bundled: clusters/NAME.yaml`` (where the package lies on this machine
    says nothing about the profile and would wrap its name); a user's file as given."""
    from importlib import resources
    from pathlib import Path

    if not path:
        return "-"
    root = Path(str(resources.files("archcost.profiles"))).resolve()
    try:
        return f"bundled: {Path(path).resolve().relative_to(root).as_posix()}"
    except ValueError:
        return str(path)


def _domain(size: int | None) -> str:
    return f"{size} GPUs" if size is not None else "unbounded"


def _price(usd: float | None) -> str:
    return f"${usd:.2f}/h" if usd is not None else "-"


def _curve(curve, size=fmt.si) -> str:
    """Points of an efficiency curve, ``size=fraction`` (a point never splits over lines)."""
    return ", ".join(f"{size(x)}={fmt.sig(y)}" for x, y in curve.points)


def _si(value: float, unit: str) -> str:
    """A datasheet figure with a decimal SI prefix and four significant digits (a rate, a
    power): 3.35e12, 'B/s' -> '3.35 TB/s'. Memory sizes are binary (``fmt.nbytes``)."""
    return fmt.si(value, unit, 4)
