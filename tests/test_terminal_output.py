"""Every table of every command at 80 and 160 columns: no line wider than the console, every
column's header present, every cell's tokens on one line (a value with its unit, a plan item,
a piece of a metric or module name), no SI label on a memory size and no e-notation with a
unit; and ``archcost --help`` as plain text.

Documents come from the commands themselves (the ``report_docs`` and ``sweeps`` fixtures) and
from stressed copies of them (long names, long plans, large values) that force the layout's
fallbacks: long columns moved under the table and tables split into parts."""

from __future__ import annotations

import copy
import io
import json
import re

import pytest
from rich.cells import cell_len
from rich.console import Console

from archcost.cli import app
from archcost.report import fmt
from archcost.report.tables import short_plan
from tests._report_docs import GPT, HOSTILE, hostile, load, report_docs  # noqa: F401 (fixture)
from tests.conftest import MODELS
from tests.test_report_sweep import sweeps  # noqa: F401 (fixture)

WIDTHS = (80, 160)
RULE = "─"
SI_MEMORY = re.compile(r"\d\s?[kKMGTPE]B\b(?!/s)")  # '13.1 GB', not '450 GB/s'
E_UNIT = re.compile(r"\d(?:\.\d+)?[eE][+-]?\d+\s*[A-Za-z%$/]")  # '1e+03 ms'


def pieces(text: str) -> list[str]:
    """What a cell may be broken into: words, and a word's parts after , : @ . /"""
    return [p for word in str(text).split() for p in re.split(r"(?<=[,:@./])", word) if p]


def check(text: str, width: int, headers=(), tokens=()) -> None:
    lines = text.splitlines()
    wide = [line for line in lines if cell_len(line) > width]
    assert not wide, f"wider than {width}: {wide}"
    heads = [line for i, line in enumerate(lines[:-1]) if lines[i + 1].startswith(RULE)]
    for h in headers:
        assert any(re.search(rf"(^|\s){re.escape(h)}(\s|$)", line) for line in heads), \
            f"header {h!r} missing from {heads}"
    for t in tokens:
        assert any(t in line for line in lines), f"{t!r} is not on one line"
    assert not SI_MEMORY.search(text), SI_MEMORY.search(text).group(0)
    assert not E_UNIT.search(text), E_UNIT.search(text).group(0)


def render(fn, *args, width: int) -> str:
    buf = io.StringIO()
    fn(Console(file=buf, width=width, highlight=False, color_system=None), *args)
    return buf.getvalue()


# ---------------------------------------------------------------- analyze

MODULE_HEADERS = ["module", "class", "x", "params", "fwd", "bwd", "opt", "share", "act."]
CLASS_HEADERS = ["class", "ops", "FLOPs", "share", "read", "written", "FLOP/B"]
ROOF_HEADERS = ["class", "time", "share", "bound", "FLOP/B", "attainable", "achieved"]


def _analysis_tokens(doc) -> list[str]:
    t = doc["totals"]
    tokens = [fmt.count(t["params"]), fmt.si(t["flops"]["total"], "FLOP"),
              fmt.nbytes(t["memory_bytes"]["weights"]), fmt.nbytes(t["bytes"]["read"])]
    for m in doc["modules"]:
        if m["depth"] <= 2:
            tokens += [*pieces(m["path"] or "(model)"), *pieces(m["class"]),
                       fmt.nbytes(m["activations_saved"])]
    for c in doc["op_classes"]:
        tokens += [*pieces(c["class"]), fmt.nbytes(c["bytes_written"])]
    return tokens


def _estimate_tokens(est) -> list[str]:
    tokens = [fmt.seconds(est["step_time_s"]), fmt.nbytes(est["memory_bytes"]["capacity"])]
    for c in est["op_classes"]:
        tokens += [fmt.si(c["achieved_flops_per_s"], "FLOP/s"), fmt.seconds(c["seconds"])]
    for m in est["modules"][:10]:
        tokens += pieces(m["path"] or "(model)")
    return tokens


