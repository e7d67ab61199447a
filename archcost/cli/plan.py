"""``archcost plan MODEL --gpus N --cluster NAME`` (search) and ``archcost estimate MODEL
--plan ...`` (one plan in full)."""

from __future__ import annotations

import json
import math
from pathlib import Path
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
from archcost.errors import ConfigError

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
OverlapOpt = Annotated[bool | None, typer.Option(
    "--overlap-dp/--no-overlap-dp", show_default=False,
    help="Data-parallel collectives overlap backward (default: as the runtime does at the "
         "plan's ZeRO stage).")]
UsableOpt = Annotated[float, typer.Option("--usable-memory", help="Share of each GPU's memory "
                                          "a plan may fill (the rest: CUDA context, NCCL "
                                          "buffers, workspaces, fragmentation).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the JSON document.")]
OutOpt = Annotated[str | None, typer.Option("--output", "-o", help="Write the JSON document "
                                            "to this file.")]
TimelineOpt = Annotated[str | None, typer.Option("--timeline", help="Write the simulated "
                                                 "schedule as a Chrome/Perfetto trace (.json).")]
EmitOpt = Annotated[str | None, typer.Option("--emit", help="Print the plan as trainer "
                                             "configuration: torchtitan, deepspeed, megatron.")]


def register(app: typer.Typer) -> None:
    app.command("plan")(plan)
    app.command("estimate")(estimate)


def _setup(model, set_, dtype, optimizer, seq_len, cluster_name, gpus, recomputes, quiet,
           partition, overlap_dp, usable_memory, runtime_name="eager"):
    from archcost.hardware.profile import load_cluster
    from archcost.loader import load_model_file, parse_overrides
    from archcost.plan.costmodel import CostModel
    from archcost.plan.workload import trace_workload
    from archcost.runtime import load_runtime
    from archcost.trace.precision import parse_precision

    if seq_len < 1:
        raise ConfigError("--seq-len must be a positive integer; e.g. -s 4096")
    if not 0 < usable_memory <= 1:
        raise ConfigError(f"--usable-memory {usable_memory}: give a share in (0, 1], e.g. 0.9")
    if partition not in ("balanced", "uniform"):
        raise ConfigError(f"--partition {partition!r}: use balanced or uniform")
    policy = parse_precision(dtype)
    runtime = load_runtime(runtime_name)
    cluster = load_cluster(cluster_name, gpus)
    spec = load_model_file(model, parse_overrides(set_))
    with err_console.status("tracing", spinner="dots") if not quiet else _null() as status:
        def progress(msg: str) -> None:
            if status is not None:
                status.update(msg)

        workload = trace_workload(spec, seq_len, policy, optimizer, recomputes, progress,
                                  runtime)
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
        "runtime": runtime.summary(),
        "assumptions": {"partition": partition,
                        "overlap_dp": overlap_dp,  # None: the runtime's rule
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
    overlap_dp: OverlapOpt = None,
    runtime: RuntimeOpt = "eager",
    usable_memory: UsableOpt = 0.9,
    all_placements: Annotated[bool, typer.Option("--all-placements", help="Try every rank "
                                                 "order of tp, cp, dp, pp on the topology, not "
                                                 "only tp innermost, pp outermost.")] = False,
    as_json: JsonOpt = False,
    output: OutOpt = None,
    timeline: TimelineOpt = None,
    emit_fmt: EmitOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Search every valid parallel plan for MODEL on the cluster and rank them."""
    from archcost.plan.search import OBJECTIVES, search
    from archcost.plan.space import parse_plan

    counts = _gpu_counts(gpus)
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
                        _recomputes(fixed), as_json, partition, overlap_dp, usable_memory,
                        runtime)
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
    if best is not None and emit_fmt:
        doc["emitted"] = {"format": emit_fmt, "text": _emit_config(emit_fmt, best, cm, seq_len)}
    if best is not None and timeline:
        _write_timeline(timeline, best, cm)
    emit(doc, as_json, output)
    if not as_json:
        from archcost.cli.render_plan import render_search

        render_search(out_console, doc)
        if emit_fmt and best is not None:
            out_console.print(doc["emitted"]["text"], markup=False, highlight=False)
        for path in (output, timeline):
            if path:
                out_console.print(f"wrote {path}")
    if not doc["plans"]:
        raise typer.Exit(3)


@reports_errors
def estimate(
    model: ModelArg,
    plan_text: Annotated[str, typer.Option("--plan", help='The plan, e.g. "dp=8,tp=8,pp=4,'
                                           'zero=1,mbs=1,gbs=512,recompute=selective,sp=1,'
                                           'vpp=2"; or a plan JSON file from archcost plan.')],
    cluster: ClusterOpt = "dgx-h100-ndr",
    seq_len: SeqOpt = 4096,
    set_: SetOpt = None,
    dtype: DtypeOpt = "bf16-mixed",
    optimizer: OptimizerOpt = "adamw",
    partition: PartitionOpt = "balanced",
    overlap_dp: OverlapOpt = None,
    runtime: RuntimeOpt = "eager",
    usable_memory: UsableOpt = 0.9,
    as_json: JsonOpt = False,
    output: OutOpt = None,
    timeline: TimelineOpt = None,
    emit_fmt: EmitOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Estimate one plan in full: step time, tokens/s, MFU, memory per GPU, time per component
    and every collective. Keys left out take defaults (gbs has none); GPUs = dp*tp*pp*cp."""
    from archcost.plan.evaluate import estimate_plan
    from archcost.plan.search import add_economics
    from archcost.plan.space import Schedule, parse_plan

    plan_obj = parse_plan(_plan_text(plan_text))
    if plan_obj.vpp > 1 and "schedule" not in plan_text:
        plan_obj = parse_plan(_plan_text(plan_text), schedule=Schedule.INTERLEAVED)
    cm, header = _setup(model, set_, dtype, optimizer, seq_len, cluster, plan_obj.gpus,
                        (plan_obj.recompute,), as_json, partition, overlap_dp, usable_memory,
                        runtime)
    est, sched = estimate_plan(plan_obj, cm)
    add_economics(cm, est)
    doc = {**header, "kind": "estimate", "plan": plan_obj.to_string(), "estimate": est}
    if emit_fmt:
        doc["emitted"] = {"format": emit_fmt, "text": _emit_config(emit_fmt, plan_obj, cm,
                                                                   seq_len)}
    if timeline:
        _write_timeline(timeline, plan_obj, cm)
    emit(doc, as_json, output)
    if not as_json:
        from archcost.cli.render_plan import render_plan_estimate

        render_plan_estimate(out_console, doc)
        if emit_fmt:
            out_console.print(doc["emitted"]["text"], markup=False, highlight=False)
        for path in (output, timeline):
            if path:
                out_console.print(f"wrote {path}")


def _plan_text(text: str) -> str:
    """Plan text, or the best plan of a JSON document written by ``plan`` / ``estimate``."""
    path = Path(text)
    if text.endswith(".json"):
        if not path.is_file():
            raise ConfigError(f"--plan {text}: no such file; give a plan string or a JSON file "
                              "from archcost plan -o")
        try:
            doc = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"--plan {text}: not readable JSON ({exc}); regenerate it with "
                              "archcost plan -o") from None
        if isinstance(doc, dict) and doc.get("plans"):
            return doc["plans"][0]["plan"]
        if isinstance(doc, dict) and isinstance(doc.get("plan"), str):
            return doc["plan"]
        raise ConfigError(f"--plan {text}: no plan in this JSON; use a file from archcost plan "
                          "-o or archcost estimate -o")
    return text
