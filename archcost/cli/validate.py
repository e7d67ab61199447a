"""``archcost validate MODEL --plan ...``: real timed steps against the prediction."""

from __future__ import annotations

from typing import Annotated

import typer

from archcost.cli.analyze import ModelArg, _null
from archcost.cli.common import DebugOpt, emit, err_console, out_console, reports_errors
from archcost.errors import ConfigError, ValidationError

SCHEMA_VERSION = 1
_VALIDATE_DTYPES = ("fp32", "bf16", "fp16")


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)


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


def _hardware(name: str | None, device: str, nproc: int):
    from archcost.hardware.profile import ClusterProfile, load_any
    from archcost.validate.compare import single_gpu_cluster

    name = name or ("cpu" if device == "cpu" else "h100-sxm")
    prof = load_any(name)
    if isinstance(prof, ClusterProfile):
        return prof.with_gpus(nproc) if nproc <= prof.gpus_per_node or nproc % \
            prof.gpus_per_node == 0 else prof
    if nproc > 1:
        raise ConfigError(f"--hardware {name} is a GPU profile; {nproc} processes need a cluster "
                          "profile with the links between them (archcost calibrate --nproc N "
                          "writes one)")
    return single_gpu_cluster(prof)


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
    plan_text: Annotated[str, typer.Option("--plan", help="Data-, tensor- or pipeline-parallel "
                                           "plan, e.g. 'dp=2,zero=3,mbs=4,gbs=16', "
                                           "'tp=2,mbs=4,gbs=4' or 'pp=2,mbs=2,gbs=8' "
                                           "(GPUs = processes).")],
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    nproc: Annotated[int, typer.Option("--nproc", help="Processes (one per GPU on cuda).")] = 1,
    steps: Annotated[int, typer.Option(help="Timed steps.")] = 5,
    warmup: Annotated[int, typer.Option(help="Untimed steps first.")] = 2,
    hardware: Annotated[str | None, typer.Option(
        "--hardware", help="Profile predictions use (GPU profile for one process, cluster "
        "profile for several); default the bundled cpu / h100-sxm profile.")] = None,
    seq_len: Annotated[int, typer.Option("--seq-len", "-s", help="Tokens per sequence.")] = 128,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Builder argument KEY=VALUE.",
                                                   show_default=False)] = None,
    dtype: Annotated[str, typer.Option(help="fp32, bf16 or fp16 (all tensors).")] = "fp32",
    optimizer: Annotated[str, typer.Option(help="adamw, adam, sgd, adamw-fused, "
                                                "adam-fused.")] = "adamw",
    timeout: Annotated[float, typer.Option(help="Seconds before a multi-process run is "
                                                "stopped.")] = 600.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON document.")] = False,
    output: Annotated[str | None, typer.Option("--output", "-o", help="Write the JSON "
                                               "document.")] = None,
    debug: DebugOpt = False,
) -> None:
    """Run real timed training steps of MODEL with the plan's data, tensor or pipeline
    parallelism and compare them with the prediction, per component."""
    from archcost.hardware.machine import machine_id
    from archcost.loader import load_model_file, parse_overrides
    from archcost.plan.costmodel import CostModel
    from archcost.plan.evaluate import estimate_plan
    from archcost.plan.space import parse_plan
    from archcost.plan.workload import trace_workload
    from archcost.trace.precision import parse_precision
    from archcost.validate.compare import available_memory_bytes, components, profile_warnings
    from archcost.validate.parallel import check_hooks, require_hooks
    from archcost.validate.step import RunConfig

    if dtype not in _VALIDATE_DTYPES:
        raise ConfigError(f"--dtype {dtype!r}: validate runs {', '.join(_VALIDATE_DTYPES)} "
                          "(mixed precision's fp32 master copies are not materialised)")
    if steps < 1 or warmup < 0 or nproc < 1 or seq_len < 1:
        raise ConfigError("--steps, --nproc and --seq-len must be >= 1 and --warmup >= 0")
    plan = parse_plan(plan_text)
    if plan.gpus != nproc:
        raise ConfigError(f"plan uses dp*tp*pp*cp = {plan.gpus} GPUs but --nproc is {nproc}: "
                          f"set --nproc {plan.gpus} or change the plan")
    _check_plan(plan)
    if plan.recompute.value != "none":
        raise ConfigError("validate runs recompute=none (the bundled models do not checkpoint "
                          "by themselves); estimate recomputation with archcost estimate")
    _check_device(device, nproc)
    cluster = _hardware(hardware, device, nproc)
    share = 1.0
    if device == "cpu" and nproc > 1:  # the ranks share this host's cores
        from dataclasses import replace

        from archcost.launch import rank_threads
        from archcost.validate.compare import cpu_rank_share

        share = cpu_rank_share(cluster.gpu, rank_threads(nproc))
        cluster = replace(cluster, gpu=cluster.gpu.scaled(flops=share, mem_bw=share))
    warnings = profile_warnings(cluster.gpu, device)
    overrides = parse_overrides(set_)
    spec = load_model_file(model, overrides)
    require_hooks(spec, plan.tp > 1, plan.pp > 1)  # before tracing: the hooks run later
    policy = parse_precision(dtype)
    quiet = as_json
    with err_console.status("tracing", spinner="dots") if not quiet else _null() as status:
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
    with err_console.status(f"running {warmup} + {steps} steps on {nproc} process"
                            f"{'es' if nproc > 1 else ''}", spinner="dots") \
            if not quiet else _null():
        if nproc == 1:
            from archcost.validate.step import run_steps

            results = [run_steps(cfg)]
        else:
            from archcost.validate.launch import run_distributed

            results = run_distributed(cfg, nproc, timeout_s=timeout)
    rows = components(est, results, single_peak)
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
                         | {"memory": r.get("memory"), "comm": r.get("comm")} for r in results],
        },
        "estimate": est,
        "warnings": warnings,
    }
    emit(doc, as_json, output)
    if not as_json:
        _render(doc)
        if output:
            out_console.print(f"wrote {output}")


def _render(doc) -> None:
    from rich.table import Table

    from archcost.cli.render import _seconds, si

    tab = Table(title=f"{doc['model']['name']}  plan {doc['plan']}  on {doc['nproc']} x "
                f"{doc['device']} ({doc['machine']}), profile {doc['hardware']['profile']}",
                title_justify="left")
    for col in ("component", "predicted", "measured", "error"):
        tab.add_column(col, justify="left" if col == "component" else "right")
    for r in doc["validation"]["components"]:
        fmt = _seconds if r["unit"] == "s" else (lambda v: si(v, "B", 1024))
        err = "" if r["error"] is None else f"{100 * r['error']:+.1f}%"
        tab.add_row(r["name"].replace("_", " "),
                    "-" if r["predicted"] is None else fmt(r["predicted"]),
                    "-" if r["measured"] is None else fmt(r["measured"]), err)
    out_console.print(tab)
    share = doc["hardware"]["rank_share"]
    if share < 1:
        out_console.print(f"each of the {doc['nproc']} processes shares this host: predicted "
                          f"at {share:.0%} of the profile's compute and memory bandwidth "
                          "(its threads over those the profile was measured with)",
                          soft_wrap=True)
    for r in doc["validation"]["components"]:
        if r.get("note"):
            out_console.print(f"{r['name'].replace('_', ' ')}: {r['note']}", soft_wrap=True)
