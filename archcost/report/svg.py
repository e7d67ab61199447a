"""Charts as inline SVG, written by hand: horizontal bars (grouped or stacked, or signed around
zero) and scatter plots on linear, log or categorical axes with reference lines (roofline,
Pareto, step time against a swept parameter). The Gantt chart (pipeline timeline) is in
``gantt``, the heatmap in ``heatmap``; the frame they share in ``frame``. No script, no
external font or resource.

Each chart is a ``<figure class="plot" data-plot=ID>`` holding one ``<svg>`` with a title,
axis labels with units, tick labels and, where colours mean something, a legend. Labels wrap
at whole tokens rather than being cut; point labels are placed where they overlap nothing
(``layout.place_labels``), those without room are named in a footnote. A non-zero bar is never
drawn narrower than ``MIN_BAR_PX``; when one is widened the footnote says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from archcost.report.frame import (
    FONT,
    MIN_BAR_PX,
    PALETTE,
    WIDTH,
    X_AXIS_BELOW,
    Axis,
    close_figure,
    esc,
    footnote,
    head_height,
    legend,
    legend_height,
    mapper,
    note_height,
    num,
    open_figure,
    x_axis,
    y_axis,
)
from archcost.report.layout import LINE, Box, place_labels, text_width, wrap

__all__ = ["Point", "Line", "hbar_chart", "signed_bar_chart", "scatter_chart", "stack_widths",
           "WIDENED"]

_LABEL_W = 260.0  # widest category label line, px
_LABEL_LINE = LINE * FONT
WIDENED = f"bars under {MIN_BAR_PX:g} px are drawn {MIN_BAR_PX:g} px wide"


def _join(*notes: str | None) -> str | None:
    parts = [n for n in notes if n]
    return "; ".join(parts) if parts else None


def stack_widths(widths: Sequence[float], min_px: float = MIN_BAR_PX) -> tuple[list[float], bool]:
    """Pixel widths of a stacked bar's segments with none under ``min_px`` (zero stays
    zero), the bar's total kept: what the thin segments gain, the widest one gives up.
    Returns the widths and whether any segment was widened."""
    out = [max(w, min_px) if w > 0 else 0.0 for w in widths]
    extra = sum(out) - sum(max(w, 0.0) for w in widths)
    if extra <= 0:
        return out, False
    widest = max(range(len(out)), key=lambda i: out[i])
    out[widest] = max(out[widest] - extra, min_px)
    return out, True


def _category_label(lines: list[str], full: str, x: float, y_mid: float,
                    cls: str = "category") -> str:
    """A category's label, right-aligned at ``x``, its lines centred on ``y_mid``."""
    first = y_mid + 4 - (len(lines) - 1) * _LABEL_LINE / 2
    if len(lines) == 1:
        body = esc(lines[0])
    else:
        body = "".join(f'<tspan x="{num(x)}" dy="{0 if i == 0 else num(_LABEL_LINE)}">'
                       f"{esc(line)}</tspan>" for i, line in enumerate(lines))
    return (f'<text class="{cls}" x="{num(x)}" y="{num(first)}" text-anchor="end" '
            f'fill="#222"><title>{esc(full)}</title>{body}</text>')


def _bands(wrapped: list[list[str]], base: float) -> list[float]:
    return [max(base, len(lines) * _LABEL_LINE + 9) for lines in wrapped] or [base]


# ------------------------------------------------------------------ bar charts

