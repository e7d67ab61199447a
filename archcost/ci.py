"""``archcost ci``: the runs a project declares in ``[tool.archcost]`` of its pyproject.toml,
written as deterministic reports and compared with the committed baselines.

    [tool.archcost]
    reports_dir = "reports"        # baselines, committed
    fail_above = "2%"              # default threshold of every run

    [[tool.archcost.runs]]
    name = "gpt2-small"            # reports/gpt2-small.json
    kind = "analyze"               # analyze | estimate | plan
    model = "models/gpt2.py"
    set = { layers = 12 }
    batch_size = 8
    seq_len = 1024
    dtype = "bf16-mixed"
    hardware = "h100-sxm"          # analyze: a GPU profile; estimate/plan: cluster = "..."
    # estimate: plan = "dp=...,gbs=..."; plan: gpus = 64, gbs = 512, top = 3

Reports are canonical: the timings of the tool itself (tracing and search seconds, plans per
second) are dropped, so the same inputs give byte-identical JSON on any machine.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archcost.errors import ConfigError

__all__ = ["RunSpec", "CiConfig", "load_config", "canonical", "canonical_json", "produce"]

KINDS = ("analyze", "estimate", "plan")
# measurements of the tool's own speed: never part of a compared report
_VOLATILE = {("capture", "seconds"), ("search", "seconds"), ("search", "score_seconds"),
             ("search", "enumerate_seconds"), ("search", "rerank_seconds"),
             ("search", "plans_per_second"), ((), "seconds"), ((), "points_per_second")}
_RUN_KEYS = {"name", "kind", "model", "set", "batch_size", "seq_len", "dtype", "optimizer",
             "hardware", "cluster", "plan", "gpus", "gbs", "top", "recompute", "fail_above",
             "metrics"}


@dataclass(frozen=True)
class RunSpec:
    name: str
    kind: str
    model: str
    options: dict[str, Any]
    fail_above: float | None = None
    metrics: tuple[str, ...] | None = None


@dataclass(frozen=True)
class CiConfig:
    root: Path
    reports_dir: Path
    fail_above: float
    runs: tuple[RunSpec, ...] = field(default_factory=tuple)


def _percent(value, where: str) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    try:
        return float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise ConfigError(f"{where}: {value!r} is not a threshold; write e.g. \"2%\" or 0.02") \
            from None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}; fix the TOML") from None


def load_config(pyproject: Path) -> CiConfig:
    """The ``[tool.archcost]`` table of ``pyproject``, checked."""
    if not pyproject.is_file():
        raise ConfigError(f"{pyproject}: no such file; run from the project root or pass "
                          "--config path/to/pyproject.toml")
    table = _read_toml(pyproject).get("tool", {}).get("archcost")
    if not isinstance(table, dict):
        raise ConfigError(f"{pyproject}: no [tool.archcost] table; add one with "
                          "[[tool.archcost.runs]] entries (see archcost ci --help)")
    root = pyproject.parent
    runs_raw = table.get("runs")
    if not isinstance(runs_raw, list) or not runs_raw:
        raise ConfigError(f"{pyproject}: [tool.archcost] has no [[tool.archcost.runs]]; add one")
    default = _percent(table.get("fail_above", "2%"), "[tool.archcost] fail_above")
    runs, names = [], set()
    for i, raw in enumerate(runs_raw):
        where = f"[[tool.archcost.runs]] #{i + 1}"
        unknown = set(raw) - _RUN_KEYS
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; allowed: "
                              f"{', '.join(sorted(_RUN_KEYS))}")
        for key in ("name", "kind", "model"):
            if key not in raw:
                raise ConfigError(f"{where}: missing {key!r}")
        if raw["kind"] not in KINDS:
            raise ConfigError(f"{where}: kind {raw['kind']!r}; use one of {', '.join(KINDS)}")
        if raw["name"] in names:
            raise ConfigError(f"{where}: name {raw['name']!r} used twice; names are report files")
        names.add(raw["name"])
        opts = {k: v for k, v in raw.items() if k not in ("name", "kind", "model", "fail_above",
                                                          "metrics")}
        runs.append(RunSpec(
            name=raw["name"], kind=raw["kind"], model=str(root / raw["model"]), options=opts,
            fail_above=_percent(raw["fail_above"], where) if "fail_above" in raw else None,
            metrics=tuple(raw["metrics"]) if "metrics" in raw else None))
    return CiConfig(root=root, reports_dir=root / table.get("reports_dir", "reports"),
                    fail_above=default, runs=tuple(runs))


def canonical(doc: Any, path: tuple[str, ...] = ()) -> Any:
    """``doc`` without the tool's own timings (see ``_VOLATILE``)."""
    if isinstance(doc, dict):
        out = {}
        for k, v in doc.items():
            parent = path[-1] if path else ()
            if (parent, k) in _VOLATILE:
                continue
            out[k] = canonical(v, (*path, k))
        return out
    if isinstance(doc, list):
        return [canonical(v, path) for v in doc]
    return doc


