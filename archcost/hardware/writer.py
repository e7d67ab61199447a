"""Calibrated profiles as YAML text that ``profile.load_gpu`` / ``load_cluster`` read back.

The other half of ``reader.py``: what ``archcost calibrate`` measured (``calibrate.Measurements``)
and fitted (``calibrate.Derived``) written in the bundled files' layout — figures with units
("123.4 GFLOP/s", "45.1 GB/s", "3.2 us", see ``units.format_quantity``), a comment per figure
saying where it comes from (measured, read from the system, or NB: an assumption), a header
saying how and when it was measured, and the measurements themselves (per benchmark point median
and p10/p90 spread) under the optional ``calibration`` mapping. Pure functions: text in, text
out; the caller writes the files (atomically).
"""

from __future__ import annotations

import json
import math
from typing import Any

import yaml

from archcost.hardware.calibrate import (
    ASSUMED_LLC_BYTES,
    PROBE_NK,
    Derived,
    Measurements,
    Point,
)
from archcost.hardware.fit import CACHED_SHARE, CollectiveFit, Spread
from archcost.hardware.units import Quantity, format_quantity
from archcost.report.fmt import si

__all__ = ["gpu_yaml", "cluster_yaml", "gpu_calibration", "cluster_calibration", "LEVEL_NAME"]

LEVEL_NAME = {"cpu": "loopback", "cuda": "intra-node"}


def _q(text: str) -> str:
    """A YAML scalar that stays a string whatever it holds ("yes", "123", "a: b")."""
    return json.dumps(text)


def _r(v: float, digits: int = 4) -> float:
    """``v`` to ``digits`` significant digits, for the records under ``calibration``."""
    if v == 0 or not math.isfinite(v):
        return float(v)
    return round(float(v), digits - 1 - int(math.floor(math.log10(abs(v)))))


def _times(sp: Spread) -> dict[str, Any]:
    return {"median_s": _r(sp.median), "p10_s": _r(sp.p10), "p90_s": _r(sp.p90), "reps": sp.reps}


def _point(p: Point, size_key: str) -> dict[str, Any]:
    return {**p.params, size_key: p.size, **_times(p.time), "iters": p.iters}


def _method(m: Measurements) -> dict[str, Any]:
    g = m.grid
    return {"warmup_calls": g.warmup + 1, "repetitions": g.reps, "min_repetition_s": g.min_rep_s,
            "statistic": "median of per-call seconds over the repetitions (calls batched)",
            "spread": "p10 and p90 of the same", "max_call_s": g.max_call_s}


def _header(m: Measurements, command: str) -> list[str]:
    return [
        f"# Calibrated on this machine by archcost, not taken from a datasheet: {command}",
        f"# Measured {m.date} in {m.elapsed_s:.0f} s with torch {m.torch_version} on "
        f"{m.device_name!r} ({m.device}, {m.threads} threads).",
    ]


# what ``kernel_launch`` times (calibrate._measure_launch)
_LAUNCH_OP = {"cpu": "torch.add of two 1-element tensors",
              "cuda": "torch.add of two 1-element tensors, one of 100 in a CUDA graph replay"}


