"""Layout of a report's plots as headless Chromium lays them out: the box of every ``<text>``
(``getBoundingClientRect``, so rotated labels count as drawn), of every bar (``<rect>`` under
``g.bars``) and of every legend piece, in SVG user units. ``problems`` lists what a reader
would stumble on: texts that overlap, texts cut by the plot's edge, bars too thin to see,
legend swatches touching a neighbouring name.

The page under test gets a measuring script appended (and its Content Security Policy widened
to run it); what the script finds comes back in the DOM Chromium dumps.
"""

from __future__ import annotations

import html
import json
import re
from itertools import combinations
from pathlib import Path

MIN_BAR_PX = 2.0  # the thinnest bar a reader sees at a glance
SLACK = 0.5  # px of overlap tolerated between two text boxes (anti-aliasing, rounding)
LEGEND_GAP = 2.0  # px every legend piece keeps from the next one's box, each side

_SCRIPT = r"""
<script>
(() => {
  const out = [];
  for (const fig of document.querySelectorAll('figure.plot')) {
    const svg = fig.querySelector('svg');
    const box = svg.getBoundingClientRect();
    const k = svg.viewBox.baseVal.width / box.width;
    const rel = r => [(r.left - box.left) * k, (r.top - box.top) * k,
                      (r.right - box.left) * k, (r.bottom - box.top) * k];
    const own = t => [...t.childNodes].filter(n => n.nodeName !== 'title')
                                      .map(n => n.textContent).join('');
    out.push({
      id: fig.dataset.plot, width: svg.viewBox.baseVal.width,
      height: svg.viewBox.baseVal.height,
      texts: [...svg.querySelectorAll('text')].map(t => ({
        text: own(t), cls: t.getAttribute('class') || '',
        box: rel(t.getBoundingClientRect())})).filter(t => t.text.trim()),
      bars: [...svg.querySelectorAll('g.bars rect')].map(r => ({
        width: r.getBoundingClientRect().width * k,
        tip: (r.querySelector('title') || {}).textContent || ''})),
      legend: [...svg.querySelectorAll('g.legend > *')].map(e => ({
        tag: e.tagName, text: e.tagName === 'text' ? own(e) : '',
        box: rel(e.getBoundingClientRect())})),
    });
  }
  const pre = document.createElement('pre');
  pre.id = 'layout-json';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>
"""


def measurable(page: str) -> str:
    """``page`` with the measuring script, its policy allowing inline scripts."""
    assert "default-src 'none'" in page and "</body>" in page
    page = page.replace("default-src 'none';", "default-src 'none'; script-src 'unsafe-inline';")
    return page.replace("</body>", _SCRIPT + "</body>")


def measure(page: str, tmp_path: Path) -> list[dict]:
    """Every plot of the HTML ``page`` as Chromium lays it out."""
    from tests.test_report import render_dom

    path = tmp_path / "measured.html"
    path.write_text(measurable(page), encoding="utf-8")
    dom, console = render_dom(path, tmp_path / "profile-layout")
    assert not console, "\n".join(console)
    m = re.search(r'<pre id="layout-json">(.*?)</pre>', dom, re.S)
    assert m, "the measuring script did not run"
    return json.loads(html.unescape(m.group(1)))


def _overlap(a, b, slack: float = SLACK) -> bool:
    return min(a[2], b[2]) - max(a[0], b[0]) > slack and min(a[3], b[3]) - max(a[1], b[1]) > slack


def _grow(box, d: float):
    return [box[0] - d, box[1] - d, box[2] + d, box[3] + d]


def problems(figures: list[dict]) -> list[str]:
    """Overlapping texts, texts past the plot's edge, bars narrower than ``MIN_BAR_PX``,
    legend pieces closer than ``2 * LEGEND_GAP`` to each other; empty when none."""
    out = []
    for fig in figures:
        pid, w, h = fig["id"], fig["width"], fig["height"]
        texts = fig["texts"]
        for t in texts:
            x0, y0, x1, y1 = t["box"]
            if x0 < -SLACK or y0 < -SLACK or x1 > w + SLACK or y1 > h + SLACK:
                out.append(f"{pid}: text {t['text']!r} cut by the edge at "
                           f"{[round(v, 1) for v in t['box']]} (plot {w}x{h})")
        for a, b in combinations(texts, 2):
            if _overlap(a["box"], b["box"]):
                out.append(f"{pid}: texts overlap: {a['text']!r} {[round(v) for v in a['box']]}"
                           f" and {b['text']!r} {[round(v) for v in b['box']]}")
        for bar in fig["bars"]:
            if bar["width"] < MIN_BAR_PX - 0.01:
                out.append(f"{pid}: bar {bar['tip']!r} is {bar['width']:.2f} px wide "
                           f"(< {MIN_BAR_PX})")
        for a, b in combinations(fig["legend"], 2):
            if _overlap(_grow(a["box"], LEGEND_GAP), _grow(b["box"], LEGEND_GAP), 0.0):
                out.append(f"{pid}: legend pieces touch: {a['tag']} {a['text']!r} and "
                           f"{b['tag']} {b['text']!r}")
    return out
