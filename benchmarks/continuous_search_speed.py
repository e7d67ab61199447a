"""Speed of the continuous-batching serving search (``archcost infer --gpus N --continuous``):
Llama-3 8B, 512 prompt and 128 output tokens, on 2 GPUs of dgx-h100-ndr within TTFT 500 ms and
TPOT 50 ms, bf16; each plan's rate found by bisection over simulations of 2,000 requests. Timed
with each replica's priced steps memoized (``InferenceCosts.step``, as the command runs) and,
in the same run, with the memo bypassed (every step priced again, as before it): the two must
rank the same plans at the same figures.

    python benchmarks/continuous_search_speed.py
"""

from __future__ import annotations

import platform
import time
from datetime import date

from archcost.cli.infer import infer_policy, one_replica_cluster, quantizer
from archcost.infer.price import InferenceCosts
from archcost.infer.search import Mode, search
from archcost.loader import load_model_file
from archcost.runtime import load_runtime

INPUT, OUTPUT, GPUS, SLOS = 512, 128, 2, (0.5, 0.05)


def run(spec, memo: dict, memoized: bool) -> tuple[list[tuple], float]:
    """The search's ranked plans and its seconds; ``memo``: the traces, shared by the runs."""
    priced = InferenceCosts._step

    def costs_for(tp: int, pp: int, precision: str) -> InferenceCosts:
        costs = InferenceCosts(spec, one_replica_cluster("dgx-h100-ndr", tp * pp),
                               infer_policy("bf16"), load_runtime("eager"),
                               build_len=INPUT + OUTPUT, tp=tp, pp=pp,
                               quantize=quantizer("bf16", None, 128, None), memo=memo)
        if not memoized:  # price every step again
            costs.step = lambda batch, step: priced(costs, batch, step)
        costs.check_shapes()
        return costs

    t0 = time.perf_counter()
    res = search(GPUS, costs_for, ["bf16"], INPUT, OUTPUT, ttft_slo_s=SLOS[0],
                 tpot_slo_s=SLOS[1], mode=Mode.CONTINUOUS)
    wall = time.perf_counter() - t0
    return [(e.plan.label, e.ttft_s, e.tpot_s, e.output_tokens_per_s) for e in res.ranked], wall


def main() -> None:
    spec, memo = load_model_file("models/llama.py", {"preset": "8b"}), {}
    run(spec, memo, True)  # traces the steps once, outside the clocks
    fast, t_fast = run(spec, memo, True)
    slow, t_slow = run(spec, memo, False)
    assert fast == slow, (fast, slow)
    print(f"continuous search, llama 8b, {GPUS} GPUs, {INPUT} + {OUTPUT} tokens "
          f"({date.today()}, {platform.machine()}, {platform.processor() or 'cpu'})")
    for label, ttft, tpot, tps in fast:
        print(f"  {label}: p90 TTFT {ttft * 1e3:.1f} ms, p90 TPOT {tpot * 1e3:.1f} ms, "
              f"{tps:,.0f} tokens/s")
    print(f"steps memoized {t_fast:.1f} s, priced again {t_slow:.1f} s: "
          f"{t_slow / t_fast:.1f}x")


if __name__ == "__main__":
    main()
