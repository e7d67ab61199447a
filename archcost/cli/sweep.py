"""``archcost sweep MODEL --hardware NAME --gpus N --vary KEY=V1,V2 ...``: hardware what-ifs."""

from __future__ import annotations

import csv
import io
from typing import Annotated

import typer

from archcost.cli.common import (
    check_outputs,
    emit,
    given,
    model_inputs,
    out_console,
    progress_bar,
    reports_errors,
    spinner,
)
from archcost.cli.options import (
    DTYPE,
    FALLBACK_CLUSTER,
    MASK_DENSITY,
    OBJECTIVE,
    OPTIMIZER,
    ROUTING,
    RUNTIME,
    SEQ_LEN,
    TRACE_TIMEOUT_S,
    USABLE_MEMORY,
    BatchOpt,
    ConstraintOpt,
    DebugOpt,
    DtypeOpt,
    FixOpt,
    Fp8RecipeOpt,
    GbsOpt,
    GpusOpt,
    HardwareOrClusterOpt,
    InputLenOpt,
    JsonOpt,
    MarkdownOpt,
    MaskDensityOpt,
    ModelArg,
    ObjectiveOpt,
    OptimizerOpt,
    OutputLenOpt,
    OutputOpt,
    PpOpt,
    RoutingOpt,
    RuntimeOpt,
    SeqLenOpt,
    SetOpt,
    TpOpt,
    TraceTimeoutOpt,
    UsableMemoryOpt,
    capture_options,
    check_usable_memory,
    default_gbs,
    gpu_counts,
    one_output,
)
from archcost.cli.plan import SCHEMA_VERSION, _recomputes
from archcost.errors import ConfigError


def register(app: typer.Typer) -> None:
    app.command("sweep",
                short_help="The best plan at every point of a what-if grid.")(sweep)


