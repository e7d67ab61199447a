"""Symbolic cost in (b, s) on a hardware profile, and "largest size that fits" queries.

Traced quantities (FLOPs, bytes, saved activations) are fitted exactly as polynomials in b and
s, peak memory as the largest of several such polynomials, piecewise in b
(``trace/symbolic.py``). On a GPU profile the step time is written as a
piecewise expression: one roofline term per op class,
``T(b, s) = sum_c Max(F_c(b, s) / (peak_c * e_c), B_c(b, s) / (mem_bw * m_c)) + n_ops * launch``,
which switches from memory- to compute-bound where the two arguments cross.
NB: the efficiencies e_c, m_c are the class's effective ones at the traced size, so the
expression equals the per-op engine there when each class is uniformly compute- or memory-bound.

``--solve "max b s.t. memory <= 80GB"`` finds the largest batch (or ``s``, sequence) whose
peak memory fits: from the fitted polynomial when there is one, then checked by tracing the
answer and the next size up.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import sympy

from archcost.errors import ConfigError, InfeasibleError
from archcost.hardware.units import UnitError, parse_quantity
from archcost.report.fmt import nbytes
from archcost.trace.symbolic import B, S

__all__ = ["Query", "parse_query", "step_time_expression", "solve_max", "measure_point",
           "peak_document"]

_QUERY = re.compile(r"^\s*max\s+([bs])\s+s\.?t\.?\s+memory\s*<=\s*(.+?)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Query:
    variable: str  # "b" or "s"
    limit_bytes: float


def parse_query(text: str, capacity: float | None = None) -> Query:
    m = _QUERY.match(text)
    if not m:
        raise ConfigError(
            f"--solve {text!r} is not understood; write it like \"max b s.t. memory <= 80GB\" "
            "(or max s; the limit may be 'capacity' with --hardware)"
        )
    var, limit = m.group(1).lower(), m.group(2)
    if limit.lower() == "capacity":
        if capacity is None:
            raise ConfigError("--solve ... <= capacity needs --hardware to know the capacity")
        return Query(var, capacity)
    try:
        return Query(var, parse_quantity(limit, "bytes"))
    except UnitError:
        raise ConfigError(f"--solve: {limit!r} is not a memory size; write it like 80GB") from None


def step_time_expression(class_terms: dict[str, dict], gpu, compute_dtype: str) -> sympy.Expr:
    """Sum over op classes of the roofline Max of fitted FLOP and byte polynomials.

    ``class_terms[c]`` holds the fitted ``flops``, ``bytes`` and ``ops`` polynomials and the
    class's effective ``compute_eff`` and ``memory_eff`` measured by the engine at one size.
    """
    from archcost.cost.compute import PEAK_KEY, TENSOR_CORE_CLASSES

    total = sympy.Integer(0)
    for cls, term in class_terms.items():
        key = PEAK_KEY.get(compute_dtype, "fp32") if cls in TENSOR_CORE_CLASSES else "fp32"
        peak = gpu.peak_flops_per_s.get(key) or gpu.peak_flops_per_s["fp32"]
        compute = (term["flops"] / sympy.Float(peak * term["compute_eff"])
                   if term["flops"] != 0 else sympy.Integer(0))
        memory = (term["bytes"] / sympy.Float(gpu.mem_bw_bytes_per_s * term["memory_eff"])
                  if term["bytes"] != 0 else sympy.Integer(0))
        total += sympy.Max(compute, memory) + term["ops"] * sympy.Float(gpu.kernel_launch_s)
    return total


def measure_point(traced, persistent_bytes: int) -> dict[str, int]:
    """Integer quantities of one trace that the polynomial fits use (peak memory is fitted
    apart, from the live bytes after each op: ``trace.symbolic.fit_peak``)."""
    from archcost.analysis import phase_flops

    g = traced.graph
    out = {f"flops_{k}": v for k, v in phase_flops(g).items()}
    out["bytes_moved"] = sum((d["bytes_read"] + d["bytes_written"]) * d["count"]
                             for _, d in g.nodes(data=True))
    out["activations_saved_bytes"] = sum(traced.capture.saved.values())
    for _, d in g.nodes(data=True):
        c = d["op_class"]
        out[f"class:{c}:flops"] = out.get(f"class:{c}:flops", 0) + d["flops"] * d["count"]
        out[f"class:{c}:bytes"] = out.get(f"class:{c}:bytes", 0) + (
            d["bytes_read"] + d["bytes_written"]) * d["count"]
        if d["flops"] or d["bytes_read"] or d["bytes_written"]:  # views launch no kernel
            out[f"class:{c}:ops"] = out.get(f"class:{c}:ops", 0) + d["count"]
        else:
            out.setdefault(f"class:{c}:ops", 0)
    return out


def peak_document(peak) -> dict:
    """The JSON of a ``trace.symbolic.PeakFormula``: its pieces along b, or why it has none."""
    if peak.terms is None:
        return {"fitted": False, "reason": peak.reason}
    return {
        "fitted": True, "s": peak.s, "terms": [str(t) for t in peak.terms],
        "pieces": [{"b_from": p.b_from, "b_to": p.b_to, "formula": str(p.expr)}
                   for p in peak.pieces],
        "checked_at": [list(p) for p in peak.checked],
        "note": "the largest over the step's ops of the bytes live after each op; each term "
                "is exact, the pieces are the leading term on each range of b at s, checked by "
                "tracing on both sides of every breakpoint",
    }


def solve_max(query: Query, fixed: int, peak_poly: sympy.Expr | None,
              exact_peak: Callable[[int], int], upper: int = 1 << 24) -> int:
    """Largest v >= 1 with peak(v) <= limit, the other variable fixed at ``fixed``."""
    var = B if query.variable == "b" else S
    other = S if var is B else B

    def fits_poly(v: int) -> bool:
        return peak_poly.subs({var: v, other: fixed}) <= query.limit_bytes

    fits = fits_poly if peak_poly is not None else (lambda v: exact_peak(v) <= query.limit_bytes)
    if not fits(1):
        raise InfeasibleError(
            f"even {query.variable}=1 needs more than {nbytes(query.limit_bytes, 4)}; "
            "use a smaller model, a lower precision or recomputation"
        )
    lo, hi = 1, 2
    while hi <= upper and fits(hi):
        lo, hi = hi, hi * 2
    if hi > upper:
        return lo
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    # confirm with real traces: the answer fits and the next size does not
    while lo > 1 and exact_peak(lo) > query.limit_bytes:
        lo -= 1
    while exact_peak(lo + 1) <= query.limit_bytes and lo < upper:
        lo += 1
    return lo
