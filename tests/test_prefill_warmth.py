"""benchmarks/prefill_warmth.py times a bundled model's prefill four ways and prices it: it runs
on one small point (the tiny MoE at batch 1, one prefill a way, a small cache to flush) and
refuses a missing profile in one line."""

from __future__ import annotations

from tests.conftest import ROOT, load_module

bench = load_module(ROOT / "benchmarks" / "prefill_warmth.py")
_WAYS = ("back-to-back", "in a generation", "after a 25 ms spin", "after 2x LLC written")


def test_it_times_each_way_and_prices_the_prefill(monkeypatch, capsys):
    monkeypatch.setattr(bench, "MODELS", [("moe", ["models/moe.py", "--set", "preset=tiny"])])
    monkeypatch.setattr(bench, "POINTS", [(1, 128, 32)])
    profile = str(ROOT / "hardware_profiles" / "gpus" / "cpu.yaml")
    assert bench.main(["--profile", profile, "--threads", "1", "--reps", "1",
                       "--llc-mib", "4"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [c.strip() for c in lines[0].strip("|").split("|")][3:] == list(_WAYS)
    cells = [c.strip() for c in lines[2].strip("|").split("|")]
    assert cells[:2] == ["moe", "1"] and len(cells) == 3 + len(_WAYS)
    priced = float(cells[2].split()[0])
    for cell in cells[3:]:  # "<ms> ms (<ratio>x)", the ratio that time over the price
        ms, ratio = float(cell.split()[0]), float(cell.split("(")[1].rstrip("x)"))
        # each figure printed to 2 decimals: the ratio within their rounding of ms / priced
        assert ms > 0 and abs(ratio - ms / priced) <= 0.005 + ratio * (0.005 / ms
                                                                         + 0.005 / priced)


def test_a_missing_profile_is_one_line(tmp_path, capsys):
    assert bench.main(["--profile", str(tmp_path / "missing.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
