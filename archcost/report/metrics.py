"""The comparable figures of a result document, by metric name, each with its unit and its
better direction: more step time, memory, FLOPs, bytes, parameters, energy or cost is worse;
more MFU, tokens/s or tokens per joule is better; texts and elasticities have no direction.

A figure that is there but is no finite number is kept as ``invalid`` (a half-written document
must not read as one that lacks the metric); an absent one (or null) has no metric, except
where null says the figure does not apply (``na``: the TPOT of one output token, which no
decode step produces).

Analyses: ``params``, ``flops.<phase>``, ``bytes.moved``, ``memory.<part>`` and
``memory.static`` (their sum), with ``--hardware`` ``step_time``, ``time.<phase>``, ``mfu``,
``hfu``, ``tokens_per_s``, ``memory.peak``, ``fits``; per module ``module:<path>:flops|params|
activations_saved|time``. Plans (the best plan) and estimates: ``feasible`` (plans), ``plan``
(text), ``fits``, ``step_time``, ``tokens_per_s``, ``mfu``, ``hfu``, ``memory.peak`` (per GPU)
and its parts, ``time.<component>``, ``bubble_fraction``, ``joules_per_token``,
``usd_per_million_tokens``. Validations: ``error.<component>`` (absolute error),
``predicted.<component>``, ``measured.<component>``.

Sweeps: a point is named by its axis values joined with ``@`` (``mem_bw=2x@gpus=16``; ``base``
when nothing was varied); its metrics are ``step_time@POINT``, ``tokens_per_s@``, ``mfu@``,
``memory.peak@`` (per GPU), ``tokens_per_joule@`` (more is better),
``usd_per_million_tokens@``, ``fits@`` and the texts ``plan@`` and ``bottleneck@``; over the
grid, ``best.step_time`` (the fastest point's), ``best.tokens_per_s``,
``best.tokens_per_joule`` (the highest), ``best.usd_per_million_tokens`` (the lowest),
``best.point`` (text), ``points_fitting``, and the sensitivity's ``elasticity.<resource>`` (no
better direction).

Inference (``archcost infer``): ``ttft``, ``tpot``, ``e2e`` (s), ``tokens_per_s`` (the
replica's output tokens/s) and ``tokens_per_s_per_gpu`` (more is better), ``memory.peak`` (per
GPU) and ``memory.<part>`` (weights, kv_cache, activations), ``fits``, ``max_batch`` (more is
better), ``time.prefill`` and ``time.decode`` (one step of each phase). Inference sweeps:
``ttft@POINT``, ``tpot@``, ``e2e@``, ``tokens_per_s@``, ``tokens_per_s_per_gpu@``,
``memory.peak@``, ``fits@``; over the grid, ``best.tokens_per_s_per_gpu`` (the highest among
the points that fit) and ``points_fitting``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from archcost.report.document import chosen_estimate, point_label, sweep_keys

__all__ = ["Metric", "metrics_of", "WORSE_HIGHER", "BETTER_HIGHER", "NEUTRAL"]

WORSE_HIGHER, BETTER_HIGHER, NEUTRAL = 1, -1, 0


@dataclass(frozen=True)
class Metric:
    value: float | str | None
    unit: str  # s, B, FLOP, count, ratio, tokens/s, J, $, bool, text
    direction: int  # WORSE_HIGHER, BETTER_HIGHER or NEUTRAL
    absolute: bool = False  # threshold on the absolute change (ratios such as errors)
    invalid: str | None = None  # the value found where a number belongs (value is then None)
    na: str | None = None  # why the figure does not apply to this document (value is None)


def _n(v) -> float | None:
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
        return float(v)
    return None


def _get(d: Any, *keys):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 24 else text[:21] + "..."


def _put(out: dict[str, Metric], name: str, value, unit: str, direction: int,
         absolute: bool = False) -> None:
    """A numeric metric (a bool where ``unit`` is ``bool``); absent when ``value`` is None,
    ``invalid`` when it is there but no finite number (a half-written document must not pass
    as one that lacks the metric)."""
    if value is None:
        return
    if unit == "bool":
        v = float(value) if isinstance(value, bool) else None
    else:
        v = _n(value)
    out[name] = Metric(v, unit, direction, absolute,
                       None if v is not None else _short(value))


def _plan_estimate_metrics(est: dict[str, Any], out: dict[str, Metric]) -> None:
    _put(out, "fits", est.get("fits"), "bool", BETTER_HIGHER, absolute=True)
    _put(out, "step_time", est.get("step_time_s"), "s", WORSE_HIGHER)
    _put(out, "tokens_per_s", est.get("tokens_per_s"), "tokens/s", BETTER_HIGHER)
    _put(out, "mfu", est.get("mfu"), "ratio", BETTER_HIGHER)
    _put(out, "hfu", est.get("hfu"), "ratio", NEUTRAL)
    mem = est.get("memory_bytes") or {}
    _put(out, "memory.peak", mem.get("peak_per_gpu"), "B", WORSE_HIGHER)
    for part in ("weights", "gradients", "optimizer_states", "activations", "transient"):
        _put(out, f"memory.{part}", mem.get(part), "B", WORSE_HIGHER)
    for comp, t in (est.get("components_s") or {}).items():
        _put(out, f"time.{comp}", t, "s", WORSE_HIGHER)
    _put(out, "bubble_fraction", _get(est, "pipeline", "bubble_fraction"), "ratio",
         WORSE_HIGHER, absolute=True)
    eco = est.get("economics") or {}
    _put(out, "joules_per_token", eco.get("joules_per_token"), "J", WORSE_HIGHER)
    _put(out, "usd_per_million_tokens", eco.get("usd_per_million_tokens"), "$", WORSE_HIGHER)


def _sweep_metrics(doc: dict[str, Any], out: dict[str, Metric]) -> None:
    keys = sweep_keys(doc)
    points = [p for p in doc.get("points") or [] if isinstance(p, dict)]
    fitting = [p for p in points if p.get("fits") is True and _n(p.get("step_time_s"))]
    _put(out, "points_fitting", len(fitting), "count", BETTER_HIGHER)
    if fitting:
        best = min(fitting, key=lambda p: float(p["step_time_s"]))
        _put(out, "best.step_time", best["step_time_s"], "s", WORSE_HIGHER)
        out["best.point"] = Metric(point_label(best.get("point"), keys), "text", NEUTRAL)
        for field, unit, direction in (("tokens_per_s", "tokens/s", BETTER_HIGHER),
                                       ("tokens_per_joule", "tokens/J", BETTER_HIGHER),
                                       ("usd_per_million_tokens", "$", WORSE_HIGHER)):
            vals = [v for v in (_n(p.get(field)) for p in fitting) if v is not None]
            if vals:
                pick = max(vals) if direction == BETTER_HIGHER else min(vals)
                _put(out, f"best.{field}", pick, unit, direction)
    for p in points:
        at = "@" + point_label(p.get("point"), keys, "@")
        fits = p.get("fits") is True
        _put(out, "fits" + at, p.get("fits"), "bool", BETTER_HIGHER, absolute=True)
        out["plan" + at] = Metric(str(p.get("plan")) if fits and p.get("plan") else None,
                                  "text", NEUTRAL)
        if not fits:
            continue
        _put(out, "step_time" + at, p.get("step_time_s"), "s", WORSE_HIGHER)
        _put(out, "tokens_per_s" + at, p.get("tokens_per_s"), "tokens/s", BETTER_HIGHER)
        _put(out, "mfu" + at, p.get("mfu"), "ratio", BETTER_HIGHER)
        _put(out, "memory.peak" + at, p.get("peak_per_gpu_bytes"), "B", WORSE_HIGHER)
        _put(out, "tokens_per_joule" + at, p.get("tokens_per_joule"), "tokens/J",
             BETTER_HIGHER)
        _put(out, "usd_per_million_tokens" + at, p.get("usd_per_million_tokens"), "$",
             WORSE_HIGHER)
        if p.get("bottleneck") is not None:
            out["bottleneck" + at] = Metric(str(p["bottleneck"]), "text", NEUTRAL)
    sens = doc.get("sensitivity")
    for r in (sens.get("resources") or []) if isinstance(sens, dict) else []:
        if isinstance(r, dict) and r.get("resource"):
            _put(out, f"elasticity.{r['resource']}", r.get("elasticity"), "elasticity",
                 NEUTRAL, absolute=True)


def _put_latency(out: dict[str, Metric], name: str, d: dict[str, Any], key: str,
                 *keys: str) -> None:
    """A latency ``d[key][keys...]`` (seconds); where ``d`` holds ``key`` as null, the figure
    does not apply (a TPOT of one output token: no decode step runs)."""
    if key in d and d[key] is None:
        out[name] = Metric(None, "s", WORSE_HIGHER, na="one output token (no decode step)")
    else:
        _put(out, name, _get(d, key, *keys), "s", WORSE_HIGHER)


def _inference_metrics(inf: dict[str, Any], out: dict[str, Metric], at: str = "") -> None:
    """The figures of one inference section (or an inference sweep's point, ``at`` naming
    it)."""
    _put(out, "fits" + at, inf.get("fits"), "bool", BETTER_HIGHER, absolute=True)
    _put(out, "ttft" + at, inf.get("ttft_s"), "s", WORSE_HIGHER)
    _put_latency(out, "tpot" + at, inf, "tpot_s")
    _put(out, "e2e" + at, inf.get("e2e_s"), "s", WORSE_HIGHER)
    _put(out, "tokens_per_s" + at, inf.get("output_tokens_per_s"), "tokens/s", BETTER_HIGHER)
    _put(out, "tokens_per_s_per_gpu" + at, inf.get("output_tokens_per_s_per_gpu"), "tokens/s",
         BETTER_HIGHER)
    _put(out, "memory.peak" + at, inf.get("peak_per_gpu_bytes",
                                          _get(inf, "memory_bytes", "peak_per_gpu")),
         "B", WORSE_HIGHER)
    _put(out, "max_batch" + at, inf.get("max_batch"), "count", BETTER_HIGHER)


def _continuous_metrics(c: Any, out: dict[str, Metric]) -> None:
    """Continuous batching at one rate: latency percentiles, throughput, the queue's verdict
    and the replica's capacity."""
    if not isinstance(c, dict):
        return
    for key in ("ttft", "tpot", "e2e"):
        for p in ("p50", "p90", "p99"):
            _put_latency(out, f"continuous.{key}.{p}", c, key, f"{p}_s")
    _put(out, "continuous.tokens_per_s", c.get("output_tokens_per_s"), "tokens/s",
         BETTER_HIGHER)
    _put(out, "continuous.stable", c.get("stable"), "bool", BETTER_HIGHER, absolute=True)
    _put(out, "continuous.capacity", c.get("capacity_per_s"), "requests/s", BETTER_HIGHER)


