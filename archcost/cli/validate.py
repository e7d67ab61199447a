"""``archcost validate MODEL --plan ...``: real timed steps against the prediction."""

from __future__ import annotations

from typing import Annotated

import typer

from archcost.cli.common import (
    check_outputs,
    emit,
    err_console,
    given,
    model_inputs,
    out_console,
    reports_errors,
)
from archcost.cli.common import spinner as _spinner
from archcost.cli.options import (
    BATCH,
    DEVICE,
    DTYPE,
    INPUT_LEN,
    NPROC,
    OPTIMIZER,
    OUTPUT_LEN,
    SEQ_LEN,
    TIMEOUT_S,
    BatchOpt,
    DebugOpt,
    DeviceOpt,
    DtypeOpt,
    HardwareOpt,
    InputLenOpt,
    JsonOpt,
    ModelArg,
    NprocOpt,
    OptimizerOpt,
    OutputLenOpt,
    OutputOpt,
    PlanOpt,
    SeqLenOpt,
    SetOpt,
    TimeoutOpt,
)
from archcost.errors import ConfigError, ValidationError

SCHEMA_VERSION = 1
_VALIDATE_DTYPES = ("fp32", "bf16", "fp16")


def register(app: typer.Typer) -> None:
    app.command("validate", short_help="Time real training steps (or, with --infer, a real "
                "generation) against the prediction.")(validate)


def _check_device(device: str, nproc: int) -> None:
    import torch

    if device not in ("cpu", "cuda"):
        raise ConfigError(f"--device {device!r}: use cpu or cuda")
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda: no CUDA device on this machine; use --device cpu")
        if nproc > torch.cuda.device_count():
            raise ConfigError(f"--nproc {nproc}: this machine has {torch.cuda.device_count()} "
                              "CUDA devices; use at most that many")


def _check_plan(plan) -> None:
    """Refuse what validate does not run, with the reason and the alternative."""
    if max(plan.cp, plan.ep) > 1 or plan.offload.value != "none":
        raise ConfigError("validate runs data-, tensor- and pipeline-parallel plans without "
                          "offload; cp/ep and offload plans are estimated, not run: use "
                          "archcost estimate for them")
    if plan.dp > 1 and (plan.tp > 1 or plan.pp > 1):
        raise ConfigError(f"plan {plan.to_string()}: validate runs tensor or pipeline "
                          "parallelism with dp=1 (data parallelism on its own otherwise); "
                          "estimate the combination with archcost estimate")
    if plan.tp > 1 and plan.pp > 1:
        raise ConfigError(f"plan {plan.to_string()}: validate runs tp or pp, not both; validate "
                          "each on its own or estimate the combination with archcost estimate")
    if plan.pp > 1 and (plan.vpp > 1 or plan.schedule.value not in ("1f1b", "gpipe")):
        raise ConfigError(f"schedule={plan.schedule.value}, vpp={plan.vpp}: validate runs "
                          "pipelines with schedule=1f1b or gpipe and vpp=1")


