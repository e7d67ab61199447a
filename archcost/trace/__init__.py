"""Tracing: model file -> one training step on fake tensors -> operator graph."""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from archcost.loader import ModelSpec
from archcost.runtime import SelectiveRecompute
from archcost.trace.assume import CaptureOptions
from archcost.trace.capture import CaptureResult, capture_step
from archcost.trace.graph import build_graph
from archcost.trace.precision import PrecisionPolicy
from archcost.trace.recompute import Recompute

__all__ = ["CaptureOptions", "Traced", "trace_model", "Recompute"]


@dataclass
class Traced:
    graph: nx.DiGraph
    capture: CaptureResult


def trace_model(
    spec: ModelSpec,
    batch_size: int,
    seq_len: int,
    policy: PrecisionPolicy,
    optimizer: str = "adamw",
    dedupe_repeats: bool = True,
    progress=None,
    recompute: Recompute = Recompute.NONE,
    options: CaptureOptions | None = None,
    debug: bool = False,
    selective: SelectiveRecompute = SelectiveRecompute.ATTENTION_CORE,
) -> Traced:
    """Trace one training step; ``options``: the assumptions where values are unknown and the
    watchdog's limit (defaults: :class:`CaptureOptions`)."""
    cap = capture_step(spec, batch_size, seq_len, policy, optimizer, dedupe_repeats, progress,
                       recompute=recompute, options=options, debug=debug, selective=selective)
    attrs = {
        "model": spec.name,
        "batch_size": batch_size,
        "seq_len": seq_len,
        "precision": policy.precision.value,
        "optimizer": optimizer,
        "recompute": recompute.value,
        "selective_recompute": selective.value,
        "capture_method": cap.method,
        "module_classes": dict(cap.module_classes),  # what fusion families key on
    }
    return Traced(build_graph(cap.records, attrs), cap)
