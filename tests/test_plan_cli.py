"""``archcost plan`` and ``archcost estimate`` from the command line: documents, files, errors."""

from __future__ import annotations

import json

import pytest

from archcost.cli import app
from tests.conftest import MODELS

GPT = [str(MODELS / "gpt2.py"), "--set", "layers=4", "--set", "hidden=128", "--set", "heads=8",
       "--set", "vocab=512", "-s", "256"]


def test_estimate_json_has_the_documented_fields(runner, tmp_path):
    out = tmp_path / "est.json"
    trace = tmp_path / "timeline.json"
    r = runner.invoke(app, ["estimate", *GPT, "--plan",
                            "dp=2,tp=2,pp=2,zero=1,mbs=1,gbs=16,sp=1,vpp=2",
                            "--cluster", "dgx-h100-ndr", "-o", str(out),
                            "--timeline", str(trace)])
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    assert doc["kind"] == "estimate" and doc["schema_version"] == 1
    est = doc["estimate"]
    for key in ("step_time_s", "tokens_per_s", "mfu", "hfu", "fits"):
        assert key in est
    assert est["memory_bytes"]["peak_per_gpu"] > 0
    assert est["plan"]["schedule"] == "interleaved-1f1b"  # vpp=2 implies it
    assert est["components_s"]["bubble"] > 0
    assert est["economics"]["joules_per_step"] > 0
    # the timeline: a trace-event file with forward/backward ops on both pipeline ranks
    events = json.loads(trace.read_text())["traceEvents"]
    ops = [e for e in events if e["ph"] == "X" and e.get("cat") == "compute"]
    assert {e["pid"] for e in ops} == {0, 1}
    m, v = 16 // 2, 2
    assert sum(1 for e in ops if e["name"].startswith(("F", "B"))) == 2 * m * v * 2
    assert any(e["name"] == "bubble" for e in events)
    assert any(e.get("cat") == "pp" for e in events)
    assert "wrote" in r.output


def test_plan_search_json(runner, tmp_path):
    out = tmp_path / "plan.json"
    r = runner.invoke(app, ["plan", *GPT, "--gpus", "8,16", "--cluster", "dgx-h100-ndr",
                            "--gbs", "32", "--constraint", "mbs<=2", "--top", "3", "--json",
                            "-o", str(out)])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc == json.loads(out.read_text())
    assert doc["kind"] == "plan" and len(doc["plans"]) == 3
    s = doc["search"]
    assert s["plans_valid"] == s["plans_evaluated"] > 0 and s["seconds"] > 0
    first = doc["plans"][0]
    assert first["rank"] == 1 and "estimate" in first and "fields" in first
    assert {p["gpus"] for p in doc["pareto"]} <= {8, 16}
    # the best plan round-trips through estimate --plan FILE
    r2 = runner.invoke(app, ["estimate", *GPT, "--plan", str(out), "--cluster", "dgx-h100-ndr",
                             "--json"])
    assert r2.exit_code == 0, r2.output
    est = json.loads(r2.output)["estimate"]
    assert est["step_time_s"] == pytest.approx(first["estimate"]["step_time_s"])


def test_plan_emits_trainer_config(runner):
    r = runner.invoke(app, ["plan", *GPT, "--gpus", "8", "--gbs", "16", "--fix", "pp=2",
                            "--emit", "megatron"])
    assert r.exit_code == 0, r.output
    assert "--pipeline-model-parallel-size 2" in r.output


@pytest.mark.parametrize("args, message", [
    (["estimate", *GPT, "--plan", "tp=3,gbs=3"], "heads(8) % tp(3)"),
    (["estimate", *GPT, "--plan", "dp=2"], "plan has no gbs"),
    (["estimate", *GPT, "--plan", "dp=2,gbs=4,tpp=2"], "unknown plan key 'tpp'"),
    (["estimate", *GPT, "--plan", "gbs=4", "--cluster", "nope"], "nope"),
    (["estimate", *GPT, "--plan", "missing.json"], "no such file"),
    (["plan", *GPT, "--gpus", "8", "--objective", "fast"], "--objective 'fast'"),
    (["plan", *GPT, "--gpus", "x"], "--gpus 'x'"),
    (["plan", *GPT, "--gpus", "8", "--constraint", "tp<<8"], "constraint 'tp<<8'"),
    (["estimate", *GPT, "--plan", "gbs=4", "--emit", "horovod"], "horovod"),
])
def test_bad_input_is_one_line_and_exit_2(runner, args, message):
    r = runner.invoke(app, args)
    assert r.exit_code == 2, r.output
    assert message in r.output
    assert "Traceback" not in r.output


@pytest.mark.parametrize("emit", [[], ["--emit", "megatron"]])
def test_no_plan_fits_says_why(runner, emit):
    # one 80 GB A100 cannot hold the 16 bytes per parameter of a 9.7B-parameter model
    r = runner.invoke(app, ["plan", str(MODELS / "gpt2.py"), "--set", "layers=48", "--set",
                            "hidden=4096", "--set", "heads=32", "-s", "128", "--gpus", "1",
                            "--gbs", "1", "--cluster", "dgx-a100-hdr", *emit])
    assert r.exit_code == 3, r.output
    assert "no plan fits in memory" in (r.stderr if emit else r.stdout)
    if emit:  # stdout holds the configuration alone: here, nothing
        assert r.stdout == ""
