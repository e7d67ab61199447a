"""FLOP rules for normalisation layers, reductions, softmax, losses and pooling.

All are a small constant per element, counted on the input (a reduction reads n elements to
write far fewer). The constants are conventions, stated next to each rule; NB: FlopCounterMode
counts none of these ops, so no outside tool pins them down.

- norms: LayerNorm/GroupNorm/BatchNorm (training) forward 5 per element (mean 1, centre 1,
  square-and-sum 2, scale by rstd 1) + 1 per affine tensor present; BatchNorm with running
  statistics 2 + affine; RMSNorm 3 + 1 with a weight. Backward per element, honouring
  ``output_mask``: grad_input 8 (x_hat recomputed 2, g*w 1, two row sums 2, combination 3),
  grad_weight 2, grad_bias 1; RMSNorm grad_input 6, grad_weight 2.
- reductions: sum/mean/max/min/argmax/prod/any/all/cumsum 1 per input element; var/std 3;
  norms 2; logsumexp 7 (max, subtract, exp 4, sum).
- softmax (class REDUCTION: its cost is two row reductions): softmax and log_softmax 8 (max 1,
  subtract 1, exp 4, sum 1, divide or subtract 1); softmax backward 4 (g*y, row sum, subtract,
  times y); log_softmax backward 7 (exp 4, row sum, multiply, subtract).
- sort: n * ceil(log2 n) comparisons along the sorted dim; topk: n * ceil(log2 (k + 1)).
  NB: comparison-count conventions, not any one kernel's algorithm.
- losses: nll 1 per target (a gather-add; backward a scatter); mse 3 per element forward and
  backward; smooth_l1/huber 4 forward, 3 backward; binary cross-entropy as stated in its rule.
- pooling: max/avg pool prod(kernel) per output element; max-pool backward 1 per gradient
  element (a scatter-add), avg-pool backward prod(kernel) per gradient element; adaptive pools
  1 per input element (NB: windows taken as non-overlapping).
"""

from __future__ import annotations

from math import ceil, log2

from archcost.trace.records import OpClass, OpRecord, TensorMeta
from archcost.trace.rules_base import (
    arg,
    declare_positions,
    first_tensor,
    kernel_numel,
    numel,
    per_element,
    register,
)
from archcost.trace.rules_pointwise import TRANSCENDENTAL as _T

declare_positions({
    "aten.native_layer_norm": "input normalized_shape weight bias",
    "aten.native_layer_norm_backward":
        "grad_out input normalized_shape mean rstd weight bias output_mask",
    "aten.native_group_norm": "input weight bias",
    "aten.native_group_norm_backward":
        "grad_out input mean rstd weight N C HxW group output_mask",
    "aten.native_batch_norm": "input weight bias running_mean running_var training",
    "aten._native_batch_norm_legit": "input weight bias running_mean running_var training",
    "aten._native_batch_norm_legit.no_stats": "input weight bias training",
    "aten._native_batch_norm_legit_functional":
        "input weight bias running_mean running_var training",
    "aten._native_batch_norm_legit_no_training": "input weight bias running_mean running_var",
    "aten.cudnn_batch_norm": "input weight bias running_mean running_var training",
    "aten.miopen_batch_norm": "input weight bias running_mean running_var training",
    "aten.native_batch_norm_backward":
        "grad_out input weight running_mean running_var save_mean save_invstd train eps "
        "output_mask",
    "aten.batch_norm_backward":
        "grad_out input weight running_mean running_var save_mean save_var update eps "
        "output_mask",
    "aten.cudnn_batch_norm_backward": "input grad_output weight",
    "aten.miopen_batch_norm_backward": "input grad_output weight",
    "aten.rms_norm": "input normalized_shape weight",
    "aten._fused_rms_norm": "input normalized_shape weight",
    "aten._fused_rms_norm_backward": "grad_out input normalized_shape rstd weight output_mask",
    "aten.sort": "self dim",
    "aten.argsort": "self dim",
    "aten.topk": "self k",
    "aten.nll_loss_forward": "self target",
    "aten.nll_loss2d_forward": "self target",
    "aten.nll_loss_backward": "grad_output self target",
    "aten.nll_loss2d_backward": "grad_output self target",
})