def gpu_calibration(m: Measurements, d: Derived, command: str) -> dict[str, Any]:
    """The ``calibration`` record of a GPU profile: every benchmark point's median and spread."""
    rec: dict[str, Any] = {
        "tool": "archcost calibrate", "command": command, "date": m.date,
        "device": m.device_name, "device_kind": m.device, "torch": m.torch_version,
        "threads": m.threads, "elapsed_s": _r(m.elapsed_s, 3), "method": _method(m),
        "kernel_launch": {"op": _LAUNCH_OP[m.device], **_times(m.launch)},
        "matmul": {dt: [_point(p, "flops") for p in pts] for dt, pts in m.matmul.items()},
        "matmul_table": {"dtype": d.shared_table_dtype,
                         "dims": list(m.grid.matmul_table_dims),
                         "m_dims": list(m.grid.table_m_dims),
                         "max_flops_timed": m.grid.matmul_table_max_flops,
                         "tables": {dt: {"filled_from_curve": [list(c) for c in t.filled],
                                         "curve_rms_log_error": _r(t.curve_error, 3),
                                         "points": [_point(p, "flops")
                                                    for p in m.matmul_table.get(dt, [])]}
                                    for dt, t in d.matmul_table.items()}},
        "cache_probe": {"op": f"F.linear of a (1, {PROBE_NK[1]}) fp32 input by ({PROBE_NK[0]}, "
                               f"{PROBE_NK[1]}) weights cycled over the working set",
                        "cached_share": CACHED_SHARE, "cache_bytes": d.cache_bytes,
                        "points": [_point(p, "bytes") for p in m.cache_probe]},
        "matmul_warm": {"m_dims": list(m.grid.matmul_warm_m_dims),
                        "min_dim_timed": m.grid.matmul_warm_min_dim,
                        "arena": "operands cycling through half the cache the probe found",
                        "tables": {dt: {"rms_log_from_table": _r(t.curve_error, 3),
                                        "points": [_point(p, "flops")
                                                   for p in m.matmul_warm.get(dt, [])]}
                                   for dt, t in d.matmul_warm.items()}},
        "attention": {"op": "scaled_dot_product_attention, is_causal=True",
                      "dtype": m.grid.attention_dtype,
                      "flops": "2*B*H*S*S*(D+D)/2 (archcost/trace/rules_attention.py)",
                      "held_out_rms_log_error": {k: _r(v, 3)
                                                 for k, v in d.attention_held_out.items()},
                      "points": [_point(p, "flops") for p in m.attention]},
        "attention_decode": {"op": "scaled_dot_product_attention of a (B, H, 1, D) query "
                                   "over (B, H, S, D) keys and values, no mask, operands "
                                   "cycling out of the last-level cache",
                             "dtype": m.grid.attention_dtype,
                             "flops": "2*B*H*1*S*(D+D) (archcost/trace/rules_attention.py)",
                             "points": [_point(p, "flops") for p in m.attention_decode]},
        "attention_tables": {
            "op": "scaled_dot_product_attention under torch.nn.attention.sdpa_kernel(backend); "
                  "backward: torch.autograd.grad of its output, graph retained",
            "dtype": m.grid.attention_dtype, "kernels": list(d.attention_tables),
            "flops": "forward 2*B*H*S*S*(D+D), halved when causal; backward 2.5x forward",
            "points": [_point(p, "flops") for p in m.attention_table]},
        "memory": {"ops": "copy: dst.copy_(src), bytes = 2 x tensor; add: torch.add(a, b, "
                          "out=c), bytes = 3 x tensor",
                   "points": [{"op": p.bench, **_point(p, "bytes_moved")} for p in m.memory]},
        "conv": {"ops": "aten.convolution and aten.convolution_backward (input and weight "
                         "gradients), fp32; FLOPs by archcost's rule",
                 "points": [_point(p, "flops") for p in m.conv]},
        "ops": {"bytes": "read + written by archcost's rule for the op",
                "points": {op: [_point(p, "bytes_moved") for p in pts]
                           for op, pts in m.ops.items()}},
        "op_overhead": {phase: {k: (_r(v) if isinstance(v, float) else v)
                                for k, v in rec.items() if k != "charged"}
                        for phase, rec in m.overheads.items()},
        "dispatch_overhead": {kind: {k: (_r(v) if isinstance(v, float) else v)
                                     for k, v in rec.items()}
                              for kind, rec in m.dispatch.items()},
        "fits": {"peak_flops_per_s": {dt: _r(v, 6) for dt, v in d.peaks.items()},
                 "matmul_efficiency_dtype": d.reference_dtype,
                 "memory_bandwidth_bytes_per_s": _r(d.mem_bw, 6),
                 "kernel_launch_s": _r(d.launch_s, 6)},
        "memory_capacity_source": m.mem_source,
        "load_average_at_start": None if m.load_average is None else _r(m.load_average, 3),
    }
    if m.warnings:
        rec["warnings"] = m.warnings
    if m.llc_source:
        rec["l2_cache_source"] = m.llc_source
        rec["l2_cache_bytes"] = m.llc_bytes  # what the source reads (l2_cache: the probe's)
    if m.skipped:
        rec["skipped"] = m.skipped
    return rec


