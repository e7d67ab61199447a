"""``archcost diff``: direction-aware deltas, the threshold on watched metrics, exit codes
(1 regression, 0 otherwise, 2 bad input) on crafted pairs, and real documents end to end; the
gate's holes closed (a watched metric missing from HEAD or no number fails, yes/no metrics read
yes/no and regress whatever the threshold). The crafted documents match their schemas."""

from __future__ import annotations

import copy
import json
import math
import re

import pytest

from archcost.cli import app
from archcost.errors import DocumentError
from archcost.report.diff import diff_documents, metrics_of, parse_threshold, summary
from tests._report_docs import load, report_docs  # noqa: F401 (fixture)

MODEL = {"name": "llama", "file": "llama.py", "config": {"preset": "tiny"}}
PLAN = {"dp": 8, "tp": 1, "pp": 1, "cp": 1, "ep": 1, "zero": 0, "mbs": 1, "gbs": 64, "gpus": 8}


def plan_estimate(step=1.0, mem=40e9, mfu=0.40, tps=1e6) -> dict:
    """A plan estimate with every field its schema requires (one pipeline stage)."""
    return {"plan": dict(PLAN), "hardware": {"cluster": "dgx-h100-ndr", "gpu": "h100-sxm"},
            "step_time_s": step, "tokens_per_s": tps, "mfu": mfu, "hfu": mfu,
            "memory_bytes": {"peak_per_gpu": mem, "weights": 1e9},
            "fits": True, "components_s": {"compute": 0.8 * step, "dp_comm": 0.2 * step},
            "comm": [], "pipeline": {"stages": 1, "micro_batches": 8, "makespan_s": 0.8 * step,
                                     "bubble_fraction": 0.0},
            "ranks": [{"rank": 0, "memory_bytes": {"total": mem}}],
            "phases_s": {"forward": 0.3 * step, "backward": 0.5 * step}}


def estimate(step=1.0, mem=40e9, mfu=0.40, tps=1e6, **extra) -> dict:
    doc = {"schema_version": 1, "kind": "estimate", "model": copy.deepcopy(MODEL),
           "workload": {"seq_len": 128, "precision": "bf16-mixed", "optimizer": "adamw"},
           "plan": "dp=8,tp=1,pp=1,gbs=64", "estimate": plan_estimate(step, mem, mfu, tps)}
    doc.update(extra)
    return doc


def analysis(flops=1e12, params=1e8, modules=None, **extra) -> dict:
    doc = {"schema_version": 1, "kind": "analysis", "model": copy.deepcopy(MODEL),
           "workload": {"batch_size": 1, "seq_len": 128, "precision": "fp32",
                        "optimizer": "adamw"},
           "capture": {"method": "fake-dispatch", "ops_recorded": 10, "ops_executed": 20},
           "totals": {"params": params, "trainable_params": params,
                      "flops": {"forward": flops / 3, "backward": 2 * flops / 3, "optimizer": 0,
                                "recompute": 0, "total": flops},
                      "bytes": {"read": 1e9, "written": 1e9},
                      "memory_bytes": {"weights": 4 * params, "gradients": 4 * params,
                                       "optimizer_states": 8 * params, "buffers": 0,
                                       "activations_saved": 1e9}},
           "modules": modules if modules is not None else [
               {"path": "", "depth": 0, "flops": {"total": flops}, "params": params},
               {"path": "layers.0", "depth": 2, "flops": {"total": flops / 2},
                "params": params / 2, "activations_saved": 1e8}],
           "op_classes": [], "ops_without_rule": []}
    doc.update(extra)
    return doc


def validation(errors: dict[str, float]) -> dict:
    return {"schema_version": 1, "kind": "validation", "model": copy.deepcopy(MODEL),
            "workload": {"seq_len": 128}, "plan": "mbs=1,gbs=1", "device": "cpu", "nproc": 1,
            "machine": "x86_64", "hardware": {"profile": "cpu"}, "steps": 3, "warmup": 1,
            "warnings": [], "estimate": plan_estimate(),
            "validation": {"components": [
                {"name": n, "unit": "B" if n == "peak_memory" else "s",
                 "predicted": 1.0 + e, "measured": 1.0, "error": e} for n, e in errors.items()]}}


