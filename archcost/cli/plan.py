"""``archcost plan MODEL --gpus N --cluster NAME`` (search) and ``archcost estimate MODEL
--plan ...`` (one plan in full)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from archcost.cli.analyze import ModelArg, _null
from archcost.cli.common import DebugOpt, emit, err_console, out_console, reports_errors
from archcost.errors import ConfigError, DocumentError

SCHEMA_VERSION = 1

SeqOpt = Annotated[int, typer.Option("--seq-len", "-s", help="Tokens per sequence.")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Builder argument KEY=VALUE "
                                                  "(repeatable).", show_default=False)]
DtypeOpt = Annotated[str, typer.Option(help="Precision: fp32, bf16, fp16, bf16-mixed, "
                                            "fp16-mixed.")]
ClusterOpt = Annotated[str, typer.Option("--cluster", help="Cluster profile name or file "
                                         "(archcost profiles list).")]
OptimizerOpt = Annotated[str, typer.Option(help="Optimizer: adamw, adam, sgd, adamw-fused, "
                                                "adam-fused.")]
PartitionOpt = Annotated[str, typer.Option(help="Pipeline stages: balanced (on traced layer "
                                                "costs, embedding and head included) or "
                                                "uniform (layers / stages).")]
OverlapOpt = Annotated[bool, typer.Option("--overlap-dp/--no-overlap-dp",
                                          help="Data-parallel collectives overlap backward.")]
UsableOpt = Annotated[float, typer.Option("--usable-memory", help="Share of each GPU's memory "
                                          "a plan may fill (the rest: CUDA context, NCCL "
                                          "buffers, workspaces, fragmentation).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the JSON document.")]
OutOpt = Annotated[str | None, typer.Option("--output", "-o", help="Write the JSON document "
                                            "to this file.")]
TimelineOpt = Annotated[str | None, typer.Option("--timeline", help="Write the simulated "
                                                 "schedule as a Chrome/Perfetto trace (.json).")]
EmitOpt = Annotated[str | None, typer.Option("--emit", help="The plan as trainer "
                                             "configuration: torchtitan, deepspeed, megatron. "
                                             "Printed alone on stdout (the tables go to stderr) "
                                             "unless --emit-file is given.")]
EmitFileOpt = Annotated[str | None, typer.Option("--emit-file", help="Write the --emit "
                                                 "configuration to this file (atomically); the "
                                                 "tables stay on stdout.")]


def register(app: typer.Typer) -> None:
    app.command("plan", short_help="Search and rank every valid parallel plan.")(plan)
    app.command("estimate", short_help="Estimate one parallel plan in full.")(estimate)


def _setup(model, set_, dtype, optimizer, seq_len, cluster_name, gpus, recomputes, quiet,
           partition, overlap_dp, usable_memory):
    from archcost.hardware.profile import load_cluster
    from archcost.loader import load_model_file, parse_overrides
    from archcost.plan.costmodel import CostModel
    from archcost.plan.workload import trace_workload
    from archcost.trace.precision import parse_precision

    if seq_len < 1:
        raise ConfigError("--seq-len must be a positive integer; e.g. -s 4096")
    if not 0 < usable_memory <= 1:
        raise ConfigError(f"--usable-memory {usable_memory}: give a share in (0, 1], e.g. 0.9")
    if partition not in ("balanced", "uniform"):
        raise ConfigError(f"--partition {partition!r}: use balanced or uniform")
    policy = parse_precision(dtype)
    cluster = load_cluster(cluster_name, gpus)
    spec = load_model_file(model, parse_overrides(set_))
    with err_console.status("tracing", spinner="dots") if not quiet else _null() as status:
        def progress(msg: str) -> None:
            if status is not None:
                status.update(msg)

        workload = trace_workload(spec, seq_len, policy, optimizer, recomputes, progress)
    cm = CostModel(workload, cluster, overlap_dp=overlap_dp,
                   uniform_stages=partition == "uniform", usable_memory=usable_memory)
    header = {
        "schema_version": SCHEMA_VERSION,
        "model": {"name": spec.name, "file": spec.path.name, "builder": spec.builder_name,
                  "config": spec.builder_config(1, seq_len)},
        "workload": {"seq_len": seq_len, "precision": policy.precision.value,
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
        "assumptions": {"partition": partition, "overlap_dp": overlap_dp,
                        "usable_memory": usable_memory},
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


def _gpu_counts(text: str) -> list[int]:
    try:
        counts = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--gpus {text!r}: give a GPU count or a comma list, e.g. 8 or "
                          "512,1024") from None
    if not counts or any(n < 1 for n in counts):
        raise ConfigError(f"--gpus {text!r}: GPU counts must be positive")
    return counts


def _write_timeline(path: str, plan, cm) -> None:
    from archcost.io import write_json
    from archcost.plan.evaluate import estimate_plan
    from archcost.plan.timeline import plan_trace

    doc, sched = estimate_plan(plan, cm)
    if Path(path).suffix.lower() != ".json":
        raise ConfigError(f"--timeline {path}: name the file .json (Chrome/Perfetto trace)")
    write_json(path, plan_trace(doc, sched))


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


def _finish(doc, render, *, as_json: bool, output: str | None, timeline: str | None,
            emit_fmt: str | None, emit_file: str | None, notes: list[str]) -> None:
    """Write the files, then show the tables and the configuration: with --emit and no
    --emit-file, stdout holds the configuration alone (nothing when no plan fits) and the tables
    go to stderr; otherwise the tables are on stdout. A configuration is never wrapped."""
    emitted = doc.get("emitted")
    emit(doc, as_json, output)
    if emitted and emit_file:
        from archcost.io import atomic_write_text

        atomic_write_text(emit_file, emitted["text"])
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
    for path in (output, timeline, emit_file if emitted else None):
        if path:
            say(console, f"wrote {path}")


@reports_errors
def plan(
    model: ModelArg,
    gpus: Annotated[str, typer.Option("--gpus", help="GPU count, or a comma list to compare "
                                      "(e.g. 512,1024).")],
    cluster: ClusterOpt = "dgx-h100-ndr",
    gbs: Annotated[int | None, typer.Option("--gbs", help="Global batch in sequences (default: "
                                            "about 4M tokens, a power of two).")] = None,
    seq_len: SeqOpt = 4096,
    set_: SetOpt = None,
    dtype: DtypeOpt = "bf16-mixed",
    optimizer: OptimizerOpt = "adamw",
    objective: Annotated[str, typer.Option(help="Rank by: time (step time), cost ($ per "
                                           "million tokens), energy (joules per token).")] = "time",
    constraint: Annotated[list[str] | None, typer.Option("--constraint", help="Filter, e.g. "
                                                         "tp<=8 (repeatable).")] = None,
    fix: Annotated[list[str] | None, typer.Option("--fix", help="Pin fields, e.g. pp=4 or "
                                                  "zero=1,recompute=full (repeatable).")] = None,
    top: Annotated[int, typer.Option(help="Plans shown.")] = 5,
    max_tp: Annotated[int | None, typer.Option(help="Largest tp tried (default: GPUs per "
                                               "node).")] = None,
    partition: PartitionOpt = "balanced",
    overlap_dp: OverlapOpt = True,
    usable_memory: UsableOpt = 0.9,
    all_placements: Annotated[bool, typer.Option("--all-placements", help="Try every rank "
                                                 "order of tp, cp, dp, pp on the topology, not "
                                                 "only tp innermost, pp outermost.")] = False,
    as_json: JsonOpt = False,
    output: OutOpt = None,
    timeline: TimelineOpt = None,
    emit_fmt: EmitOpt = None,
    emit_file: EmitFileOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Search every valid parallel plan for MODEL on the cluster and rank them."""
    from archcost.plan.search import OBJECTIVES, search
    from archcost.plan.space import parse_plan

    counts = _gpu_counts(gpus)
    emit_fmt = _check_emit(emit_fmt, emit_file, as_json)
    if objective not in OBJECTIVES:
        raise ConfigError(f"--objective {objective!r}: use {', '.join(OBJECTIVES)}")
    if top < 1:
        raise ConfigError("--top must be >= 1")
    if gbs is None:
        gbs = max(1, 2 ** round(math.log2(max(1.0, 4 * 2**20 / seq_len))))
    if gbs < 1:
        raise ConfigError("--gbs must be a positive number of sequences")
    fixed = list(fix or [])
    cm, header = _setup(model, set_, dtype, optimizer, seq_len, cluster, max(counts),
                        _recomputes(fixed), as_json, partition, overlap_dp, usable_memory)
    quiet = as_json
    if quiet:
        result = search(cm, counts, gbs, constraints=constraint or [], fixed=fixed,
                        objective=objective, top=top, max_tp=max_tp,
                        placements="all" if all_placements else "default")
    else:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      console=err_console, transient=True) as bar:
            tasks: dict[str, int] = {}

            def progress(what: str, done: int, total: int) -> None:
                if what not in tasks:
                    tasks[what] = bar.add_task(what, total=total)
                bar.update(tasks[what], completed=done, total=total)

            result = search(cm, counts, gbs, constraints=constraint or [], fixed=fixed,
                            objective=objective, top=top, max_tp=max_tp, progress=progress,
                            placements="all" if all_placements else "default")
    doc = {**header, "kind": "plan", **result}
    best = parse_plan(doc["plans"][0]["plan"]) if doc["plans"] else None
    notes = _emitted(doc, emit_fmt, best, cm, seq_len)
    if best is not None and timeline:
        _write_timeline(timeline, best, cm)
    from archcost.cli.render_plan import render_search

    _finish(doc, render_search, as_json=as_json, output=output,
            timeline=timeline if best is not None else None, emit_fmt=emit_fmt,
            emit_file=emit_file, notes=notes)
    if not doc["plans"]:
        raise typer.Exit(3)


