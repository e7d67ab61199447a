"""A result document as GitHub-flavoured Markdown (fit for ``$GITHUB_STEP_SUMMARY``): a title,
the facts, then one section per part of the document present, each a table.

Every string from the document is escaped for a table cell: pipes, backslashes, Markdown
emphasis and link characters, HTML (``<``, ``>``, ``&``), and newlines.
"""

from __future__ import annotations

import re
from typing import Any

from archcost.report.tables import Report, Table, build_report
from archcost.report.timeline import Timeline

__all__ = ["escape", "table", "render", "to_markdown"]

_SPECIAL = re.compile(r"([\\`*_\[\]|~#])")


def escape(text: Any) -> str:
    """``text`` as literal inline Markdown, safe inside a table cell."""
    s = str(text)
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    s = _SPECIAL.sub(r"\\\1", s)
    s = re.sub(r"\s*[\r\n\u2028\u2029]+\s*", " ", s)
    return s.strip() or " "


def table(t: Table) -> str:
    """A GFM table: header row, separator row, one row per entry."""
    align = t.alignment()
    sep = ["---:" if align[i:i + 1] == "r" else ":---" for i in range(len(t.columns))]
    lines = ["| " + " | ".join(escape(c) for c in t.columns) + " |",
             "| " + " | ".join(sep) + " |"]
    for row in t.rows:
        cells = list(row) + [""] * (len(t.columns) - len(row))
        lines.append("| " + " | ".join(escape(c) for c in cells[:len(t.columns)]) + " |")
    return "\n".join(lines)


def render(rep: Report) -> str:
    out = [f"# {escape(rep.title)}", ""]
    for key, value in rep.facts:
        out.append(f"- **{escape(key)}**: {escape(value)}")
    if rep.facts:
        out.append("")
    for t in rep.tables:
        out += [f"## {escape(t.title)}", "", table(t), ""]
        if t.note:
            out += [f"_{escape(t.note)}_", ""]
    return "\n".join(out).rstrip() + "\n"


def to_markdown(doc: dict[str, Any], timeline: Timeline | None = None) -> str:
    """The Markdown report of a checked result document (and its pipeline timeline)."""
    return render(build_report(doc, timeline))
