"""Result-document schemas: the files are real JSON Schema (draft 2020-12, checked by the
``jsonschema`` package), the published copies in docs/ are the shipped ones, the validator
agrees with ``jsonschema`` on real documents and on mutations of them, every command's real
output validates, and corrupted documents are refused by ``report`` and by ``diff`` (both
sides) in one line with exit 2."""

from __future__ import annotations

import copy
import json
import math
import os
import random
import re
from pathlib import Path

import pytest

from archcost.cli import app
from archcost.errors import DocumentError
from archcost.report import schema
from archcost.report.validator import first_problem, json_path, unsupported_keywords
from tests._infer_docs import infer_docs  # noqa: F401 (fixture)
from tests._report_docs import GPT, _invoke, load, report_docs  # noqa: F401 (fixture)
from tests.conftest import MODELS, ROOT
from tests.test_report_sweep import sweeps  # noqa: F401 (fixture)

jsonschema = pytest.importorskip("jsonschema")

PACKAGED = ROOT / "archcost" / "report" / "schemas"
PUBLISHED = ROOT / "docs" / "schemas"
DRAFT = "https://json-schema.org/draft/2020-12/schema"


def _outside(doc, name: str, version: int | None = 1) -> list:
    """Errors an independent draft 2020-12 validator finds."""
    s = schema.load_schema(name, version)
    return list(jsonschema.Draft202012Validator(s).iter_errors(doc))


# ---------------------------------------------------------------- the files

def test_one_schema_per_kind_and_the_writers_versions_are_read():
    from archcost.analysis import SCHEMA_VERSION as ANALYSIS
    from archcost.cli.plan import SCHEMA_VERSION as PLAN
    from archcost.cli.sweep import SCHEMA_VERSION as SWEEP
    from archcost.cli.validate import SCHEMA_VERSION as VALIDATION
    from archcost.infer.document import SCHEMA_VERSION as INFERENCE

    names = schema.schema_names()
    assert names == sorted([f"{k}.v1.schema.json" for k in schema.KINDS] + ["trace.schema.json"])
    assert {k: schema.versions(k) for k in schema.KINDS} == {k: (1,) for k in schema.KINDS}
    written = {"analysis": ANALYSIS, "plan": PLAN, "estimate": PLAN, "validation": VALIDATION,
               "sweep": SWEEP, "inference": INFERENCE}
    for kind, version in written.items():  # what archcost writes, it reads
        assert version in schema.versions(kind), kind


@pytest.mark.parametrize("name", sorted(p.name for p in PACKAGED.glob("*.json")))
def test_schema_files_are_draft_2020_12_in_the_supported_subset(name):
    s = json.loads((PACKAGED / name).read_text())
    assert s["$schema"] == DRAFT
    jsonschema.Draft202012Validator.check_schema(s)  # a real JSON Schema
    assert list(unsupported_keywords(s)) == []  # nothing the own validator would skip
    kind, _, rest = name.partition(".")
    if kind in schema.KINDS:
        version = int(rest.split(".")[0].lstrip("v"))
        assert s["properties"]["kind"] == {"const": kind, "description": "What wrote the document."}
        assert s["properties"]["schema_version"]["const"] == version
        assert set(s["required"]) >= {"schema_version", "kind", "model"}


def test_published_schemas_are_the_shipped_ones():
    """docs/schemas/ is what the package validates with, byte for byte."""
    packaged = sorted(p.name for p in PACKAGED.iterdir())
    assert packaged == sorted(p.name for p in PUBLISHED.iterdir()) == schema.schema_names()
    for name in packaged:
        assert (PUBLISHED / name).read_bytes() == (PACKAGED / name).read_bytes(), \
            f"docs/schemas/{name} differs: cp archcost/report/schemas/*.json docs/schemas/"


def test_pyproject_ships_the_schemas():
    tomllib = pytest.importorskip("tomllib")
    st = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "archcost.report" in st["packages"]
    globs = st["package-data"]["archcost.report"]
    shipped = {p for g in globs for p in (ROOT / "archcost" / "report").glob(g)}
    assert shipped == set(PACKAGED.iterdir())


def test_shared_definitions_are_the_same_in_every_file():
    defs = {n: json.loads((PACKAGED / n).read_text())["$defs"] for n in schema.schema_names()}
    for name in ("model", "plan_fields", "plan_estimate", "workload", "cluster"):
        copies = [d[name] for d in defs.values() if name in d]
        assert len(copies) >= 2 and all(c == copies[0] for c in copies[1:]), name


