"""``archcost sweep MODEL --cluster NAME --gpus N --vary KEY=V1,V2 ...``: hardware what-ifs."""

from __future__ import annotations

import csv
import io
import math
from typing import Annotated

import typer

from archcost.cli.analyze import ModelArg, _null
from archcost.cli.common import (
    DebugOpt,
    RuntimeOpt,
    emit,
    err_console,
    out_console,
    reports_errors,
)
from archcost.cli.plan import (
    SCHEMA_VERSION,
    ClusterOpt,
    DtypeOpt,
    OptimizerOpt,
    SeqOpt,
    SetOpt,
    _recomputes,
)
from archcost.errors import ConfigError


def register(app: typer.Typer) -> None:
    app.command("sweep")(sweep)


@reports_errors
def sweep(
    model: ModelArg,
    gpus: Annotated[int, typer.Option("--gpus", help="GPUs used (vary it with --vary gpus=...).")],
    vary: Annotated[list[str] | None, typer.Option("--vary", help="KEY=V1,V2,... multipliers "
                                                   "(2x) or values with units (1.8TB/s); "
                                                   "repeatable: the grid is their product.")] = None,
    cluster: ClusterOpt = "dgx-h100-ndr",
    gbs: Annotated[int | None, typer.Option("--gbs", help="Global batch in sequences (default: "
                                            "about 4M tokens).")] = None,
    seq_len: SeqOpt = 4096,
    set_: SetOpt = None,
    dtype: DtypeOpt = "bf16-mixed",
    optimizer: OptimizerOpt = "adamw",
    objective: Annotated[str, typer.Option(help="Best plan by: time, cost, energy.")] = "time",
    constraint: Annotated[list[str] | None, typer.Option("--constraint", help="Plan filter, e.g. "
                                                         "tp<=8 (repeatable).")] = None,
    fix: Annotated[list[str] | None, typer.Option("--fix", help="Pin plan fields, e.g. "
                                                  "recompute=full.")] = None,
    rerank: Annotated[int, typer.Option(help="Best kernel candidates re-evaluated with the "
                                        "simulated pipeline at each point.")] = 2,
    sensitivity_: Annotated[bool, typer.Option("--sensitivity/--no-sensitivity", help="Add the "
                                               "elasticity of step time to each resource at "
                                               "the first grid point.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON document.")] = False,
    output: Annotated[str | None, typer.Option("--output", "-o", help="Write the JSON "
                                               "document.")] = None,
    csv_path: Annotated[str | None, typer.Option("--csv", help="Write one row per grid point "
                                                 "as CSV.")] = None,
    markdown: Annotated[str | None, typer.Option("--markdown", help="Write the study as "
                                                 "Markdown (tables and the command).")] = None,
    price: Annotated[list[str] | None, typer.Option("--price", help="GPU=$/h, the price per "
                                                    "GPU-hour of a GPU profile, e.g. "
                                                    "h100-sxm=2.5 (repeatable).")] = None,
    runtime: RuntimeOpt = "eager",
    debug: DebugOpt = False,
) -> None:
    """Search the best plan at every point of a grid over hardware (peak FLOP/s, memory,
    bandwidths, latencies, NVLink domain, GPUs) and workload (sequence, batch, precision)
    parameters; report step time, tokens/s, MFU, memory, energy, cost and the bottleneck."""
    from archcost.loader import load_model_file, parse_overrides
    from archcost.plan.search import OBJECTIVES
    from archcost.plan.space import parse_plan
    from archcost.plan.workload import trace_workload
    from archcost.sweep.axes import parse_vary
    from archcost.sweep.grid import build_point, run_grid, sensitivity
    from archcost.trace.precision import parse_precision

    axes = parse_vary(vary or [])
    prices = _prices(price or [])
    if objective not in OBJECTIVES:
        raise ConfigError(f"--objective {objective!r}: use {', '.join(OBJECTIVES)}")
    if gpus < 1 or seq_len < 1 or rerank < 1:
        raise ConfigError("--gpus, --seq-len and --rerank must be >= 1")
    if gbs is None:
        gbs = max(1, 2 ** round(math.log2(max(1.0, 4 * 2**20 / seq_len))))
    from archcost.runtime import load_runtime

    stack = load_runtime(runtime)
    spec = load_model_file(model, parse_overrides(set_))
    parse_precision(dtype)
    recomputes = _recomputes(list(fix or []))
    cache: dict = {}
    quiet = as_json
    status_cm = err_console.status("tracing", spinner="dots") if not quiet else _null()
    with status_cm as status:
        def workload_for(s: int, d: str):
            if (s, d) not in cache:
                if status is not None:
                    status.update(f"tracing {spec.name} at seq_len={s}, {d}")
                cache[(s, d)] = trace_workload(spec, s, parse_precision(d), optimizer,
                                               recomputes, runtime=stack)
            return cache[(s, d)]

        workload_for(seq_len, dtype)
    search_kw = dict(constraints=constraint or [], fixed=list(fix or []), objective=objective,
                     top=1, rerank=rerank)
    if quiet:
        grid = run_grid(axes, cluster_name=cluster, gpus=gpus, gbs=gbs, seq_len=seq_len,
                        dtype=dtype, workload_for=workload_for, search_kw=search_kw,
                        prices=prices)
    else:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        with Progress(TextColumn("grid points"), BarColumn(), MofNCompleteColumn(),
                      console=err_console, transient=True) as bar:
            task = bar.add_task("grid", total=None)
            grid = run_grid(axes, cluster_name=cluster, gpus=gpus, gbs=gbs, seq_len=seq_len,
                            dtype=dtype, workload_for=workload_for, search_kw=search_kw,
                            prices=prices,
                            progress=lambda d, n: bar.update(task, completed=d, total=n))
    doc = {
        "schema_version": SCHEMA_VERSION, "kind": "sweep",
        "model": {"name": spec.name, "file": spec.path.name, "builder": spec.builder_name,
                  "config": spec.builder_config(1, seq_len)},
        "base": {"cluster": cluster, "gpus": gpus, "gbs": gbs, "seq_len": seq_len,
                 "dtype": dtype, "objective": objective, "runtime": stack.name},
        "prices_usd_per_gpu_hour": prices,
        **grid,
    }
    first = next((p for p in grid["points"] if p.get("fits")), None)
    if sensitivity_ and first is not None:
        from archcost.plan.costmodel import CostModel

        _, point_cluster, *_, w = build_point(
            axes, first["index"], cluster_name=cluster, gpus=gpus, gbs=gbs, seq_len=seq_len,
            dtype=dtype, workload_for=workload_for, prices=prices)
        doc["sensitivity"] = {"point": first["point"], "plan": first["plan"],
                              "resources": sensitivity(CostModel(w, point_cluster),
                                                       parse_plan(first["plan"]))}
    emit(doc, as_json, output)
    if csv_path:
        from archcost.io import atomic_write_text

        atomic_write_text(csv_path, to_csv(doc))
    if markdown:
        from archcost.io import atomic_write_text

        atomic_write_text(markdown, to_markdown(doc))
    if not as_json:
        _render(doc)
        for path in (output, csv_path, markdown):
            if path:
                out_console.print(f"wrote {path}")


