"""``archcost validate MODEL --infer``: a real generation with the model's KV cache, timed,
against ``archcost infer``'s prediction of TTFT and TPOT on the same profile."""

from __future__ import annotations

from typing import Any

from archcost.cli.common import check_outputs, emit, err_console, model_inputs, out_console
from archcost.cli.common import spinner as _spinner
from archcost.errors import ConfigError, ValidationError

__all__ = ["validate_infer"]

_DTYPES = ("fp32", "bf16", "fp16")


def validate_infer(model: str, *, batch: int, input_len: int, output_len: int, device: str,
                   steps: int, warmup: int, hardware: str | None, set_: list[str] | None,
                   dtype: str, as_json: bool, output: str | None) -> None:
    """Predict static batching of ``batch`` sequences (``archcost infer``'s path: the traced
    prefill and decode steps priced on the profile, ``infer.serving.static_serving``), run
    ``warmup`` then ``steps`` real generations (``validate.generate``), compare."""
    from archcost.cli.infer import INFER_RUNTIME
    from archcost.cli.validate import SCHEMA_VERSION, _check_device
    from archcost.hardware.machine import machine_id
    from archcost.infer.document import inference_section
    from archcost.infer.price import InferenceCosts
    from archcost.loader import load_model_file, parse_overrides
    from archcost.runtime import load_runtime
    from archcost.trace.precision import parse_precision
    from archcost.validate.compare import (
        available_memory_bytes,
        generation_components,
        profile_warnings,
        validation_cluster,
    )
    from archcost.validate.generate import GenerateConfig

    if dtype not in _DTYPES:
        raise ConfigError(f"--dtype {dtype!r}: validate --infer runs {', '.join(_DTYPES)}")
    check_outputs(o=output, inputs=model_inputs(model, hardware))
    _check_device(device, 1)
    cluster = validation_cluster(hardware, device, 1)
    warnings = profile_warnings(cluster.gpu, device)
    overrides = parse_overrides(set_)
    spec = load_model_file(model, overrides)
    if spec.kv_cache_fn is None:
        raise ConfigError(f"{spec.path.name} defines no kv_cache(): --infer generates with the "
                          "model's KV cache; add `def kv_cache(model, batch_size, max_len, "
                          "dtype=None)` (see models/llama.py) or validate training steps with "
                          "--plan")
    runtime = load_runtime(INFER_RUNTIME)  # the model as written, what the generation runs
    with _spinner(as_json) as status:
        def progress(msg: str) -> None:
            if status is not None:
                status.update(msg)

        costs = InferenceCosts(spec, cluster, parse_precision(dtype), runtime,
                               build_len=input_len + output_len, progress=progress)
        costs.check_shapes()
        predicted = inference_section(costs, batch, input_len, output_len)
    need = predicted["memory_bytes"]["peak_per_gpu"]
    avail = available_memory_bytes(device)
    if avail is not None and need > 0.9 * avail:
        raise ValidationError(f"the generation needs about {need / 2**30:.1f} GiB but "
                              f"{avail / 2**30:.1f} GiB is available: use a smaller model, "
                              "batch or length; nothing was allocated")
    if not as_json:
        for w in warnings:
            err_console.print(f"[yellow]warning:[/] {w}", soft_wrap=True)
    cfg = GenerateConfig(model=model, overrides=overrides, batch=batch, input_len=input_len,
                         output_len=output_len, dtype=dtype, repeats=steps, warmup=warmup,
                         device=device)
    with _spinner(as_json, f"generating {warmup} + {steps} times: {batch} x ({input_len} + "
                  f"{output_len}) tokens"):
        from archcost.validate.drift import drift_warning, machine_drift
        from archcost.validate.generate import run_generation

        measured, drift = machine_drift(cluster.gpu, device, lambda: run_generation(cfg))
    from archcost.validate.subnormal import subnormal_warning

    for said in (subnormal_warning(measured.get("subnormal"), "a generation"),
                 drift_warning(drift)):
        if said:
            warnings = [*warnings, said]
            if not as_json:
                err_console.print(f"[yellow]warning:[/] {said}", soft_wrap=True)
    doc: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "kind": "validation",
        "model": {"name": spec.name, "file": spec.path.name, "config": overrides},
        "workload": {"batch": batch, "input_len": input_len, "output_len": output_len,
                     "dtype": dtype, "runtime": runtime.name, "batching": "static"},
        "device": device, "machine": machine_id(device), "nproc": 1,
        "hardware": {"profile": cluster.gpu.name, "cluster": cluster.name, "rank_share": 1.0},
        "steps": steps, "warmup": warmup,
        "validation": {
            "components": generation_components(predicted, measured),
            "measured": [{"rank": 0, "median": _present(ttft=measured["ttft_s"],
                                                        tpot=measured["tpot_s"]),
                          "spread": _present(ttft=measured["spread"]["ttft_s"],
                                             tpot=measured["spread"]["tpot_s"])}],
            **({"machine_drift": drift} if drift else {}),
        },
        "inference": {"predicted": predicted,
                      "measured": {k: measured[k] for k in ("ttft_s", "tpot_s", "repeats",
                                                            "warmup", "allocator",
                                                            "subnormal")}
                      | {"tpot_by_context": [{"context": c, "seconds": s}
                                             for c, s in measured["tpot_by_context"]]}},
        "warnings": warnings,
    }
    emit(doc, as_json, output)
    if not as_json:
        _render(out_console, doc)
        if output:
            from archcost.cli.layout import say

            say(out_console, f"wrote {output}")


def _render(console, doc: dict[str, Any]) -> None:
    from archcost.cli.layout import Col, Grid, say
    from archcost.report import fmt

    w = doc["workload"]
    say(console, f"{doc['model']['name']}  generation of {w['batch']} x ({w['input_len']} + "
                 f"{w['output_len']}) tokens, {w['dtype']}, on {doc['device']} "
                 f"({doc['machine']}), profile {doc['hardware']['profile']}", style="bold")
    tab = Grid(None, [Col("quantity", "left", key=True), Col("predicted"), Col("measured"),
                      Col("error")])
    for r in doc["validation"]["components"]:
        tab.row(r["name"].replace("_", " "), fmt.seconds(r["predicted"]),
                "" if r["measured"] is None else fmt.seconds(r["measured"]),
                "" if r["error"] is None else fmt.signed_percent(r["error"], 1))
    tab.print(console)
    say(console, f"measured: medians of {doc['steps']} timed generations after "
                 f"{doc['warmup']} untimed; TPOT is the mean of the decode steps' medians")
    drift = doc["validation"].get("machine_drift")
    for p in (drift or {}).get("points", []):
        said = ", ".join(f"{fmt.seconds(p[k])} {k[:-2]}" for k in ("before_s", "after_s")
                         if p.get(k))
        say(console, f"machine since calibration: the cache probe over "
                     f"{p['working_set_bytes'] / 2**20:.0f} MiB "
                     f"({'in cache' if p['in_cache'] else 'from memory'}) "
                     f"{fmt.seconds(p['calibrated_s'])} calibrated, {said} the generation",
            style="dim")


def _present(**figures):
    """The figures measured (a generation of one token has no TPOT)."""
    return {k: v for k, v in figures.items() if v is not None}
