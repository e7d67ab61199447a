"""Storage S: model states and peak memory from a liveness pass over the executed schedule.

Persistent memory (live the whole step): weights, buffers, optimizer states and fp32 master
weights, as measured by the capture. Every other tensor is allocated when its producing op runs
and freed after its last consumer (edges of the operator graph); views allocate nothing.
Gradients are live from the op that produces them in backward to the end of the step
(``optimizer.zero_grad(set_to_none=True)`` after ``step()``); the model's outputs and the loss
are held by the training loop until backward is over.

Repeated blocks are traced once: a tensor of a block that stays live past its own phase (saved
activations, weight gradients) exists once per layer at the same time and is weighted by the
block's count; a tensor that dies within its phase exists one layer at a time and is weighted 1.
NB: this makes the end of forward exact and slightly overstates the middle of backward, where a
real run has freed the saved tensors of the layers already done.

A runtime's fused kernels save their own set for backward in place of the eager ops'
intermediates (``cost.fused_saves``): ``fusions`` says which families are fused.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import numpy as np

from archcost.cost.fused_saves import saved_graph
from archcost.cost.kernels import liveness_peak

__all__ = ["PeakMemory", "peak_memory", "liveness_arrays", "live_bytes_exact", "model_state_bytes",
           "zero3_buffer_bytes"]

# optimizer-phase allocations that are the optimizer's own persistent state (counted in base)
_STATE_OPS = frozenset({"aten.zeros_like", "aten.zeros", "aten.empty_like", "aten.lift_fresh"})


@dataclass(frozen=True)
class PeakMemory:
    peak_bytes: int
    peak_index: int  # execution index of the op at which memory peaks
    peak_phase: str
    peak_module: str
    persistent_bytes: int
    activations_at_peak: int
    timeline: np.ndarray  # live bytes after each op, in execution order


def _allocates(d: dict) -> bool:
    """An op whose output takes memory of its own in the liveness pass (not a view, not an
    optimizer state counted with the persistent bytes)."""
    return d["out_bytes"] > 0 and not (d["phase"] == "optimizer" and d["op"] in _STATE_OPS)


def liveness_arrays(g: nx.DiGraph):
    """(alloc_step, last_step, nbytes, weight, order) over the graph in execution order.

    An allocation lives until the last op that reads its storage through any view or
    in-place result (``uses_storage_of``).
    """
    order = sorted(g.nodes, key=lambda n: g.nodes[n]["index"])
    step = {n: i for i, n in enumerate(order)}
    readers: dict[int, list[int]] = {}
    held: set[int] = set()  # allocations the caller holds (through views too)
    for n in order:
        d = g.nodes[n]
        for owner in d.get("uses_storage_of", ()):
            readers.setdefault(owner, []).append(n)
        if d.get("held_by_caller"):
            held.add(n)
            if d["out_bytes"] <= 0:
                held.update(d.get("uses_storage_of", ()))
    last_backward = max((step[n] for n in order if g.nodes[n]["phase"] == "backward"),
                        default=len(order) - 1)
    alloc, last, size, weight = [], [], [], []
    for n in order:
        d = g.nodes[n]
        if not _allocates(d):
            continue
        users = readers.get(n, [])
        end = max((step[u] for u in users), default=step[n])
        phases = {g.nodes[u]["phase"] for u in users}
        if d["phase"] == "backward" and "optimizer" in phases:
            end = len(order) - 1  # a gradient: freed by zero_grad(set_to_none) after the step
        if n in held:
            end = max(end, last_backward)  # the model's output and the loss: held until backward is over
        crosses = any(p != d["phase"] for p in phases)
        alloc.append(step[n])
        last.append(end)
        size.append(d["out_bytes"])
        weight.append(d["count"] if crosses else 1)
    return (
        np.array(alloc, dtype=np.int64),
        np.array(last, dtype=np.int64),
        np.array(size, dtype=np.float64),
        np.array(weight, dtype=np.float64),
        order,
    )


def live_bytes_exact(g: nx.DiGraph, persistent_bytes: int, fusions=()) -> list[int]:
    """Live bytes after each op in execution order, as ``peak_memory``'s timeline, in Python
    integers: exact at any size (float64 is exact only below 2**53 bytes, about 9 PB, which a
    batch of 65536 long sequences passes). The symbolic fits read it."""
    g = saved_graph(g, fusions)
    alloc, last, _, weight, order = liveness_arrays(g)
    sizes = [int(g.nodes[n]["out_bytes"]) for n in order if _allocates(g.nodes[n])]
    delta = [0] * (len(order) + 1)
    for a, e, size, w in zip(alloc.tolist(), last.tolist(), sizes, weight.tolist(), strict=True):
        delta[a] += size * int(w)
        delta[max(e, a) + 1] -= size * int(w)
    live, cur = [], int(persistent_bytes)
    for d in delta[:-1]:
        cur += d
        live.append(cur)
    return live


def peak_memory(g: nx.DiGraph, persistent_bytes: int, fusions=()) -> PeakMemory:
    """The liveness peak of ``g`` on top of ``persistent_bytes``, the tensors saved for
    backward those of the kernels a runtime fusing ``fusions`` runs (``cost.fused_saves``)."""
    g = saved_graph(g, fusions)
    alloc, last, size, weight, order = liveness_arrays(g)
    peak, at, live = liveness_peak(alloc, last, size, weight, len(order), float(persistent_bytes))
    node = g.nodes[order[at]] if order else {"index": 0, "phase": "", "module": ""}
    return PeakMemory(
        peak_bytes=int(round(peak)),
        peak_index=int(node["index"]),
        peak_phase=node["phase"],
        peak_module=node["module"],
        persistent_bytes=int(persistent_bytes),
        activations_at_peak=int(round(peak)) - int(persistent_bytes),
        timeline=live,
    )


def model_state_bytes(
    n_params: int, weight_bytes: int, grad_bytes: int, optimizer_bytes: int, zero_stage: int,
    dp: int,
) -> dict[str, float]:
    """Per-GPU weights, gradients and optimizer states under ZeRO stage 0-3 over ``dp`` ranks.

    ``*_bytes`` are bytes per parameter (mixed-precision Adam: 2, 2, 12). Stage 1 shards the
    optimizer states, stage 2 also the gradients, stage 3 also the weights (Rajbhandari et al.
    2020, Sec. 5: 4N + 12N/d, 2N + 14N/d and 16N/d for 2/2/12 bytes per parameter).
    """
    if zero_stage not in (0, 1, 2, 3):
        raise ValueError(f"ZeRO stage {zero_stage} is not one of 0, 1, 2, 3")
    shard = [1, 1, 1]  # divisors of weights, gradients, optimizer states
    for level in range(1, zero_stage + 1):
        shard[3 - level] = dp
    return {
        "weights": n_params * weight_bytes / shard[0],
        "gradients": n_params * grad_bytes / shard[1],
        "optimizer_states": n_params * optimizer_bytes / shard[2],
    }


def zero3_buffer_bytes(block_params: float, outside_params: float, weight_bytes: float,
                       grad_bytes: float) -> float:
    """Per-GPU bytes of the unsharded buffers ZeRO-3 / FSDP holds at the peak of backward, for
    blocks of ``block_params`` parameters and ``outside_params`` parameters outside the blocks
    on this GPU (embedding, final norm, head; each this GPU's tensor-parallel share).

    PyTorch FSDP2 (torch/distributed/fsdp/_fully_shard/_fsdp_param_group.py,
    _fsdp_collectives.py), one unit per block and the root unit for the rest, as torchtitan
    wraps a model (``fully_shard`` per transformer block, then on the whole model):
    - in backward the block being differentiated is all-gathered and the next one is
      prefetched (2 x weight_bytes); the block's gradients are produced unsharded in the
      compute dtype (weight_bytes); the previous block's reduce-scatter input, in the reduce
      dtype (``grad_bytes``: bytes per parameter of the runtime's gradient reduction, fp32 for
      torchtitan), is held until that reduce-scatter is done, which overlaps this block's
      backward (``ReduceScatterState``);
    - the root unit is gathered before the forward's first op and before the head's backward
      and is resharded only after its own post-backward, when the embedding's gradient is
      done: its parameters and their unsharded gradients stay through backward
      (2 x weight_bytes).
    NB: the all-gather output and the unsharded parameters copied out of it overlap briefly
    during the copy-out; not counted. The embedding's gradient appears at the end of backward,
    after the activations are freed; counted at the peak all the same (an overstatement of at
    most the embedding's size).
    """
    return block_params * (3.0 * weight_bytes + grad_bytes) + outside_params * 2.0 * weight_bytes
