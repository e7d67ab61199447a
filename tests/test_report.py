"""``archcost report``: Markdown with a table per section, a self-contained HTML page whose
plots headless Chromium renders without a console error, user strings escaped everywhere."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest

from archcost.cli import app
from archcost.report import load_document, load_trace, to_html, to_markdown
from archcost.report.timeline import from_trace
from tests._layout import measure, problems
from tests._report_docs import HOSTILE, hostile, load, report_docs  # noqa: F401 (fixture)

# the plots each kind of document gets (ids are data-plot attributes)
PLOTS = {
    "analysis": {"roofline", "memory", "time-phase", "time-module", "time-class"},
    "analysis-plain": {"memory", "flops-phase", "flops-module"},
    "plan": {"pareto", "ranking", "memory", "pipeline"},
    "estimate": {"components", "memory", "pipeline"},
    "validation": {"validation-time", "validation-bytes"},
}
SECTIONS = {
    "analysis": ["Totals", "FLOPs per phase", "Memory (one GPU)", "Step on h100-sxm",
                 "Time by phase", "Time by module", "Modules (to depth 2, by FLOPs)",
                 "Op classes (time and roofline)"],
    "analysis-plain": ["Totals", "FLOPs per phase", "Memory", "Modules (to depth 2, by FLOPs)",
                       "Op classes"],
    "plan": ["Plan ranking (by time)", "Best plan", "Best plan: components of the step "
             "(critical pipeline rank)", "Best plan: memory per GPU by pipeline rank",
             "Best plan: pipeline", "Best plan: collectives (critical rank)",
             "Pareto front (step time, memory per GPU, GPUs)", "Search"],
    "estimate": ["Estimate", "Components of the step (critical pipeline rank)",
                 "Memory per GPU by pipeline rank", "Pipeline", "Collectives (critical rank)"],
    "validation": ["Predicted vs measured", "Measured per rank",
                   "Predicted components of the step", "Warnings"],
}
TRACE = {"plan": "plan-trace", "estimate": "estimate-trace"}

_SEP = re.compile(r"^\|( *:?-{3,}:? *\|)+$")


def _cells(line: str) -> list[str]:
    """Cells of a GFM table row: split on pipes not escaped with a backslash."""
    assert line.startswith("|") and line.endswith("|"), line
    return re.split(r"(?<!\\)\|", line[1:-1])


def sections(md: str) -> dict[str, list[str]]:
    """``## title`` -> its lines."""
    out: dict[str, list[str]] = {}
    current = None
    for line in md.splitlines():
        if line.startswith("## "):
            current = line[3:].replace("\\", "")
            out[current] = []
        elif current is not None:
            out[current].append(line)
    return out


def assert_tables(md: str) -> dict[str, list[list[str]]]:
    """Every section holds one table: a header row, a separator row with as many columns,
    then rows of the same width. Returns title -> rows of cells."""
    tables = {}
    for title, lines in sections(md).items():
        rows = [ln for ln in lines if ln.startswith("|")]
        assert len(rows) >= 3, f"section {title!r} has no table with a row: {lines}"
        header, sep, *body = rows
        width = len(_cells(header))
        assert _SEP.match(sep) and len(_cells(sep)) == width, (title, sep)
        for row in body:
            assert len(_cells(row)) == width, (title, row)
        tables[title] = [_cells(r) for r in body]
    return tables


def _timeline(files, kind):
    if kind not in TRACE:
        return None
    return from_trace(load_trace(files[TRACE[kind]]), source="trace.json")


@pytest.mark.parametrize("kind", list(SECTIONS))
def test_markdown_has_a_table_per_section(report_docs, kind):  # noqa: F811
    doc = load_document(report_docs[kind])
    md = to_markdown(doc, _timeline(report_docs, kind))
    assert md.startswith("# archcost ")
    tables = assert_tables(md)
    for title in SECTIONS[kind]:
        assert title in tables, (title, list(tables))
    if kind in TRACE:
        assert "Pipeline timeline (trace.json)" in tables


