"""Facts and tables of inference results (``archcost infer -o`` and ``archcost sweep --infer
-o``), the content Markdown and HTML share: the latency and throughput summary, the two phases
on the roofline, time per output token by context, memory per GPU against what is usable, and
a sweep's grid. Cells are plain, unescaped text (the renderers escape).
"""

from __future__ import annotations

from typing import Any

from archcost.report import fmt
from archcost.report.document import point_label, sweep_keys
from archcost.report.tables import Report, Table

__all__ = ["inference_facts", "inference_tables", "infer_sweep_facts", "infer_sweep_tables",
           "best_infer_point", "is_infer_sweep", "MEMORY_PARTS", "weights_source"]

MEMORY_PARTS = (("weights", "weights"), ("kv_cache", "KV cache"),
                ("activations", "activations"))


def weights_label(w: dict[str, Any]) -> str:
    """", weights ..." where a workload's linears are stored other than in its dtype (int4
    weight-only, 2:4, ...); "" otherwise."""
    weights = w.get("weights")
    return f", weights {weights}" if weights and weights != w.get("dtype") else ""


def _num(v) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else 0.0


def is_infer_sweep(doc: dict[str, Any]) -> bool:
    return doc.get("kind") == "sweep" and doc.get("mode") == "inference"


def _yes(v) -> str:
    return "yes" if v is True else "no"


# ---------------------------------------------------------------- one document

def inference_facts(doc: dict[str, Any]) -> list[tuple[str, str]]:
    w = doc.get("workload") or {}
    if "search" in doc:
        return [("serving search", f"{w.get('input_len')} prompt tokens, {w.get('output_len')} "
                                   f"generated, precisions {', '.join(w.get('precisions') or [])},"
                                   f" runtime {w.get('runtime', '?')}, "
                                   f"{w.get('batching', 'static')} batching")]
    facts = [("generation", f"batch {w.get('batch')}, {w.get('input_len')} prompt tokens, "
                            f"{w.get('output_len')} generated per sequence, {w.get('dtype')}"
                            f"{weights_label(w)} (KV cache {w.get('kv_dtype', w.get('dtype'))}), "
                            "runtime "
                            f"{w.get('runtime', '?')}, {w.get('batching', 'static')} batching")]
    for note in doc.get("notes") or []:
        facts.append(("note", str(note)))
    return facts


def _summary(inf: dict[str, Any]) -> Table:
    mem = inf.get("memory_bytes") or {}
    rows = [["time to first token (TTFT)", fmt.seconds(inf.get("ttft_s"))],
            ["time per output token (TPOT, mean)", fmt.seconds(inf.get("tpot_s"))],
            ["end-to-end latency", fmt.seconds(inf.get("e2e_s"))],
            ["output tokens/s (replica)", fmt.si(inf.get("output_tokens_per_s"))],
            ["output tokens/s per GPU", fmt.si(inf.get("output_tokens_per_s_per_gpu"))]]
    rows += [[f"memory per GPU: {label}", fmt.nbytes(mem.get(key))]
             for key, label in MEMORY_PARTS]
    rows += [["memory per GPU: peak", fmt.nbytes(mem.get("peak_per_gpu"))],
             ["usable per GPU", fmt.nbytes(mem.get("usable"))],
             ["fits", _yes(inf.get("fits"))],
             ["largest batch that fits", fmt.count(inf.get("max_batch"))]]
    return Table("inference-summary", "Summary", ["quantity", "value"], rows, "lr",
                 note="static batching: the batch is prefilled together (its first token comes "
                      "out of the prefill), then decoded together; memory at the longest "
                      "sequence (prompt + generated tokens)")