def test_docs_page_describes_every_top_level_field():
    page = (ROOT / "docs" / "result-documents.md").read_text()
    for kind in schema.KINDS:
        section = page.split(f"## `{kind}`")[1].split("\n## ")[0]
        for field in schema.load_schema(kind, 1)["properties"]:
            if field not in ("schema_version", "kind", "model"):
                assert f"`{field}`" in section, (kind, field)
    for field in ("schema_version", "kind", "model"):
        assert f"| `{field}` |" in page
    for name in schema.schema_names():
        assert f"(schemas/{name})" in page


# ---------------------------------------------------------------- the validator

@pytest.mark.parametrize("value, sub, expected", [
    (1.0, {"type": "integer"}, None),                  # 2020-12: a number with no fraction
    (1.5, {"type": "integer"}, "an integer"),
    (True, {"type": "integer"}, "an integer"),         # booleans are no numbers
    (True, {"type": "number"}, "a number"),
    ("1", {"type": "number"}, "a number"),
    (math.nan, {"type": "number"}, "a number"),        # JSON has no NaN (RFC 8259)
    (math.inf, {"type": ["number", "null"]}, "a number or null"),
    (None, {"type": ["number", "null"]}, None),
    (-1, {"type": "number", "minimum": 0}, "a number >= 0"),
    (1, {"const": 1}, None), (True, {"const": 1}, "1"),
    ("B", {"enum": ["s", "B"]}, None), ("b", {"enum": ["s", "B"]}, "one of 's', 'B'"),
    ([], {"type": "array", "minItems": 1}, "an array of at least 1"),
])
def test_validator_types_and_values(value, sub, expected):
    problem = first_problem(value, sub)
    assert (problem is None) == (expected is None)
    if problem:
        assert problem.expected == expected
    assert (len(list(jsonschema.Draft202012Validator(sub).iter_errors(value))) == 0) \
        == (expected is None or isinstance(value, float) and not math.isfinite(value))


def test_validator_reports_the_first_field_in_document_order():
    s = {"type": "object", "required": ["a", "b"], "$defs": {"n": {"type": "number"}},
         "properties": {"a": {"$ref": "#/$defs/n"}, "b": {"type": "array",
                                                         "items": {"$ref": "#/$defs/n"}}},
         "additionalProperties": {"type": "string"}}
    assert str(first_problem({"b": []}, s)) == "$.a: missing, expected a number"
    doc = {"x y": 3, "a": "1", "b": [1, "2"]}
    assert str(first_problem(doc, s)) == "$['x y']: expected a string, found the number 3"
    doc = {"b": [1, "2"], "a": "1"}
    assert str(first_problem(doc, s)) == "$.b[1]: expected a number, found the string '2'"
    cond = {"if": {"properties": {"ph": {"const": "X"}}, "required": ["ph"]},
            "then": {"required": ["dur"]}}
    assert first_problem({"ph": "M"}, cond) is None
    assert str(first_problem({"ph": "X"}, cond)) == "$.dur: missing, expected a value"
    assert json_path(("plans", 0, "estimate", "a-b")) == "$.plans[0].estimate['a-b']"


def _leaves(doc, path=()):
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _leaves(v, (*path, i))
    yield path


def _set(doc, path, value):
    for p in path[:-1]:
        doc = doc[p]
    if value is _DELETE:
        del doc[path[-1]]
    else:
        doc[path[-1]] = value


_DELETE = object()
_WRONG = ["text", -1, 2.5, None, True, [], {}, 7, _DELETE]