def plan(step=1.0, mem=40e9, best="dp=8,tp=1,pp=1,gbs=64") -> dict:
    return {"schema_version": 1, "kind": "plan", "model": copy.deepcopy(MODEL),
            "workload": {"seq_len": 128, "precision": "bf16-mixed", "optimizer": "adamw"},
            "objective": "time", "gpus": [8], "gbs": 64, "constraints": [], "fixed": [],
            "recompute_traced": ["none"],
            "plans": [{"rank": 1, "plan": best, "estimate": plan_estimate(step, mem)}],
            "pareto": [], "search": {"plans_evaluated": 20, "plans_valid": 15,
                                     "plans_fitting": 10}}


def row(result, metric):
    return next(r for r in result.rows if r.metric == metric)


# ---------------------------------------------------------------- semantics

def test_improvement_passes_and_is_named():
    res = diff_documents(estimate(step=1.0), estimate(step=0.9, tps=1.1e6, mfu=0.44))
    assert res.exit_code == 0 and not res.regressions
    st = row(res, "step_time")
    assert st.status == "improved" and st.watched
    assert st.delta == pytest.approx(-0.1) and st.relative == pytest.approx(-0.1)
    assert row(res, "tokens_per_s").status == "improved"
    assert row(res, "mfu").status == "improved"


@pytest.mark.parametrize("factor, status, code", [
    (1.019, "within", 0), (1.02, "within", 0), (1.021, "regressed", 1), (0.97, "improved", 0)])
def test_step_time_threshold_just_under_and_over(factor, status, code):
    res = diff_documents(estimate(step=1.0), estimate(step=factor))
    assert row(res, "step_time").status == status
    assert res.exit_code == code


@pytest.mark.parametrize("metric, base, head, code", [
    ("mfu", dict(mfu=0.40), dict(mfu=0.389), 1),          # -2.75%: higher is better
    ("mfu", dict(mfu=0.40), dict(mfu=0.393), 0),          # -1.75%
    ("tokens_per_s", dict(tps=1e6), dict(tps=0.97e6), 1),
    ("tokens_per_s", dict(tps=1e6), dict(tps=1.5e6), 0),
    ("memory.peak", dict(mem=40e9), dict(mem=41e9), 1),   # +2.5%: higher is worse
    ("memory.peak", dict(mem=40e9), dict(mem=30e9), 0),
])
def test_direction(metric, base, head, code):
    res = diff_documents(estimate(**base), estimate(**head))
    assert res.exit_code == code
    assert row(res, metric).regressed == bool(code)


def test_flops_params_and_per_module_deltas_of_analyses():
    base = analysis(flops=1e12)
    head = analysis(flops=1.05e12)
    res = diff_documents(base, head)
    assert [r.metric for r in res.regressions] == ["flops.total"]
    mod = row(res, "module:layers.0:flops")
    assert mod.delta == pytest.approx(0.025e12) and mod.status == "worse" and not mod.watched
    assert not any(r.metric.startswith("module::") for r in res.rows)  # the root is the totals
    res = diff_documents(analysis(params=1e8), analysis(params=1.03e8))
    assert "params" in [r.metric for r in res.regressions]


def test_zero_base_and_missing_metrics():
    base = analysis()
    head = analysis()
    head["totals"]["flops"]["recompute"] = 1e9
    head["modules"].append({"path": "extra", "depth": 1, "flops": {"total": 5.0}, "params": 1})
    res = diff_documents(base, head)
    rc = row(res, "flops.recompute")
    assert rc.relative == float("inf") and rc.status == "worse" and res.exit_code == 0
    assert row(res, "module:extra:flops").status == "new"
    data = res.to_dict()
    json.dumps(data, allow_nan=False)  # no infinity in the JSON
    assert next(r for r in data["rows"] if r["metric"] == "flops.recompute")["relative"] is None


def test_validation_errors_compare_absolute_errors_in_points():
    base = validation({"step_time": 0.05, "forward": -0.10, "backward": 0.010})
    head = validation({"step_time": 0.08, "forward": 0.05, "backward": 0.025})
    res = diff_documents(base, head)
    assert row(res, "error.step_time").status == "regressed"      # 5% -> 8%: +3 points
    assert row(res, "error.forward").status == "improved"         # |-10%| -> 5%
    assert row(res, "error.backward").status == "within"          # +1.5 points (+150% rel.)
    assert res.watched == ["error.step_time", "error.forward", "error.backward"]
    assert res.exit_code == 1
    assert diff_documents(base, head, fail_above="5%").exit_code == 0