def hbar_chart(plot_id: str, title: str, categories: Sequence[str],
               series: Sequence[tuple[str, Sequence[float | None]]], axis: Axis, *,
               stacked: bool = False, subtitle: str | None = None,
               marker: tuple[float, str] | None = None, note: str | None = None,
               colors: Sequence[str] | None = None) -> str:
    """Horizontal bars from zero, one band per category: one bar per series (grouped) or the
    series stacked end to end, each bar (or stack) labelled with its value. ``marker`` draws
    a labelled vertical line (a capacity) when it falls on the axis. Missing values (None)
    and zeros draw no bar; ``note`` is a footnote."""
    colors = list(colors or PALETTE)
    cats = [str(c) for c in categories]
    n = len(series)
    vals = [[max(float(v), 0.0) if v is not None and math.isfinite(float(v)) else None
             for v in values] for _, values in series]
    if stacked:
        ends = [sum(v[i] or 0.0 for v in vals) for i in range(len(cats))]
    else:
        ends = [v[i] for v in vals for i in range(len(cats)) if v[i] is not None]
    top_v = max(ends, default=0.0) or 1.0
    marker_on = marker is not None and 0 < marker[0] <= top_v * 1.5
    lo, ticks, hi = Axis(axis.label, axis.fmt, False, 0.0, max(top_v, marker[0]) if marker_on
                         else top_v, binary=axis.binary).domain([])
    wrapped = [wrap(c, _LABEL_W, FONT) for c in cats]
    label_w = max((text_width(ln, FONT) for lines in wrapped for ln in lines), default=20.0)
    left = 14 + label_w + 8
    value_size = FONT if stacked or n == 1 else 10
    value_w = max((text_width(axis.fmt(v), value_size) for v in ends if v is not None),
                  default=20.0)
    right = WIDTH - max(value_w + 14, 24)
    legend_items = [(str(name), colors[i % len(colors)]) for i, (name, _) in enumerate(series)]
    show_legend = n > 1
    head = head_height(subtitle)
    legend_h = legend_height(legend_items, left) if show_legend else 0.0
    top = head + legend_h + (6 if show_legend else 0) + (16 if marker_on else 0)
    bands = _bands(wrapped, 24.0 if (stacked or n == 1) else 10.0 + 14.0 * n)
    bottom = top + sum(bands)
    sx = mapper(lo, hi, left, right, False)
    body, widened = [], False
    y0 = top
    for i, cat in enumerate(cats):
        band = bands[i]
        body.append(_category_label(wrapped[i], cat, left - 6, y0 + band / 2))
        if stacked:
            segs = [(j, vals[j][i]) for j in range(n) if vals[j][i]]
            px, wide = stack_widths([sx(v) - sx(0.0) for _, v in segs])
            widened |= wide
            x, h = left, 16.0
            yb = y0 + (band - h) / 2
            for (j, v), w in zip(segs, px):
                body.append(f'<rect x="{num(x)}" y="{num(yb)}" width="{num(w)}" '
                            f'height="{num(h)}" fill="{colors[j % len(colors)]}">'
                            f'<title>{esc(cat)}: {esc(series[j][0])} {esc(axis.fmt(v))}'
                            '</title></rect>')
                x += w
            if segs:
                total = sum(v for _, v in segs)
                body.append(f'<text class="value" x="{num(x + 4)}" '
                            f'y="{num(y0 + band / 2 + 4)}" fill="#333">'
                            f'{esc(axis.fmt(total))}</text>')
        else:
            h = (band - 10) / n if n > 1 else 16.0
            yb = y0 + (band - (h * n if n > 1 else h)) / 2
            for j in range(n):
                v = vals[j][i]
                if v is None:
                    continue
                yy = yb + j * h
                w = sx(v) - left
                if v > 0:
                    widened |= w < MIN_BAR_PX
                    w = max(w, MIN_BAR_PX)
                    body.append(f'<rect x="{num(left)}" y="{num(yy)}" width="{num(w)}" '
                                f'height="{num(h - 1)}" fill="{colors[j % len(colors)]}">'
                                f'<title>{esc(cat)}: {esc(series[j][0])} {esc(axis.fmt(v))}'
                                '</title></rect>')
                size = value_size
                body.append(f'<text class="value" x="{num(left + max(w, 0.0) + 4)}" '
                            f'y="{num(yy + h / 2 + size * 0.35)}" font-size="{size}" '
                            f'fill="#333">{esc(axis.fmt(v))}</text>')
        y0 += band
    note = _join(note, WIDENED if widened else None)
    height = bottom + X_AXIS_BELOW + note_height(note)
    out = open_figure(plot_id, title, height, subtitle)
    if show_legend:
        out += legend(legend_items, left, head + 12)
    out += x_axis(ticks, sx, bottom, top, axis.fmt, axis.label, left, right)
    out.append('<g class="labels">')
    out += [b for b in body if b.startswith("<text")]
    out.append("</g>")
    out.append('<g class="bars">')
    out += [b for b in body if b.startswith("<rect")]
    out.append("</g>")
    if marker_on:
        mx = sx(marker[0])
        out.append(f'<line class="marker" x1="{num(mx)}" y1="{num(top - 16)}" x2="{num(mx)}" '
                   f'y2="{num(bottom)}" stroke="#d62728" stroke-dasharray="5,3"/>')
        anchor, dx = ("end", -4) if mx > (left + right) / 2 else ("start", 4)
        out.append(f'<text class="marker-label" x="{num(mx + dx)}" y="{num(top - 5)}" '
                   f'text-anchor="{anchor}" font-size="10" fill="#d62728">'
                   f'{esc(marker[1])}</text>')
    out += footnote(note, bottom + X_AXIS_BELOW + 8)
    out += close_figure()
    return "\n".join(out)


