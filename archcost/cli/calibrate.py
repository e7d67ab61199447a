"""``archcost calibrate --device cpu|cuda [--nproc N] -o my-machine.yaml``: this machine, measured
into a GPU profile (and, with N > 1 processes, a cluster profile ``my-machine.cluster.yaml``).

Parses, checks, calls ``archcost.hardware.calibrate`` (measurement and fits) and
``archcost.hardware.writer`` (the YAML text), writes both files atomically, then prints a
summary table (or ``--json``). The profiles are read back with the strict readers before the
command succeeds, so a file it writes is a file every other command accepts.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Annotated, Any

import typer

from archcost.cli.common import err_console, out_console, progress_bar, reports_errors
from archcost.cli.options import (
    DEVICE,
    NPROC,
    TIMEOUT_S,
    DebugOpt,
    DeviceOpt,
    JsonOpt,
    NprocOpt,
    TimeoutOpt,
)
from archcost.errors import ConfigError

__all__ = ["register", "calibrate", "cluster_path"]


def register(app: typer.Typer) -> None:
    app.command("calibrate",
                short_help="Measure this machine into a hardware profile.")(calibrate)


def cluster_path(gpu_path: Path) -> Path:
    """``my-machine.yaml`` -> ``my-machine.cluster.yaml``, beside it."""
    return gpu_path.with_name(f"{gpu_path.stem}.cluster{gpu_path.suffix}")


def _check_output(output: str, nproc: int) -> Path:
    from archcost.io import check_writable

    path = Path(output).expanduser()
    if path.suffix not in (".yaml", ".yml"):
        raise ConfigError(f"-o {output}: a profile file must end in .yaml or .yml (so that "
                          "--hardware reads it as a file); e.g. -o my-machine.yaml")
    check_writable(path, "-o")
    if nproc > 1:
        check_writable(cluster_path(path), "-o (its cluster profile)")
    return path


def _command(device: str, nproc: int, output: str, quick: bool, tdp: str | None) -> str:
    parts = ["archcost", "calibrate", "--device", device, "--nproc", str(nproc), "-o", output]
    if quick:
        parts.append("--quick")
    if tdp:
        parts += ["--tdp", tdp]
    return shlex.join(parts)


@reports_errors
def calibrate(
    output: Annotated[str, typer.Option("--output", "-o", help="GPU profile to write (.yaml); "
                                        "with --nproc > 1 also <stem>.cluster.yaml beside it.")],
    device: DeviceOpt = DEVICE,
    nproc: NprocOpt = NPROC,
    quick: Annotated[bool, typer.Option("--quick", help="A few points per benchmark (seconds, "
                                        "for tests), not the full grid.")] = False,
    tdp: Annotated[str | None, typer.Option("--tdp", help="Power of the device, e.g. '350 W' "
                                            "(not measured; default: an assumption, marked NB "
                                            "in the file).")] = None,
    timeout: TimeoutOpt = TIMEOUT_S,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Measure this machine (matmul rate per dtype, attention, memory bandwidth, kernel launch,
    and collectives between --nproc processes) into a hardware profile the cost engine reads."""
    from archcost.hardware.calibrate import (
        DEFAULT_IDLE_FRACTION,
        DEFAULT_TDP_W,
        check_request,
        count_points,
        derive,
        grid_for,
        measure,
    )
    from archcost.hardware.profile import load_cluster, load_gpu
    from archcost.hardware.units import Quantity, UnitError, parse_quantity
    from archcost.hardware.writer import cluster_yaml, gpu_yaml
    from archcost.io import write_files

    path = _check_output(output, nproc)
    check_request(device, nproc)
    if timeout <= 0:
        raise ConfigError(f"--timeout {timeout}: give a positive number of seconds")
    tdp_w = DEFAULT_TDP_W[device]
    if tdp is not None:
        try:
            tdp_w = parse_quantity(tdp, Quantity.POWER)
        except UnitError as exc:
            raise ConfigError(f"--tdp: {exc}") from None
        if not tdp_w > 0:
            raise ConfigError(f"--tdp {tdp}: give a positive power, e.g. '350 W'")
    grid = grid_for(device, quick)
    with progress_bar(as_json, "calibrating {task.description:<32}") as bar:
        task = bar.add_task("", total=count_points(grid, nproc)) if bar is not None else None

        def progress(done: str) -> None:
            bar.update(task, advance=1, description=done)

        m = measure(device, nproc, grid, progress if bar is not None else None,
                    timeout_s=timeout)
    for warning in m.warnings:
        err_console.print(f"[yellow]warning:[/] {warning}", soft_wrap=True)
    d = derive(m)
    command = _command(device, nproc, output, quick, tdp)
    files = {path: gpu_yaml(m, d, name=path.stem, command=command, tdp_w=tdp_w,
                            tdp_given=tdp is not None,
                            idle_fraction=DEFAULT_IDLE_FRACTION[device])}
    written = {"gpu_profile": str(path)}
    if nproc > 1:
        cpath = cluster_path(path)
        files[cpath] = cluster_yaml(m, d, name=f"{path.stem}-{nproc}proc",
                                    gpu_file=f"./{path.name}", command=command)
    write_files(files)
    load_gpu(str(path))  # what it wrote, the strict readers accept
    if nproc > 1:
        load_cluster(str(cpath))
        written["cluster_profile"] = str(cpath)
    doc = summary(m, d, written)
    if as_json:
        typer.echo(json.dumps(doc, indent=2))
    else:
        _print_summary(doc)