def test_validator_agrees_with_jsonschema_on_mutated_real_documents(report_docs, sweeps,  # noqa: F811
                                                                     infer_docs):  # noqa: F811
    """Brute force: every real document, 40 random fields each set to a wrong value (or
    deleted); the own validator refuses exactly what jsonschema refuses, at a place jsonschema
    names too."""
    rng = random.Random(13)
    files = [report_docs[k] for k in ("analysis", "analysis-plain", "plan", "estimate",
                                      "validation")] + [sweeps["two"], sweeps["one"]]
    files += [infer_docs["infer"], infer_docs["sweep"]]
    files += sorted((ROOT / "reports").glob("*.json"))
    checked = refused = 0
    for f in files:
        doc = load(f)
        name = doc["kind"]
        target = schema.load_schema(name, 1)
        paths = [p for p in _leaves(doc) if p and p[0] not in ("schema_version", "kind")]
        for path in rng.sample(paths, min(40, len(paths))):
            bad = copy.deepcopy(doc)
            if _DELETE is (value := rng.choice(_WRONG)) and isinstance(path[-1], int):
                continue  # deleting a list item is no type error
            _set(bad, path, copy.deepcopy(value))
            mine = first_problem(bad, target)
            theirs = _outside(bad, name)
            assert (mine is None) == (not theirs), (f.name, path, value, mine, theirs[:1])
            if mine is not None:
                places = {tuple(e.absolute_path) for e in theirs}
                assert mine.path in places or mine.path[:-1] in places, (mine, places)
                refused += 1
            checked += 1
    assert checked > 300 and refused > 150


# ---------------------------------------------------------------- every command's output

@pytest.fixture(scope="session")
def more_docs(tmp_path_factory) -> dict[str, Path]:
    """Outputs the report fixtures do not write: an analysis with --symbolic and --solve, a
    plan search where nothing fits (exit 3), an estimate with --emit."""
    from filelock import FileLock
    from typer.testing import CliRunner

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    d = base / "schema_docs"
    d.mkdir(exist_ok=True)
    files = {k: d / f"{k}.json" for k in ("symbolic", "no-fit", "emitted")}
    with FileLock(str(d / ".lock")):
        if not (d / ".done").exists():
            _invoke(["analyze", str(MODELS / "seed_mlp.py"), "-b", "2", "--symbolic",
                     "--hardware", "h100-sxm", "--solve", "max b s.t. memory <= capacity",
                     "-o", str(files["symbolic"])])
            r = CliRunner().invoke(app, ["plan", *GPT, "--gpus", "8", "--gbs", "16", "--fix",
                                         "pp=8", "-o", str(files["no-fit"])])
            assert r.exit_code == 3, r.output
            _invoke(["estimate", *GPT, "--plan", "dp=2,tp=2,gbs=8", "--emit", "deepspeed",
                     "-o", str(files["emitted"])])
            (d / ".done").write_text("ok")
    return files


def test_every_commands_output_validates(report_docs, sweeps, more_docs, infer_docs):  # noqa: F811
    docs = {f"report_docs:{k}": v for k, v in report_docs.items() if "trace" not in k}
    docs |= {f"infer:{k}": v for k, v in infer_docs.items()}
    docs |= {f"sweep:{k}": v for k, v in sweeps.items()}
    docs |= {f"more:{k}": v for k, v in more_docs.items()}
    docs |= {f"reports/{p.name}": p for p in (ROOT / "reports").glob("*.json")}
    kinds = set()
    for label, path in docs.items():
        doc = load(path)
        schema.check(doc, label)
        assert _outside(doc, doc["kind"]) == [], label
        kinds.add(doc["kind"])
    assert kinds == set(schema.KINDS)
    sym = load(more_docs["symbolic"])
    assert "symbolic" in sym and "solve" in sym and "estimate" in sym
    assert load(more_docs["no-fit"])["plans"] == [] and "emitted" in load(more_docs["emitted"])
    for k in ("plan-trace", "estimate-trace"):
        trace = load(report_docs[k])
        schema.check_trace(trace, k)
        assert _outside(trace, "trace", None) == []
        schema.check_trace(trace["traceEvents"], k)  # the bare array form too


# ---------------------------------------------------------------- corrupted documents

def _mut(kind: str, fn, replace: bool = False):
    """A corruption of the good document of ``kind``: ``fn`` edits a copy in place (or, with
    ``replace``, returns what replaces it)."""
    def make(docs):
        doc = copy.deepcopy(docs[kind])
        out = fn(doc)
        return out if replace else doc
    return make


def _drop_point(doc):
    doc["points"].pop()


