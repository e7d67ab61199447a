"""The README's worked example ("The founding article's example, counted exactly"), generated
from the tool so its figures cannot drift: ``archcost analyze models/seed_mlp.py -b 1
--symbolic`` run in-process, its formulas written into the Markdown block between the
``worked-example`` markers of README.md.

    python scripts/readme_example.py           # print the block
    python scripts/readme_example.py --write   # rewrite the block in README.md

``tests/test_readme_example.py`` fails, naming this command, when README.md's block differs from
what this prints; it also checks the figures against FlopCounterMode and closed forms.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path

import sympy

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BEGIN, END = "<!-- worked-example:begin -->", "<!-- worked-example:end -->"
COMMAND = "python scripts/readme_example.py --write"

__all__ = ["figures", "render", "block_of", "BEGIN", "END", "COMMAND"]


def figures() -> dict:
    """The worked example's figures: the analysis document's totals, its symbolic formulas, and
    the forward FLOPs of the matmuls (per sample, from traces at b = 1 and 2)."""
    sys.path.insert(0, str(ROOT))
    from archcost.analysis import persistent_bytes, run_analysis
    from archcost.cost.memory import peak_memory
    from archcost.loader import load_model_file
    from archcost.trace import trace_model
    from archcost.trace.precision import parse_precision

    spec = load_model_file(str(ROOT / "models" / "seed_mlp.py"), {})
    policy = parse_precision("fp32")
    doc, _ = run_analysis(spec, 1, 1024, policy, "adamw", symbolic=True)
    matmul = []
    for b in (1, 2):
        g = trace_model(spec, b, 1024, policy).graph
        matmul.append(sum(d["flops"] * d["count"] for _, d in g.nodes(data=True)
                          if d["op_class"] == "matmul" and d["phase"] == "forward"))
    if matmul[1] != 2 * matmul[0]:
        raise RuntimeError(f"forward matmul FLOPs are not proportional to b: {matmul}")
    phases = []  # where each piece of the peak is reached, traced at its first b
    for piece in doc["symbolic"]["peak_memory"].get("pieces", []):
        t = trace_model(spec, piece["b_from"], 1024, policy)
        phases.append(peak_memory(t.graph, persistent_bytes(t.capture)).peak_phase)
    return {"totals": doc["totals"], "symbolic": doc["symbolic"],
            "forward_matmul_per_sample": matmul[0], "peak_phases": phases}


def _formula(text: str) -> str:
    """``4466944*b + 8681748`` as ``4,466,944·b + 8,681,748``."""
    expr = sympy.sympify(text, locals={"b": sympy.Symbol("b")})
    if isinstance(expr, sympy.Max):
        return "max(" + ", ".join(_formula(str(a)) for a in sorted(
            expr.args, key=lambda a: sympy.Poly(a, sympy.Symbol("b")).degree())) + ")"
    poly = sympy.Poly(expr, sympy.Symbol("b"))
    parts = []
    for (deg,), coeff in sorted(poly.terms(), reverse=True):
        parts.append(f"{int(coeff):,}" + ("·b" if deg == 1 else ""))
    return " + ".join(parts) or "0"


def _mib(n: int) -> str:
    return f"{n / 2**20:.2f} MiB"


def render(fig: dict) -> str:
    """The Markdown block, markers included."""
    t, f = fig["totals"], fig["symbolic"]["formulas"]
    mem = t["memory_bytes"]
    pieces = fig["symbolic"]["peak_memory"].get("pieces", [])
    one_sample = sympy.sympify(f["flops_total"]).subs(sympy.Symbol("b"), 1)
    orders = round(math.log10(1e10 / float(one_sample)))
    peak_text = f"peak memory {_formula(f['peak_memory_bytes'])} bytes"
    if len(pieces) > 1:
        peak_text += " (" + ", ".join(
            f"in {phase} for " + (f"b ≤ {p['b_to']:,}" if p["b_from"] == 1 else
                                  f"b ≥ {p['b_from']:,}" if p["b_to"] is None else
                                  f"{p['b_from']:,} ≤ b ≤ {p['b_to']:,}")
            for p, phase in zip(pieces, fig["peak_phases"], strict=True)) + ")"
    rows = [
        "| quantity | article's estimate | archcost, exact |",
        "|---|---|---|",
        f"| compute C | O(L·N·D²·H) ≈ 10¹⁰ | forward {_formula(f['flops_forward'])} FLOPs "
        f"({fig['forward_matmul_per_sample']:,}·b of them in the 10 matmuls), backward "
        f"{_formula(f['flops_backward'])}, AdamW step {_formula(f['flops_optimizer'])}: one step "
        f"= {_formula(f['flops_total'])} FLOPs |",
        f"| storage S | O(L·N·H + L·N·D) ≈ 2×10⁸ | {t['params']:,} parameters: "
        f"{_mib(mem['weights'])} of fp32 weights, {_mib(mem['gradients'])} of gradients, "
        f"{_mib(mem['optimizer_states'])} of Adam states; "
        f"{_formula(f['activations_saved_bytes'])} bytes of saved activations; {peak_text} |",
        f"| communication C_comm | O(L·N·D + L·N) ≈ 1.6×10⁸ | {_formula(f['bytes_moved'])} bytes "
        "moved between memory and compute per step; a data-parallel step all-reduces the "
        f"{_mib(mem['gradients'])} of gradients |",
        "",
        f"The article's compute estimate is {orders} orders of magnitude above one sample's step "
        f"({int(one_sample):,} FLOPs): a dense layer costs 2·B·D_in·D_out FLOPs, not L·N·D²·H.",
    ]
    return "\n".join([BEGIN, *rows, END])


def block_of(text: str) -> str | None:
    """The block between the markers in ``text`` (markers included), or None."""
    m = re.search(re.escape(BEGIN) + r".*?" + re.escape(END), text, re.S)
    return m.group(0) if m else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="rewrite the block in README.md")
    args = ap.parse_args()
    block = render(figures())
    if not args.write:
        print(block)
        return
    text = README.read_text()
    old = block_of(text)
    if old is None:
        sys.exit(f"README.md has no {BEGIN} ... {END} block")
    README.write_text(text.replace(old, block))
    print("README.md: worked example " + ("unchanged" if old == block else "rewritten"))


if __name__ == "__main__":
    main()
