"""What every SVG chart of a report shares: the palette, axes (linear, log, binary, swept
values as ticks) and their scales, the figure with its title and wrapped subtitle, legends,
and the two axes' ticks and labels. The charts themselves are in ``svg``, ``gantt`` and
``heatmap``.

Every text that reaches the SVG goes through ``html.escape``; sizes of texts come from
``layout.text_width``, so labels, legends and margins are laid out without overlapping.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

from archcost.report.fmt import sig as fmt_sig
from archcost.report.layout import clip, text_width, wrap

__all__ = ["PALETTE", "SEQUENTIAL", "WIDTH", "FONT", "MIN_BAR_PX", "Axis", "nice_ticks",
           "log_ticks", "mapper", "esc", "num", "head_lines", "head_height", "open_figure",
           "close_figure", "note_lines", "note_height", "footnote", "legend", "legend_height",
           "x_axis", "y_axis", "X_AXIS_BELOW"]

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2", "#edc948",
           "#9c755f", "#ff9da7", "#bab0ac")
# light to dark (ColorBrewer "Blues"): heatmap cells, larger values darker
SEQUENTIAL = ("#f7fbff", "#deebf7", "#c6dbef", "#9ecae1", "#6baed6", "#4292c6", "#2171b5",
              "#08519c", "#08306b")
WIDTH = 760
FONT = 12
MIN_BAR_PX = 2.0  # a bar narrower than this is drawn this wide, and the plot says so
X_AXIS_BELOW = 44.0  # room under the x axis for its tick labels and its label
_TITLE_H = 26
_SUB_LINE = 16
_LEGEND_ROW = 20.0
_SWATCH = 12.0
_SWATCH_GAP = 5.0  # swatch to its name
_ITEM_GAP = 18.0  # a name to the next swatch
_LEGEND_TEXT = 300.0  # longest legend name, px
_NOTE_FONT = 11
_NOTE_LINE = 15


def esc(text) -> str:
    return escape(str(text), quote=True)


def num(v: float) -> str:
    """A coordinate: one decimal, no trailing zeros."""
    return f"{v:.1f}".rstrip("0").rstrip(".") if v == v else "0"


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
    ticks: Sequence[float] | None = None  # these ticks (e.g. swept values)

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


def mapper(lo: float, hi: float, a: float, b: float, log: bool) -> Callable[[float], float]:
    """Data to pixels: [lo, hi] onto [a, b], linear or in log10."""
    if log:
        llo, lhi = math.log10(lo), math.log10(hi)
        span = (lhi - llo) or 1.0
        return lambda v: a + (math.log10(max(v, 1e-300)) - llo) / span * (b - a)
    span = (hi - lo) or 1.0
    return lambda v: a + (v - lo) / span * (b - a)


# ------------------------------------------------------------------ the figure

def head_lines(subtitle: str | None) -> list[str]:
    """The subtitle in lines that fit the figure (whole words; at most three)."""
    return wrap(subtitle, WIDTH - 20, FONT) if subtitle else []


def head_height(subtitle: str | None) -> float:
    """Where the plot's content may start: below the title and the subtitle's lines."""
    return _TITLE_H + _SUB_LINE * len(head_lines(subtitle)) + 8


def open_figure(plot_id: str, title: str, height: float, subtitle: str | None) -> list[str]:
    pid = esc(plot_id)
    out = [f'<figure class="plot" id="plot-{pid}" data-plot="{pid}">',
           f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{num(height)}" '
           f'viewBox="0 0 {WIDTH} {num(height)}" role="img" aria-labelledby="plot-{pid}-title" '
           f'font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif" '
           f'font-size="{FONT}">',
           f'<title id="plot-{pid}-title">{esc(title)}</title>',
           f'<rect x="0" y="0" width="{WIDTH}" height="{num(height)}" fill="#ffffff"/>',
           f'<text class="plot-title" x="10" y="18" font-size="15" font-weight="600" '
           f'fill="#222">{esc(clip(title, WIDTH - 20, 15, bold=True))}</text>']
    for i, line in enumerate(head_lines(subtitle)):
        out.append(f'<text class="plot-subtitle" x="10" y="{36 + _SUB_LINE * i}" '
                   f'fill="#555">{esc(line)}</text>')
    return out


def close_figure() -> list[str]:
    return ["</svg>", "</figure>"]


def note_lines(note: str | None) -> list[str]:
    """A footnote under the plot (what was drawn other than as-is), in lines that fit."""
    return wrap(note, WIDTH - 20, _NOTE_FONT, max_lines=4) if note else []


def note_height(note: str | None) -> float:
    return _NOTE_LINE * len(note_lines(note)) + (4 if note else 0)


def footnote(note: str | None, y: float) -> list[str]:
    """The footnote's lines, the first baseline at ``y``."""
    return [f'<text class="note" x="10" y="{num(y + _NOTE_LINE * i)}" '
            f'font-size="{_NOTE_FONT}" fill="#555">{esc(line)}</text>'
            for i, line in enumerate(note_lines(note))]


