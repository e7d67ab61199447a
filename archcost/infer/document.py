"""The inference document: what ``archcost infer`` prints and writes (``kind: inference``).

Static batching (all sequences prefilled together, then decoded together, as a batch
benchmark runs) is priced by :func:`archcost.infer.serving.static_serving` on the step costs of
:class:`archcost.infer.price.InferenceCosts`; the roofline verdict of each phase comes from the
FLOPs and bytes one GPU runs in it.
"""

from __future__ import annotations

from typing import Any

from archcost.errors import ConfigError
from archcost.infer.capture import InferStep
from archcost.infer.price import InferenceCosts
from archcost.infer.serving import SchedulerConfig, simulate_continuous, static_serving

__all__ = ["SCHEMA_VERSION", "hardware_header", "inference_section", "check_fits",
           "baseline_section", "continuous_section", "search_section"]

SCHEMA_VERSION = 1
GIB = 2**30


def hardware_header(costs: InferenceCosts) -> dict[str, Any]:
    c = costs.cluster
    return {"gpu": c.gpu.name, "cluster": c.name, "gpus_per_node": c.gpus_per_node,
            "tp": costs.tp, "pp": costs.pp, "gpus": costs.gpus,
            "memory_bytes_per_gpu": float(c.gpu.mem_bytes),
            "mem_bw_bytes_per_s": float(c.gpu.mem_bw_bytes_per_s),
            "usable_memory": costs.usable_memory}


def _phase(costs: InferenceCosts, batch: int, step: InferStep) -> dict[str, Any]:
    timing = costs.step(batch, step)
    work = costs.work(batch, step)
    # the roofline of the phase: its compute roof (the ridge point times the memory bandwidth,
    # the peak at the sustained clock), the FLOP/s the roofline allows at its intensity, and
    # what the priced step achieves
    peak = work["ridge_point_flop_per_byte"] * costs.gpu.mem_bw_bytes_per_s
    roof = {"peak_flops_per_s": peak,
            "attainable_flops_per_s": min(peak, work["arithmetic_intensity"]
                                          * costs.gpu.mem_bw_bytes_per_s),
            "achieved_flops_per_s": work["flops_per_gpu"] / timing["seconds"]
            if timing["seconds"] > 0 else 0.0}
    # a decode step on a profile with warm matmul rows: which rows priced it (its bytes moved
    # within the last-level cache or not, ``InferenceCosts.weights_cached``)
    cached = {"weights_from_cache": costs.weights_cached(batch, step)} \
        if step.kind == "decode" and costs.gpu.matmul_shape_efficiency_warm else {}
    return {"tokens": batch * step.new_tokens, "context": step.context, **timing, **work,
            **roof, **cached}


def _tpot(seconds: float, output_len: int) -> float | None:
    """The mean decode step; None (no TPOT) for one output token, which no decode step
    produces."""
    return seconds if output_len > 1 else None


