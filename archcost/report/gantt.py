"""The Gantt chart of a pipeline timeline: one row per lane (a rank's compute, its
communication), bars coloured by category (forward, backward, sends, bubble, ...).

A long schedule has thousands of micro-batch bars, each far narrower than a pixel: drawn as
they are they read as idle. So runs of bars narrower than ``MIN_BAR_PX`` with gaps under it
between them are merged into one block (``merge_thin``), drawn across the run with its height
split by the share of the run's time each category took, top down in legend order (the rest
of the height, left empty at the bottom, is idle time inside the run); a lone thin bar is widened to ``MIN_BAR_PX``. The legend and the
footnote say when either happened; every block's tooltip gives its counts and seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from archcost.report.frame import (
    FONT,
    MIN_BAR_PX,
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
)
from archcost.report.layout import clip, text_width

__all__ = ["Block", "merge_thin", "gantt_chart"]

_ROW = 22.0
_BAR_H = _ROW - 6
_MIN_STRIPE = 2.0  # px of height a category present in a merged block keeps


@dataclass(frozen=True)
class Block:
    """What is drawn for one bar, or for a run of thin bars merged."""

    lane: int
    start: float  # seconds
    end: float
    busy: tuple[tuple[str, float], ...]  # (category, seconds) in order of first appearance
    count: int  # bars in it
    name: str  # the bar's name when it is one bar


def merge_thin(bars: Sequence[tuple[int, float, float, str, str]], thin_s: float
               ) -> list[Block]:
    """Blocks of ``bars`` (lane, start, duration, name, category): a bar at least ``thin_s``
    long is its own block; consecutive bars of a lane shorter than that, with gaps shorter
    than that between them, make one block."""
    by_lane: dict[int, list[tuple[int, float, float, str, str]]] = {}
    for b in bars:
        by_lane.setdefault(b[0], []).append(b)
    out: list[Block] = []

    def flush(run: list) -> None:
        if not run:
            return
        busy: dict[str, float] = {}
        for _, _, dur, _, cat in run:
            busy[cat] = busy.get(cat, 0.0) + dur
        out.append(Block(run[0][0], run[0][1], max(s + d for _, s, d, _, _ in run),
                         tuple(busy.items()), len(run), run[0][3] if len(run) == 1 else ""))

    for lane in sorted(by_lane):
        run: list = []
        run_end = 0.0
        for b in sorted(by_lane[lane], key=lambda b: (b[1], b[2])):
            _, start, dur, name, cat = b
            if dur < thin_s:
                if run and start - run_end >= thin_s:
                    flush(run)
                    run = []
                run.append(b)
                run_end = max(run_end, start + dur) if len(run) > 1 else start + dur
            else:
                flush(run)
                run = []
                out.append(Block(lane, start, start + dur, ((cat, dur),), 1, name))
        flush(run)
    return out


def _stripes(block: Block, height: float, order: dict[str, int]) -> list[tuple[str, float]]:
    """(category, px of height) of a merged block, top to bottom in legend ``order``: each
    category's share of the block's span, at least ``_MIN_STRIPE`` each, at most ``height``
    in all."""
    span = max(block.end - block.start, 1e-300)
    busy = sorted(block.busy, key=lambda cs: order.get(cs[0], len(order)))
    hs = [(cat, max(height * min(sec / span, 1.0), _MIN_STRIPE)) for cat, sec in busy]
    total = sum(h for _, h in hs)
    if total > height:
        hs = [(c, h * height / total) for c, h in hs]
    return hs


def gantt_chart(plot_id: str, title: str, lanes: Sequence[str],
                bars: Sequence[tuple[int, float, float, str, str]], axis: Axis,
                colors: dict[str, str], *, subtitle: str | None = None) -> str:
    """One row per lane; bars (lane, start, duration, name, category) coloured by category,
    named inside when they are wide enough, with a tooltip each; thin bars merged or widened
    as the module docstring says."""
    span = max((s + d for _, s, d, _, _ in bars), default=0.0) or 1.0
    lo, ticks, hi = Axis(axis.label, axis.fmt, False, 0.0, span, exact=True).domain([])
    label_w = min(max((text_width(str(lane), FONT) for lane in lanes), default=24.0), 260.0)
    left = 20 + label_w + 8
    right = WIDTH - 20
    sx = mapper(lo, hi, left, right, False)
    blocks = merge_thin(bars, MIN_BAR_PX * (hi - lo) / (right - left))
    merged = [b for b in blocks if b.count > 1]
    widened = any(b.count == 1 and sx(b.end) - sx(b.start) < MIN_BAR_PX for b in blocks)
    cats = list(dict.fromkeys(c for *_, c in bars))
    order = {c: i for i, c in enumerate(cats)}
    legend_items: list[tuple[str, ...]] = [(c, colors.get(c, "#999")) for c in cats]
    notes = []
    if merged:
        mixed = next((b for b in merged if len(b.busy) > 1), merged[0])
        pair = [colors.get(c, "#999") for c, _ in _stripes(mixed, 1.0, order)[:2]]
        legend_items.append((f"merged bars under {MIN_BAR_PX:g} px: height by share of time",
                             ",".join((pair * 2)[:2]), "stripes"))
        notes.append(f"{sum(b.count for b in merged):,} bars narrower than {MIN_BAR_PX:g} px "
                     f"are merged into {len(merged):,} blocks; a block's height is split by "
                     "each category's share of its time, the empty rest is idle")
    if widened:
        notes.append(f"lone bars under {MIN_BAR_PX:g} px are drawn {MIN_BAR_PX:g} px wide")
    note = "; ".join(notes) or None
    head = head_height(subtitle)
    top = head + legend_height(legend_items, left) + 8
    bottom = top + _ROW * max(len(lanes), 1)
    height = bottom + X_AXIS_BELOW + note_height(note)
    out = open_figure(plot_id, title, height, subtitle)
    out += legend(legend_items, left, head + 12)
    out += x_axis(ticks, sx, bottom, top, axis.fmt, axis.label, left, right)
    out.append('<g class="lanes">')
    for i, lane in enumerate(lanes):
        y0 = top + i * _ROW
        if i % 2:
            out.append(f'<rect x="{num(left)}" y="{num(y0)}" width="{num(right - left)}" '
                       f'height="{num(_ROW)}" fill="#f6f6f6"/>')
        out.append(f'<text class="category" x="{num(left - 6)}" y="{num(y0 + _ROW / 2 + 4)}" '
                   f'text-anchor="end" fill="#222"><title>{esc(lane)}</title>'
                   f'{esc(clip(str(lane), 260.0))}</text>')
    out.append("</g>")
    out.append('<g class="bars">')
    names = []
    for b in blocks:
        x0 = sx(b.start)
        w = max(sx(b.end) - x0, MIN_BAR_PX)
        y0 = top + b.lane * _ROW + 3
        if b.count == 1:
            cat, dur = b.busy[0]
            tip = f"{b.name} ({cat}): {axis.fmt(b.start)} + {axis.fmt(dur)}"
            out.append(f'<rect x="{num(x0)}" y="{num(y0)}" width="{num(w)}" '
                       f'height="{num(_BAR_H)}" fill="{colors.get(cat, "#999")}" stroke="#fff" '
                       f'stroke-width="0.5"><title>{esc(tip)}</title></rect>')
            if b.name and w > text_width(b.name, 10) + 6:
                names.append(f'<text x="{num(x0 + w / 2)}" y="{num(y0 + _ROW / 2 + 1)}" '
                             f'text-anchor="middle" font-size="10" fill="#fff">'
                             f'{esc(b.name)}</text>')
            continue
        span = b.end - b.start
        parts = ", ".join(f"{c} {axis.fmt(s)} ({s / span:.0%})" for c, s in b.busy)
        tip = (f"{b.count:,} bars merged, {axis.fmt(b.start)} to {axis.fmt(b.end)}: {parts}; "
               f"idle {axis.fmt(max(span - sum(s for _, s in b.busy), 0.0))}")
        yb = y0
        for cat, h in _stripes(b, _BAR_H, order):
            out.append(f'<rect x="{num(x0)}" y="{num(yb)}" width="{num(w)}" height="{num(h)}" '
                       f'fill="{colors.get(cat, "#999")}"><title>{esc(tip)}</title></rect>')
            yb += h
    out.append("</g>")
    out += names
    out += footnote(note, bottom + X_AXIS_BELOW + 8)
    out += close_figure()
    return "\n".join(out)
