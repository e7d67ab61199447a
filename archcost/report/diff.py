"""Two result documents of the same kind compared metric by metric, with direction: more step
time, memory, FLOPs or bytes is worse; more MFU or tokens/s is better.

A watched metric regresses when it moves the wrong way by more than the threshold, relative to
the base (``fail_above``, default 2%). Errors of a validation (``error.*``) are compared as
absolute errors and their threshold is in points (2% = two percentage points), since a relative
change of a small error means little.

``diff_documents`` refuses (DocumentError, exit 2) documents of different kinds or schema
versions, and of different models (name or builder configuration) unless ``force``.

Sweeps (``archcost sweep -o``) are compared point by point: a point is named by its axis
values joined with ``@`` (``mem_bw=2x@gpus=16``; ``base`` when nothing was varied), its
metrics are ``step_time@POINT``, ``tokens_per_s@``, ``mfu@``, ``memory.peak@`` (per GPU),
``tokens_per_joule@`` (more is better), ``usd_per_million_tokens@``, ``fits@`` (regresses when
it turns false) and the texts ``plan@`` and ``bottleneck@``; over the grid, ``best.step_time``
(the fastest point's), ``best.tokens_per_s``, ``best.tokens_per_joule`` (the highest),
``best.usd_per_million_tokens`` (the lowest), ``best.point`` (text), ``points_fitting``, and
the sensitivity's ``elasticity.<resource>`` (no better direction). Watched by default:
``best.step_time``, every ``step_time@*`` and ``fits@*``, ``best.tokens_per_joule`` and
``best.usd_per_million_tokens`` (when priced): each point's prediction, whether it still fits,
and the best energy and cost. Memory per point is not watched by default, since the plan is
searched again at every point and trades memory for time; watch it with ``--metrics
'memory.peak@*'``. Sweeps over different grids or base settings are compared on the points
both have, with a note.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from archcost.errors import DocumentError
from archcost.report import fmt
from archcost.report.document import chosen_estimate, model_title, point_label, sweep_keys
from archcost.report.markdown import escape

__all__ = ["Metric", "Row", "DiffResult", "DEFAULT_THRESHOLD", "DEFAULT_METRICS", "metrics_of",
           "parse_threshold", "diff_documents", "to_markdown", "summary", "format_value",
           "format_delta", "format_change", "other_changes", "STATUS_TEXT", "STATUS_LEGEND"]

DEFAULT_THRESHOLD = 0.02
WORSE_HIGHER, BETTER_HIGHER, NEUTRAL = 1, -1, 0
_EPS = 1e-12

# watched when --metrics is not given (those present in both documents)
DEFAULT_METRICS: dict[str, tuple[str, ...]] = {
    "analysis": ("params", "flops.total", "memory.peak", "memory.static", "step_time", "mfu",
                 "tokens_per_s", "fits"),
    "plan": ("feasible", "step_time", "memory.peak", "mfu", "tokens_per_s"),
    "estimate": ("fits", "step_time", "memory.peak", "mfu", "tokens_per_s"),
    "validation": ("error.*",),
    "sweep": ("best.step_time", "step_time@*", "fits@*", "best.tokens_per_joule",
              "best.usd_per_million_tokens"),
}


@dataclass(frozen=True)
class Metric:
    value: float | str | None
    unit: str  # s, B, FLOP, count, ratio, tokens/s, J, $, text
    direction: int  # WORSE_HIGHER, BETTER_HIGHER or NEUTRAL
    absolute: bool = False  # threshold on the absolute change (ratios such as errors)


@dataclass
class Row:
    metric: str
    base: float | str | None
    head: float | str | None
    unit: str
    direction: int
    delta: float | None
    relative: float | None  # (head - base) / |base|; inf when base is 0
    watched: bool
    regressed: bool
    status: str  # regressed, worse, improved, within, changed, same, new, gone
    absolute: bool = False  # the threshold applies to delta (points), not to relative


@dataclass
class DiffResult:
    kind: str
    base_model: str
    head_model: str
    threshold: float
    watched: list[str]
    rows: list[Row]
    notes: list[str] = field(default_factory=list)
    forced: bool = False

    @property
    def regressions(self) -> list[Row]:
        return [r for r in self.rows if r.regressed]

    @property
    def exit_code(self) -> int:
        return 1 if self.regressions else 0

    def to_dict(self) -> dict[str, Any]:
        rows = []
        for r in self.rows:
            d = asdict(r)
            if isinstance(d["relative"], float) and not math.isfinite(d["relative"]):
                d["relative"] = None  # JSON has no infinity: base was 0
            rows.append(d)
        return {"kind": "diff", "of": self.kind, "base_model": self.base_model,
                "head_model": self.head_model, "fail_above": self.threshold,
                "watched": self.watched, "regressions": [r.metric for r in self.regressions],
                "exit_code": self.exit_code, "forced": self.forced, "notes": self.notes,
                "rows": rows}


# ---------------------------------------------------------------- metrics of a document

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


def _put(out: dict[str, Metric], name: str, value, unit: str, direction: int,
         absolute: bool = False) -> None:
    v = float(value) if isinstance(value, bool) else _n(value)
    if v is not None:
        out[name] = Metric(v, unit, direction, absolute)


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
    fitting = [p for p in points if p.get("fits") and _n(p.get("step_time_s"))]
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
        fits = bool(p.get("fits"))
        out["fits" + at] = Metric(1.0 if fits else 0.0, "bool", BETTER_HIGHER, True)
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
    elif kind == "sweep":
        _sweep_metrics(doc, out)
    else:  # validation
        for c in _get(doc, "validation", "components") or []:
            if not isinstance(c, dict) or not c.get("name"):
                continue
            name, unit = str(c["name"]), "s" if c.get("unit") == "s" else "B"
            err = _n(c.get("error"))
            if err is not None:
                out[f"error.{name}"] = Metric(abs(err), "ratio", WORSE_HIGHER, absolute=True)
            _put(out, f"predicted.{name}", c.get("predicted"), unit, WORSE_HIGHER)
            _put(out, f"measured.{name}", c.get("measured"), unit, WORSE_HIGHER)
    return out


# ---------------------------------------------------------------- comparison

def parse_threshold(value: str | float) -> float:
    """``"2%"`` or ``0.02`` -> 0.02 (a share of the base; points for absolute metrics)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
        text = str(value)
    else:
        text = str(value).strip()
        try:
            number = float(text[:-1]) / 100 if text.endswith("%") else float(text)
        except ValueError:
            raise DocumentError(f"--fail-above {value!r}: write a percentage such as 2% "
                                "(or a fraction such as 0.02)") from None
        if not text.endswith("%") and number >= 1:
            raise DocumentError(f"--fail-above {value!r}: ambiguous; write {text}% for a "
                                f"percentage or {number / 100:g} for a fraction")
    if not math.isfinite(number) or number < 0:
        raise DocumentError(f"--fail-above {text}: give a threshold >= 0, e.g. 2%")
    return number


