"""The cost rules applied to real calls: which aten ops a piece of eager code runs and the
FLOPs and bytes the tracer would give each of them.

Calibration measures ops and small workloads on this machine; it needs their size in the same
units the cost engine later divides by (the rules of ``trace/rules*.py``), or a measured rate
would not reproduce the measured time. This module records the calls with the tracer's own
recorder and prices them with :func:`archcost.trace.rules.op_cost`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from archcost.trace.recorder import CaptureState, Recorder
from archcost.trace.repeats import RepeatTracker
from archcost.trace.rules import op_cost

__all__ = ["ProbedOp", "probe"]


@dataclass(frozen=True, slots=True)
class ProbedOp:
    op: str  # packet name, e.g. "aten.gelu"
    op_class: str  # trace.records.OpClass value
    flops: int
    nbytes: int  # read + written

    @property
    def charged(self) -> bool:
        """Whether the cost engine gives this op time (views and metadata ops take none)."""
        return self.flops > 0 or self.nbytes > 0


def probe(fn: Callable[[], Any]) -> tuple[Any, list[ProbedOp]]:
    """Run ``fn`` for real and return its result and the ops it dispatched, priced."""
    state = CaptureState(RepeatTracker.empty())
    with Recorder(state):
        out = fn()
    ops = []
    for rec in state.records:
        c = op_cost(rec)
        ops.append(ProbedOp(rec.op, c.op_class.value, c.flops, c.bytes_read + c.bytes_written))
    return out, ops
