"""Terminal layout: tables and sentences that fit the console's width without breaking a token.

Every table a command prints is a ``Grid`` and every sentence goes through ``say``; both wrap
to ``console.width`` (80 columns and up) by these rules:

- nothing breaks inside a token: a number stays with the word after it (``13.1 GiB``,
  ``64 GPUs``), a plan string wraps only after a comma, a metric, module or file name only
  after ``,`` ``:`` ``@`` ``.`` ``/``; a word wider than the whole line (a long path) is cut
  after those separators too, and a piece wider than the line anywhere (the last resort);
- no column is dropped or cut: when a table is wider than the console, the columns marked
  ``below`` (long text such as plan strings) move under it as a list keyed by the row's key
  column; if it is still too wide, its columns are spread over several tables, each repeating
  the key columns;
- tables are drawn with a rule under the header and no vertical borders (two spaces between
  columns), which leaves the width to the values.

Cells and sentences are plain text (never rich markup): names taken from a model or a document
print as they are.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

__all__ = ["Col", "Grid", "say", "say_parts", "wrap"]

_GAP = 2  # characters between two columns
_SEPARATORS = ",;:@/."
_PREFIXES = ("k", "M", "G", "T", "P", "E")
_NUMBER = re.compile(r"^[-+~<>(\[$]*\d[\d,.]*[%x]?[\])]?$")


def _tokens(text: str) -> list[str]:
    """Words, a number glued to the word after it ("13.1 GiB", "(8 GPUs,", and with a bare SI
    prefix the word after that: "1.76 M tokens/s")."""
    words = text.split()
    out: list[str] = []
    i = 0
    while i < len(words):
        j = i + 1
        if _NUMBER.match(words[i]) and j < len(words) and not _NUMBER.match(words[j]):
            j += 1
            if words[j - 1] in _PREFIXES and j < len(words):
                j += 1
        out.append(" ".join(words[i:j]))
        i = j
    return out


def _pieces(token: str) -> list[str]:
    """``token`` cut after each separator (a glued number and unit stays whole)."""
    if " " in token or _NUMBER.match(token):
        return [token]
    pieces, start = [], 0
    for i, ch in enumerate(token):
        if ch in _SEPARATORS and i + 1 < len(token) and token[i + 1] not in _SEPARATORS:
            pieces.append(token[start:i + 1])
            start = i + 1
    pieces.append(token[start:])
    return pieces


def _chop(piece: str, width: int) -> list[str]:
    """Last resort for a piece wider than the whole line."""
    return [piece[i:i + width] for i in range(0, len(piece), width)] or [""]


def wrap(text: str, width: int, *, fill: bool = False) -> list[str]:
    """Lines of at most ``width`` cells, broken between tokens. A token that does not fit on a
    line of its own is cut after its separators; with ``fill`` every token is (plan strings,
    metric and module names: the line fills up to its last comma)."""
    width = max(width, 1)
    lines: list[str] = []
    cur = ""
    for token in _tokens(text):
        sep = " " if cur else ""
        if cell_len(cur) + len(sep) + cell_len(token) <= width:
            cur += sep + token
            continue
        if not fill and cell_len(token) <= width:
            lines.append(cur)
            cur = token
            continue
        for j, piece in enumerate(_pieces(token)):
            joint = (" " if cur else "") if j == 0 else ""
            if cell_len(cur) + len(joint) + cell_len(piece) <= width:
                cur += joint + piece
                continue
            if cur:
                lines.append(cur)
            chunks = _chop(piece, width)
            lines.extend(chunks[:-1])
            cur = chunks[-1]
    lines.append(cur)
    return [line for line in lines if line] or [""]


def _lead(text: str) -> int:
    return len(text) - len(text.lstrip(" "))


def _need(text: str, mode: str) -> int:
    """The narrowest width ``text`` wraps to without cutting a piece."""
    if mode == "none":
        return cell_len(text)
    return _lead(text) + max((cell_len(p) for tok in _tokens(text) for p in _pieces(tok)),
                             default=0)


def _wrap_cell(text: str, width: int, mode: str) -> str:
    if mode == "none":
        return text
    lead = " " * _lead(text)
    return "\n".join(lead + line for line in wrap(text, width - len(lead), fill=mode == "list"))


def say(console: Console, text: str, style: str | None = None, indent: int = 0) -> None:
    """A sentence wrapped to the console at whole tokens; continuation lines indented."""
    pad = " " * indent
    for i, line in enumerate(wrap(text, console.width - (indent if text else 0))):
        console.print(Text((pad if i else "") + line, style=style or ""), soft_wrap=True)


def say_parts(console: Console, parts: Iterable[str], style: str | None = None) -> None:
    """Phrases separated by two spaces, a line broken only between phrases."""
    width = console.width
    cur = ""
    for part in parts:
        if cur and cell_len(cur) + 2 + cell_len(part) <= width:
            cur += "  " + part
            continue
        if cur:
            console.print(Text(cur, style=style or ""), soft_wrap=True)
        lines = wrap(part, width)
        for line in lines[:-1]:
            console.print(Text(line, style=style or ""), soft_wrap=True)
        cur = lines[-1]
    if cur:
        console.print(Text(cur, style=style or ""), soft_wrap=True)


@dataclass(frozen=True)
class Col:
    """A column: ``wrap`` is ``none`` (numbers, short names: never wrapped), ``words`` (text,
    wrapped between words) or ``list`` (plan strings, metric and module names: wrapped after
    ``,`` ``:`` ``@`` ``.``); ``key`` columns name the row and repeat in every part of a split
    table; ``below`` columns move under the table, keyed, when it is too wide."""

    header: str = ""
    align: str = "right"
    wrap: str = "none"
    key: bool = False
    below: bool = False


Cell = str | tuple[str, str] | None  # text, or (text, style)


class Grid:
    """A titled table laid out for the console's width (see the module docstring)."""

    def __init__(self, title: str | None, cols: Sequence[Col], *, header: bool = True,
                 notes: Sequence[str] = ()) -> None:
        self.title = title
        self.cols = list(cols)
        self.header = header
        self.notes = list(notes)
        self.rows: list[tuple[list[tuple[str, str]], str]] = []

    def row(self, *cells: Cell, style: str | None = None) -> None:
        if len(cells) != len(self.cols):
            raise ValueError(f"{len(cells)} cells for {len(self.cols)} columns")
        norm = []
        for c in cells:
            text, cstyle = (c if isinstance(c, tuple) else ("" if c is None else str(c), ""))
            text = str(text)
            lead = text[:len(text) - len(text.lstrip(" "))]  # indentation of a sub-row
            norm.append((lead + " ".join(text.split()), cstyle))
        self.rows.append((norm, style or ""))

    def note(self, text: str) -> None:
        self.notes.append(text)

    # ------------------------------------------------------------------ layout
    def _natural(self, i: int) -> int:
        head = cell_len(self.cols[i].header) if self.header else 0
        return max([head] + [cell_len(r[0][i][0]) for r in self.rows])

    def _min(self, i: int) -> int:
        head = cell_len(self.cols[i].header) if self.header else 0
        return max([head] + [_need(r[0][i][0], self.cols[i].wrap) for r in self.rows])

    def _widths(self, idx: list[int], width: int) -> list[int] | None:
        """Column widths for the columns ``idx`` within ``width``; None when they cannot fit."""
        gaps = _GAP * (len(idx) - 1)
        natural = [self._natural(i) for i in idx]
        if sum(natural) + gaps <= width:
            return natural
        widths = [self._min(i) for i in idx]
        spare = width - gaps - sum(widths)
        if spare < 0:
            return None
        # the columns closest to their natural width get it first (a short label stays on one
        # line), the longest text takes what is left
        for k in sorted(range(len(idx)), key=lambda k: natural[k] - widths[k]):
            grow = min(natural[k] - widths[k], spare)
            widths[k] += grow
            spare -= grow
        return widths

    def _parts(self, idx: list[int], width: int) -> list[tuple[list[int], list[int]]]:
        """(columns, widths) of each table the columns ``idx`` are spread over."""
        whole = self._widths(idx, width)
        if whole is not None:
            return [(idx, whole)]
        keys = [i for i in idx if self.cols[i].key]
        parts: list[list[int]] = []
        cur = list(keys)
        for i in idx:
            if i in keys:
                continue
            if len(cur) > len(keys) and self._widths(cur + [i], width) is None:
                parts.append(cur)
                cur = list(keys)
            cur.append(i)
        parts.append(cur)
        out = []
        for part in parts:
            w = self._widths(part, width)
            out.append((part, w if w is not None else [self._min(i) for i in part]))
        return out

    def print(self, console: Console) -> None:
        width = console.width
        idx = list(range(len(self.cols)))
        below: list[int] = []
        keys = [i for i in idx if self.cols[i].key]
        natural = sum(self._natural(i) for i in idx) + _GAP * (len(idx) - 1)
        if natural > width and keys:  # long text reads better in full lines under the table
            below = [i for i in idx if self.cols[i].below]
            idx = [i for i in idx if i not in below]
        if self.title:
            say(console, self.title, style="bold")
        parts = self._parts(idx, width)
        for n, (cols, widths) in enumerate(parts):
            if n:
                say(console, f"({self.title or 'table'}, continued)", style="bold")
            console.print(self._table(cols, widths), soft_wrap=True)
        for i in below:
            sub = Grid(None, [Col(self.cols[k].header, self.cols[k].align) for k in keys]
                       + [Col(self.cols[i].header, "left", self.cols[i].wrap or "list")])
            for cells, style in self.rows:
                sub.row(*[cells[k] for k in keys], cells[i], style=style)
            sub.print(console)
        for text in self.notes:
            say(console, text, style="dim")

    def _table(self, cols: list[int], widths: list[int]) -> Table:
        tab = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True,
                    padding=(0, 1), show_header=self.header, header_style="bold", expand=False)
        for i, w in zip(cols, widths):
            c = self.cols[i]
            tab.add_column(Text(c.header), justify=c.align, no_wrap=True, width=w,
                           overflow="fold")
        for cells, style in self.rows:
            out = []
            for i, w in zip(cols, widths):
                text, cstyle = cells[i]
                out.append(Text(_wrap_cell(text, w, self.cols[i].wrap), style=cstyle))
            tab.add_row(*out, style=style or None)
        return tab
