"""Benchmark: one transformer layer's 12 GEMMs and their quantisation, bf16 against fp8, on the
layer Transformer Engine profiles (the check of archcost's fp8 peak and cast costs).

Transformer Engine's GEMM profiling (NVIDIA/TransformerEngine@d0067d0
``docs/examples/gemm_profiling/gemm_profiling.rst``, ``docs/features/low_precision_training/
speedups.rst``) times the 4 forward, 4 dgrad and 4 wgrad GEMMs of a layer with hidden 4096, a
non-gated FFN of 16384 and 32 heads at M = 31 x 512 tokens on an H200 NVL: 32.014 ms in bf16,
20.285 ms with fp8 current scaling and 18.978 ms with delayed scaling under autocast
(quantisation included), 16.785 ms for pre-quantised current-scaled operands (GEMMs alone).
This script traces the same layer (``models/gpt2.py``, no biases) and prices it on the bundled
``h200`` profile: the GEMMs (``aten.mm`` / ``aten._scaled_mm``) and the quantisation ops of
forward and backward (``archcost_lowp``), and the weight casts archcost runs once per step
(the weight cache) apart. NB: the profile is the 700 W H200 SXM, TE's part the 600 W H200 NVL:
compare the ratios, not the milliseconds.

    python benchmarks/fp8_layer.py
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TE_MS = {"bf16": 32.014, "tensorwise": 20.285, "delayed": 18.978}  # autocast, per layer
TE_GEMM_ONLY_MS = 16.785  # pre-quantised, current scaling


def layer_ms(dtype: str, recipe: str | None) -> dict[str, float]:
    from archcost.cost.compute import compute_times, lower
    from archcost.hardware.profile import load_gpu
    from archcost.loader import load_model_file
    from archcost.trace import trace_model
    from archcost.trace.precision import parse_precision

    # two layers: the low-precision policy converts the repeated blocks; the first is read
    spec = load_model_file(str(ROOT / "models" / "gpt2.py"), {
        "layers": 2, "hidden": 4096, "heads": 32, "ffn": 16384, "vocab": 128, "bias": False})
    arrays = lower(trace_model(spec, 31, 512, parse_precision(dtype, fp8_recipe=recipe)).graph)
    seconds = compute_times(arrays, load_gpu("h200")).seconds
    out: dict[str, float] = defaultdict(float)
    for i, op in enumerate(arrays.op):
        if not arrays.module[i].startswith("layers.0"):
            continue
        per_layer = seconds[i] / arrays.count[i] * 1e3
        if op.startswith("archcost_lowp"):
            out["weight casts (per step)" if arrays.phase[i] == "optimizer" else "quant"] += \
                per_layer
        elif op in ("aten.mm", "aten._scaled_mm") and arrays.phase[i] != "optimizer":
            out["gemm"] += per_layer
    return out


def main() -> None:
    rows = [("bf16", "bf16-mixed", None), ("tensorwise", "fp8", "tensorwise"),
            ("delayed", "fp8", "delayed")]
    got = {label: layer_ms(dt, rec) for label, dt, rec in rows}
    base = got["bf16"]["gemm"]
    print("| recipe | GEMMs ms | quantisation ms | weight casts ms/step | speedup (GEMMs + "
          "quantisation) | TE autocast speedup |")
    print("|---|---|---|---|---|---|")
    for label, _, _ in rows:
        g = got[label]
        total = g["gemm"] + g["quant"]
        print(f"| {label} | {g['gemm']:.2f} | {g['quant']:.2f} | "
              f"{g['weight casts (per step)']:.2f} | {base / total:.2f}x | "
              f"{TE_MS['bf16'] / TE_MS[label]:.2f}x |")
    print(f"GEMMs alone: {base / got['tensorwise']['gemm']:.2f}x (TE pre-quantised "
          f"{TE_MS['bf16'] / TE_GEMM_ONLY_MS:.2f}x); quantisation / fp8 GEMMs: tensorwise "
          f"{got['tensorwise']['quant'] / got['tensorwise']['gemm']:.1%} (TE current "
          f"{TE_MS['tensorwise'] / TE_GEMM_ONLY_MS - 1:.1%})")


if __name__ == "__main__":
    main()
