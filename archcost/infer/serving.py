"""Serving metrics of one model replica from its step costs: static batching and continuous
batching in steady state. Pure functions of a ``StepCosts`` (``archcost.infer.costs``).

What the figures assume (quotable)
----------------------------------
Static batching runs as TensorRT-LLM's ``gptSessionBenchmark`` does
(NVIDIA/TensorRT-LLM@027cd518:benchmarks/cpp/gptSessionBenchmark.cpp: ``session.setup(batch,
beam, maxInputLength + maxNewTokens)``, then one timed ``generate``): the B sequences are
prefilled together, the first output token of each comes out of the prefill, then
``output_len - 1`` decode steps run at contexts ``input_len + 1 .. input_len + output_len - 1``
(the tokens each step attends to). ``tpot_s`` is the mean of those steps (every step priced up
to ``EXACT_STEPS`` + 1 of them, beyond ``EXACT_STEPS`` + 1 spread evenly and the steps between
read on the lines joining them),
``e2e_s = ttft_s + (output_len - 1) * tpot_s`` and the throughput is ``B * output_len /
e2e_s``. Memory is read
at ``max_len = input_len + output_len`` (the cache that benchmark sets up), the transient
activations the larger of the ``input_len`` prefill's and the last decode step's; a batch fits when
``peak_per_gpu`` is within ``capacity_bytes``, and the largest batch that fits is found by
doubling then bisection (peak memory taken as non-decreasing in batch).

Continuous batching is a discrete-event simulation of an iteration-level scheduler like vLLM's
default (FCFS, prefill-prioritised, no chunked prefill; vLLM v0.6 ``vllm/core/scheduler.py``
``_schedule_default``). Requests arrive as a Poisson process (seeded ``numpy`` Generator: runs
are reproducible) with fixed lengths, or lengths drawn from given arrays. Each iteration:
1. admit waiting requests in arrival order while the batch stays within ``max_batch`` (vLLM's
   ``--max-num-seqs``, 256 by default), the admitted prompts within ``max_tokens`` (the
   prompt tokens one iteration prefills: vLLM's ``--max-num-batched-tokens``, TensorRT-LLM's
   ``max_num_tokens``; None, the default: no budget, as vLLM v0.6 without chunked prefill,
   whose budget is the model's whole length; a prompt past the budget is admitted alone) and
   the running and admitted requests fit at their full length: ``input + output`` tokens of
   KV cache each, read as ``memory_bytes(n, ceil(total tokens / n))`` since KV bytes are
   bilinear in batch and length, beside the activations of the admitted ones' prefill (those
   ``k`` sequences at the run's longest prompt: ``prefill_batch``) or of a decode step of all
   ``n`` (NB: with a sliding window the bytes are concave in the length, so the mean length
   over-counts them: an upper bound). A request holds its full length from admission, so
   nothing is ever preempted (NB: vLLM allocates blocks as tokens come and preempts when they
   run out; reserving is TensorRT-LLM's ``GUARANTEED_NO_EVICT`` capacity policy);
2. prefill the admitted requests, which gives their first token: those of one input length as
   one ``prefill_s(k, input_len)``, distinct lengths back to back (NB: an engine packs them in
   one forward, so mixed lengths are over-priced by the extra weight reads);
3. one decode step gives every running request (the admitted included) a token; finished
   requests leave at once. NB: vLLM v0.6 skips the decode in an iteration that prefills
   ("Don't schedule decodes if prefills are scheduled"), so there several admissions in a row
   can hold the running batch; here one prefill at most sits between two decode steps (so a
   prefill budget that leaves requests waiting admits the next ones after one decode step; an
   engine that runs a prefill and the decodes in one forward, TensorRT-LLM's in-flight
   batching, reads the weights once for both where here they are read twice).
With ``chunked`` (in-flight batching with chunked prefill: vLLM V1's scheduler, TensorRT-LLM's
in-flight batching with chunked context) each iteration is one forward (``mixed_s``): every
running request's next token, then prompt tokens up to what is left of ``max_tokens`` (None:
no limit) after those decodes, the prompts under way first (admission order), then new
requests admitted FCFS as above (cap, memory at the full length; the activations counted as a
prefill of at most ``max_tokens`` tokens a request), a prompt longer than what is left split
across iterations. A request's first token comes out of the forward that holds its prompt's
last chunk; it decodes from the next one. An iteration with no prompt tokens is a decode step,
priced as above (runs of them up to the next arrival or departure).
With a cached prefix (``prefix``: the first ``prefix`` tokens of every prompt are the same, a
system prompt, and their KV cache is kept and reused: vLLM's automatic prefix caching,
TensorRT-LLM's KV cache block reuse) a request's prefill computes its prompt from position
``prefix`` on, attending to the whole prompt (``mixed_s`` with the chunk ``(prefix, input,
input)``: with ``chunked`` its first chunk starts there), and it holds ``input + output -
prefix`` tokens of cache at its full length, the prefix's blocks held once for all (its first
request computes it like the rest: the cache is taken as warm). NB: engines reuse whole cache
blocks only (vLLM 16 tokens, TensorRT-LLM 32 by default): give a prefix that fills whole blocks.
A decode step over sequences of mixed contexts costs ``decode_s(n, mean context)``: decode cost
is taken as bilinear in batch and context (the per-sequence attention term is linear in its
context, so the sum over sequences is the batch times the mean), read on the line between the
contexts ``CONTEXT_GRID`` apart around the mean (each priced once for every step between them;
a forward holding prompt chunks at the grid's context below the mean, plus what the decode step
gains from there: against every step priced at its own context, figures move by 0.05 % at most,
BENCHMARKS.md "Simulated steps priced on a context grid"; NB a sliding window's edge between two
grid contexts is smoothed). A run of decode steps with no arrival or departure between them is
priced on the chord of its first and last step (at most ``RUN_STEPS`` steps: exact for cost
affine in context; NB a roofline kink inside a run is smoothed).

Measurement: the first ``warmup_fraction`` of requests (by arrival) is warm-up and discarded;
the window runs from the first measured arrival to the last arrival. Throughput counts output
tokens produced from the window's start to its end or, where fewer than ``OUTPUT_DONE`` of its
requests have finished by then (overload: arrivals faster than steps make a window shorter than
a prefill), until they have; latency percentiles are over the measured requests (TPOT of a
request = (e2e - ttft) / (output_len - 1), as vLLM's ``benchmarks/benchmark_serving.py``).
The replica's capacity (``saturation_rate``) is the highest rate it keeps up with: first the
rate at which it completes requests with its queue never empty (the same requests arriving at
the upper bound of what it can serve, its largest batch over one request's unbatched time,
completions counted between the 20th and 80th percentile of finish times); where Poisson
arrivals at that rate outrun the replica, the highest rate whose window output keeps up with
its arrivals (bisection). The queue is stable when the rate is below that capacity, the
waiting queue does not grow over the second half of the window (its least-squares slope times
that half's length is below ``QUEUE_GROWTH_FRACTION`` of the requests arriving in it: a rate just
past capacity grows the queue too slowly for a run of thousands of requests to show it, so
the capacity decides there), and the window's output keeps up with what its arrivals ask for
(at least ``KEEPS_UP`` of their output tokens per second): under overload requests arrive
together and are prefilled together, paying a prefill's fixed cost once for many, so the rate
with the queue never empty can exceed what one-by-one arrivals near it are served at (the 8B
on one H100: 35.6 req/s with the queue full; at 35 req/s 4,172 of the 4,480 tokens/s asked
for). Under overload the latency percentiles grow with the run's length
and only say that the rate is too high.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from archcost.errors import ConfigError, InfeasibleError
from archcost.infer.costs import StepCosts

__all__ = ["StaticServing", "Percentiles", "ContinuousServing", "SchedulerConfig", "fits",
           "largest_batch",
           "mean_decode_s", "static_serving", "simulate_continuous", "saturation_rate",
           "rate_bound",
           "EXACT_STEPS", "RUN_STEPS", "CONTEXT_GRID", "TPOT_POINTS", "BATCH_LIMIT",
           "QUEUE_GROWTH_FRACTION",
           "DEFAULT_REQUESTS", "DEFAULT_SCHEDULER"]

# decode steps priced one by one up to this many + 1; longer outputs through this many + 1
# (against every step priced, the static TPOT of TensorRT-LLM's published tables moves by
# 1.5e-5 at most)
EXACT_STEPS = 32
TPOT_POINTS = 5  # contexts at which the static TPOT is reported
BATCH_LIMIT = 1 << 20  # the largest batch the fit search tries
RUN_STEPS = 128  # decode steps priced on one chord in the simulation
CONTEXT_GRID = 32  # tokens between the contexts a simulated step is priced at
QUEUE_GROWTH_FRACTION = 0.05  # queue growth over the second half that reads as unstable
KEEPS_UP = 0.97  # output over what the arrivals ask for, at least: the replica keeps up
DEFAULT_MAX_BATCH = 256  # vLLM --max-num-seqs default (vllm/engine/arg_utils.py, EngineArgs)
DEFAULT_REQUESTS = 2000  # requests a simulation runs (--rate and the continuous search alike)


@dataclass(frozen=True, slots=True)
class StaticServing:
    """Static batching of ``batch`` sequences on one replica."""

    batch: int
    input_len: int
    output_len: int
    gpus: int
    ttft_s: float
    tpot_s: float  # mean over the decode steps; 0 when output_len == 1
    tpot_by_context: tuple[tuple[int, float], ...]  # (context tokens, seconds of one step)
    e2e_s: float
    output_tokens_per_s: float
    output_tokens_per_s_per_gpu: float
    memory_bytes: Mapping[str, float]
    fits: bool
    max_batch: int  # the largest batch that fits at this max_len (0: not even one)


def _positive_int(value: int, name: str) -> int:
    if int(value) != value or value < 1:
        raise ConfigError(f"{name} {value!r}: must be a positive integer")
    return int(value)


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    """How the continuous-batching scheduler of the module docstring batches, resolved once
    (the command line's ``--max-seqs``, ``--max-batched-tokens``, ``--[no-]chunked-prefill``,
    ``--prefix-len``): ``max_batch`` requests running at most, ``max_tokens`` prompt tokens
    prefilled an iteration (None: no budget), decodes and prompt chunks in one forward where
    ``chunked``, the first ``prefix`` tokens of every prompt cached and reused."""

    max_batch: int = DEFAULT_MAX_BATCH
    max_tokens: int | None = None
    chunked: bool = False
    prefix: int = 0

    def __post_init__(self) -> None:
        _positive_int(self.max_batch, "max batch")
        if self.max_tokens is not None:
            _positive_int(self.max_tokens, "max batched tokens")
        if int(self.prefix) != self.prefix or self.prefix < 0:
            raise ConfigError(f"cached prefix of {self.prefix!r} tokens: give a whole number "
                              "of tokens, 0 or more")

    @property
    def largest_decode(self) -> int:
        """The most sequences one decode-only iteration holds: the cap, within the token
        budget (an engine's largest CUDA graph batch)."""
        return min(self.max_batch, self.max_tokens or self.max_batch)

    def describe(self) -> dict[str, int | bool | None]:
        """The settings as inference documents name them (``continuous``, the search's
        ``workload``)."""
        return {"max_seqs": self.max_batch, "max_batched_tokens": self.max_tokens,
                "chunked_prefill": self.chunked, "prefix_len": self.prefix}


# vLLM's defaults without chunked prefill: 256 requests running, no prefill budget
DEFAULT_SCHEDULER = SchedulerConfig()

def fits(costs: StepCosts, batch: int, max_len: int, input_len: int | None = None,
         prefill_batch: int | None = None) -> bool:
    """Whether ``batch`` sequences of ``max_len`` tokens, ``prefill_batch`` of them (None: all)
    prefilled together at ``input_len`` (None: an upper bound, ``max_len``), fit in one GPU's
    usable memory."""
    need = costs.memory_bytes(batch, max_len, input_len, prefill_batch)["peak_per_gpu"]
    return need <= costs.capacity_bytes


def largest_batch(costs: StepCosts, max_len: int, limit: int = BATCH_LIMIT,
                  input_len: int | None = None, prefill_batch: int | None = None) -> int:
    """The largest batch (<= ``limit``) whose peak memory fits, 0 when one sequence does not:
    doubling to bracket it, then bisection (peak memory non-decreasing in batch)."""
    def ok(batch: int) -> bool:
        return fits(costs, batch, max_len, input_len, prefill_batch)

    if not ok(1):
        return 0
    lo, hi = 1, 2
    while hi <= limit and ok(hi):
        lo, hi = hi, hi * 2
    hi = min(hi, limit + 1)  # hi does not fit, or lies past the limit
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid
    return lo


def mean_decode_s(costs: StepCosts, batch: int, first: int, last: int,
                  exact_steps: int = EXACT_STEPS) -> float:
    """Mean seconds of the decode steps at contexts ``first .. last`` (inclusive; 0 when the
    range is empty). Up to ``exact_steps`` + 1 steps every one is priced; beyond, the steps at
    ``exact_steps`` + 1 contexts spread evenly from ``first`` to ``last``, each context
    between two of them read on the line joining them (exact when the step cost is affine in
    context; NB a roofline kink between two priced contexts is smoothed)."""
    n = last - first + 1
    if n <= 0:
        return 0.0
    priced = np.unique(np.linspace(first, last, min(n, exact_steps + 1)).round().astype(int))
    seconds = [costs.decode_s(batch, c) for c in priced.tolist()]
    return float(np.interp(np.arange(first, last + 1), priced, seconds).mean())


def static_serving(costs: StepCosts, batch: int, input_len: int, output_len: int,
                   max_batch: int | None = None) -> StaticServing:
    """Static batching metrics (module docstring): TTFT, mean TPOT and TPOT at ``TPOT_POINTS``
    contexts, end-to-end latency, output tokens/s, memory and the largest batch that fits
    (``max_batch`` when the caller knows it already)."""
    batch = _positive_int(batch, "batch")
    input_len = _positive_int(input_len, "input length")
    output_len = _positive_int(output_len, "output length")
    first, last = input_len + 1, input_len + output_len - 1
    ttft = costs.prefill_s(batch, input_len)
    tpot = mean_decode_s(costs, batch, first, last)
    points = sorted(set(np.linspace(first, last, TPOT_POINTS).round().astype(int).tolist()))
    by_context = tuple((c, costs.decode_s(batch, c)) for c in points if first <= c <= last)
    e2e = ttft + (output_len - 1) * tpot
    tokens_per_s = batch * output_len / e2e
    max_len = input_len + output_len
    memory = dict(costs.memory_bytes(batch, max_len, input_len))
    return StaticServing(
        batch=batch, input_len=input_len, output_len=output_len, gpus=costs.gpus,
        ttft_s=ttft, tpot_s=tpot, tpot_by_context=by_context, e2e_s=e2e,
        output_tokens_per_s=tokens_per_s, output_tokens_per_s_per_gpu=tokens_per_s / costs.gpus,
        memory_bytes=memory, fits=memory["peak_per_gpu"] <= costs.capacity_bytes,
        max_batch=(largest_batch(costs, max_len, input_len=input_len) if max_batch is None
                   else max_batch))


@dataclass(frozen=True, slots=True)
class Percentiles:
    """p50 / p90 / p99 of a latency, seconds."""

    p50_s: float
    p90_s: float
    p99_s: float

    @classmethod
    def of(cls, values: np.ndarray) -> Percentiles:
        if values.size == 0:
            return cls(0.0, 0.0, 0.0)
        p50, p90, p99 = np.percentile(values, [50, 90, 99]).tolist()
        return cls(p50, p90, p99)


@dataclass(frozen=True, slots=True)
class ContinuousServing:
    """Continuous batching at ``rate_per_s`` on one replica, measured after warm-up."""

    rate_per_s: float
    gpus: int
    window_s: tuple[float, float]  # first measured arrival, last arrival
    output_tokens_per_s: float
    output_tokens_per_s_per_gpu: float
    ttft: Percentiles
    tpot: Percentiles
    e2e: Percentiles
    mean_batch: float  # running sequences per decode step in the window
    max_running: int  # most sequences running at once, whole run
    mean_in_system: float  # waiting + running, time-averaged over the window
    queue_growth: float  # least-squares growth of the waiting queue over the second half
    stable: bool
    capacity_per_s: float  # requests/s the replica keeps up with (saturation_rate)
    arrived_per_s: float  # requests/s that arrived in the window (the draw of ``rate_per_s``)
    # per measured request, arrival order
    arrival_s: np.ndarray
    first_token_s: np.ndarray
    finish_s: np.ndarray
    output_len: np.ndarray


def _lengths(rng: np.random.Generator, input_len: int | Sequence[int],
             output_len: int | Sequence[int], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Input and output lengths of ``n`` requests: fixed, or drawn from the arrays (two arrays
    of one length are drawn as pairs, one request's lengths together)."""
    arrays = [np.atleast_1d(np.asarray(v)) for v in (input_len, output_len)]
    for arr, name in zip(arrays, ("input", "output")):
        if arr.size == 0 or not np.issubdtype(arr.dtype, np.integer) or arr.min() < 1:
            raise ConfigError(f"{name} lengths: give positive integers")
    inp, out = arrays
    if inp.size > 1 and out.size > 1:
        if inp.size != out.size:
            raise ConfigError(f"{inp.size} input lengths and {out.size} output lengths: give "
                              "one pair per request, or one of them fixed")
        pick = rng.integers(0, inp.size, n)
        return inp[pick].astype(np.int64), out[pick].astype(np.int64)
    inp = inp[rng.integers(0, inp.size, n)] if inp.size > 1 else np.full(n, inp[0])
    out = out[rng.integers(0, out.size, n)] if out.size > 1 else np.full(n, out[0])
    return inp.astype(np.int64), out.astype(np.int64)


def _grid_below(context: float) -> int:
    """The grid context at or below ``context`` (a multiple of ``CONTEXT_GRID``)."""
    return math.floor(context / CONTEXT_GRID) * CONTEXT_GRID


def _on_grid(price: Callable[[int], float], context: float) -> float:
    """``price`` (seconds of a step at a whole context) at the mean ``context``: on the line
    between the contexts ``CONTEXT_GRID`` apart around it (module docstring)."""
    lo = _grid_below(context)
    f_lo = price(lo)
    if context == lo:
        return f_lo
    return f_lo + (context - lo) / CONTEXT_GRID * (price(lo + CONTEXT_GRID) - f_lo)


def _decode_at(costs: StepCosts, batch: int, context: float) -> float:
    """One decode step of ``batch`` sequences of mean context ``context``."""
    return _on_grid(lambda c: costs.decode_s(batch, c), context)


def _forward_s(costs: StepCosts, decodes: int, context: float, chunks: tuple) -> float:
    """One forward of ``decodes`` sequences of mean context ``context`` and the prompt
    ``chunks``: priced at the grid's context below the mean, plus what the decode step gains
    from there to the mean (only the decodes' work grows with their context)."""
    if not decodes:
        return costs.mixed_s(0, 0.0, chunks)
    lo = _grid_below(context)
    return (costs.mixed_s(decodes, lo, chunks) + _decode_at(costs, decodes, context)
            - costs.decode_s(decodes, lo))


def _prefill_s(costs: StepCosts, inp: np.ndarray, prefix: int = 0) -> float:
    """Prefill of the admitted requests (input lengths ``inp``): one ``prefill_s`` per distinct
    length, back to back; past a cached ``prefix``, one forward of their uncached positions
    (``mixed_s`` of their chunks ``(prefix, input, input)``)."""
    if prefix:
        return costs.mixed_s(0, 0.0, tuple((prefix, int(n), int(n)) for n in inp))
    lengths, counts = np.unique(inp, return_counts=True)
    return sum(costs.prefill_s(int(k), int(n)) for n, k in zip(lengths, counts))


@dataclass(frozen=True, slots=True)
class _Trace:
    """What one simulated run records: per request, then per decode run and prefill."""

    admit_s: np.ndarray
    first_token_s: np.ndarray
    finish_s: np.ndarray
    decode_end_s: np.ndarray  # end of every decode step
    decode_batch: np.ndarray  # sequences in that step
    prefill_end_s: np.ndarray
    prefill_tokens: np.ndarray  # first tokens out of that prefill
    max_running: int


class _Scheduler:
    """State of one simulated run (local to ``_run``): the queue, the running requests and
    what happened to each request."""

    def __init__(self, costs: StepCosts, arrival: np.ndarray, inp: np.ndarray, out: np.ndarray,
                 config: SchedulerConfig) -> None:
        self.costs, self.arrival, self.inp, self.out = costs, arrival, inp, out
        self.max_batch, self.max_tokens = config.max_batch, config.max_tokens
        self.prefix = config.prefix
        # the longest prompt one prefill holds: a chunk is at most the budget
        self.longest_input = int(min(inp.max(), config.max_tokens or inp.max())
                                 if config.chunked else inp.max())
        n = arrival.size
        self.admit, self.first, self.finish = (np.full(n, np.nan) for _ in range(3))
        self.fit_memo: dict[tuple[int, int], bool] = {}
        self.waiting: deque[int] = deque()
        self.run = np.empty(0, np.int64)  # running requests
        self.ctx = np.empty(0, np.int64)  # tokens the next decode step attends to, per request
        self.left = np.empty(0, np.int64)  # decode steps each still needs
        self.held = 0  # tokens of KV cache the running requests hold at their full length
        self.nxt = self.done = self.max_running = 0
        self.budget_hit = False  # the last admission stopped at the prefill budget
        self.prefilling: deque[int] = deque()  # admitted, prompt partly prefilled (chunked)
        # prompt tokens prefilled so far, per request: the cached prefix from the start
        self.prefilled = np.full(n, config.prefix, np.int64)
        self.t = 0.0
        self.ends: list[np.ndarray] = []
        self.batches: list[np.ndarray] = []
        self.p_ends: list[float] = []
        self.p_tokens: list[int] = []

    def room(self, batch: int, tokens: int, prefilled: int) -> bool:
        """Whether ``batch`` requests holding ``tokens`` of cache fit while ``prefilled`` of
        them are prefilled together (at the longest prompt of the run)."""
        key = (batch, -(-tokens // batch), prefilled)
        if key not in self.fit_memo:
            self.fit_memo[key] = fits(self.costs, key[0], key[1],
                                      min(key[1], self.longest_input), prefilled)
        return self.fit_memo[key]

    def admit_head(self, holding: int, admitted: int) -> int | None:
        """The first waiting request, taken when it fits beside ``holding`` requests holding
        cache (running or admitted), ``admitted`` of them admitted this iteration and
        prefilled with it: its index (its full length now held), or None (it stays)."""
        head = self.waiting[0]
        need = self.held + int(self.inp[head] + self.out[head]) - self.prefix
        # the cached prefix's blocks held once beside every request's own
        if not self.room(holding + 1, need + self.prefix, admitted + 1):
            return None
        self.held = need
        return self.waiting.popleft()

    def admit_and_prefill(self) -> None:
        """Queue the arrivals so far, admit FCFS while memory and ``max_batch`` allow, prefill."""
        self.arrivals()
        new: list[int] = []
        prompt = 0  # tokens of the admitted prompts, prefilled together
        self.budget_hit = False
        while self.waiting and self.run.size + len(new) < self.max_batch:
            head = self.waiting[0]
            if new and self.max_tokens is not None and \
                    prompt + int(self.inp[head]) - self.prefix > self.max_tokens:
                self.budget_hit = True  # the next iteration prefills the next ones
                break
            if self.admit_head(self.run.size + len(new), len(new)) is None:
                break
            new.append(head)
            prompt += int(self.inp[head]) - self.prefix
        if not new:
            return
        idx = np.array(new, np.int64)
        self.admit[idx] = self.t
        self.t += _prefill_s(self.costs, self.inp[idx], self.prefix)
        self.first_tokens(idx)

    def first_tokens(self, idx: np.ndarray) -> None:
        """Requests ``idx`` got their first token now: those of one output token leave, the
        others decode from the next step."""
        self.first[idx] = self.t
        self.p_ends.append(self.t)
        self.p_tokens.append(idx.size)
        self.retire(idx[self.out[idx] == 1])
        idx = idx[self.out[idx] > 1]
        self.run = np.concatenate([self.run, idx])
        self.ctx = np.concatenate([self.ctx, self.inp[idx] + 1])
        self.left = np.concatenate([self.left, self.out[idx] - 1])

    def arrivals(self) -> None:
        """Queue the arrivals so far; with nothing in the system, wait for the next one."""
        if self.run.size == 0 and not self.waiting and not self.prefilling:
            self.t = max(self.t, float(self.arrival[self.nxt]))
        while self.nxt < self.arrival.size and self.arrival[self.nxt] <= self.t:
            self.waiting.append(self.nxt)
            self.nxt += 1

    def chunked_step(self) -> bool:
        """One iteration of in-flight batching (module docstring), or False when nothing is
        to be prefilled (the caller runs decode steps)."""
        self.arrivals()
        budget = math.inf if self.max_tokens is None else self.max_tokens
        left = max(budget - self.run.size, 0)
        chunks: list[tuple[int, int]] = []  # (request, prompt tokens this forward)
        for r in self.prefilling:  # the prompts under way first, in admission order
            take = min(int(self.inp[r] - self.prefilled[r]), left)
            if take <= 0:
                break
            chunks.append((r, take))
            left -= take
        admitted = 0
        while (self.waiting and left > 0
               and self.run.size + len(self.prefilling) < self.max_batch):
            head = self.admit_head(self.run.size + len(self.prefilling), admitted)
            if head is None:
                break
            self.prefilling.append(head)
            self.admit[head] = self.t
            admitted += 1
            take = int(min(self.inp[head] - self.prefix, left))
            chunks.append((head, take))
            left -= take
        if not chunks:
            return False
        self.max_running = max(self.max_running, self.run.size + len(self.prefilling))
        spans = tuple((int(self.prefilled[r]), int(self.prefilled[r] + k), int(self.inp[r]))
                      for r, k in chunks)
        mean_ctx = float(self.ctx.mean()) if self.run.size else 0.0
        self.t += _forward_s(self.costs, int(self.run.size), mean_ctx, spans)
        if self.run.size:
            self.ends.append(np.array([self.t]))
            self.batches.append(np.array([self.run.size]))
            self.advance(1)
        for r, k in chunks:
            self.prefilled[r] += k
        idx = np.array([r for r, _ in chunks if self.prefilled[r] == self.inp[r]], np.int64)
        if idx.size:
            while self.prefilling and self.prefilled[self.prefilling[0]] == \
                    self.inp[self.prefilling[0]]:
                self.prefilling.popleft()  # prompts complete in admission order
            self.first_tokens(idx)
        return True

    def retire(self, idx: np.ndarray) -> None:
        self.finish[idx] = self.t
        self.done += idx.size
        self.held -= int((self.inp[idx] + self.out[idx]).sum()) - self.prefix * idx.size

    def decode(self) -> None:
        """Decode steps of the running batch up to the next departure, the step the next
        arrival falls in (when it could be admitted) or ``RUN_STEPS``, priced on one chord."""
        self.max_running = max(self.max_running, self.run.size)
        if self.run.size == 0:
            return
        # one step when the prefill budget, not memory or the cap, left requests waiting
        k = 1 if self.budget_hit else int(min(self.left.min(), RUN_STEPS))
        mean_ctx = float(self.ctx.mean())
        a = _decode_at(self.costs, self.run.size, mean_ctx)
        b = _decode_at(self.costs, self.run.size, mean_ctx + k - 1) if k > 1 else a
        ends = self.t + np.cumsum(a + (b - a) * np.arange(k) / max(k - 1, 1))
        if not self.waiting and self.nxt < self.arrival.size:
            k = min(k, int(np.searchsorted(ends, self.arrival[self.nxt], side="left")) + 1)
            ends = ends[:k]
        self.t = float(ends[-1])
        self.ends.append(ends)
        self.batches.append(np.full(k, self.run.size))
        self.advance(k)

    def advance(self, k: int) -> None:
        """The running requests got ``k`` tokens each; those done leave."""
        self.ctx, self.left = self.ctx + k, self.left - k
        gone = self.left == 0
        if gone.any():
            self.retire(self.run[gone])
            self.run, self.ctx, self.left = self.run[~gone], self.ctx[~gone], self.left[~gone]


def _run(costs: StepCosts, arrival: np.ndarray, inp: np.ndarray, out: np.ndarray,
         config: SchedulerConfig) -> _Trace:
    """The scheduler of the module docstring, from the first arrival until every request is
    done."""
    s = _Scheduler(costs, arrival, inp, out, config)
    while s.done < arrival.size:
        if config.chunked:
            if not s.chunked_step():
                s.decode()
            continue
        s.admit_and_prefill()
        s.decode()
    ends = np.concatenate(s.ends) if s.ends else np.empty(0)
    batches = np.concatenate(s.batches) if s.batches else np.empty(0, np.int64)
    return _Trace(s.admit, s.first, s.finish, ends, batches, np.array(s.p_ends),
                  np.array(s.p_tokens, np.int64), s.max_running)


def _mean_in_system(arrival: np.ndarray, finish: np.ndarray, t0: float, t1: float) -> float:
    """Requests in the system (arrived, not finished), time-averaged over [t0, t1]."""
    times = np.concatenate([arrival, finish])
    order = np.argsort(times, kind="stable")
    count = np.cumsum(np.concatenate([np.ones(arrival.size), -np.ones(finish.size)])[order])
    edges = np.clip(times[order], t0, t1)
    return float(np.sum(count[:-1] * np.diff(edges)) / (t1 - t0))


def _queue_growth(arrival: np.ndarray, admit: np.ndarray, t0: float, t1: float,
                  points: int = 200) -> tuple[float, int]:
    """Least-squares growth of the waiting queue (arrived, not admitted) over [t0, t1], and the
    requests arriving in it."""
    grid = np.linspace(t0, t1, points)
    queue = (np.searchsorted(np.sort(arrival), grid, side="right")
             - np.searchsorted(np.sort(admit), grid, side="right"))
    slope = np.polyfit(grid - t0, queue.astype(float), 1)[0]
    arrived = int(np.count_nonzero((arrival >= t0) & (arrival <= t1)))
    return float(slope * (t1 - t0)), arrived


def _requests(costs: StepCosts, rate_per_s: float, input_len, output_len, requests: int,
              seed: int, prefix: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Checked arguments and the run's (arrivals, input lengths, output lengths)."""
    if not rate_per_s > 0 or not math.isfinite(rate_per_s):
        raise ConfigError(f"request rate {rate_per_s!r}: give a positive number of requests/s")
    requests = _positive_int(requests, "requests")
    if requests < 20:
        raise ConfigError(f"{requests} requests: simulate at least 20 to measure a steady state")
    rng = np.random.default_rng(seed)
    arrival = np.cumsum(rng.exponential(1.0 / rate_per_s, requests))
    inp, out = _lengths(rng, input_len, output_len, requests)
    _check_prefix(prefix, inp)
    longest = int((inp + out).max())
    if not fits(costs, 1, longest, int(inp.max())):
        raise InfeasibleError(f"one request of {longest} tokens does not fit in "
                              f"{costs.capacity_bytes / 2**30:.1f} GiB per GPU: use more GPUs "
                              "per replica or shorter requests")
    return arrival, inp, out


def _check_prefix(prefix: int, inp: np.ndarray) -> None:
    if not 0 <= prefix < int(inp.min()):
        raise ConfigError(f"cached prefix of {prefix} tokens: give 0 <= prefix < the shortest "
                          f"prompt ({int(inp.min())} tokens); the prompt's last token is "
                          "always computed")


def rate_bound(costs: StepCosts, input_len, output_len,
               config: SchedulerConfig = DEFAULT_SCHEDULER) -> float:
    """An upper bound on the requests/s a replica serves: its largest batch (the cap, or what
    fits at the longest request less the cached prefix, prefilled one at a time) over the
    shortest request's unbatched time."""
    max_batch, prefix = config.max_batch, config.prefix
    inp = np.atleast_1d(np.asarray(input_len))
    out = np.atleast_1d(np.asarray(output_len))
    own = int(inp.max() + out.max()) - prefix  # cache a request holds of its own
    most = max(1, largest_batch(costs, own, max_batch, min(int(inp.max()), own),
                                prefill_batch=1))
    i, n = int(inp.min()), int(out.min())
    shortest = _prefill_s(costs, np.array([i]), prefix) + (n - 1) * costs.decode_s(1, i + 1)
    return most / shortest


def _output_end(tr, arrival: np.ndarray, w: int) -> float:
    """Where the window of output ends: the last arrival, or later where the replica is still
    serving most of the window's requests then (under overload arrivals come faster than
    steps: the arrivals' window can be shorter than one prefill), the time by which
    ``OUTPUT_DONE`` of them have finished."""
    return max(float(arrival[-1]), float(np.quantile(tr.finish_s[w:], OUTPUT_DONE)))


OUTPUT_DONE = 0.8  # share of the measured requests finished when the output window closes


def _window_output(tr, arrival: np.ndarray, out: np.ndarray, w: int) -> tuple[float, float]:
    """(output tokens/s produced from arrival ``w`` to ``_output_end``, output tokens/s the
    arrivals from ``w`` to the last ask for)."""
    t0, t1, end = float(arrival[w]), float(arrival[-1]), _output_end(tr, arrival, w)
    in_window = (tr.decode_end_s >= t0) & (tr.decode_end_s <= end)
    p_window = (tr.prefill_end_s >= t0) & (tr.prefill_end_s <= end)
    tokens = tr.decode_batch[in_window].sum() + tr.prefill_tokens[p_window].sum()
    return float(tokens) / (end - t0), float(out[w + 1:].sum()) / (t1 - t0)


def saturation_rate(costs: StepCosts, input_len: int | Sequence[int],
                    output_len: int | Sequence[int], *, requests: int = DEFAULT_REQUESTS,
                    seed: int = 0, config: SchedulerConfig = DEFAULT_SCHEDULER) -> float:
    """Requests/s the replica keeps up with (module docstring): the requests arriving at
    ``rate_bound``, their completions between the 20th and 80th percentile of finish times
    over the time between them (the rate with the queue never empty); below it, the highest
    Poisson rate whose output keeps up with what its arrivals ask for (``KEEPS_UP``), found by
    bisection to ``_CAPACITY_STEPS`` halvings of the bracket."""

    def run(rate):
        arrival, inp, out = _requests(costs, rate, input_len, output_len, requests, seed,
                                      config.prefix)
        return arrival, out, _run(costs, arrival, inp, out, config)

    arrival, _, tr = run(rate_bound(costs, input_len, output_len, config))
    finish = np.sort(tr.finish_s)
    a, b = int(0.2 * finish.size), int(0.8 * finish.size)
    if finish[b] <= finish[a]:
        return math.inf
    hi = float((b - a) / (finish[b] - finish[a]))

    def keeps_up(rate) -> bool:
        arrival, out, tr = run(rate)
        made, asked = _window_output(tr, arrival, out, int(0.2 * requests))
        return made >= KEEPS_UP * asked

    if keeps_up(hi):
        return hi
    lo = hi / 2
    while not keeps_up(lo):
        hi, lo = lo, lo / 2
        if lo < 1e-9 * hi:
            return lo
    for _ in range(_CAPACITY_STEPS):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if keeps_up(mid) else (lo, mid)
    return lo


_CAPACITY_STEPS = 7  # bisections of the capacity's bracket: within 0.6 % of a halved bracket


def simulate_continuous(costs: StepCosts, rate_per_s: float,
                        input_len: int | Sequence[int], output_len: int | Sequence[int], *,
                        requests: int = DEFAULT_REQUESTS, seed: int = 0,
                        warmup_fraction: float = 0.2, capacity_per_s: float | None = None,
                        config: SchedulerConfig = DEFAULT_SCHEDULER) -> ContinuousServing:
    """Continuous batching in steady state (module docstring): ``requests`` Poisson arrivals at
    ``rate_per_s``, the first ``warmup_fraction`` of them discarded, scheduled as ``config``
    says. ``capacity_per_s``: the replica's ``saturation_rate`` for these lengths where the
    caller has it."""
    if not 0 <= warmup_fraction <= 0.5:
        raise ConfigError(f"warm-up fraction {warmup_fraction!r}: give a number in [0, 0.5]")
    arrival, inp, out = _requests(costs, rate_per_s, input_len, output_len, requests, seed,
                                  config.prefix)
    if capacity_per_s is None:
        capacity_per_s = saturation_rate(costs, input_len, output_len, requests=requests,
                                         seed=seed, config=config)
    tr = _run(costs, arrival, inp, out, config)
    w = int(warmup_fraction * requests)
    t0, t1 = float(arrival[w]), float(arrival[-1])
    throughput, demand = _window_output(tr, arrival, out, w)
    in_window = (tr.decode_end_s >= t0) & (tr.decode_end_s <= _output_end(tr, arrival, w))
    half = 0.5 * (t0 + t1)
    growth, arrived = _queue_growth(arrival, tr.admit_s, half, t1)
    sel = slice(w, None)
    ttft = tr.first_token_s[sel] - arrival[sel]
    e2e = tr.finish_s[sel] - arrival[sel]
    multi = out[sel] > 1
    tpot = (tr.finish_s[sel] - tr.first_token_s[sel])[multi] / (out[sel][multi] - 1)
    return ContinuousServing(
        rate_per_s=rate_per_s, gpus=costs.gpus, window_s=(t0, t1),
        output_tokens_per_s=throughput, output_tokens_per_s_per_gpu=throughput / costs.gpus,
        ttft=Percentiles.of(ttft), tpot=Percentiles.of(tpot), e2e=Percentiles.of(e2e),
        mean_batch=float(tr.decode_batch[in_window].mean()) if in_window.any() else 0.0,
        max_running=tr.max_running,
        mean_in_system=_mean_in_system(arrival, tr.finish_s, t0, t1),
        queue_growth=growth,
        stable=bool(growth <= QUEUE_GROWTH_FRACTION * arrived and rate_per_s < capacity_per_s
                    and throughput >= KEEPS_UP * demand),
        capacity_per_s=capacity_per_s, arrived_per_s=(requests - 1 - w) / (t1 - t0),
        arrival_s=arrival[sel], first_token_s=tr.first_token_s[sel], finish_s=tr.finish_s[sel],
        output_len=out[sel])