# --- norms ------------------------------------------------------------------------------------
def _affine(rec: OpRecord) -> int:
    return sum(isinstance(arg(rec, n), TensorMeta) for n in ("weight", "bias"))


def _input_numel(rec: OpRecord) -> int:
    x = arg(rec, "input")
    return numel(x if isinstance(x, TensorMeta) else first_tensor(rec))


@register("aten.native_layer_norm", "aten.native_group_norm", op_class=OpClass.NORM)
def layer_norm(rec: OpRecord) -> int:
    return (5 + _affine(rec)) * _input_numel(rec)


@register("aten.native_batch_norm", "aten._native_batch_norm_legit",
          "aten._native_batch_norm_legit_functional", "aten._native_batch_norm_legit_no_training",
          "aten.cudnn_batch_norm", "aten.miopen_batch_norm", op_class=OpClass.NORM)
def batch_norm(rec: OpRecord) -> int:
    training = rec.op != "aten._native_batch_norm_legit_no_training" and bool(
        arg(rec, "training", True))
    return ((5 if training else 2) + _affine(rec)) * _input_numel(rec)


@register("aten.rms_norm", "aten._fused_rms_norm", op_class=OpClass.NORM)
def rms_norm(rec: OpRecord) -> int:
    return (3 + (isinstance(arg(rec, "weight"), TensorMeta))) * _input_numel(rec)


_NORM_GRAD = (8, 2, 1)  # grad_input, grad_weight, grad_bias per element


@register("aten.native_layer_norm_backward", "aten.native_group_norm_backward",
          "aten.native_batch_norm_backward", "aten.batch_norm_backward",
          "aten.cudnn_batch_norm_backward", "aten.miopen_batch_norm_backward",
          op_class=OpClass.NORM)
def norm_backward(rec: OpRecord) -> int:
    mask = arg(rec, "output_mask", (True, True, True))
    has_weight = isinstance(arg(rec, "weight"), TensorMeta)
    per = sum(c for c, m in zip(_NORM_GRAD, mask) if m)
    if not has_weight:  # no affine parameters, no parameter gradients
        per = _NORM_GRAD[0] if mask[0] else 0
    return per * _input_numel(rec)


@register("aten._fused_rms_norm_backward", op_class=OpClass.NORM)
def rms_norm_backward(rec: OpRecord) -> int:
    mask = arg(rec, "output_mask", (True, True))
    has_weight = isinstance(arg(rec, "weight"), TensorMeta)
    per = (6 if mask[0] else 0) + (2 if mask[1] and has_weight else 0)
    return per * _input_numel(rec)


# --- reductions and softmax -------------------------------------------------------------------
_REDUCE_1 = """sum mean amax amin max min argmax argmin prod any all nansum nanmean count_nonzero
cumsum cumprod kthvalue median nanmedian mode""".split()
register(*[f"aten.{n}" for n in _REDUCE_1], op_class=OpClass.REDUCTION)(per_element(1, "input"))
register("aten.cumsum_", "aten.cumprod_", op_class=OpClass.REDUCTION)(per_element(1, "input"))
register("aten.var", "aten.std", "aten.var_mean", "aten.std_mean",
         op_class=OpClass.REDUCTION)(per_element(3, "input"))
register("aten.norm", "aten.linalg_vector_norm", op_class=OpClass.REDUCTION)(
    per_element(2, "input"))
register("aten.logsumexp", op_class=OpClass.REDUCTION)(per_element(_T + 3, "input"))
register("aten._softmax", "aten._log_softmax", "aten._safe_softmax",
         op_class=OpClass.REDUCTION)(per_element(_T + 4, "input"))
register("aten._softmax_backward_data", op_class=OpClass.REDUCTION)(per_element(4, "input"))
register("aten._log_softmax_backward_data", op_class=OpClass.REDUCTION)(
    per_element(_T + 3, "input"))