def _long_names(doc):
    """Module, class and op-class names long enough to split the tables at 80 columns."""
    doc = copy.deepcopy(doc)
    doc["model"]["name"] = "a-model-name-of-some-length-" * 3
    for m in doc["modules"]:
        if m["path"]:
            m["path"] = m["path"].replace("layers", "transformer.decoder_layers")
        m["class"] = m["class"] + "WithAVeryLongClassNameIndeed"
    for c in doc["op_classes"]:
        c["class"] = c["class"] + "-of-a-long-kind"
    est = doc.get("estimate")
    if est:
        for m in est["modules"]:
            m["path"] = m["path"].replace("layers", "transformer.decoder_layers.block")
    return doc


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("variant", ["real", "long names", "hostile"])
def test_analyze_tables(report_docs, width, variant):  # noqa: F811
    from archcost.cli.render import render_analysis, render_estimate

    change = {"real": lambda d: d, "long names": _long_names, "hostile": hostile}[variant]
    for kind in ("analysis", "analysis-plain"):
        doc = change(load(report_docs[kind]))
        text = render(render_analysis, doc, width=width)
        check(text, width, MODULE_HEADERS + CLASS_HEADERS,
              [] if variant == "hostile" else _analysis_tokens(doc))
        if "estimate" in doc:
            text = render(render_estimate, doc["estimate"], width=width)
            check(text, width, ROOF_HEADERS + ["module", "time"],
                  [] if variant == "hostile" else _estimate_tokens(doc["estimate"]))
    if variant == "hostile":  # names print as they are, never as rich markup
        assert "<script>alert(1)</script>" in text


@pytest.fixture(scope="module")
def symbolic(tmp_path_factory):
    """analyze --symbolic --hardware --solve at 80 columns, and its document."""
    from typer.testing import CliRunner

    out = tmp_path_factory.mktemp("symbolic") / "seed.json"
    r = CliRunner().invoke(app, ["analyze", str(MODELS / "seed_mlp.py"), "--symbolic",
                                 "--hardware", "h100-sxm", "--solve",
                                 "max b s.t. memory <= capacity", "-o", str(out)],
                           env={"COLUMNS": "80"})
    assert r.exit_code == 0, r.output
    return r.stdout, load(out)


@pytest.mark.parametrize("width", WIDTHS)
def test_analyze_symbolic_and_solve(symbolic, width):
    from archcost.cli.render import render_analysis

    stdout, doc = symbolic
    text = stdout if width == 80 else render(render_analysis, doc, width=width)
    formulas = [p for expr in doc["symbolic"]["formulas"].values() if expr
                for p in pieces(expr)]
    check(text, width, ["quantity", "polynomial"] + MODULE_HEADERS,
          formulas + list(doc["symbolic"]["formulas"]) + [f"b = {doc['solve']['max']:,}"])


# ---------------------------------------------------------------- plan and estimate

PLAN_HEADERS = ["#", "plan", "GPUs", "step", "tok/s", "MFU", "mem/GPU", "bubble", "comm"]
PARETO_HEADERS = ["plan", "GPUs", "step", "mem/GPU", "MFU"]
COMPONENT_HEADERS = ["component", "time", "share", "part", "bytes"]
COMM_HEADERS = ["group", "collective", "size", "ranks", "levels", "each", "per step"]


def _big_plan(doc):
    """A 70B-scale search: long interleaved plans, seconds and tens of GiB."""
    doc = copy.deepcopy(doc)
    long = ("dp=1,tp=2,pp=4,cp=8,ep=1,zero=2,sp=1,vpp=4,schedule=interleaved-1f1b,mbs=2,"
            "gbs=512,recompute=selective,offload=none")
    for p in doc["plans"]:
        p["plan"] = long
        e = p["estimate"]
        e["step_time_s"] *= 9e4
        e["memory_bytes"] = {k: v * 4e4 if isinstance(v, (int, float)) else v
                             for k, v in e["memory_bytes"].items()}
    for p in doc["pareto"]:
        p["plan"] = long
        p["peak_per_gpu_bytes"] *= 4e4
    return doc


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("variant", ["real", "70b-scale"])
def test_plan_search_tables(report_docs, width, variant):  # noqa: F811
    from archcost.cli.render_plan import render_search

    doc = load(report_docs["plan"])
    if variant != "real":
        doc = _big_plan(doc)
    text = render(render_search, doc, width=width)
    tokens = []
    for p in doc["plans"]:
        e = p["estimate"]
        tokens += [*pieces(short_plan(p["plan"])), fmt.seconds(e["step_time_s"]),
                   fmt.nbytes(e["memory_bytes"]["peak_per_gpu"])]
    for p in doc["pareto"][:10]:
        tokens += [*pieces(short_plan(p["plan"])), fmt.nbytes(p["peak_per_gpu_bytes"])]
    tokens += pieces(doc["plans"][0]["plan"])  # the best plan in full, wrapped at commas
    check(text, width, PLAN_HEADERS + PARETO_HEADERS + COMPONENT_HEADERS, tokens)
    lines = text.splitlines()
    inline = any(re.match(r"#\s+plan\s+GPUs", line) for line in lines)
    below = any(re.match(r"#\s+plan\s*$", line) for line in lines)
    # the plans fit their column at 160; at 80 they move under the table, keyed by #
    assert (inline, below) == ((True, False) if width == 160 else (False, True))