def canonical_json(doc: dict[str, Any]) -> str:
    return json.dumps(canonical(doc), indent=2, sort_keys=False) + "\n"


def produce(run: RunSpec, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run one configured job in-process; its document."""
    from archcost.loader import load_model_file
    from archcost.trace.precision import parse_precision

    o = run.options
    overrides = dict(o.get("set", {}))
    spec = load_model_file(run.model, overrides)
    policy = parse_precision(o.get("dtype", "bf16-mixed"))
    seq = int(o.get("seq_len", 1024))
    optimizer = o.get("optimizer", "adamw")
    if run.kind == "analyze":
        from archcost.analysis import run_analysis
        from archcost.options import Recompute

        gpu = None
        if "hardware" in o:
            from archcost.hardware.profile import load_gpu

            gpu = load_gpu(o["hardware"])
        doc, traced = run_analysis(spec, int(o.get("batch_size", 1)), seq, policy, optimizer,
                                   recompute=Recompute(o.get("recompute", "none")), gpu=gpu)
        if gpu is not None:
            from archcost.cost.estimate import estimate_single_device

            doc["estimate"] = estimate_single_device(traced.graph, doc, gpu,
                                                     policy.compute_dtype)
        doc["model"]["file"] = Path(run.model).name
        return doc
    from archcost.cli.plan import SCHEMA_VERSION
    from archcost.hardware.profile import load_cluster
    from archcost.plan.costmodel import CostModel
    from archcost.plan.workload import trace_workload

    header = {"schema_version": SCHEMA_VERSION,
              "model": {"name": spec.name, "file": Path(run.model).name,
                        "builder": spec.builder_name, "config": spec.builder_config(1, seq)},
              "workload": {"seq_len": seq, "precision": policy.precision.value,
                           "optimizer": optimizer}}
    cluster_name = o.get("cluster", "dgx-h100-ndr")
    if run.kind == "estimate":
        from archcost.plan.evaluate import estimate_plan
        from archcost.plan.space import parse_plan

        if "plan" not in o:
            raise ConfigError(f"run {run.name}: kind estimate needs plan = \"dp=...,gbs=...\"")
        plan = parse_plan(o["plan"])
        w = trace_workload(spec, seq, policy, optimizer, (plan.recompute,), progress)
        cm = CostModel(w, load_cluster(cluster_name, plan.gpus))
        est, _ = estimate_plan(plan, cm, with_schedule=False)
        return {**header, "kind": "estimate", "plan": plan.to_string(), "estimate": est}
    from archcost.plan.search import search

    gpus = int(o.get("gpus", 8))
    w = trace_workload(spec, seq, policy, optimizer, progress=progress)
    cm = CostModel(w, load_cluster(cluster_name, gpus))
    res = search(cm, [gpus], int(o.get("gbs", gpus)), top=int(o.get("top", 3)))
    return {**header, "kind": "plan", **res}
