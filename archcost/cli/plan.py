"""``archcost plan MODEL --gpus N --cluster NAME`` (search) and ``archcost estimate MODEL
--plan ...`` (one plan in full)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from archcost.cli.common import (
    check_outputs,
    emit,
    err_console,
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
    PARTITION,
    ROUTING,
    RUNTIME,
    SEQ_LEN,
    TOP,
    TRACE_TIMEOUT_S,
    USABLE_MEMORY,
    ConstraintOpt,
    DebugOpt,
    DtypeOpt,
    EmitFileOpt,
    EmitOpt,
    FixOpt,
    Fp8RecipeOpt,
    GbsOpt,
    GpusOpt,
    HardwareOrClusterOpt,
    JsonOpt,
    LowpGatherOpt,
    MaskDensityOpt,
    ModelArg,
    ObjectiveOpt,
    OptimizerOpt,
    OutputOpt,
    OverlapOpt,
    PartitionOpt,
    PlanOpt,
    RoutingOpt,
    RuntimeOpt,
    SeqLenOpt,
    SetOpt,
    TimelineOpt,
    TopOpt,
    TraceTimeoutOpt,
    UsableMemoryOpt,
    capture_options,
    check_usable_memory,
    default_gbs,
    gpu_counts,
)
from archcost.errors import ConfigError, DocumentError

SCHEMA_VERSION = 1


def register(app: typer.Typer) -> None:
    app.command("plan", short_help="Search and rank every valid parallel plan.")(plan)
    app.command("estimate", short_help="Estimate one parallel plan in full.")(estimate)


def check_common(dtype, partition, usable_memory, fp8_recipe=None, lowp_gather=False) -> None:
    """What plan and estimate check before loading anything."""
    from archcost.trace.precision import parse_precision

    check_usable_memory(usable_memory)
    if partition not in ("balanced", "uniform"):
        raise ConfigError(f"--partition {partition!r}: use balanced or uniform")
    policy = parse_precision(dtype, fp8_recipe=fp8_recipe)
    if lowp_gather and policy.low_precision is None:
        raise ConfigError(f"--fp8-all-gather needs low-precision GEMMs; --dtype {dtype} has "
                          "none: add --dtype fp8 (or mxfp8, nvfp4), or drop --fp8-all-gather")


def _setup(model, set_, dtype, optimizer, seq_len, cluster_name, gpus, recomputes, quiet,
           partition, overlap_dp, usable_memory, fp8_recipe=None, lowp_gather=False,
           runtime_name="eager", options=None):
    from archcost.hardware.profile import load_cluster
    from archcost.loader import load_model_file, parse_overrides
    from archcost.plan.costmodel import CostModel
    from archcost.plan.workload import trace_workload
    from archcost.runtime import load_runtime
    from archcost.trace.precision import parse_precision

    policy = parse_precision(dtype, fp8_recipe=fp8_recipe)
    runtime = load_runtime(runtime_name)
    cluster = load_cluster(cluster_name or FALLBACK_CLUSTER, gpus)
    if policy.low_precision is not None:
        from archcost.cost.compute import require_peak

        require_peak(cluster.gpu, policy.low_precision.peak_key, f"--dtype {dtype}")
    spec = load_model_file(model, parse_overrides(set_))
    with spinner(quiet) as status:
        def progress(msg: str) -> None:
            if status is not None:
                status.update(msg)

        workload = trace_workload(spec, seq_len, policy, optimizer, recomputes, progress,
                                  runtime, options)
    gather = policy.low_precision.peak_key if lowp_gather else None
    cm = CostModel(workload, cluster, overlap_dp=overlap_dp,
                   uniform_stages=partition == "uniform", usable_memory=usable_memory,
                   param_allgather_dtype=gather)
    header = {
        "schema_version": SCHEMA_VERSION,
        "model": {"name": spec.name, "file": spec.path.name, "builder": spec.builder_name,
                  "config": spec.model_config(1, seq_len)},
        "workload": {"seq_len": seq_len, "precision": policy.precision.value,
                     **({"fp8_recipe": policy.fp8_recipe.value} if policy.fp8_recipe else {}),
                     "optimizer": optimizer, "layers": workload.layers,
                     "params": workload.params, "shape": {
                         "layers": workload.shape.layers, "heads": workload.shape.heads,
                         "kv_heads": workload.shape.kv_heads, "hidden": workload.shape.hidden,
                         "experts": workload.shape.experts},
                     "tp_collectives_per_layer": workload.tp_points,
                     "notes": list(workload.notes)},
        "hardware": {"cluster": cluster.name, "gpu": cluster.gpu.name,
                     "gpus_per_node": cluster.gpus_per_node,
                     "levels": [lv.name for lv in cluster.levels]},
        "runtime": runtime.summary(),
        "assumptions": {"partition": partition,
                        "overlap_dp": overlap_dp,  # None: the runtime's rule
                        "usable_memory": usable_memory,
                        **({"param_all_gather": gather} if gather else {})},
    }
    return cm, header


def _recomputes(fixed: list[str]):
    from archcost.options import Recompute

    for text in fixed:
        for item in text.split(","):
            key, _, value = item.partition("=")
            if key.strip().lower() == "recompute" and value.strip():
                try:
                    return (Recompute(value.strip().lower()),)
                except ValueError:
                    raise ConfigError(f"--fix {item.strip()}: recompute is none, selective or "
                                      "full") from None
    return tuple(Recompute)


def _check_timeline(path: str | None) -> None:
    if path and Path(path).suffix.lower() != ".json":
        raise ConfigError(f"--timeline {path}: name the file .json (Chrome/Perfetto trace)")


def _timeline_text(plan, cm) -> str:
    from archcost.cli.common import document_text
    from archcost.plan.evaluate import estimate_plan
    from archcost.plan.timeline import plan_trace

    doc, sched = estimate_plan(plan, cm)
    return document_text(plan_trace(doc, sched))


def _emit_config(fmt: str, plan, cm, seq_len: int) -> str:
    from archcost.plan.emit import emit as emit_plan

    return emit_plan(plan, fmt, seq_len=seq_len, precision=cm.workload.precision,
                     layers=cm.workload.layers)


def _check_emit(emit_fmt: str | None, emit_file: str | None, as_json: bool) -> str | None:
    """The trainer format, checked before any tracing."""
    from archcost.plan.emit import FORMATS

    if emit_fmt is None:
        if emit_file:
            raise ConfigError(f"--emit-file {emit_file}: say which configuration with --emit "
                              f"{'|'.join(FORMATS)}")
        return None
    key = emit_fmt.strip().lower()
    if key not in FORMATS:
        raise ConfigError(f"--emit {emit_fmt!r}: use {', '.join(FORMATS)}")
    if as_json and not emit_file:
        raise ConfigError("--json and --emit both print to stdout: add --emit-file FILE for the "
                          "configuration (the JSON document also holds it under 'emitted')")
    return key


def _emitted(doc, fmt: str | None, plan, cm, seq_len: int) -> list[str]:
    """Add the trainer configuration of ``plan`` to ``doc``; what it does differently from the
    plan, one line each (a DeepSpeed JSON or Megatron arguments cannot carry comments)."""
    if fmt is None or plan is None:
        return []
    from archcost.plan.emit import caveats

    doc["emitted"] = {"format": fmt, "text": _emit_config(fmt, plan, cm, seq_len)}
    if fmt == "torchtitan":  # the TOML holds them as comments
        return []
    return caveats(plan, fmt, seq_len=seq_len, precision=cm.workload.precision,
                   layers=cm.workload.layers)


def _finish(doc, render, *, as_json: bool, output: str | None, files: dict[str, str],
            emit_fmt: str | None, emit_file: str | None, notes: list[str]) -> None:
    """Write the files (the document, ``files`` and the configuration: all or none), then show the tables and the configuration: with --emit and no
    --emit-file, stdout holds the configuration alone (nothing when no plan fits) and the tables
    go to stderr; otherwise the tables are on stdout. A configuration is never wrapped."""
    emitted = doc.get("emitted")
    extra = {**files, **({emit_file: emitted["text"]} if emitted and emit_file else {})}
    emit(doc, as_json, output, extra)
    if as_json:
        return
    from archcost.cli.layout import say

    console = err_console if emit_fmt and not emit_file else out_console
    render(console, doc)
    if emitted:
        for note in notes:
            say(console, f"note: {emitted['format']}: {note}", style="yellow")
        if not emit_file:
            typer.echo(emitted["text"], nl=False)
    for path in (output, *extra):
        if path:  # a path is never wrapped: it is copied as it is
            console.print(f"wrote {path}", markup=False, highlight=False, soft_wrap=True)


@reports_errors
def plan(
    model: ModelArg,
    gpus: GpusOpt = None,
    cluster: HardwareOrClusterOpt = None,
    gbs: GbsOpt = None,
    seq_len: SeqLenOpt = SEQ_LEN,
    set_: SetOpt = None,
    dtype: DtypeOpt = DTYPE,
    fp8_recipe: Fp8RecipeOpt = None,
    lowp_gather: LowpGatherOpt = False,
    optimizer: OptimizerOpt = OPTIMIZER,
    objective: ObjectiveOpt = OBJECTIVE,
    constraint: ConstraintOpt = None,
    fix: FixOpt = None,
    top: TopOpt = TOP,
    max_tp: Annotated[int | None, typer.Option(min=1, help="Largest tp tried (default: GPUs "
                                               "per node).")] = None,
    partition: PartitionOpt = PARTITION,
    overlap_dp: OverlapOpt = None,
    runtime: RuntimeOpt = RUNTIME,
    usable_memory: UsableMemoryOpt = USABLE_MEMORY,
    all_placements: Annotated[bool, typer.Option("--all-placements", help="Try every rank "
                                                 "order of tp, cp, dp, pp on the topology, not "
                                                 "only tp innermost, pp outermost.")] = False,
    as_json: JsonOpt = False,
    output: OutputOpt = None,
    timeline: TimelineOpt = None,
    emit_fmt: EmitOpt = None,
    emit_file: EmitFileOpt = None,
    routing: RoutingOpt = ROUTING,
    mask_density: MaskDensityOpt = MASK_DENSITY,
    trace_timeout: TraceTimeoutOpt = TRACE_TIMEOUT_S,
    debug: DebugOpt = False,
) -> None:
    """Search every valid parallel plan for MODEL on the cluster and rank them."""
    from archcost.plan.search import OBJECTIVES, search
    from archcost.plan.space import parse_plan

    counts = gpu_counts(gpus)
    if objective not in OBJECTIVES:
        raise ConfigError(f"--objective {objective!r}: use {', '.join(OBJECTIVES)}")
    check_common(dtype, partition, usable_memory, fp8_recipe, lowp_gather)
    emit_fmt = _check_emit(emit_fmt, emit_file, as_json)
    _check_timeline(timeline)
    check_outputs(o=output, timeline=timeline, emit_file=emit_file,
                  inputs=model_inputs(model, cluster, routing))
    gbs = gbs or default_gbs(seq_len)
    fixed = list(fix or [])
    cm, header = _setup(model, set_, dtype, optimizer, seq_len, cluster,
                        max(counts) if counts else None, _recomputes(fixed), as_json,
                        partition, overlap_dp, usable_memory, fp8_recipe, lowp_gather, runtime,
                        capture_options(routing, mask_density, trace_timeout))
    counts = counts or [cm.cluster.gpus]
    with progress_bar(as_json, "{task.description}") as bar:
        tasks: dict[str, int] = {}

        def progress(what: str, done: int, total: int) -> None:
            if what not in tasks:
                tasks[what] = bar.add_task(what, total=total)
            bar.update(tasks[what], completed=done, total=total)

        result = search(cm, counts, gbs, constraints=constraint or [], fixed=fixed,
                        objective=objective, top=top, max_tp=max_tp,
                        progress=progress if bar is not None else None,
                        placements="all" if all_placements else "default")
    doc = {**header, "kind": "plan", **result}
    best = parse_plan(doc["plans"][0]["plan"]) if doc["plans"] else None
    notes = _emitted(doc, emit_fmt, best, cm, seq_len)
    files = {timeline: _timeline_text(best, cm)} if best is not None and timeline else {}
    from archcost.cli.render_plan import render_search

    _finish(doc, render_search, as_json=as_json, output=output, files=files,
            emit_fmt=emit_fmt, emit_file=emit_file, notes=notes)
    if not doc["plans"]:
        raise typer.Exit(3)


@reports_errors
def estimate(
    model: ModelArg,
    plan_text: PlanOpt,
    cluster: HardwareOrClusterOpt = None,
    seq_len: SeqLenOpt = SEQ_LEN,
    set_: SetOpt = None,
    dtype: DtypeOpt = DTYPE,
    fp8_recipe: Fp8RecipeOpt = None,
    lowp_gather: LowpGatherOpt = False,
    optimizer: OptimizerOpt = OPTIMIZER,
    partition: PartitionOpt = PARTITION,
    overlap_dp: OverlapOpt = None,
    runtime: RuntimeOpt = RUNTIME,
    usable_memory: UsableMemoryOpt = USABLE_MEMORY,
    as_json: JsonOpt = False,
    output: OutputOpt = None,
    timeline: TimelineOpt = None,
    emit_fmt: EmitOpt = None,
    emit_file: EmitFileOpt = None,
    routing: RoutingOpt = ROUTING,
    mask_density: MaskDensityOpt = MASK_DENSITY,
    trace_timeout: TraceTimeoutOpt = TRACE_TIMEOUT_S,
    debug: DebugOpt = False,
) -> None:
    """Estimate one plan in full: step time, tokens/s, MFU, memory per GPU, time per component
    and every collective. Keys left out take defaults (gbs has none); GPUs = dp*tp*pp*cp."""
    from archcost.plan.evaluate import estimate_plan
    from archcost.plan.search import add_economics

    check_common(dtype, partition, usable_memory, fp8_recipe, lowp_gather)
    emit_fmt = _check_emit(emit_fmt, emit_file, as_json)
    _check_timeline(timeline)
    check_outputs(o=output, timeline=timeline, emit_file=emit_file,
                  inputs=model_inputs(model, cluster, routing))
    plan_obj = read_plan(plan_text)
    cm, header = _setup(model, set_, dtype, optimizer, seq_len, cluster, plan_obj.gpus,
                        (plan_obj.recompute,), as_json, partition, overlap_dp, usable_memory,
                        fp8_recipe, lowp_gather, runtime,
                        capture_options(routing, mask_density, trace_timeout))
    est, sched = estimate_plan(plan_obj, cm)
    add_economics(cm, est)
    doc = {**header, "kind": "estimate", "plan": plan_obj.to_string(), "estimate": est}
    notes = _emitted(doc, emit_fmt, plan_obj, cm, seq_len)
    files = {timeline: _timeline_text(plan_obj, cm)} if timeline else {}
    from archcost.cli.render_plan import render_plan_estimate

    _finish(doc, render_plan_estimate, as_json=as_json, output=output, files=files,
            emit_fmt=emit_fmt, emit_file=emit_file, notes=notes)


def read_plan(text: str):
    """``--plan``: a plan string, or the best plan of a JSON document from plan/estimate -o."""
    from archcost.plan.space import Schedule, parse_plan

    plan_text = _plan_text(text)
    plan_obj = parse_plan(plan_text)
    if plan_obj.vpp > 1 and "schedule" not in plan_text:
        plan_obj = parse_plan(plan_text, schedule=Schedule.INTERLEAVED)
    return plan_obj


def _plan_text(text: str) -> str:
    """Plan text, or the plan of a result document (checked against its schema): the best
    plan of ``plan -o``, the plan of ``estimate -o`` or ``validate -o``."""
    if not text.endswith(".json"):
        return text
    from archcost.report.document import load_document

    if not Path(text).is_file():
        raise ConfigError(f"--plan {text}: no such file; give a plan string or a JSON file "
                          "from archcost plan -o")
    try:
        doc = load_document(text)
    except DocumentError as exc:
        raise DocumentError(f"--plan {exc}") from None
    if doc["kind"] == "plan":
        if not doc["plans"]:
            raise ConfigError(f"--plan {text}: no plan of this search fits in memory; search "
                              "again (more GPUs, a smaller batch) or give a plan string")
        return doc["plans"][0]["plan"]
    if doc["kind"] in ("estimate", "validation"):
        return doc["plan"]
    raise ConfigError(f"--plan {text}: this {doc['kind']} document holds no plan; use a file "
                      "from archcost plan -o or archcost estimate -o")