def _fit(f: CollectiveFit) -> dict[str, Any]:
    return {"alpha_s": _r(f.alpha_s, 6), "bandwidth_per_gpu_bytes_per_s": _r(f.bw_bytes_per_s, 6),
            "rms_rel_error": _r(f.rms_rel_error, 3), "max_rel_error": _r(f.max_rel_error, 3),
            "points": f.points}


def cluster_calibration(m: Measurements, d: Derived, command: str) -> dict[str, Any]:
    """The ``calibration`` record of a cluster profile: collectives' medians, spreads and fits."""
    assert m.collectives is not None and d.level_fit is not None
    g = m.grid
    return {
        "tool": "archcost calibrate", "command": command, "date": m.date,
        "device": m.device_name, "device_kind": m.device, "torch": m.torch_version,
        "backend": m.collectives["backend"], "processes": m.collectives["world_size"],
        "method": {"warmup_calls": g.collective_warmup + 1, "repetitions": g.collective_reps,
                   "min_repetition_s": g.collective_min_rep_s,
                   "statistic": "median over repetitions of the slowest rank's per-call seconds, "
                                "each repetition after a barrier",
                   "spread": "p10 and p90 of the same",
                   "send_recv": "ping-pong between ranks 0 and 1, half the round trip",
                   "bytes": "the full buffer (all-gather's output, reduce-scatter's input)"},
        "model": "ring: all_reduce 2(n-1) alpha + 2(n-1)/n S/bw; all_gather, reduce_scatter "
                 "(n-1) alpha + (n-1)/n S/bw; send_recv alpha + S/bw (archcost/cost/kernels.py)",
        "fits": {**{op: _fit(f) for op, f in d.collective_fits.items()},
                 "level": _fit(d.level_fit)},
        "collectives": {op: [{k: (_r(v) if isinstance(v, float) else v) for k, v in row.items()}
                             for row in rows]
                        for op, rows in m.collectives["ops"].items()},
    }


def _dump(key: str, value: Any) -> str:
    return yaml.safe_dump({key: value}, sort_keys=False, default_flow_style=None, width=110,
                          allow_unicode=True)


def _curve(points: tuple[tuple[int, float], ...]) -> list[str]:
    return [f"  - [{x}, {y:.4g}]" for x, y in points]


def _attention_tables(m: Measurements, d: Derived) -> list[str]:
    """``attention_kernels``: each backend's table, the bundled profiles' layout."""
    if not d.attention_tables:
        return []
    g = m.grid
    lines = [f"attention_kernels:   # measured: each SDPA backend that runs here, fraction of peak "
             f"{g.attention_dtype}; batch x seq = {g.attention_table_tokens} tokens, heads x "
             f"head dim = {g.attention_table_hidden}"]
    for kernel, t in d.attention_tables.items():
        lines += [f"  {kernel}:", f"    head_dims: [{', '.join(str(x) for x in t['head_dims'])}]",
                  f"    seq_lens: [{', '.join(str(x) for x in t['seq_lens'])}]"]
        for phase, grids in zip(("forward", "backward"), t["values"]):
            lines.append(f"    {phase}:")
            for mask, rows in zip(("full", "causal"), grids):
                lines.append(f"      {mask}:")
                lines += [f"        - [{', '.join(f'{v:.4g}' for v in row)}]  # d = {hd}"
                          for hd, row in zip(t["head_dims"], rows)]
    return lines