@pytest.mark.parametrize("width", WIDTHS)
def test_plan_estimate_tables(report_docs, width):  # noqa: F811
    from archcost.cli.render_plan import render_plan_estimate

    doc = load(report_docs["estimate"])
    text = render(render_plan_estimate, doc, width=width)
    est = doc["estimate"]
    tokens = [*pieces(doc["plan"]), fmt.seconds(est["step_time_s"])]
    for c in est["comm"]:
        tokens += [c["collective"], fmt.nbytes(c["bytes"]), fmt.seconds(c["seconds_each"])]
    for part in ("weights", "gradients", "optimizer_states"):
        tokens.append(fmt.nbytes(est["memory_bytes"][part]))
    check(text, width, COMPONENT_HEADERS + COMM_HEADERS, tokens)


@pytest.mark.parametrize("width", WIDTHS)
def test_validation_table(report_docs, width):  # noqa: F811
    from archcost.cli.validate import _render

    doc = load(report_docs["validation"])
    text = render(_render, doc, width=width)
    tokens = pieces(doc["plan"])
    for r in doc["validation"]["components"]:
        f = fmt.seconds if r["unit"] == "s" else fmt.nbytes
        tokens += [f(r["predicted"]), f(r["measured"])]
    check(text, width, ["component", "predicted", "measured", "error"], tokens)


# ---------------------------------------------------------------- sweep, diff, ci

@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", ["two", "one"])
def test_sweep_tables(sweeps, name, width):  # noqa: F811
    from archcost.cli.sweep import _render

    doc = load(sweeps[name])
    text = render(_render, doc, width=width)
    keys = [a["key"] for a in doc["axes"]]
    tokens = []
    for p in doc["points"]:
        tokens += [str(p["point"][k]) for k in keys]
        if p.get("fits"):
            tokens += [fmt.seconds(p["step_time_s"]), fmt.nbytes(p["peak_per_gpu_bytes"]),
                       *pieces(short_plan(p["plan"]))]
    headers = keys + ["step", "tok/s", "MFU", "mem/GPU", "tok/J", "bound", "best plan",
                      "resource", "d ln T / d ln r", "if doubled", "predicted"]
    if name == "one":
        headers.append("$/Mtok")
    check(text, width, headers, tokens)
    assert "{" not in text  # the sensitivity's point as mem_bw=1x, not a dict


@pytest.mark.parametrize("width", WIDTHS)
def test_diff_tables(report_docs, sweeps, width):  # noqa: F811
    from archcost.cli.report import _render
    from archcost.report.diff import diff_documents

    base = load(report_docs["analysis"])
    head = copy.deepcopy(base)
    for m in head["modules"]:
        m["flops"]["total"] *= 2
    head["totals"]["flops"]["total"] *= 2
    for a, b in ((base, head), (load(sweeps["two"]), load(sweeps["two"]))):
        result = diff_documents(a, b, metrics=["module:*", "flops.total"]
                                if a["kind"] == "analysis" else None)
        text = render(lambda c, r: _render(r, c), result, width=width)
        shown = [r for r in result.rows if r.watched]
        tokens = [p for r in shown for p in pieces(r.metric)]
        check(text, width, ["metric", "base", "head", "delta", "change", "status"], tokens)


def test_ci_table_at_80_columns(runner, tmp_path):
    from tests.test_ci import _project

    cfg = _project(tmp_path)
    out = str(tmp_path / "out")
    r = runner.invoke(app, ["ci", "--config", cfg, "--out-dir", out, "--update-baselines"],
                      env={"COLUMNS": "80"})
    assert r.exit_code == 0, r.output
    check(r.stdout, 80, ["run", "kind", "status", "regressions"], ["baseline written"])
    baseline = tmp_path / "baselines" / "tiny.json"
    doc = load(baseline)
    doc["estimate"]["step_time_s"] *= 0.9
    doc["totals"]["flops"]["total"] *= 0.5
    baseline.write_text(json.dumps(doc))
    for width in WIDTHS:
        r = runner.invoke(app, ["ci", "--config", cfg, "--out-dir", out, "--summary",
                                str(tmp_path / "summary.md")], env={"COLUMNS": str(width)})
        assert r.exit_code == 1, r.output
        check(r.stdout, width, ["run", "kind", "status", "regressions", "metric", "base",
                                "head", "delta", "change", "status"],
              ["regressed", "step_time", "REGRESSION:"])
        assert "| tiny | analyze | regressed |" in (tmp_path / "summary.md").read_text()


