"""Exact polynomial formulas in batch ``b`` and sequence ``s``, fitted from concrete traces.

A training step's FLOPs, bytes and saved activations are polynomials in (b, s) for the models
this tool targets (dense layers: b*s, attention: b*s**2, optimizer: constant, learned positions:
s). We trace the model at a grid of sizes, solve exactly (rational arithmetic) for the
coefficients of the monomials b**i * s**j (i <= 1, j <= 2) on six points, and keep the formula
only if it reproduces every held-out point exactly. A quantity that is not such a polynomial
(capacity rounding in MoE at awkward sizes, say) is reported as not fitted rather than guessed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import sympy

__all__ = ["FittedFormula", "fit_polynomial", "sample_points", "B", "S"]

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
    check = [(3, svals[0]), (3, svals[3]), (2, svals[3])]
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
    names = next(iter(samples.values())).keys()
    return {
        n: fit_polynomial(n, {p: v[n] for p, v in samples.items()}, fit, check) for n in names
    }
