"""Two result documents of the same kind compared metric by metric, with direction: more step
time, memory, FLOPs or bytes is worse; more MFU or tokens/s is better.

A watched metric regresses when it moves the wrong way by more than the threshold, relative to
the base (``fail_above``, default 2%). Errors of a validation (``error.*``) are compared as
absolute errors and their threshold is in points (2% = two percentage points), since a relative
change of a small error means little.

The gate never passes on what it could not compare: a watched metric BASE has and HEAD lacks
is ``missing``, one whose value is there but no finite number is ``invalid``, and both fail like
a regression (exit 1); a yes/no metric (``fits``, ``feasible``) regresses when it turns no,
whatever the threshold. A metric only HEAD has is noted and not compared.

``diff_documents`` refuses (DocumentError, exit 2) documents of different kinds, modes or
schema versions (a training against an inference sweep; inference documents of static
batching, continuous batching at a rate and a serving search watch different metrics), of
different models (name or builder configuration) unless ``force``, and a BASE without any of
the metrics watched by default.

Sweeps (``archcost sweep -o``) are compared point by point (``metrics`` names the metrics).
Watched by default: ``best.step_time``, every ``step_time@*`` and ``fits@*``,
``best.tokens_per_joule`` and ``best.usd_per_million_tokens`` (when priced): each point's
prediction, whether it still fits, and the best energy and cost. Memory per point is not
watched by default, since the plan is searched again at every point and trades memory for
time; watch it with ``--metrics 'memory.peak@*'``. Inference sweeps (``sweep --infer``) watch
``ttft@*``, ``tpot@*``, ``tokens_per_s_per_gpu@*``, ``fits@*`` and
``best.tokens_per_s_per_gpu``. Sweeps over different grids or base settings are compared on
the points both have, with a note (a BASE point outside HEAD's grid is not ``missing``).

Inference documents (``archcost infer -o``) watch ``fits``, ``ttft``, ``tpot``,
``tokens_per_s_per_gpu`` and ``memory.peak`` (per GPU); at a rate (``--rate``) also
``continuous.ttft.p90``, ``continuous.tpot.p90``, ``continuous.tokens_per_s`` and
``continuous.stable``; a serving search (``--gpus``) ``plans_meeting_slo`` and
``best.tokens_per_s_per_gpu``. Documents priced at other settings (batch, lengths, precision,
rate, hardware, SLOs) are compared with a note naming them.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from archcost.errors import DocumentError
from archcost.report import fmt
from archcost.report.document import model_title
from archcost.report.markdown import escape
from archcost.report.metrics import NEUTRAL, Metric, metrics_of

__all__ = ["Metric", "Row", "DiffResult", "DEFAULT_THRESHOLD", "DEFAULT_METRICS", "metrics_of",
           "parse_threshold", "diff_documents", "to_markdown", "summary", "format_value",
           "format_delta", "format_change", "other_changes", "STATUS_TEXT", "STATUS_LEGEND"]

DEFAULT_THRESHOLD = 0.02
_EPS = 1e-12

# watched when --metrics is not given (those present in both documents)
DEFAULT_METRICS: dict[str, tuple[str, ...]] = {
    "analysis": ("params", "flops.total", "memory.peak", "memory.static", "step_time", "mfu",
                 "tokens_per_s", "fits"),
    "plan": ("feasible", "step_time", "memory.peak", "mfu", "tokens_per_s"),
    "estimate": ("fits", "step_time", "memory.peak", "mfu", "tokens_per_s"),
    "validation": ("error.*",),
    "sweep": ("best.step_time", "step_time@*", "fits@*", "best.tokens_per_joule",
              "best.usd_per_million_tokens", "best.tokens_per_s_per_gpu", "ttft@*", "tpot@*",
              "tokens_per_s_per_gpu@*"),
    "inference": ("fits", "ttft", "tpot", "tokens_per_s_per_gpu", "memory.peak",
                  "continuous.ttft.p90", "continuous.tpot.p90", "continuous.tokens_per_s",
                  "continuous.stable", "plans_meeting_slo", "best.tokens_per_s_per_gpu"),
}


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
    status: str  # regressed, missing, invalid, worse, improved, within, changed, same, new, gone,
    # n/a (the figure does not apply to one side, e.g. the TPOT of one output token)
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


def _a(words: str) -> str:
    """``words`` with its indefinite article: an inference, a training."""
    return ("an " if words[:1] in "aeiou" else "a ") + words


def _inference_mode(doc: dict[str, Any]) -> str:
    """What an inference document prices, which decides the metrics it has: static batching,
    continuous batching at a rate (--rate), or a serving search (--gpus, static or
    --continuous)."""
    batching = (doc.get("workload") or {}).get("batching")
    if "search" in doc:
        return ("a serving search under continuous batching (--gpus --continuous)"
                if batching == "continuous" else "a serving search (--gpus)")
    if (doc.get("inference") or {}).get("continuous") is not None:
        return "continuous batching (--rate)"
    return "static batching"


def _check_pair(base: dict[str, Any], head: dict[str, Any], force: bool) -> list[str]:
    notes = []
    if base["kind"] != head["kind"]:
        raise DocumentError(f"BASE is of kind {base['kind']} and HEAD of kind {head['kind']}: "
                            "compare documents of the same kind")
    modes = [d.get("mode", "training") for d in (base, head)]
    if modes[0] != modes[1]:
        raise DocumentError(f"BASE is {_a(modes[0])} sweep and HEAD {_a(modes[1])} sweep: "
                            "compare sweeps of the same mode (sweep --infer against sweep "
                            "--infer)")
    if base["kind"] == "inference":
        modes = [_inference_mode(d) for d in (base, head)]
        if modes[0] != modes[1]:
            raise DocumentError(f"BASE prices {modes[0]} and HEAD {modes[1]}: compare "
                                "inference documents of the same mode")
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
             head: dict[str, Metric], notes: list[str], outside: Callable[[str], bool]) -> list[str]:
    """The watched metric names. One BASE has and HEAD lacks is watched (it fails the gate as
    ``missing``) unless ``outside`` says it belongs to a sweep point outside HEAD's grid; one
    only HEAD has is noted and left out (nothing to compare it with)."""
    names = list(dict.fromkeys([*base, *head]))

    def keep(name: str, out: list[str]) -> None:
        if name in out:
            return
        na = [f"{side} has {m.na}" for side, m in (("BASE", base.get(name)),
                                                   ("HEAD", head.get(name))) if m and m.na]
        if len(na) == 1:
            notes.append(f"{name}: {na[0]}; not compared")
        elif na:  # applies to neither: the same
            pass
        elif name not in head and outside(name):
            notes.append(f"{name}: its point is not in HEAD's grid; not compared")
        elif name not in base:
            notes.append(f"{name} is only in HEAD: not compared")
        else:
            out.append(name)

    out: list[str] = []
    if requested is None:
        for pattern in DEFAULT_METRICS[kind]:
            for name in names:
                if fnmatch.fnmatchcase(name, pattern):
                    keep(name, out)
        # memory.static stands in for memory.peak only when there is no peak
        if "memory.peak" in out and "memory.static" in out:
            out.remove("memory.static")
        if not out:
            raise DocumentError(f"BASE has none of the metrics a {kind} diff watches by "
                                f"default ({', '.join(DEFAULT_METRICS[kind])}); name them "
                                "with --metrics")
        return out
    for pattern in requested:
        pattern = pattern.strip()
        if not pattern:
            continue
        glob = any(ch in pattern for ch in "*?[")
        matches = [n for n in names if fnmatch.fnmatchcase(n, pattern)] if glob \
            else ([pattern] if pattern in names else [])
        if not matches:
            sample = ", ".join(dict.fromkeys(n.split("@")[0] + "@POINT" if "@" in n else n
                                             for n in names if not n.startswith("module:")))
            raise DocumentError(f"--metrics {pattern}: no such metric in these {kind} "
                                f"documents; available: {sample} (and module:PATH:flops|params|"
                                "activations_saved|time for analyses; POINT: a sweep's point, "
                                "e.g. mem_bw=2x@gpus=16, or a glob such as 'step_time@*')")
        if not glob and pattern not in base:
            raise DocumentError(f"--metrics {pattern}: only in HEAD; regenerate BASE with the "
                                "options that give it")
        for name in matches:  # a pattern watches what BASE has (HEAD-only names are noted)
            keep(name, out)
    if not out:
        raise DocumentError("--metrics: name at least one metric BASE has, e.g. "
                            "step_time,memory.peak")
    return out


def _row(name: str, b: Metric | None, h: Metric | None, watched: bool, threshold: float) -> Row:
    ref = b or h
    assert ref is not None
    bv = b.value if b else None
    hv = h.value if h else None
    row = Row(name, bv, hv, ref.unit, ref.direction, None, None, watched, False, "same",
              ref.absolute)
    if (b and b.invalid) or (h and h.invalid):  # no number where one belongs
        row.base = b.invalid or bv if b else None
        row.head = h.invalid or hv if h else None
        row.status, row.regressed = "invalid", watched
        return row
    if (b and b.na) or (h and h.na):  # does not apply on one side: nothing to compare
        row.status = "same" if b and b.na and h and h.na else "n/a"
        return row
    if bv is None and hv is None:
        return row
    if b is None or bv is None:
        row.status = "new"
        return row
    if h is None or hv is None:
        row.status, row.regressed = ("missing", True) if watched else ("gone", False)
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
    past = ref.unit == "bool" or size > threshold + _EPS  # a yes turned no is no matter of size
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


_HARDWARE_SETTINGS = ("gpu", "cluster", "tp", "pp", "gpus", "usable_memory")


def _inference_settings(doc: dict[str, Any]) -> dict[str, str]:
    """What an inference document was priced at: its workload (batch, lengths, precision,
    runtime, batching), the request rate, the hardware and parallelism, a search's SLOs."""
    out = {}
    for k, v in (doc.get("workload") or {}).items():
        out[k] = ",".join(map(str, v)) if isinstance(v, list) else str(v)
    cont = (doc.get("inference") or {}).get("continuous")
    if isinstance(cont, dict) and cont.get("rate_per_s") is not None:
        out["rate"] = f"{cont['rate_per_s']:g}/s"
    hw = doc.get("hardware") or {}
    out.update({k: str(hw[k]) for k in _HARDWARE_SETTINGS if k in hw})
    search = doc.get("search") if isinstance(doc.get("search"), dict) else {}
    for key in ("ttft_slo_s", "tpot_slo_s"):
        if search.get(key) is not None:
            out[key[:-2]] = fmt.seconds(search[key])
    return out