def test_markdown_numbers_match_the_document(report_docs):  # noqa: F811
    doc = load(report_docs["analysis"])
    tables = assert_tables(to_markdown(doc))
    totals = {r[0].strip(): r for r in tables["Totals"]}
    assert totals["parameters"][2].strip() == f"{doc['totals']['params']:,}"
    flops = {r[0].strip(): r for r in tables["FLOPs per phase"]}
    assert flops["total"][2].strip() == f"{doc['totals']['flops']['total']:,}"
    comps = assert_tables(to_markdown(load(report_docs["validation"])))["Predicted vs measured"]
    assert [r[0].strip() for r in comps][:2] == ["step time", "forward"]


@pytest.mark.parametrize("kind", ["analysis", "plan", "estimate", "validation"])
def test_markdown_escapes_user_strings(report_docs, kind):  # noqa: F811
    md = to_markdown(hostile(load(report_docs[kind])))
    assert "<script" not in md.lower() and "alert(1)</" not in md
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in md
    assert "\\|x y" in md  # the pipe escaped, the newline folded into the cell
    assert_tables(md)  # no table broken by a pipe or a newline


def _assert_escaped_html(page: str) -> None:
    assert "<script" not in page.lower()
    assert HOSTILE not in page and "alert(1)</" not in page and "\"&'" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&quot;&amp;&#x27;|x" in page
    # every ampersand starts an entity
    bad = re.findall(r"&(?!(?:amp|lt|gt|quot|#x27|#\d+);)", page)
    assert not bad, bad


@pytest.mark.parametrize("kind", ["analysis", "plan", "estimate", "validation"])
def test_html_escapes_user_strings_also_in_svg(report_docs, kind):  # noqa: F811
    doc = hostile(load(report_docs[kind]))
    page = to_html(doc)
    _assert_escaped_html(page)
    svgs = re.findall(r"<svg.*?</svg>", page, re.S)
    assert svgs and any("&lt;script&gt;" in s for s in svgs), "no user string in any plot"


def test_html_escapes_trace_names(report_docs):  # noqa: F811
    trace = load(report_docs["estimate-trace"])
    for e in trace["traceEvents"]:
        if e["ph"] == "M":
            e["args"]["name"] = HOSTILE
        elif e["ph"] == "X":
            e["name"] = HOSTILE
    page = to_html(load(report_docs["estimate"]), from_trace(trace, source=HOSTILE))
    _assert_escaped_html(page)


@pytest.mark.parametrize("kind", list(PLOTS))
def test_html_page_has_the_plots_and_needs_nothing_else(report_docs, kind):  # noqa: F811
    page = to_html(load_document(report_docs[kind]), _timeline(report_docs, kind))
    ids = set(re.findall(r'<figure class="plot" id="plot-[^"]+" data-plot="([^"]+)"', page))
    assert ids == PLOTS[kind]
    for fig in re.findall(r'<figure class="plot".*?</figure>', page, re.S):
        assert fig.count("<svg") == 1 and "</svg>" in fig
        assert re.search(r"<title id=\"plot-[^\"]+-title\">[^<]+</title>", fig)
        assert fig.count('class="axis-label"') >= 1 and fig.count('class="tick"') >= 2
    # self-contained: no script, no remote or local resource, a policy that forbids them
    assert "<script" not in page and " src=" not in page and "@import" not in page
    assert set(re.findall(r"https?://[^\s\"'<>]+", page)) <= {"http://www.w3.org/2000/svg"}
    assert re.findall(r"url\(([^)]*)\)", page) == [f"#{m}" for m in
                                                   re.findall(r'<clipPath id="([^"]+)"', page)]
    assert "Content-Security-Policy" in page and "default-src 'none'" in page


# ---------------------------------------------------------------- headless Chromium

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")