def _phases(inf: dict[str, Any]) -> Table:
    rows = []
    for name, ph in (inf.get("phases") or {}).items():
        if not isinstance(ph, dict):
            continue
        label = name if name == "prefill" else f"{name} @ context {ph.get('context', '?')}"
        rows.append([label, fmt.seconds(ph.get("seconds")), fmt.si(ph.get("flops_per_gpu")),
                     fmt.nbytes(ph.get("bytes_per_gpu")),
                     fmt.sig(_num(ph.get("arithmetic_intensity"))),
                     fmt.sig(_num(ph.get("ridge_point_flop_per_byte"))),
                     " ".join(filter(None, (str(ph.get("bound")),
                                            weights_source(ph) and f"({weights_source(ph)})"))),
                     fmt.si(ph.get("attainable_flops_per_s"), "FLOP/s"),
                     fmt.si(ph.get("achieved_flops_per_s"), "FLOP/s"),
                     fmt.seconds(_num(ph.get("tp_comm_s")) + _num(ph.get("pp_comm_s")))])
    return Table("inference-phases", "Phases on the roofline (per GPU)",
                 ["phase", "step time", "FLOPs", "bytes", "FLOP/B", "ridge FLOP/B", "bound",
                  "attainable", "achieved", "communication"], rows, "lrrrrrlrrr",
                 note="memory-bound below the ridge point (peak FLOP/s over memory bandwidth); "
                      "attainable: min(peak, intensity x bandwidth); achieved: FLOPs over the "
                      "priced step time")


def weights_source(phase: dict[str, Any]) -> str:
    """Where a decode step's weights were read from, where the document says
    (``weights_from_cache``: a profile with warm matmul rows); "" elsewhere."""
    cached = phase.get("weights_from_cache")
    return "" if cached is None else ("weights in the last-level cache" if cached else
                                      "weights from memory")


def _tpot(inf: dict[str, Any]) -> Table:
    rows = [[fmt.count(r.get("context")), fmt.seconds(r.get("seconds"))]
            for r in inf.get("tpot_by_context") or [] if isinstance(r, dict)]
    return Table("inference-tpot", "Time per output token by context",
                 ["context (tokens)", "decode step"], rows, "rr",
                 note="one decode step of the whole batch, every sequence attending to that "
                      "many tokens")


def _memory(inf: dict[str, Any]) -> Table:
    mem = inf.get("memory_bytes") or {}
    usable = _num(mem.get("usable"))
    rows = [[label, fmt.nbytes(mem.get(key)),
             fmt.percent(_num(mem.get(key)) / usable) if usable else "-"]
            for key, label in (*MEMORY_PARTS, ("peak_per_gpu", "peak"))]
    return Table("inference-memory", "Memory per GPU", ["part", "bytes", "of usable"], rows,
                 note=f"usable {fmt.nbytes(mem.get('usable'))} of "
                      f"{fmt.nbytes(mem.get('capacity'))}")


def _baseline(inf: dict[str, Any]) -> Table:
    base = inf.get("bf16_baseline") or {}
    rows = []
    for key, label, show in (("ttft_s", "time to first token", fmt.seconds),
                             ("tpot_s", "time per output token", fmt.seconds),
                             ("output_tokens_per_s", "output tokens/s", fmt.si)):
        if inf.get(key) is None:  # no TPOT: one output token, no decode step
            rows.append([label, "-", "-", "-"])
            continue
        a, b = _num(inf.get(key)), _num(base.get(key))
        rows.append([label, show(a), show(b), f"{a / b:.2f}x" if b else "-"])
    for key, label in (*MEMORY_PARTS, ("peak_per_gpu", "peak")):
        a = _num((inf.get("memory_bytes") or {}).get(key))
        b = _num((base.get("memory_bytes") or {}).get(key))
        rows.append([f"memory {label}", fmt.nbytes(a), fmt.nbytes(b), f"{a / b:.2f}x" if b else "-"])
    return Table("inference-baseline", "Beside bf16", ["quantity", "this", "bf16", "ratio"],
                 rows, "lrrr", note="the same generation with bf16 weights and a bf16 cache")


