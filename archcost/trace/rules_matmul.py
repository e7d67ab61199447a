"""FLOP rules for matrix products and convolutions.

Formulas follow ``torch.utils.flop_counter`` (``mm_flop``, ``bmm_flop``, ``conv_flop_count``,
``conv_backward_flop``) so that the MATMUL and CONV classes equal ``FlopCounterMode`` on the same
run: a multiply-add is 2 FLOPs, and bias adds are not counted (addmm, baddbmm, convolution bias,
convolution_backward's grad_bias reduction). NB: ``2*K`` rather than ``2*K - 1`` per output.
"""

from __future__ import annotations

from math import prod

from archcost.trace.records import OpClass, OpRecord
from archcost.trace.rules_base import arg, broadcast_io, declare_positions, default_io, register

declare_positions({
    "aten.convolution": "input weight bias stride padding dilation transposed",
    "aten._convolution": "input weight bias stride padding dilation transposed",
    "aten.convolution_overrideable": "input weight bias stride padding dilation transposed",
    "aten.convolution_backward":
        "grad_output input weight bias_sizes stride padding dilation transposed output_padding "
        "groups output_mask",
})


# --- matrix products --------------------------------------------------------------------------
@register("aten.mm", "aten._int_mm", op_class=OpClass.MATMUL)
def mm(rec: OpRecord) -> int:
    (m, k), (_, n) = rec.args[0].shape, rec.args[1].shape  # (M, K) @ (K, N)
    return 2 * m * k * n


@register("aten.addmm", op_class=OpClass.MATMUL)
def addmm(rec: OpRecord) -> int:
    (m, k), (_, n) = rec.args[1].shape, rec.args[2].shape  # bias + (M, K) @ (K, N)
    return 2 * m * k * n


@register("aten.bmm", op_class=OpClass.MATMUL, io=broadcast_io)
def bmm(rec: OpRecord) -> int:
    (b, m, k), (_, _, n) = rec.args[0].shape, rec.args[1].shape  # (B, M, K) @ (B, K, N)
    return 2 * b * m * k * n


@register("aten.baddbmm", "aten.addbmm", op_class=OpClass.MATMUL, io=broadcast_io)
def baddbmm(rec: OpRecord) -> int:
    (b, m, k), (_, _, n) = rec.args[1].shape, rec.args[2].shape
    return 2 * b * m * k * n


@register("aten.mv", "aten.addmv", op_class=OpClass.MATMUL)
def mv(rec: OpRecord) -> int:
    mat = rec.args[0] if rec.op == "aten.mv" else rec.args[1]
    m, n = mat.shape  # (M, N) @ (N,)
    return 2 * m * n


@register("aten.dot", "aten.vdot", op_class=OpClass.MATMUL)
def dot(rec: OpRecord) -> int:
    return 2 * rec.args[0].shape[0]


@register("aten.matmul", op_class=OpClass.MATMUL)
def matmul(rec: OpRecord) -> int:
    """Only seen undecomposed (it is CompositeImplicit): every output element is a length-K dot
    product, K the last dim of the first operand (1-D, matrix or broadcast batch alike)."""
    k = rec.args[0].shape[-1]
    return 2 * rec.outputs[0].numel * k if rec.outputs else 0


@register("aten.linear", op_class=OpClass.MATMUL)
def linear(rec: OpRecord) -> int:
    x, w = rec.args[0].shape, rec.args[1].shape  # (..., K) @ (N, K)^T, bias not counted
    return 2 * prod(x) * w[0]


def grouped_weights(rec: OpRecord) -> tuple[int, int, int, int]:
    """(groups, rows, bytes, reached) of a grouped GEMM over stacked weights ((rows, k) @
    (groups, k, n), as a mixture-of-experts layer runs its experts) whose rows per group the
    capture knew (``extra["group_rows"]``): the groups, the rows over all of them, every
    group's weight bytes, and the groups with rows; () for other ops and where the rows are
    not known."""
    rows = rec.extra.get("group_rows")
    if rec.op not in ("aten._grouped_mm", "aten._scaled_grouped_mm") or not rows:
        return ()
    a, b = rec.args[0], rec.args[1]
    if len(a.shape) != 2 or len(b.shape) != 3 or int(b.shape[0]) != len(rows):
        return ()
    return len(rows), int(sum(rows)), int(b.nbytes), sum(1 for r in rows if r > 0)