def _model_key(doc: dict[str, Any]) -> tuple[str, Any]:
    model = doc.get("model") or {}
    return str(model.get("name")), model.get("config") or {}


def _check_pair(base: dict[str, Any], head: dict[str, Any], force: bool) -> list[str]:
    notes = []
    if base["kind"] != head["kind"]:
        raise DocumentError(f"BASE is of kind {base['kind']} and HEAD of kind {head['kind']}: "
                            "compare documents of the same kind")
    if base["schema_version"] != head["schema_version"]:
        raise DocumentError(f"BASE has schema_version {base['schema_version']} and HEAD "
                            f"{head['schema_version']}: regenerate the older one with this "
                            "archcost")
    if _model_key(base) != _model_key(head):
        what = f"BASE is {model_title(base)}, HEAD is {model_title(head)}"
        if not force:
            raise DocumentError(f"different models: {what}; pass --force to compare anyway")
        notes.append(f"different models compared (--force): {what}")
    return notes


def _watched(requested: Iterable[str] | None, kind: str, base: dict[str, Metric],
             head: dict[str, Metric], notes: list[str]) -> list[str]:
    names = list(dict.fromkeys([*base, *head]))
    if requested is None:
        out = []
        for pattern in DEFAULT_METRICS[kind]:
            for name in names:
                if fnmatch.fnmatchcase(name, pattern) and name not in out:
                    if name in base and name in head:
                        out.append(name)
                    else:
                        notes.append(f"{name} is only in {'BASE' if name in base else 'HEAD'}: "
                                     "not compared")
        # memory.static stands in for memory.peak only when there is no peak
        if "memory.peak" in out and "memory.static" in out:
            out.remove("memory.static")
        return out
    out = []
    for pattern in requested:
        pattern = pattern.strip()
        if not pattern:
            continue
        glob = any(ch in pattern for ch in "*?[")
        matches = [n for n in names if fnmatch.fnmatchcase(n, pattern)] if glob \
            else ([pattern] if pattern in names else [])
        if glob:  # a pattern watches what both documents have
            for name in [n for n in matches if n not in base or n not in head]:
                notes.append(f"{name} is only in {'BASE' if name in base else 'HEAD'}: "
                             "not compared")
                matches.remove(name)
        if not matches:
            sample = ", ".join(dict.fromkeys(n.split("@")[0] + "@POINT" if "@" in n else n
                                             for n in names if not n.startswith("module:")))
            raise DocumentError(f"--metrics {pattern}: no such metric in these {kind} "
                                f"documents; available: {sample} (and module:PATH:flops|params|"
                                "activations_saved|time for analyses; POINT: a sweep's point, "
                                "e.g. mem_bw=2x@gpus=16, or a glob such as 'step_time@*')")
        for name in matches:
            if name not in base or name not in head:
                raise DocumentError(f"--metrics {name}: only in "
                                    f"{'BASE' if name in base else 'HEAD'}; regenerate the "
                                    "other document with the same options")
            if name not in out:
                out.append(name)
    if not out:
        raise DocumentError("--metrics: name at least one metric, e.g. step_time,memory.peak")
    return out


