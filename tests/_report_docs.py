"""Real result documents for the report and diff tests, written once per test process by the
commands themselves (a two-layer GPT-2: an analysis with and without --hardware, a plan search
and an estimate with their --timeline traces, a one-step validation on the CPU)."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest

from tests.conftest import MODELS

GPT = [str(MODELS / "gpt2.py"), "--set", "layers=2", "--set", "hidden=64", "--set", "heads=4",
       "--set", "vocab=256", "-s", "64"]

HOSTILE = "<script>alert(1)</script>\"&'|x\ny"


def _invoke(args: list[str]) -> None:
    from typer.testing import CliRunner

    from archcost.cli import app

    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output


@pytest.fixture(scope="session")
def report_docs(tmp_path_factory) -> dict[str, Path]:
    """kind -> file: analysis, analysis-plain (no estimate), plan (+ plan-trace), estimate
    (+ estimate-trace), validation. Written once per test session: under pytest-xdist the
    first worker writes them into the run's shared folder while the others wait."""
    from filelock import FileLock  # a dependency of torch

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # this run's folder, shared by its workers
    d = base / "report_docs"
    d.mkdir(exist_ok=True)
    files = {k: d / f"{k}.json" for k in ("analysis", "analysis-plain", "plan", "plan-trace",
                                          "estimate", "estimate-trace", "validation")}
    with FileLock(str(d / ".lock")):
        if not (d / ".done").exists():
            _write(files)
            (d / ".done").write_text("ok")
    return files


def _write(files: dict[str, Path]) -> None:
    _invoke(["analyze", *GPT, "-b", "2", "--hardware", "h100-sxm", "-o",
             str(files["analysis"])])
    _invoke(["analyze", *GPT, "-b", "2", "-o", str(files["analysis-plain"])])
    _invoke(["plan", *GPT, "--gpus", "4,8", "--gbs", "16", "--fix", "pp=2,recompute=none",
             "--top", "3", "-o", str(files["plan"]), "--timeline", str(files["plan-trace"])])
    _invoke(["estimate", *GPT, "--plan", "dp=2,tp=2,pp=2,gbs=16", "-o", str(files["estimate"]),
             "--timeline", str(files["estimate-trace"])])
    _invoke(["validate", *GPT, "--plan", "mbs=2,gbs=2", "--steps", "1", "--warmup", "0",
             "-o", str(files["validation"])])


def load(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def hostile(doc: dict) -> dict:
    """``doc`` with every user-supplied string it has replaced by markup and table breakers:
    model name and config, module paths and classes, op classes, plan strings, hardware
    names, warnings."""
    doc = copy.deepcopy(doc)
    doc["model"]["name"] = HOSTILE
    doc["model"]["config"] = {**doc["model"].get("config", {}), "tag": HOSTILE}
    for m in doc.get("modules", [])[:3]:
        m["path"] = m["path"] + HOSTILE if m["path"] else m["path"]
        m["class"] = HOSTILE
    for c in doc.get("op_classes", [])[:2]:
        c["class"] = HOSTILE + c["class"]
    est = doc.get("estimate")
    if isinstance(est, dict):
        if doc["kind"] == "analysis":
            est["hardware"] = HOSTILE
            for c in est.get("op_classes", [])[:2]:
                c["class"] = HOSTILE + c["class"]
            for m in est.get("modules", [])[1:3]:
                m["path"] = m["path"] + HOSTILE
        else:
            est["hardware"]["gpu"] = HOSTILE
            for c in est.get("comm", []):
                c["note"] = HOSTILE
    for p in doc.get("plans", []):
        p["plan"] = p["plan"] + "," + HOSTILE
        p["estimate"]["hardware"]["gpu"] = HOSTILE
    for p in doc.get("pareto", []):
        p["plan"] = HOSTILE + p["plan"]
    if isinstance(doc.get("plan"), str):
        doc["plan"] = doc["plan"] + "," + HOSTILE
    if isinstance(doc.get("hardware"), dict):
        for k, v in list(doc["hardware"].items()):
            if isinstance(v, str):
                doc["hardware"][k] = HOSTILE
    if "warnings" in doc:
        doc["warnings"] = [HOSTILE]
    for c in (doc.get("validation") or {}).get("components", []):
        c["name"] = c["name"] + HOSTILE
    return doc
