"""Charts as inline SVG, written by hand: horizontal bars (grouped or stacked, or signed around
zero), scatter on linear, log or categorical axes with reference lines (roofline, Pareto, step
time against a swept parameter), a heatmap with its colour scale, and a Gantt chart (pipeline
timeline). No script, no external font or resource.

Every text that reaches the SVG (titles, labels, tooltips) goes through ``html.escape``.
Each chart is a ``<figure class="plot" data-plot=ID>`` holding one ``<svg>`` with a title,
axis labels with units, tick labels and, where colours mean something, a legend.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

from archcost.report.fmt import sig as fmt_sig

__all__ = ["PALETTE", "SEQUENTIAL", "Axis", "Point", "Line", "hbar_chart", "signed_bar_chart",
           "scatter_chart", "heatmap_chart", "gantt_chart", "nice_ticks", "log_ticks",
           "color_scale"]

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2", "#edc948",
           "#9c755f", "#ff9da7", "#bab0ac")
# light to dark (ColorBrewer "Blues"): heatmap cells, larger values darker
SEQUENTIAL = ("#f7fbff", "#deebf7", "#c6dbef", "#9ecae1", "#6baed6", "#4292c6", "#2171b5",
              "#08519c", "#08306b")
WIDTH = 760
_FONT = 12
_CHAR = 6.6  # average glyph width at 12px, to size margins and truncate labels
_TITLE_H = 26


def _e(text) -> str:
    return escape(str(text), quote=True)


def _f(v: float) -> str:
    return f"{v:.1f}".rstrip("0").rstrip(".") if v == v else "0"


def _clip(text: str, n: int) -> str:
    text = str(text)
    return text if len(text) <= n else text[: max(n - 1, 1)] + "\u2026"


# ------------------------------------------------------------------ scales and ticks

def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round ticks covering [lo, hi]: steps of 1, 2, 2.5 or 5 times a power of ten."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw * (1 - 1e-9))
    start = math.floor(lo / step + 1e-9) * step
    ticks, k = [], 0
    while True:
        t = start + k * step
        ticks.append(0.0 if abs(t) < step * 1e-9 else t)
        if t >= hi - step * 1e-9:
            break
        k += 1
    return ticks


def log_ticks(lo: float, hi: float) -> list[float]:
    """Decades covering [lo, hi] (positive); with 2 and 5 between when the range is short."""
    a = math.floor(math.log10(lo) + 1e-9)
    b = math.ceil(math.log10(hi) - 1e-9)
    if b <= a:
        b = a + 1
    ticks = []
    for k in range(a, b + 1):
        ticks.append(10.0 ** k)
        if b - a <= 2 and k < b:
            ticks += [2 * 10.0 ** k, 5 * 10.0 ** k]
    return sorted(ticks)


@dataclass
class Axis:
    label: str  # with the unit, e.g. "step time (s)"
    fmt: Callable[[float], str] = fmt_sig  # no e-notation: report.fmt's rule
    log: bool = False
    lo: float | None = None
    hi: float | None = None
    zero: bool = True  # a linear axis starts at zero
    binary: bool = False  # linear ticks at round multiples of KiB, MiB, GiB, ...
    exact: bool = False  # the domain is [lo, hi] itself, ticks inside it
    ticks: Sequence[float] | None = None  # these ticks (e.g. swept values, categories' indices)

    def domain(self, values: Sequence[float]) -> tuple[float, list[float], float]:
        if self.ticks:
            ticks = [float(t) for t in self.ticks]
            lo = self.lo if self.lo is not None else min(ticks)
            hi = self.hi if self.hi is not None else max(ticks)
            if hi <= lo:
                lo, hi = (lo / 2, lo * 2) if self.log else (lo - 0.5, lo + 0.5)
            return lo, ticks, hi
        vals = [v for v in values if math.isfinite(v) and (v > 0 or not self.log)]
        if self.log:
            lo = self.lo if self.lo else (min(vals) if vals else 1.0)
            hi = self.hi if self.hi else (max(vals) if vals else 10.0)
            ticks = log_ticks(lo, max(hi, lo * 1.0001))
            return ticks[0], ticks, ticks[-1]
        lo = self.lo if self.lo is not None else (0.0 if self.zero else min(vals, default=0.0))
        hi = self.hi if self.hi is not None else max(vals, default=1.0)
        if not self.zero and self.lo is None and vals and hi > lo:
            pad = 0.05 * (hi - lo)
            lo, hi = lo - pad, hi + pad
        if hi <= lo:
            hi = lo + (abs(lo) or 1.0)
        unit = 1.0
        if self.binary and max(abs(lo), abs(hi)) >= 1024:
            unit = 1024.0 ** math.floor(math.log(max(abs(lo), abs(hi)), 1024))
        ticks = [t * unit for t in nice_ticks(lo / unit, hi / unit)]
        if self.exact:
            inside = [t for t in ticks if lo - 1e-9 * (hi - lo) <= t <= hi + 1e-9 * (hi - lo)]
            return lo, inside, hi
        return ticks[0], ticks, ticks[-1]


def _mapper(lo: float, hi: float, a: float, b: float, log: bool) -> Callable[[float], float]:
    if log:
        llo, lhi = math.log10(lo), math.log10(hi)
        span = (lhi - llo) or 1.0
        return lambda v: a + (math.log10(max(v, 1e-300)) - llo) / span * (b - a)
    span = (hi - lo) or 1.0
    return lambda v: a + (v - lo) / span * (b - a)


# ------------------------------------------------------------------ frame pieces

def _open(plot_id: str, title: str, height: float, subtitle: str | None) -> list[str]:
    pid = _e(plot_id)
    out = [f'<figure class="plot" id="plot-{pid}" data-plot="{pid}">',
           f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{_f(height)}" '
           f'viewBox="0 0 {WIDTH} {_f(height)}" role="img" aria-labelledby="plot-{pid}-title" '
           f'font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif" '
           f'font-size="{_FONT}">',
           f'<title id="plot-{pid}-title">{_e(title)}</title>',
           f'<rect x="0" y="0" width="{WIDTH}" height="{_f(height)}" fill="#ffffff"/>',
           f'<text class="plot-title" x="10" y="18" font-size="15" font-weight="600" '
           f'fill="#222">{_e(title)}</text>']
    if subtitle:
        out.append(f'<text class="plot-subtitle" x="10" y="36" fill="#555">'
                   f'{_e(_clip(subtitle, int((WIDTH - 20) / _CHAR)))}</text>')
    return out


def _close(caption: str | None) -> list[str]:
    out = ["</svg>"]
    if caption:
        out.append(f"<figcaption>{_e(caption)}</figcaption>")
    out.append("</figure>")
    return out


def _legend(items: Sequence[tuple[str, ...]], x: float, y: float, shape: str = "rect"
            ) -> list[str]:
    """One row of colour swatches with names, wrapping at the chart width."""
    out = ['<g class="legend">']
    cx, cy = x, y
    for item in items:
        name, color = item[0], item[1]
        shape = item[2] if len(item) > 2 else shape
        w = 18 + len(_clip(name, 40)) * 7.2 + 14
        if cx + w > WIDTH - 10 and cx > x:
            cx, cy = x, cy + 18
        if shape == "circle":
            out.append(f'<circle cx="{_f(cx + 5)}" cy="{_f(cy - 4)}" r="5" fill="{color}"/>')
        elif shape in ("line", "dash"):
            dash = ' stroke-dasharray="4,2"' if shape == "dash" else ""
            out.append(f'<line x1="{_f(cx)}" y1="{_f(cy - 4)}" x2="{_f(cx + 12)}" '
                       f'y2="{_f(cy - 4)}" stroke="{color}" stroke-width="2"{dash}/>')
        else:
            out.append(f'<rect x="{_f(cx)}" y="{_f(cy - 10)}" width="12" height="12" '
                       f'fill="{color}"/>')
        out.append(f'<text x="{_f(cx + 17)}" y="{_f(cy)}" fill="#333">{_e(_clip(name, 40))}'
                   '</text>')
        cx += w
    out.append("</g>")
    return out


def _legend_height(items: Sequence[tuple[str, ...]], x: float) -> float:
    if not items:
        return 0.0
    rows, cx = 1, x
    for name, *_ in items:
        w = 18 + len(_clip(name, 40)) * 7.2 + 14
        if cx + w > WIDTH - 10 and cx > x:
            rows, cx = rows + 1, x
        cx += w
    return rows * 18.0


def _x_axis(ticks: list[float], sx, y: float, top: float, fmt, label: str, left: float,
            right: float) -> list[str]:
    out = ['<g class="x-axis">']
    for t in ticks:
        x = sx(t)
        out.append(f'<line x1="{_f(x)}" y1="{_f(top)}" x2="{_f(x)}" y2="{_f(y)}" '
                   'stroke="#e3e3e3"/>')
        out.append(f'<text class="tick" x="{_f(x)}" y="{_f(y + 15)}" text-anchor="middle" '
                   f'fill="#444">{_e(fmt(t))}</text>')
    out.append(f'<line x1="{_f(left)}" y1="{_f(y)}" x2="{_f(right)}" y2="{_f(y)}" '
               'stroke="#666"/>')
    out.append(f'<text class="axis-label" x="{_f((left + right) / 2)}" y="{_f(y + 32)}" '
               f'text-anchor="middle" fill="#222">{_e(label)}</text>')
    out.append("</g>")
    return out


def _y_axis(ticks: list[float], sy, x: float, right: float, fmt, label: str, top: float,
            bottom: float) -> list[str]:
    out = ['<g class="y-axis">']
    for t in ticks:
        y = sy(t)
        out.append(f'<line x1="{_f(x)}" y1="{_f(y)}" x2="{_f(right)}" y2="{_f(y)}" '
                   'stroke="#e3e3e3"/>')
        out.append(f'<text class="tick" x="{_f(x - 6)}" y="{_f(y + 4)}" text-anchor="end" '
                   f'fill="#444">{_e(fmt(t))}</text>')
    out.append(f'<line x1="{_f(x)}" y1="{_f(top)}" x2="{_f(x)}" y2="{_f(bottom)}" '
               'stroke="#666"/>')
    cy = (top + bottom) / 2
    out.append(f'<text class="axis-label" x="14" y="{_f(cy)}" text-anchor="middle" '
               f'transform="rotate(-90 14 {_f(cy)})" fill="#222">{_e(label)}</text>')
    out.append("</g>")
    return out


# ------------------------------------------------------------------ bar charts

def hbar_chart(plot_id: str, title: str, categories: Sequence[str],
               series: Sequence[tuple[str, Sequence[float | None]]], axis: Axis, *,
               stacked: bool = False, subtitle: str | None = None,
               marker: tuple[float, str] | None = None, caption: str | None = None,
               colors: Sequence[str] | None = None) -> str:
    """Horizontal bars, one band per category: one bar per series (grouped) or the series
    stacked end to end. ``marker`` draws a labelled vertical line (a capacity) when it falls
    on the axis. Missing values (None) draw nothing."""
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
    label_chars = min(max((len(c) for c in cats), default=4), 34)
    left = 20 + label_chars * _CHAR + 8
    right = WIDTH - 70
    legend_items = [(str(name), colors[i % len(colors)]) for i, (name, _) in enumerate(series)]
    show_legend = n > 1
    head = _TITLE_H + (18 if subtitle else 0) + 8
    legend_h = _legend_height(legend_items, left) if show_legend else 0.0
    top = head + legend_h + (6 if show_legend else 0)
    band = 24.0 if (stacked or n == 1) else 10.0 + 14.0 * n
    bottom = top + band * max(len(cats), 1)
    height = bottom + 44
    sx = _mapper(lo, hi, left, right, False)
    out = _open(plot_id, title, height, subtitle)
    if show_legend:
        out += _legend(legend_items, left, head + 12)
    out += _x_axis(ticks, sx, bottom, top, axis.fmt, axis.label, left, right)
    out.append('<g class="bars">')
    for i, cat in enumerate(cats):
        y0 = top + i * band
        out.append(f'<text class="category" x="{_f(left - 6)}" y="{_f(y0 + band / 2 + 4)}" '
                   f'text-anchor="end" fill="#222"><title>{_e(cat)}</title>'
                   f'{_e(_clip(cat, 34))}</text>')
        if stacked:
            x = 0.0
            h = band - 8
            for j, (name, _) in enumerate(series):
                v = vals[j][i]
                if not v:
                    continue
                x0, x1 = sx(x), sx(x + v)
                out.append(f'<rect x="{_f(x0)}" y="{_f(y0 + 4)}" width="{_f(max(x1 - x0, 0.5))}" '
                           f'height="{_f(h)}" fill="{colors[j % len(colors)]}">'
                           f'<title>{_e(cat)}: {_e(name)} {_e(axis.fmt(v))}</title></rect>')
                x += v
            if x > 0:
                out.append(f'<text class="value" x="{_f(sx(x) + 4)}" y="{_f(y0 + band / 2 + 4)}" '
                           f'fill="#333">{_e(axis.fmt(x))}</text>')
        else:
            h = (band - 10) / n if n > 1 else band - 8
            for j, (name, _) in enumerate(series):
                v = vals[j][i]
                if v is None:
                    continue
                yy = y0 + (5 if n > 1 else 4) + j * h
                x1 = sx(v)
                out.append(f'<rect x="{_f(left)}" y="{_f(yy)}" width="{_f(max(x1 - left, 0.5))}" '
                           f'height="{_f(h - 1)}" fill="{colors[j % len(colors)]}">'
                           f'<title>{_e(cat)}: {_e(name)} {_e(axis.fmt(v))}</title></rect>')
                out.append(f'<text class="value" x="{_f(x1 + 4)}" y="{_f(yy + h / 2 + 3)}" '
                           f'font-size="10" fill="#333">{_e(axis.fmt(v))}</text>')
    out.append("</g>")
    if marker_on:
        mx = sx(marker[0])
        out.append(f'<line class="marker" x1="{_f(mx)}" y1="{_f(top - 4)}" x2="{_f(mx)}" '
                   f'y2="{_f(bottom)}" stroke="#d62728" stroke-dasharray="5,3"/>')
        out.append(f'<text x="{_f(mx - 3)}" y="{_f(top - 7)}" text-anchor="end" font-size="10" '
                   f'fill="#d62728">{_e(marker[1])}</text>')
    out += _close(caption)
    return "\n".join(out)


def signed_bar_chart(plot_id: str, title: str, categories: Sequence[str],
                     values: Sequence[float | None], axis: Axis, *,
                     colors: tuple[str, str] = ("#59a14f", "#e15759"),
                     legend: tuple[str, str] | None = None, subtitle: str | None = None,
                     caption: str | None = None) -> str:
    """Horizontal bars of signed values from a zero line, one per category (in the order
    given): negative values left in ``colors[0]``, positive right in ``colors[1]``, each
    labelled with its value; ``legend`` names the two signs. Missing values draw nothing."""
    cats = [str(c) for c in categories]
    vals = [float(v) if v is not None and math.isfinite(float(v)) else None for v in values]
    finite = [v for v in vals if v is not None]
    vlo, vhi = min(finite + [0.0]), max(finite + [0.0])
    span = (vhi - vlo) or 1.0
    # room for the value labels beyond the longest bars
    lo = vlo - 0.18 * span if vlo < 0 else 0.0
    hi = vhi + 0.18 * span if vhi > 0 or vlo == 0 else 0.0
    lo, ticks, hi = Axis(axis.label, axis.fmt, False, lo, hi).domain([])
    label_chars = min(max((len(c) for c in cats), default=4), 34)
    left = 20 + label_chars * _CHAR + 8
    right = WIDTH - 24
    head = _TITLE_H + (18 if subtitle else 0) + 8
    legend_items = [(legend[0], colors[0]), (legend[1], colors[1])] if legend else []
    legend_h = _legend_height(legend_items, left)
    top = head + legend_h + (6 if legend_items else 0)
    band = 24.0
    bottom = top + band * max(len(cats), 1)
    height = bottom + 44
    sx = _mapper(lo, hi, left, right, False)
    x0 = sx(0.0)
    out = _open(plot_id, title, height, subtitle)
    if legend_items:
        out += _legend(legend_items, left, head + 12)
    out += _x_axis(ticks, sx, bottom, top, axis.fmt, axis.label, left, right)
    out.append('<g class="bars">')
    for i, (cat, v) in enumerate(zip(cats, vals)):
        y0 = top + i * band
        out.append(f'<text class="category" x="{_f(left - 6)}" y="{_f(y0 + band / 2 + 4)}" '
                   f'text-anchor="end" fill="#222"><title>{_e(cat)}</title>'
                   f'{_e(_clip(cat, 34))}</text>')
        if v is None:
            continue
        x1 = sx(v)
        color = colors[0] if v < 0 else colors[1]
        out.append(f'<rect x="{_f(min(x0, x1))}" y="{_f(y0 + 4)}" '
                   f'width="{_f(max(abs(x1 - x0), 0.5))}" height="{_f(band - 8)}" '
                   f'fill="{color}"><title>{_e(cat)}: {_e(axis.fmt(v))}</title></rect>')
        anchor, dx = ("end", -4) if v < 0 else ("start", 4)
        out.append(f'<text class="value" x="{_f(x1 + dx)}" y="{_f(y0 + band / 2 + 4)}" '
                   f'text-anchor="{anchor}" font-size="10" fill="#333">{_e(axis.fmt(v))}'
                   '</text>')
    out.append("</g>")
    out.append(f'<line class="zero" x1="{_f(x0)}" y1="{_f(top)}" x2="{_f(x0)}" '
               f'y2="{_f(bottom)}" stroke="#333"/>')
    out += _close(caption)
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


def scatter_chart(plot_id: str, title: str, points: Sequence[Point], x: Axis, y: Axis, *,
                  lines: Sequence[Line] = (), legend: Sequence[tuple[str, str]] = (),
                  legend_shape: str = "circle", subtitle: str | None = None,
                  caption: str | None = None, height: float = 420) -> str:
    """Points (with tooltips) on linear or log axes, with reference polylines. Points that a
    log axis cannot show (x or y <= 0) are left out; say so in ``subtitle``."""
    pts = [p for p in points if math.isfinite(p.x) and math.isfinite(p.y)
           and (p.x > 0 or not x.log) and (p.y > 0 or not y.log)]
    xs = [p.x for p in pts] + [v for ln in lines for v in ln.xs]
    ys = [p.y for p in pts] + [v for ln in lines for v in ln.ys]
    xlo, xt, xhi = x.domain(xs)
    ylo, yt, yhi = y.domain(ys)
    ylab = max((len(y.fmt(t)) for t in yt), default=4)
    left = 34 + ylab * _CHAR + 6
    right = WIDTH - 24
    head = _TITLE_H + (18 if subtitle else 0) + 8
    legend_items = [(name, color, legend_shape) for name, color in legend] + \
        [(ln.label, ln.color, "dash" if ln.dash else "line") for ln in lines if ln.label]
    legend_h = _legend_height(legend_items, left)
    top = head + legend_h + 10
    bottom = height - 46
    sx = _mapper(xlo, xhi, left, right, x.log)
    sy = _mapper(ylo, yhi, bottom, top, y.log)
    out = _open(plot_id, title, height, subtitle)
    if legend_items:
        out += _legend(legend_items, left, head + 12)
    out += _x_axis(xt, sx, bottom, top, x.fmt, x.label, left, right)
    out += _y_axis(yt, sy, left, right, y.fmt, y.label, top, bottom)
    out.append(f'<clipPath id="clip-{_e(plot_id)}"><rect x="{_f(left)}" y="{_f(top)}" '
               f'width="{_f(right - left)}" height="{_f(bottom - top)}"/></clipPath>')
    out.append(f'<g class="lines" clip-path="url(#clip-{_e(plot_id)})">')
    for ln in lines:
        coords = " ".join(f"{_f(sx(a))},{_f(sy(b))}" for a, b in zip(ln.xs, ln.ys)
                          if (a > 0 or not x.log) and (b > 0 or not y.log))
        dash = f' stroke-dasharray="{ln.dash}"' if ln.dash else ""
        out.append(f'<polyline points="{coords}" fill="none" stroke="{ln.color}" '
                   f'stroke-width="{ln.width}"{dash}><title>{_e(ln.label)}</title></polyline>')
    out.append("</g>")
    out.append('<g class="points">')
    for p in pts:
        cx, cy = sx(p.x), sy(p.y)
        out.append(f'<circle cx="{_f(cx)}" cy="{_f(cy)}" r="{_f(p.r)}" fill="{p.color}" '
                   f'fill-opacity="0.85" stroke="#fff" stroke-width="1">'
                   f'<title>{_e(p.tip or p.label)}</title></circle>')
        if p.show and p.label:
            anchor = "end" if cx > right - 120 else "start"
            dx = -(p.r + 3) if anchor == "end" else p.r + 3
            out.append(f'<text class="point-label" x="{_f(cx + dx)}" y="{_f(cy - p.r - 1)}" '
                       f'text-anchor="{anchor}" font-size="11" fill="#222">'
                       f'{_e(_clip(p.label, 30))}</text>')
    out.append("</g>")
    out += _close(caption)
    return "\n".join(out)


# ------------------------------------------------------------------ heatmap

def _hex(c: str) -> tuple[int, int, int]:
    return int(c[1:3], 16), int(c[3:5], 16), int(c[5:7], 16)


def color_scale(t: float, stops: Sequence[str] = SEQUENTIAL) -> str:
    """The colour at ``t`` in [0, 1] along ``stops``, interpolated linearly in RGB."""
    t = min(max(t, 0.0), 1.0) if math.isfinite(t) else 0.0
    pos = t * (len(stops) - 1)
    i = min(int(pos), len(stops) - 2)
    f = pos - i
    a, b = _hex(stops[i]), _hex(stops[i + 1])
    return "#" + "".join(f"{round(x + (y - x) * f):02x}" for x, y in zip(a, b))


def _luma(c: str) -> float:
    r, g, b = _hex(c)
    return (0.299 * r + 0.587 * g + 0.114 * b) / 255


def heatmap_chart(plot_id: str, title: str, rows: Sequence[str], columns: Sequence[str],
                  values: Sequence[Sequence[float | None]], scale: Axis, *, row_label: str,
                  column_label: str, missing: str = "-", subtitle: str | None = None,
                  caption: str | None = None) -> str:
    """A grid of cells (``values[row][column]``) coloured by value on ``scale`` (linear or
    log; light: low, dark: high), each labelled with its value, with a colour scale legend
    below. None draws a grey cell labelled ``missing``."""
    rows = [str(r) for r in rows]
    cols = [str(c) for c in columns]
    flat = [float(v) for row in values for v in row
            if v is not None and math.isfinite(float(v)) and (float(v) > 0 or not scale.log)]
    vlo, vhi = (min(flat), max(flat)) if flat else (0.0, 1.0)
    if scale.log:
        lo, hi = math.log10(vlo or 1.0), math.log10(vhi or 1.0)
    else:
        lo, hi = vlo, vhi

    def t_of(v: float) -> float:
        x = math.log10(v) if scale.log else v
        return (x - lo) / (hi - lo) if hi > lo else 0.5

    label_chars = min(max((len(r) for r in rows), default=4), 24)
    left = 36 + label_chars * _CHAR + 8
    right = WIDTH - 24
    head = _TITLE_H + (18 if subtitle else 0) + 8
    top = head + 22  # column tick labels above the grid
    cw = (right - left) / max(len(cols), 1)
    ch = 34.0
    bottom = top + ch * max(len(rows), 1)
    legend_top = bottom + 44
    height = legend_top + 56
    out = _open(plot_id, title, height, subtitle)
    out.append('<g class="x-axis">')
    for j, c in enumerate(cols):
        out.append(f'<text class="tick" x="{_f(left + (j + 0.5) * cw)}" y="{_f(top - 7)}" '
                   f'text-anchor="middle" fill="#444"><title>{_e(c)}</title>'
                   f'{_e(_clip(c, max(int(cw / _CHAR) - 1, 3)))}</text>')
    out.append(f'<text class="axis-label" x="{_f((left + right) / 2)}" y="{_f(bottom + 22)}" '
               f'text-anchor="middle" fill="#222">{_e(column_label)}</text>')
    out.append("</g>")
    out.append('<g class="y-axis">')
    for i, r in enumerate(rows):
        out.append(f'<text class="tick" x="{_f(left - 6)}" y="{_f(top + (i + 0.5) * ch + 4)}" '
                   f'text-anchor="end" fill="#444"><title>{_e(r)}</title>'
                   f'{_e(_clip(r, 24))}</text>')
    cy = (top + bottom) / 2
    out.append(f'<text class="axis-label" x="14" y="{_f(cy)}" text-anchor="middle" '
               f'transform="rotate(-90 14 {_f(cy)})" fill="#222">{_e(row_label)}</text>')
    out.append("</g>")
    out.append('<g class="cells">')
    for i, r in enumerate(rows):
        row_vals = list(values[i]) if i < len(values) else []
        for j, c in enumerate(cols):
            v = row_vals[j] if j < len(row_vals) else None
            ok = v is not None and math.isfinite(float(v)) and (float(v) > 0 or not scale.log)
            x, y = left + j * cw, top + i * ch
            fill = color_scale(t_of(float(v))) if ok else "#eeeeee"
            text = scale.fmt(float(v)) if ok else missing
            ink = "#ffffff" if ok and _luma(fill) < 0.55 else "#222222"
            tip = f"{row_label} {r}, {column_label} {c}: {text}"
            out.append(f'<rect x="{_f(x)}" y="{_f(y)}" width="{_f(cw)}" height="{_f(ch)}" '
                       f'fill="{fill}" stroke="#ffffff" stroke-width="1.5">'
                       f'<title>{_e(tip)}</title></rect>')
            out.append(f'<text class="cell" x="{_f(x + cw / 2)}" y="{_f(y + ch / 2 + 4)}" '
                       f'text-anchor="middle" font-size="11" fill="{ink}">'
                       f'{_e(_clip(text, max(int(cw / 6.0) - 1, 3)))}</text>')
    out.append("</g>")
    # the colour scale: a bar of swatches from the lowest to the highest value
    bar_l, bar_w, n = left, min(320.0, right - left), 48
    out.append('<g class="color-scale">')
    for k in range(n):
        out.append(f'<rect x="{_f(bar_l + k * bar_w / n)}" y="{_f(legend_top)}" '
                   f'width="{_f(bar_w / n + 0.6)}" height="12" '
                   f'fill="{color_scale((k + 0.5) / n)}"/>')
    out.append(f'<rect x="{_f(bar_l)}" y="{_f(legend_top)}" width="{_f(bar_w)}" height="12" '
               'fill="none" stroke="#999"/>')
    marks = [(0.0, vlo), (1.0, vhi)]
    if flat and vhi > vlo:
        mid = 10 ** ((lo + hi) / 2) if scale.log else (vlo + vhi) / 2
        marks.insert(1, (0.5, mid))
    for t, v in marks if flat else []:
        x = bar_l + t * bar_w
        out.append(f'<line x1="{_f(x)}" y1="{_f(legend_top + 12)}" x2="{_f(x)}" '
                   f'y2="{_f(legend_top + 16)}" stroke="#666"/>')
        out.append(f'<text class="tick" x="{_f(x)}" y="{_f(legend_top + 28)}" '
                   f'text-anchor="middle" fill="#444">{_e(scale.fmt(v))}</text>')
    out.append(f'<text class="axis-label" x="{_f(bar_l + bar_w + 12)}" '
               f'y="{_f(legend_top + 11)}" fill="#222">{_e(scale.label)}'
               f'{" (log scale)" if scale.log else ""}</text>')
    out.append("</g>")
    out += _close(caption)
    return "\n".join(out)


# ------------------------------------------------------------------ Gantt

def gantt_chart(plot_id: str, title: str, lanes: Sequence[str],
                bars: Sequence[tuple[int, float, float, str, str]], axis: Axis,
                colors: dict[str, str], *, subtitle: str | None = None,
                caption: str | None = None) -> str:
    """One row per lane; bars (lane, start, duration, name, category) coloured by category,
    named inside when they are wide enough, with a tooltip each."""
    span = max((s + d for _, s, d, _, _ in bars), default=0.0) or 1.0
    lo, ticks, hi = Axis(axis.label, axis.fmt, False, 0.0, span, exact=True).domain([])
    label_chars = min(max((len(str(lane)) for lane in lanes), default=4), 36)
    left = 20 + label_chars * _CHAR + 8
    right = WIDTH - 20
    cats = list(dict.fromkeys(c for *_, c in bars))
    legend_items = [(c, colors.get(c, "#999")) for c in cats]
    head = _TITLE_H + (18 if subtitle else 0) + 8
    top = head + _legend_height(legend_items, left) + 8
    row = 22.0
    bottom = top + row * max(len(lanes), 1)
    height = bottom + 44
    sx = _mapper(lo, hi, left, right, False)
    out = _open(plot_id, title, height, subtitle)
    out += _legend(legend_items, left, head + 12)
    out += _x_axis(ticks, sx, bottom, top, axis.fmt, axis.label, left, right)
    out.append('<g class="lanes">')
    for i, lane in enumerate(lanes):
        y0 = top + i * row
        if i % 2:
            out.append(f'<rect x="{_f(left)}" y="{_f(y0)}" width="{_f(right - left)}" '
                       f'height="{_f(row)}" fill="#f6f6f6"/>')
        out.append(f'<text class="category" x="{_f(left - 6)}" y="{_f(y0 + row / 2 + 4)}" '
                   f'text-anchor="end" fill="#222"><title>{_e(lane)}</title>'
                   f'{_e(_clip(lane, 36))}</text>')
    out.append("</g>")
    out.append('<g class="bars">')
    for lane, start, dur, name, cat in bars:
        x0, x1 = sx(start), sx(start + dur)
        y0 = top + lane * row + 3
        w = max(x1 - x0, 0.6)
        color = colors.get(cat, "#999")
        tip = f"{name} ({cat}): {axis.fmt(start)} + {axis.fmt(dur)}"
        out.append(f'<rect x="{_f(x0)}" y="{_f(y0)}" width="{_f(w)}" height="{_f(row - 6)}" '
                   f'fill="{color}" stroke="#fff" stroke-width="0.5"><title>{_e(tip)}</title>'
                   '</rect>')
        if name and w > len(name) * 6.0 + 6:
            out.append(f'<text x="{_f(x0 + w / 2)}" y="{_f(y0 + row / 2 + 1)}" '
                       f'text-anchor="middle" font-size="10" fill="#fff">{_e(name)}</text>')
    out.append("</g>")
    out += _close(caption)
    return "\n".join(out)
