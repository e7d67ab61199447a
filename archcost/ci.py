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
    hardware = "h100-sxm"          # a GPU profile (analyze) or a cluster (estimate, plan)
    # estimate: plan = "dp=...,gbs=..."; plan: gpus = 64, gbs = 512, top = 3

Keys and defaults are the command-line options' (``archcost/cli/options.py``); ``cluster`` is
read as ``hardware``, its old spelling.

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
             "metrics", "usable_memory", "fp8_recipe"}
_COUNTS = ("batch_size", "seq_len", "gpus", "gbs", "top")  # whole numbers >= 1
_TEXTS = ("name", "kind", "model", "dtype", "optimizer", "hardware", "cluster", "plan",
          "recompute", "fp8_recipe")


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
    from archcost.cli.options import FAIL_ABOVE

    default = _percent(table.get("fail_above", FAIL_ABOVE), "[tool.archcost] fail_above")
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
        _check_types(raw, where)
        if raw["kind"] not in KINDS:
            raise ConfigError(f"{where}: kind {raw['kind']!r}; use one of {', '.join(KINDS)}")
        if raw["name"] in names:
            raise ConfigError(f"{where}: name {raw['name']!r} used twice; names are report files")
        names.add(raw["name"])
        opts = {k: v for k, v in raw.items() if k not in ("name", "kind", "model", "fail_above",
                                                          "metrics")}
        runs.append(RunSpec(
            name=raw["name"], kind=raw["kind"], model=_model_target(raw["model"], root),
            options=opts,
            fail_above=_percent(raw["fail_above"], where) if "fail_above" in raw else None,
            metrics=tuple(raw["metrics"]) if "metrics" in raw else None))
    return CiConfig(root=root, reports_dir=root / table.get("reports_dir", "reports"),
                    fail_above=default, runs=tuple(runs))


def _model_target(text: str, root: Path) -> str:
    """A run's model, its path relative to the project: ``models/x.py``, ``hf:configs/x.json``;
    an ``hf:`` bundled name (no such path) stays as written."""
    if text.startswith("hf:"):
        rest = text[3:]
        return f"hf:{root / rest}" if (root / rest).exists() else text
    return str(root / text)


def _check_types(raw: dict[str, Any], where: str) -> None:
    from archcost.cli.options import MAX_SIZE

    for key in _COUNTS:
        v = raw.get(key)
        if key in raw and (isinstance(v, bool) or not isinstance(v, int) or
                           not 1 <= v <= MAX_SIZE):
            raise ConfigError(f"{where}: {key} = {v!r}; give a whole number >= 1")
    for key in _TEXTS:
        if key in raw and not isinstance(raw[key], str):
            raise ConfigError(f"{where}: {key} = {raw[key]!r}; give a string in quotes")
    if "hardware" in raw and "cluster" in raw:
        raise ConfigError(f"{where}: hardware and cluster (its old spelling) both given; keep "
                          "hardware")
    if "set" in raw and not isinstance(raw["set"], dict):
        raise ConfigError(f"{where}: set = {raw['set']!r}; give a table, e.g. set = "
                          "{ layers = 4 }")
    metrics = raw.get("metrics")
    if "metrics" in raw and (not isinstance(metrics, list) or
                             not all(isinstance(m, str) for m in metrics)):
        raise ConfigError(f"{where}: metrics = {metrics!r}; give a list of names, e.g. "
                          "[\"step_time\", \"memory.peak\"]")
    share = raw.get("usable_memory")
    if "usable_memory" in raw and (isinstance(share, bool) or
                                   not isinstance(share, (int, float)) or not 0 < share <= 1):
        raise ConfigError(f"{where}: usable_memory = {share!r}; give a share in (0, 1], e.g. 0.9")


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


def _require_peak(run: RunSpec, gpu, policy) -> None:
    """A low-precision run on a GPU without that peak is refused (one line, the run named)."""
    if policy.low_precision is not None:
        from archcost.cost.compute import require_peak

        require_peak(gpu, policy.low_precision.peak_key, f"run {run.name}: dtype = "
                     f"{policy.precision.value!r}")


def produce(run: RunSpec, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run one configured job in-process; its document."""
    from archcost.cli import options as default
    from archcost.loader import load_model_file
    from archcost.trace.precision import parse_precision

    o = run.options
    overrides = dict(o.get("set", {}))
    policy = parse_precision(o.get("dtype", default.DTYPE), fp8_recipe=o.get("fp8_recipe"))
    seq = o.get("seq_len", default.SEQ_LEN)
    optimizer = o.get("optimizer", default.OPTIMIZER)
    usable = o.get("usable_memory", default.USABLE_MEMORY)
    hardware = o.get("hardware", o.get("cluster"))
    if run.kind == "analyze":
        from archcost.analysis import run_analysis
        from archcost.options import Recompute

        try:
            recompute = Recompute(o.get("recompute", default.RECOMPUTE))
        except ValueError:
            raise ConfigError(f"run {run.name}: recompute = {o['recompute']!r}; use none, "
                              "selective or full") from None
        gpu = None
        if hardware is not None:
            from archcost.hardware.profile import ClusterProfile, load_any

            gpu = load_any(hardware)
            gpu = gpu.gpu if isinstance(gpu, ClusterProfile) else gpu
            _require_peak(run, gpu, policy)
        spec = load_model_file(run.model, overrides)
        doc, traced = run_analysis(spec, o.get("batch_size", default.BATCH_SIZE), seq, policy,
                                   optimizer, recompute=recompute, gpu=gpu, usable_memory=usable)
        if gpu is not None:
            from archcost.cost.estimate import estimate_single_device

            doc["estimate"] = estimate_single_device(traced.graph, doc, gpu,
                                                     policy.gemm_dtype, usable_memory=usable)
        return doc
    from archcost.cli.plan import SCHEMA_VERSION
    from archcost.hardware.profile import load_cluster
    from archcost.plan.costmodel import CostModel
    from archcost.plan.workload import trace_workload

    spec = load_model_file(run.model, overrides)
    header = {"schema_version": SCHEMA_VERSION,
              "model": {"name": spec.name, "file": spec.path.name,
                        "builder": spec.builder_name, "config": spec.model_config(1, seq)},
              "workload": {"seq_len": seq, "precision": policy.precision.value,
                           "optimizer": optimizer}}
    cluster_name = hardware or default.FALLBACK_CLUSTER
    if run.kind == "estimate":
        from archcost.plan.evaluate import estimate_plan
        from archcost.plan.space import parse_plan

        if "plan" not in o:
            raise ConfigError(f"run {run.name}: kind estimate needs plan = \"dp=...,gbs=...\"")
        plan = parse_plan(o["plan"])
        cluster = load_cluster(cluster_name, plan.gpus)
        _require_peak(run, cluster.gpu, policy)
        w = trace_workload(spec, seq, policy, optimizer, (plan.recompute,), progress)
        cm = CostModel(w, cluster, usable_memory=usable)
        est, _ = estimate_plan(plan, cm, with_schedule=False)
        return {**header, "kind": "estimate", "plan": plan.to_string(), "estimate": est}
    from archcost.plan.search import search

    cluster = load_cluster(cluster_name, o.get("gpus"))  # default: one node
    _require_peak(run, cluster.gpu, policy)
    w = trace_workload(spec, seq, policy, optimizer, progress=progress)
    cm = CostModel(w, cluster, usable_memory=usable)
    res = search(cm, [cluster.gpus], o.get("gbs", default.default_gbs(seq)),
                 top=o.get("top", default.TOP))
    return {**header, "kind": "plan", **res}
