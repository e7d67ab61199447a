"""``archcost report`` and ``archcost diff`` on sweeps: the grid and sensitivity tables, the
plots (step time against each varied parameter, the two-parameter heatmap, components,
sensitivity, tokens per joule and cost) rendered by headless Chromium, user strings escaped,
and point-by-point regression diffs. Two real sweeps are written once per test run."""

from __future__ import annotations

import copy
import itertools
import json
import os
import re
from pathlib import Path

import pytest

from archcost.cli import app
from archcost.errors import DocumentError
from archcost.report import diff_documents, fmt, load_document, to_html, to_markdown
from archcost.report.diff import metrics_of
from archcost.report.document import check_document
from archcost.report.tables import short_plan
from tests._layout import measure, problems
from tests._report_docs import HOSTILE, _invoke, load
from tests.conftest import MODELS
from tests.test_report import assert_tables, render_dom

TINY = [str(MODELS / "llama.py"), "--set", "preset=tiny", "-s", "128", "--gpus", "8",
        "--gbs", "16"]

# the plots each sweep gets (data-plot ids)
PLOTS = {
    "two": {"step-mem_bw", "step-gpus", "heatmap", "sweep-components", "sensitivity",
            "tokens-per-joule"},
    "one": {"step-gpu", "sweep-components", "sensitivity", "tokens-per-joule",
            "usd-per-million-tokens"},
}
GRID = "Grid: the best plan at every point"