def _inference_notes(base: dict[str, Any], head: dict[str, Any]) -> list[str]:
    b, h = _inference_settings(base), _inference_settings(head)
    keys = [k for k in dict.fromkeys([*b, *h]) if b.get(k) != h.get(k)]
    if not keys:
        return []

    def side(d: dict[str, str]) -> str:
        return ", ".join(f"{k}={d.get(k, '-')}" for k in keys)

    return [f"different settings: BASE {side(b)}; HEAD {side(h)}"]


def _outside_grid(base: dict[str, Any], head: dict[str, Any],
                  hm: dict[str, Metric]) -> Callable[[str], bool]:
    """Whether a metric of BASE belongs to a sweep point HEAD's grid does not have (sweeps over
    different grids are compared on the points both have); never for other kinds."""
    if base["kind"] != "sweep" or base.get("axes") == head.get("axes"):
        return lambda name: False
    points = {n.split("@", 1)[1] for n in hm if n.startswith("fits@")}
    return lambda name: "@" in name and name.split("@", 1)[1] not in points


def diff_documents(base: dict[str, Any], head: dict[str, Any], *,
                   fail_above: float | str = DEFAULT_THRESHOLD,
                   metrics: Iterable[str] | None = None, force: bool = False) -> DiffResult:
    """Compare two checked documents (``document.check_document``); see the module doc."""
    threshold = parse_threshold(fail_above)
    notes = _check_pair(base, head, force)
    if base["kind"] == "sweep":
        notes += _sweep_notes(base, head)
    elif base["kind"] == "inference":
        notes += _inference_notes(base, head)
    bm, hm = metrics_of(base), metrics_of(head)
    outside = _outside_grid(base, head, hm)
    watched = _watched(metrics, base["kind"], bm, hm, notes, outside)
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
            "tokens/s": lambda v: f"{fmt.si(v)} tok/s",
            "requests/s": lambda v: f"{fmt.si(v)} req/s", "J": lambda v: fmt.si(v, "J", 4),
            "tokens/J": lambda v: f"{fmt.si(v, digits=4)} tok/J", "elasticity": lambda v: f"{v:+.3f}",
            "$": lambda v: fmt.usd(v, 4)}.get(unit, fmt.number)(value)