@reports_errors
def estimate(
    model: ModelArg,
    plan_text: Annotated[str, typer.Option("--plan", help='The plan, e.g. '
                                           '"dp=8,tp=8,pp=4,zero=1,gbs=512"; or a plan JSON '
                                           'file from archcost plan.')],
    cluster: ClusterOpt = "dgx-h100-ndr",
    seq_len: SeqOpt = 4096,
    set_: SetOpt = None,
    dtype: DtypeOpt = "bf16-mixed",
    optimizer: OptimizerOpt = "adamw",
    partition: PartitionOpt = "balanced",
    overlap_dp: OverlapOpt = True,
    usable_memory: UsableOpt = 0.9,
    as_json: JsonOpt = False,
    output: OutOpt = None,
    timeline: TimelineOpt = None,
    emit_fmt: EmitOpt = None,
    emit_file: EmitFileOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Estimate one plan in full: step time, tokens/s, MFU, memory per GPU, time per component
    and every collective. Keys left out take defaults (gbs has none); GPUs = dp*tp*pp*cp."""
    from archcost.plan.evaluate import estimate_plan
    from archcost.plan.search import add_economics
    from archcost.plan.space import Schedule, parse_plan

    emit_fmt = _check_emit(emit_fmt, emit_file, as_json)
    plan_obj = parse_plan(_plan_text(plan_text))
    if plan_obj.vpp > 1 and "schedule" not in plan_text:
        plan_obj = parse_plan(_plan_text(plan_text), schedule=Schedule.INTERLEAVED)
    cm, header = _setup(model, set_, dtype, optimizer, seq_len, cluster, plan_obj.gpus,
                        (plan_obj.recompute,), as_json, partition, overlap_dp, usable_memory)
    est, sched = estimate_plan(plan_obj, cm)
    add_economics(cm, est)
    doc = {**header, "kind": "estimate", "plan": plan_obj.to_string(), "estimate": est}
    notes = _emitted(doc, emit_fmt, plan_obj, cm, seq_len)
    if timeline:
        _write_timeline(timeline, plan_obj, cm)
    from archcost.cli.render_plan import render_plan_estimate

    _finish(doc, render_plan_estimate, as_json=as_json, output=output, timeline=timeline,
            emit_fmt=emit_fmt, emit_file=emit_file, notes=notes)


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
