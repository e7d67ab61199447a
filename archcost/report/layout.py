"""Text on the SVG plots: how wide a label is, wrapping at whole tokens, clipping with an
ellipsis, and placing point labels where they overlap nothing already drawn.

Widths are the advance widths of DejaVu Sans, as headless Chromium lays it out (measured per
character at 100px, ``getComputedTextLength``); DejaVu Sans is the default sans-serif of most
Linux systems and wider than Helvetica, Arial, Segoe UI or San Francisco, so a label sized with
it fits in those too. NB: characters outside the table count 0.7 em (1 em when East Asian wide).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["ASCENT", "DESCENT", "LINE", "Box", "text_width", "clip", "wrap", "text_box",
           "place_labels", "Placed"]

# em widths of DejaVu Sans, measured in Chromium (see the module docstring)
_GROUPS = {0.275: "'", 0.278: "ijl", 0.295: "IJ", 0.318: " ,.\u00b7", 0.337: "/:;\\|",
           0.344: "f", 0.361: "-", 0.39: "()[]", 0.392: "t", 0.395: "r", 0.401: "!",
           0.46: '"', 0.5: "*_`\u2013", 0.521: "s", 0.525: "z", 0.531: "?", 0.55: "c",
           0.557: "L", 0.575: "F", 0.579: "k", 0.592: "vxy", 0.595: "T", 0.603: "P",
           0.611: "Y", 0.612: "o", 0.613: "a", 0.615: "e", 0.632: "E", 0.634: "hnu",
           0.635: "Sbdgpq", 0.636: "$0123456789{}\u00b5", 0.656: "K", 0.684: "V",
           0.685: "XZ", 0.686: "B", 0.695: "R", 0.698: "C", 0.709: "A", 0.732: "U",
           0.748: "N", 0.752: "H", 0.77: "D", 0.775: "G", 0.78: "&", 0.787: "OQ",
           0.818: "w", 0.838: "#+<=>^~\u00d7\u2212", 0.863: "M", 0.95: "%", 0.974: "m",
           0.989: "W", 1.0: "@\u2014\u2026"}
_EM = {ch: w for w, chars in _GROUPS.items() for ch in chars}
_BOLD = 1.10  # font-weight 600 over regular, same measurement
ASCENT, DESCENT = 0.93, 0.24  # of the font's em: a text's box runs baseline - 0.93 to + 0.24
LINE = 1.25  # line pitch of wrapped labels, in em (more than ASCENT + DESCENT: no overlap)


def _em(ch: str) -> float:
    w = _EM.get(ch)
    if w is not None:
        return w
    return 1.0 if unicodedata.east_asian_width(ch) in ("W", "F") else 0.7


def text_width(text: str, size: float = 12.0, bold: bool = False) -> float:
    """Width in px of ``text`` at font size ``size``."""
    return sum(_em(c) for c in str(text)) * size * (_BOLD if bold else 1.0)


def clip(text: str, width: float, size: float = 12.0, bold: bool = False) -> str:
    """``text``, cut with an ellipsis to fit ``width`` px."""
    text = str(text)
    if text_width(text, size, bold) <= width:
        return text
    room = width - text_width("\u2026", size, bold)
    out = ""
    for ch in text:
        if text_width(out + ch, size, bold) > room:
            break
        out += ch
    return out + "\u2026"


def _tokens(text: str) -> list[str]:
    """``text`` split after each comma or space, each piece keeping its separator."""
    out, cur = [], ""
    for ch in text:
        cur += ch
        if ch in ", ":
            out.append(cur)
            cur = ""
    if cur:
        out.append(cur)
    return out


def wrap(text: str, width: float, size: float = 12.0, max_lines: int = 3) -> list[str]:
    """``text`` in lines of at most ``width`` px, broken after commas and spaces only (a plan
    string never splits inside ``gbs=512``); a token wider than a line, or what is left past
    ``max_lines``, is clipped with an ellipsis."""
    lines: list[str] = []
    cur = ""
    for tok in _tokens(str(text)):
        if cur and text_width((cur + tok).rstrip(), size) > width:
            lines.append(cur.rstrip())
            cur = ""
        cur += tok
    if cur.strip() or not lines:
        lines.append(cur.rstrip())
    if len(lines) > max_lines:
        lines = lines[:max_lines - 1] + [" ".join(lines[max_lines - 1:])]
    return [clip(line, width, size) for line in lines]


@dataclass(frozen=True)
class Box:
    x0: float
    y0: float
    x1: float
    y1: float

    def overlaps(self, other: Box, pad: float = 0.0) -> bool:
        return (min(self.x1, other.x1) - max(self.x0, other.x0) > -pad
                and min(self.y1, other.y1) - max(self.y0, other.y0) > -pad)

    def inside(self, other: Box) -> bool:
        return (self.x0 >= other.x0 and self.y0 >= other.y0 and self.x1 <= other.x1
                and self.y1 <= other.y1)


def text_box(x: float, y: float, lines: Sequence[str], size: float, anchor: str = "start"
             ) -> Box:
    """The box of ``lines`` drawn from baseline ``y`` (first line) at ``x`` with
    ``text-anchor`` ``anchor``, lines ``LINE`` em apart."""
    w = max((text_width(line, size) for line in lines), default=0.0)
    x0 = x if anchor == "start" else x - w if anchor == "end" else x - w / 2
    return Box(x0, y - ASCENT * size, x0 + w,
               y + (len(lines) - 1) * LINE * size + DESCENT * size)


@dataclass(frozen=True)
class Placed:
    x: float  # of the first line's baseline, at the anchor
    y: float
    anchor: str  # start, middle, end
    box: Box
    leader: tuple[float, float, float, float] | None  # a line from the point to the label


def _candidates(cx: float, cy: float, r: float, w: float, h: float, size: float):
    """Label positions around a point of radius r, nearest first: right, left, above, below,
    the four corners, then the same farther out (with a leader line)."""
    a = ASCENT * size
    for d in (0.0, 14.0, 30.0, 50.0):
        g = r + 3 + d
        for anchor, x, top in (("start", cx + g, cy - h / 2), ("end", cx - g, cy - h / 2),
                               ("middle", cx, cy - g - h), ("middle", cx, cy + g),
                               ("start", cx + g * 0.7, cy - g * 0.7 - h),
                               ("end", cx - g * 0.7, cy - g * 0.7 - h),
                               ("start", cx + g * 0.7, cy + g * 0.7),
                               ("end", cx - g * 0.7, cy + g * 0.7)):
            yield anchor, x, top + a, d > 0


def place_labels(points: Sequence[tuple[float, float, float]],
                 labels: Sequence[Sequence[str]], size: float, area: Box,
                 avoid: Sequence[Box] = ()) -> list[Placed | None]:
    """A position for each label (its lines) next to its point ``(cx, cy, r)``, in the order
    given (put the most important first): inside ``area``, clear of every other point, of the
    boxes in ``avoid`` and of the labels already placed (3px apart). None where no candidate
    position is free: say so beside the plot."""
    circles = [Box(cx - r, cy - r, cx + r, cy + r) for cx, cy, r in points]
    taken: list[Box] = list(avoid)
    out: list[Placed | None] = []
    for i, ((cx, cy, r), lines) in enumerate(zip(points, labels)):
        if not lines:
            out.append(None)
            continue
        probe = text_box(0.0, 0.0, lines, size)
        w, h = probe.x1 - probe.x0, probe.y1 - probe.y0
        found = None
        for anchor, x, y, far in _candidates(cx, cy, r, w, h, size):
            box = text_box(x, y, lines, size, anchor)
            if not box.inside(area) or any(box.overlaps(b, 3.0) for b in taken):
                continue
            if any(box.overlaps(c, 1.0) for j, c in enumerate(circles) if j != i):
                continue
            leader = None
            if far:  # from the point's edge towards the box's nearest side
                tx = min(max(cx, box.x0), box.x1)
                ty = min(max(cy, box.y0), box.y1)
                d = max(((tx - cx) ** 2 + (ty - cy) ** 2) ** 0.5, 1e-9)
                leader = (cx + (tx - cx) * r / d, cy + (ty - cy) * r / d, tx, ty)
            found = Placed(x, y, anchor, box, leader)
            break
        if found:
            taken.append(found.box)
        out.append(found)
    return out