# ---------------------------------------------------------------- profiles, help

@pytest.mark.parametrize("width", WIDTHS)
def test_profiles_list_and_show(runner, width):
    env = {"COLUMNS": str(width)}
    r = runner.invoke(app, ["profiles", "list"], env=env)
    assert r.exit_code == 0, r.output
    check(r.stdout, width, ["name", "vendor", "bf16 TFLOP/s", "fp8 TFLOP/s", "mem GiB",
                            "mem TB/s", "TDP W", "gpu", "GPUs/node", "levels"],
          ["h100-sxm", "79.6", "3.35", "gb200-nvl72", "(72 GPUs,", "900 GB/s)",
           "infinity-fabric"])
    for name, tokens in (("dgx-h100-ndr", ["450 GB/s", "latency 3 us", "79.65 GiB",
                                           "47.68 MiB", "494.5 TFLOP/s", "dgx-h100-ndr.yaml",
                                           "1 M=0.01,", "100 G=0.72,"]),
                         ("gb200", ["2.53 G=0.319,", "1.56 GiB=0.9", "(FLOPs=fraction)"])):
        r = runner.invoke(app, ["profiles", "show", name], env=env)
        assert r.exit_code == 0, r.output
        check(r.stdout, width, (), tokens)


COMMANDS = ["analyze", "plan", "estimate", "validate", "sweep", "report", "diff", "calibrate",
            "ci", "profiles", ["profiles", "list"], ["profiles", "show"]]


@pytest.mark.parametrize("command", [[], *[[c] if isinstance(c, str) else c for c in COMMANDS]],
                         ids=lambda c: " ".join(c) or "archcost")
def test_help_is_plain_text_at_80_columns(runner, command):
    import typer

    r = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "80"})
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert all(cell_len(line) <= 80 for line in out.splitlines())
    assert "<bool>" not in out and "…" not in out
    assert not [line for line in out.splitlines() if line.endswith("...")
                and "[ARGS]" not in line]  # no summary cut short
    click_cmd = typer.main.get_command(app)
    for name in command:
        click_cmd = click_cmd.commands[name]
    words = set(out.split())
    for param in click_cmd.params:  # every word of every option's help, whole
        for word in (param.help or "").split():
            assert word in words, f"{word!r} of {param.name}'s help is cut"
    if command == ["ci"]:
        assert "[[tool.archcost.runs]]" in out and "[tool.archcost]" in out
    if not command:
        for name in ("analyze", "plan", "estimate", "ci", "profiles"):
            assert re.search(rf"^\s+{name}\s+\S.*\.$", out, re.M), name  # a whole summary


def test_reports_and_diffs_follow_the_unit_convention(report_docs, sweeps):  # noqa: F811
    """report's Markdown and HTML and diff's Markdown of every kind of document."""
    from archcost.report.diff import diff_documents
    from archcost.report.diff import to_markdown as diff_markdown
    from archcost.report.html import to_html
    from archcost.report.markdown import to_markdown

    docs = [load(report_docs[k]) for k in ("analysis", "analysis-plain", "plan", "estimate",
                                           "validation")]
    docs += [load(sweeps[k]) for k in ("two", "one")]
    for doc in docs:
        page = re.sub(r"<style.*?</style>|<[^>]+>", " ", to_html(doc), flags=re.S)  # its text
        for text in (to_markdown(doc), page, diff_markdown(diff_documents(doc, doc))):
            assert not SI_MEMORY.search(text), (doc["kind"], SI_MEMORY.search(text).group(0))
            assert not E_UNIT.search(text), (doc["kind"], E_UNIT.search(text).group(0))
        assert "MiB" in to_markdown(doc) or "GiB" in to_markdown(doc) or "KiB" in to_markdown(doc)


def test_hostile_validation_and_estimate_print_literally(report_docs):  # noqa: F811
    from archcost.cli.render_plan import render_plan_estimate
    from archcost.cli.validate import _render

    for kind, fn in (("estimate", render_plan_estimate), ("validation", _render)):
        text = render(fn, hostile(load(report_docs[kind])), width=80)
        assert "<script>alert(1)</script>" in text.replace("\n", " ") or HOSTILE[:8] in text
