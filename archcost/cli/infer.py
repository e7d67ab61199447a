"""``archcost infer MODEL``: time to first token, time per output token, throughput and memory
of generation with a KV cache, on a GPU or a cluster under tensor and pipeline parallelism."""

from __future__ import annotations

from typing import Annotated

import typer

from archcost.cli.common import (
    check_outputs,
    emit,
    given,
    model_inputs,
    out_console,
    reports_errors,
    spinner,
)
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
_DTYPES = ("bf16", "fp16", "fp32", "fp8")
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
        "--dtype", help="Weights and activations: bf16, fp16, fp32, or fp8 (the layers' "
        "linears in fp8 with per-tensor scales, the rest in bf16).")] = "bf16",
    weights: Annotated[str | None, typer.Option(
        "--weights", show_default=False,
        help="Weight-only quantization of the layers' linears: int8 or int4.")] = None,
    group_size: Annotated[int, typer.Option(
        "--group-size", help="Weights per scale for --weights (-1: one per channel).")] = 128,
    sparsity: Annotated[str | None, typer.Option(
        "--sparsity", show_default=False,
        help="2:4: the layers' linears keep two of every four weights (sparse tensor cores).")
    ] = None,
    kv_dtype: Annotated[str | None, typer.Option(
        "--kv-dtype", show_default=False,
        help="KV-cache dtype: bf16, fp16, fp32, fp8 or int8 (default: --dtype).")] = None,
    runtime: Annotated[str, typer.Option(
        "--runtime", help="Software stack that runs the model (archcost profiles list).")
    ] = INFER_RUNTIME,
    rate: Annotated[float | None, typer.Option(
        "--rate", show_default=False, min=0.0,
        help="Continuous batching: requests/s arriving (Poisson) at one replica; reports "
        "throughput and latency percentiles from a queueing simulation. With --gpus: the "
        "requests/s to serve in all, each plan with the replicas it needs, the fewest GPUs "
        "first.")] = None,
    max_seqs: Annotated[int | None, typer.Option(
        "--max-seqs", show_default=False, min=1,
        help="Continuous batching (--rate, --continuous): the most requests running at once, "
        "the engine's cap (vLLM --max-num-seqs, TensorRT-LLM max_batch_size). Default: 256, "
        "vLLM's.")] = None,
    max_batched_tokens: Annotated[int | None, typer.Option(
        "--max-batched-tokens", show_default=False, min=1,
        help="Continuous batching (--rate, --continuous): the prompt tokens one iteration "
        "prefills at most (vLLM --max-num-batched-tokens, TensorRT-LLM max_num_tokens); a "
        "longer prompt is prefilled alone (with --chunked-prefill: the decodes count against it "
        "and a prompt is split across iterations). Default: no budget.")] = None,
    chunked_prefill: Annotated[bool | None, typer.Option(
        "--chunked-prefill/--no-chunked-prefill", show_default=False,
        help="Continuous batching (--rate, --continuous): each iteration is one forward over "
        "the running requests' next tokens and prompt chunks filling --max-batched-tokens "
        "(vLLM V1, TensorRT-LLM in-flight batching with chunked context), or a prefill and "
        "the decodes apart. Default: the runtime's (tensorrt-llm*: one forward; eager: "
        "apart).")] = None,
    prefix_len: Annotated[int, typer.Option(
        "--prefix-len", min=0,
        help="Continuous batching (--rate, --continuous): the first tokens of every prompt are "
        "the same (a system prompt) and their KV cache is reused (vLLM automatic prefix "
        "caching, TensorRT-LLM KV cache reuse): a prefill computes the rest, and the prefix's "
        "cache is held once. Give whole cache blocks. Default: 0.")] = 0,
    gpus: Annotated[int | None, typer.Option(
        "--gpus", show_default=False, min=1,
        help="Serving search: the best tp, pp, replicas, batch and precision on this many "
        "GPUs within --ttft-slo/--tpot-slo, with the throughput-latency Pareto front (with "
        "--rate R: the fewest of them that serve R requests/s).")] = None,
    ttft_slo: Annotated[str | None, typer.Option(
        "--ttft-slo", show_default=False, help="Time-to-first-token limit, e.g. 500ms.")] = None,
    tpot_slo: Annotated[str | None, typer.Option(
        "--tpot-slo", show_default=False, help="Time-per-output-token limit, e.g. 50ms.")
    ] = None,
    precisions: Annotated[str, typer.Option(
        "--precisions", help="Serving search: precisions to try (comma list of bf16, fp16, "
        "fp8, int8, int4; int8/int4: weight-only).")] = "bf16,fp8",
    continuous: Annotated[bool, typer.Option(
        "--continuous", help="Serving search under continuous batching (the highest request "
        "rate whose p90 latencies meet the SLOs) instead of static batches.")] = False,
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
    ctx: typer.Context = None,
) -> None:
    """Trace a prefill and a decode step of MODEL forward-only against its KV cache (the model
    file's kv_cache hook; an hf: causal LM's transformers DynamicCache) and price static
    batching: TTFT, TPOT by context, end-to-end latency, output tokens/s, the bound of each
    phase, memory per GPU and the largest batch that fits."""
    import dataclasses

    from archcost.infer.document import (
        SCHEMA_VERSION,
        baseline_section,
        check_fits,
        continuous_section,
        hardware_header,
        inference_section,
    )
    from archcost.infer.serving import DEFAULT_MAX_BATCH, SchedulerConfig
    from archcost.loader import load_model_file, parse_overrides
    from archcost.runtime import load_runtime
    from archcost.trace.precision import parse_precision

    check_usable_memory(usable)
    check_outputs(o=output, inputs=model_inputs(model, hardware, routing))
    slos = (_duration(ttft_slo, "--ttft-slo"), _duration(tpot_slo, "--tpot-slo"))
    _check_mode_options(ctx, gpus, weights, precisions, rate is not None or continuous)
    if dtype not in _DTYPES:
        raise ConfigError(f"--dtype {dtype!r}: use one of {', '.join(_DTYPES)}")
    if kv_dtype is not None and kv_dtype not in _KV_DTYPES:
        raise ConfigError(f"--kv-dtype {kv_dtype!r}: use one of {', '.join(_KV_DTYPES)}")
    quantize = quantizer(dtype, weights, group_size, sparsity)
    policy = infer_policy(dtype)
    stack = load_runtime(runtime)
    scheduler = SchedulerConfig(
        max_batch=max_seqs or DEFAULT_MAX_BATCH, max_tokens=max_batched_tokens,
        chunked=stack.inflight_batching if chunked_prefill is None else chunked_prefill,
        prefix=prefix_len)
    spec = load_model_file(model, parse_overrides(set_))
    if gpus is not None:
        chosen = [f"--{name.replace('_', '-')}" for name in
                  ("tp", "pp", "batch", "dtype", "weights", "sparsity", "ignore_memory")
                  if given(ctx, name)]
        if chosen:
            raise ConfigError(f"--gpus searches tp, pp, replicas, batch (or the request rate) "
                              f"and precision itself; drop {', '.join(chosen)} (choose the "
                              "precisions to try with --precisions)")
        if rate is not None and rate <= 0:
            raise ConfigError(f"--rate {rate:g} with --gpus: the requests/s to serve; give a "
                              "positive rate")
        return _search(spec, hardware or "dgx-h100-ndr", gpus, precisions, slos,
                       continuous or rate is not None, input_len, output_len, kv_dtype,
                       group_size, stack, usable,
                       capture_options(routing, mask_density, trace_timeout), as_json, output,
                       max_seqs, scheduler, rate)
    cluster = one_replica_cluster(hardware or "h100-sxm", tp * pp)
    from archcost.infer.price import InferenceCosts

    with spinner(as_json) as status:

        def progress(msg: str) -> None:
            if status is not None:
                status.update(msg)

        # an engine built for the static batch captures its graph at that batch
        costs = InferenceCosts(spec, cluster, policy, stack, build_len=input_len + output_len,
                               tp=tp, pp=pp, kv_dtype=_KV_DTYPES.get(kv_dtype or ""),
                               quantize=quantize,
                               usable_memory=usable,
                               options=capture_options(routing, mask_density, trace_timeout),
                               progress=progress, graph_max_batch=batch)
        costs.check_shapes()
        section = inference_section(costs, batch, input_len, output_len)
        if quantize is not None or kv_dtype not in (None, dtype):
            progress("pricing the same generation in bf16, for comparison")
            base = dataclasses.replace(costs, policy=parse_precision("bf16"), quantize=None,
                                       kv_dtype=None, memo={})
            section["bf16_baseline"] = baseline_section(base, batch, input_len, output_len)
        if rate is not None:
            progress(f"simulating continuous batching at {rate:g} requests/s")
            served = dataclasses.replace(costs, graph_max_batch=scheduler.largest_decode)
            section["continuous"] = continuous_section(served, rate, input_len, output_len,
                                                       scheduler)
    if not ignore_memory:
        check_fits(section, costs)
    doc = {
        "schema_version": SCHEMA_VERSION,
        "kind": "inference",
        "model": {"name": spec.name, "file": spec.path.name, "builder": spec.builder_name,
                  "config": spec.model_config(batch, input_len + output_len)},
        "workload": {"batch": batch, "input_len": input_len, "output_len": output_len,
                     "dtype": dtype, "kv_dtype": kv_dtype or infer_policy(dtype).precision.value,
                     "weights": quantize.keywords["quant"].describe() if quantize else dtype,
                     "runtime": stack.name,
                     "batching": "static"},
        "hardware": hardware_header(costs),
        "inference": section,
        "notes": costs.notes(),
    }
    emit(doc, as_json, output)
    if not as_json:
        from archcost.cli.render_infer import render_inference

        render_inference(out_console, doc)