def test_plan_documents_compare_the_best_plan():
    res = diff_documents(plan(step=1.0), plan(step=1.05, best="dp=4,tp=2,pp=1,gbs=64"))
    assert [r.metric for r in res.regressions] == ["step_time"]
    assert row(res, "plan").status == "changed" and not row(res, "plan").regressed
    assert set(res.watched) == {"feasible", "step_time", "memory.peak", "mfu", "tokens_per_s"}
    none_fits = plan()
    none_fits["plans"] = []
    res = diff_documents(plan(), none_fits)  # no plan fits: the best plan's figures are gone
    assert [(r.metric, r.status) for r in res.regressions] == [
        ("feasible", "regressed"), ("step_time", "missing"), ("memory.peak", "missing"),
        ("mfu", "missing"), ("tokens_per_s", "missing")]
    assert diff_documents(none_fits, plan()).exit_code == 0  # a plan fits again
    assert diff_documents(none_fits, copy.deepcopy(none_fits)).exit_code == 0


def test_a_plan_that_stops_fitting_regresses():
    base, head = estimate(), estimate()
    base["estimate"]["fits"], head["estimate"]["fits"] = True, False
    res = diff_documents(base, head)
    assert [r.metric for r in res.regressions] == ["fits"]
    assert diff_documents(head, base).exit_code == 0


def test_metrics_choose_what_is_watched():
    base, head = estimate(step=1.0, mem=40e9), estimate(step=1.10, mem=40e9)
    res = diff_documents(base, head, metrics=["memory.peak"])
    assert res.exit_code == 0 and row(res, "step_time").status == "worse"
    assert diff_documents(base, head, metrics=["step_time"]).exit_code == 1
    res = diff_documents(base, head, metrics=["time.*"])
    assert res.watched == ["time.compute", "time.dp_comm"] and res.exit_code == 1
    with pytest.raises(DocumentError, match="no such metric"):
        diff_documents(base, head, metrics=["steptime"])


@pytest.mark.parametrize("text, value", [("2%", 0.02), ("0.5%", 0.005), ("0.02", 0.02),
                                         (0.1, 0.1), ("0", 0.0)])
def test_parse_threshold(text, value):
    assert parse_threshold(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["abc", "-1%", "2", "nan%"])
def test_parse_threshold_refuses(text):
    with pytest.raises(DocumentError):
        parse_threshold(text)


@pytest.mark.parametrize("head, force, message", [
    (analysis(), False, "same kind"),
    (estimate(schema_version=2), False, "schema_version"),
    (estimate(model={"name": "gpt2", "config": {}}), False, "different models"),
    (estimate(model={**MODEL, "config": {"preset": "8b"}}), False, "pass --force"),
    (estimate(model={"name": "gpt2", "config": {}}, schema_version=2), True, "schema_version"),
])
def test_incomparable_documents_are_refused(head, force, message):
    with pytest.raises(DocumentError, match=message):
        diff_documents(estimate(), head, force=force)


def test_force_compares_different_models():
    head = estimate(step=1.1, model={**MODEL, "config": {"preset": "8b"}})
    res = diff_documents(estimate(), head, force=True)
    assert res.exit_code == 1 and res.forced
    assert any("different models" in n for n in res.notes)


# ---------------------------------------------------------------- the command

def _write(tmp_path, name, doc):
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return str(path)


def test_cli_exit_codes_and_outputs(runner, tmp_path):
    base = _write(tmp_path, "base.json", estimate(step=1.0))
    ok = _write(tmp_path, "ok.json", estimate(step=1.01))
    bad = _write(tmp_path, "bad.json", estimate(step=1.03))
    r = runner.invoke(app, ["diff", base, ok])
    assert r.exit_code == 0, r.output
    assert "ok: no watched metric regressed past 2%" in r.stdout and not r.stderr
    r = runner.invoke(app, ["diff", base, bad])
    assert r.exit_code == 1
    assert "REGRESSION: 1 watched metric regressed past 2%: step_time (+3.00%)" in r.stdout
    assert not r.stderr and "error" not in r.output.lower()  # a verdict, not a tool failure
    assert runner.invoke(app, ["diff", base, bad, "--fail-above", "5%"]).exit_code == 0
    assert runner.invoke(app, ["diff", base, bad, "--fail-above", "0.05"]).exit_code == 0
    assert runner.invoke(app, ["diff", base, bad, "--metrics", "memory.peak,mfu"]).exit_code == 0
    r = runner.invoke(app, ["diff", base, bad, "--json"])
    assert r.exit_code == 1
    data = json.loads(r.stdout)
    assert data["regressions"] == ["step_time"] and data["exit_code"] == 1
    assert data["fail_above"] == 0.02
    r = runner.invoke(app, ["diff", base, bad, "--markdown"])
    assert r.exit_code == 1
    md = r.stdout
    assert md.startswith("# archcost diff: estimate llama") and "## Watched metrics" in md
    assert "| metric | base | head | delta | change | status |\n| :--- | ---: |" in md
    assert "| step\\_time | 1 s | 1.03 s | +30 ms | +3.00% | regressed |" in md


