"""Terminal rendering of inference documents (display only, no computation)."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from archcost.cli.layout import Col, Grid, say
from archcost.report import fmt
from archcost.report.infer_tables import weights_label, weights_source

__all__ = ["render_inference", "render_search"]


def render_inference(console: Console, doc: dict[str, Any]) -> None:
    w, h, inf = doc["workload"], doc["hardware"], doc["inference"]
    par = f"tp={h['tp']} pp={h['pp']}" if h["gpus"] > 1 else "1 GPU"
    g = Grid(f"{doc['model']['name']}  batch {w['batch']}, {w['input_len']} in / "
             f"{w['output_len']} out, {w['dtype']}{weights_label(w)} (KV {w['kv_dtype']}), "
             f"{h['gpu']} {par}, "
             f"{w['runtime']}", [Col("quantity", "left"), Col("value")], header=False)
    g.row("time to first token", fmt.seconds(inf["ttft_s"]))
    decodes = w["output_len"] > 1
    g.row("time per output token (mean)", fmt.seconds(inf["tpot_s"]) if decodes
          else "- (one output token: no decode step)")
    g.row("end-to-end latency", fmt.seconds(inf["e2e_s"]))
    g.row("output tokens/s", fmt.sig(inf["output_tokens_per_s"]))
    g.row("output tokens/s per GPU", fmt.sig(inf["output_tokens_per_s_per_gpu"]))
    mem = inf["memory_bytes"]
    for key in ("weights", "kv_cache", "activations", "peak_per_gpu"):
        g.row(f"memory {key.replace('_', ' ')}", fmt.nbytes(mem[key]))
    g.row("usable memory per GPU", fmt.nbytes(mem["usable"]))
    g.row("largest batch that fits", str(inf["max_batch"]))
    g.print(console)
    p = Grid("phases (per GPU; roofline: memory-bound below the ridge point)",
             [Col("phase", "left"), Col("seconds"), Col("FLOPs"), Col("bytes"),
              Col("FLOP/B"), Col("ridge"), Col("bound", "left"), Col("TP comm")])
    for name, ph in inf["phases"].items():  # no decode phase for one output token
        label = name if name == "prefill" else f"decode @ {ph['context']}"
        p.row(label, fmt.seconds(ph["seconds"]), fmt.si(ph["flops_per_gpu"]),
              fmt.nbytes(ph["bytes_per_gpu"]), fmt.sig(ph["arithmetic_intensity"]),
              fmt.sig(ph["ridge_point_flop_per_byte"]), ph["bound"],
              fmt.seconds(ph["tp_comm_s"]))
    p.print(console)
    for ph in inf["phases"].values():
        if weights_source(ph):
            say(console, f"decode @ {ph['context']}: {fmt.nbytes(ph['bytes_per_gpu'])} moved a "
                         f"step, {weights_source(ph)}", style="dim")
    if inf["tpot_by_context"]:
        t = Grid("time per output token by context", [Col("context"), Col("seconds")])
        for row in inf["tpot_by_context"]:
            t.row(str(row["context"]), fmt.seconds(row["seconds"]))
        t.print(console)
    base = inf.get("bf16_baseline")
    if base:
        b = Grid(f"{w['weights']}, KV {w['kv_dtype']} beside bf16",
                 [Col("quantity", "left"), Col("this"), Col("bf16"), Col("ratio")])
        for key, label, show in (
                ("ttft_s", "time to first token", fmt.seconds),
                ("tpot_s", "time per output token", fmt.seconds),
                ("output_tokens_per_s", "output tokens/s", fmt.sig)):
            b.row(label, show(inf[key]), show(base[key]),
                  f"{inf[key] / base[key]:.2f}x" if inf[key] is not None and base[key] else "")
        for key in ("weights", "kv_cache", "peak_per_gpu"):
            mine, theirs = inf["memory_bytes"][key], base["memory_bytes"][key]
            b.row(f"memory {key.replace('_', ' ')}", fmt.nbytes(mine), fmt.nbytes(theirs),
                  f"{mine / theirs:.2f}x" if theirs else "")
        b.row("largest batch that fits", str(inf["max_batch"]), str(base["max_batch"]),
              f"{inf['max_batch'] / base['max_batch']:.2f}x" if base["max_batch"] else "")
        b.print(console)
    cont = inf.get("continuous")
    if cont:
        c = Grid(f"continuous batching at {fmt.sig(cont['rate_per_s'])} requests/s "
                 f"({'stable' if cont['stable'] else 'UNSTABLE: the queue grows'})",
                 [Col("quantity", "left"), Col("p50"), Col("p90"), Col("p99")])
        for key, label in (("ttft", "time to first token"), ("tpot", "time per output token"),
                           ("e2e", "end-to-end latency")):
            p = cont[key] or {}  # no TPOT where no request decodes: "-"
            c.row(label, *(fmt.seconds(p.get(k)) for k in ("p50_s", "p90_s", "p99_s")))
        c.note(f"output tokens/s {fmt.sig(cont['output_tokens_per_s'])}, per GPU "
               f"{fmt.sig(cont['output_tokens_per_s_per_gpu'])}; mean batch "
               f"{fmt.sig(cont['mean_batch'])}"
               + (f" (at most {cont['max_seqs']} running)" if "max_seqs" in cont else "")
               + (f"; at most {cont['max_batched_tokens']} "
                  + ("tokens a forward, decodes and prompt chunks together"
                     if cont.get("chunked_prefill") else "prompt tokens prefilled an iteration")
                  if cont.get("max_batched_tokens") else "")
               + ("; decodes and prompts in one forward (chunked prefill)"
                  if cont.get("chunked_prefill") and not cont.get("max_batched_tokens") else "")
               + (f"; every prompt's first {cont['prefix_len']} tokens cached and reused"
                  if cont.get("prefix_len") else ""))
        if "capacity_per_s" in cont:
            c.note(f"requests arrived at {fmt.sig(cont['arrived_per_s'])}/s in the window; "
                   f"the replica's capacity {fmt.sig(cont['capacity_per_s'])} requests/s "
                   f"(utilization {cont['rate_per_s'] / cont['capacity_per_s']:.0%})")
        c.print(console)
    for note in doc.get("notes", []):
        say(console, f"note: {note}")


def render_search(console: Console, doc: dict[str, Any]) -> None:
    s, w = doc["search"], doc["workload"]
    slo = ", ".join(f"{k} <= {fmt.seconds(v)}" for k, v in
                    (("TTFT", s["ttft_slo_s"]), ("TPOT", s["tpot_slo_s"])) if v is not None)
    cont = w["batching"] == "continuous"
    target = s.get("target_rate_per_s")
    # serving a target rate: the GPUs each plan takes and what one of its replicas serves at
    # most, in place of the throughput (the target's, for every plan)
    rates = ([Col("GPUs"), Col("max req/s")] if target is not None
             else [Col("requests/s"), Col("tok/s/GPU")] if cont else [Col("tok/s/GPU")])
    cols = [Col("plan", "left"), Col("p90 TTFT" if cont else "TTFT"),
            Col("p90 TPOT" if cont else "TPOT"), *rates, Col("peak/GPU")]

    def opt(x: float | None) -> str:
        return "-" if x is None else fmt.sig(x)

    def row(grid: Grid, e: dict[str, Any]) -> None:
        per_gpu = fmt.sig(e["output_tokens_per_s_per_gpu"])
        extra = ([opt(e.get("gpus_used")), opt(e.get("replica_max_rate_per_s"))]
                 if target is not None else [opt(e.get("rate_per_s")), per_gpu] if cont
                 else [per_gpu])
        grid.row(e["plan"], fmt.seconds(e["ttft_s"]), fmt.seconds(e["tpot_s"]), *extra,
                 fmt.nbytes(e["peak_bytes_per_gpu"]))

    gpus = doc["hardware"]["gpus"]
    what = (f"serving {fmt.sig(target)} requests/s on at most {gpus} GPUs"
            if target is not None else f"on {gpus} GPUs")
    g = Grid(f"{doc['model']['name']} {what} of {doc['hardware']['cluster']}, "
             f"{w['input_len']} in / {w['output_len']} out, {w['batching']} batching; within "
             f"{slo or 'no SLO'}", cols)
    for e in s["ranked"]:
        row(g, e)
    if target is not None:
        g.note("max req/s: the most requests/s one replica serves within the SLOs; the "
               "requests split evenly over the replicas")
    if not s["ranked"] and target is not None and s["pareto_front"]:
        g.note(f"no plan serves {fmt.sig(target)} requests/s within the SLOs on {gpus} GPUs: "
               "add GPUs, relax the SLOs or lower the rate")
    elif not s["ranked"]:
        g.note("no configuration meets the SLOs: relax them or add GPUs" if s["pareto_front"]
               else "no configuration fits in memory: add GPUs or shorten the requests")
    g.print(console)
    f = Grid("throughput-latency Pareto front (all that fit)", cols)
    for e in s["pareto_front"]:
        row(f, e)
    f.print(console)
    if s["ranked"]:
        say(console, f"{s['ranked'][0]['plan']}: {s['ranked'][0]['why']}")
    for sk in s["skipped"][:8]:
        say(console, f"skipped tp={sk['tp']} pp={sk['pp']} {sk['precision']}: {sk['reason']}")
    if len(s["skipped"]) > 8:
        say(console, f"... and {len(s['skipped']) - 8} more skipped (all in the JSON document)")
