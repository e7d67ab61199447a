"""What a fused kernel keeps for backward in place of the eager ops' intermediates.

The trace records what autograd saves for each eager aten op. A runtime that fuses a family
(``runtime.Fusion``) runs the group as one kernel whose autograd function saves its own set:
a tensor made inside the group and read outside it in forward only by the group's members
(an *intermediate*) never reaches memory, so what the members' backward read of it is replaced
by what the fused kernel saves. The group's outputs (read by kernels outside it, which save them
for their own backward) stay as traced. Per family, from the fused kernels' code:

- ``norm``: its input and per-row statistics in fp32, one value per row for RMSNorm (rstd),
  two for LayerNorm (mean, rstd). TransformerEngine@5c62f7283a651b682648ee44d46831d232eef04a:
  transformer_engine/pytorch/module/rmsnorm.py ``_RMSNorm.forward``:
  ``ctx.save_for_backward(inputmat, rmsnorm_weight, rsigma)``;
  TransformerEngine@89d4ffb8d278e0b208950eeeda10e0bb38ed3ad8:
  transformer_engine/pytorch/module/layernorm.py ``_LayerNorm.forward`` saves the input,
  the weight, ``mu`` and ``rsigma``.
- ``activation``: its input. Megatron-LM@b1030e9ddf05d9b3de7a48dcc8e0e8ee7ed31af5:
  megatron/core/fusions/fused_bias_swiglu.py ``SwiGLUFunction.forward``:
  ``ctx.save_for_backward(input)``; Megatron-LM@bae83e49859cb2245344fcb063416cbe203c5972:
  megatron/core/fusions/fused_bias_gelu.py ``GeLUFunction`` saves its input and bias.
- ``softmax``: its output only (an output of the group: kept as traced).
  Megatron-LM@550f9c44589efb85af6c5a11da8fbc8c3491b636: megatron/core/fusions/fused_softmax.py
  ``ScaledUpperTriangMaskedSoftmax.forward``: ``ctx.save_for_backward(softmax_results,
  scale_t)``.
- ``rope``: the position table only, not the rotated tensors (rotation is linear).
  TransformerEngine@61fa1f95c37f247d26b1ae5ec48fcb511c31ebf4:
  transformer_engine/pytorch/attention/rope.py ``FusedRoPEFunc.forward``:
  ``ctx.save_for_backward(freqs, cu_seqlens)``. NB: a table made inside the group (one row of
  head-dim values per position) is dropped with the other intermediates.
- ``dropout``, ``residual``: the dropout mask, one byte per element (CUDA ``native_dropout``
  returns a bool mask; Megatron-LM@5ee2820a8f8fcbc48a0b88277638fd48a233fb47:
  megatron/core/fusions/fused_bias_dropout.py calls ``torch.nn.functional.dropout``).

``elementwise`` (torch.compile) has no rule: Inductor's partitioner chooses what to save from
the whole block's graph, not per kernel; its saves stay the trace's.

In the liveness pass (``saved_graph``) a replaced intermediate dies at its last forward reader;
the first of a group's replaced intermediates becomes the kernel's statistics (its bytes those
of the statistics, none when the kernel keeps none: a fused kernel writes no intermediate) and
keeps its backward readers; the group's inputs, where the kernel keeps them, live until the
last backward reader of what was replaced, held once per kernel that keeps them (a repeated
layer's norm keeps each layer's input, which a trace of one layer made once, before it).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import networkx as nx

from archcost.cost.fusion import _groups, _tags
from archcost.runtime import Fusion

__all__ = ["FusedSaves", "fused_saves", "saved_graph", "apply_saves"]

_FP32 = 4


@dataclass(frozen=True)
class _Rule:
    inputs: bool  # the kernel keeps the group's inputs
    row_stats: int  # fp32 values per row of the group's output (normalized rows)
    mask_bytes: int  # bytes per element of the largest replaced tensor (a dropout mask)


# family key (fusion._tags' first element) -> what the fused kernel saves (sources above)
_RULES = {
    "norm-rms": _Rule(inputs=True, row_stats=1, mask_bytes=0),
    "norm": _Rule(inputs=True, row_stats=2, mask_bytes=0),
    "activation": _Rule(inputs=True, row_stats=0, mask_bytes=0),
    "softmax": _Rule(inputs=False, row_stats=0, mask_bytes=0),
    "rope": _Rule(inputs=False, row_stats=0, mask_bytes=0),
    "dropout": _Rule(inputs=False, row_stats=0, mask_bytes=1),
}


@dataclass(frozen=True)
class FusedSaves:
    """How the saved set changes: ``bytes`` (allocation node -> bytes it now holds: the
    kernel's statistics, 0 where it is no longer saved), ``released`` (node -> the backward
    readers that no longer read it), ``kept`` (input allocation node -> the backward reader
    that now reads it last)."""

    bytes: dict[int, int]
    released: dict[int, tuple[int, ...]]
    kept: dict[int, int]
    # kept inputs: held once per kernel that keeps one (the reader's count: a repeated layer
    # keeps its own input in each layer, though the trace made that input once, before the
    # layer), or as often as they were already held for backward, if more
    counts: dict[int, int] = dataclasses.field(default_factory=dict)


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _rule(g: nx.DiGraph, key: tuple, module: str) -> _Rule | None:
    family = key[0]
    if family == "norm":
        cls = g.graph.get("module_classes", {}).get(module, "")
        return _RULES["norm-rms"] if "RMS" in cls.upper() else _RULES["norm"]
    return _RULES.get(family)


def fused_saves(g: nx.DiGraph, fusions=()) -> FusedSaves:
    """What changes in ``g``'s saved tensors when a runtime fuses ``fusions``."""
    fusions = frozenset(Fusion(f) for f in fusions)
    out = FusedSaves({}, {}, {}, {})
    if not fusions or Fusion.ELEMENTWISE in fusions:
        return out
    readers: dict[int, list[int]] = {}
    for n, d in g.nodes(data=True):
        for owner in d.get("uses_storage_of", ()):
            if owner != n:
                readers.setdefault(owner, []).append(n)
    tags = _tags(g, fusions)
    for members in _groups(g, tags):
        head = g.nodes[members[0]]
        phase = head["phase"]
        if len(members) < 2 or phase not in ("forward", "recompute"):
            continue
        rule = _rule(g, tags[members[0]], head["module"])
        if rule is None:
            continue
        inside = set(members)
        owners = set(members)
        for m in members:
            owners.update(g.nodes[m].get("uses_storage_of", ()))
        replaced, inputs = [], set()
        for a in sorted(owners, key=lambda v: g.nodes[v]["index"]):
            d = g.nodes[a]
            if d["out_bytes"] <= 0 or d["phase"] != phase or d.get("held_by_caller"):
                continue
            users = readers.get(a, [])
            same = [u for u in users if g.nodes[u]["phase"] == phase]
            later = [u for u in users if g.nodes[u]["phase"] != phase]
            made_here = a in inside or (d["bytes_read"] == 0 and bool(same))
            if made_here and all(u in inside for u in same):
                if later:
                    replaced.append((a, later))
            elif a not in inside:
                inputs.add(a)
        if not replaced:
            continue
        out_shape = g.nodes[members[-1]]["out_shapes"]
        shape = out_shape[0] if out_shape and out_shape[0] else [1]
        stats = rule.row_stats * _FP32 * (_numel(shape) // max(1, int(shape[-1])))
        stats += rule.mask_bytes * max(_numel(g.nodes[a]["out_shapes"][0])
                                       for a, _ in replaced if g.nodes[a]["out_shapes"])
        last = max((u for _, later in replaced for u in later), key=lambda v: g.nodes[v]["index"])
        for i, (a, later) in enumerate(replaced):
            if i == 0 and stats > 0:
                out.bytes[a] = stats
            else:
                out.bytes[a] = 0
                out.released[a] = tuple(later)
        if rule.inputs:
            for a in inputs:
                prev = out.kept.get(a)
                if prev is None or g.nodes[last]["index"] > g.nodes[prev]["index"]:
                    out.kept[a] = last
                saved = any(g.nodes[u]["phase"] != g.nodes[a]["phase"] for u in readers.get(a, ()))
                floor = int(g.nodes[a]["count"]) if saved else 0
                out.counts[a] = max(out.counts.get(a, floor), int(g.nodes[last]["count"]))
    return out


def saved_graph(g: nx.DiGraph, fusions=()) -> nx.DiGraph:
    """``g`` whose storage reads and allocation sizes are those of the fused kernels' saves
    under ``fusions`` (``g`` itself when nothing changes): what the liveness pass reads."""
    return apply_saves(g, fused_saves(g, fusions))


def apply_saves(g: nx.DiGraph, saves: FusedSaves) -> nx.DiGraph:
    """``g`` with ``saves`` applied (``g`` itself when they change nothing)."""
    if not saves.bytes and not saves.kept:
        return g
    out = g.copy()
    for a, nbytes in saves.bytes.items():
        out.nodes[a]["out_bytes"] = nbytes
    for a, users in saves.released.items():
        for u in users:
            d = out.nodes[u]
            d["uses_storage_of"] = [o for o in d["uses_storage_of"] if o != a]
    for a, n in saves.counts.items():
        out.nodes[a]["count"] = n
    for a, u in saves.kept.items():
        d = out.nodes[u]
        if a not in d["uses_storage_of"]:
            d["uses_storage_of"] = sorted([*d["uses_storage_of"], a])
    return out
