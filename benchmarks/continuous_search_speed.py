"""Speed of the continuous-batching serving search (``archcost infer --gpus N --continuous``):
Llama-3 8B, 512 prompt and 128 output tokens, on 2 GPUs of dgx-h100-ndr within TTFT 500 ms and
TPOT 50 ms, bf16; each plan's rate found by bisection over simulations of 2,000 requests, under
both schedulers (a prefill and the decodes apart; chunked prefill, 2,048 tokens a forward).
Timed, in one process after an untimed run that traces the steps: the simulated steps' mean
contexts read on the ``serving.CONTEXT_GRID`` grid (as the command runs) against every step
priced at its own context (the grid at 1 token); with ``--unmemoized``, also each replica's
priced steps memoized (``InferenceCosts.step``) against the memo bypassed. The ways must rank
the same plans, their rates (tokens/s) within 2e-3 (two of the bisection's last steps): a p90
latency at the rate found moves more, as the bisection lands on a rate a little apart near
saturation (printed).

    python benchmarks/continuous_search_speed.py [--unmemoized]
"""

from __future__ import annotations

import argparse
import platform
import time
from datetime import date
from unittest import mock

from archcost.cli.infer import infer_policy, one_replica_cluster, quantizer
from archcost.infer import serving
from archcost.infer.price import InferenceCosts
from archcost.infer.search import Mode, search
from archcost.infer.serving import SchedulerConfig
from archcost.loader import load_model_file
from archcost.runtime import load_runtime

INPUT, OUTPUT, GPUS, SLOS = 512, 128, 2, (0.5, 0.05)
SCHEDULERS = {"apart": SchedulerConfig(), "chunked": SchedulerConfig(max_tokens=2048,
                                                                     chunked=True)}


def run(spec, memo: dict, config: SchedulerConfig, grid: int, memoized: bool = True
        ) -> tuple[list[tuple], float]:
    """The search's ranked plans and its seconds; ``memo``: the traces, shared by the runs;
    ``grid``: tokens between the contexts a simulated step is priced at."""
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

    with mock.patch.object(serving, "CONTEXT_GRID", grid):
        t0 = time.perf_counter()
        res = search(GPUS, costs_for, ["bf16"], INPUT, OUTPUT, ttft_slo_s=SLOS[0],
                     tpot_slo_s=SLOS[1], mode=Mode.CONTINUOUS, config=config)
        wall = time.perf_counter() - t0
    return [(e.plan.label, e.ttft_s, e.tpot_s, e.output_tokens_per_s) for e in res.ranked], wall


def _apart(a: list[tuple], b: list[tuple], at: slice) -> float:
    """The largest relative difference between two rankings' figures ``at`` (the same plans in
    the same order)."""
    assert [x[0] for x in a] == [y[0] for y in b], (a, b)
    return max(abs(x / y - 1) for p, q in zip(a, b) for x, y in zip(p[at], q[at]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--unmemoized", action="store_true",
                    help="also time the search with every step priced again (minutes)")
    args = ap.parse_args()
    spec, memo = load_model_file("models/llama.py", {"preset": "8b"}), {}
    print(f"continuous search, llama 8b, {GPUS} GPUs, {INPUT} + {OUTPUT} tokens "
          f"({date.today()}, {platform.machine()}, {platform.processor() or 'cpu'})")
    for name, config in SCHEDULERS.items():
        run(spec, memo, config, serving.CONTEXT_GRID)  # traces the steps, outside the clocks
        fast, t_fast = run(spec, memo, config, serving.CONTEXT_GRID)
        every, t_every = run(spec, memo, config, 1)
        worst, latency = _apart(fast, every, slice(3, 4)), _apart(fast, every, slice(1, 3))
        assert worst < 2e-3, worst  # two of the bisection's last steps (rate bound / 1024)
        for label, ttft, tpot, tps in fast:
            print(f"  {name} {label}: p90 TTFT {ttft * 1e3:.1f} ms, p90 TPOT {tpot * 1e3:.1f} "
                  f"ms, {tps:,.0f} tokens/s")
        print(f"  {name}: contexts on a {serving.CONTEXT_GRID}-token grid {t_fast:.1f} s, every "
              f"context {t_every:.1f} s: {t_every / t_fast:.1f}x (tokens/s within {worst:.1e}, "
              f"p90 latencies {latency:.1e})")
        if args.unmemoized:
            slow, t_slow = run(spec, memo, config, serving.CONTEXT_GRID, memoized=False)
            assert _apart(fast, slow, slice(1, 4)) == 0.0
            print(f"  {name}: steps memoized {t_fast:.1f} s, priced again {t_slow:.1f} s: "
                  f"{t_slow / t_fast:.1f}x")


if __name__ == "__main__":
    main()