def _continuous(inf: dict[str, Any]) -> Table:
    c = inf.get("continuous") or {}
    rows = [[label] + [fmt.seconds((c.get(key) or {}).get(p)) for p in ("p50_s", "p90_s",
                                                                      "p99_s")]
            for key, label in (("ttft", "time to first token"), ("tpot", "time per output token"),
                               ("e2e", "end-to-end latency"))]
    return Table("inference-continuous",
                 f"Continuous batching at {fmt.sig(_num(c.get('rate_per_s')))} requests/s",
                 ["latency", "p50", "p90", "p99"], rows, "lrrr",
                 note=f"output tokens/s {fmt.si(c.get('output_tokens_per_s'))}, mean batch "
                      f"{fmt.sig(_num(c.get('mean_batch')))}"
                      + (f" (at most {c['max_seqs']} running)" if "max_seqs" in c else "")
                      + ("; decodes and prompt chunks in one forward (chunked prefill)"
                         if c.get("chunked_prefill") else "")
                      + (f"; every prompt's first {c['prefix_len']} tokens cached and reused"
                         if c.get("prefix_len") else "")
                      + "; queue "
                      f"{'stable' if c.get('stable') else 'growing: the rate is past capacity'}"
                      + (f"; capacity {fmt.sig(_num(c['capacity_per_s']))} requests/s, "
                         f"{fmt.sig(_num(c.get('arrived_per_s')))} arrived per second"
                         if isinstance(c.get("capacity_per_s"), (int, float)) else ""))


def _plans(title: str, key: str, rows_in: list, note: str, continuous: bool,
           target: bool = False) -> Table:
    """Serving plans, one a row; ``target``: serving a target rate (the GPUs each takes and
    the most one replica serves, beside the rate)."""
    extra = ["GPUs", "max requests/s a replica"] if target else []
    rows = [[str(e.get("plan")), fmt.seconds(e.get("ttft_s")), fmt.seconds(e.get("tpot_s")),
             *([fmt.sig(_num(e.get("rate_per_s")))] if continuous else []),
             *([fmt.sig(_num(e.get("gpus_used"))), fmt.sig(_num(e.get("replica_max_rate_per_s")))]
               if target else []),
             fmt.si(e.get("output_tokens_per_s_per_gpu")), fmt.nbytes(e.get("peak_bytes_per_gpu")),
             _yes(e.get("meets_slo"))] for e in rows_in if isinstance(e, dict)]
    latency = ["p90 TTFT", "p90 TPOT", "requests/s"] if continuous else ["TTFT", "TPOT"]
    return Table(key, title, ["plan", *latency, *extra, "tokens/s per GPU", "peak per GPU",
                              "meets SLOs"], rows, "l" + "r" * (len(latency) + len(extra) + 2)
                 + "l", note=note)


def search_tables(doc: dict[str, Any], rep: Report) -> None:
    s = doc.get("search") or {}
    cont = (doc.get("workload") or {}).get("batching") == "continuous"
    target = isinstance(s.get("target_rate_per_s"), (int, float))
    slo = ", ".join(f"{n} at most {fmt.seconds(s.get(k))}" for n, k in
                    (("TTFT", "ttft_slo_s"), ("TPOT", "tpot_slo_s")) if s.get(k) is not None)
    how = ("; continuous batching: each at the highest request rate whose p90 latencies meet "
           "them" if cont else "")
    order = (f"serving {fmt.sig(s['target_rate_per_s'])} requests/s in all, split evenly over "
             "each plan's replicas; ranked by the fewest GPUs, then p90 TPOT" if target
             else f"ranked by output tokens/s per GPU{how}")
    rep.add(_plans("Best serving plans within the SLOs", "search-ranked", s.get("ranked") or [],
                   f"SLOs: {slo or 'none'}; {order}", cont, target))
    rep.add(_plans("Throughput-latency Pareto front", "search-front",
                   s.get("pareto_front") or [], "every configuration that fits: nothing has "
                   "more tokens/s per GPU at a TPOT as low", cont, target))
    skipped = [[f"tp={k.get('tp')} pp={k.get('pp')} {k.get('precision')}", str(k.get("reason"))]
               for k in s.get("skipped") or [] if isinstance(k, dict)]
    if skipped:
        rep.add(Table("search-skipped", "Plans skipped", ["plan", "why"], skipped, "ll"))


