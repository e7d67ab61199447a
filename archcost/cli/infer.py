"""``archcost infer MODEL``: time to first token, time per output token, throughput and memory
of generation with a KV cache, on a GPU or a cluster under tensor and pipeline parallelism."""

from __future__ import annotations

from typing import Annotated

import typer

from archcost.cli.common import check_outputs, emit, out_console, reports_errors, spinner
from archcost.cli.options import (
    BATCH,
    INPUT_LEN,
    MASK_DENSITY,
    OUTPUT_LEN,
    ROUTING,
    TRACE_TIMEOUT_S,
    USABLE_MEMORY,
    BatchOpt,
    DebugOpt,
    InputLenOpt,
    JsonOpt,
    MaskDensityOpt,
    ModelArg,
    OutputLenOpt,
    OutputOpt,
    RoutingOpt,
    SetOpt,
    TraceTimeoutOpt,
    UsableMemoryOpt,
    capture_options,
    check_usable_memory,
)
from archcost.errors import ConfigError

INFER_RUNTIME = "eager"
_DTYPES = ("bf16", "fp16", "fp32")
_KV_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32",
              "fp8": "float8_e4m3fn", "int8": "int8"}


def register(app: typer.Typer) -> None:
    app.command("infer", short_help="Latency, throughput and memory of generation with a KV "
                "cache (prefill and decode).")(infer)


@reports_errors
def infer(
    model: ModelArg,
    set_: SetOpt = None,
    hardware: Annotated[str | None, typer.Option(
        "--hardware", "--cluster", show_default=False,
        help="GPU or cluster profile (archcost profiles list); a cluster for --tp/--pp > 1. "
        "Default: h100-sxm.")] = None,
    tp: Annotated[int, typer.Option("--tp", min=1, help="Tensor-parallel GPUs per replica.")] = 1,
    pp: Annotated[int, typer.Option("--pp", min=1, help="Pipeline stages per replica.")] = 1,
    batch: BatchOpt = BATCH,
    input_len: InputLenOpt = INPUT_LEN,
    output_len: OutputLenOpt = OUTPUT_LEN,
    dtype: Annotated[str, typer.Option(
        "--dtype", help="Weights and activations: bf16, fp16 or fp32.")] = "bf16",
    kv_dtype: Annotated[str | None, typer.Option(
        "--kv-dtype", show_default=False,
        help="KV-cache dtype: bf16, fp16, fp32, fp8 or int8 (default: --dtype).")] = None,
    runtime: Annotated[str, typer.Option(
        "--runtime", help="Software stack that runs the model (archcost profiles list).")
    ] = INFER_RUNTIME,
    usable: UsableMemoryOpt = USABLE_MEMORY,
    ignore_memory: Annotated[bool, typer.Option(
        "--ignore-memory", help="Price a batch that does not fit instead of refusing it.")
    ] = False,
    as_json: JsonOpt = False,
    output: OutputOpt = None,
    routing: RoutingOpt = ROUTING,
    mask_density: MaskDensityOpt = MASK_DENSITY,
    trace_timeout: TraceTimeoutOpt = TRACE_TIMEOUT_S,
    debug: DebugOpt = False,
) -> None:
    """Trace a prefill and a decode step of MODEL forward-only against its KV cache (the model
    file's kv_cache hook) and price static batching: TTFT, TPOT by context, end-to-end latency,
    output tokens/s, the bound of each phase, memory per GPU and the largest batch that fits."""
    from archcost.infer.document import (
        SCHEMA_VERSION,
        check_fits,
        hardware_header,
        inference_section,
    )
    from archcost.loader import load_model_file, parse_overrides
    from archcost.runtime import load_runtime
    from archcost.trace.precision import parse_precision

    check_usable_memory(usable)
    check_outputs(o=output)
    if dtype not in _DTYPES:
        raise ConfigError(f"--dtype {dtype!r}: use one of {', '.join(_DTYPES)}")
    if kv_dtype is not None and kv_dtype not in _KV_DTYPES:
        raise ConfigError(f"--kv-dtype {kv_dtype!r}: use one of {', '.join(_KV_DTYPES)}")
    policy = parse_precision(dtype)
    stack = load_runtime(runtime)
    cluster = one_replica_cluster(hardware or "h100-sxm", tp * pp)
    spec = load_model_file(model, parse_overrides(set_))
    from archcost.infer.price import InferenceCosts

    with spinner(as_json) as status:

        def progress(msg: str) -> None:
            if status is not None:
                status.update(msg)

        costs = InferenceCosts(spec, cluster, policy, stack, build_len=input_len + output_len,
                               tp=tp, pp=pp, kv_dtype=_KV_DTYPES.get(kv_dtype or ""),
                               usable_memory=usable,
                               options=capture_options(routing, mask_density, trace_timeout),
                               progress=progress)
        costs.check_shapes()
        section = inference_section(costs, batch, input_len, output_len)
    if not ignore_memory:
        check_fits(section, costs)
    doc = {
        "schema_version": SCHEMA_VERSION,
        "kind": "inference",
        "model": {"name": spec.name, "file": spec.path.name, "builder": spec.builder_name,
                  "config": spec.builder_config(batch, input_len + output_len)},
        "workload": {"batch": batch, "input_len": input_len, "output_len": output_len,
                     "dtype": dtype, "kv_dtype": kv_dtype or dtype, "runtime": stack.name,
                     "batching": "static"},
        "hardware": hardware_header(costs),
        "inference": section,
        "notes": costs.notes(),
    }
    emit(doc, as_json, output)
    if not as_json:
        from archcost.cli.render_infer import render_inference

        render_inference(out_console, doc)


def one_replica_cluster(name: str, gpus: int):
    """The cluster one replica runs on: a cluster profile sized to ``gpus``, or a GPU
    profile alone (one GPU)."""
    from archcost.hardware.profile import ClusterProfile, load_any, load_cluster

    prof = load_any(name)
    if isinstance(prof, ClusterProfile):
        return load_cluster(name, gpus) if gpus != prof.gpus else prof
    if gpus > 1:
        raise ConfigError(f"--hardware {name} is one GPU, but --tp x --pp asks for {gpus}; "
                          "give a cluster (e.g. --hardware dgx-h100-ndr) or --tp 1 --pp 1")
    return ClusterProfile(name=prof.name, gpu=prof, gpus_per_node=1, levels=(), nodes=1,
                          gpus=1)
