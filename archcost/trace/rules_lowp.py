"""FLOP and byte rules of low-precision training: scaled GEMMs, casts, amax reductions.

The casts are the ``archcost_lowp`` custom ops of ``lowp_ops`` (one op per kernel); their bytes
follow the default convention (inputs read, fresh outputs written), with low-precision tensors at
their real item sizes (1 byte for fp8 and E8M0/E4M3 scales, half a byte per FP4 element: torch's
``float4_e2m1fn_x2`` packs two in one byte), except where a rule below says otherwise.

- ``aten._scaled_mm``: 2*M*N*K like ``mm``; K counts unpacked elements (two per byte of a
  ``float4_e2m1fn_x2`` operand). Its peak is that of its operands' format
  (:func:`gemm_dtype`): ``fp8`` (per-tensor or per-row fp32 scales), ``mxfp8`` (E8M0 block
  scales), ``nvfp4`` (FP4 operands), not that of its bf16 output.
- ``amax``: 2 FLOPs per element (abs, max), class REDUCTION.
- ``quantize`` / ``quantize_into``: 2 FLOPs per element per layout written (scale, clamp), 2 more
  per element where the cast finds its own maxima (row, block or recorded amax), class
  ELEMENTWISE. ``quantize_into`` reads its source and writes the tensors it is given.
- ``amax_history_update``: 2 FLOPs per history element (the max over the window, the roll),
  reads the history and the new amaxes, writes the history and the scales.
NB: FLOPs of casts are operation counts of a textbook formula; casts are memory-bound.
"""

from __future__ import annotations

from archcost.trace.records import OpClass, OpRecord, TensorMeta, iter_tensors
from archcost.trace.rules_base import arg, declare_positions, register, tensor_inputs

__all__ = ["gemm_dtype", "LOWP_OPS"]

_NS = "archcost_lowp"
LOWP_OPS = (f"{_NS}.amax", f"{_NS}.quantize", f"{_NS}.quantize_into",
            f"{_NS}.amax_history_update")
FP4 = "float4_e2m1fn_x2"

declare_positions({
    "aten._scaled_mm": "self mat2 scale_a scale_b bias scale_result out_dtype use_fast_accum",
    f"{_NS}.quantize": "x amax scale fmt block scale_dtype layout hp_transpose record_amax",
    f"{_NS}.quantize_into": "x amax scale out fmt block scale_dtype layout",
    f"{_NS}.amax_history_update": "history scale amax fmax",
})


def _k(t: TensorMeta) -> int:
    """Elements along the contraction of a row-major operand's last dim (FP4 packs two)."""
    return t.shape[-1] * (2 if t.dtype == FP4 else 1)


@register("aten._scaled_mm", op_class=OpClass.MATMUL)
def scaled_mm(rec: OpRecord) -> int:
    a, b = rec.args[0], rec.args[1]  # (M, K) @ (K, N); K packed in FP4
    return 2 * a.shape[0] * _k(a) * b.shape[1]


def gemm_dtype(rec: OpRecord) -> str | None:
    """The format a scaled GEMM runs in (a ``cost.compute.PEAK_KEY`` key), None for other ops."""
    if rec.op != "aten._scaled_mm":
        return None
    a, scale = rec.args[0], arg(rec, "scale_a")
    if a.dtype == FP4:
        return "nvfp4"
    if isinstance(scale, TensorMeta) and scale.dtype == "float8_e8m0fnu":
        return "mxfp8"
    return a.dtype


@register(f"{_NS}.amax", op_class=OpClass.REDUCTION)
def amax(rec: OpRecord) -> int:
    return 2 * rec.args[0].numel


def _layouts(rec: OpRecord) -> int:
    return 2 if arg(rec, "layout") == "both" else 1


def _finds_maxima(rec: OpRecord) -> bool:
    return arg(rec, "block", 0) != 0 or bool(arg(rec, "record_amax", False))


@register(f"{_NS}.quantize", op_class=OpClass.ELEMENTWISE)
def quantize(rec: OpRecord) -> int:
    n = rec.args[0].numel
    return 2 * n * _layouts(rec) + (2 * n if _finds_maxima(rec) else 0)


def _quantize_into_io(rec: OpRecord) -> tuple[int, int]:
    out = {t.tid for t in iter_tensors(arg(rec, "out", []))}
    read = sum(t.nbytes for t in tensor_inputs(rec) if t.tid not in out)
    return read, sum(t.nbytes for t in iter_tensors(arg(rec, "out", [])))


@register(f"{_NS}.quantize_into", op_class=OpClass.ELEMENTWISE, io=_quantize_into_io)
def quantize_into(rec: OpRecord) -> int:
    n = rec.args[0].numel
    return 2 * n * _layouts(rec) + (2 * n if arg(rec, "block", 0) != 0 else 0)


def _history_io(rec: OpRecord) -> tuple[int, int]:
    history, scale, new = (arg(rec, k) for k in ("history", "scale", "amax"))
    return history.nbytes + new.nbytes, history.nbytes + scale.nbytes


@register(f"{_NS}.amax_history_update", op_class=OpClass.REDUCTION, io=_history_io)
def amax_history_update(rec: OpRecord) -> int:
    return 2 * arg(rec, "history").numel