@pytest.mark.parametrize("case, message", [
    ("not-json", "not JSON"),
    ("missing", "no such file"),
    ("kind", "same kind"),
    ("schema", "schema_version"),
    ("model", "different models"),
    ("metric", "--metrics nope"),
    ("threshold", "--fail-above"),
    ("both", "choose one"),
    ("no-kind", "not a result document"),
])
def test_cli_bad_input_exit_2_one_line(runner, tmp_path, case, message):
    base = _write(tmp_path, "base.json", estimate())
    head = _write(tmp_path, "head.json", {
        "not-json": "{nope", "kind": analysis(), "schema": estimate(schema_version=2),
        "model": estimate(model={"name": "gpt2", "config": {}}),
        "no-kind": {"schema_version": 1, "model": MODEL}}.get(case, estimate()))
    args = ["diff", base, head]
    if case == "missing":
        args = ["diff", base, str(tmp_path / "none.json")]
    extra = {"metric": ["--metrics", "nope"], "threshold": ["--fail-above", "lots"],
             "both": ["--json", "--markdown"]}
    r = runner.invoke(app, args + extra.get(case, []))
    assert r.exit_code == 2, r.output
    text = r.output.strip()
    assert text.startswith("error:") and message in text, text
    assert "Traceback" not in text and len(text.splitlines()) == 1, text


def test_cli_force_compares_different_models(runner, tmp_path):
    base = _write(tmp_path, "base.json", estimate())
    head = _write(tmp_path, "head.json", estimate(model={"name": "gpt2", "config": {}}))
    r = runner.invoke(app, ["diff", base, head, "--force"])
    assert r.exit_code == 0, r.output
    assert "note: different models compared (--force)" in r.stdout


@pytest.mark.parametrize("kind", ["analysis", "plan", "estimate", "validation"])
def test_real_documents_against_themselves(report_docs, kind):  # noqa: F811
    doc = load(report_docs[kind])
    names = metrics_of(doc)
    assert {"analysis": "flops.total", "plan": "step_time", "estimate": "memory.peak",
            "validation": "error.step_time"}[kind] in names
    res = diff_documents(doc, copy.deepcopy(doc))
    assert res.exit_code == 0 and res.watched
    assert all(r.status == "same" for r in res.rows)


def test_real_analyses_batch_doubled(report_docs):  # noqa: F811
    base = load(report_docs["analysis"])
    head = copy.deepcopy(base)
    head["totals"]["flops"]["total"] *= 1.5
    head["estimate"]["step_time_s"] *= 1.01
    res = diff_documents(base, head)
    assert [r.metric for r in res.regressions] == ["flops.total"]
    assert row(res, "step_time").status == "within"
    assert row(res, "tokens_per_s").status == "within"


# ---------------------------------------------------------------- the gate has no holes

def test_a_watched_metric_head_lost_fails_the_gate(runner, report_docs):  # noqa: F811
    """HEAD written without --hardware: its step time, MFU, throughput, peak and fits are
    gone. That is a failure (exit 1), not 'not compared'."""
    base, head = str(report_docs["analysis"]), str(report_docs["analysis-plain"])
    r = runner.invoke(app, ["diff", base, head])
    assert r.exit_code == 1, r.output
    lost = ["memory.peak", "step_time", "mfu", "tokens_per_s", "fits"]
    text = " ".join(r.stdout.split())  # the console wraps long lines
    assert f"REGRESSION: 5 watched metrics missing from HEAD: {', '.join(lost)}" in text
    data = json.loads(runner.invoke(app, ["diff", base, head, "--json"]).stdout)
    assert data["regressions"] == lost and data["exit_code"] == 1
    assert {r["metric"]: r["status"] for r in data["rows"] if r["watched"]} == {
        "params": "same", "flops.total": "same", **{m: "missing" for m in lost}}
    # the other way round nothing is lost: HEAD's new figures are noted, not compared
    r = runner.invoke(app, ["diff", head, base])
    assert r.exit_code == 0, r.output
    assert "note: step_time is only in HEAD: not compared" in " ".join(r.stdout.split())