def _legend_layout(items: Sequence[tuple[str, ...]], x: float) -> list[tuple[float, int, str]]:
    """(x, row, shown name) of each legend item, rows wrapping at the figure's width."""
    out, cx, row = [], x, 0
    for item in items:
        name = clip(item[0], _LEGEND_TEXT, FONT)
        w = _SWATCH + _SWATCH_GAP + text_width(name, FONT) + _ITEM_GAP
        if cx + w - _ITEM_GAP > WIDTH - 10 and cx > x:
            cx, row = x, row + 1
        out.append((cx, row, name))
        cx += w
    return out


def legend(items: Sequence[tuple[str, ...]], x: float, y: float, shape: str = "rect"
           ) -> list[str]:
    """Rows of swatches (rect, circle, line, dash, or stripes: two colours split in height)
    with their names, wrapping at the figure's width; ``y`` is the first row's baseline."""
    out = ['<g class="legend">']
    for item, (cx, row, name) in zip(items, _legend_layout(items, x)):
        color = item[1]
        kind = item[2] if len(item) > 2 else shape
        cy = y + row * _LEGEND_ROW
        if kind == "circle":
            out.append(f'<circle cx="{num(cx + 6)}" cy="{num(cy - 4)}" r="5" fill="{color}"/>')
        elif kind in ("line", "dash"):
            dash = ' stroke-dasharray="4,2"' if kind == "dash" else ""
            out.append(f'<line x1="{num(cx)}" y1="{num(cy - 4)}" x2="{num(cx + _SWATCH)}" '
                       f'y2="{num(cy - 4)}" stroke="{color}" stroke-width="2"{dash}/>')
        elif kind == "stripes":  # color is "top,bottom"
            top, bottom = color.split(",")
            out.append(f'<g><rect x="{num(cx)}" y="{num(cy - 10)}" width="{_SWATCH:g}" '
                       f'height="6" fill="{top}"/><rect x="{num(cx)}" y="{num(cy - 4)}" '
                       f'width="{_SWATCH:g}" height="6" fill="{bottom}"/></g>')
        else:
            out.append(f'<rect x="{num(cx)}" y="{num(cy - 10)}" width="{_SWATCH:g}" '
                       f'height="{_SWATCH:g}" fill="{color}"/>')
        out.append(f'<text x="{num(cx + _SWATCH + _SWATCH_GAP)}" y="{num(cy)}" fill="#333">'
                   f'{esc(name)}</text>')
    out.append("</g>")
    return out


def legend_height(items: Sequence[tuple[str, ...]], x: float) -> float:
    if not items:
        return 0.0
    return (1 + max(row for _, row, _ in _legend_layout(items, x))) * _LEGEND_ROW


def x_axis(ticks: list[float], sx, y: float, top: float, fmt, label: str, left: float,
           right: float) -> list[str]:
    """Grid lines, tick labels under the axis at ``y`` (clear of the y axis's lowest tick
    label), and the axis label below them."""
    out = ['<g class="x-axis">']
    for t in ticks:
        x = sx(t)
        out.append(f'<line x1="{num(x)}" y1="{num(top)}" x2="{num(x)}" y2="{num(y)}" '
                   'stroke="#e3e3e3"/>')
        text = fmt(t)
        half = text_width(text, FONT) / 2
        # the outermost labels stay inside the figure
        cx = min(max(x, half + 2), WIDTH - half - 2)
        out.append(f'<text class="tick" x="{num(cx)}" y="{num(y + 19)}" text-anchor="middle" '
                   f'fill="#444">{esc(text)}</text>')
    out.append(f'<line x1="{num(left)}" y1="{num(y)}" x2="{num(right)}" y2="{num(y)}" '
               'stroke="#666"/>')
    out.append(f'<text class="axis-label" x="{num((left + right) / 2)}" y="{num(y + 37)}" '
               f'text-anchor="middle" fill="#222">{esc(clip(label, WIDTH - 20))}</text>')
    out.append("</g>")
    return out


def y_axis(ticks: list[float], sy, x: float, right: float, fmt, label: str, top: float,
           bottom: float) -> list[str]:
    out = ['<g class="y-axis">']
    for t in ticks:
        y = sy(t)
        out.append(f'<line x1="{num(x)}" y1="{num(y)}" x2="{num(right)}" y2="{num(y)}" '
                   'stroke="#e3e3e3"/>')
        out.append(f'<text class="tick" x="{num(x - 6)}" y="{num(y + 4)}" text-anchor="end" '
                   f'fill="#444">{esc(fmt(t))}</text>')
    out.append(f'<line x1="{num(x)}" y1="{num(top)}" x2="{num(x)}" y2="{num(bottom)}" '
               'stroke="#666"/>')
    cy = (top + bottom) / 2
    out.append(f'<text class="axis-label" x="14" y="{num(cy)}" text-anchor="middle" '
               f'transform="rotate(-90 14 {num(cy)})" fill="#222">'
               f'{esc(clip(label, bottom - top + 30))}</text>')
    out.append("</g>")
    return out