def summary(m, d, written: dict[str, str]) -> dict[str, Any]:
    """The result as plain JSON data (SI units)."""
    doc: dict[str, Any] = {
        "kind": "calibration", "device": m.device, "device_name": m.device_name,
        "torch": m.torch_version, "threads": m.threads, "date": m.date,
        "elapsed_s": m.elapsed_s, "files": written,
        "peak_flops_per_s": d.peaks, "matmul_efficiency_dtype": d.reference_dtype,
        "matmul_efficiency": [list(p) for p in d.matmul_curve],
        "attention_efficiency": [list(p) for p in d.attention_curve or ()],
        "attention_head_efficiency": [list(p) for p in d.attention_slice_curve or ()],
        "attention_decode_efficiency": [list(p) for p in d.attention_decode_curve or ()],
        "attention_held_out_rms_log_error": d.attention_held_out,
        "attention_kernels": d.attention_tables,
        "memory_bandwidth_bytes_per_s": d.mem_bw,
        "memory_efficiency": [list(p) for p in d.memory_curve],
        "kernel_launch_s": d.launch_s, "memory_bytes": m.mem_bytes,
        "cache_bytes": d.cache_bytes,  # what the cache probe read from cache; None: not probed
        "matmul_points": {dt: [{**p.params, "flops": p.size, "median_s": p.time.median,
                                "p10_s": p.time.p10, "p90_s": p.time.p90, "reps": p.time.reps}
                               for p in pts] for dt, pts in m.matmul.items()},
        "memory_points": [{"op": p.bench, **p.params, "bytes_moved": p.size,
                           "median_s": p.time.median} for p in m.memory],
        "matmul_table": None if not d.matmul_table else {
            "dtype": d.shared_table_dtype,
            "tables": {dt: {
                "dims": list(t.dims), "m_dims": list(t.m_dims), "values": t.values,
                "filled_from_curve": [list(c) for c in t.filled],
                "curve_rms_log_error": t.curve_error,
                "points": [{**p.params, "flops": p.size, "median_s": p.time.median}
                           for p in m.matmul_table.get(dt, [])]}
                for dt, t in d.matmul_table.items()}},
        "matmul_warm": None if not d.matmul_warm else {
            "tables": {dt: {
                "dims": list(t.dims), "m_dims": list(t.m_dims), "values": t.values,
                "rms_log_from_table": t.curve_error,
                "points": [{**p.params, "flops": p.size, "median_s": p.time.median}
                           for p in m.matmul_warm.get(dt, [])]}
                for dt, t in d.matmul_warm.items()}},
        "skipped": m.skipped, "warnings": m.warnings,
    }
    if m.collectives:
        doc["collectives"] = {
            "backend": m.collectives["backend"], "processes": m.collectives["world_size"],
            "fits": {op: _fit(f) for op, f in d.collective_fits.items()},
            "level": _fit(d.level_fit),
            "points": m.collectives["ops"],
        }
    return doc


def _fit(f) -> dict[str, Any]:
    return {"alpha_s": f.alpha_s, "bandwidth_bytes_per_s": f.bw_bytes_per_s,
            "rms_rel_error": f.rms_rel_error, "max_rel_error": f.max_rel_error}


def _print_summary(doc: dict[str, Any], console=None) -> None:
    from archcost.cli.layout import Col, Grid, say
    from archcost.report import fmt

    console = console or out_console
    tab = Grid(f"calibrated: {doc['device_name']} ({doc['device']}, {doc['threads']} threads, "
               f"{fmt.seconds(doc['elapsed_s'])})", [Col("figure", "left"), Col("value")],
               header=False)
    for dt, rate in doc["peak_flops_per_s"].items():
        tab.row((f"peak {dt}", "bold"), fmt.si(rate, "FLOP/s", 4))
    tab.row(("memory bandwidth", "bold"), fmt.si(doc["memory_bandwidth_bytes_per_s"], "B/s", 4))
    tab.row(("kernel launch", "bold"), fmt.seconds(doc["kernel_launch_s"], 4))
    tab.row(("memory", "bold"), fmt.nbytes(doc["memory_bytes"], 4))
    if doc.get("cache_bytes"):
        tab.row(("cache (read from, measured)", "bold"), fmt.nbytes(doc["cache_bytes"], 4))
    tab.print(console)
    coll = doc.get("collectives")
    if coll:
        tab = Grid(f"collectives: {coll['processes']} {coll['backend']} processes (ring model "
                   "fits)", [Col("op", "left", key=True), Col("alpha"),
                             Col("bandwidth per rank"), Col("rms error"), Col("max error")])
        for op, f in [*coll["fits"].items(), ("level (all ops)", coll["level"])]:
            tab.row(op, fmt.seconds(f["alpha_s"], 4),
                    fmt.si(f["bandwidth_bytes_per_s"], "B/s", 4),
                    fmt.percent(f["rms_rel_error"], 0), fmt.percent(f["max_rel_error"], 0))
        tab.print(console)
    if doc["skipped"]:
        say(console, f"skipped {len(doc['skipped'])} point(s) (see calibration.skipped in the "
                     "file)")
    for kind, path in doc["files"].items():
        say(console, f"wrote {kind.replace('_', ' ')}: {path}")
