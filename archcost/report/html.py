"""A result document as one self-contained HTML page: the facts, the plots (inline SVG from
``svg``) and the tables. No script, no stylesheet, font or image from elsewhere: a Content
Security Policy in the page forbids loading anything, so it reads the same offline.

Every string from the document is escaped with ``html.escape`` (the SVG charts do the same).
"""

from __future__ import annotations

from html import escape
from typing import Any

from archcost.report.plots import plots
from archcost.report.tables import Report, Table, build_report
from archcost.report.timeline import Timeline

__all__ = ["to_html", "render"]

_CSP = "default-src 'none'; style-src 'unsafe-inline'"

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       margin: 24px auto; max-width: 1100px; padding: 0 16px; color: #222; }
h1 { font-size: 1.5em; margin-bottom: 0.3em; }
h2 { font-size: 1.15em; margin-top: 1.6em; border-bottom: 1px solid #ddd; padding-bottom: 3px; }
dl.facts { display: grid; grid-template-columns: max-content auto; gap: 2px 14px; }
dl.facts dt { font-weight: 600; }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
figure.plot { margin: 18px 0; }
figure.plot svg { max-width: 100%; height: auto; border: 1px solid #e5e5e5; }
table { border-collapse: collapse; margin: 6px 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 3px 8px; }
th { background: #f4f4f4; }
td.r, th.r { text-align: right; font-variant-numeric: tabular-nums; }
td.l, th.l { text-align: left; }
p.note { color: #555; font-size: 0.85em; margin: 2px 0 0; }
nav a { margin-right: 10px; }
"""


def _e(text: Any) -> str:
    return escape(str(text), quote=True)


def _table(t: Table) -> str:
    align = t.alignment()
    cls = ["r" if align[i:i + 1] == "r" else "l" for i in range(len(t.columns))]
    out = [f'<section class="table" id="table-{_e(t.key)}">', f"<h2>{_e(t.title)}</h2>",
           "<table>", "<thead><tr>"]
    out += [f'<th class="{c}">{_e(col)}</th>' for c, col in zip(cls, t.columns)]
    out.append("</tr></thead><tbody>")
    for row in t.rows:
        cells = list(row) + [""] * (len(t.columns) - len(row))
        out.append("<tr>" + "".join(f'<td class="{c}">{_e(v)}</td>'
                                    for c, v in zip(cls, cells)) + "</tr>")
    out.append("</tbody></table>")
    if t.note:
        out.append(f'<p class="note">{_e(t.note)}</p>')
    out.append("</section>")
    return "\n".join(out)


def render(rep: Report, figures: list[tuple[str, str]]) -> str:
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           '<meta name="generator" content="archcost report">',
           f"<title>{_e(rep.title)}</title>", f"<style>{_STYLE}</style>", "</head>", "<body>",
           f"<h1>{_e(rep.title)}</h1>"]
    if rep.facts:
        out.append('<dl class="facts">')
        out += [f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in rep.facts]
        out.append("</dl>")
    if figures:
        out.append('<nav class="contents">' + "".join(
            f'<a href="#plot-{_e(pid)}">{_e(pid)}</a>' for pid, _ in figures)
            + '<a href="#tables">tables</a></nav>')
        out.append('<section class="plots" id="plots"><h2>Plots</h2>')
        out += [svg for _, svg in figures]
        out.append("</section>")
    out.append('<div id="tables">')
    out += [_table(t) for t in rep.tables]
    out.append("</div>")
    out += ["</body>", "</html>"]
    return "\n".join(out) + "\n"


def to_html(doc: dict[str, Any], timeline: Timeline | None = None) -> str:
    """The HTML page of a checked result document (and its pipeline timeline)."""
    return render(build_report(doc, timeline), plots(doc, timeline))
