"""Serving-plan search: how to split G GPUs into model replicas (tensor- and pipeline-parallel
degrees), which batch and which precision give the most output tokens/s per GPU within a
time-to-first-token and a time-per-output-token SLO, and the throughput-latency Pareto front;
or, for a target request rate, how few GPUs serve it within the SLOs.

What the search assumes (quotable)
----------------------------------
- A plan is ``tp`` and ``pp``, each a divisor of G with ``tp * pp <= G``; ``replicas = G //
  (tp * pp)`` copies serve independently, requests spread evenly over them; GPUs left over
  stay idle and count in the per-GPU figure (``replicas * tokens/s of one replica / G``).
- ``costs_for(tp, pp, precision)`` prices one replica; a plan it refuses (``ValueError`` or an
  ``ArchcostError``: tp not dividing the heads, a precision the GPU lacks) is skipped with the
  reason, and so is a plan where one sequence does not fit.
- Static batching (``serving.static_serving``): batch sizes are the powers of two up to the
  largest that fits at ``input_len + output_len``; a configuration meets the SLOs when its TTFT
  and its mean TPOT are within them.
- Continuous batching (``serving.simulate_continuous``): for each plan and precision, the
  highest arrival rate whose simulation is stable with p90 TTFT and p90 TPOT within the SLOs,
  found by bisection (``RATE_HALVINGS`` halvings) below an upper bound on what the replica can
  serve (Little's law: the largest batch that fits over the shortest time a request can run,
  ``prefill_s(1, I) + (output_len - 1) * decode_s(1, I + 1)``; step times taken
  non-decreasing in batch and context). The same seed draws the same arrival pattern at every
  rate, scaled, so feasibility is close to monotone in the rate. The batch is the scheduler's.
- A target rate R (continuous batching): each replica shape (``tp``, ``pp``) and precision
  takes ``replicas = ceil(R / r)`` copies, ``r`` the highest rate one serves within the SLOs
  (above), the arrivals split evenly (each replica simulated at ``R / replicas``, Poisson:
  a random split of Poisson arrivals is Poisson, and a round-robin one is smoother, so the
  figure errs on the safe side); where the simulation at that split misses the SLOs (the
  rate search's feasibility is close to, not exactly, monotone), one more replica, up to
  ``EXTRA_REPLICAS``. Its GPUs are ``replicas * tp * pp``; a plan needing more than G
  meets nothing ("needs N GPUs"). Latencies are the p90s at the split rate, tokens/s per
  GPU over the GPUs used.
- Ranking: tokens/s per GPU (for a target rate: the fewest GPUs, every plan's output being the
  target's), ties to the lower TPOT, then TTFT, then fewer GPUs per replica.
  The Pareto front (most tokens/s per GPU, least TPOT) is over every configuration evaluated
  that fits in memory, within the SLOs or not.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from archcost.errors import ArchcostError, ConfigError, InfeasibleError
from archcost.infer.costs import StepCosts
from archcost.infer.serving import (
    BATCH_LIMIT,
    DEFAULT_REQUESTS,
    DEFAULT_SCHEDULER,
    ContinuousServing,
    SchedulerConfig,
    largest_batch,
    rate_bound,
    saturation_rate,
    simulate_continuous,
    static_serving,
)

__all__ = ["Mode", "ServingPlan", "Evaluated", "Skipped", "SearchResult", "divisors",
           "pareto_front", "max_rate_within_slo", "search", "RATE_HALVINGS", "EXTRA_REPLICAS"]

RATE_HALVINGS = 10  # bisection steps on the arrival rate (continuous batching)
EXTRA_REPLICAS = 2  # a target rate: replicas added where the even split misses the SLOs


class Mode(enum.Enum):
    STATIC = "static"
    CONTINUOUS = "continuous"


@dataclass(frozen=True, slots=True)
class ServingPlan:
    tp: int
    pp: int
    replicas: int
    precision: str
    batch: int | None  # static batch; None under continuous batching (the scheduler's)

    @property
    def label(self) -> str:
        batch = "" if self.batch is None else f",batch={self.batch}"
        return f"tp={self.tp},pp={self.pp},replicas={self.replicas}{batch},{self.precision}"


@dataclass(frozen=True, slots=True)
class Evaluated:
    """One configuration: static metrics, or continuous ones at the highest rate in the SLOs
    (percentiles p90)."""

    plan: ServingPlan
    ttft_s: float
    tpot_s: float
    output_tokens_per_s: float  # all replicas
    output_tokens_per_s_per_gpu: float  # over the G GPUs
    peak_bytes_per_gpu: float
    meets_slo: bool
    rate_per_s: float | None = None  # continuous: requests/s over all replicas
    mean_batch: float | None = None  # continuous: running sequences per decode step
    # continuous: the highest rate one replica serves within the SLOs (None: none)
    replica_max_rate_per_s: float | None = None
    gpus_used: int | None = None  # a target rate: the GPUs its replicas take
    why: str = ""


@dataclass(frozen=True, slots=True)
class Skipped:
    tp: int
    pp: int
    precision: str
    reason: str


@dataclass(frozen=True, slots=True)
class SearchResult:
    ranked: tuple[Evaluated, ...]  # within the SLOs, best first
    front: tuple[Evaluated, ...]  # Pareto front, by TPOT
    evaluated: tuple[Evaluated, ...]  # every configuration that fits, in search order
    skipped: tuple[Skipped, ...]


def divisors(n: int) -> list[int]:
    """The divisors of ``n``, ascending (pairs up to its square root)."""
    low = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return sorted({*low, *(n // d for d in low)})


def pareto_front(tokens_per_s: np.ndarray, tpot_s: np.ndarray) -> np.ndarray:
    """Indices of the points no other point dominates (as many or more tokens/s at as low or a
    lower TPOT, better in one), by TPOT then tokens/s descending. Equal points all stay."""
    x = np.asarray(tokens_per_s, dtype=np.float64)[:, None]
    y = np.asarray(tpot_s, dtype=np.float64)[:, None]
    dominated = ((x.T >= x) & (y.T <= y) & ((x.T > x) | (y.T < y))).any(axis=1)
    idx = np.flatnonzero(~dominated)
    return idx[np.lexsort((-x[idx, 0], y[idx, 0]))]


def _meets(ttft: float, tpot: float, ttft_slo: float | None, tpot_slo: float | None) -> bool:
    return (ttft_slo is None or ttft <= ttft_slo) and (tpot_slo is None or tpot <= tpot_slo)


def max_rate_within_slo(costs: StepCosts, input_len: int, output_len: int,
                        ttft_slo_s: float | None, tpot_slo_s: float | None, *,
                        requests: int = DEFAULT_REQUESTS, seed: int = 0,
                        config: SchedulerConfig = DEFAULT_SCHEDULER
                        ) -> tuple[ContinuousServing, bool]:
    """The simulation at the highest rate (one replica, scheduled as ``config`` says) that is
    stable with p90 TTFT and TPOT within the SLOs, and True; when none of the rates tried is,
    the lowest one tried, and False (module docstring)."""
    capacity = saturation_rate(costs, input_len, output_len, requests=requests, seed=seed,
                               config=config)
    lo, hi = 0.0, min(capacity, rate_bound(costs, input_len, output_len, config))

    def sim(rate: float) -> ContinuousServing:
        return simulate_continuous(costs, rate, input_len, output_len, requests=requests,
                                   seed=seed, capacity_per_s=capacity, config=config)

    best = None
    for _ in range(RATE_HALVINGS):
        mid = 0.5 * (lo + hi)
        run = sim(mid)
        if run.stable and _meets(run.ttft.p90_s, run.tpot.p90_s, ttft_slo_s, tpot_slo_s):
            lo, best = mid, run
        else:
            hi = mid
    return (best, True) if best is not None else (sim(hi), False)


def _continuous(costs: StepCosts, plan: ServingPlan, gpus: int, max_len: int,
                run: ContinuousServing, meets: bool, max_rate: float | None,
                used: int | None = None) -> Evaluated:
    """The configuration of ``plan``'s replicas each running as ``run`` (tokens/s per GPU over
    ``used`` GPUs, else the ``gpus`` of the search)."""
    total = plan.replicas * run.output_tokens_per_s
    peak = costs.memory_bytes(max(run.max_running, 1), max_len)["peak_per_gpu"]
    return Evaluated(plan, run.ttft.p90_s, run.tpot.p90_s, total, total / (used or gpus), peak,
                     meets, plan.replicas * run.rate_per_s, run.mean_batch, max_rate, used)


def _for_target(costs: StepCosts, plan: ServingPlan, gpus: int, best: ContinuousServing,
                target: float, input_len: int, output_len: int, ttft_slo_s: float | None,
                tpot_slo_s: float | None, requests: int, config: SchedulerConfig) -> Evaluated:
    """``plan``'s replica shape serving ``target`` requests/s in all, ``best`` the simulation at
    the highest rate one replica serves within the SLOs (module docstring)."""
    replicas = max(1, math.ceil(target / best.rate_per_s * (1 - 1e-12)))
    for _ in range(EXTRA_REPLICAS + 1):
        run = simulate_continuous(costs, target / replicas, input_len, output_len,
                                  requests=requests, capacity_per_s=best.capacity_per_s,
                                  config=config)
        ok = run.stable and _meets(run.ttft.p90_s, run.tpot.p90_s, ttft_slo_s, tpot_slo_s)
        if ok:
            break
        replicas += 1
    else:
        replicas -= 1  # the last one tried
    used = replicas * plan.tp * plan.pp
    return _continuous(costs, replace(plan, replicas=replicas), gpus, input_len + output_len,
                       run, ok and used <= gpus, best.rate_per_s, used)


def _evaluate(costs: StepCosts, plan: ServingPlan, gpus: int, mode: Mode, input_len: int,
              output_len: int, ttft_slo_s: float | None, tpot_slo_s: float | None,
              max_batch: int | None, requests: int, config: SchedulerConfig,
              target: float | None = None) -> list[Evaluated]:
    """The configurations of one plan and precision: each batch up to ``max_batch`` (static)
    or the rate search under ``config`` (continuous), serving ``target`` requests/s in all
    where given."""
    max_len = input_len + output_len
    if mode is Mode.CONTINUOUS:
        run, ok = max_rate_within_slo(costs, input_len, output_len, ttft_slo_s, tpot_slo_s,
                                      requests=requests, config=config)
        if target is not None and ok:
            return [_for_target(costs, plan, gpus, run, target, input_len, output_len,
                                ttft_slo_s, tpot_slo_s, requests, config)]
        if target is not None:  # no rate meets the SLOs: one replica at the lowest rate tried
            plan = replace(plan, replicas=1)
        return [_continuous(costs, plan, gpus, max_len, run, ok,
                            run.rate_per_s if ok else None)]
    out = []
    batch = 1
    fit = largest_batch(costs, max_len, input_len=input_len)
    while batch <= min(fit, max_batch or BATCH_LIMIT):
        st = static_serving(costs, batch, input_len, output_len, fit)
        total = plan.replicas * st.output_tokens_per_s
        out.append(Evaluated(replace(plan, batch=batch), st.ttft_s, st.tpot_s, total,
                             total / gpus, st.memory_bytes["peak_per_gpu"],
                             _meets(st.ttft_s, st.tpot_s, ttft_slo_s, tpot_slo_s)))
        batch *= 2
    return out


def _rank_key(e: Evaluated) -> tuple:
    """Most tokens/s per GPU first; serving a target rate (every plan's output the target's,
    within its simulation's draw), the fewest GPUs first."""
    per_gpu = 0.0 if e.gpus_used is not None else -e.output_tokens_per_s_per_gpu
    return (e.gpus_used or 0, per_gpu, e.tpot_s, e.ttft_s, e.plan.tp * e.plan.pp, e.plan.tp,
            e.plan.batch or 0, e.plan.precision)


def _slo_text(e: Evaluated, ttft_slo_s: float | None, tpot_slo_s: float | None) -> str:
    misses = [f"{name} {v * 1e3:.1f} ms > {slo * 1e3:.1f} ms"
              for name, v, slo in (("TTFT", e.ttft_s, ttft_slo_s), ("TPOT", e.tpot_s, tpot_slo_s))
              if slo is not None and v > slo]
    return "misses the SLOs: " + ", ".join(misses) if misses else "misses the SLOs at any rate"


def _rate(per_s: float) -> str:
    """A request rate for a sentence: whole from 100 up, else three significant digits."""
    return f"{per_s:,.0f}" if per_s >= 100 else f"{per_s:.3g}"


def _place(e: Evaluated, best: Evaluated | None, rank: int | None, gpus: int,
           ttft_slo_s: float | None, tpot_slo_s: float | None) -> str:
    """Where ``e`` stands: the best, its gap to the ``best`` (``rank`` among those within the
    SLOs), the GPUs past ``gpus`` it needs for a target rate, or the SLO it misses."""
    if e.gpus_used is not None and e.gpus_used > gpus:
        return (f"needs {e.gpus_used} GPUs ({e.plan.replicas} replicas) for "
                f"{_rate(e.rate_per_s)} requests/s, more than the {gpus} given")
    if not e.meets_slo:
        return _slo_text(e, ttft_slo_s, tpot_slo_s)
    if e.gpus_used is not None:
        if rank == 0:
            return (f"best: the fewest GPUs serving {_rate(e.rate_per_s)} requests/s within the "
                    "SLOs")
        more = e.gpus_used - best.gpus_used
        return f"#{rank + 1}: {more} more GPU{'' if more == 1 else 's'} than {best.plan.label}"
    if rank == 0:
        return "best: the most output tokens/s per GPU within the SLOs"
    gap = 1.0 - e.output_tokens_per_s_per_gpu / best.output_tokens_per_s_per_gpu
    return f"#{rank + 1}: {gap:.1%} fewer tokens/s per GPU than {best.plan.label}"


def _explain(evaluated: list[Evaluated], ranked: list[Evaluated], front_idx: np.ndarray,
             gpus: int, ttft_slo_s: float | None, tpot_slo_s: float | None) -> list[Evaluated]:
    """Each configuration with why it wins or loses: its place against the best within the SLOs
    (or the SLO it misses, or the GPUs it needs past the budget), and whether it is on the
    Pareto front or what dominates it."""
    best = ranked[0] if ranked else None
    rank = {id(e): i for i, e in enumerate(ranked)}
    on_front = set(front_idx.tolist())
    front = [evaluated[i] for i in front_idx.tolist()]
    out = []
    for i, e in enumerate(evaluated):
        place = _place(e, best, rank.get(id(e)), gpus, ttft_slo_s, tpot_slo_s)
        if i in on_front:
            pareto = "on the Pareto front: nothing has more tokens/s per GPU at a TPOT as low"
        else:
            by = next(f for f in front if f.output_tokens_per_s_per_gpu
                      >= e.output_tokens_per_s_per_gpu and f.tpot_s <= e.tpot_s)
            pareto = (f"dominated by {by.plan.label} ({by.output_tokens_per_s_per_gpu:.1f} "
                      f"tokens/s/GPU at {by.tpot_s * 1e3:.1f} ms TPOT)")
        out.append(replace(e, why=f"{place}; {pareto}"))
    return out


def search(gpus: int, costs_for: Callable[[int, int, str], StepCosts],
           precisions: Sequence[str], input_len: int, output_len: int, *,
           ttft_slo_s: float | None = None, tpot_slo_s: float | None = None,
           mode: Mode = Mode.STATIC, max_batch: int | None = None,
           requests: int = DEFAULT_REQUESTS,
           config: SchedulerConfig = DEFAULT_SCHEDULER,
           target_rate: float | None = None) -> SearchResult:
    """Every plan (tp, pp, replicas), batch and precision on ``gpus`` GPUs, ranked by output
    tokens/s per GPU within the SLOs, with the Pareto front (module docstring). ``max_batch``:
    the largest static batch tried (default: whatever fits); ``requests``: simulated per rate
    and ``config``: the continuous scheduler's settings (its cap, prefill budget, chunking and
    cached prefix: ``serving.SchedulerConfig``); ``target_rate``: requests/s to serve in all
    (continuous batching), each replica shape with the replicas it needs, the fewest GPUs
    first."""
    if gpus < 1 or not precisions:
        raise ConfigError(f"{gpus} GPUs, {len(precisions)} precisions: give at least one of each")
    if target_rate is not None and (mode is not Mode.CONTINUOUS or not target_rate > 0):
        raise ConfigError(f"a target of {target_rate:g} requests/s: give a positive rate, served "
                          "under continuous batching")
    evaluated: list[Evaluated] = []
    skipped: list[Skipped] = []
    for precision in precisions:
        for tp in divisors(gpus):
            for pp in (p for p in divisors(gpus) if tp * p <= gpus):
                try:
                    costs = costs_for(tp, pp, precision)
                except (ValueError, ArchcostError) as err:
                    skipped.append(Skipped(tp, pp, precision, str(err)))
                    continue
                if largest_batch(costs, input_len + output_len, 1, input_len) == 0:
                    peak = costs.memory_bytes(1, input_len + output_len,
                                              input_len)["peak_per_gpu"]
                    skipped.append(Skipped(tp, pp, precision, (
                        f"one sequence of {input_len + output_len} tokens does not fit: peak "
                        f"{peak / 2**30:.1f} GiB > {costs.capacity_bytes / 2**30:.1f} GiB per GPU")))
                    continue
                plan = ServingPlan(tp, pp, gpus // (tp * pp), str(precision), None)
                evaluated += _evaluate(costs, plan, gpus, mode, input_len, output_len,
                                       ttft_slo_s, tpot_slo_s, max_batch, requests, config,
                                       target_rate)
    if not evaluated and skipped:  # nothing to rank: say why, as the static command does
        memory = [k for k in skipped if "does not fit" in k.reason]
        first = (memory or skipped)[0]
        cls = InfeasibleError if len(memory) == len(skipped) else ConfigError
        raise cls(f"no plan on {gpus} GPUs can serve these requests (tp={first.tp} "
                  f"pp={first.pp} {first.precision}: {first.reason})")
    ranked = sorted((e for e in evaluated if e.meets_slo), key=_rank_key)
    front_idx = pareto_front(np.array([e.output_tokens_per_s_per_gpu for e in evaluated]),
                             np.array([e.tpot_s for e in evaluated]))
    explained = _explain(evaluated, ranked, front_idx, gpus, ttft_slo_s, tpot_slo_s)
    by_id = {id(e): x for e, x in zip(evaluated, explained)}
    return SearchResult(ranked=tuple(by_id[id(e)] for e in ranked),
                        front=tuple(explained[i] for i in front_idx.tolist()),
                        evaluated=tuple(explained), skipped=tuple(skipped))
