"""Plots of inference results (drawn by ``svg``):

- inference (``archcost infer -o``): time per output token by context length, the roofline of
  the prefill and a decode step (arithmetic intensity against attainable FLOP/s on the GPU's
  roofs, with what the priced step achieves beside it), memory per GPU by part against the
  usable memory
- inference sweep (``archcost sweep --infer -o``): time per output token, time to first token
  and output tokens/s per GPU at every point

A plot is ``(id, svg_figure)``; ids are stable (tests and anchors use them).
"""

from __future__ import annotations

import math
from typing import Any

from archcost.report import fmt
from archcost.report.document import point_label, sweep_keys
from archcost.report.frame import PALETTE, Axis
from archcost.report.infer_tables import MEMORY_PARTS
from archcost.report.plots import BOUND_COLORS, roofline_chart
from archcost.report.svg import Line, Point, hbar_chart, scatter_chart

__all__ = ["inference_plots", "infer_sweep_plots", "MAX_BARS"]

MAX_BARS = 40  # points drawn per sweep bar chart
_ACHIEVED = "#9c9c9c"


def _n(v) -> float | None:
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
        return float(v)
    return None


def _tpot(inf: dict[str, Any], model: str) -> str | None:
    rows = [(_n(r.get("context")), _n(r.get("seconds"))) for r in inf.get("tpot_by_context") or []
            if isinstance(r, dict)]
    rows = [(c, s) for c, s in rows if c is not None and s is not None]
    if not rows:
        return None
    xs, ys = [c for c, _ in rows], [s for _, s in rows]
    points = [Point(c, s, "", PALETTE[0], 4.0, f"context {fmt.count(c)}: {fmt.seconds(s)} per "
                    "decode step") for c, s in rows]
    return scatter_chart(
        "inference-tpot", f"Time per output token by context: {model}", points,
        Axis("context (tokens attended to)", fmt.sig, zero=False),
        Axis("decode step (s)", fmt.seconds),
        lines=[Line(xs, ys, "", PALETTE[0])],
        subtitle=f"batch {inf.get('batch')}: one decode step of the whole batch as the context "
                 "grows over the generation")


def _roofline(doc: dict[str, Any], model: str) -> str | None:
    inf = doc.get("inference") or {}
    bw = _n((doc.get("hardware") or {}).get("mem_bw_bytes_per_s"))
    phases = [(name, ph) for name, ph in (inf.get("phases") or {}).items()
              if isinstance(ph, dict) and (_n(ph.get("arithmetic_intensity")) or 0) > 0]
    peaks = [_n(ph.get("peak_flops_per_s")) for _, ph in phases]
    if not phases or not bw or not all(peaks):
        return None
    points, bounds = [], []
    for name, ph in phases:
        x = float(ph["arithmetic_intensity"])
        bound = str(ph.get("bound", "none"))
        bounds.append(bound)
        label = name if name == "prefill" else f"{name} @ {ph.get('context', '?')}"
        attainable = _n(ph.get("attainable_flops_per_s")) or min(max(peaks), x * bw)
        points.append(Point(x, attainable, label, BOUND_COLORS.get(bound, "#9c9c9c"), 7.0,
                            f"{label}: {fmt.sig(x)} FLOP/B, {fmt.si(attainable, 'FLOP/s')} "
                            f"attainable, {bound}-bound", show=True))
        achieved = _n(ph.get("achieved_flops_per_s"))
        if achieved and achieved > 0:
            points.append(Point(x, achieved, f"{label} achieved", _ACHIEVED, 4.0,
                                f"{label}: {fmt.si(achieved, 'FLOP/s')} achieved "
                                f"({fmt.seconds(ph.get('seconds'))} per step)", show=True))
    hw = doc.get("hardware") or {}
    return roofline_chart(
        "inference-roofline", f"Roofline of {' and '.join(n for n, _ in phases)}: {model}",
        points, max(peaks), bw,
        f"one GPU of {hw.get('gpu', '?')}, batch {inf.get('batch')}; coloured: attainable "
        "(on the roof at the phase's intensity), grey: achieved by the priced step",
        list(dict.fromkeys(bounds)), y_label="attainable and achieved (FLOP/s)")


def _memory(inf: dict[str, Any], model: str) -> str | None:
    mem = inf.get("memory_bytes") or {}
    parts = [(label, _n(mem.get(key))) for key, label in MEMORY_PARTS]
    if not any(v for _, v in parts):
        return None
    usable = _n(mem.get("usable"))
    verdict = "fits" if inf.get("fits") is True else "does not fit"
    return hbar_chart(
        "inference-memory", f"Memory per GPU: {model}", [f"batch {inf.get('batch')}"],
        [(label, [v]) for label, v in parts], Axis("memory per GPU (bytes)", fmt.nbytes,
                                                   binary=True),
        stacked=True, marker=(usable, f"usable {fmt.nbytes(usable)}") if usable else None,
        subtitle=f"at the longest sequence ({inf.get('input_len')} + {inf.get('output_len')} "
                 f"tokens): {verdict}; the largest batch that fits is "
                 f"{fmt.count(inf.get('max_batch'))}")


def inference_plots(doc: dict[str, Any]) -> list[tuple[str, str]]:
    if "search" in doc:  # a serving search: its tables say it
        return []
    inf = doc.get("inference") or {}
    model = str((doc.get("model") or {}).get("name", "?"))
    out = []
    for pid, svg in (("inference-tpot", _tpot(inf, model)),
                     ("inference-roofline", _roofline(doc, model)),
                     ("inference-memory", _memory(inf, model))):
        if svg:
            out.append((pid, svg))
    return out


def _per_point(doc: dict[str, Any], field: str, pid: str, title: str, axis: Axis,
               sub: str) -> str | None:
    keys = sweep_keys(doc)
    pts = [p for p in doc.get("points") or [] if isinstance(p, dict)
           and _n(p.get(field)) is not None]
    if not pts:
        return None
    shown = pts[:MAX_BARS]
    if len(pts) > len(shown):
        sub += f"; the first {len(shown)} of {len(pts)} points"
    labels = [point_label(p.get("point"), keys) + ("" if p.get("fits") else " (does not fit)")
              for p in shown]
    return hbar_chart(pid, title, labels, [(field.replace("_", " "),
                                            [_n(p.get(field)) for p in shown])], axis,
                      subtitle=sub)


def infer_sweep_plots(doc: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for pid, svg in (
            ("sweep-tpot", _per_point(doc, "tpot_s", "sweep-tpot",
                                      "Time per output token at every point",
                                      Axis("time per output token (s)", fmt.seconds),
                                      "the mean decode step; lower is better")),
            ("sweep-ttft", _per_point(doc, "ttft_s", "sweep-ttft",
                                      "Time to first token at every point",
                                      Axis("time to first token (s)", fmt.seconds),
                                      "the prefill of the batch; lower is better")),
            ("sweep-tokens-per-gpu", _per_point(
                doc, "output_tokens_per_s_per_gpu", "sweep-tokens-per-gpu",
                "Output tokens/s per GPU at every point",
                Axis("output tokens/s per GPU", lambda v: fmt.si(v)),
                "batch x generated tokens over the end-to-end latency, per GPU; higher is "
                "better"))):
        if svg:
            out.append((pid, svg))
    return out
