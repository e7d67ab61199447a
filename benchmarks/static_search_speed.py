"""Speed of the static serving search (``archcost infer --gpus N``), by how many decode steps a
plan's mean TPOT prices: 257 (every step of an output up to 257, the old limit; the old rule
priced each of 256 runs at both ends beyond it, up to twice as many) against
``serving.EXACT_STEPS`` + 1 steps, the contexts between read on the lines joining them. Two
searches:
README's (Llama-3 70B, 8 GPUs of dgx-h100-ndr, 128 + 128 tokens, bf16, fp8 and int4 on the
``tensorrt-llm`` runtime) and a long output (Llama-3 8B, the same GPUs, 1,024 + 1,024 tokens,
bf16 and fp8), both within TTFT 500 ms and TPOT 50 ms. The steps are traced once outside the
clocks; both ways must rank the same plans, their figures within 1e-4.

    python benchmarks/static_search_speed.py
"""

from __future__ import annotations

import functools
import platform
import time
from datetime import date
from unittest import mock

from archcost.cli.infer import infer_policy, one_replica_cluster, quantizer
from archcost.infer import serving
from archcost.infer.price import InferenceCosts
from archcost.infer.search import search
from archcost.loader import load_model_file
from archcost.runtime import load_runtime

BEFORE_STEPS = 256
CASES = (("70b", 128, 128, ("bf16", "fp8", "int4")), ("8b", 1024, 1024, ("bf16", "fp8")))
PRECISIONS = {"bf16": ("bf16", None), "fp8": ("fp8", None), "int4": ("bf16", "int4")}


def run(spec, memo: dict, inp: int, out: int, precisions, steps: int | None):
    """The ranked plans and the search's seconds; ``steps``: decode steps priced per mean
    TPOT (None: the module's own)."""
    def costs_for(tp: int, pp: int, precision: str) -> InferenceCosts:
        dtype, weights = PRECISIONS[precision]
        costs = InferenceCosts(spec, one_replica_cluster("dgx-h100-ndr", tp * pp),
                               infer_policy(dtype), load_runtime("tensorrt-llm"),
                               build_len=inp + out, tp=tp, pp=pp,
                               quantize=quantizer(dtype, weights, 128, None), memo=memo)
        costs.check_shapes()
        return costs

    mean = serving.mean_decode_s
    pricing = functools.partial(mean, exact_steps=steps) if steps else mean
    with mock.patch.object(serving, "mean_decode_s", pricing):
        t0 = time.perf_counter()
        res = search(8, costs_for, list(precisions), inp, out, ttft_slo_s=0.5, tpot_slo_s=0.05)
        wall = time.perf_counter() - t0
    return [(e.plan.label, e.ttft_s, e.tpot_s, e.output_tokens_per_s) for e in res.ranked], wall


def main() -> None:
    print(f"static serving search, 8 GPUs of dgx-h100-ndr ({date.today()}, {platform.machine()}, "
          f"{platform.processor() or 'cpu'})")
    for preset, inp, out, precisions in CASES:
        spec, memo = load_model_file("models/llama.py", {"preset": preset}), {}
        run(spec, memo, inp, out, precisions, None)  # traces the steps, outside the clocks
        now, t_now = run(spec, memo, inp, out, precisions, None)
        before, t_before = run(spec, memo, inp, out, precisions, BEFORE_STEPS)
        assert [p[0] for p in now] == [p[0] for p in before], (now, before)
        worst = max(abs(a / b - 1) for x, y in zip(now, before) for a, b in zip(x[1:], y[1:]))
        assert worst < 1e-4, worst
        best = now[0]
        print(f"  llama {preset}, {inp} + {out}, {'/'.join(precisions)}: best {best[0]} "
              f"({best[3]:,.0f} tokens/s); {len(now)} plans ranked alike, figures within "
              f"{worst:.1e}; {BEFORE_STEPS} steps {t_before:.1f} s, {serving.EXACT_STEPS} + 1 "
              f"steps {t_now:.1f} s: {t_before / t_now:.1f}x")


if __name__ == "__main__":
    main()