def _row(name: str, b: Metric | None, h: Metric | None, watched: bool, threshold: float) -> Row:
    ref = b or h
    assert ref is not None
    bv = b.value if b else None
    hv = h.value if h else None
    row = Row(name, bv, hv, ref.unit, ref.direction, None, None, watched, False, "same",
              ref.absolute)
    if bv is None and hv is None:
        return row
    if b is None or bv is None:
        row.status = "new"
        return row
    if h is None or hv is None:
        row.status = "gone"
        return row
    if not isinstance(bv, float) or not isinstance(hv, float):
        row.status = "same" if bv == hv else "changed"
        return row
    row.delta = hv - bv
    if bv != 0:
        row.relative = row.delta / abs(bv)
    else:
        row.relative = 0.0 if hv == 0 else math.copysign(math.inf, row.delta)
    if row.delta == 0:
        return row
    if ref.direction == NEUTRAL:
        row.status = "changed"
        return row
    size = abs(row.delta) if ref.absolute else abs(row.relative)
    past = size > threshold + _EPS
    worse = ref.direction * row.delta > 0
    if past and worse:
        row.regressed = watched
        row.status = "regressed" if watched else "worse"
    elif past:
        row.status = "improved"
    else:
        row.status = "within"
    return row


def _sweep_notes(base: dict[str, Any], head: dict[str, Any]) -> list[str]:
    def grid(doc):
        return "; ".join(f"{a.get('key')}={','.join(map(str, a.get('values') or []))}"
                         for a in doc.get("axes") or [] if isinstance(a, dict)) or "nothing"

    def settings(doc):
        b = doc.get("base") if isinstance(doc.get("base"), dict) else {}
        return ", ".join(f"{k}={v}" for k, v in b.items())

    notes = []
    if grid(base) != grid(head):
        notes.append(f"different grids: BASE varies {grid(base)}, HEAD varies {grid(head)}; "
                     "points are compared where both have them")
    if settings(base) != settings(head):
        notes.append(f"different base settings: BASE {settings(base)}, HEAD {settings(head)}")
    return notes


def diff_documents(base: dict[str, Any], head: dict[str, Any], *,
                   fail_above: float | str = DEFAULT_THRESHOLD,
                   metrics: Iterable[str] | None = None, force: bool = False) -> DiffResult:
    """Compare two checked documents (``document.check_document``); see the module doc."""
    threshold = parse_threshold(fail_above)
    notes = _check_pair(base, head, force)
    if base["kind"] == "sweep":
        notes += _sweep_notes(base, head)
    bm, hm = metrics_of(base), metrics_of(head)
    watched = _watched(metrics, base["kind"], bm, hm, notes)
    names = list(dict.fromkeys([*watched, *bm, *hm]))
    rows = [_row(n, bm.get(n), hm.get(n), n in watched, threshold) for n in names]
    return DiffResult(kind=base["kind"], base_model=model_title(base),
                      head_model=model_title(head), threshold=threshold, watched=watched,
                      rows=rows, notes=notes, forced=force)


# ---------------------------------------------------------------- rendering

