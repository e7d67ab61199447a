"""Symbolic formulas: peak memory is a max of polynomials, fitted piecewise in b and checked
against real traces far outside the fitting set (b = 65536)."""

from __future__ import annotations

import json

import pytest
import sympy

from archcost.cli import app
from archcost.cost.memory import peak_memory
from archcost.loader import load_model_file
from archcost.trace import trace_model
from archcost.trace.precision import parse_precision
from archcost.trace.symbolic import B, S, fit_peak, sample_points, verify_pieces
from tests.conftest import MODELS

FP32 = parse_precision("fp32")


def _timelines(terms, seq_len=64):
    """Live bytes after each of len(terms) ops at every sample point, from known functions."""
    fit, check = sample_points(seq_len)
    return {p: [f(*p) for f in terms] for p in fit + check}, fit, check


def test_a_max_of_terms_is_fitted_piecewise_with_the_breakpoints_by_hand():
    """The optimizer's states lead at a small batch, the end of forward at a large one:
    1,000,000 against 100 b s + 20,000 and 10 b s (never leading). At s = 64 the second leads
    from 100*64*b + 20000 > 1e6, i.e. b > 153.1: pieces b <= 153 and b >= 154."""
    terms = [lambda b, s: 1_000_000, lambda b, s: 100 * b * s + 20_000, lambda b, s: 10 * b * s]
    tl, fit, check = _timelines(terms)
    peak = fit_peak(tl, fit, check, 64)
    assert set(peak.terms) == {sympy.Integer(1_000_000), 100 * B * S + 20_000}
    assert [(p.b_from, p.b_to) for p in peak.pieces] == [(1, 153), (154, None)]
    assert [p.expr for p in peak.pieces] == [sympy.Integer(1_000_000), 6400 * B + 20_000]
    for b in (1, 153, 154, 65536):
        assert peak.at(b, 64) == max(f(b, 64) for f in terms)


def test_three_pieces_and_an_attention_term():
    """At s = 256: 5,000,000; 100,000 b + 3,000,000 (equal to it at b = 20); the attention term
    2 b s**2 + 100 s = 131,072 b + 25,600 (over the middle one from b > 95.7). By hand: the
    constant through b = 19, the middle from 20 through 95, attention from 96."""
    terms = [lambda b, s: 5_000_000, lambda b, s: 100_000 * b + 3_000_000,
             lambda b, s: 2 * b * s * s + 100 * s]
    tl, fit, check = _timelines(terms, seq_len=256)
    peak = fit_peak(tl, fit, check, 256)
    assert [(p.b_from, p.b_to) for p in peak.pieces] == [(1, 19), (20, 95), (96, None)]
    for b in (1, 19, 20, 95, 96, 65536):
        assert peak.at(b, 256) == max(f(b, 256) for f in terms)
    # a steeper term that overtakes before the middle one ever leads leaves two pieces
    terms[1] = lambda b, s: 76_800 * b + 2_000_000  # over 5e6 from b > 39.1; attention from 38
    tl, fit, check = _timelines(terms, seq_len=256)
    assert [(p.b_from, p.b_to) for p in fit_peak(tl, fit, check, 256).pieces] == [(1, 37),
                                                                                   (38, None)]


def test_what_is_not_a_max_of_polynomials_is_said_plainly():
    tl, fit, check = _timelines([lambda b, s: -(-b * s // 3)])  # ceil(b s / 3)
    peak = fit_peak(tl, fit, check, 64)
    assert peak.terms is None and "not a polynomial" in peak.reason
    tl[fit[0]] = tl[fit[0]] + [0]
    assert "schedule changes" in fit_peak(tl, fit, check, 64).reason


def test_a_breakpoint_the_traces_contradict_is_refused():
    terms = [lambda b, s: 1_000_000, lambda b, s: 100 * b * s + 20_000]
    tl, fit, check = _timelines(terms)
    peak = fit_peak(tl, fit, check, 64)
    ok = verify_pieces(peak, lambda b: max(f(b, 64) for f in terms))
    assert ok.terms is not None and (153, 64) in ok.checked and (154, 64) in ok.checked
    bad = verify_pieces(peak, lambda b: max(f(b, 64) for f in terms) + (b == 154))
    assert bad.terms is None and "b=154" in bad.reason


def _peak(spec, b, s):
    t = trace_model(spec, b, s, FP32)
    persistent = (sum(p.numel * 4 for p in t.capture.params) + t.capture.optimizer_state_bytes)
    return peak_memory(t.graph, persistent).peak_bytes


@pytest.mark.parametrize("model, cfg, seq, points", [
    ("seed_mlp.py", {}, 1024, [(1, 1024), (64, 1024), (241, 1024), (242, 1024), (1000, 1024),
                                (65536, 1024)]),
    ("gpt2.py", dict(layers=2, hidden=64, heads=4, vocab=256), 64,
     [(1, 64), (64, 64), (5, 48), (65536, 32), (1000, 16)]),
])
def test_the_peak_formula_equals_real_traces_at_large_batches(runner, model, cfg, seq, points):
    """The formula ``analyze --symbolic`` prints, against the engine's liveness peak of a trace
    at each size (the old fit gave seed_mlp a constant, 84x low at b = 65536)."""
    sets = [a for k, v in cfg.items() for a in ("--set", f"{k}={v}")]
    r = runner.invoke(app, ["analyze", str(MODELS / model), *sets, "-s", str(seq), "--symbolic",
                            "--json"])
    assert r.exit_code == 0, r.output
    sym = json.loads(r.output)["symbolic"]
    expr = sympy.sympify(sym["formulas"]["peak_memory_bytes"], locals={"b": B, "s": S})
    assert sym["peak_memory"]["fitted"] and len(sym["peak_memory"]["pieces"]) >= 2
    spec = load_model_file(str(MODELS / model), cfg)
    for b, s in points:
        assert int(expr.subs({B: b, S: s})) == _peak(spec, b, s), (b, s)
    for piece in sym["peak_memory"]["pieces"]:  # each piece is the formula on its range
        f = sympy.sympify(piece["formula"], locals={"b": B})
        for b in {piece["b_from"], piece["b_to"] or 2 * piece["b_from"]}:
            assert f.subs(B, b) == expr.subs({B: b, S: sym["peak_memory"]["s"]})