def _search_metrics(search: Any, out: dict[str, Metric]) -> None:
    """A serving search: its best configuration within the SLOs and how many meet them."""
    if not isinstance(search, dict):
        return
    ranked = [e for e in search.get("ranked") or [] if isinstance(e, dict)]
    meeting = [e for e in ranked if e.get("meets_slo") is True]
    _put(out, "plans_meeting_slo", len(meeting), "count", BETTER_HIGHER)
    if not meeting:
        return
    best = meeting[0]
    out["best.plan"] = Metric(str(best.get("plan")), "text", NEUTRAL)
    _put(out, "best.tokens_per_s_per_gpu", best.get("output_tokens_per_s_per_gpu"), "tokens/s",
         BETTER_HIGHER)
    _put(out, "best.ttft", best.get("ttft_s"), "s", WORSE_HIGHER)
    _put_latency(out, "best.tpot", best, "tpot_s")
    _put(out, "best.rate", best.get("rate_per_s"), "requests/s", BETTER_HIGHER)
    _put(out, "best.gpus", best.get("gpus_used"), "count", WORSE_HIGHER)  # a target rate's


def _infer_sweep_metrics(doc: dict[str, Any], out: dict[str, Metric]) -> None:
    keys = sweep_keys(doc)
    points = [p for p in doc.get("points") or [] if isinstance(p, dict)]
    fitting = [p for p in points if p.get("fits") is True]
    _put(out, "points_fitting", len(fitting), "count", BETTER_HIGHER)
    rates = [v for v in (_n(p.get("output_tokens_per_s_per_gpu")) for p in fitting)
             if v is not None]
    if rates:
        _put(out, "best.tokens_per_s_per_gpu", max(rates), "tokens/s", BETTER_HIGHER)
    for p in points:
        _inference_metrics(p, out, "@" + point_label(p.get("point"), keys, "@"))


