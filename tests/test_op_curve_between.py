"""benchmarks/op_curve_between.py times the calibration's forward ops between the op grid's
sizes and prices them on a calibrated profile both ways: it runs on a profile with per-op
curves (two ops, one size here, to stay quick) and refuses one without them in one line."""

from __future__ import annotations

import pytest

from tests.conftest import ROOT, load_module

bench = load_module(ROOT / "benchmarks" / "op_curve_between.py")
_CPU = (ROOT / "hardware_profiles" / "gpus" / "cpu.yaml").read_text()
_CURVES = """op_efficiency:
  aten.mul: [[1.0e+4, 0.1], [1.0e+8, 0.1]]
  aten.gelu: [[1.0e+4, 0.01], [1.0e+8, 0.04]]
"""


def test_it_times_and_prices_each_op(tmp_path, monkeypatch, capsys):
    path = tmp_path / "p.yaml"
    path.write_text(_CPU + _CURVES)
    monkeypatch.setattr(bench, "MIDPOINTS", (1 << 10,))
    assert bench.main(["--profile", str(path), "--threads", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("op,numel,bytes,measured_us")
    rows = [ln.split(",") for ln in lines[1:] if not ln.startswith("#")]
    assert sorted(r[0] for r in rows) == ["aten.gelu", "aten.mul"]
    for r in rows:
        assert int(r[1]) == 1 << 10 and int(r[2]) > 0
        assert all(float(x) > 0 for x in r[3:])
    summary = [ln for ln in lines if ln.startswith("#")]
    assert [s.split(":")[0] for s in summary] == ["# straight", "# capped"]


def test_a_profile_without_op_curves_is_one_line(capsys):
    assert bench.main(["--profile", str(ROOT / "hardware_profiles" / "gpus" / "cpu.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "op_efficiency" in err and "\n" not in err


@pytest.mark.parametrize("profile", ["missing.yaml"])
def test_a_missing_profile_is_one_line(tmp_path, capsys, profile):
    assert bench.main(["--profile", str(tmp_path / profile)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