@reports_errors
def validate(
    model: ModelArg,
    plan_text: PlanOpt = None,
    infer: Annotated[bool, typer.Option(
        "--infer", help="Time a real generation with the model's KV cache (prefill, then "
        "decode steps) against the predicted TTFT and TPOT, instead of training steps.")
    ] = False,
    batch: BatchOpt = BATCH,
    input_len: InputLenOpt = INPUT_LEN,
    output_len: OutputLenOpt = OUTPUT_LEN,
    device: DeviceOpt = DEVICE,
    nproc: NprocOpt = NPROC,
    steps: Annotated[int, typer.Option(min=1, max=10**6, help="Timed steps.")] = 5,
    warmup: Annotated[int, typer.Option(min=0, max=10**6, help="Untimed steps first.")] = 2,
    hardware: HardwareOpt = None,
    seq_len: SeqLenOpt = SEQ_LEN,
    set_: SetOpt = None,
    dtype: DtypeOpt = DTYPE,
    optimizer: OptimizerOpt = OPTIMIZER,
    timeout: TimeoutOpt = TIMEOUT_S,
    as_json: JsonOpt = False,
    output: OutputOpt = None,
    debug: DebugOpt = False,
    ctx: typer.Context = None,
) -> None:
    """Run real timed training steps of MODEL with the plan's data, tensor or pipeline
    parallelism and compare them with the prediction, per component. With --infer: generate
    for real with the model's KV cache (--steps timed generations after --warmup untimed ones)
    and compare TTFT and TPOT with archcost infer's prediction."""
    if infer:
        from archcost.cli.validate_infer import validate_infer

        if plan_text is not None:
            raise ConfigError("--infer times a generation on one device, not a training plan: "
                              "drop --plan (or drop --infer to validate training steps)")
        if nproc != 1:
            raise ConfigError(f"--nproc {nproc}: --infer generates in one process; use "
                              "--nproc 1")
        unused = [option for name, option in (("seq_len", "--seq-len"),
                                              ("optimizer", "--optimizer"),
                                              ("timeout", "--timeout")) if given(ctx, name)]
        if unused:
            raise ConfigError(f"{' and '.join(unused)}: --infer takes its lengths from "
                              "--input-len and --output-len, runs no optimizer and one process "
                              f"(no --timeout); drop {' and '.join(unused)}")
        validate_infer(model, batch=batch, input_len=input_len, output_len=output_len,
                       device=device, steps=steps, warmup=warmup, hardware=hardware,
                       set_=set_, dtype=dtype, as_json=as_json, output=output)
        return
    if plan_text is None:
        raise ConfigError("--plan is missing: give the plan of the training steps to run, e.g. "
                          "--plan mbs=8,gbs=8 (or --infer to time a generation)")
    from archcost.cli.plan import read_plan
    from archcost.hardware.machine import machine_id
    from archcost.loader import load_model_file, parse_overrides
    from archcost.plan.costmodel import CostModel
    from archcost.plan.evaluate import estimate_plan
    from archcost.plan.workload import trace_workload
    from archcost.trace.precision import parse_precision
    from archcost.validate.compare import (
        available_memory_bytes,
        components,
        profile_warnings,
        validation_cluster,
    )
    from archcost.validate.parallel import check_hooks, require_hooks
    from archcost.validate.step import RunConfig

    parse_precision(dtype)
    if dtype not in _VALIDATE_DTYPES:
        raise ConfigError(f"--dtype {dtype!r}: validate runs {', '.join(_VALIDATE_DTYPES)} "
                          "(mixed precision's fp32 master copies are not materialised)")
    if not timeout > 0:
        raise ConfigError(f"--timeout {timeout}: give a positive number of seconds")
    check_outputs(o=output, inputs=model_inputs(model, hardware))
    plan = read_plan(plan_text)
    if plan.gpus != nproc:
        raise ConfigError(f"plan uses dp*tp*pp*cp = {plan.gpus} GPUs but --nproc is {nproc}: "
                          f"set --nproc {plan.gpus} or change the plan")
    _check_plan(plan)
    if plan.recompute.value != "none":
        raise ConfigError("validate runs recompute=none (the bundled models do not checkpoint "
                          "by themselves); estimate recomputation with archcost estimate")
    _check_device(device, nproc)
    cluster = validation_cluster(hardware, device, nproc)
    share = 1.0
    if device == "cpu" and nproc > 1:  # the ranks share this host's cores
        from dataclasses import replace

        from archcost.launch import rank_threads
        from archcost.validate.compare import cpu_rank_share

        share = cpu_rank_share(cluster.gpu, rank_threads(nproc), nproc)
        cluster = replace(cluster, gpu=cluster.gpu.scaled(flops=share, mem_bw=share))
    warnings = profile_warnings(cluster.gpu, device, cluster, nproc)
    overrides = parse_overrides(set_)
    spec = load_model_file(model, overrides)
    require_hooks(spec, plan.tp > 1, plan.pp > 1)  # before tracing: the hooks run later
    policy = parse_precision(dtype)
    quiet = as_json
    with _spinner(quiet) as status:
        def progress(msg: str) -> None:
            if status is not None:
                status.update(msg)

        workload = trace_workload(spec, seq_len, policy, optimizer,
                                  (plan.recompute,), progress)
        cm = CostModel(workload, cluster, usable_memory=1.0)
        est, _ = estimate_plan(plan, cm, with_schedule=False)
        single_peak = None
        if nproc == 1:
            from archcost.analysis import persistent_bytes
            from archcost.cost.memory import peak_memory
            from archcost.trace import trace_model

            progress(f"tracing one micro-batch of {plan.mbs}")
            t = trace_model(spec, plan.mbs, seq_len, policy, optimizer)
            single_peak = float(peak_memory(t.graph, persistent_bytes(t.capture)).peak_bytes)
    need = (single_peak or est["memory_bytes"]["peak_per_gpu"]) * (nproc if device == "cpu"
                                                                   else 1)
    avail = available_memory_bytes(device)
    if avail is not None and need > 0.9 * avail:
        raise ValidationError(f"the run needs about {need / 2**30:.1f} GiB "
                              f"({'all processes' if device == 'cpu' else 'per GPU'}) but "
                              f"{avail / 2**30:.1f} GiB is available: use a smaller model, "
                              "micro-batch or sequence; nothing was allocated")
    cfg = RunConfig(model=model, overrides=overrides, seq_len=seq_len, mbs=plan.mbs,
                    gbs=plan.gbs, dp=plan.dp, zero=int(plan.zero), dtype=dtype,
                    optimizer=optimizer, steps=steps, warmup=warmup, device=device,
                    tp=plan.tp, sp=int(plan.sp), pp=plan.pp, schedule=plan.schedule.value,
                    layers_per_stage=tuple(est["pipeline"]["layers_per_stage"]))
    check_hooks(spec, cfg)
    for w in warnings:
        if not quiet:
            err_console.print(f"[yellow]warning:[/] {w}", soft_wrap=True)
    with _spinner(quiet, f"running {warmup} + {steps} steps on {nproc} process"
                  f"{'es' if nproc > 1 else ''}"):
        if nproc == 1:
            from archcost.validate.step import run_steps

            results = [run_steps(cfg)]
        else:
            from archcost.validate.launch import run_distributed

            results = run_distributed(cfg, nproc, timeout_s=timeout)
    rows = components(est, results, single_peak)
    from archcost.validate.subnormal import subnormal_warning, summed

    slow_floats = subnormal_warning(summed([r.get("subnormal") for r in results]),
                                    "a step" if len(results) == 1 else "a step's ranks")
    if slow_floats:
        warnings = [*warnings, slow_floats]
        if not quiet:
            err_console.print(f"[yellow]warning:[/] {slow_floats}", soft_wrap=True)
    doc = {
        "schema_version": SCHEMA_VERSION,
        "kind": "validation",
        "model": {"name": spec.name, "file": spec.path.name, "config": overrides},
        # predicted as the default runtime (eager PyTorch), which is what validate runs
        "workload": {"seq_len": seq_len, "dtype": dtype, "optimizer": optimizer,
                     "runtime": workload.runtime.name},
        "plan": plan.to_string(),
        "device": device, "machine": machine_id(device), "nproc": nproc,
        "hardware": {"profile": cluster.gpu.name, "cluster": cluster.name,
                     "rank_share": share},
        "steps": steps, "warmup": warmup,
        "validation": {
            "components": rows,
            "measured": [{k: r[k] for k in ("rank", "mesh", "median", "spread", "steps",
                                            "losses") if k in r}
                         | {"memory": r.get("memory"), "comm": r.get("comm"),
                            "subnormal": r.get("subnormal"), "allocator": r.get("allocator")}
                         for r in results],
        },
        "estimate": est,
        "warnings": warnings,
    }
    emit(doc, as_json, output)
    if not as_json:
        _render(out_console, doc)
        if output:
            from archcost.cli.layout import say

            say(out_console, f"wrote {output}")


def _render(console, doc) -> None:
    from archcost.cli.layout import Col, Grid, say
    from archcost.report import fmt

    say(console, f"{doc['model']['name']}  plan {doc['plan']}  on {doc['nproc']} x "
                 f"{doc['device']} ({doc['machine']}), profile {doc['hardware']['profile']}",
        style="bold")
    tab = Grid(None, [Col("component", "left", key=True), Col("predicted"), Col("measured"),
                      Col("error")])
    for r in doc["validation"]["components"]:
        f = fmt.seconds if r["unit"] == "s" else fmt.nbytes
        tab.row(r["name"].replace("_", " "), f(r["predicted"]), f(r["measured"]),
                "" if r["error"] is None else fmt.signed_percent(r["error"], 1))
    tab.print(console)
    share = doc["hardware"]["rank_share"]
    if share < 1:
        say(console, f"each of the {doc['nproc']} processes shares this host: predicted at "
                     f"{fmt.percent(share, 0)} of the profile's compute and memory bandwidth "
                     "(calibrated: its threads over those the profile was measured with; "
                     "datasheet: the whole host's, split evenly)")
    for r in doc["validation"]["components"]:
        if r.get("note"):
            say(console, f"{r['name'].replace('_', ' ')}: {r['note']}")