def inference_section(costs: InferenceCosts, batch: int, input_len: int, output_len: int
                      ) -> dict[str, Any]:
    """The ``inference`` section: static batching of ``batch`` sequences of ``input_len``
    prompt tokens generating ``output_len`` tokens each."""
    run = static_serving(costs, batch, input_len, output_len)
    mid = input_len + max(output_len // 2, 1)
    mem = dict(run.memory_bytes)
    mem["capacity"] = float(costs.gpu.mem_bytes)
    mem["usable"] = float(costs.capacity_bytes)
    phases = {"prefill": _phase(costs, batch, InferStep.prefill(1, input_len))}
    if output_len > 1:  # one output token comes out of the prefill: no decode step runs
        phases["decode"] = _phase(costs, batch, InferStep.decode(1, mid))
    return {
        "batch": batch, "input_len": input_len, "output_len": output_len,
        "ttft_s": run.ttft_s, "tpot_s": _tpot(run.tpot_s, output_len), "e2e_s": run.e2e_s,
        "output_tokens_per_s": run.output_tokens_per_s,
        "output_tokens_per_s_per_gpu": run.output_tokens_per_s_per_gpu,
        "tpot_by_context": [{"context": int(c), "seconds": float(s)}
                            for c, s in run.tpot_by_context],
        "phases": phases,
        "memory_bytes": mem,
        "kv_cache_bytes_per_token": costs.kv_bytes_per_token(),
        "fits": bool(run.fits),
        "max_batch": int(run.max_batch),
    }


def check_fits(section: dict[str, Any], costs: InferenceCosts) -> None:
    """One line when the batch does not fit: what each part takes and the largest batch that
    does."""
    if section["fits"]:
        return
    m = section["memory_bytes"]
    largest = section["max_batch"]
    fix = (f"the largest batch that fits is {largest}" if largest else
           "not even one sequence fits: raise --tp/--pp, quantize (--weights int4, "
           "--kv-dtype fp8) or shorten the sequences")
    need, have = m["peak_per_gpu"] / GIB, costs.capacity_bytes / GIB
    digits = 1
    while f"{need:.{digits}f}" == f"{have:.{digits}f}" and digits < 6:
        digits += 1  # just past the limit: enough digits to show it
    raise ConfigError(
        f"batch {section['batch']} does not fit: {need:.{digits}f} GiB per GPU "
        f"(weights {m['weights'] / GIB:.1f}, KV cache {m['kv_cache'] / GIB:.1f}, activations "
        f"{m['activations'] / GIB:.1f}) against {have:.{digits}f} GiB usable on "
        f"{costs.gpu.name}; {fix} (or --ignore-memory to price it anyway)")


def baseline_section(costs: InferenceCosts, batch: int, input_len: int, output_len: int
                     ) -> dict[str, Any]:
    """The same generation in bf16 with a bf16 cache, beside a quantized one: what
    quantization buys in time and memory."""
    run = static_serving(costs, batch, input_len, output_len)
    return {"ttft_s": run.ttft_s, "tpot_s": _tpot(run.tpot_s, output_len), "e2e_s": run.e2e_s,
            "output_tokens_per_s": run.output_tokens_per_s,
            "output_tokens_per_s_per_gpu": run.output_tokens_per_s_per_gpu,
            "memory_bytes": {k: float(v) for k, v in run.memory_bytes.items()},
            "fits": bool(run.fits), "max_batch": int(run.max_batch)}


def continuous_section(costs: InferenceCosts, rate: float, input_len: int, output_len: int,
                       config: SchedulerConfig) -> dict[str, Any]:
    """Continuous batching at ``rate`` requests/s in steady state
    (:func:`archcost.infer.serving.simulate_continuous`) under the scheduler settings
    ``config`` (a ``serving.SchedulerConfig``)."""
    run = simulate_continuous(costs, rate, input_len, output_len, config=config)

    def pct(p) -> dict[str, float]:
        return {"p50_s": p.p50_s, "p90_s": p.p90_s, "p99_s": p.p99_s}

    return {"rate_per_s": run.rate_per_s, "output_tokens_per_s": run.output_tokens_per_s,
            "output_tokens_per_s_per_gpu": run.output_tokens_per_s_per_gpu,
            "ttft": pct(run.ttft), "e2e": pct(run.e2e),
            # no request generates a second token: no decode step, no TPOT
            "tpot": pct(run.tpot) if (run.output_len > 1).any() else None,
            "mean_batch": run.mean_batch, "max_running": run.max_running,
            **config.describe(),
            "stable": bool(run.stable), "queue_growth": run.queue_growth,
            "capacity_per_s": run.capacity_per_s, "arrived_per_s": run.arrived_per_s}


def _evaluated(e, output_len: int) -> dict[str, Any]:
    return {"plan": e.plan.label, "tp": e.plan.tp, "pp": e.plan.pp,
            "replicas": e.plan.replicas, "precision": e.plan.precision, "batch": e.plan.batch,
            "ttft_s": e.ttft_s, "tpot_s": _tpot(e.tpot_s, output_len),
            "output_tokens_per_s": e.output_tokens_per_s,
            "output_tokens_per_s_per_gpu": e.output_tokens_per_s_per_gpu,
            "peak_bytes_per_gpu": e.peak_bytes_per_gpu, "meets_slo": e.meets_slo,
            "rate_per_s": e.rate_per_s, "replica_max_rate_per_s": e.replica_max_rate_per_s,
            "gpus_used": e.gpus_used, "why": e.why}


def search_section(res, slos, top: int = 10, output_len: int = 2,
                   target_rate: float | None = None) -> dict[str, Any]:
    """The serving search (:func:`archcost.infer.search.search`): the best configurations
    within the SLOs (serving ``target_rate`` requests/s in all where given), the Pareto front,
    and the plans skipped with why (``output_len`` 1: no TPOT)."""
    return {"ttft_slo_s": slos[0], "tpot_slo_s": slos[1], "target_rate_per_s": target_rate,
            "ranked": [_evaluated(e, output_len) for e in res.ranked[:top]],
            "pareto_front": [_evaluated(e, output_len) for e in res.front],
            "evaluated": len(res.evaluated),
            "skipped": [{"tp": s.tp, "pp": s.pp, "precision": s.precision, "reason": s.reason}
                        for s in res.skipped]}
