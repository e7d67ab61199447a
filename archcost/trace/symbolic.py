"""Exact formulas in batch ``b`` and sequence ``s``, fitted from concrete traces.

A training step's FLOPs, bytes and saved activations are polynomials in (b, s) for the models
this tool targets (dense layers: b*s, attention: b*s**2, optimizer: constant, learned positions:
s). We trace the model at a grid of sizes, solve exactly (rational arithmetic) for the
coefficients of the monomials b**i * s**j (i <= 1, j <= 2) on six points, and keep the formula
only if it reproduces every held-out point exactly; the held-out points include a large batch
(b = 65536), far outside the fitting set. A quantity that is not such a polynomial (capacity
rounding in MoE at awkward sizes, say) is reported as not fitted rather than guessed.

Peak memory is not a polynomial: it is the largest, over the ops of the step, of the bytes live
after each op, and which op holds the peak moves with the size (the optimizer step's states at a
small batch, the end of forward at a large one). ``fit_peak`` fits the live bytes after every op
as a polynomial (the op schedule is the same at every size), then keeps the upper envelope in b:
at each sampled s every term is linear in b, so the envelope's lines and their breakpoints are
found exactly. The peak is ``Max`` of those terms; along b at the analysed s it is a list of
pieces, each a polynomial on its range of b. NB: in s the terms are those that lead at some
sampled s; between samples the formula is only checked where it was traced.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction

import sympy

__all__ = ["FittedFormula", "PeakFormula", "Piece", "fit_polynomial", "fit_peak",
           "verify_pieces", "sample_points", "B", "S", "LARGE_B"]

LARGE_B = 65536  # a check point far outside the fitting set (b = 1, 2)

B, S = sympy.symbols("b s", positive=True, integer=True)
MONOMIALS = [B**i * S**j for i in range(2) for j in range(3)]


@dataclass(frozen=True)
class FittedFormula:
    name: str
    expr: sympy.Expr | None  # None when no exact polynomial of this degree fits
    points_checked: int

    def __str__(self) -> str:
        return "not a polynomial of degree (1 in b, 2 in s)" if self.expr is None else str(self.expr)


def sample_points(seq_len: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(fit points, check points) around the requested sequence length.

    Sequence values are multiples of 8 when the requested length allows it, so capacity-style
    rounding (``ceil(k*b*s/E)``) stays exact; sizes 0 and 1 are avoided (they specialise).
    """
    if seq_len >= 32:
        step = max(8, (seq_len // 4) // 8 * 8)
        svals = [step, 2 * step, 3 * step, 4 * step]
    else:
        svals = [max(2, seq_len - 3) + k for k in range(4)]
    fit = [(b, s) for b in (1, 2) for s in svals[:3]]
    check = [(3, svals[0]), (3, svals[3]), (2, svals[3]), (64, svals[1]), (LARGE_B, svals[0])]
    return fit, check


def fit_polynomial(
    name: str, values: dict[tuple[int, int], int], fit: Sequence[tuple[int, int]],
    check: Sequence[tuple[int, int]],
) -> FittedFormula:
    """Solve ``sum c_k m_k(b, s) = value`` exactly on ``fit``; verify on ``check``."""
    rows = [[m.subs({B: b, S: s}) for m in MONOMIALS] for b, s in fit]
    rhs = [sympy.Integer(values[p]) for p in fit]
    matrix = sympy.Matrix(rows)
    if matrix.rank() < len(MONOMIALS):
        return FittedFormula(name, None, 0)
    coeffs = matrix.LUsolve(sympy.Matrix(rhs))
    expr = sympy.expand(sum(c * m for c, m in zip(coeffs, MONOMIALS)))
    for b, s in check:
        if expr.subs({B: b, S: s}) != values[(b, s)]:
            return FittedFormula(name, None, len(check))
    return FittedFormula(name, expr, len(check))


def fit_many(
    measure: Callable[[int, int], dict[str, int]], seq_len: int
) -> dict[str, FittedFormula]:
    """Call ``measure(b, s)`` on every sample point and fit each returned quantity."""
    fit, check = sample_points(seq_len)
    samples = {p: measure(*p) for p in list(fit) + list(check)}
    return fit_samples(samples, fit, check)


def fit_samples(samples: dict[tuple[int, int], dict[str, int]], fit, check
                ) -> dict[str, FittedFormula]:
    """Fit each quantity of ``samples`` (values by (b, s)) on ``fit``, verified on ``check``."""
    names = next(iter(samples.values())).keys()
    return {
        n: fit_polynomial(n, {p: v[n] for p, v in samples.items()}, fit, check) for n in names
    }


# ---------------------------------------------------------------- peak memory: max of terms ---

@dataclass(frozen=True)
class Piece:
    """``expr`` is the peak for ``b_from <= b <= b_to`` (``b_to`` None: no upper end)."""

    b_from: int
    b_to: int | None
    expr: sympy.Expr


@dataclass(frozen=True)
class PeakFormula:
    """Peak memory as ``Max(*terms)``, and its pieces along b at ``s``; ``terms`` is None when
    it cannot be fitted (``reason`` says why)."""

    terms: tuple[sympy.Expr, ...] | None
    pieces: tuple[Piece, ...]
    s: int
    reason: str = ""
    checked: tuple[tuple[int, int], ...] = ()  # (b, s) traced outside the fitting set

    @property
    def expr(self) -> sympy.Expr | None:
        return None if self.terms is None else sympy.Max(*self.terms)

    def at(self, b: int, s: int) -> int:
        return max(int(t.subs({B: b, S: s})) for t in self.terms)


def _not_fitted(s: int, reason: str) -> PeakFormula:
    return PeakFormula(None, (), s, reason)


def fit_peak(timelines: dict[tuple[int, int], Sequence[int]], fit: Sequence[tuple[int, int]],
             check: Sequence[tuple[int, int]], seq_len: int) -> PeakFormula:
    """Peak memory from the live bytes after each op (``timelines``, by (b, s), exact integers)
    at the ``fit`` and ``check`` points of ``sample_points``; pieces along b at ``seq_len``."""
    lengths = {len(t) for t in timelines.values()}
    if len(lengths) != 1:
        return _not_fitted(seq_len, "the op schedule changes with the size")
    points = list(fit) + list(check)
    columns = sorted(set(zip(*[timelines[p] for p in points], strict=True)))
    inverse = sympy.Matrix([[m.subs({B: b, S: s}) for m in MONOMIALS] for b, s in fit]).inv()
    inv = [[Fraction(int(x.p), int(x.q)) for x in inverse.row(i)] for i in range(len(MONOMIALS))]
    powers = [(sympy.degree(m, B), sympy.degree(m, S)) for m in MONOMIALS]
    polys = []  # coefficients per monomial, one tuple per distinct column
    for col in columns:
        coeffs = tuple(sum(r * v for r, v in zip(row, col[:len(fit)], strict=True)) for row in inv)
        for (b, s), value in zip(check, col[len(fit):], strict=True):
            if sum(c * b**i * s**j for c, (i, j) in zip(coeffs, powers, strict=True)) != value:
                return _not_fitted(seq_len, f"the bytes live after some op are not a polynomial "
                                   f"of degree (1 in b, 2 in s): off at b={b}, s={s}")
        polys.append(coeffs)
    s_values = sorted({s for _, s in points} | {seq_len})
    kept: dict[tuple, None] = {}
    for s in s_values:
        for k, _ in _envelope(polys, powers, s):
            kept[polys[k]] = None
    terms = tuple(sympy.expand(sum(sympy.Rational(c.numerator, c.denominator) * m
                                   for c, m in zip(p, MONOMIALS, strict=True))) for p in kept)
    formula = PeakFormula(terms, _pieces(polys, powers, seq_len), seq_len,
                          checked=tuple(check))
    for (b, s) in points:
        if formula.at(b, s) != max(timelines[(b, s)]):
            return _not_fitted(seq_len, f"the envelope misses the traced peak at b={b}, s={s}")
    return formula


def verify_pieces(formula: PeakFormula, peak_at: Callable[[int], int]) -> PeakFormula:
    """``formula`` with its breakpoints checked: the peak traced (``peak_at(b)`` at the pieces'
    ``s``) on both sides of each breakpoint equals the formula's; else not fitted, saying where.
    """
    if formula.terms is None:
        return formula
    sides = sorted({b for p in formula.pieces if p.b_to is not None for b in (p.b_to, p.b_to + 1)})
    for b in sides:
        traced, fitted = peak_at(b), formula.at(b, formula.s)
        if traced != fitted:
            return _not_fitted(formula.s, f"at the breakpoint b={b} (s={formula.s}) a trace "
                               f"gives {traced} bytes, the pieces {fitted}")
    return dataclasses.replace(formula, checked=formula.checked
                               + tuple((b, formula.s) for b in sides))


def _line(p, powers, s: int) -> tuple[Fraction, Fraction]:
    """(slope, intercept) in b of the term with coefficients ``p`` at sequence ``s``."""
    slope = sum(c * s**j for c, (i, j) in zip(p, powers, strict=True) if i == 1)
    return slope, sum(c * s**j for c, (i, j) in zip(p, powers, strict=True) if i == 0)


def _envelope(polys, powers, s: int) -> list[tuple[int, Fraction]]:
    """Upper envelope in b >= 1 at ``s``: (term index, b where it starts leading), in order.
    From the term leading at b = 1, the next is the steeper term that crosses it first (ties:
    the steepest), until no term is steeper."""
    lines = [_line(p, powers, s) for p in polys]
    at_one = [a + c for a, c in lines]
    k = max(range(len(lines)), key=lambda i: (at_one[i], lines[i][0]))
    out, x = [(k, Fraction(1))], Fraction(1)
    while True:
        a, c = lines[k]
        best = None
        for j, (a2, c2) in enumerate(lines):
            if a2 > a:
                cross = max(x, (c - c2) / (a2 - a))
                if best is None or (cross, -a2) < (best[1], -lines[best[0]][0]):
                    best = (j, cross)
        if best is None:
            return out
        k, x = best
        out.append(best)


def _pieces(polys, powers, s: int) -> tuple[Piece, ...]:
    """The envelope at ``s`` as pieces over integer b: a term leads from the first integer at
    or after its start through the last integer before the next term's start."""
    env = _envelope(polys, powers, s)
    out = []
    for n, (k, start) in enumerate(env):
        lo = max(1, -(-start.numerator // start.denominator))  # ceil
        hi = None
        if n + 1 < len(env):
            nxt = env[n + 1][1]
            hi = -(-nxt.numerator // nxt.denominator) - 1
        if hi is not None and hi < lo:
            continue  # leads only between two integers
        slope, icept = _line(polys[k], powers, s)
        out.append(Piece(lo, hi, sympy.Rational(slope.numerator, slope.denominator) * B
                         + sympy.Rational(icept.numerator, icept.denominator)))
    return tuple(out)