def signed_bar_chart(plot_id: str, title: str, categories: Sequence[str],
                     values: Sequence[float | None], axis: Axis, *,
                     colors: tuple[str, str] = ("#59a14f", "#e15759"),
                     legend_names: tuple[str, str] | None = None,
                     subtitle: str | None = None) -> str:
    """Horizontal bars of signed values from a zero line, one per category (in the order
    given): negative values left in ``colors[0]``, positive right in ``colors[1]``, each
    labelled with its value; ``legend_names`` names the two signs. Zero draws no bar, only
    its label; missing values draw nothing."""
    cats = [str(c) for c in categories]
    vals = [float(v) if v is not None and math.isfinite(float(v)) else None for v in values]
    finite = [v for v in vals if v is not None]
    vlo, vhi = min(finite + [0.0]), max(finite + [0.0])
    span = (vhi - vlo) or 1.0
    # room for the value labels beyond the longest bars
    lo = vlo - 0.18 * span if vlo < 0 else 0.0
    hi = vhi + 0.18 * span if vhi > 0 or vlo == 0 else 0.0
    lo, ticks, hi = Axis(axis.label, axis.fmt, False, lo, hi).domain([])
    wrapped = [wrap(c, _LABEL_W, FONT) for c in cats]
    label_w = max((text_width(ln, FONT) for lines in wrapped for ln in lines), default=20.0)
    left = 14 + label_w + 8
    right = WIDTH - 24
    head = head_height(subtitle)
    legend_items = ([(legend_names[0], colors[0]), (legend_names[1], colors[1])]
                    if legend_names else [])
    top = head + legend_height(legend_items, left) + (6 if legend_items else 0)
    bands = _bands(wrapped, 24.0)
    bottom = top + sum(bands)
    sx = mapper(lo, hi, left, right, False)
    x0 = sx(0.0)
    labels, bars, widened = [], [], False
    y0 = top
    for cat, v, lines, band in zip(cats, vals, wrapped, bands):
        labels.append(_category_label(lines, cat, left - 6, y0 + band / 2))
        if v is not None:
            x1 = sx(v)
            if v != 0:
                w = abs(x1 - x0)
                widened |= w < MIN_BAR_PX
                w = max(w, MIN_BAR_PX)
                x1 = x0 - w if v < 0 else x0 + w
                bars.append(f'<rect x="{num(min(x0, x1))}" y="{num(y0 + (band - 16) / 2)}" '
                            f'width="{num(w)}" height="16" '
                            f'fill="{colors[0] if v < 0 else colors[1]}">'
                            f'<title>{esc(cat)}: {esc(axis.fmt(v))}</title></rect>')
            anchor, dx = ("end", -4) if v < 0 else ("start", 4)
            labels.append(f'<text class="value" x="{num(x1 + dx)}" '
                          f'y="{num(y0 + band / 2 + 3.5)}" text-anchor="{anchor}" '
                          f'font-size="10" fill="#333">{esc(axis.fmt(v))}</text>')
        y0 += band
    note = WIDENED if widened else None
    height = bottom + X_AXIS_BELOW + note_height(note)
    out = open_figure(plot_id, title, height, subtitle)
    if legend_items:
        out += legend(legend_items, left, head + 12)
    out += x_axis(ticks, sx, bottom, top, axis.fmt, axis.label, left, right)
    out += ['<g class="labels">', *labels, "</g>", '<g class="bars">', *bars, "</g>"]
    out.append(f'<line class="zero" x1="{num(x0)}" y1="{num(top)}" x2="{num(x0)}" '
               f'y2="{num(bottom)}" stroke="#333"/>')
    out += footnote(note, bottom + X_AXIS_BELOW + 8)
    out += close_figure()
    return "\n".join(out)


# ------------------------------------------------------------------ scatter

@dataclass
class Point:
    x: float
    y: float
    label: str = ""  # drawn beside the point when ``show`` (else only as tooltip)
    color: str = PALETTE[0]
    r: float = 5.0
    tip: str = ""
    show: bool = False


@dataclass
class Line:
    xs: list[float]
    ys: list[float]
    label: str = ""
    color: str = "#333"
    dash: str = ""
    width: float = 2.0


_POINT_FONT = 11
_POINT_LABEL_W = 250.0