@reports_errors
def sweep(
    model: ModelArg,
    gpus: GpusOpt = None,
    vary: Annotated[list[str] | None, typer.Option("--vary", help="KEY=V1,V2,... multipliers "
                                                   "(2x) or values with units (1.8TB/s); "
                                                   "repeatable: the grid is their product.")] = None,
    cluster: HardwareOrClusterOpt = None,
    gbs: GbsOpt = None,
    seq_len: SeqLenOpt = SEQ_LEN,
    set_: SetOpt = None,
    dtype: DtypeOpt = DTYPE,
    fp8_recipe: Fp8RecipeOpt = None,
    optimizer: OptimizerOpt = OPTIMIZER,
    objective: ObjectiveOpt = OBJECTIVE,
    constraint: ConstraintOpt = None,
    fix: FixOpt = None,
    usable_memory: UsableMemoryOpt = USABLE_MEMORY,
    rerank: Annotated[int, typer.Option(min=1, max=1000, help="Best kernel candidates "
                                        "re-evaluated with the simulated pipeline at each "
                                        "point.")] = 2,
    sensitivity_: Annotated[bool, typer.Option("--sensitivity/--no-sensitivity", help="Add the "
                                               "elasticity of step time to each resource at "
                                               "the first grid point.")] = True,
    as_json: JsonOpt = False,
    markdown: MarkdownOpt = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print one row per grid point as CSV "
                                         "instead of tables.")] = False,
    output: OutputOpt = None,
    price: Annotated[list[str] | None, typer.Option("--price", help="GPU=$/h, the price per "
                                                    "GPU-hour of a GPU profile, e.g. "
                                                    "h100-sxm=2.5 (repeatable).")] = None,
    runtime: RuntimeOpt = RUNTIME,
    routing: RoutingOpt = ROUTING,
    mask_density: MaskDensityOpt = MASK_DENSITY,
    trace_timeout: TraceTimeoutOpt = TRACE_TIMEOUT_S,
    infer: Annotated[bool, typer.Option(
        "--infer", help="Sweep generation instead of training: price archcost infer (static "
        "batching on one replica) at every point; vary batch, input_len, output_len, dtype, "
        "hardware, gpu and hardware figures.")] = False,
    batch: BatchOpt = 1,
    input_len: InputLenOpt = 128,
    output_len: OutputLenOpt = 128,
    tp: TpOpt = 1,
    pp: PpOpt = 1,
    ctx: typer.Context = None,
    debug: DebugOpt = False,
) -> None:
    """Search the best plan at every point of a grid over hardware (peak FLOP/s, memory,
    bandwidths, latencies, NVLink domain, GPUs) and workload (sequence, batch, precision)
    parameters; report step time, tokens/s, MFU, memory, energy, cost and the bottleneck.
    With --infer: time to first token, time per output token, throughput and memory of
    generation at every point."""
    from archcost.loader import load_model_file, parse_overrides
    from archcost.plan.search import OBJECTIVES
    from archcost.plan.space import parse_plan
    from archcost.plan.workload import trace_workload
    from archcost.sweep.axes import check_mode, parse_vary
    from archcost.sweep.grid import build_point, run_grid, sensitivity
    from archcost.trace.precision import parse_precision

    one_output(as_json, markdown, as_csv)
    if infer:
        from archcost.cli.sweep_infer import infer_sweep

        infer_sweep(model, vary, cluster, set_, dtype if given(ctx, "dtype") else None, batch,
                    input_len, output_len, tp, pp, usable_memory, runtime,
                    capture_options(routing, mask_density, trace_timeout), as_json, markdown,
                    as_csv, output, training=[option for name, option in _TRAINING_ONLY.items()
                                              if given(ctx, name)])
        return
    inference = [f"--{name.replace('_', '-')}" for name in
                 ("batch", "input_len", "output_len", "tp", "pp") if given(ctx, name)]
    if inference:
        raise ConfigError(f"{', '.join(inference)}: options of an inference sweep; add --infer "
                          "(a training sweep takes --gbs, --seq-len and --fix)")
    counts = gpu_counts(gpus)
    vary = list(vary or [])
    if counts and len(counts) > 1:  # --gpus 16,32 is the gpus axis
        if any(v.strip().lower().startswith("gpus=") for v in vary):
            raise ConfigError(f"--gpus {gpus} and --vary gpus=...: give the GPU counts once")
        vary.insert(0, f"gpus={gpus}")
    axes = parse_vary(vary)
    check_mode(axes, infer=False)
    prices = _prices(price or [])
    if objective not in OBJECTIVES:
        raise ConfigError(f"--objective {objective!r}: use {', '.join(OBJECTIVES)}")
    check_usable_memory(usable_memory)
    from archcost.runtime import load_runtime

    stack = load_runtime(runtime)
    parse_precision(dtype, fp8_recipe=fp8_recipe)
    check_outputs(o=output, inputs=model_inputs(model, cluster, routing))
    options = capture_options(routing, mask_density, trace_timeout)
    cluster = cluster or FALLBACK_CLUSTER
    if counts is None:  # one node of the cluster
        from archcost.hardware.profile import load_cluster

        counts = [load_cluster(cluster).gpus]
    gpus_n = counts[0]
    gbs = gbs or default_gbs(seq_len)
    spec = load_model_file(model, parse_overrides(set_))
    recomputes = _recomputes(list(fix or []))
    cache: dict = {}
    quiet = as_json or markdown or as_csv
    with spinner(quiet) as status:
        def workload_for(s: int, d: str):
            if (s, d) not in cache:
                if status is not None:
                    status.update(f"tracing {spec.name} at seq_len={s}, {d}")
                recipe = fp8_recipe if d.strip().lower() == "fp8" else None
                cache[(s, d)] = trace_workload(spec, s, parse_precision(d, fp8_recipe=recipe),
                                               optimizer, recomputes, runtime=stack,
                                               options=options)
            return cache[(s, d)]

        workload_for(seq_len, dtype)
    search_kw = dict(constraints=constraint or [], fixed=list(fix or []), objective=objective,
                     top=1, rerank=rerank)
    grid_kw = dict(cluster_name=cluster, gpus=gpus_n, gbs=gbs, seq_len=seq_len, dtype=dtype,
                   workload_for=workload_for, search_kw=search_kw, prices=prices,
                   cm_kw={"usable_memory": usable_memory})
    with progress_bar(quiet, "grid points") as bar:
        task = bar.add_task("grid", total=None) if bar is not None else None
        grid = run_grid(axes, **grid_kw, progress=None if bar is None else
                        lambda d, n: bar.update(task, completed=d, total=n))
    doc = {
        "schema_version": SCHEMA_VERSION, "kind": "sweep",
        "model": {"name": spec.name, "file": spec.path.name, "builder": spec.builder_name,
                  "config": spec.model_config(1, seq_len)},
        "base": {"cluster": cluster, "gpus": gpus_n, "gbs": gbs, "seq_len": seq_len,
                 "dtype": dtype, "objective": objective, "runtime": stack.name},
        "prices_usd_per_gpu_hour": prices,
        **grid,
    }
    first = next((p for p in grid["points"] if p.get("fits")), None)
    if sensitivity_ and first is not None:
        from archcost.plan.costmodel import CostModel

        _, point_cluster, *_, w = build_point(
            axes, first["index"], cluster_name=cluster, gpus=gpus_n, gbs=gbs, seq_len=seq_len,
            dtype=dtype, workload_for=workload_for, prices=prices)
        doc["sensitivity"] = {"point": first["point"], "plan": first["plan"],
                              "resources": sensitivity(
                                  CostModel(w, point_cluster, usable_memory=usable_memory),
                                  parse_plan(first["plan"]))}
    emit(doc, as_json, output)
    if markdown or as_csv:
        typer.echo(to_markdown(doc) if markdown else to_csv(doc), nl=False)
    elif not as_json:
        from archcost.cli.layout import say

        _render(out_console, doc)
        if output:
            say(out_console, f"wrote {output}")


