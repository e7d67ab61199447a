"""``archcost sweep MODEL --infer --vary KEY=V1,V2 ...``: generation (``archcost infer``) at
every point of a grid over batch, prompt and output lengths, precision and hardware; the
sweep document (``mode: inference``), its table, Markdown and CSV."""

from __future__ import annotations

from typing import Any

import typer

from archcost.cli.common import emit, out_console, progress_bar

__all__ = ["infer_sweep", "run_infer_sweep", "to_csv", "CSV_FIELDS", "INFER_DEFAULTS"]

# what `archcost infer` prices when not told otherwise (the lengths and batch: the options')
INFER_DEFAULTS = {"hardware": "h100-sxm", "dtype": "bf16"}
CSV_FIELDS = ("ttft_s", "tpot_s", "e2e_s", "output_tokens_per_s", "output_tokens_per_s_per_gpu",
              "peak_per_gpu_bytes", "fits", "max_batch", "prefill_bound", "decode_bound", "gpu",
              "cluster")


def infer_sweep(model, vary, hardware, set_, dtype, batch, input_len, output_len, tp, pp,
                usable, runtime, options, as_json, markdown, as_csv, output, training) -> None:
    """``sweep --infer``: the options checked, the base of the grid from them, then the
    sweep (``training``: the training-only options given, refused)."""
    from archcost.cli.common import check_outputs, model_inputs
    from archcost.cli.options import check_usable_memory
    from archcost.errors import ConfigError
    from archcost.runtime import load_runtime
    from archcost.sweep.axes import parse_vary
    from archcost.sweep.infer_grid import INFER_DTYPES

    if training:
        raise ConfigError(f"{', '.join(training)}: options of a training sweep, not of --infer "
                          "(it prices generation: no sequence length, optimizer, plan search or "
                          "objective); drop them, or vary batch, input_len, output_len, dtype or "
                          "hardware instead")
    check_usable_memory(usable)
    check_outputs(o=output, inputs=model_inputs(model, hardware, options.routing.spec))
    d = dtype or INFER_DEFAULTS["dtype"]
    if d not in INFER_DTYPES:
        raise ConfigError(f"--dtype {d!r}: inference prices {', '.join(INFER_DTYPES)}")
    base = {"hardware": hardware or INFER_DEFAULTS["hardware"], "tp": tp, "pp": pp,
            "batch": batch, "input_len": input_len, "output_len": output_len, "dtype": d,
            "usable_memory": usable}
    run_infer_sweep(model=model, set_=set_, axes=parse_vary(list(vary or [])), base=base,
                    runtime=load_runtime(runtime), options=options, as_json=as_json,
                    markdown=markdown, as_csv=as_csv, output=output)


def run_infer_sweep(*, model: str, set_: list[str] | None, axes, base: dict[str, Any], runtime,
                    options, as_json: bool, markdown: bool, as_csv: bool,
                    output: str | None) -> None:
    """Price the grid, write the document (``--json``/``-o``) and show it."""
    from archcost.cli.infer import one_replica_cluster
    from archcost.loader import load_model_file, parse_overrides
    from archcost.sweep.axes import check_mode
    from archcost.sweep.infer_grid import run_infer_grid

    check_mode(axes, infer=True)
    spec = load_model_file(model, parse_overrides(set_))
    quiet = as_json or markdown or as_csv
    memo: dict = {}
    with progress_bar(quiet, "grid points") as bar:
        task = bar.add_task("grid", total=None) if bar is not None else None
        grid = run_infer_grid(axes, spec=spec, base=base, cluster_for=one_replica_cluster,
                              runtime=runtime, options=options, memo=memo,
                              progress=None if bar is None else
                              lambda d, n: bar.update(task, completed=d, total=n))
    doc = {
        "schema_version": 1, "kind": "sweep", "mode": "inference",
        "model": {"name": spec.name, "file": spec.path.name, "builder": spec.builder_name,
                  "config": spec.model_config(base["batch"],
                                              base["input_len"] + base["output_len"])},
        "base": {**base, "runtime": runtime.name},
        **grid,
    }
    emit(doc, as_json, output)
    if markdown:
        from archcost.report.markdown import to_markdown

        typer.echo(to_markdown(doc), nl=False)
    elif as_csv:
        typer.echo(to_csv(doc), nl=False)
    elif not as_json:
        from archcost.cli.layout import say

        _render(out_console, doc)
        if output:
            say(out_console, f"wrote {output}")


def to_csv(doc: dict[str, Any]) -> str:
    """The grid as CSV, a row per point (``sweep``'s writer with the inference fields)."""
    from archcost.cli.sweep import to_csv as grid_csv

    return grid_csv(doc, CSV_FIELDS)


def _render(console, doc: dict[str, Any]) -> None:
    from archcost.cli.layout import Col, Grid
    from archcost.report import fmt

    keys = [a["key"] for a in doc["axes"]]
    b = doc["base"]
    cols = [*[Col(k, "left", key=True) for k in keys], Col("TTFT"), Col("TPOT"),
            Col("tok/s/GPU"), Col("mem/GPU"), Col("fits", "left"), Col("bound", "left")]
    tab = Grid(f"{doc['model']['name']} generating on {b['hardware']} (tp {b['tp']}, pp "
               f"{b['pp']}): {doc['grid_points']} grid points in {fmt.seconds(doc['seconds'])}",
               cols, notes=["TTFT: time to first token; TPOT: time per output token (mean "
                            "decode step); tok/s/GPU: output tokens per second per GPU; "
                            "mem/GPU: peak memory per GPU; bound: what bounds the prefill / "
                            "decode on the roofline (--csv or -o for every figure)"])
    for p in doc["points"]:
        tab.row(*[str(p["point"][k]) for k in keys], fmt.seconds(p["ttft_s"]),
                fmt.seconds(p["tpot_s"]), fmt.si(p["output_tokens_per_s_per_gpu"]),
                fmt.nbytes(p["peak_per_gpu_bytes"]),
                "yes" if p["fits"] else ("no", "bold red"),
                f"{p['prefill_bound']} / {p.get('decode_bound', '-')}")
    tab.print(console)