def _shape_tables(m: Measurements, d: Derived, warm: bool = False) -> list[str]:
    """``matmul_shape_efficiency``: one table (the reference dtype's, which every other dtype
    reads at its same-duration shape) or a table per dtype measured, each in its own peak;
    ``warm``: ``matmul_shape_efficiency_warm``, the rows timed with the weights in the
    last-level cache, in the same form."""
    one = d.shared_table_dtype is not None
    tables = d.matmul_warm if warm else d.matmul_table
    first = next(iter(tables.values()))
    grid = "dims^3" if tuple(first.m_dims) == tuple(first.dims) else "m x n x k"
    what = f"peak {d.reference_dtype}" if one else "its dtype's peak"
    if warm:
        lines = [f"matmul_shape_efficiency_warm:   # rows of the table above timed with the "
                 f"weights cycling through half of l2_cache, fraction of {what}; measured; read "
                 "in their place where the bytes a decode step moves fit in l2_cache"]
    else:
        lines = [f"matmul_shape_efficiency:   # an (m, k) @ (k, n) matmul, fraction of {what}, "
                 f"on {grid}; measured; used for 2-D matmuls"]
    for dt, t in tables.items():
        pad = "  " if one else "    "
        if one:
            lines.append(f"  dtype: {dt}   # measured in it: another dtype's matmul reads the "
                         "table at its same-duration shape")
        else:
            lines.append(f"  {dt}:   # measured in {dt}")
        if warm:
            lines.append(f"{pad}# the warm cells lie {t.curve_error:.0%} (rms log) from the "
                         f"table's; {len(t.filled)} cells of n or k under "
                         f"{m.grid.matmul_warm_min_dim} are not timed but the table's")
        else:
            lines.append(f"{pad}# the curve by FLOPs misses the timed cells by "
                         f"{t.curve_error:.0%} (rms); {len(t.filled)} cells over "
                         f"{si(m.grid.matmul_table_max_flops, 'FLOP')} are not timed but read "
                         "from it")
        if tuple(t.m_dims) == tuple(t.dims):
            lines.append(f"{pad}dims: [{', '.join(str(x) for x in t.dims)}]")
            lines.append(f"{pad}values:   # values[i][j][l]: m = dims[i], n = dims[j], "
                         "k = dims[l]")
        else:
            for axis, grid_dims in (("m", t.m_dims), ("n", t.dims), ("k", t.dims)):
                lines.append(f"{pad}{axis}: [{', '.join(str(x) for x in grid_dims)}]")
            lines.append(f"{pad}values:   # values[i][j][l]: m = m[i], n = n[j], k = k[l]")
        for plane in t.values:
            rows = ", ".join(f"[{', '.join(f'{v:.4g}' for v in row)}]" for row in plane)
            lines.append(f"{pad}  - [{rows}]")
    return lines


