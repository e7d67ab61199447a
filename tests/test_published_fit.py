"""The published-runs benchmark's fitting protocol: the one kind of figure fitted on published
runs (a sustained clock per GPU die) is fitted per die, on that die's runs only, and its
leave-one-source-out error never lets the held-out source's runs into the fit."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from archcost.hardware.profile import load_gpu

ROOT = Path(__file__).resolve().parents[1]


def _benchmark():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        spec = importlib.util.spec_from_file_location("published", ROOT / "benchmarks" / "published.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return mod


@pytest.fixture(scope="module")
def bench():
    return _benchmark()


@pytest.fixture(scope="module")
def cases(bench):
    """Three sources' runs on the bundled clusters of both fitted dies and of an unfitted one
    (the benchmark's own case list lives beside the repository, not in it)."""
    def case(i, source, cluster):
        return bench.Case(id=f"{source}{i}", source=source, model="gpt.py", sets={}, seq=2048,
                          dtype="bf16-mixed", runtime="megatron", plan="dp=8", cluster=cluster,
                          gpus=8, metric="s", value=1.0 + i, step_s=1.0 + i)
    layout = [("A", "dgx-a100-hdr"), ("A", "dgx-a100-hdr"), ("B", "dgx-a100-hdr"),
              ("B", "dgx-h100-ndr"), ("C", "dgx-h100-ndr"), ("C", "grand-teton-h100"),
              ("C", "mi300x-ib")]
    return [case(i, src, cl) for i, (src, cl) in enumerate(layout)]


def test_every_part_of_a_clock_family_carries_the_same_profile_figure(bench):
    for fam, parts in bench.CLOCK_FAMILIES.items():
        clocks = {load_gpu(p).sustained_clock for p in parts}
        assert len(clocks) == 1 and 0 < clocks.pop() < 1, fam
        for p in parts:
            assert bench.clock_family(load_gpu(p)) == fam


def test_each_family_is_fitted_on_its_own_runs_by_least_mean_absolute_error(bench, cases):
    # a synthetic grid: every case's error is (clock - its own optimum); the optimum differs by die
    best = {fam: 0.75 + 0.1 * i for i, fam in enumerate(bench.CLOCK_FAMILIES)}
    fam_of = {c.id: bench.clock_family(bench.cluster_for(c).gpu) for c in cases}
    grid = {s: {c.id: s - best.get(fam_of[c.id], 0.5) for c in cases} for s in bench.CLOCK_GRID}
    fitted = bench.fit_clocks(grid, cases)
    for fam in bench.CLOCK_FAMILIES:
        ids = [i for i, f in fam_of.items() if f == fam]
        assert ids, f"no published run on {fam}"
        brute = min(bench.CLOCK_GRID, key=lambda s: sum(abs(grid[s][i]) for i in ids))
        assert fitted[fam] == pytest.approx(brute) == pytest.approx(best[fam])


def test_a_family_without_runs_is_not_fitted(bench, cases):
    grid = {s: {c.id: s - 0.8 for c in cases} for s in bench.CLOCK_GRID}
    only_h100 = [c for c in cases if bench.clock_family(bench.cluster_for(c).gpu) == "GH100 700 W"]
    fitted = bench.fit_clocks(grid, only_h100)
    assert fitted["GA100 400 W"] == 1.0 and fitted["GH100 700 W"] == pytest.approx(0.8)


def test_leave_one_source_out_never_fits_on_the_held_out_source(bench, cases):
    errors = {c.id: 0.0 for c in cases}
    seen: list[set[str]] = []

    def fit(train):
        seen.append({c.source for c in train})
        return {"n": len(train)}

    def refit_predict(case, figures):
        assert figures["n"] == sum(1 for c in cases if c.source != case.source)
        return case.step_s

    out = bench.loso(cases, errors, fit=fit, refit_predict=refit_predict)
    sources = sorted({c.source for c in cases})
    assert sorted(out) == sources and len(seen) == len(sources)
    for src, train_sources in zip(sources, seen):
        assert src not in train_sources and train_sources == set(sources) - {src}
        assert out[src]["mean"] == 0.0
