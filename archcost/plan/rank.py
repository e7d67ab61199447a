"""Ranking priced plans: the best plan lies on the Pareto front by construction, and plans the
model cannot tell apart go to more memory headroom and fewer moving parts.

Each rank is picked from the plans not yet ranked by ``pick``:

1. keep the plans no other remaining plan dominates on ``points`` (step time, memory per GPU,
   GPUs, and the objective when it is not the step time; lower is better);
2. keep those whose objective is within ``OBJECTIVE_TIE`` of the least (relative);
3. keep those on the fewest GPUs;
4. keep those whose memory per GPU is within ``MEMORY_TIE`` of the device memory of the least
   (the most headroom);
5. take the one with the fewest moving parts (``moving_parts``), then the lower objective, the
   lower memory, and the plan text (so the order never depends on enumeration order).

Step 1 alone puts the best plan on the front: the objective-best plan is never dominated (a
plan that dominates it is at least as good on every figure, the objective included), so step 1
never empties the set, and whatever steps 2-5 choose is undominated.

``OBJECTIVE_TIE`` (1%): the screening kernel and the simulated pipeline, two evaluations of the
same plan by the same model, differ by up to 0.77% over the plans within 5% of the fastest in
the README's plan searches (Llama-3 70B on 64 H100s 0.53%, Mixtral 8x7B on 256 0.77%; measured
by ``benchmarks/plan_ties.py``, BENCHMARKS.md): the model does not resolve smaller differences.
``MEMORY_TIE`` (1% of the device's memory): what the model leaves to the usable-memory margin
differs between plans by about as much; NB: each NCCL communicator holds NCCL_BUFFSIZE (default
4 MiB, NCCL user guide, Environment Variables) per channel and peer, hundreds of MiB per group,
and plans with more parallel dimensions create more groups.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from archcost.options import Recompute
from archcost.plan.space import DEFAULT_PLACEMENT, Offload, Plan, Schedule

__all__ = ["OBJECTIVE_TIE", "MEMORY_TIE", "MOVING_PARTS", "moving_parts", "undominated", "pick",
           "rank"]

OBJECTIVE_TIE = 0.01
MEMORY_TIE = 0.01

# what each position of ``moving_parts`` counts, most disruptive first (documented in README)
MOVING_PARTS = ("offload", "recompute", "cp", "pp", "vpp", "zero", "hybrid_shard", "tp", "sp",
                "ep", "schedule", "placement")
_RECOMPUTE = {Recompute.NONE: 0, Recompute.SELECTIVE: 1, Recompute.FULL: 2}
_SCHEDULE = {Schedule.ONE_F_ONE_B: 0, Schedule.INTERLEAVED: 0, Schedule.GPIPE: 1}


def moving_parts(plan: Plan) -> tuple[int, ...]:
    """Lexicographic count of what a plan adds to plain data parallelism, per ``MOVING_PARTS``:
    offload, recomputation, context-parallel ranks (so dp goes before cp), pipeline stages and
    virtual stages, ZeRO stage and hybrid sharding, tensor-parallel ranks and sequence
    parallelism, expert-parallel ranks, a schedule other than 1F1B, a non-default placement."""
    return (int(plan.offload is not Offload.NONE), _RECOMPUTE[plan.recompute], plan.cp, plan.pp,
            plan.vpp, int(plan.zero), int(plan.hybrid_shard), plan.tp, int(plan.sp), plan.ep,
            _SCHEDULE[plan.schedule], int(plan.placement != DEFAULT_PLACEMENT))


def undominated(points: np.ndarray) -> np.ndarray:
    """Boolean mask of the rows of ``points`` ([n, d], lower is better) that no other row
    dominates (no larger anywhere, smaller somewhere). Equal rows do not dominate each other."""
    p = np.asarray(points, dtype=np.float64)
    if not len(p):
        return np.zeros(0, dtype=bool)
    le = np.all(p[:, None, :] <= p[None, :, :], axis=2)  # le[j, i]: row j <= row i everywhere
    lt = np.any(p[:, None, :] < p[None, :, :], axis=2)
    return ~np.any(le & lt, axis=0)


def pick(points: np.ndarray, objective: np.ndarray, gpus: np.ndarray, memory: np.ndarray,
         parts: Sequence[tuple[int, ...]], names: Sequence[str], device_bytes: float) -> int:
    """Index of the plan the rules in the module docstring choose among all rows."""
    objective = np.asarray(objective, dtype=np.float64)
    memory = np.asarray(memory, dtype=np.float64)
    gpus = np.asarray(gpus)
    keep = np.flatnonzero(undominated(points))
    best = objective[keep].min()
    keep = keep[objective[keep] <= best + OBJECTIVE_TIE * abs(best)]
    keep = keep[gpus[keep] == gpus[keep].min()]
    keep = keep[memory[keep] <= memory[keep].min() + MEMORY_TIE * device_bytes]
    return int(min(keep, key=lambda i: (parts[i], objective[i], memory[i], names[i])))


def rank(points: np.ndarray, objective: np.ndarray, gpus: np.ndarray, memory: np.ndarray,
         parts: Sequence[tuple[int, ...]], names: Sequence[str], device_bytes: float,
         top: int | None = None) -> list[int]:
    """Row indices, best first: each rank is ``pick`` among the rows not yet ranked."""
    left = list(range(len(objective)))
    out: list[int] = []
    while left and (top is None or len(out) < top):
        sub = np.array(left)
        j = pick(np.asarray(points)[sub], np.asarray(objective)[sub], np.asarray(gpus)[sub],
                 np.asarray(memory)[sub], [parts[i] for i in sub], [names[i] for i in sub],
                 device_bytes)
        out.append(left.pop(j))
    return out