@register("aten.sort", "aten.argsort", "aten.msort", op_class=OpClass.REDUCTION)
def sort(rec: OpRecord) -> int:
    x = first_tensor(rec)
    if x is None or not x.shape:
        return 0
    n = x.shape[0] if rec.op == "aten.msort" else x.shape[int(arg(rec, "dim", -1))]
    return x.numel * ceil(log2(n)) if n > 1 else 0


@register("aten.topk", op_class=OpClass.REDUCTION)
def topk(rec: OpRecord) -> int:
    k = int(arg(rec, "k", 1))
    return numel(first_tensor(rec)) * ceil(log2(k + 1))


# --- losses -----------------------------------------------------------------------------------
@register("aten.nll_loss_forward", "aten.nll_loss2d_forward", "aten.nll_loss_backward",
          "aten.nll_loss2d_backward", op_class=OpClass.REDUCTION)
def nll_loss(rec: OpRecord) -> int:
    return numel(arg(rec, "target"))  # one gather-add (backward: one scatter) per target


# backward ops take (grad_output, self, target, ...): count the elements of ``self``
register("aten.mse_loss", op_class=OpClass.REDUCTION)(per_element(3, "input"))
register("aten.mse_loss_backward", op_class=OpClass.REDUCTION)(per_element(3, 1))
register("aten.smooth_l1_loss", "aten.huber_loss", op_class=OpClass.REDUCTION)(
    per_element(4, "input"))
register("aten.smooth_l1_loss_backward", "aten.huber_loss_backward",
         op_class=OpClass.REDUCTION)(per_element(3, 1))
# -(y log x + (1 - y) log(1 - x)): two logs and 5 arithmetic; with logits
# (1 - y) x + log1p(exp(-x)): exp, log1p and 4 arithmetic
register("aten.binary_cross_entropy", op_class=OpClass.REDUCTION)(per_element(2 * _T + 5, "input"))
register("aten.binary_cross_entropy_with_logits", op_class=OpClass.REDUCTION)(
    per_element(2 * _T + 4, "input"))
register("aten.binary_cross_entropy_backward", op_class=OpClass.REDUCTION)(
    per_element(5, 1))  # g * (x - y) / (x (1 - x))


# --- pooling ----------------------------------------------------------------------------------
def _pool_dims(op: str) -> int:
    return 3 if "3d" in op else 1 if "1d" in op else 2


def pool(rec: OpRecord) -> int:
    """prod(kernel) comparisons or adds per output element."""
    out = rec.outputs[0].numel if rec.outputs else 0
    return out * kernel_numel(rec.args[1], _pool_dims(rec.op))


def avg_pool_backward(rec: OpRecord) -> int:
    """Each gradient element is spread over its kernel window."""
    return rec.args[0].numel * kernel_numel(rec.args[2], _pool_dims(rec.op))


_POOLS = [f"aten.{k}_pool{d}d{s}" for k in ("max", "avg") for d in (1, 2, 3)
          for s in (("", "_with_indices") if k == "max" else ("",))]
register(*_POOLS, op_class=OpClass.REDUCTION)(pool)
register("aten.avg_pool2d_backward", "aten.avg_pool3d_backward",
         op_class=OpClass.REDUCTION)(avg_pool_backward)
register("aten.max_pool2d_with_indices_backward", "aten.max_pool3d_with_indices_backward",
         "aten.adaptive_max_pool2d_backward", "aten.adaptive_max_pool3d_backward",
         op_class=OpClass.REDUCTION)(per_element(1, "input"))  # scatter-add of grad_output
register("aten._adaptive_avg_pool2d", "aten._adaptive_avg_pool3d", "aten.adaptive_max_pool2d",
         "aten.adaptive_max_pool3d", op_class=OpClass.REDUCTION)(per_element(1, "input"))


@register("aten._adaptive_avg_pool2d_backward", "aten._adaptive_avg_pool3d_backward",
          op_class=OpClass.REDUCTION)
def adaptive_avg_pool_backward(rec: OpRecord) -> int:
    return numel(rec.args[1])  # one add per input element
