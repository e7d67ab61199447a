"""The heatmap chart (step time over two swept parameters): a grid of cells coloured by value,
each labelled, with its colour scale below. Frame, axes and escaping as in ``frame``."""

from __future__ import annotations

import math
from collections.abc import Sequence

from archcost.report.frame import (
    FONT,
    SEQUENTIAL,
    WIDTH,
    Axis,
    close_figure,
    esc,
    head_height,
    num,
    open_figure,
)
from archcost.report.layout import clip, text_width

__all__ = ["heatmap_chart", "color_scale"]


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
                  column_label: str, missing: str = "-", subtitle: str | None = None) -> str:
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

    row_w = min(max((text_width(r, FONT) for r in rows), default=24.0), 160.0)
    left = 36 + row_w + 8
    right = WIDTH - 24
    head = head_height(subtitle)
    top = head + 22  # column tick labels above the grid
    cw = (right - left) / max(len(cols), 1)
    ch = 34.0
    bottom = top + ch * max(len(rows), 1)
    legend_top = bottom + 44
    height = legend_top + 56
    out = open_figure(plot_id, title, height, subtitle)
    out.append('<g class="x-axis">')
    for j, c in enumerate(cols):
        out.append(f'<text class="tick" x="{num(left + (j + 0.5) * cw)}" y="{num(top - 7)}" '
                   f'text-anchor="middle" fill="#444"><title>{esc(c)}</title>'
                   f'{esc(clip(c, cw - 6))}</text>')
    out.append(f'<text class="axis-label" x="{num((left + right) / 2)}" y="{num(bottom + 22)}" '
               f'text-anchor="middle" fill="#222">{esc(column_label)}</text>')
    out.append("</g>")
    out.append('<g class="y-axis">')
    for i, r in enumerate(rows):
        out.append(f'<text class="tick" x="{num(left - 6)}" y="{num(top + (i + 0.5) * ch + 4)}" '
                   f'text-anchor="end" fill="#444"><title>{esc(r)}</title>'
                   f'{esc(clip(r, 160.0))}</text>')
    cy = (top + bottom) / 2
    out.append(f'<text class="axis-label" x="14" y="{num(cy)}" text-anchor="middle" '
               f'transform="rotate(-90 14 {num(cy)})" fill="#222">{esc(row_label)}</text>')
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
            out.append(f'<rect x="{num(x)}" y="{num(y)}" width="{num(cw)}" height="{num(ch)}" '
                       f'fill="{fill}" stroke="#ffffff" stroke-width="1.5">'
                       f'<title>{esc(tip)}</title></rect>')
            out.append(f'<text class="cell" x="{num(x + cw / 2)}" y="{num(y + ch / 2 + 4)}" '
                       f'text-anchor="middle" font-size="11" fill="{ink}">'
                       f'{esc(clip(text, cw - 6, 11))}</text>')
    out.append("</g>")
    # the colour scale: a bar of swatches from the lowest to the highest value
    bar_l, bar_w, n = left, min(320.0, right - left), 48
    out.append('<g class="color-scale">')
    for k in range(n):
        out.append(f'<rect x="{num(bar_l + k * bar_w / n)}" y="{num(legend_top)}" '
                   f'width="{num(bar_w / n + 0.6)}" height="12" '
                   f'fill="{color_scale((k + 0.5) / n)}"/>')
    out.append(f'<rect x="{num(bar_l)}" y="{num(legend_top)}" width="{num(bar_w)}" height="12" '
               'fill="none" stroke="#999"/>')
    marks = [(0.0, vlo), (1.0, vhi)]
    if flat and vhi > vlo:
        mid = 10 ** ((lo + hi) / 2) if scale.log else (vlo + vhi) / 2
        marks.insert(1, (0.5, mid))
    for t, v in marks if flat else []:
        x = bar_l + t * bar_w
        out.append(f'<line x1="{num(x)}" y1="{num(legend_top + 12)}" x2="{num(x)}" '
                   f'y2="{num(legend_top + 16)}" stroke="#666"/>')
        out.append(f'<text class="tick" x="{num(x)}" y="{num(legend_top + 28)}" '
                   f'text-anchor="middle" fill="#444">{esc(scale.fmt(v))}</text>')
    out.append(f'<text class="axis-label" x="{num(bar_l + bar_w + 12)}" '
               f'y="{num(legend_top + 11)}" fill="#222">{esc(scale.label)}'
               f'{" (log scale)" if scale.log else ""}</text>')
    out.append("</g>")
    out += close_figure()
    return "\n".join(out)


