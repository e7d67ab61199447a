"""``archcost ci``: this project's baselines, determinism, regressions and configuration
errors."""

from __future__ import annotations

import json
import re
import textwrap

from archcost.cli import app
from tests.conftest import MODELS, ROOT


def _differences(a, b, at: str = "") -> list[str]:
    """Where two JSON documents differ: every key, item and string exact, every float to
    1e-9 relative (the last digits of a float sum differ between CPUs' vector units: a
    pipeline bubble of 0.5401656156593926 on one x86 server is 0.5401656156593784 on another)."""
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return [f"{at}: keys {sorted(set(a) ^ set(b))}"]
        return [d for k in a for d in _differences(a[k], b[k], f"{at}.{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{at}: {len(a)} items against {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _differences(x, y, f"{at}[{i}]")]
    if isinstance(a, float) and isinstance(b, float):
        return [] if abs(a - b) <= 1e-9 * max(abs(a), abs(b)) else [f"{at}: {a!r} != {b!r}"]
    return [] if (type(a), a) == (type(b), b) else [f"{at}: {a!r} != {b!r}"]


def test_this_projects_reports_match_their_baselines(runner, tmp_path):
    """The committed reports/ are what the code produces today: the same documents, floats
    to their last few digits (:func:`_differences`)."""
    out = tmp_path / "out"
    r = runner.invoke(app, ["ci", "--config", str(ROOT / "pyproject.toml"), "--out-dir",
                            str(out), "--summary", str(tmp_path / "summary.md")])
    assert r.exit_code == 0, r.output
    for base in (ROOT / "reports").glob("*.json"):
        got, want = (json.loads(p.read_text()) for p in (out / base.name, base))
        assert not _differences(got, want), (base.name, _differences(got, want)[:5])
        md = (out / f"{base.stem}.md").read_text()
        assert re.search(r"^\|( *:?-+:? *\|)+$", md, re.M), "a Markdown table"
    assert "| identical |" in (tmp_path / "summary.md").read_text()


def _project(tmp_path, extra: str = "") -> str:
    (tmp_path / "pyproject.toml").write_text(textwrap.dedent(f"""
        [tool.archcost]
        reports_dir = "baselines"
        fail_above = "2%"
        {extra}
        [[tool.archcost.runs]]
        name = "tiny"
        kind = "analyze"
        model = "{MODELS / 'gpt2.py'}"
        set = {{ layers = 2, hidden = 64, heads = 4, vocab = 256 }}
        batch_size = 2
        seq_len = 64
        hardware = "h100-sxm"
    """))
    return str(tmp_path / "pyproject.toml")


def test_baselines_regressions_and_determinism(runner, tmp_path):
    cfg = _project(tmp_path)
    out = str(tmp_path / "out")
    r = runner.invoke(app, ["ci", "--config", cfg, "--out-dir", out, "--update-baselines"])
    assert r.exit_code == 0, r.output
    baseline = tmp_path / "baselines" / "tiny.json"
    first = baseline.read_bytes()
    r = runner.invoke(app, ["ci", "--config", cfg, "--out-dir", out])
    assert r.exit_code == 0 and "identical" in r.output
    assert (tmp_path / "out" / "tiny.json").read_bytes() == first  # byte-identical
    assert b"seconds\": " not in first.split(b'"capture"')[1].split(b"}")[0]
    # a baseline 10% faster than today: today's step time is a regression past 2%
    doc = json.loads(first)
    doc["estimate"]["step_time_s"] *= 0.9
    baseline.write_text(json.dumps(doc))
    r = runner.invoke(app, ["ci", "--config", cfg, "--out-dir", out])
    assert r.exit_code == 1, r.output
    assert "regressed" in r.output and "step_time" in r.output
    # a baseline 1% faster: within the threshold
    doc["estimate"]["step_time_s"] = json.loads(first)["estimate"]["step_time_s"] * 0.99
    baseline.write_text(json.dumps(doc))
    r = runner.invoke(app, ["ci", "--config", cfg, "--out-dir", out])
    assert r.exit_code == 0, r.output


def test_configuration_errors_exit_2(runner, tmp_path):
    r = runner.invoke(app, ["ci", "--config", str(tmp_path / "missing.toml")])
    assert r.exit_code == 2 and "no such file" in r.output
    cfg = _project(tmp_path)
    r = runner.invoke(app, ["ci", "--config", cfg, "--out-dir", str(tmp_path / "o")])
    assert r.exit_code == 2 and "--update-baselines" in r.output  # no baseline yet
    (tmp_path / "pyproject.toml").write_text("[tool.archcost]\nfail_above = 'lots'\n"
                                             "[[tool.archcost.runs]]\nname='a'\nkind='x'\n"
                                             "model='m.py'\n")
    r = runner.invoke(app, ["ci", "--config", cfg])
    assert r.exit_code == 2 and "lots" in r.output


def test_baselines_are_checked_and_a_lost_metric_fails(runner, tmp_path):
    """A baseline its schema refuses is one line and exit 2 (fix: --update-baselines); a run
    that lost watched metrics (the analysis without --hardware) fails the gate: exit 1."""
    cfg = _project(tmp_path)
    out = str(tmp_path / "out")
    r = runner.invoke(app, ["ci", "--config", cfg, "--out-dir", out, "--update-baselines"])
    assert r.exit_code == 0, r.output
    baseline = tmp_path / "baselines" / "tiny.json"
    good = baseline.read_text()
    doc = json.loads(good)
    doc["totals"]["flops"]["total"] = "many"
    baseline.write_text(json.dumps(doc))
    r = runner.invoke(app, ["ci", "--config", cfg, "--out-dir", out])
    assert r.exit_code == 2, r.output
    assert r.output.strip().splitlines()[-1] == (
        f"error: {baseline}: $.totals.flops.total: expected a number >= 0, found the string "
        "'many'; regenerate it with archcost ci --update-baselines and commit it")
    baseline.write_text(good)
    (tmp_path / "pyproject.toml").write_text(
        (tmp_path / "pyproject.toml").read_text().replace('hardware = "h100-sxm"', ""))
    r = runner.invoke(app, ["ci", "--config", cfg, "--out-dir", out])
    assert r.exit_code == 1, r.output
    assert re.search(r"^tiny\s+analyze\s+regressed\s+memory\.peak, ?step_time, ?mfu,", r.output,
                     flags=re.M), r.output
    assert "missing" in r.output