def gpu_yaml(m: Measurements, d: Derived, *, name: str, command: str, tdp_w: float,
             tdp_given: bool, idle_fraction: float) -> str:
    """The GPU profile of this machine, as text ``load_gpu`` accepts."""
    fmt = format_quantity
    g = m.grid
    lines = _header(m, command) + [
        "# Every figure is a median of timed repetitions (the spreads are under `calibration`);",
        "# rates exclude `kernel_launch`, which the cost engine adds to every op; a peak is the",
        "# best rate over the grid and a curve point is [op size, rate / peak]. NB marks what is",
        "# not measured.",
        f"name: {_q(name)}",
        f"vendor: {_q(m.vendor)}",
        "peak_flops:",
    ]
    for dt, rate in d.peaks.items():
        n = len(m.matmul[dt])
        lines.append(f"  {dt}: {fmt(rate, Quantity.FLOPS_RATE, 5):<16} # measured: best of {n} "
                     f"matmul shape{'s' if n > 1 else ''}")
    skipped = sorted({s["dtype"] for s in m.skipped if s["bench"] == "matmul"} - set(d.peaks))
    if skipped:
        lines.append(f"  # not measured here (see calibration.skipped): {', '.join(skipped)}")
    lines += [
        f"memory: {fmt(m.mem_bytes, Quantity.BYTES):<18} # read: {m.mem_source}",
        f"memory_bandwidth: {fmt(d.mem_bw, Quantity.BANDWIDTH, 5):<10} # measured: best of copy "
        f"and add, {_size(min(g.memory_bytes))} to {_size(max(g.memory_bytes))} tensors",
    ]
    if d.cache_bytes:
        read = f"; {m.llc_source} reads {fmt(m.llc_bytes, Quantity.BYTES)}" if m.llc_bytes else ""
        lines.append(f"l2_cache: {fmt(d.cache_bytes, Quantity.BYTES):<16} # measured: the largest "
                     f"working set one-row linears read at under {CACHED_SHARE:.0%} of their time "
                     f"from memory{read}")
    elif m.llc_bytes:
        lines.append(f"l2_cache: {fmt(m.llc_bytes, Quantity.BYTES):<16} # read: {m.llc_source}")
    else:
        lines.append(f"l2_cache: {fmt(ASSUMED_LLC_BYTES, Quantity.BYTES):<16} # NB: assumption, "
                     "the cache size could not be read")
    lines += [
        f"kernel_launch: {fmt(d.launch_s, Quantity.TIME, 4):<11} # measured: median of "
        f"{_LAUNCH_OP[m.device]}",
        f"tdp: {fmt(tdp_w, Quantity.POWER):<21} # NB: " + (
            "given with --tdp, not measured" if tdp_given else
            f"assumption, not measured (default for {m.device}; set it with --tdp)"),
        f"idle_power_fraction: {idle_fraction:<5} # NB: assumption, not measured "
        f"(default for {m.device})",
    ]
    if m.host_link_bw:
        lines.append(f"host_link_bandwidth: {fmt(m.host_link_bw, Quantity.BANDWIDTH)}  # measured: "
                     "best of pinned host-to-device and device-to-host copies")
    lines.append(f"matmul_efficiency:      # [FLOPs of one matmul, fraction of peak "
                 f"{d.reference_dtype}]; measured in {d.reference_dtype}")
    lines += _curve(d.matmul_curve)
    if d.matmul_table:
        lines += _shape_tables(m, d)
    if d.matmul_warm:
        lines += _shape_tables(m, d, warm=True)
    if d.attention_curve:
        lines.append(f"attention_efficiency:   # [FLOPs of one causal attention op, fraction of "
                     f"peak {g.attention_dtype}]; measured")
        lines += _curve(d.attention_curve)
    if d.attention_slice_curve:
        held = d.attention_held_out
        lines.append("attention_head_efficiency:   # [FLOPs of one (batch, head) slice, fraction "
                     f"of peak {g.attention_dtype}]; measured; used where an op's shape gives its "
                     "slices")
        lines.append(f"  # it predicts held-out points to {held['by_slice_flops']:.0%} (rms), "
                     f"the curve by op FLOPs to {held['by_op_flops']:.0%}")
        lines += _curve(d.attention_slice_curve)
    if d.attention_decode_curve:
        lines.append("attention_decode_efficiency:   # [FLOPs of one (batch, head) slice, "
                     f"fraction of peak {g.attention_dtype}]; measured on one query per sequence "
                     "(a decode step's attention); used for attention ops of one query")
        lines += _curve(d.attention_decode_curve)
    lines += _attention_tables(m, d)
    lines.append("memory_efficiency:      # [bytes moved by one op, fraction of memory_bandwidth]; "
                 "measured")
    lines += _curve(d.memory_curve)
    if d.conv_curve:
        lines.append("conv_efficiency:        # [FLOPs of one convolution forward, "
                     "fraction of peak fp32]; measured in fp32")
        lines += _curve(d.conv_curve)
    if d.conv_backward_curve:
        lines.append("conv_backward_efficiency:   # [FLOPs of one convolution backward (input "
                     "and weight gradients), fraction of peak fp32]; measured in fp32")
        lines += _curve(d.conv_backward_curve)
    if d.op_curves:
        lines.append("op_efficiency:          # per aten op: [bytes it moves, fraction of "
                     "memory_bandwidth]; measured")
        for op, pts in d.op_curves.items():
            lines.append(f"  {op}: [{', '.join(f'[{x}, {y:.4g}]' for x, y in pts)}]")
    if d.overheads_s and m.device == "cuda":
        lines.append("host_ahead: true        # the host issues kernels ahead of the GPU: "
                     "op_overhead is the host's time per op, a floor under each op's time")
    if d.overheads_s:
        lines.append("op_overhead:            # per op charged in each phase of a training step "
                     "(inference: a forward under torch.inference_mode); "
                     "measured on a small workload")
        for phase, sec in d.overheads_s.items():
            lines.append(f"  {phase}: {fmt(sec, Quantity.TIME, 4)}")
    if d.dispatch_s:
        lines.append("dispatch_overhead:      # eager Python beyond the charged ops, under "
                     "torch.inference_mode: per view op (a chain of view, unsqueeze, select, "
                     "transpose) and per nn.Module call (a chain of nn.Identity); measured")
        for kind, sec in d.dispatch_s.items():
            lines.append(f"  {kind}: {fmt(sec, Quantity.TIME, 4)}")
    lines.append("# what was measured, point by point (free-form; the cost engine does not read it)")
    text = "\n".join(lines) + "\n"
    return text + _dump("calibration", gpu_calibration(m, d, command))