def scatter_chart(plot_id: str, title: str, points: Sequence[Point], x: Axis, y: Axis, *,
                  lines: Sequence[Line] = (), legend_items: Sequence[tuple[str, str]] = (),
                  legend_shape: str = "circle", subtitle: str | None = None,
                  note: str | None = None, height: float = 420) -> str:
    """Points (with tooltips) on linear or log axes, with reference polylines. Labels of
    points with ``show`` are placed where they overlap no other label or point, in the order
    of the points (put the most important first); those without room are named in the
    footnote. Points that a log axis cannot show (x or y <= 0) are left out; say so in
    ``subtitle``."""
    pts = [p for p in points if math.isfinite(p.x) and math.isfinite(p.y)
           and (p.x > 0 or not x.log) and (p.y > 0 or not y.log)]
    xs = [p.x for p in pts] + [v for ln in lines for v in ln.xs]
    ys = [p.y for p in pts] + [v for ln in lines for v in ln.ys]
    xlo, xt, xhi = x.domain(xs)
    ylo, yt, yhi = y.domain(ys)
    left = 30 + max((text_width(y.fmt(t), FONT) for t in yt), default=24.0) + 10
    right = WIDTH - 24
    head = head_height(subtitle)
    items = [(name, color, legend_shape) for name, color in legend_items] + \
        [(ln.label, ln.color, "dash" if ln.dash else "line") for ln in lines if ln.label]
    top = head + legend_height(items, left) + 10
    bottom = height - X_AXIS_BELOW
    sx = mapper(xlo, xhi, left, right, x.log)
    sy = mapper(ylo, yhi, bottom, top, y.log)
    shown = [p for p in pts if p.show and p.label]
    placed = place_labels([(sx(p.x), sy(p.y), p.r) for p in shown],
                          [wrap(p.label, _POINT_LABEL_W, _POINT_FONT) for p in shown],
                          _POINT_FONT, Box(left + 2, top + 2, right - 2, bottom - 2),
                          avoid=[Box(sx(p.x) - p.r, sy(p.y) - p.r, sx(p.x) + p.r,
                                     sy(p.y) + p.r) for p in pts if not (p.show and p.label)])
    missing = [p.label for p, pl in zip(shown, placed) if pl is None]
    note = _join(note, "not labelled for lack of room (hover the points): "
                 + ", ".join(missing) if missing else None)
    height += note_height(note)
    out = open_figure(plot_id, title, height, subtitle)
    if items:
        out += legend(items, left, head + 12)
    out += x_axis(xt, sx, bottom, top, x.fmt, x.label, left, right)
    out += y_axis(yt, sy, left, right, y.fmt, y.label, top, bottom)
    out.append(f'<clipPath id="clip-{esc(plot_id)}"><rect x="{num(left)}" y="{num(top)}" '
               f'width="{num(right - left)}" height="{num(bottom - top)}"/></clipPath>')
    out.append(f'<g class="lines" clip-path="url(#clip-{esc(plot_id)})">')
    for ln in lines:
        coords = " ".join(f"{num(sx(a))},{num(sy(b))}" for a, b in zip(ln.xs, ln.ys)
                          if (a > 0 or not x.log) and (b > 0 or not y.log))
        dash = f' stroke-dasharray="{ln.dash}"' if ln.dash else ""
        out.append(f'<polyline points="{coords}" fill="none" stroke="{ln.color}" '
                   f'stroke-width="{ln.width}"{dash}><title>{esc(ln.label)}</title></polyline>')
    out.append("</g>")
    out.append('<g class="points">')
    for p in pts:
        out.append(f'<circle cx="{num(sx(p.x))}" cy="{num(sy(p.y))}" r="{num(p.r)}" '
                   f'fill="{p.color}" fill-opacity="0.85" stroke="#fff" stroke-width="1">'
                   f'<title>{esc(p.tip or p.label)}</title></circle>')
    out.append("</g>")
    out.append('<g class="point-labels">')
    for p, pl in zip(shown, placed):
        if pl is None:
            continue
        if pl.leader:
            out.append(f'<line x1="{num(pl.leader[0])}" y1="{num(pl.leader[1])}" '
                       f'x2="{num(pl.leader[2])}" y2="{num(pl.leader[3])}" stroke="#888" '
                       'stroke-width="0.8"/>')
        lines_ = wrap(p.label, _POINT_LABEL_W, _POINT_FONT)
        if len(lines_) == 1:
            body = esc(lines_[0])
        else:
            body = "".join(f'<tspan x="{num(pl.x)}" dy="{0 if i == 0 else num(LINE * 11)}">'
                           f"{esc(t)}</tspan>" for i, t in enumerate(lines_))
        out.append(f'<text class="point-label" x="{num(pl.x)}" y="{num(pl.y)}" '
                   f'text-anchor="{pl.anchor}" font-size="{_POINT_FONT}" fill="#222" stroke="#fff" '
                   f'stroke-width="3" paint-order="stroke">'
                   f'<title>{esc(p.tip or p.label)}</title>{body}</text>')
    out.append("</g>")
    out += footnote(note, bottom + X_AXIS_BELOW + 8)
    out += close_figure()
    return "\n".join(out)