def metrics_of(doc: dict[str, Any]) -> dict[str, Metric]:
    """Every comparable figure of a checked document, by metric name."""
    kind = doc["kind"]
    out: dict[str, Metric] = {}
    if kind == "analysis":
        t = doc.get("totals") or {}
        _put(out, "params", t.get("params"), "count", WORSE_HIGHER)
        _put(out, "trainable_params", t.get("trainable_params"), "count", WORSE_HIGHER)
        for phase in ("forward", "backward", "recompute", "optimizer", "total"):
            _put(out, f"flops.{phase}", _get(t, "flops", phase), "FLOP", WORSE_HIGHER)
        moved = [_n(_get(t, "bytes", k)) for k in ("read", "written")]
        if all(v is not None for v in moved):
            _put(out, "bytes.moved", sum(moved), "B", WORSE_HIGHER)
        mem = t.get("memory_bytes") or {}
        parts = ("weights", "buffers", "gradients", "optimizer_states", "activations_saved")
        for part in parts:
            _put(out, f"memory.{part}", mem.get(part), "B", WORSE_HIGHER)
        if any(_n(mem.get(p)) is not None for p in parts):
            _put(out, "memory.static", sum(_n(mem.get(p)) or 0.0 for p in parts), "B",
                 WORSE_HIGHER)
        est = doc.get("estimate") if isinstance(doc.get("estimate"), dict) else None
        if est:
            step = _n(est.get("step_time_s"))
            _put(out, "step_time", step, "s", WORSE_HIGHER)
            for phase, s in (est.get("phase_seconds") or {}).items():
                _put(out, f"time.{phase}", s, "s", WORSE_HIGHER)
            _put(out, "mfu", est.get("mfu"), "ratio", BETTER_HIGHER)
            _put(out, "hfu", est.get("hfu"), "ratio", NEUTRAL)
            w = doc.get("workload") or {}
            b, s = _n(w.get("batch_size")), _n(w.get("seq_len"))
            if step and b and s:
                _put(out, "tokens_per_s", b * s / step, "tokens/s", BETTER_HIGHER)
            _put(out, "memory.peak", _get(est, "memory_bytes", "peak"), "B", WORSE_HIGHER)
            _put(out, "fits", est.get("fits"), "bool", BETTER_HIGHER, absolute=True)
        for m in doc.get("modules") or []:
            if not isinstance(m, dict) or not m.get("path"):
                continue
            p = m["path"]
            _put(out, f"module:{p}:flops", _get(m, "flops", "total"), "FLOP", WORSE_HIGHER)
            _put(out, f"module:{p}:params", m.get("params"), "count", WORSE_HIGHER)
            _put(out, f"module:{p}:activations_saved", m.get("activations_saved"), "B",
                 WORSE_HIGHER)
        for m in (est or {}).get("modules") or []:
            if isinstance(m, dict) and m.get("path"):
                _put(out, f"module:{m['path']}:time", m.get("seconds"), "s", WORSE_HIGHER)
    elif kind in ("plan", "estimate"):
        est = chosen_estimate(doc)
        if kind == "plan":
            plans = doc.get("plans") or []
            out["feasible"] = Metric(1.0 if plans else 0.0, "bool", BETTER_HIGHER, True)
            out["plan"] = Metric(str(plans[0].get("plan")) if plans else None, "text", NEUTRAL)
            _put(out, "gpus", _get(est, "plan", "gpus"), "count", NEUTRAL)
            _put(out, "plans_fitting", _get(doc, "search", "plans_fitting"), "count", NEUTRAL)
        else:
            out["plan"] = Metric(str(doc.get("plan")), "text", NEUTRAL)
        if est:
            _plan_estimate_metrics(est, out)
    elif kind == "sweep" and doc.get("mode") == "inference":
        _infer_sweep_metrics(doc, out)
    elif kind == "sweep":
        _sweep_metrics(doc, out)
    elif kind == "inference":
        inf = doc.get("inference") or {}
        _inference_metrics(inf, out)
        _continuous_metrics(inf.get("continuous"), out)
        _search_metrics(doc.get("search"), out)
        for part in ("weights", "kv_cache", "activations"):
            _put(out, f"memory.{part}", _get(inf, "memory_bytes", part), "B", WORSE_HIGHER)
        for phase in ("prefill", "decode"):
            _put(out, f"time.{phase}", _get(inf, "phases", phase, "seconds"), "s",
                 WORSE_HIGHER)
    else:  # validation
        for c in _get(doc, "validation", "components") or []:
            if not isinstance(c, dict) or not c.get("name"):
                continue
            name, unit = str(c["name"]), "s" if c.get("unit") == "s" else "B"
            err = c.get("error")
            _put(out, f"error.{name}", abs(err) if _n(err) is not None else err, "ratio",
                 WORSE_HIGHER, absolute=True)
            _put(out, f"predicted.{name}", c.get("predicted"), unit, WORSE_HIGHER)
            _put(out, f"measured.{name}", c.get("measured"), unit, WORSE_HIGHER)
    return out