def cluster_yaml(m: Measurements, d: Derived, *, name: str, gpu_file: str, command: str) -> str:
    """The cluster profile of this machine's N processes, as text ``load_cluster`` accepts;
    ``gpu_file`` is the GPU profile's path relative to the cluster file."""
    assert m.collectives is not None and d.level_fit is not None
    n = int(m.collectives["world_size"])
    lv = d.level_fit
    backend = m.collectives["backend"]
    lines = _header(m, command) + [
        f"# {n} {backend} processes on this machine, one link level; its figures are the single",
        "# (latency, bandwidth) pair fitted by least squares (relative errors) to the medians of",
        "# all-reduce, all-gather, reduce-scatter and send/recv with the cost engine's ring",
        "# formulas, at each one's smallest size and largest quarter of sizes; each collective's",
        "# own fit is under `collectives` (the engine uses it for that collective, the pair for",
        "# all-to-all and broadcast) and every measured point under `calibration`.",
        f"name: {_q(name)}",
        f"gpu: {_q(gpu_file)}",
        f"gpus_per_node: {n}            # the processes calibrated",
        "levels:",
        f"  - name: {_q(LEVEL_NAME[m.device])}",
        f"    domain_size: {n}",
        f"    bandwidth_per_gpu: {format_quantity(lv.bw_bytes_per_s, Quantity.BANDWIDTH, 5)}"
        f"   # measured: fitted, one direction per process (rms error {lv.rms_rel_error:.0%})",
        f"    latency: {_latency(lv.alpha_s)}"
        + ("   # measured: fitted alpha per hop" if lv.alpha_s > 0 else
           "   # NB: the fit found no latency term; 1 ns stands for zero"),
        "    topology: switch",
        "    collectives:   # measured: each collective's own fit, used for it instead of the above",
        *(f"      {op}: {{bandwidth_per_gpu: "
          f"{format_quantity(f.bw_bytes_per_s, Quantity.BANDWIDTH, 5)}, latency: "
          f"{_latency(f.alpha_s)}}}   # rms error {f.rms_rel_error:.0%}"
          for op, f in d.collective_fits.items()),
        f"notes: {_q(f'calibrated: {n} {backend} processes on {m.device_name}, {m.date}')}",
        "# what was measured, point by point (free-form; the cost engine does not read it)",
    ]
    return "\n".join(lines) + "\n" + _dump("calibration", cluster_calibration(m, d, command))


def _latency(alpha_s: float) -> str:
    """A fitted alpha as a profile time; a fit without a latency term writes 1 ns (the
    reader wants a positive figure)."""
    return format_quantity(alpha_s, Quantity.TIME, 4) if alpha_s > 0 else "1 ns"


def _size(nbytes: int) -> str:
    return format_quantity(float(nbytes), Quantity.BYTES, 3)