# options only the serving search (--gpus) reads: parameter -> option
_SEARCH_ONLY = {"ttft_slo": "--ttft-slo", "tpot_slo": "--tpot-slo", "continuous": "--continuous",
                "precisions": "--precisions"}
# continuous batching's options: (option, what it is)
_CONTINUOUS_ONLY = {"max_seqs": ("--max-seqs", "the cap on running requests"),
                    "max_batched_tokens": ("--max-batched-tokens",
                                           "the prompt tokens prefilled an iteration"),
                    "chunked_prefill": ("--[no-]chunked-prefill",
                                        "whether decodes and prompt chunks share a forward"),
                    "prefix_len": ("--prefix-len", "the cached prompt prefix every request "
                                   "shares")}


def _check_mode_options(ctx, gpus: int | None, weights: str | None, precisions: str,
                        continuous: bool) -> None:
    """Refuse an option given on the command line that this run does not read: the serving
    search's options without --gpus, continuous batching's without it (``continuous``: --rate
    or --continuous given), --group-size where no weights are int8/int4."""
    search_only = [option for name, option in _SEARCH_ONLY.items() if given(ctx, name)]
    if search_only and gpus is None:
        raise ConfigError(f"{', '.join(search_only)}: options of the serving search; add --gpus "
                          "N, or drop them")
    for name, (option, what) in _CONTINUOUS_ONLY.items():
        if given(ctx, name) and not continuous:
            raise ConfigError(f"{option}: {what} of continuous batching; add --rate R (or "
                              f"--gpus N --continuous), or drop {option}")
    if given(ctx, "group_size"):
        if gpus is None and weights is None:
            raise ConfigError("--group-size: the weights per scale of --weights int8/int4; add "
                              "--weights int8 or int4, or drop --group-size")
        if gpus is not None and not {"int8", "int4"} & {p.strip() for p in precisions.split(",")}:
            raise ConfigError("--group-size: the weights per scale of int8/int4 weights; add "
                              "int8 or int4 to --precisions, or drop --group-size")


