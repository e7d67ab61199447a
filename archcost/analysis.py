"""Summaries of an operator graph: totals, per-module tree, per-op-class, ops without a rule.

Pure functions of the graph and the capture's bookkeeping; the result is the versioned JSON
document that ``archcost analyze --json`` prints and later stages (cost, plan, report) read.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import networkx as nx

from archcost.trace.capture import CaptureResult
from archcost.trace.precision import ITEMSIZE, PrecisionPolicy

__all__ = ["SCHEMA_VERSION", "PHASES", "Totals", "summarize", "phase_flops"]

SCHEMA_VERSION = 1
PHASES = ("forward", "backward", "optimizer", "recompute")


@dataclass(frozen=True, slots=True)
class Totals:
    flops: dict[str, int]
    bytes_read: int
    bytes_written: int
    ops: int


def phase_flops(g: nx.DiGraph) -> dict[str, int]:
    """FLOPs per phase and in total, each op weighted by its ``count``."""
    out = dict.fromkeys(PHASES, 0)
    for _, d in g.nodes(data=True):
        out[d["phase"]] += d["flops"] * d["count"]
    out["total"] = sum(out[p] for p in PHASES)
    return out


def _ancestors(path: str) -> list[str]:
    """``a.b.c`` -> ``["a.b.c", "a.b", "a", ""]``."""
    parts = path.split(".") if path else []
    return [".".join(parts[:i]) for i in range(len(parts), -1, -1)]


def _module_table(g: nx.DiGraph, cap: CaptureResult) -> list[dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = defaultdict(
        lambda: {
            "flops": dict.fromkeys(PHASES, 0),
            "bytes": 0,
            "params": 0,
            "activations_saved": 0,
        }
    )
    for _, d in g.nodes(data=True):
        w = d["count"]
        for anc in _ancestors(d["module"]):
            row = rows[anc]
            row["flops"][d["phase"]] += d["flops"] * w
            row["bytes"] += (d["bytes_read"] + d["bytes_written"]) * w
    folded = _skipped_members(cap)
    for p in cap.params:
        if p.is_buffer:
            continue
        for anc in _ancestors(_fold(p.module, folded)):
            rows[anc]["params"] += p.numel
    for module, nbytes in cap.saved.items():
        for anc in _ancestors(module):
            rows[anc]["activations_saved"] += nbytes
    repeat_of = {rep: info["count"] for rep, info in cap.repeat_groups.items()}
    out = []
    for path, row in rows.items():
        total = sum(row["flops"].values())
        rep = max((c for r, c in repeat_of.items() if path == r or path.startswith(r + ".")), default=1)
        out.append(
            {
                "path": path,
                "class": cap.module_classes.get(path, ""),
                "depth": 0 if path == "" else path.count(".") + 1,
                "repeat": rep,
                "params": row["params"],
                "flops": {**row["flops"], "total": total},
                "bytes": row["bytes"],
                "activations_saved": row["activations_saved"],
            }
        )
    out.sort(key=lambda r: (r["depth"], -r["flops"]["total"], r["path"]))
    return out


def _skipped_members(cap: CaptureResult) -> dict[str, str]:
    """Member path -> representative path, for members whose cost the representative carries."""
    out = {}
    for rep, info in cap.repeat_groups.items():
        full = set(info.get("traced_in_full", ()))
        for member in info.get("member_paths", ()):
            if member != rep and member not in full:
                out[member] = rep
    return out


def _fold(module: str, folded: dict[str, str]) -> str:
    for member, rep in folded.items():
        if module == member or module.startswith(member + "."):
            return rep + module[len(member):]
    return module


def _op_class_table(g: nx.DiGraph) -> list[dict[str, Any]]:
    rows: dict[str, dict[str, int]] = defaultdict(
        lambda: {"flops": 0, "bytes_read": 0, "bytes_written": 0, "ops": 0}
    )
    for _, d in g.nodes(data=True):
        row = rows[d["op_class"]]
        w = d["count"]
        row["flops"] += d["flops"] * w
        row["bytes_read"] += d["bytes_read"] * w
        row["bytes_written"] += d["bytes_written"] * w
        row["ops"] += w
    total = sum(r["flops"] for r in rows.values()) or 1
    out = [
        {"class": cls, **row, "flops_share": row["flops"] / total} for cls, row in rows.items()
    ]
    out.sort(key=lambda r: (-r["flops"], r["class"]))
    return out


def _ops_without_rule(g: nx.DiGraph) -> list[dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for _, d in g.nodes(data=True):
        if d["has_rule"]:
            continue
        row = rows.setdefault(
            d["op"], {"op": d["op"], "occurrences": 0, "bytes_read": 0, "bytes_written": 0, "phases": []}
        )
        w = d["count"]
        row["occurrences"] += w
        row["bytes_read"] += d["bytes_read"] * w
        row["bytes_written"] += d["bytes_written"] * w
        if d["phase"] not in row["phases"]:
            row["phases"].append(d["phase"])
    return sorted(rows.values(), key=lambda r: (-(r["bytes_read"] + r["bytes_written"]), r["op"]))


def _assumed(cap: CaptureResult) -> dict[str, Any]:
    """``{"assumptions": ...}`` when the trace assumed values (routing, bounds) or fell back on
    a shape rule of its own; nothing for a model whose shapes never depended on values."""
    a = cap.assumptions
    if not a or not (a["routing"]["routers"] or a["bounds"] or a["fallbacks"]):
        return {}
    return {"assumptions": a}


def summarize(
    g: nx.DiGraph,
    cap: CaptureResult,
    policy: PrecisionPolicy,
    header: dict[str, Any],
) -> dict[str, Any]:
    """The analysis document (``schema_version`` 1)."""
    flops = phase_flops(g)
    bytes_read = sum(d["bytes_read"] * d["count"] for _, d in g.nodes(data=True))
    bytes_written = sum(d["bytes_written"] * d["count"] for _, d in g.nodes(data=True))
    params = [p for p in cap.params if not p.is_buffer]
    n_params = sum(p.numel for p in params)
    n_trainable = sum(p.numel for p in params if p.trainable)
    weights = sum(p.numel * ITEMSIZE.get(p.dtype, 4) for p in params)
    buffers = sum(p.numel * ITEMSIZE.get(p.dtype, 4) for p in cap.params if p.is_buffer)
    grads = n_trainable * ITEMSIZE[policy.grad_dtype]
    moved = bytes_read + bytes_written
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "analysis",
        **header,
        "capture": {
            "method": cap.method,
            "seconds": round(cap.seconds, 3),
            "ops_recorded": len(cap.records),
            "ops_executed": sum(d["count"] for _, d in g.nodes(data=True)),
            "repeated_blocks": {
                rep: {k: v for k, v in info.items() if k != "member_paths"}
                for rep, info in cap.repeat_groups.items()
            },
            "notes": list(cap.notes),
            **_assumed(cap),
        },
        "totals": {
            "params": n_params,
            "trainable_params": n_trainable,
            "frozen_params": n_params - n_trainable,
            "parameter_tensors": len(params),
            "buffer_tensors": sum(1 for p in cap.params if p.is_buffer),
            "flops": flops,
            "bytes": {"read": bytes_read, "written": bytes_written},
            "memory_bytes": {
                "weights": weights,
                "buffers": buffers,
                "gradients": grads,
                "optimizer_states": cap.optimizer_state_bytes + cap.master_weight_bytes,
                "master_weights": cap.master_weight_bytes,
                **({"lowp_state": cap.lowp_state_bytes} if policy.low_precision else {}),
                "activations_saved": sum(cap.saved.values()),
            },
            "arithmetic_intensity": flops["total"] / moved if moved else 0.0,
        },
        "modules": _module_table(g, cap),
        "op_classes": _op_class_table(g),
        "ops_without_rule": _ops_without_rule(g),
    }


def run_analysis(
    spec,
    batch_size: int,
    seq_len: int,
    policy: PrecisionPolicy,
    optimizer: str = "adamw",
    dedupe_repeats: bool = True,
    symbolic: bool = False,
    progress=None,
    recompute=None,
    gpu=None,
    solve: str | None = None,
    usable_memory: float = 0.9,
    attention_kernel: str | None = None,
    options=None,
    debug: bool = False,
    runtime=None,
):
    """Trace ``spec`` and return ``(document, traced)``.

    ``symbolic`` adds exact formulas in b and s (and the step time on ``gpu``, attention priced
    by ``attention_kernel``'s table where the profile has one, by default the runtime's
    kernel); ``solve`` answers "max b s.t. memory <= LIMIT" style queries (``capacity``: the
    ``usable_memory`` share of ``gpu``'s memory). ``runtime`` (a RuntimeProfile; default: the
    default runtime) says what selective recomputation saves and which optimizer kernel runs.
    ``options``: the trace's assumptions where values are unknown
    (:class:`~archcost.trace.CaptureOptions`), used by every trace of the analysis.
    """
    from functools import partial

    from archcost.runtime import load_runtime
    from archcost.trace import Recompute
    from archcost.trace import trace_model as _trace

    trace_model = partial(_trace, options=options, debug=debug)
    recompute = recompute or Recompute.NONE
    runtime = runtime or load_runtime()
    traced_opt = runtime.traced_optimizer(optimizer)
    sel = runtime.selective_recompute
    query = None
    if solve:
        from archcost.solve import parse_query

        query = parse_query(solve, gpu.mem_bytes * usable_memory if gpu is not None else None)
    traced = trace_model(spec, batch_size, seq_len, policy, traced_opt, dedupe_repeats, progress,
                         recompute=recompute, selective=sel)
    header = {
        "model": {
            "name": spec.name,
            "file": spec.path.name,
            "builder": spec.builder_name,
            "config": spec.model_config(batch_size, seq_len),
        },
        "workload": {
            "batch_size": batch_size,
            "seq_len": seq_len,
            "precision": policy.precision.value,
            **({"fp8_recipe": policy.fp8_recipe.value} if policy.fp8_recipe else {}),
            "fp32_grads": policy.fp32_grads,
            "optimizer": optimizer,
            "recompute": recompute.value,
            "runtime": runtime.name,
        },
    }
    doc = summarize(traced.graph, traced.capture, policy, header)
    sym = None
    if symbolic or query is not None:
        sym = symbolic_formulas(spec, seq_len, policy, optimizer, progress, recompute, gpu,
                                reference=traced.graph, runtime=runtime,
                                attention_kernel=attention_kernel, options=options)
        fitted = sym.pop("_fitted")
        if symbolic:
            doc["symbolic"] = sym
    if query is not None:
        from archcost.solve import solve_max

        fixed = seq_len if query.variable == "b" else batch_size

        def exact_peak(v: int) -> int:
            b, s = (v, fixed) if query.variable == "b" else (fixed, v)
            if progress:
                progress(f"checking {query.variable}={v} by tracing")
            t = trace_model(spec, b, s, policy, traced_opt, recompute=recompute, selective=sel)
            from archcost.cost.memory import peak_memory

            return peak_memory(t.graph, persistent_bytes(t.capture),
                               runtime.fusions).peak_bytes

        best = solve_max(query, fixed, fitted["peak_memory_bytes"].expr, exact_peak)
        doc["solve"] = {
            "query": solve,
            "variable": query.variable,
            "limit_bytes": query.limit_bytes,
            "fixed": {"s" if query.variable == "b" else "b": fixed},
            "max": best,
            "peak_memory_bytes_at_max": exact_peak(best),
            "method": "fitted peak-memory polynomial, confirmed by tracing the answer and the "
                      "next size" if fitted["peak_memory_bytes"].expr is not None
                      else "search by tracing",
        }
    return doc, traced


def persistent_bytes(cap: CaptureResult) -> int:
    """Weights, buffers, optimizer states, master weights and low-precision state (weight
    caches, scales, amax histories): live the whole step."""
    model = sum(p.numel * ITEMSIZE.get(p.dtype, 4) for p in cap.params)
    return model + cap.optimizer_state_bytes + cap.master_weight_bytes + cap.lowp_state_bytes


def symbolic_formulas(spec, seq_len: int, policy: PrecisionPolicy, optimizer: str, progress=None,
                      recompute=None, gpu=None, reference=None, runtime=None,
                      attention_kernel: str | None = None, options=None):
    """Exact polynomials in b and s (FLOPs per phase, bytes, saved activations, peak memory);
    with ``gpu`` also the piecewise step time (as ``runtime`` executes the graph, attention by
    ``attention_kernel``, by default the runtime's kernel)."""
    from archcost.cost.memory import live_bytes_exact
    from archcost.runtime import load_runtime
    from archcost.solve import measure_point, peak_document, step_time_expression
    from archcost.trace import Recompute, trace_model
    from archcost.trace.symbolic import fit_peak, fit_samples, sample_points, verify_pieces

    recompute = recompute or Recompute.NONE
    runtime = runtime or load_runtime()

    def trace_at(b: int, s: int, why: str):
        if progress:
            progress(f"{why}: tracing b={b} s={s}")
        t = trace_model(spec, b, s, policy, runtime.traced_optimizer(optimizer),
                        recompute=recompute, selective=runtime.selective_recompute,
                        options=options)
        return t, live_bytes_exact(t.graph, persistent_bytes(t.capture), runtime.fusions)

    fit, check = sample_points(seq_len)
    samples, timelines = {}, {}
    for p in fit + check:
        t, timelines[p] = trace_at(*p, "fitting formulas")
        samples[p] = measure_point(t, persistent_bytes(t.capture))
    fitted = fit_samples(samples, fit, check)
    peak = verify_pieces(fit_peak(timelines, fit, check, seq_len),
                         lambda b: max(trace_at(b, seq_len, "checking a breakpoint")[1]))
    fitted["peak_memory_bytes"] = peak
    formulas = {k: (None if f.expr is None else str(f.expr))
                for k, f in fitted.items() if not k.startswith("class:")}
    out = {
        "variables": {"b": "batch size (sequences)", "s": "sequence length (tokens)"},
        "formulas": formulas,
        "method": (f"exact fit over traces at {len(fit)} sizes, verified at {len(check)} more "
                   f"(up to b={max(b for b, _ in check)})"),
        "peak_memory": peak_document(peak),
        "_fitted": fitted,
    }
    if gpu is not None:
        from archcost.cost.compute import (
            PEAK_KEY,
            TENSOR_CORE_CLASSES,
            class_roofline_parts,
            lower,
            runtime_attention_kernel,
        )
        from archcost.cost.fusion import executed_graph

        ref_parts = class_roofline_parts(lower(executed_graph(reference, runtime)), gpu,
                                         attention_kernel
                                         or runtime_attention_kernel(gpu, runtime))
        classes = {k.split(":")[1] for k in fitted if k.startswith("class:")}
        terms = {}
        ok = True
        for c in sorted(classes):
            parts = {q: fitted[f"class:{c}:{q}"].expr for q in ("flops", "bytes", "ops")}
            if any(v is None for v in parts.values()):
                ok = False
                break
            rp = ref_parts.get(c, {"compute_s": 0.0, "memory_s": 0.0})
            ref_flops = sum(d["flops"] * d["count"] for _, d in reference.nodes(data=True)
                            if d["op_class"] == c)
            ref_bytes = sum((d["bytes_read"] + d["bytes_written"]) * d["count"]
                            for _, d in reference.nodes(data=True) if d["op_class"] == c)
            key = PEAK_KEY.get(policy.compute_dtype, "fp32") if c in TENSOR_CORE_CLASSES else "fp32"
            peak = gpu.peak_flops_per_s.get(key) or gpu.peak_flops_per_s["fp32"]
            terms[c] = {
                **parts,
                "compute_eff": ref_flops / (peak * rp["compute_s"]) if rp["compute_s"] else 1.0,
                "memory_eff": (ref_bytes / (gpu.mem_bw_bytes_per_s * rp["memory_s"])
                               if rp["memory_s"] else 1.0),
            }
        if ok:
            expr = step_time_expression(terms, gpu, policy.compute_dtype)
            out["formulas"]["step_time_s"] = str(expr)
            out["step_time_note"] = ("one roofline Max per op class; each class's effective "
                                     f"efficiency measured at the analysed size on {gpu.name}")
    return out