CSV_FIELDS = ("step_time_s", "tokens_per_s", "mfu", "peak_per_gpu_bytes", "joules_per_token",
              "usd_per_million_tokens", "bottleneck", "plan", "gpus", "gpu", "cluster")


def _prices(items: list[str]) -> dict[str, float]:
    from archcost.hardware.units import Quantity, UnitError, parse_quantity

    out = {}
    for item in items:
        name, eq, value = item.partition("=")
        if not eq:
            raise ConfigError(f"--price {item!r}: write GPU=PRICE, e.g. h100-sxm=2.5 or "
                              "'h100-sxm=$2.5/h'")
        try:
            v = value.strip()
            out[name.strip()] = float(v) if v.replace(".", "", 1).isdigit() else \
                parse_quantity(v, Quantity.USD_PER_HOUR)
        except UnitError as exc:
            raise ConfigError(f"--price {item!r}: {exc}") from None
    return out


def _md(text) -> str:
    from archcost.report.markdown import escape

    return escape(text)


def to_markdown(doc) -> str:
    """The sweep as a Markdown study: the grid, the best plans, the sensitivity."""
    b = doc["base"]
    keys = [a["key"] for a in doc["axes"]]
    lines = [f"# What-if: {_md(doc['model']['name'])} on {b['gpus']} GPUs", "",
             f"Base: cluster `{b['cluster']}`, {b['gpus']} GPUs, global batch {b['gbs']} "
             f"sequences of {b['seq_len']} tokens, {b['dtype']}, runtime "
             f"`{b.get('runtime', 'eager')}`; best plan searched again at "
             f"every point (objective: {b['objective']}).", ""]
    if doc.get("prices_usd_per_gpu_hour"):
        lines += ["Prices per GPU-hour (assumed, set your own with `--price`): " + ", ".join(
            f"{k} ${v:g}" for k, v in doc["prices_usd_per_gpu_hour"].items()) + ".", ""]
    head = [*keys, "step time", "tokens/s", "MFU", "memory/GPU", "tokens/J", "$/M tokens",
            "bottleneck", "best plan"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for p in doc["points"]:
        vals = [_md(p["point"][k]) for k in keys]
        if not p.get("fits"):
            lines.append("| " + " | ".join(vals + ["no plan fits"] + [""] * 7) + " |")
            continue
        usd = p.get("usd_per_million_tokens")
        lines.append("| " + " | ".join(vals + [
            f"{p['step_time_s']:.3g} s", f"{p['tokens_per_s']:,.0f}", f"{100 * p['mfu']:.1f}%",
            f"{p['peak_per_gpu_bytes'] / 2**30:.1f} GiB", f"{p['tokens_per_joule']:.3g}",
            "-" if usd is None else f"{usd:.3g}", p["bottleneck"], f"`{p['plan']}`"]) + " |")
    sens = doc.get("sensitivity")
    if sens:
        lines += ["", f"Elasticity of step time at {_md(sens['point'])} with plan "
                  f"`{sens['plan']}` (d ln T / d ln r; -1: time halves when r doubles):", "",
                  "| resource | elasticity | step if doubled | predicted from elasticity |",
                  "|---|---:|---:|---:|"]
        for r in sens["resources"]:
            lines.append(f"| {r['resource']} | {r['elasticity']:+.3f} | "
                         f"{r['step_time_if_doubled_s']:.4g} s | "
                         f"{r['predicted_if_doubled_s']:.4g} s |")
    lines += ["", f"{doc['grid_points']} grid points in {doc['seconds']:.1f} s "
              f"({doc['points_per_second']:.2f} points/s).", ""]
    return "\n".join(lines)


def to_csv(doc) -> str:
    keys = [a["key"] for a in doc["axes"]]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([*keys, *CSV_FIELDS])
    for p in doc["points"]:
        w.writerow([p["point"][k] for k in keys] + [p.get(f) for f in CSV_FIELDS])
    return buf.getvalue()


def _render(doc) -> None:
    from rich.table import Table

    from archcost.cli.render import _seconds, si
    from archcost.cli.render_plan import short_plan

    keys = [a["key"] for a in doc["axes"]]
    tab = Table(title=f"{doc['model']['name']} on {doc['base']['cluster']}: "
                f"{doc['grid_points']} grid points in {doc['seconds']:.1f} s",
                title_justify="left")
    priced = any(p.get("usd_per_million_tokens") is not None for p in doc["points"])
    cols = [*keys, "step", "tok/s", "MFU", "mem/GPU", "tok/J", *(["$/Mtok"] if priced else []),
            "bound"]
    for col in cols:
        tab.add_column(col, justify="left" if col == "bound" else "right", no_wrap=True)
    plans = Table(title="best plan at each point", title_justify="left")
    for col in (*keys, "plan"):
        plans.add_column(col, justify="left" if col == "plan" else "right", overflow="fold")
    for p in doc["points"]:
        vals = [p["point"][k] for k in keys]
        if not p.get("fits"):
            tab.add_row(*vals, "no plan fits", *[""] * (len(cols) - len(vals) - 1))
            plans.add_row(*vals, "-")
            continue
        plans.add_row(*vals, short_plan(p["plan"]))
        usd = p.get("usd_per_million_tokens")
        tab.add_row(*vals, _seconds(p["step_time_s"]), si(p["tokens_per_s"]),
                    f"{100 * p['mfu']:.1f}%", si(p["peak_per_gpu_bytes"], "B", 1024),
                    f"{p['tokens_per_joule']:.3g}",
                    *([("-" if usd is None else f"{usd:.3g}")] if priced else []),
                    p["bottleneck"].replace("_comm", ""))
    out_console.print(tab)
    out_console.print(plans)
    sens = doc.get("sensitivity")
    if sens:
        tab = Table(title=f"what the next chip should improve: elasticity of step time at "
                    f"{sens['point'] or 'the base point'}", title_justify="left")
        for col in ("resource", "d ln T / d ln r", "if doubled", "predicted"):
            tab.add_column(col, justify="left" if col == "resource" else "right")
        for r in sens["resources"]:
            tab.add_row(r["resource"], f"{r['elasticity']:+.3f}",
                        _seconds(r["step_time_if_doubled_s"]),
                        _seconds(r["predicted_if_doubled_s"]))
        out_console.print(tab)