CORRUPT = {  # name: (document kind it starts from, mutation, what the line must say)
    "newer-version": ("analysis", _mut("analysis", lambda d: d.update(schema_version=2)),
                      "schema_version 2 is not one this archcost reads (analysis documents of "
                      "schema_version 1); it was written by a newer archcost: upgrade archcost, "
                      "or regenerate it with archcost analyze -o"),
    "older-version": ("plan", _mut("plan", lambda d: d.update(schema_version=0)),
                      "schema_version 0 is not one this archcost reads (plan documents of "
                      "schema_version 1); regenerate it with archcost plan -o"),
    "version-string": ("estimate", _mut("estimate", lambda d: d.update(schema_version="1")),
                       "$.schema_version: expected an integer, found the string '1'"),
    "no-version": ("validation", _mut("validation", lambda d: d.pop("schema_version")),
                   "$.schema_version: missing, expected an integer"),
    "unknown-kind": ("analysis", _mut("analysis", lambda d: d.update(kind="analyses")),
                     "not a result document: $.kind: expected one of analysis, plan"),
    "no-kind": ("analysis", _mut("analysis", lambda d: d.pop("kind")),
                "not a result document: $.kind: missing"),
    "wrong-kind": ("analysis", _mut("analysis", lambda d: d.update(kind="estimate")),
                   "$.plan: missing, expected a string; regenerate it with archcost estimate"),
    "missing-totals": ("analysis", _mut("analysis", lambda d: d.pop("totals")),
                       "$.totals: missing, expected an object; regenerate it with archcost "
                       "analyze -o"),
    "string-for-number": ("estimate", _mut("estimate", lambda d: d["estimate"].update(
        step_time_s="fast")), "$.estimate.step_time_s: expected a number >= 0, found the "
                              "string 'fast'; regenerate it with archcost estimate -o"),
    "null-required-number": ("analysis", _mut("analysis", lambda d: d["totals"].update(
        params=None)), "$.totals.params: expected an integer >= 0, found null"),
    "nan": ("plan", _mut("plan", lambda d: d["plans"][0]["estimate"].update(mfu=math.nan)),
            "$.plans[0].estimate.mfu: expected a number >= 0, found NaN (not a JSON number)"),
    "negative-memory": ("estimate", _mut("estimate", lambda d: d["estimate"]["memory_bytes"]
                                         .update(peak_per_gpu=-1.0)),
                        "$.estimate.memory_bytes.peak_per_gpu: expected a number >= 0, found "
                        "the number -1.0"),
    "bool-for-number": ("validation", _mut("validation", lambda d: d["validation"][
        "components"][0].update(measured=True)), "$.validation.components[0].measured: "
                                                 "expected a number >= 0 or null, found true"),
    "string-for-bool": ("estimate", _mut("estimate", lambda d: d["estimate"].update(fits="yes")),
                        "$.estimate.fits: expected true or false, found the string 'yes'"),
    "no-components": ("validation", _mut("validation", lambda d: d["validation"].update(
        components=[])), "$.validation.components: expected an array of at least 1"),
    "plan-without-estimate": ("plan", _mut("plan", lambda d: d["plans"][0].pop("estimate")),
                              "$.plans[0].estimate: missing, expected an object"),
    "model-not-object": ("plan", _mut("plan", lambda d: d.update(model="gpt2")),
                         "$.model: expected an object, found the string 'gpt2'"),
    "module-path-number": ("analysis", _mut("analysis", lambda d: d["modules"][1].update(
        path=3)), "$.modules[1].path: expected a string, found the number 3"),
    "sweep-fits-no-time": ("sweep", _mut("sweep", lambda d: d["points"][0].update(
        step_time_s=None)), "$.points[0].step_time_s: expected a number >= 0, found null"),
    "sweep-missing-point": ("sweep", _mut("sweep", _drop_point),
                            "$.points: expected the 4 points of the grid its axes span "
                            "($.grid_points 4), found 3; regenerate it with archcost sweep -o"),
    "array": ("analysis", _mut("analysis", lambda d: [d], replace=True),
              "$: expected a JSON object (a result document), found an array of 1"),
}
RAW = {  # files that are no JSON document at all
    "truncated": (lambda text: text[: len(text) // 2], "not JSON ("),
    "empty": (lambda text: "", "not JSON (Expecting value: line 1 column 1)"),
}


@pytest.fixture(scope="module")
def good(report_docs, sweeps):  # noqa: F811
    docs = {k: load(report_docs[k]) for k in ("analysis", "plan", "estimate", "validation")}
    docs["sweep"] = load(sweeps["two"])
    return docs


def _one_line_exit_2(r, *needles):
    assert r.exit_code == 2, r.output
    text = r.output.strip()
    assert text.startswith("error:") and "Traceback" not in text, text
    assert len(text.splitlines()) == 1, text
    for needle in needles:
        assert needle in text, text


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_corrupted_documents_are_refused_by_report_and_diff(runner, tmp_path, good, case):
    kind, make, message = CORRUPT[case]
    bad = make(good)
    path = tmp_path / f"{case}.json"
    path.write_text(json.dumps(bad))
    ok = tmp_path / "good.json"
    ok.write_text(json.dumps(good[kind]))
    for args in (["report", str(path)], ["report", str(path), "-o", str(tmp_path / "r.html")],
                 ["diff", str(ok), str(path)], ["diff", str(path), str(ok)]):
        _one_line_exit_2(runner.invoke(app, args), f"{path}: ", message)
    assert not (tmp_path / "r.html").exists()
    if case not in ("nan", "sweep-missing-point"):  # beyond what a schema says
        assert _outside(bad, kind), "jsonschema accepts it"


@pytest.mark.parametrize("case", sorted(RAW))
def test_files_that_are_not_json_are_refused(runner, tmp_path, report_docs, case):  # noqa: F811
    cut, message = RAW[case]
    path = tmp_path / f"{case}.json"
    path.write_text(cut(Path(report_docs["estimate"]).read_text()))
    for args in (["report", str(path)], ["diff", str(report_docs["estimate"]), str(path)]):
        _one_line_exit_2(runner.invoke(app, args), f"{path}: ", message)


@pytest.mark.parametrize("mutate, message", [
    (lambda t: t["traceEvents"][0].update(dur="long"),
     "$.traceEvents[0].dur: expected a number >= 0, found the string 'long'"),
    (lambda t: t["traceEvents"][0].pop("ts"), "$.traceEvents[0].ts: missing"),
    (lambda t: t["traceEvents"][1].pop("ph"), "$.traceEvents[1].ph: missing"),
    (lambda t: t.update(traceEvents={}), "$.traceEvents: expected an array, found an object"),
    (lambda t: t["otherData"]["plan"].update(dp="2"), "$.otherData.plan.dp: expected an integer"),
])
def test_corrupted_traces_are_refused(runner, tmp_path, report_docs, mutate, message):  # noqa: F811
    trace = load(report_docs["estimate-trace"])
    mutate(trace)
    path = tmp_path / "t.json"
    path.write_text(json.dumps(trace))
    r = runner.invoke(app, ["report", str(report_docs["estimate"]), "--timeline", str(path)])
    _one_line_exit_2(r, f"{path}: not a Chrome trace archcost can draw: {message}",
                     "archcost plan/estimate --timeline")
    assert _outside(trace, "trace", None)


def test_a_bare_event_array_is_a_trace(runner, tmp_path, report_docs):  # noqa: F811
    path = tmp_path / "t.json"
    path.write_text(json.dumps(load(report_docs["estimate-trace"])["traceEvents"]))
    r = runner.invoke(app, ["report", str(report_docs["estimate"]), "--timeline", str(path),
                            "-o", str(tmp_path / "e.html")])
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("source, message", [
    ("corrupt", "--plan {path}: $.plans[0].plan: expected a string, found the number 7"),
    ("analysis", "--plan {path}: this analysis document holds no plan"),
    ("no-fit", "no plan of this search fits in memory"),
    ("newer", "--plan {path}: schema_version 9 is not one this archcost reads"),
])
def test_estimate_plan_file_is_checked(runner, tmp_path, report_docs, more_docs, source,  # noqa: F811
                                       message):
    doc = {"corrupt": load(report_docs["plan"]), "analysis": load(report_docs["analysis"]),
           "no-fit": load(more_docs["no-fit"]), "newer": load(report_docs["estimate"])}[source]
    if source == "corrupt":
        doc["plans"][0]["plan"] = 7
    if source == "newer":
        doc["schema_version"] = 9
    path = tmp_path / "p.json"
    path.write_text(json.dumps(doc))
    r = runner.invoke(app, ["estimate", *GPT, "--plan", str(path)])
    _one_line_exit_2(r, message.format(path=path))


def test_refusals_name_the_command_of_each_kind(good):
    for kind, doc in good.items():
        bad = copy.deepcopy(doc)
        bad["model"] = []
        with pytest.raises(DocumentError) as info:
            schema.check(bad, "f.json")
        assert re.fullmatch(rf"f\.json: \$\.model: expected an object, found an array of 0; "
                            rf"regenerate it with {re.escape(schema.WRITTEN_BY[kind])}",
                            str(info.value))