def _duration(text: str | None, option: str) -> float | None:
    """Seconds of ``500ms``, ``0.5s``, ``50 ms``, ``200us``; a bare number is refused (500
    meant as milliseconds would read as seconds)."""
    if text is None:
        return None
    import re

    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(us|ms|s)?\s*", text)
    if not m or float(m.group(1)) <= 0:
        raise ConfigError(f"{option} {text!r}: give a positive duration such as 500ms or 0.5s")
    if m.group(2) is None:
        raise ConfigError(f"{option} {text!r}: a number without a unit is ambiguous; give "
                          f"{m.group(1)}ms or {m.group(1)}s")
    return float(m.group(1)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0}[m.group(2)]


_SEARCH_PRECISIONS = {"bf16": ("bf16", None), "fp16": ("fp16", None), "fp8": ("fp8", None),
                      "int8": ("bf16", "int8"), "int4": ("bf16", "int4")}


def _search(spec, hardware, gpus, precisions, slos, continuous, input_len, output_len,
            kv_dtype, group_size, stack, usable, options, as_json, output,
            max_batch: int | None, scheduler, target_rate: float | None = None) -> None:
    """The serving search: static batches up to ``max_batch`` (None: whatever fits), or the
    continuous scheduler as ``scheduler`` (a ``SchedulerConfig``) says, serving
    ``target_rate`` requests/s in all where given."""
    from archcost.infer.document import SCHEMA_VERSION, search_section
    from archcost.infer.price import InferenceCosts
    from archcost.infer.search import Mode, search

    names = list(dict.fromkeys(p.strip() for p in precisions.split(",") if p.strip()))
    bad = [p for p in names if p not in _SEARCH_PRECISIONS]
    if bad or not names:
        raise ConfigError(f"--precisions {precisions!r}: use a comma list of "
                          f"{', '.join(_SEARCH_PRECISIONS)}")
    from archcost.hardware.profile import ClusterProfile, load_any

    prof = load_any(hardware)
    if not isinstance(prof, ClusterProfile) and gpus > 1:
        raise ConfigError(f"--hardware {hardware} is one GPU; the serving search over {gpus} "
                          "GPUs needs a cluster (e.g. --hardware dgx-h100-ndr)")
    most = prof.most_gpus if isinstance(prof, ClusterProfile) else None
    if most is not None and gpus > most:
        raise ConfigError(f"--gpus {gpus}: {hardware} holds at most {most} GPUs "
                          f"({prof.max_nodes} node(s) of {prof.gpus_per_node}); ask for at most "
                          f"{most} or give a larger cluster")
    memo: dict = {}

    def costs_for(tp: int, pp: int, precision: str) -> InferenceCosts:
        dtype, weights = _SEARCH_PRECISIONS[precision]
        costs = InferenceCosts(
            spec, one_replica_cluster(hardware, tp * pp),
            infer_policy(dtype), stack,
            build_len=input_len + output_len, tp=tp, pp=pp,
            kv_dtype=_KV_DTYPES.get(kv_dtype or ""),
            quantize=quantizer(dtype, weights, group_size, None), usable_memory=usable,
            options=options, memo=memo,
            graph_max_batch=scheduler.largest_decode if continuous else None)
        costs.check_shapes()
        return costs

    with spinner(as_json) as status:
        if status is not None:
            status.update(f"searching {gpus} GPUs (tracing once per precision)")
        res = search(gpus, costs_for, names, input_len, output_len, ttft_slo_s=slos[0],
                     tpot_slo_s=slos[1], mode=Mode.CONTINUOUS if continuous else Mode.STATIC,
                     max_batch=max_batch, config=scheduler, target_rate=target_rate)
    doc = {
        "schema_version": SCHEMA_VERSION,
        "kind": "inference",
        "model": {"name": spec.name, "file": spec.path.name, "builder": spec.builder_name,
                  "config": spec.model_config(1, input_len + output_len)},
        "workload": {"input_len": input_len, "output_len": output_len,
                     "precisions": names, "runtime": stack.name,
                     "batching": "continuous" if continuous else "static",
                     "kv_dtype": kv_dtype, "group_size": group_size,
                     **(scheduler.describe() if continuous else {})},
        "hardware": {"cluster": hardware, "gpus": gpus, "usable_memory": usable},
        "search": search_section(res, slos, output_len=output_len, target_rate=target_rate),
    }
    emit(doc, as_json, output)
    if not as_json:
        from archcost.cli.render_infer import render_search

        render_search(out_console, doc)


def infer_policy(dtype: str):
    """The precision policy a generation in ``dtype`` computes in: fp8 is bf16 with the
    layers' linears converted (:func:`quantizer`)."""
    from archcost.trace.precision import parse_precision

    return parse_precision("bf16" if dtype == "fp8" else dtype)


def quantizer(dtype: str, weights: str | None, group_size: int, sparsity: str | None):
    """The conversion of the layers' linears the options ask for (None: none): fp8 weights
    and activations, int8/int4 weight-only, 2:4 sparsity."""
    from functools import partial

    from archcost.trace.quant import parse_weight_quant, quantize_linears

    if dtype == "fp8" and weights:
        raise ConfigError(f"--dtype fp8 already stores the weights in fp8; drop --weights "
                          f"{weights} or use --dtype bf16 --weights {weights}")
    if weights is not None and weights not in ("int8", "int4"):
        raise ConfigError(f"--weights {weights!r}: use int8 or int4 (weight-only), or --dtype "
                          "fp8 for fp8 weights and activations")
    quant = parse_weight_quant("fp8" if dtype == "fp8" else weights, group_size, sparsity)
    return None if quant is None else partial(quantize_linears, quant=quant)


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