@pytest.fixture(scope="session")
def sweeps(tmp_path_factory) -> dict[str, Path]:
    """two: mem_bw x gpus (a heatmap); one: GPU names (a categorical axis) with prices.
    Written once per run, shared by the xdist workers (as ``report_docs`` does)."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    d = base / "sweep_docs"
    d.mkdir(exist_ok=True)
    files = {"two": d / "two.json", "one": d / "one.json"}
    with FileLock(str(d / ".lock")):
        if not (d / ".done").exists():
            _invoke(["sweep", *TINY, "--vary", "mem_bw=1x,2x", "--vary", "gpus=8,16", "--json",
                     "-o", str(files["two"])])
            _invoke(["sweep", *TINY, "--vary", "gpu=h100-sxm,h200,b200", "--price",
                     "h100-sxm=2.5", "--price", "h200=3", "--price", "b200=4.5", "--json",
                     "-o", str(files["one"])])
            (d / ".done").write_text("ok")
    return files


def synthetic(axes: list[tuple[str, list[str]]], no_fit=lambda idx: False) -> dict:
    """A sweep document over ``axes`` with step times that fall along every axis."""
    points = []
    for idx in itertools.product(*[range(len(v)) for _, v in axes]):
        point = {k: v[i] for (k, v), i in zip(axes, idx)}
        p = {"point": point, "index": list(idx), "fits": not no_fit(idx)}
        if p["fits"]:
            t = 2.0 / (1 + sum(idx))
            p.update(step_time_s=t, tokens_per_s=1e6 / t, mfu=0.4, peak_per_gpu_bytes=40e9,
                     tokens_per_joule=100 / t, usd_per_million_tokens=3 * t,
                     bottleneck="dp_comm", plan="dp=8,tp=1,pp=1,cp=1,gbs=64",
                     components_s={"compute": 0.6 * t, "dp_comm": 0.4 * t})
        else:
            p.update(plan=None, step_time_s=None)
        points.append(p)
    return {"schema_version": 1, "kind": "sweep", "model": {"name": "llama", "file": "llama.py"},
            "base": {"cluster": "dgx-h100-ndr", "gpus": 8, "gbs": 64, "seq_len": 4096,
                     "dtype": "bf16-mixed", "objective": "time"},
            "prices_usd_per_gpu_hour": {}, "axes": [{"key": k, "values": v} for k, v in axes],
            "points": points, "grid_points": len(points), "seconds": 0.5,
            "points_per_second": 2 * len(points)}


def hostile(doc: dict) -> dict:
    """``doc`` with its user strings (model, base cluster, prices, one value label of every
    axis, plans, bottlenecks, sensitivity resources) replaced by markup and table breakers."""
    doc = copy.deepcopy(doc)
    doc["model"]["name"] = HOSTILE
    doc["base"]["cluster"] = HOSTILE
    doc["prices_usd_per_gpu_hour"] = {HOSTILE: 2.5, **doc.get("prices_usd_per_gpu_hour", {})}
    for a in doc["axes"]:
        old = a["values"][-1]
        a["values"][-1] = HOSTILE + old
        for p in doc["points"]:
            if p["point"][a["key"]] == old:
                p["point"][a["key"]] = HOSTILE + old
        sens = doc.get("sensitivity") or {}
        if sens.get("point", {}).get(a["key"]) == old:
            sens["point"][a["key"]] = HOSTILE + old
    for p in doc["points"]:
        if p.get("fits"):
            p["plan"] = p["plan"] + "," + HOSTILE
            p["bottleneck"] = HOSTILE
            p["components_s"][HOSTILE] = 1e-5
    if "sensitivity" in doc:
        doc["sensitivity"]["plan"] += "," + HOSTILE
        doc["sensitivity"]["resources"][-1]["resource"] = HOSTILE
    return doc


def figures(page: str) -> dict[str, str]:
    return dict(re.findall(r'<figure class="plot" id="plot-[^"]+" data-plot="([^"]+)">(.*?)'
                           r"</figure>", page, re.S))


def assert_bars_from_zero(svg: str, n: int) -> None:
    """``n`` bars, each starting where the value axis has its tick ``0 s``."""
    ticks = re.findall(r'<text class="tick" x="([\d.]+)"[^>]*>([^<]*)</text>', svg)
    zero = [float(x) for x, text in ticks if text == "0 s"]
    bars = re.findall(r'<rect x="([\d.]+)" y="[\d.]+" width="([\d.]+)"',
                      svg.split('<g class="bars">')[1].split("</g>")[0])
    assert len(zero) == 1 and len(bars) == n, (ticks, bars)
    assert all(abs(float(x) - zero[0]) < 0.05 and float(w) > 0 for x, w in bars), bars


def _texts(svg: str, cls: str) -> list[str]:
    return [re.sub(r"<title>.*?</title>", "", t)
            for t in re.findall(rf'<text class="{cls}"[^>]*>(.*?)</text>', svg, re.S)]


# ---------------------------------------------------------------- Markdown

@pytest.mark.parametrize("name", ["two", "one"])
def test_markdown_grid_and_sensitivity_tables(sweeps, name):
    doc = load_document(sweeps[name])
    md = to_markdown(doc)
    assert md.startswith("# archcost sweep: llama")
    tables = assert_tables(md)
    keys = [a["key"] for a in doc["axes"]]
    header = next(ln for ln in md.split(f"## {GRID}")[1].splitlines() if ln.startswith("|"))
    cols = [c.strip().replace("\\", "") for c in header[1:-1].split(" | ")]
    priced = name == "one"
    assert cols == [*keys, "step time", "tokens/s", "MFU", "memory/GPU", "tokens/J",
                    *(["$/M tokens"] if priced else []), "bottleneck", "best plan"]
    rows = tables[GRID]
    assert len(rows) == len(doc["points"]) == doc["grid_points"]
    for row, p in zip(rows, doc["points"]):
        cells = dict(zip(cols, (c.strip().replace("\\", "") for c in row)))
        assert [cells[k] for k in keys] == [p["point"][k] for k in keys]
        assert cells["step time"] == fmt.seconds(p["step_time_s"])
        assert cells["memory/GPU"] == fmt.nbytes(p["peak_per_gpu_bytes"])
        assert cells["tokens/J"] == f"{p['tokens_per_joule']:.3g}"
        assert cells["best plan"] == short_plan(p["plan"])
        if priced:
            assert cells["$/M tokens"] == f"${p['usd_per_million_tokens']:.3g}"
    sens_title = next(t for t in tables if t.startswith("Sensitivity of step time at "))
    first = doc["points"][0]["point"]
    assert sens_title.endswith(", ".join(f"{k}={first[k]}" for k in keys))
    sens = tables[sens_title]
    assert [r[0].strip().replace("\\", "") for r in sens] == \
        [r["resource"] for r in doc["sensitivity"]["resources"]]
    assert [r[1].strip() for r in sens] == \
        [f"{r['elasticity']:+.3f}" for r in doc["sensitivity"]["resources"]]
    fastest = min(doc["points"], key=lambda p: p["step_time_s"])["point"]
    label = ", ".join(f"{k}={fastest[k]}" for k in keys).replace("_", "\\_")
    assert f"**fastest**: {label}: " in md


def test_markdown_points_where_no_plan_fits():
    doc = synthetic([("gpus", ["8", "16"]), ("dtype", ["bf16-mixed", "fp8"])],
                    no_fit=lambda idx: idx == (0, 1))
    rows = assert_tables(to_markdown(doc))[GRID]
    assert [c.strip() for c in rows[1][:4]] == ["8", "fp8", "no plan fits", "-"]
    assert "| $/M tokens |" in to_markdown(doc)
    for p in doc["points"]:
        p["usd_per_million_tokens"] = None  # no price: no column
    assert "$/M tokens" not in to_markdown(doc)


@pytest.mark.parametrize("name", ["two", "one"])
def test_markdown_escapes_user_strings(sweeps, name):
    md = to_markdown(hostile(load(sweeps[name])))
    assert "<script" not in md.lower() and "alert(1)</" not in md
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in md
    assert "\\|x y" in md
    assert_tables(md)


# ---------------------------------------------------------------- HTML plots

def _assert_self_contained(page: str) -> None:
    assert "<script" not in page and " src=" not in page and "@import" not in page
    assert set(re.findall(r"https?://[^\s\"'<>]+", page)) <= {"http://www.w3.org/2000/svg"}
    assert re.findall(r"url\(([^)]*)\)", page) == [f"#{m}" for m in
                                                   re.findall(r'<clipPath id="([^"]+)"', page)]
    assert "Content-Security-Policy" in page and "default-src 'none'" in page


@pytest.mark.parametrize("name", ["two", "one"])
def test_html_has_every_sweep_plot(sweeps, name):
    doc = load_document(sweeps[name])
    page = to_html(doc)
    figs = figures(page)
    assert set(figs) == PLOTS[name]
    for pid, fig in figs.items():
        assert fig.count("<svg") == 1 and "</svg>" in fig, pid
        assert re.search(r"<title id=\"plot-[^\"]+-title\">[^<]+</title>", fig), pid
        assert fig.count('class="axis-label"') >= 1 and fig.count('class="tick"') >= 2, pid
    _assert_self_contained(page)
    keys = [a["key"] for a in doc["axes"]]
    for key, axis in zip(keys, doc["axes"]):
        fig = figs[f"step-{key}"]
        assert f"Step time against {key}" in fig
        assert "step time (s)" in _texts(fig, "axis-label")
        if key == "gpu":  # names: a bar from zero per value, in sweep order
            assert _texts(fig, "category") == axis["values"]
            assert_bars_from_zero(fig, len(axis["values"]))
        else:  # quantities: points at the swept values, joined by lines
            assert _texts(fig, "tick")[:len(axis["values"])] == axis["values"]
            assert "<polyline" in fig and "<g class=\"bars\">" not in fig
    sens = _texts(figs["sensitivity"], "category")
    by = {r["resource"]: r["elasticity"] for r in doc["sensitivity"]["resources"]}
    assert sorted(sens) == sorted(by) and [by[r] for r in sens] == sorted(by.values())
    assert "elasticity d ln(step time) / d ln(resource) (dimensionless)" in figs["sensitivity"]
    bars = _texts(figs["tokens-per-joule"], "category")
    assert bars == [", ".join(f"{k}={p['point'][k]}" for k in keys) for p in doc["points"]]
    if name == "two":
        cells = _texts(figs["heatmap"], "cell")
        assert cells == [fmt.seconds(p["step_time_s"]) for p in doc["points"]]
        assert "step time (s)" in _texts(figs["heatmap"], "axis-label")
        assert figs["heatmap"].count("<rect") > 40  # the colour scale
    else:
        assert "cost per million tokens ($)" in figs["usd-per-million-tokens"]
        assert "categorical" not in figs["step-gpu"]


def test_many_combinations_are_summarised_and_values_placed_on_log_axes():
    doc = synthetic([("link_bw", ["450GB/s", "900GB/s", "1.8TB/s", "3.6TB/s"]),
                     ("gpus", ["8", "16", "32"]), ("cluster", ["a", "b", "c"])],
                    no_fit=lambda idx: idx[1] == 0 and idx[2] == 0)
    figs = figures(to_html(doc))
    assert set(figs) == {"step-link_bw", "step-gpus", "step-cluster", "sweep-components",
                         "tokens-per-joule", "usd-per-million-tokens"}  # no heatmap: 3 axes
    fig = figs["step-link_bw"]
    legend = re.findall(r'<g class="legend">(.*?)</g>', fig, re.S)[0]
    assert re.findall(r">([a-z]+)</text>", legend) == ["fastest", "median", "slowest"]
    assert "9 combinations of the other parameters" in fig and "where a plan fits" in fig
    assert _texts(fig, "tick")[:4] == ["450GB/s", "900GB/s", "1.8TB/s", "3.6TB/s"]
    assert "(B/s, log scale)" in fig
    # ticks placed at the values: equal ratios, equal gaps
    xs = [float(x) for x in re.findall(r'<text class="tick" x="([\d.]+)" y="[\d.]+" '
                                       r'text-anchor="middle"', fig)[:4]]
    gaps = [b - a for a, b in zip(xs, xs[1:])]
    assert max(gaps) - min(gaps) < 1.0
    cl = figs["step-cluster"]
    assert _texts(cl, "category") == ["a", "b", "c"]  # names: one band per value, in order
    # three series (fastest, median, slowest), each a bar from zero in every band
    assert_bars_from_zero(cl, 9)
    assert "<polyline" not in cl
    two = synthetic([("gpus", ["8", "16"]), ("seq_len", ["1024", "2048", "4096"])],
                    no_fit=lambda idx: idx == (0, 2))
    figs = figures(to_html(two))
    heat = _texts(figs["heatmap"], "cell")
    assert len(heat) == 6 and heat[2] == "no plan fits"
    assert "1 point where no plan fits not drawn" in figs["step-gpus"]


def test_html_escapes_user_strings_also_in_svg(sweeps):
    page = to_html(hostile(load(sweeps["two"])))
    assert "<script" not in page.lower()
    assert HOSTILE not in page and "alert(1)</" not in page and "\"&'" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&quot;&amp;&#x27;|x" in page
    assert not re.findall(r"&(?!(?:amp|lt|gt|quot|#x27|#\d+);)", page)
    figs = figures(page)
    assert set(figs) == PLOTS["two"]
    for pid in PLOTS["two"] - {"sweep-components"}:
        assert "&lt;script&gt;" in figs[pid], pid
    ids = re.findall(r' id="([^"]+)"', page)
    assert all(re.fullmatch(r"[A-Za-z0-9_-]+", i) for i in ids), ids


@pytest.mark.parametrize("name", ["two", "one"])
def test_chromium_renders_every_sweep_plot(sweeps, tmp_path, name):
    page = tmp_path / "sweep.html"
    page.write_text(to_html(hostile(load(sweeps[name]))), encoding="utf-8")
    dom, console = render_dom(page, tmp_path / "profile")
    assert not console, "\n".join(console)
    assert "<script" not in dom.lower()
    rendered = set(re.findall(r'<figure class="plot" id="plot-[^"]+" data-plot="([^"]+)">\s*'
                              r'<svg xmlns="http://www.w3.org/2000/svg"', dom))
    assert rendered == PLOTS[name]
    assert dom.count("<svg") == dom.count("</svg>") == len(PLOTS[name])
    assert dom.count('class="tick"') >= 2 * len(PLOTS[name])
    assert dom.count('class="axis-label"') >= len(PLOTS[name])
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom


@pytest.mark.parametrize("name", ["two", "one"])
def test_chromium_layout_of_sweeps(sweeps, tmp_path, name):
    """The real sweeps' plots as Chromium lays them out: no overlapping or cut text, no bar
    under MIN_BAR_PX, no legend swatch touching a name."""
    figs = measure(to_html(load(sweeps[name])), tmp_path)
    assert {f["id"] for f in figs} == PLOTS[name]
    assert not problems(figs), "\n".join(problems(figs))


def test_chromium_layout_of_a_categorical_sweep(tmp_path):
    """Names swept (clusters, with GPUs and dtypes beside them): each name's step time is a
    bar from zero in the real browser, grouped by the other parameters, labels clear of each
    other, bars no thinner than MIN_BAR_PX; and the step-time bars span the same axis as
    their values (the longest bar is the slowest point)."""
    doc = synthetic([("cluster", ["dgx-h100-ndr", "dgx-h100-ndr+h200", "gb200-nvl72",
                                  "mi300x-ib"]), ("gpus", ["8", "16"]),
                     ("dtype", ["bf16-mixed", "fp8"])], no_fit=lambda idx: idx == (3, 0, 1))
    figs = {f["id"]: f for f in measure(to_html(doc), tmp_path)}
    assert not problems(list(figs.values())), "\n".join(problems(list(figs.values())))
    fig = figs["step-cluster"]
    cats = [t["text"] for t in fig["texts"] if t["cls"] == "category"]
    assert cats == ["dgx-h100-ndr", "dgx-h100-ndr+h200", "gb200-nvl72", "mi300x-ib"]
    # 4 combinations of gpus x dtype, one bar each per cluster, less the point that does not fit
    assert len(fig["bars"]) == 4 * 4 - 1
    widths = {b["tip"]: b["width"] for b in fig["bars"]}
    slow = max((p for p in doc["points"] if p["fits"]), key=lambda p: p["step_time_s"])
    fast = min((p for p in doc["points"] if p["fits"]), key=lambda p: p["step_time_s"])
    tip = "{}: gpus={}, dtype={} {}"
    w_slow = widths[tip.format(slow["point"]["cluster"], slow["point"]["gpus"],
                               slow["point"]["dtype"], fmt.seconds(slow["step_time_s"]))]
    w_fast = widths[tip.format(fast["point"]["cluster"], fast["point"]["gpus"],
                               fast["point"]["dtype"], fmt.seconds(fast["step_time_s"]))]
    assert w_slow == max(widths.values())
    # bars from zero: widths in proportion to the step times
    assert w_fast / w_slow == pytest.approx(fast["step_time_s"] / slow["step_time_s"], abs=0.01)


# ---------------------------------------------------------------- the commands

def test_report_cli_reads_sweeps(runner, sweeps, tmp_path):
    r = runner.invoke(app, ["report", str(sweeps["two"])])
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("# archcost sweep: llama") and GRID in r.stdout
    out = tmp_path / "s.html"
    r = runner.invoke(app, ["report", str(sweeps["two"]), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert set(figures(out.read_text())) == PLOTS["two"]
    trace = tmp_path / "t.json"
    trace.write_text(json.dumps({"traceEvents": [{"ph": "X", "name": "f", "ts": 0, "dur": 1,
                                                  "pid": 0, "tid": 0}]}))
    r = runner.invoke(app, ["report", str(sweeps["two"]), "--timeline", str(trace)])
    assert r.exit_code == 2 and "no plan to match the trace" in r.output


@pytest.mark.parametrize("doc", [{"axes": [], "points": []}, {"axes": [{"key": "gpus"}]},
                                 {"axes": [], "points": [{"fits": True}]}])
def test_a_sweep_without_its_grid_is_refused(doc):
    with pytest.raises(DocumentError, match="regenerate it with archcost sweep -o"):
        check_document({"schema_version": 1, "kind": "sweep", "model": {"name": "m"}, **doc})


# ---------------------------------------------------------------- diff

def _scaled(doc: dict, factor: float, where=lambda p: True, field="step_time_s") -> dict:
    doc = copy.deepcopy(doc)
    for p in doc["points"]:
        if p.get("fits") and where(p):
            p[field] *= factor
    return doc


def row(result, metric):
    return next(r for r in result.rows if r.metric == metric)


def test_sweep_metrics_and_default_watch(sweeps):
    doc = load(sweeps["two"])
    names = metrics_of(doc)
    for p in ("mem_bw=1x@gpus=8", "mem_bw=2x@gpus=16"):
        assert {f"step_time@{p}", f"fits@{p}", f"tokens_per_joule@{p}", f"memory.peak@{p}",
                f"plan@{p}", f"bottleneck@{p}"} <= set(names)
    assert names["best.step_time"].value == min(p["step_time_s"] for p in doc["points"])
    assert names["best.tokens_per_joule"].value == max(p["tokens_per_joule"]
                                                       for p in doc["points"])
    assert "best.usd_per_million_tokens" not in names  # not priced
    assert "elasticity.mem_bw" in names
    res = diff_documents(doc, copy.deepcopy(doc))
    assert res.exit_code == 0 and all(r.status == "same" for r in res.rows)
    assert res.watched == ["best.step_time", *[f"step_time@{p}" for p in (
        "mem_bw=1x@gpus=8", "mem_bw=1x@gpus=16", "mem_bw=2x@gpus=8", "mem_bw=2x@gpus=16")],
        *[f"fits@{p}" for p in ("mem_bw=1x@gpus=8", "mem_bw=1x@gpus=16", "mem_bw=2x@gpus=8",
                                "mem_bw=2x@gpus=16")], "best.tokens_per_joule"]
    priced = metrics_of(load(sweeps["one"]))
    assert priced["best.usd_per_million_tokens"].value == min(
        p["usd_per_million_tokens"] for p in load(sweeps["one"])["points"])


def test_sweep_diff_regression_and_improvement(sweeps):
    base = load(sweeps["two"])
    slow = _scaled(base, 1.05, lambda p: p["point"] == {"mem_bw": "1x", "gpus": "8"})
    res = diff_documents(base, slow)
    assert [r.metric for r in res.regressions] == ["step_time@mem_bw=1x@gpus=8"]
    assert res.exit_code == 1
    assert row(res, "best.step_time").status == "same"  # not the fastest point
    assert row(res, "tokens_per_s@mem_bw=1x@gpus=8").status == "same"  # unchanged field
    assert diff_documents(base, slow, fail_above="10%").exit_code == 0
    fast = _scaled(base, 0.9)
    res = diff_documents(base, fast)
    assert res.exit_code == 0 and not res.regressions
    assert row(res, "best.step_time").status == "improved"
    assert all(row(res, f"step_time@{p}").status == "improved"
               for p in ("mem_bw=1x@gpus=8", "mem_bw=2x@gpus=16"))
    assert diff_documents(fast, base).exit_code == 1
    within = _scaled(base, 1.015)
    assert diff_documents(base, within).exit_code == 0


def test_sweep_diff_a_point_that_stops_fitting_and_energy(sweeps):
    base = load(sweeps["two"])
    head = copy.deepcopy(base)
    head["points"][1].update(fits=False, plan=None, step_time_s=None)
    res = diff_documents(base, head)
    assert [(r.metric, r.status) for r in res.regressions] == [
        ("step_time@mem_bw=1x@gpus=16", "missing"), ("fits@mem_bw=1x@gpus=16", "regressed")]
    assert row(res, "points_fitting").status == "worse"
    assert diff_documents(head, base).exit_code == 0
    greedy = _scaled(base, 0.9, field="tokens_per_joule")
    res = diff_documents(base, greedy)
    assert [r.metric for r in res.regressions] == ["best.tokens_per_joule"]
    assert row(res, "tokens_per_joule@mem_bw=2x@gpus=8").status == "worse"
    res = diff_documents(base, _scaled(base, 1.1, field="peak_per_gpu_bytes"),
                         metrics=["memory.peak@*"])
    assert res.exit_code == 1 and len(res.regressions) == 4


def test_sweep_diff_notes_different_grids():
    base = synthetic([("gpus", ["8", "16"])])
    head = synthetic([("gpus", ["8", "16", "32"])])
    res = diff_documents(base, head)
    assert any(n.startswith("different grids") for n in res.notes)
    assert row(res, "step_time@gpus=32").status == "new"
    assert res.exit_code == 0


def test_sweep_diff_a_smaller_grid_is_noted_a_lost_point_fails():
    base = synthetic([("gpus", ["8", "16", "32"])])
    head = synthetic([("gpus", ["8", "16"])])  # another grid: gpus=32 is not in it
    res = diff_documents(base, head)
    # the fastest point was gpus=32: the smaller grid's best is slower, the points both have
    # are unchanged
    assert all(r.metric.startswith("best.") for r in res.regressions)
    assert "step_time@gpus=32" not in res.watched and "step_time@gpus=16" in res.watched
    assert "step_time@gpus=32: its point is not in HEAD's grid; not compared" in res.notes
    cut = copy.deepcopy(base)  # the same grid with a point gone: half-written
    cut["points"].pop()
    res = diff_documents(base, cut)
    assert [(r.metric, r.status) for r in res.regressions
            if not r.metric.startswith("best.")] == [("step_time@gpus=32", "missing"),
                                                     ("fits@gpus=32", "missing")]
    with pytest.raises(DocumentError, match=r"\$.points: expected the 3 points"):
        check_document(cut, "cut.json")


def test_diff_cli_on_sweeps(runner, sweeps, tmp_path):
    base = str(sweeps["two"])
    slow = tmp_path / "slow.json"
    slow.write_text(json.dumps(_scaled(load(sweeps["two"]), 1.05)))
    fast = tmp_path / "fast.json"
    fast.write_text(json.dumps(_scaled(load(sweeps["two"]), 0.95)))
    r = runner.invoke(app, ["diff", base, str(slow)])
    assert r.exit_code == 1, r.output
    assert "REGRESSION: 5 watched metrics regressed past 2%: best.step_time (+5.00%)" \
        in r.stdout
    r = runner.invoke(app, ["diff", base, str(fast), "--markdown"])
    assert r.exit_code == 0, r.output
    assert "| step\\_time@mem\\_bw=1x@gpus=8 |" in r.stdout and "improved" in r.stdout
    r = runner.invoke(app, ["diff", base, str(slow), "--metrics", "fits@*"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["diff", base, str(slow), "--metrics", "steptime"])
    assert r.exit_code == 2 and "step_time@POINT" in r.output
    assert len(r.output.strip().splitlines()) == 1