def chromium() -> str:
    """The headless Chromium to render with: $ARCHCOST_CHROMIUM (what ./test.sh found or
    installed, on PATH or not), else the first of CHROMIUM on PATH. Fails, never skips,
    when there is none."""
    given = os.environ.get("ARCHCOST_CHROMIUM")
    if given:
        if not (os.path.isfile(given) and os.access(given, os.X_OK)):
            pytest.fail(f"ARCHCOST_CHROMIUM={given} is not an executable file: point it at a "
                        "Chromium or Chrome binary, or unset it to search PATH")
        return given
    for name in CHROMIUM:
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("headless Chromium is needed to check the HTML reports render, and none was "
                "found (ARCHCOST_CHROMIUM is unset; looked for chromium, chromium-browser, "
                "google-chrome on PATH). Run the suite with ./test.sh, which installs it with "
                "apt-get where it can, or set ARCHCOST_CHROMIUM to a Chromium or Chrome "
                "binary; then rerun the tests.")


def render_dom(page_path, profile) -> tuple[str, list[str]]:
    """The DOM Chromium built from the page, and the console lines it logged."""
    cmd = [chromium(), "--headless", "--disable-gpu", "--no-sandbox",
           "--disable-dev-shm-usage", "--no-first-run", "--disable-extensions",
           f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
           "--virtual-time-budget=2000", "--dump-dom", page_path.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = [ln for ln in proc.stderr.splitlines()
               if ":CONSOLE" in ln or "Uncaught" in ln or "ERROR:CONTENT" in ln]
    return proc.stdout, console


@pytest.mark.parametrize("kind", list(PLOTS))
def test_chromium_renders_every_plot_without_console_errors(report_docs, tmp_path,  # noqa: F811
                                                            kind):
    """Each kind's page (its user strings made hostile) opened in headless Chromium: every
    plot's SVG is in the DOM it built, no script crept in, nothing reached the console (an
    error, or a resource the page's policy blocked)."""
    doc, tl, expected = hostile(load(report_docs[kind])), _timeline(report_docs, kind), \
        PLOTS[kind]
    page = tmp_path / "report.html"
    page.write_text(to_html(doc, tl), encoding="utf-8")
    dom, console = render_dom(page, tmp_path / "profile")
    assert not console, "\n".join(console)
    assert "<script" not in dom.lower()
    rendered = set(re.findall(r'<figure class="plot" id="plot-[^"]+" data-plot="([^"]+)">\s*'
                              r'<svg xmlns="http://www.w3.org/2000/svg"', dom))
    assert rendered == expected
    assert dom.count("<svg") == dom.count("</svg>") == len(expected)
    # the charts' text reached the DOM as text: tick labels, axis labels, titles
    assert dom.count('class="tick"') >= 2 * len(expected)
    assert dom.count('class="axis-label"') >= len(expected)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom  # shown as text


@pytest.mark.parametrize("kind", list(PLOTS))
def test_chromium_layout_no_overlapping_text_no_sliver(report_docs, tmp_path, kind):  # noqa: F811
    """Each kind's plots as Chromium lays them out: no two texts overlap, none is cut by the
    plot's edge, no bar is thinner than MIN_BAR_PX, no legend swatch touches a name."""
    page = to_html(load_document(report_docs[kind]), _timeline(report_docs, kind))
    figs = measure(page, tmp_path)
    assert {f["id"] for f in figs} == PLOTS[kind]
    assert not problems(figs), "\n".join(problems(figs))


def _long_trace(ranks: int = 4, micro: int = 600) -> tuple[dict, float]:
    """A Chrome trace of a long 1F1B-like schedule as ``--timeline`` writes it: per rank a
    compute thread of back-to-back forward (10 ms) and backward (20 ms) bars, a communication
    thread of 1 ms sends after each forward. Returns it and its span in seconds."""
    events = []
    for r in range(ranks):
        events += [{"ph": "M", "name": "process_name", "pid": r, "tid": 0,
                    "args": {"name": f"pipeline rank {r}"}},
                   {"ph": "M", "name": "thread_name", "pid": r, "tid": 0,
                    "args": {"name": "compute"}},
                   {"ph": "M", "name": "thread_name", "pid": r, "tid": 1,
                    "args": {"name": "communication"}}]
        t = 0.0
        for m in range(micro):
            for kind, dur in (("forward", 10_000.0), ("backward", 20_000.0)):
                events.append({"ph": "X", "pid": r, "tid": 0, "cat": "compute",
                               "name": f"{kind[0].upper()}{m}", "ts": t, "dur": dur,
                               "args": {"kind": kind, "microbatch": m}})
                if kind == "forward":
                    events.append({"ph": "X", "pid": r, "tid": 1, "cat": "pp",
                                   "name": "send activation", "ts": t + dur, "dur": 1_000.0})
                t += dur
    return {"traceEvents": events}, micro * 0.030


def _coverage(svg: str, lane_y: float, lane_h: float) -> tuple[float, float, float]:
    """(first x, last x, length of the union) of the bars drawn in the row at ``lane_y``."""
    spans = sorted((float(x), float(x) + float(w)) for x, y, w in re.findall(
        r'<rect x="([\d.]+)" y="([\d.]+)" width="([\d.]+)"', svg.split('<g class="bars">')[1])
        if lane_y <= float(y) < lane_y + lane_h)
    union, end = 0.0, -1.0
    for a, b in spans:
        union += max(0.0, b - max(a, end))
        end = max(end, b)
    return spans[0][0], end, union


def test_long_schedule_timeline_reads_busy_not_idle(report_docs, tmp_path):  # noqa: F811
    """1,800 bars per rank (600 forward, 600 backward, 600 sends), each under a pixel: the compute rows are drawn covered end to
    end (the trace has no idle time there), forward and backward in proportion 1:2 of the
    height, the merging said in the legend and the footnote; Chromium finds no overlap and
    no sliver."""
    trace, span = _long_trace()
    page = to_html(load_document(report_docs["estimate"]), from_trace(trace, source="long"))
    fig = re.search(r'<figure class="plot" id="plot-pipeline".*?</figure>', page, re.S).group(0)
    assert "merged bars under 2 px: height by share of time" in fig
    assert "7,200 bars narrower than 2 px are merged into 8 blocks" in \
        " ".join(re.findall(r'<text class="note"[^>]*>([^<]*)</text>', fig))
    lanes = [float(y) for y in re.findall(
        r'<text class="category" x="[\d.]+" y="([\d.]+)"', fig)]
    assert len(lanes) == 8  # 4 ranks x (compute, communication)
    zero = float(re.search(r'<text class="tick" x="([\d.]+)"[^>]*>0 s<', fig).group(1))
    # where span seconds fall: the tick labelled with the last round second before the span
    ticks = {t: float(x) for x, t in re.findall(r'<text class="tick" x="([\d.]+)"[^>]*>'
                                                 r'(\d+) s<', fig)}
    px_per_s = (ticks[max(ticks)] - zero) / int(max(ticks))
    for row in (0, 2, 4, 6):  # the compute rows: busy from 0 to the span
        first, last, union = _coverage(fig, lanes[row] - 15, 22)
        assert abs(first - zero) < 0.05 and abs(last - (zero + span * px_per_s)) < 0.5
        assert union == pytest.approx(span * px_per_s, abs=0.5)
    stripes = re.findall(r'<rect x="[\d.]+" y="[\d.]+" width="[\d.]+" height="([\d.]+)" '
                         r'fill="(#[0-9a-f]+)"><title>1,200 bars merged', fig)
    heights = {}
    for h, color in stripes[:2]:
        heights[color] = float(h)
    assert heights == pytest.approx({"#4e79a7": 16 / 3, "#59a14f": 32 / 3}, abs=0.06)
    figs = measure(page, tmp_path)
    assert not problems(figs), "\n".join(problems(figs))


def test_chromium_layout_of_crowded_point_labels(report_docs, tmp_path):  # noqa: F811
    """A roofline whose op classes all sit at nearly one point, and plans with long names:
    every label is placed clear of the others (or named in the footnote), none is cut."""
    doc = load(report_docs["analysis"])
    classes = doc["estimate"]["op_classes"]
    for i, c in enumerate(classes):
        c["arithmetic_intensity"] = 10.0 * (1 + 0.01 * i)
        c["achieved_flops_per_s"] = 1e12 * (1 + 0.01 * i)
        c["class"] = f"{c['class']} class number {i}"
    plan = load(report_docs["plan"])
    for p in plan["plans"]:
        p["plan"] += ",schedule=interleaved-1f1b,placement=tp-cp-dp-pp,recompute=selective"
    for d in (doc, plan):
        page = to_html(d, _timeline(report_docs, d["kind"]))
        figs = measure(page, tmp_path)
        assert not problems(figs), "\n".join(problems(figs))
    roof = next(f for f in measure(to_html(doc), tmp_path) if f["id"] == "roofline")
    labelled = [t["text"] for t in roof["texts"] if t["cls"] == "point-label"]
    note = " ".join(t["text"] for t in roof["texts"] if t["cls"] == "note")
    for c in classes:
        assert (c["class"] in labelled) != (c["class"] in note), c["class"]


# ---------------------------------------------------------------- the command

def test_report_cli_prints_markdown_and_writes_html(runner, report_docs, tmp_path):  # noqa: F811
    r = runner.invoke(app, ["report", str(report_docs["estimate"])])
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("# archcost plan estimate: gpt2")
    assert_tables(r.stdout)
    out = tmp_path / "e.html"
    out.write_text("old")
    r = runner.invoke(app, ["report", str(report_docs["estimate"]), "-o", str(out),
                            "--timeline", str(report_docs["estimate-trace"])])
    assert r.exit_code == 0, r.output
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and 'data-plot="pipeline"' in page
    assert "from estimate-trace.json" in page  # the trace, not the aggregate, was drawn
    assert [p.name for p in tmp_path.iterdir()] == ["e.html"]  # no temporary left behind
    md = tmp_path / "e.md"
    r = runner.invoke(app, ["report", str(report_docs["plan"]), "--format", "md", "-o", str(md)])
    assert r.exit_code == 0 and md.read_text().startswith("# archcost plan search")


@pytest.mark.parametrize("case, message", [
    ("not-json", "not JSON"),
    ("array", "$: expected a JSON object"),
    ("missing", "no such file"),
    ("sweep", "regenerate it with archcost sweep -o"),
    ("format", "--format 'pdf'"),
    ("other-trace", "the trace is of plan"),
    ("trace-for-analysis", "no plan to match the trace"),
    ("bad-trace", "not a Chrome trace"),
    ("no-folder", "does not exist"),
])
def test_report_cli_bad_input_one_line_exit_2(runner, report_docs, tmp_path, case,  # noqa: F811
                                              message):
    bad = tmp_path / "bad.json"
    args = ["report", str(report_docs["estimate"])]
    if case == "not-json":
        bad.write_text("{oops")
        args = ["report", str(bad)]
    elif case == "array":
        bad.write_text("[1, 2]")
        args = ["report", str(bad)]
    elif case == "missing":
        args = ["report", str(tmp_path / "none.json")]
    elif case == "sweep":
        bad.write_text(json.dumps({"schema_version": 1, "kind": "sweep", "model": {}}))
        args = ["report", str(bad)]
    elif case == "format":
        args += ["--format", "pdf"]
    elif case == "other-trace":
        args += ["--timeline", str(report_docs["plan-trace"])]
    elif case == "trace-for-analysis":
        args = ["report", str(report_docs["analysis"]), "--timeline",
                str(report_docs["estimate-trace"])]
    elif case == "bad-trace":
        bad.write_text(json.dumps({"events": []}))
        args += ["--timeline", str(bad)]
    elif case == "no-folder":
        args += ["-o", str(tmp_path / "nowhere" / "r.html")]
    r = runner.invoke(app, args)
    assert r.exit_code == 2, r.output
    text = r.output.strip()
    assert message in text and text.startswith("error:")
    assert "Traceback" not in text and len(text.splitlines()) == 1, text