def test_a_watched_metric_that_is_no_number_fails_the_gate():
    for bad in ("fast", None, math.nan, [1.0], True):
        head = estimate()
        head["estimate"]["step_time_s"] = bad
        res = diff_documents(estimate(), head)
        assert res.exit_code == 1, bad
        st = row(res, "step_time")
        assert st.regressed and st.status == ("missing" if bad is None else "invalid"), bad
    head = estimate()
    head["estimate"]["fits"] = "yes"  # not a boolean
    res = diff_documents(estimate(), head)
    assert [(r.metric, r.status) for r in res.regressions] == [("fits", "invalid")]
    assert summary(res) == "1 watched metric not a number: fits (BASE yes, HEAD 'yes')"
    base = estimate()
    base["estimate"]["mfu"] = "0.4"  # a broken BASE does not pass either
    assert row(diff_documents(base, estimate()), "mfu").status == "invalid"
    errors = validation({"step_time": 0.05})
    errors["validation"]["components"][0]["error"] = "5%"
    assert diff_documents(validation({"step_time": 0.05}), errors).exit_code == 1


def test_a_yes_no_metric_reads_yes_no_and_regresses_whatever_the_threshold(runner, tmp_path,
                                                                           report_docs):  # noqa: F811
    same = runner.invoke(app, ["diff", str(report_docs["analysis"]),
                               str(report_docs["analysis"])])
    assert same.exit_code == 0, same.output
    line = next(x for x in same.stdout.splitlines() if x.split()[:1] == ["fits"])
    assert re.fullmatch(r"fits\s+yes\s+yes\s+-\s+-\s*", line), line
    assert "now no" not in same.stdout and "now yes" not in same.stdout
    doc = load(report_docs["analysis"])
    doc["estimate"]["fits"] = False
    head = tmp_path / "head.json"
    head.write_text(json.dumps(doc))
    for threshold in ("2%", "150%"):  # a yes turned no is no matter of size
        r = runner.invoke(app, ["diff", str(report_docs["analysis"]), str(head), "--fail-above",
                                threshold])
        assert r.exit_code == 1, r.output
        line = next(x for x in r.stdout.splitlines() if x.split()[:1] == ["fits"])
        assert re.fullmatch(r"fits\s+yes\s+no\s+now no\s+-\s+regressed\s*", line), line
        assert f"regressed past {threshold}: fits (now no)" in " ".join(r.stdout.split())
    r = runner.invoke(app, ["diff", str(head), str(report_docs["analysis"]), "--markdown"])
    assert r.exit_code == 0 and "| fits | no | yes | now yes | - | improved |" in r.stdout


def test_default_metrics_absent_from_base_are_refused():
    empty = validation({})
    empty["validation"]["components"] = [{"name": "step_time", "unit": "s", "predicted": 1.0,
                                          "measured": None, "error": None}]
    with pytest.raises(DocumentError, match="BASE has none of the metrics a validation diff "
                                            "watches by default"):
        diff_documents(empty, copy.deepcopy(empty))


def test_named_metrics_lost_or_only_in_head():
    base, head = estimate(), estimate()
    del head["estimate"]["memory_bytes"]["weights"]
    res = diff_documents(base, head, metrics=["memory.weights"])
    assert [(r.metric, r.status) for r in res.regressions] == [("memory.weights", "missing")]
    with pytest.raises(DocumentError, match="--metrics memory.weights: only in HEAD"):
        diff_documents(head, base, metrics=["memory.weights"])
    res = diff_documents(head, base, metrics=["memory.*"])  # a glob watches what BASE has
    assert res.watched == ["memory.peak"] and res.exit_code == 0
    assert "memory.weights is only in HEAD: not compared" in res.notes