# what a training sweep reads and a sweep --infer does not: parameter -> option
_TRAINING_ONLY = {"gpus": "--gpus", "gbs": "--gbs", "seq_len": "--seq-len", "optimizer":
                  "--optimizer", "objective": "--objective", "fix": "--fix", "constraint":
                  "--constraint", "price": "--price", "fp8_recipe": "--fp8-recipe", "rerank":
                  "--rerank", "sensitivity_": "--sensitivity/--no-sensitivity"}
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
    from archcost.report import fmt
    from archcost.report.document import point_label

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
            fmt.seconds(p["step_time_s"]), f"{p['tokens_per_s']:,.0f}", fmt.percent(p["mfu"]),
            fmt.nbytes(p["peak_per_gpu_bytes"]), fmt.si(p["tokens_per_joule"]),
            fmt.usd(usd), p["bottleneck"], f"`{p['plan']}`"]) + " |")
    sens = doc.get("sensitivity")
    if sens:
        lines += ["", f"Elasticity of step time at {_md(point_label(sens['point'], keys))} "
                  f"with plan `{sens['plan']}` (d ln T / d ln r; -1: time halves when r doubles):", "",
                  "| resource | elasticity | step if doubled | predicted from elasticity |",
                  "|---|---:|---:|---:|"]
        for r in sens["resources"]:
            lines.append(f"| {r['resource']} | {r['elasticity']:+.3f} | "
                         f"{fmt.seconds(r['step_time_if_doubled_s'], 4)} | "
                         f"{fmt.seconds(r['predicted_if_doubled_s'], 4)} |")
    lines += ["", f"{doc['grid_points']} grid points in {fmt.seconds(doc['seconds'])} "
              f"({fmt.si(doc['points_per_second'], 'points/s')}).", ""]
    return "\n".join(lines)


def to_csv(doc, fields=CSV_FIELDS) -> str:
    """One row per grid point: its axis values, then ``fields`` of the point."""
    keys = [a["key"] for a in doc["axes"]]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([*keys, *fields])
    for p in doc["points"]:
        w.writerow([p["point"][k] for k in keys] + [p.get(f) for f in fields])
    return buf.getvalue()


def _render(console, doc) -> None:
    from archcost.cli.layout import Col, Grid
    from archcost.report import fmt
    from archcost.report.document import point_label
    from archcost.report.tables import short_plan

    keys = [a["key"] for a in doc["axes"]]
    priced = any(p.get("usd_per_million_tokens") is not None for p in doc["points"])
    cols = [*[Col(k, "left", key=True) for k in keys], Col("step"), Col("tok/s"), Col("MFU"),
            Col("mem/GPU"), Col("tok/J"), *([Col("$/Mtok")] if priced else []),
            Col("bound", "left"), Col("best plan", "left", "list", below=True)]
    tab = Grid(f"{doc['model']['name']} on {doc['base']['cluster']}: {doc['grid_points']} grid "
               f"points in {fmt.seconds(doc['seconds'])}", cols,
               notes=["tok/s: tokens per second; mem/GPU: peak memory of the fullest GPU; "
                      "tok/J: tokens per joule; "
                      + ("$/Mtok: dollars per million tokens; " if priced else "")
                      + "bound: the largest component of the step; best plan: the keys away "
                      "from their defaults, as archcost plan shows them"])
    for p in doc["points"]:
        vals = [str(p["point"][k]) for k in keys]
        if not p.get("fits"):
            tab.row(*vals, ("no plan fits", "bold red"), *[""] * (len(cols) - len(vals) - 1))
            continue
        usd = p.get("usd_per_million_tokens")
        tab.row(*vals, fmt.seconds(p["step_time_s"]), fmt.si(p["tokens_per_s"]),
                fmt.percent(p["mfu"]), fmt.nbytes(p["peak_per_gpu_bytes"]),
                fmt.si(p["tokens_per_joule"]), *([fmt.usd(usd)] if priced else []),
                p["bottleneck"].replace("_comm", ""), short_plan(p["plan"]))
    tab.print(console)
    sens = doc.get("sensitivity")
    if sens:
        tab = Grid(f"what the next chip should improve: elasticity of step time at "
                   f"{point_label(sens['point'], keys) if sens['point'] else 'the base point'}",
                   [Col("resource", "left", key=True), Col("d ln T / d ln r"),
                    Col("if doubled"), Col("predicted")],
                   notes=["if doubled: the step time with the resource doubled; predicted: "
                          "the same from the elasticity"])
        for r in sens["resources"]:
            tab.row(r["resource"], f"{r['elasticity']:+.3f}",
                    fmt.seconds(r["step_time_if_doubled_s"]),
                    fmt.seconds(r["predicted_if_doubled_s"]))
        tab.print(console)