def format_value(value, unit: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return {"s": fmt.seconds, "B": fmt.nbytes, "FLOP": lambda v: fmt.si(v, "FLOP"),
            "bool": lambda v: "yes" if v else "no",
            "count": fmt.count, "ratio": lambda v: fmt.percent(v, 2),
            "tokens/s": lambda v: f"{fmt.si(v)} tok/s", "J": lambda v: fmt.si(v, "J", 4),
            "tokens/J": lambda v: f"{fmt.si(v, digits=4)} tok/J", "elasticity": lambda v: f"{v:+.3f}",
            "$": lambda v: fmt.usd(v, 4)}.get(unit, fmt.number)(value)


def format_delta(row: Row) -> str:
    if row.delta is None:
        return "-"
    if row.unit == "ratio":
        return f"{100 * row.delta:+.2f} pt"
    if row.unit == "bool":
        return "now yes" if row.delta > 0 else "now no"
    text = format_value(abs(row.delta), row.unit)
    return ("+" if row.delta > 0 else "-") + text if row.delta else "0"


def format_change(row: Row) -> str:
    return fmt.signed_percent(row.relative) if row.relative is not None else "-"


def summary(result: DiffResult) -> str:
    """One line: what regressed, or that nothing did."""
    pct = f"{100 * result.threshold:g}%"
    bad = result.regressions
    if bad:
        items = ", ".join(f"{r.metric} ({format_delta(r) if r.absolute else format_change(r)})"
                          for r in bad)
        return (f"{len(bad)} watched metric{'s' if len(bad) > 1 else ''} regressed past {pct}: "
                f"{items}")
    return (f"no watched metric regressed past {pct} "
            f"(watched: {', '.join(result.watched) or 'none'})")


STATUS_TEXT = {"regressed": "regressed", "worse": "worse", "improved": "improved",
               "within": "within", "changed": "changed", "same": "", "new": "new",
               "gone": "gone"}
STATUS_LEGEND = ("regressed: a watched metric worse past the threshold; worse: an unwatched "
                 "one; within: changed by less than the threshold; changed: a metric without "
                 "a better direction; new/gone: in HEAD/BASE only")
_ORDER = {"regressed": 0, "worse": 1, "improved": 2, "within": 3, "changed": 4, "new": 5,
          "gone": 6, "same": 7}


def other_changes(result: DiffResult) -> list[Row]:
    """Unwatched rows that changed: worse first, whole-document metrics before modules,
    the largest relative moves first."""
    def key(r: Row):
        size = abs(r.relative) if r.relative is not None else 0.0
        return (_ORDER[r.status], r.metric.startswith("module:"), -size)

    return sorted((r for r in result.rows if not r.watched and r.status != "same"), key=key)


def to_markdown(result: DiffResult, max_rows: int = 60) -> str:
    """Title, the verdict, the watched metrics, then what else changed."""
    def table(rows: list[Row]) -> list[str]:
        out = ["| metric | base | head | delta | change | status |",
               "| :--- | ---: | ---: | ---: | ---: | :--- |"]
        for r in rows:
            cells = [r.metric, format_value(r.base, r.unit), format_value(r.head, r.unit),
                     format_delta(r), format_change(r), STATUS_TEXT[r.status]]
            out.append("| " + " | ".join(escape(c) for c in cells) + " |")
        return out

    lines = [f"# archcost diff: {escape(result.kind)} {escape(result.head_model)}", "",
             f"**{escape(summary(result))}**", ""]
    if result.base_model != result.head_model:
        lines += [f"- base model: {escape(result.base_model)}",
                  f"- head model: {escape(result.head_model)}", ""]
    for note in result.notes:
        lines.append(f"- {escape(note)}")
    if result.notes:
        lines.append("")
    watched = [r for r in result.rows if r.watched]
    if watched:
        lines += ["## Watched metrics", "", *table(watched), ""]
    others = other_changes(result)
    if others:
        shown = others[:max_rows]
        lines += ["## Other changes", "", *table(shown), ""]
        if len(others) > len(shown):
            lines += [f"_{len(others) - len(shown)} more changed metrics not shown; "
                      "--json lists every one_", ""]
    unchanged = sum(1 for r in result.rows if not r.watched and r.status == "same")
    if unchanged:
        lines += [f"_{unchanged} other metrics unchanged_", ""]
    lines += [f"_{escape(STATUS_LEGEND)}_", ""]
    return "\n".join(lines).rstrip() + "\n"
