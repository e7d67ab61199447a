"""``archcost analyze MODEL_FILE``: trace one training step and summarise its costs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from archcost.cli.common import (
    check_outputs,
    emit,
    model_inputs,
    out_console,
    reports_errors,
    spinner,
)
from archcost.cli.options import (
    BATCH_SIZE,
    DTYPE,
    MASK_DENSITY,
    OPTIMIZER,
    RECOMPUTE,
    ROUTING,
    RUNTIME,
    SEQ_LEN,
    TOP,
    TRACE_TIMEOUT_S,
    USABLE_MEMORY,
    BatchSizeOpt,
    DebugOpt,
    DtypeOpt,
    Fp8RecipeOpt,
    HardwareOpt,
    JsonOpt,
    MaskDensityOpt,
    ModelArg,
    OptimizerOpt,
    OutputOpt,
    RecomputeOpt,
    RoutingOpt,
    RuntimeOpt,
    SeqLenOpt,
    SetOpt,
    TopOpt,
    TraceTimeoutOpt,
    UsableMemoryOpt,
    capture_options,
    check_usable_memory,
)
from archcost.errors import ConfigError


def register(app: typer.Typer) -> None:
    app.command("analyze",
                short_help="Count the FLOPs, bytes and memory of one training step.")(analyze)


@reports_errors
def analyze(
    model: ModelArg,
    batch_size: BatchSizeOpt = BATCH_SIZE,
    seq_len: SeqLenOpt = SEQ_LEN,
    set_: SetOpt = None,
    dtype: DtypeOpt = DTYPE,
    fp8_recipe: Fp8RecipeOpt = None,
    fp32_grads: Annotated[
        bool, typer.Option("--fp32-grads", help="Mixed precision keeps fp32 gradients.")
    ] = False,
    optimizer: OptimizerOpt = OPTIMIZER,
    recompute: RecomputeOpt = RECOMPUTE,
    as_json: JsonOpt = False,
    output: OutputOpt = None,
    graph: Annotated[
        str | None, typer.Option(help="Export the operator graph (.graphml or .json).")
    ] = None,
    per_layer: Annotated[
        bool, typer.Option("--per-layer", help="Export repeated blocks expanded, one per layer.")
    ] = False,
    depth: Annotated[int, typer.Option(min=0, max=64, help="Module-tree depth shown "
                                       "(0: the model alone).")] = 2,
    top: TopOpt = TOP,
    symbolic: Annotated[
        bool, typer.Option("--symbolic", help="Fit exact formulas in batch b and sequence s.")
    ] = False,
    hardware: HardwareOpt = None,
    solve: Annotated[
        str | None,
        typer.Option("--solve", help='Largest size that fits, e.g. "max b s.t. memory <= 80GB" '
                     '(or "<= capacity": the usable share of --hardware\'s memory).'),
    ] = None,
    usable: UsableMemoryOpt = USABLE_MEMORY,
    no_dedupe: Annotated[
        bool, typer.Option("--no-dedupe", help="Trace every repeated block instead of one.")
    ] = False,
    routing: RoutingOpt = ROUTING,
    mask_density: MaskDensityOpt = MASK_DENSITY,
    trace_timeout: TraceTimeoutOpt = TRACE_TIMEOUT_S,
    runtime: RuntimeOpt = RUNTIME,
    debug: DebugOpt = False,
) -> None:
    """Trace forward, loss, backward and optimizer step on fake tensors; report FLOPs, bytes
    and memory per phase, module and op class."""
    from archcost.analysis import run_analysis
    from archcost.cli.render import render_analysis
    from archcost.loader import load_model_file, parse_overrides
    from archcost.trace.precision import parse_precision

    check_usable_memory(usable)
    if graph and Path(graph).suffix.lower() not in (".graphml", ".json"):
        raise ConfigError(f"--graph {graph}: unknown format; name the file .graphml or .json")
    check_outputs(o=output, graph=graph, inputs=model_inputs(model, hardware, routing))
    policy = parse_precision(dtype, fp32_grads, fp8_recipe)
    options = capture_options(routing, mask_density, trace_timeout)
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
        from archcost.hardware.profile import ClusterProfile, load_any

        gpu = load_any(hardware)
        if isinstance(gpu, ClusterProfile):  # one of its GPUs
            gpu = gpu.gpu
        if policy.low_precision is not None:
            from archcost.cost.compute import require_peak

            require_peak(gpu, policy.low_precision.peak_key, f"--dtype {dtype}")
    spec = load_model_file(model, parse_overrides(set_))
    with spinner(as_json) as status:

        def progress(msg: str) -> None:
            if status is not None:
                status.update(msg)

        doc, traced = run_analysis(
            spec, batch_size, seq_len, policy, optimizer,
            dedupe_repeats=not no_dedupe, symbolic=symbolic, progress=progress,
            recompute=recompute_policy, gpu=gpu, solve=solve, usable_memory=usable,
            options=options, debug=debug, runtime=stack,
        )
    if gpu is not None:
        from archcost.cost.estimate import estimate_single_device

        doc["estimate"] = estimate_single_device(traced.graph, doc, gpu, policy.gemm_dtype,
                                                 usable_memory=usable, runtime=stack)
    files = {}
    if graph:
        from archcost.trace.graph import expand_repeats, graph_text

        g = traced.graph
        if per_layer:
            g = expand_repeats(g, traced.capture.repeat_groups)
        files[graph] = graph_text(g, Path(graph).suffix)
    emit(doc, as_json, output, files)
    if not as_json:
        from archcost.cli.layout import say

        render_analysis(out_console, doc, depth=depth, top=top)
        if "estimate" in doc:
            from archcost.cli.render import render_estimate

            render_estimate(out_console, doc["estimate"])
        if output:
            say(out_console, f"wrote {output}")
        if graph:
            say(out_console, f"wrote {graph}")
