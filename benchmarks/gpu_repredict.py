"""Predict the runs of a ``benchmarks/gpu_validation.sh`` output folder again with this code,
against the times measured then: a GPU is lent rarely, the prediction needs none.

    python benchmarks/gpu_repredict.py OUTDIR [--models-dir models]

Reads every validation document under OUTDIR (``<model>.json``: training steps,
``infer-<case>.json``: generations), rebuilds its workload from the document (model file,
``--set`` values, sequence length or lengths, dtype, optimizer, plan) and prices it on the
profile it named: the folder's calibrated ``gpu.yaml``, else the bundled profile of that name.
Prints one Markdown row per component: measured, predicted when run, predicted now, both errors.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _profile(outdir: Path, name: str) -> str:
    return str(outdir / "gpu.yaml") if name == "gpu" else name


def _cluster(outdir: Path, name: str, device: str = "cuda"):
    """The cluster of one device the run was priced on (``device``: the document's, cuda or
    cpu). A calibrated table written before tables named their dtype gets the one its
    calibration record names (what a calibration now writes beside the cells)."""
    import dataclasses

    from archcost.validate.compare import validation_cluster

    cluster = validation_cluster(_profile(outdir, name), device, 1)
    gpu = cluster.gpu
    measured_in = ((gpu.calibration or {}).get("matmul_table") or {}).get("dtype")
    tables = {k: (dataclasses.replace(t, dtype=measured_in) if t.dtype is None else t)
              for k, t in gpu.matmul_shape_efficiency.items()}
    if measured_in and tables != gpu.matmul_shape_efficiency:
        cluster = dataclasses.replace(cluster, gpu=dataclasses.replace(
            gpu, matmul_shape_efficiency=tables))
    return cluster


def _training(doc: dict, model: str, outdir: Path) -> dict[str, float]:
    from archcost.cli.plan import read_plan
    from archcost.loader import load_model_file
    from archcost.plan.costmodel import CostModel
    from archcost.plan.evaluate import estimate_plan
    from archcost.plan.workload import trace_workload
    from archcost.trace.precision import parse_precision

    w = doc["workload"]
    plan = read_plan(doc["plan"])
    spec = load_model_file(model, doc["model"]["config"])
    workload = trace_workload(spec, w["seq_len"], parse_precision(w["dtype"]), w["optimizer"],
                              (plan.recompute,), None)
    cluster = _cluster(outdir, doc["hardware"]["profile"], doc.get("device", "cuda"))
    est, _ = estimate_plan(plan, CostModel(workload, cluster, usable_memory=1.0),
                           with_schedule=False)
    return {"step_time": est["step_time_s"], **{p: est["phases_s"][p] for p in
                                                ("forward", "backward", "optimizer")}}


def _inference(doc: dict, model: str, outdir: Path) -> dict[str, float]:
    from archcost.cli.infer import INFER_RUNTIME
    from archcost.infer.document import inference_section
    from archcost.infer.price import InferenceCosts
    from archcost.loader import load_model_file
    from archcost.runtime import load_runtime
    from archcost.trace.precision import parse_precision

    w = doc["workload"]
    spec = load_model_file(model, doc["model"]["config"])
    cluster = _cluster(outdir, doc["hardware"]["profile"], doc.get("device", "cuda"))
    costs = InferenceCosts(spec, cluster, parse_precision(w["dtype"]), load_runtime(INFER_RUNTIME),
                           build_len=w["input_len"] + w["output_len"])
    got = inference_section(costs, w["batch"], w["input_len"], w["output_len"])
    return {"ttft": got["ttft_s"], "tpot": got["tpot_s"]}


def _err(pred: float, meas: float | None) -> str:
    return "" if not meas else f"{100 * (pred / meas - 1):+.1f}%"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outdir", type=Path)
    ap.add_argument("--models-dir", type=Path, default=ROOT / "models")
    args = ap.parse_args(argv)
    print("| run | component | measured | predicted then | error | predicted now | error |")
    print("|---|---|---:|---:|---:|---:|---:|")
    errs: dict[str, list[tuple[float, float]]] = {}
    for f in sorted(args.outdir.glob("*.json")):
        doc = json.loads(f.read_text())
        if doc.get("kind") != "validation":
            continue
        model = str(args.models_dir / doc["model"]["file"])
        now = (_inference if "input_len" in doc["workload"] else _training)(doc, model,
                                                                            args.outdir)
        for c in doc["validation"]["components"]:
            if c["name"] not in now:
                continue
            meas, then = c["measured"], c["predicted"]
            print(f"| {f.stem} | {c['name']} | {meas * 1e3:.2f} ms | {then * 1e3:.2f} ms | "
                  f"{_err(then, meas)} | {now[c['name']] * 1e3:.2f} ms | "
                  f"{_err(now[c['name']], meas)} |")
            if c["name"] in ("step_time", "ttft", "tpot") and meas:
                errs.setdefault(c["name"], []).append((abs(then / meas - 1),
                                                       abs(now[c["name"]] / meas - 1)))
    for name, e in errs.items():
        then, now = [x[0] for x in e], [x[1] for x in e]
        print(f"\n{name}: mean absolute error then {100 * sum(then) / len(e):.1f}% (max "
              f"{100 * max(then):.1f}%), now {100 * sum(now) / len(e):.1f}% (max "
              f"{100 * max(now):.1f}%) over {len(e)} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
