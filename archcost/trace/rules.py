"""FLOPs, bytes and class of one aten op: a pure function of the shapes in its :class:`OpRecord`.

One rule per op packet (``"aten.mm"``), registered by decorator with
:func:`~archcost.trace.rules_base.register` (a duplicate raises), in the manner of
``torch.utils.flop_counter`` (``register_flop_formula``). The rules live in topic modules:
``rules_matmul`` (matrix products, convolutions), ``rules_lowp`` (scaled low-precision GEMMs,
casts and amax reductions), ``rules_attention`` (fused attention),
``rules_pointwise`` (elementwise, ``_foreach_*``, fused optimizers), ``rules_reduce`` (norms,
reductions, softmax, losses, pooling) and ``rules_memory`` (views, copies, gathers, scatters).
No module imports torch. Sources: torch 2.13 ``torch/utils/flop_counter.py`` and the aten
schemas; /work/shared/REFERENCES.md, "Known traps of FLOP counting".

FLOP conventions
- A multiply-add is 2 FLOPs (``2*M*N*K`` per matrix product), as FlopCounterMode; NB: not
  ``2K - 1``. Bias adds are not counted (addmm, baddbmm, convolution bias, the grad_bias of
  convolution_backward), so the MATMUL and CONV classes equal FlopCounterMode exactly.
- Convolution: FlopCounterMode's ``conv_flop_count`` (transposed convs use the input's spatial
  extent; groups enter through the weight shape); ``convolution_backward`` counts grad_input and
  grad_weight only where ``output_mask`` asks for them.
- Attention: forward ``4*B*Hq*Sq*Sk*D`` (QK^T and PV; Dq and Dv apart when they differ), backward
  ``2*B*Hq*Sq*Sk*(3*Dq + 2*Dv)`` = 2.5x forward, as FlopCounterMode; query heads count under GQA.
  Causal attention counts HALF (flash-attention's convention; FlopCounterMode counts it in full,
  and has no formula at all for the CPU flash kernel). NB: masks given as tensors count in full.
- Elementwise: output elements x a per-element cost, one per arithmetic step with scalar
  multipliers folded in: 1 for arithmetic, comparison, selection, sqrt/rsqrt/reciprocal/pow;
  addcmul/addcdiv/lerp 2; NB: 4 per transcendental function (exp, log, tanh, erf, ...), and
  composites add their parts (sigmoid 6, silu 7, gelu 7, gelu_backward 14); dropout 3.
- ``_foreach_*`` ops (matched by prefix, so the whole family has a rule): the base op's cost x
  the elements of the first tensor-list argument. Fused optimizers per parameter element, the
  same steps as torch's foreach implementation: Adam/AdamW 10 (+1 weight decay, +1 amsgrad),
  SGD 1 (+2 momentum, +1 Nesterov, +1 decay), Adagrad 7 (+1 decay). NB: operation counts, not
  any one kernel's instructions.
- Norms, reductions, softmax, losses, pooling: a small constant per element, listed in
  ``rules_reduce``; softmax is class REDUCTION.
- Gathers (embedding, index_select, gather) 0 FLOPs; scatter-adds (embedding_dense_backward,
  index_add, scatter_add, index_put with accumulate) one add per source element; class EMBEDDING.
- Views, copies, factories: 0 FLOPs, class DATA_MOVEMENT.
- An op without a rule: ``has_rule=False``, 0 FLOPs, class OTHER, bytes by the default
  convention; callers must list it, never treat it as free.

Byte conventions (per occurrence; the caller multiplies by ``OpRecord.count``)
- Read: the nbytes of the op's distinct input tensors (deduplicated by ``TensorMeta.tid``;
  ``out=`` results are not read). NB: a broadcast (expanded) input counts its full logical size.
- Written: the nbytes of outputs that are neither views nor aliases of an input's storage.
- In place (packet name ending in ``_``, ``aten.add_``, ``aten._foreach_mul_``): the mutated
  first argument (or the sum over its list) is written; in-place foreach ops return nothing, so
  this comes from ``args``. ``copy_``, ``fill_``, ``zero_``, ``_foreach_copy_`` and random
  in-place fills write their destination without reading it. Fused optimizers write parameters
  and optimizer states.
- Views (``view``, ``t``, ``expand``, ``detach``, ...): 0 read, 0 written. Factories (``zeros``,
  ``ones_like``): write only. Allocations (``empty``, ``new_empty_strided``): nothing.
- Gathers read the indices and only the gathered elements (as many as the output holds).
"""

from __future__ import annotations

from dataclasses import dataclass

# the topic modules register their rules on import
from archcost.trace import (  # noqa: F401
    rules_attention,
    rules_lowp,
    rules_matmul,
    rules_memory,
    rules_pointwise,
    rules_reduce,
)
from archcost.trace.records import OpClass, OpRecord
from archcost.trace.rules_base import FOREACH_PREFIX, RULES, Entry, default_io, register
from archcost.trace.rules_lowp import gemm_dtype
from archcost.trace.rules_pointwise import foreach_entry

__all__ = ["OpCost", "classify", "compute_dtype", "has_flop_rule", "op_cost", "register"]


@dataclass(frozen=True, slots=True)
class OpCost:
    """Cost of one occurrence of an op."""

    flops: int
    bytes_read: int
    bytes_written: int
    op_class: OpClass
    has_rule: bool  # False: no FLOP rule known for this op (list it to the user, never free)


def _entry(op: str) -> Entry | None:
    entry = RULES.get(op)
    if entry is None and op.startswith(FOREACH_PREFIX):
        return foreach_entry(op)
    return entry


def has_flop_rule(op: str) -> bool:
    """Whether ``op`` (a packet name such as ``"aten.mm"``) has a FLOP rule."""
    return _entry(op) is not None


def classify(op: str) -> OpClass:
    """The class of ``op``; OTHER for an op without a rule."""
    entry = _entry(op)
    return entry.op_class if entry is not None else OpClass.OTHER


def op_cost(rec: OpRecord) -> OpCost:
    """FLOPs, bytes and class of one recorded op (per occurrence; multiply by ``rec.count``)."""
    entry = _entry(rec.op)
    if entry is None:
        read, written = default_io(rec)
        return OpCost(0, read, written, OpClass.OTHER, False)
    read, written = entry.io(rec)
    return OpCost(int(entry.flops(rec)), int(read), int(written), entry.op_class, True)


def compute_dtype(rec: OpRecord) -> str:
    """The dtype an op computes in (its peak and shape table): a scaled GEMM's operand format
    (``rules_lowp.gemm_dtype``), else its first output's dtype (float32 without outputs)."""
    fmt = gemm_dtype(rec)
    if fmt is not None:
        return fmt
    return rec.outputs[0].dtype if rec.outputs else "float32"