def inference_tables(doc: dict[str, Any], rep: Report) -> None:
    if "search" in doc:
        search_tables(doc, rep)
        return
    inf = doc.get("inference") or {}
    for table in (_summary(inf), _phases(inf), _tpot(inf), _memory(inf)):
        rep.add(table)
    if inf.get("bf16_baseline"):
        rep.add(_baseline(inf))
    if inf.get("continuous"):
        rep.add(_continuous(inf))


# ---------------------------------------------------------------- sweeps

def best_infer_point(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The fitting point with the most output tokens/s per GPU."""
    pts = [p for p in doc.get("points") or [] if isinstance(p, dict) and p.get("fits") is True
           and _num(p.get("output_tokens_per_s_per_gpu")) > 0]
    return max(pts, key=lambda p: _num(p["output_tokens_per_s_per_gpu"])) if pts else None


def infer_sweep_facts(doc: dict[str, Any]) -> list[tuple[str, str]]:
    b = doc.get("base") or {}
    facts = [("base", f"hardware {b.get('hardware')}, tp {b.get('tp')}, pp {b.get('pp')}, "
                      f"batch {b.get('batch')}, {b.get('input_len')} prompt tokens, "
                      f"{b.get('output_len')} generated, {b.get('dtype')}; static batching "
                      "priced at every point")]
    axes = [a for a in doc.get("axes") or [] if isinstance(a, dict)]
    if axes:
        facts.append(("varied", "; ".join(f"{a.get('key')} = "
                                          f"{', '.join(map(str, a.get('values') or []))}"
                                          for a in axes)))
    points = [p for p in doc.get("points") or [] if isinstance(p, dict)]
    fit = sum(1 for p in points if p.get("fits") is True)
    grid = f"{len(points)} points, {fit} that fit"
    if _num(doc.get("seconds")):
        grid += f", priced in {fmt.seconds(_num(doc['seconds']))}"
    facts.append(("grid", grid))
    best = best_infer_point(doc)
    if best:
        facts.append(("most tokens/s per GPU",
                      f"{point_label(best.get('point'), sweep_keys(doc))}: "
                      f"{fmt.si(best.get('output_tokens_per_s_per_gpu'))}"))
    return facts


def infer_sweep_tables(doc: dict[str, Any], rep: Report) -> None:
    keys = sweep_keys(doc)
    cols = [*keys, "TTFT", "TPOT", "end to end", "tokens/s", "tokens/s/GPU", "memory/GPU",
            "fits", "prefill", "decode"]
    rows = []
    for p in doc.get("points") or []:
        if not isinstance(p, dict):
            continue
        rows.append([str((p.get("point") or {}).get(k, "")) for k in keys] + [
            fmt.seconds(p.get("ttft_s")), fmt.seconds(p.get("tpot_s")),
            fmt.seconds(p.get("e2e_s")), fmt.si(p.get("output_tokens_per_s")),
            fmt.si(p.get("output_tokens_per_s_per_gpu")), fmt.nbytes(p.get("peak_per_gpu_bytes")),
            _yes(p.get("fits")) if p.get("fits") else f"no (max batch {p.get('max_batch', '?')})",
            str(p.get("prefill_bound", "-")), str(p.get("decode_bound", "-"))])
    best = best_infer_point(doc)
    note = ("prefill, decode: what bounds each phase on the roofline; a point that does not fit "
            "is priced as if it did")
    if best:
        note = f"most tokens/s per GPU: {point_label(best.get('point'), keys)}; " + note
    rep.add(Table("infer-grid", "Grid: generation at every point", cols, rows,
                  "l" * len(keys) + "r" * 6 + "lll", note=note))
