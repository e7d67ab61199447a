"""FLOP and byte rules for aten ops: one pure function of shapes per op family.

Conventions (shared with ``torch.utils.flop_counter`` where it has a formula):
- a multiply-add is 2 FLOPs; mm/addmm/bmm/baddbmm count the matmul only (the bias add of
  addmm is not counted, as in FlopCounterMode);
- convolution: 2 * out_numel * (C_in/groups) * prod(kernel) forward; its backward counts the
  grad_input and grad_weight convolutions only where ``output_mask`` asks for them;
- scaled-dot-product attention: 4*B*Hq*Sq*Sk*D forward (QK^T and PV), backward 2.5x forward
  (scores recomputed, as FlopCounterMode); with ``is_causal`` half of each (flash-attention's
  convention; FlopCounterMode counts causal attention in full). GQA counts query heads.
- elementwise: one FLOP per output element and operand step (NB: transcendental ops such as
  exp/gelu/silu are counted as a few FLOPs each, a convention, not a hardware truth);
- norms, softmax and reductions: a small constant per element (stated per rule);
- views cost nothing; copies read and write their bytes.
Bytes: an op reads its distinct input tensors (views of nothing new count once) and writes its
non-view outputs; in-place ops write their first argument.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from math import prod

from archcost.trace.records import OpClass, OpRecord, TensorMeta, iter_tensors

__all__ = ["OpCost", "op_cost", "has_flop_rule", "classify", "register"]


@dataclass(frozen=True, slots=True)
class OpCost:
    flops: int
    bytes_read: int
    bytes_written: int
    op_class: OpClass
    has_rule: bool


Rule = Callable[[OpRecord], int]
_RULES: dict[str, tuple[Rule, OpClass]] = {}


def register(*ops: str, op_class: OpClass):
    """Register one FLOP rule for several aten ops (packet names); duplicates raise."""

    def deco(fn: Rule) -> Rule:
        for op in ops:
            if op in _RULES:
                raise ValueError(f"a FLOP rule for {op} is already registered")
            _RULES[op] = (fn, op_class)
        return fn

    return deco


def has_flop_rule(op: str) -> bool:
    return op in _RULES or op.startswith("aten._foreach_")


def classify(op: str) -> OpClass:
    if op in _RULES:
        return _RULES[op][1]
    if op.startswith("aten._foreach_"):
        return OpClass.ELEMENTWISE
    return OpClass.OTHER


# --- helpers -----------------------------------------------------------------------------------
def _arg(rec: OpRecord, name: str, pos: int, default=None):
    if name in rec.named:
        return rec.named[name]
    if pos < len(rec.args):
        return rec.args[pos]
    return rec.kwargs.get(name, default)


def _shape(x) -> tuple[int, ...]:
    return x.shape if isinstance(x, TensorMeta) else ()


def _out_numel(rec: OpRecord) -> int:
    if rec.outputs:
        return rec.outputs[0].numel
    first = next(iter_tensors(rec.args[:1]), None)
    return first.numel if first is not None else 0


def _zero(rec: OpRecord) -> int:
    return 0


def _per_element(cost: int) -> Rule:
    def rule(rec: OpRecord) -> int:
        return cost * _out_numel(rec)

    return rule


def _per_input_element(cost: int) -> Rule:
    def rule(rec: OpRecord) -> int:
        first = next(iter_tensors(rec.args[:1]), None)
        return cost * (first.numel if first is not None else 0)

    return rule


# --- matmul (2 FLOPs per multiply-add, bias adds not counted: as FlopCounterMode) -------------
@register("aten.mm", op_class=OpClass.MATMUL)
def _mm(rec):
    (m, k), (_, n) = _shape(rec.args[0]), _shape(rec.args[1])
    return 2 * m * k * n


@register("aten.addmm", op_class=OpClass.MATMUL)
def _addmm(rec):
    (m, k), (_, n) = _shape(rec.args[1]), _shape(rec.args[2])
    return 2 * m * k * n


@register("aten.bmm", op_class=OpClass.MATMUL)
def _bmm(rec):
    (b, m, k), (_, _, n) = _shape(rec.args[0]), _shape(rec.args[1])
    return 2 * b * m * k * n


@register("aten.baddbmm", op_class=OpClass.MATMUL)
def _baddbmm(rec):
    (b, m, k), (_, _, n) = _shape(rec.args[1]), _shape(rec.args[2])
    return 2 * b * m * k * n


@register("aten.mv", "aten.addmv", op_class=OpClass.MATMUL)
def _mv(rec):
    mat = rec.args[0] if rec.op == "aten.mv" else rec.args[1]
    m, n = _shape(mat)
    return 2 * m * n


@register("aten.dot", "aten.vdot", op_class=OpClass.MATMUL)
def _dot(rec):
    return 2 * _shape(rec.args[0])[0]


@register("aten.matmul", "aten.linear", op_class=OpClass.MATMUL)
def _matmul_undecomposed(rec):
    # NB: only seen when not decomposed; count as a batched matmul over the broadcast batch
    a, b = _shape(rec.args[0]), _shape(rec.args[1])
    if rec.op == "aten.linear":
        return 2 * prod(a) * b[0]
    k = a[-1]
    return 2 * (rec.outputs[0].numel if rec.outputs else 0) * k


# --- convolution (FlopCounterMode's conv_flop_count) ------------------------------------------
def _conv_flops(x_shape, w_shape, out_shape, transposed: bool) -> int:
    spatial = (x_shape if transposed else out_shape)[2:]
    c_out, c_in, *kernel = w_shape
    return 2 * x_shape[0] * prod(spatial) * prod(kernel) * c_out * c_in


@register("aten.convolution", "aten._convolution", op_class=OpClass.CONV)
def _conv(rec):
    x, w = rec.args[0], rec.args[1]
    transposed = bool(_arg(rec, "transposed", 6, False))
    return _conv_flops(x.shape, w.shape, rec.outputs[0].shape, transposed)


def _t(shape):
    return (shape[1], shape[0], *shape[2:])


@register("aten.convolution_backward", op_class=OpClass.CONV)
def _conv_backward(rec):
    grad_out, x, w = rec.args[0].shape, rec.args[1].shape, rec.args[2].shape
    transposed = bool(_arg(rec, "transposed", 7, False))
    mask = list(_arg(rec, "output_mask", 10, [True, True, True]))
    outs = iter(rec.outputs)  # None results are not recorded: outputs follow the mask
    flops = 0
    if mask[0]:
        gi = next(outs).shape
        flops += _conv_flops(grad_out, w, gi, not transposed)
    if mask[1]:
        gw = next(outs).shape
        if transposed:
            flops += _conv_flops(_t(grad_out), _t(x), _t(gw), False)
        else:
            flops += _conv_flops(_t(x), _t(grad_out), _t(gw), False)
    return flops


# --- attention --------------------------------------------------------------------------------
def _sdpa_dims(q, k, v, bshd: bool = False):
    """(B, Hq, Sq, Sk, D, Dv) from (B, H, S, D) tensors, or (B, S, H, D) when ``bshd``."""
    if bshd:
        b, sq, hq, d = q.shape
        sk, dv = k.shape[1], v.shape[3]
    else:
        b, hq, sq, d = q.shape
        sk, dv = k.shape[2], v.shape[3]
    return b, hq, sq, sk, d, dv


def _attn_forward(dims, causal: bool) -> int:
    b, h, sq, sk, d, dv = dims
    flops = 2 * b * h * sq * sk * d + 2 * b * h * sq * sk * dv
    return flops // 2 if causal else flops


def _attn_backward(dims, causal: bool) -> int:
    b, h, sq, sk, d, dv = dims
    flops = 2 * b * h * sq * sk * (3 * d + 2 * dv)  # recompute QK^T, dV, dP, dQ, dK
    return flops // 2 if causal else flops


_SDPA_FWD = (
    "aten._scaled_dot_product_flash_attention",
    "aten._scaled_dot_product_flash_attention_for_cpu",
    "aten._scaled_dot_product_efficient_attention",
    "aten._scaled_dot_product_cudnn_attention",
    "aten._scaled_dot_product_fused_attention_overrideable",
    "aten.scaled_dot_product_attention",
)
_SDPA_BWD = tuple(f"{op}_backward" for op in _SDPA_FWD[:5])


@register(*_SDPA_FWD, op_class=OpClass.ATTENTION)
def _sdpa_forward(rec):
    q, k, v = (_arg(rec, n, i) for i, n in enumerate(("query", "key", "value")))
    return _attn_forward(_sdpa_dims(q, k, v), bool(_arg(rec, "is_causal", -1, False)))


@register(*_SDPA_BWD, op_class=OpClass.ATTENTION)
def _sdpa_backward(rec):
    q, k, v = (_arg(rec, n, i + 1) for i, n in enumerate(("query", "key", "value")))
    return _attn_backward(_sdpa_dims(q, k, v), bool(_arg(rec, "is_causal", -1, False)))


def _varlen_causal(rec) -> bool:
    if "is_causal" in rec.named:
        return bool(rec.named["is_causal"])
    return int(rec.named.get("custom_mask_type", 0) or 0) != 0


@register("aten._flash_attention_forward", "aten._efficient_attention_forward",
          op_class=OpClass.ATTENTION)
def _flash_forward(rec):
    q, k, v = rec.args[:3]
    return _attn_forward(_sdpa_dims(q, k, v, bshd=True), _varlen_causal(rec))


@register("aten._flash_attention_backward", "aten._efficient_attention_backward",
          op_class=OpClass.ATTENTION)
def _flash_backward(rec):
    q, k, v = rec.args[1:4]
    return _attn_backward(_sdpa_dims(q, k, v, bshd=True), _varlen_causal(rec))


# --- elementwise (1 FLOP per output element; NB: transcendental ones a small constant) -------
_ELEMENTWISE_1 = """add sub mul div neg abs sign reciprocal relu threshold threshold_backward
maximum minimum clamp clamp_min clamp_max where masked_fill eq ne lt le gt ge logical_not
logical_and logical_or bitwise_not bitwise_and floor ceil round trunc remainder fmod square
sqrt rsqrt pow lerp rsub hardtanh hardtanh_backward leaky_relu leaky_relu_backward
native_dropout native_dropout_backward bernoulli rand_like randn_like uniform normal
fill masked_scatter floor_divide""".split()
_ELEMENTWISE_2 = "addcmul addcdiv".split()
_TRANSCENDENTAL_4 = """exp exp2 expm1 log log2 log10 log1p sin cos tan tanh sigmoid erf
sigmoid_backward tanh_backward""".split()
_ACTIVATION_8 = "gelu silu mish softplus elu gelu_backward silu_backward mish_backward elu_backward".split()


def _names(base: list[str]) -> list[str]:
    return [f"aten.{n}" for n in base] + [f"aten.{n}_" for n in base]


register(*_names(_ELEMENTWISE_1), op_class=OpClass.ELEMENTWISE)(_per_element(1))
register(*_names(_ELEMENTWISE_2), op_class=OpClass.ELEMENTWISE)(_per_element(2))
register(*_names(_TRANSCENDENTAL_4), op_class=OpClass.ELEMENTWISE)(_per_element(4))
register(*_names(_ACTIVATION_8), op_class=OpClass.ELEMENTWISE)(_per_element(8))


# --- norms (per element: mean, variance, normalise, scale, shift) -----------------------------
register(
    "aten.native_layer_norm", "aten.native_group_norm", "aten.native_batch_norm",
    "aten._native_batch_norm_legit", "aten._native_batch_norm_legit_no_training",
    "aten._native_batch_norm_legit_functional", "aten.cudnn_batch_norm", "aten.rms_norm",
    "aten._fused_rms_norm", op_class=OpClass.NORM,
)(_per_input_element(7))
register(
    "aten.native_layer_norm_backward", "aten.native_group_norm_backward",
    "aten.native_batch_norm_backward", "aten.cudnn_batch_norm_backward",
    "aten._fused_rms_norm_backward", op_class=OpClass.NORM,
)(_per_input_element(11))


# --- softmax, reductions, losses --------------------------------------------------------------
register("aten._softmax", "aten._log_softmax", "aten._safe_softmax",
         op_class=OpClass.REDUCTION)(_per_input_element(5))
register("aten._softmax_backward_data", "aten._log_softmax_backward_data",
         op_class=OpClass.REDUCTION)(_per_input_element(4))
register(
    "aten.sum", "aten.mean", "aten.amax", "aten.amin", "aten.max", "aten.min", "aten.argmax",
    "aten.argmin", "aten.prod", "aten.any", "aten.all", "aten.cumsum", "aten.cumprod",
    "aten.topk", "aten.sort", "aten.norm", "aten.linalg_vector_norm", "aten.logsumexp",
    "aten.count_nonzero", op_class=OpClass.REDUCTION,
)(_per_input_element(1))
register("aten.var", "aten.std", "aten.var_mean", "aten.std_mean",
         op_class=OpClass.REDUCTION)(_per_input_element(3))
register("aten.nll_loss_forward", "aten.nll_loss2d_forward", op_class=OpClass.REDUCTION)(
    lambda rec: prod(_shape(rec.args[1]))  # one gather-add per target
)
register("aten.nll_loss_backward", "aten.nll_loss2d_backward", op_class=OpClass.REDUCTION)(
    lambda rec: prod(_shape(rec.args[2])) if len(rec.args) > 2 else 0
)
register("aten.mse_loss", "aten.mse_loss_backward", "aten.smooth_l1_loss",
         "aten.binary_cross_entropy_with_logits", op_class=OpClass.REDUCTION)(_per_input_element(3))


# --- embedding, gather and scatter ------------------------------------------------------------
register("aten.embedding", "aten.index_select", "aten.gather", "aten.take_along_dim",
         op_class=OpClass.EMBEDDING)(_zero)


@register("aten.embedding_dense_backward", op_class=OpClass.EMBEDDING)
def _embedding_backward(rec):
    return rec.args[0].numel  # one add per gradient element scattered into its row


def _src_numel(rec):
    src = _arg(rec, "src", 3) or _arg(rec, "source", 3) or _arg(rec, "values", 2)
    return src.numel if isinstance(src, TensorMeta) else _out_numel(rec)


register(*_names(["scatter_add", "index_add", "scatter_reduce", "index_put"]),
         "aten._index_put_impl_", op_class=OpClass.EMBEDDING)(_src_numel)
register(*_names(["scatter", "index_fill", "index_copy"]), op_class=OpClass.EMBEDDING)(_zero)


# --- data movement (no FLOPs) -----------------------------------------------------------------
_VIEWS = """view _unsafe_view reshape t transpose permute expand expand_as slice select unsqueeze
squeeze as_strided alias detach unfold view_as_real view_as_complex split split_with_sizes
chunk unbind narrow diagonal movedim _reshape_alias lift_fresh real imag""".split()
_COPIES = """clone copy _to_copy contiguous cat stack repeat roll flip constant_pad_nd pad
index masked_select _local_scalar_dense new_empty new_empty_strided new_zeros new_ones
new_full empty empty_like empty_strided zeros zeros_like ones ones_like full full_like arange
scalar_tensor linspace zero one_hot tril triu repeat_interleave _pin_memory
set_ resize_ lift_fresh_copy bucketize searchsorted clamp_max_ masked_fill_""".split()
VIEW_OPS = frozenset(f"aten.{n}" for n in _VIEWS)
register(*[f"aten.{n}" for n in _VIEWS], op_class=OpClass.DATA_MOVEMENT)(_zero)
register(*[op for op in {f"aten.{n}" for n in _COPIES} | {"aten.copy_", "aten.zero_"}
           if op not in _RULES], op_class=OpClass.DATA_MOVEMENT)(_zero)


# --- optimizer ops ----------------------------------------------------------------------------
_FOREACH_COST = {"addcmul": 2, "addcdiv": 2, "lerp": 3, "norm": 2, "copy": 0, "zero": 0,
                 "sqrt": 1, "exp": 4, "log": 4, "pow": 1}


def _foreach_flops(rec: OpRecord) -> int:
    name = rec.op.removeprefix("aten._foreach_").rstrip("_")
    cost = _FOREACH_COST.get(name, 1)
    first = rec.args[0] if rec.args else []
    return cost * sum(t.numel for t in iter_tensors(first))


# NB: per element of the updated parameter: moments (4), bias-corrected step (4), weight decay
# (2), update (2) -- a convention of 12 FLOPs; SGD with momentum 4.
register("aten._fused_adam_", "aten._fused_adamw_", "aten._fused_adam", "aten._fused_adamw",
         op_class=OpClass.ELEMENTWISE)(lambda rec: 12 * sum(t.numel for t in iter_tensors(rec.args[0])))
register("aten._fused_sgd_", "aten._fused_sgd", op_class=OpClass.ELEMENTWISE)(
    lambda rec: 4 * sum(t.numel for t in iter_tensors(rec.args[0]))
)


# --- bytes ------------------------------------------------------------------------------------
def _bytes(rec: OpRecord) -> tuple[int, int]:
    if rec.op in VIEW_OPS:
        return 0, 0
    seen: set[int] = set()
    read = 0
    for t in iter_tensors((rec.args, rec.kwargs)):
        if t.tid not in seen:
            seen.add(t.tid)
            read += t.nbytes
    if rec.op in ("aten.embedding",):
        idx = rec.args[1]
        read = idx.nbytes + rec.outputs[0].nbytes  # only the rows gathered are read
    if rec.op.endswith("_") and not rec.op.startswith("aten.__"):
        written = sum(t.nbytes for t in iter_tensors(rec.args[:1]))
        return read, written
    inputs = {t.storage for t in iter_tensors((rec.args, rec.kwargs))}
    written = sum(o.nbytes for o in rec.outputs if not o.is_view and o.storage not in inputs)
    return read, written


def op_cost(rec: OpRecord) -> OpCost:
    """FLOPs, bytes and class of one recorded op (per occurrence; multiply by ``rec.count``)."""
    read, written = _bytes(rec)
    entry = _RULES.get(rec.op)
    if entry is not None:
        fn, cls = entry
        return OpCost(int(fn(rec)), read, written, cls, True)
    if rec.op.startswith("aten._foreach_"):
        return OpCost(_foreach_flops(rec), read, written, OpClass.ELEMENTWISE, True)
    return OpCost(0, read, written, OpClass.OTHER, False)