def grouped_io(rec: OpRecord) -> tuple[int, int]:
    """As :func:`default_io`, less the weights of the groups no row reaches: a grouped GEMM
    (CUTLASS's, cuBLAS's, torch's ``_grouped_mm``) runs tiles for the rows each group has,
    so a group without rows reads nothing (a decode step of one token through two of eight
    experts reads two experts' weights)."""
    read, written = default_io(rec)
    grouped = grouped_weights(rec)
    if grouped:
        groups, _, weights, reached = grouped
        read -= weights * (groups - reached) // groups
    return read, written


@register("aten._grouped_mm", "aten._scaled_grouped_mm", op_class=OpClass.MATMUL,
          io=grouped_io)
def grouped_mm(rec: OpRecord) -> int:
    """MoE grouped GEMM. 2-D x 2-D (a weight gradient): (M, T) @ (T, N) split along T into
    groups -> 2*M*T*N; otherwise each output element contracts over the last dim of ``self``."""
    a, b = rec.args[0].shape, rec.args[1].shape
    if len(a) == 2 and len(b) == 2:
        return 2 * a[0] * a[1] * b[1]
    return 2 * rec.outputs[0].numel * a[-1] if rec.outputs else 0


# --- convolution ------------------------------------------------------------------------------
def conv_flops(x: tuple, w: tuple, out: tuple, transposed: bool) -> int:
    """FlopCounterMode's ``conv_flop_count``: 2 * N * prod(spatial) * prod(kernel) * w[0] * w[1].

    The spatial extent is the output's for a convolution and the input's for a transposed one
    (each input point is scattered through the kernel). ``w[1]`` is C_in/groups for a grouped
    convolution, so groups are accounted for by the weight shape.
    """
    spatial = (x if transposed else out)[2:]
    c_out, c_in, *kernel = w
    return 2 * x[0] * prod(spatial) * prod(kernel) * c_out * c_in


@register("aten.convolution", "aten._convolution", "aten.convolution_overrideable",
          op_class=OpClass.CONV)
def convolution(rec: OpRecord) -> int:
    x, w = rec.args[0].shape, rec.args[1].shape  # (N, C_in, *spatial), (C_out, C_in/g, *kernel)
    transposed = bool(arg(rec, "transposed", False))
    return conv_flops(x, w, rec.outputs[0].shape, transposed)


@register("aten.cudnn_convolution", "aten.mkldnn_convolution", "aten._slow_conv2d_forward",
          op_class=OpClass.CONV)
def convolution_not_transposed(rec: OpRecord) -> int:
    return conv_flops(rec.args[0].shape, rec.args[1].shape, rec.outputs[0].shape, False)


@register("aten.cudnn_convolution_transpose", op_class=OpClass.CONV)
def convolution_transposed(rec: OpRecord) -> int:
    return conv_flops(rec.args[0].shape, rec.args[1].shape, rec.outputs[0].shape, True)


def _t(shape: tuple) -> tuple:
    """Swap the first two dims: a weight gradient is a convolution over the batch."""
    return (shape[1], shape[0], *shape[2:])


@register("aten.convolution_backward", op_class=OpClass.CONV)
def convolution_backward(rec: OpRecord) -> int:
    """grad_input is the transposed convolution of grad_output with the weight; grad_weight is a
    convolution of the input with grad_output (batch and channels swapped); each is counted only
    when ``output_mask`` asks for it. grad_bias (mask[2]) counts 0, like FlopCounterMode.

    The gradient shapes equal the input and weight shapes, so they are read from the arguments
    (results not requested are None and absent from ``rec.outputs``).
    """
    gout, x, w = rec.args[0].shape, rec.args[1].shape, rec.args[2].shape
    transposed = bool(arg(rec, "transposed", False))
    mask = list(arg(rec, "output_mask", (True, True, True)))
    flops = 0
    if mask[0]:
        flops += conv_flops(gout, w, x, not transposed)
    if mask[1]:
        if transposed:
            flops += conv_flops(_t(gout), _t(x), _t(w), False)
        else:
            flops += conv_flops(_t(x), _t(gout), _t(w), False)
    return flops