def format_delta(row: Row) -> str:
    if row.delta is None:
        return "-"
    if row.unit == "ratio":
        return f"{100 * row.delta:+.2f} pt"
    if row.unit == "bool":
        return "-" if row.delta == 0 else ("now yes" if row.delta > 0 else "now no")
    text = format_value(abs(row.delta), row.unit)
    return ("+" if row.delta > 0 else "-") + text if row.delta else "0"


def format_change(row: Row) -> str:
    if row.unit == "bool":  # a yes/no has no relative change
        return "-"
    return fmt.signed_percent(row.relative) if row.relative is not None else "-"


def _plural(n: int) -> str:
    return f"{n} watched metric{'s' if n > 1 else ''}"


def summary(result: DiffResult) -> str:
    """One line: what failed the gate (regressed past the threshold, missing from HEAD, not a
    number), or that nothing did."""
    pct = f"{100 * result.threshold:g}%"
    bad = result.regressions
    if not bad:
        return (f"no watched metric regressed past {pct} "
                f"(watched: {', '.join(result.watched) or 'none'})")
    parts = []
    worse = [r for r in bad if r.status == "regressed"]
    if worse:
        items = ", ".join(f"{r.metric} ({format_delta(r) if r.absolute else format_change(r)})"
                          for r in worse)
        parts.append(f"{_plural(len(worse))} regressed past {pct}: {items}")
    missing = [r.metric for r in bad if r.status == "missing"]
    if missing:
        parts.append(f"{_plural(len(missing))} missing from HEAD: {', '.join(missing)}")
    invalid = [r for r in bad if r.status == "invalid"]
    if invalid:
        items = ", ".join(f"{r.metric} (BASE {format_value(r.base, r.unit)}, HEAD "
                          f"{format_value(r.head, r.unit)})" for r in invalid)
        parts.append(f"{_plural(len(invalid))} not a number: {items}")
    return "; ".join(parts)


STATUS_TEXT = {"regressed": "regressed", "missing": "missing", "invalid": "invalid",
               "worse": "worse", "improved": "improved", "within": "within",
               "changed": "changed", "same": "", "new": "new", "gone": "gone", "n/a": "n/a"}
STATUS_LEGEND = ("regressed: a watched metric worse past the threshold; missing: a watched "
                 "metric HEAD lacks; invalid: no number where one belongs (all three fail); "
                 "worse: an unwatched metric worse; within: changed by less than the "
                 "threshold; changed: a metric without a better direction; new/gone: in "
                 "HEAD/BASE only; n/a: does not apply to one side (not compared)")
_ORDER = {"regressed": 0, "missing": 0, "invalid": 0, "worse": 1, "improved": 2, "within": 3,
          "changed": 4, "new": 5, "gone": 6, "n/a": 6, "same": 7}


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
