"""``archcost analyze MODEL_FILE``: trace one training step and summarise its costs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from archcost.cli.common import (
    DebugOpt,
    RuntimeOpt,
    emit,
    err_console,
    out_console,
    reports_errors,
)
from archcost.errors import ConfigError

ModelArg = Annotated[
    str,
    typer.Argument(
        help="Model file (path/to/model.py or path/to/model.py:builder). It is run as Python.",
        show_default=False,
    ),
]


def register(app: typer.Typer) -> None:
    app.command("analyze")(analyze)


@reports_errors
def analyze(
    model: ModelArg,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", help="Sequences per step.")] = 1,
    seq_len: Annotated[int, typer.Option("--seq-len", "-s", help="Tokens per sequence.")] = 1024,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Builder argument KEY=VALUE (repeatable).", show_default=False),
    ] = None,
    dtype: Annotated[
        str,
        typer.Option(help="Precision: fp32, bf16, fp16 (all tensors), bf16-mixed, fp16-mixed."),
    ] = "fp32",
    fp32_grads: Annotated[
        bool, typer.Option("--fp32-grads", help="Mixed precision keeps fp32 gradients.")
    ] = False,
    optimizer: Annotated[
        str, typer.Option(help="Optimizer: adamw, adam, sgd (one kernel per update step), "
                               "adamw-fused, adam-fused (one fused kernel).")
    ] = "adamw",
    recompute: Annotated[
        str, typer.Option(help="Activation recomputation of repeated blocks: none, selective, full.")
    ] = "none",
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON document.")] = False,
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="Write the JSON document to this file.")
    ] = None,
    graph: Annotated[
        str | None, typer.Option(help="Export the operator graph (.graphml or .json).")
    ] = None,
    per_layer: Annotated[
        bool, typer.Option("--per-layer", help="Export repeated blocks expanded, one per layer.")
    ] = False,
    depth: Annotated[int, typer.Option(help="Module-tree depth shown.")] = 2,
    top: Annotated[int, typer.Option(help="Rows shown in the module table.")] = 15,
    symbolic: Annotated[
        bool, typer.Option("--symbolic", help="Fit exact formulas in batch b and sequence s.")
    ] = False,
    hardware: Annotated[
        str | None,
        typer.Option("--hardware", help="GPU profile name or file: add the time/memory estimate."),
    ] = None,
    solve: Annotated[
        str | None,
        typer.Option("--solve", help='Largest size that fits, e.g. "max b s.t. memory <= 80GB".'),
    ] = None,
    no_dedupe: Annotated[
        bool, typer.Option("--no-dedupe", help="Trace every repeated block instead of one.")
    ] = False,
    runtime: RuntimeOpt = "eager",
    debug: DebugOpt = False,
) -> None:
    """Trace forward, loss, backward and optimizer step on fake tensors; report FLOPs, bytes
    and memory per phase, module and op class."""
    from archcost.analysis import run_analysis
    from archcost.cli.render import render_analysis
    from archcost.loader import load_model_file, parse_overrides
    from archcost.trace.precision import parse_precision

    if batch_size < 1 or seq_len < 1:
        raise ConfigError("--batch-size and --seq-len must be positive integers; e.g. -b 8 -s 2048")
    if graph and Path(graph).suffix.lower() not in (".graphml", ".json"):
        raise ConfigError(f"--graph {graph}: unknown format; name the file .graphml or .json")
    policy = parse_precision(dtype, fp32_grads)
    from archcost.trace.recompute import Recompute

    try:
        recompute_policy = Recompute(recompute)
    except ValueError:
        raise ConfigError(
            f"--recompute {recompute!r} is unknown; use none, selective or full"
        ) from None
    from archcost.runtime import load_runtime

    stack = load_runtime(runtime)
    gpu = None
    if hardware:
        from archcost.hardware.profile import load_gpu

        gpu = load_gpu(hardware)
    spec = load_model_file(model, parse_overrides(set_))
    quiet = as_json
    with err_console.status("tracing", spinner="dots") if not quiet else _null() as status:

        def progress(msg: str) -> None:
            if status is not None:
                status.update(msg)

        doc, traced = run_analysis(
            spec, batch_size, seq_len, policy, optimizer,
            dedupe_repeats=not no_dedupe, symbolic=symbolic, progress=progress,
            recompute=recompute_policy, gpu=gpu, solve=solve, runtime=stack,
        )
    if gpu is not None:
        from archcost.cost.estimate import estimate_single_device

        doc["estimate"] = estimate_single_device(traced.graph, doc, gpu, policy.compute_dtype,
                                                 stack)
    if graph:
        from archcost.trace.graph import expand_repeats, export_graph

        g = traced.graph
        if per_layer:
            g = expand_repeats(g, traced.capture.repeat_groups)
        export_graph(g, Path(graph))
    emit(doc, as_json, output)
    if not as_json:
        render_analysis(out_console, doc, depth=depth, top=top)
        if "estimate" in doc:
            from archcost.cli.render import render_estimate

            render_estimate(out_console, doc["estimate"])
        if output:
            out_console.print(f"wrote {output}")
        if graph:
            out_console.print(f"wrote {graph}")


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False
