"""FLOP rules for elementwise ops, ``_foreach_*`` list ops and fused optimizers.

FLOPs = elements of the (broadcast) output x a per-element cost; in-place variants (``add_``)
share the rule. Costs (``ELEMENTWISE_COST``) count one FLOP per arithmetic step of the op's
textbook formula, a scalar multiplier folded into the step it scales (``add`` with ``alpha`` 1,
``addcmul`` = multiply + add 2, ``lerp`` = subtract + scaled add 2): arithmetic, comparison,
selection, min/max, abs, sqrt/rsqrt/reciprocal and pow count 1; a transcendental function (exp,
log, sin, tanh, erf, ...) counts ``TRANSCENDENTAL`` = 4 and composites add their parts
(sigmoid = exp + add + div = 6).
NB: FLOP weights for transcendental functions are a convention (fvcore counts 1, hardware uses
special-function units or short polynomials), and pow counts 1 whatever the exponent. Fill, zero
and random draws other than dropout's are counted as 0 or 1 as stated in the table.
"""

from __future__ import annotations

from archcost.trace.records import OpClass, OpRecord, iter_tensors
from archcost.trace.rules_base import (
    FOREACH_PREFIX,
    Entry,
    arg,
    declare_positions,
    default_io,
    factory_io,
    first_list,
    overwrite_io,
    per_element,
    register,
)

declare_positions({
    "aten._fused_adam_": "self grads exp_avgs exp_avg_sqs max_exp_avg_sqs state_steps",
    "aten._fused_adamw_": "self grads exp_avgs exp_avg_sqs max_exp_avg_sqs state_steps",
    "aten._fused_adam": "self grads exp_avgs exp_avg_sqs max_exp_avg_sqs state_steps",
    "aten._fused_adamw": "self grads exp_avgs exp_avg_sqs max_exp_avg_sqs state_steps",
    "aten._fused_sgd_": "self grads momentum_buffer_list",
    "aten._fused_sgd": "self grads momentum_buffer_list",
    "aten._fused_adagrad_": "self grads state_sums state_steps",
})

TRANSCENDENTAL = 4
_T = TRANSCENDENTAL
ELEMENTWISE_COST: dict[str, int] = {
    # one arithmetic, comparison or selection step per element
    **dict.fromkeys(
        """add sub rsub mul div neg abs sign sgn reciprocal sqrt rsqrt square pow relu relu6
        threshold threshold_backward maximum minimum fmax fmin clamp clamp_min clamp_max hardtanh
        hardtanh_backward leaky_relu leaky_relu_backward where masked_fill eq ne lt le gt ge
        logical_not logical_and logical_or logical_xor bitwise_not bitwise_and bitwise_or
        bitwise_xor bitwise_left_shift bitwise_right_shift floor ceil round trunc frac remainder
        fmod floor_divide isnan isinf isfinite
        nan_to_num copysign hardshrink softshrink heaviside""".split(), 1),
    # stores, no arithmetic
    "fill": 0, "zero": 0, "copy": 0,
    # self + value * (t1 * t2), self + weight * (end - self): the scalar is folded
    "addcmul": 2, "addcdiv": 2, "lerp": 2,
    # transcendental functions
    **dict.fromkeys(
        """exp exp2 expm1 log log2 log10 log1p sin cos tan asin acos atan atan2 sinh cosh tanh
        asinh acosh atanh erf erfc erfinv logit""".split(), _T),
    "sigmoid": _T + 2,  # 1 / (1 + exp(-x))
    "silu": _T + 3,  # x * sigmoid(x)
    "gelu": _T + 3,  # 0.5 * x * (1 + erf(x / sqrt 2)); the tanh form about the same
    "softplus": 2 * _T,  # log1p(exp(beta x)) / beta
    "mish": 3 * _T + 1,  # x * tanh(softplus(x))
    "elu": _T + 2,  # x > 0 ? x : alpha * (exp(x) - 1)
    "hardsigmoid": 2, "hardswish": 3,  # relu6(x + 3) / 6, times x
    "glu": _T + 3,  # a * sigmoid(b) over half the input
    # backward of activations, per gradient element
    "sigmoid_backward": 3,  # g * y * (1 - y)
    "tanh_backward": 3,  # g * (1 - y^2)
    "silu_backward": _T + 7,  # g * s * (1 + x * (1 - s)), s recomputed
    "gelu_backward": 2 * _T + 6,  # g * (Phi(x) + x * phi(x)), erf and exp
    "softplus_backward": _T + 3,  # g * sigmoid(beta x)
    "mish_backward": 4 * _T + 8,
    "elu_backward": 2, "hardsigmoid_backward": 2, "hardswish_backward": 3,
    "glu_backward": _T + 6,
    # randomness (NB: one random draw counts 1)
    "native_dropout": 3,  # draw, compare with p, multiply by mask * scale
    "native_dropout_backward": 1,  # g * mask * scale
    "bernoulli": 2,  # draw, compare
    **dict.fromkeys(
        "rand rand_like randn randn_like randint randint_like uniform normal random exponential"
        .split(), 1),
}
# random factories read nothing (a ``*_like`` argument gives only its shape)
_FACTORY = frozenset("rand rand_like randn randn_like randint randint_like".split())
# ops whose in-place form writes its destination without reading it
_OVERWRITE = frozenset("fill zero copy uniform normal random exponential bernoulli".split())


def _register_elementwise() -> None:
    by_cost: dict[int, list[str]] = {}
    for name, cost in ELEMENTWISE_COST.items():
        if name == "copy":  # copy_ is data movement (rules_memory)
            continue
        by_cost.setdefault(cost, []).append(name)
    for cost, names in by_cost.items():
        plain = [f"aten.{n}" for n in names if n not in _FACTORY]
        register(*plain, op_class=OpClass.ELEMENTWISE)(per_element(cost))
        factory = [f"aten.{n}" for n in names if n in _FACTORY]
        if factory:
            register(*factory, op_class=OpClass.ELEMENTWISE, io=factory_io)(per_element(cost))
        normal = [f"aten.{n}_" for n in names if n not in _OVERWRITE | _FACTORY]
        register(*normal, op_class=OpClass.ELEMENTWISE)(per_element(cost))
        overwrite = [f"aten.{n}_" for n in names if n in _OVERWRITE]
        if overwrite:
            register(*overwrite, op_class=OpClass.ELEMENTWISE, io=overwrite_io)(per_element(cost))


_register_elementwise()


# --- _foreach_* list ops ----------------------------------------------------------------------
FOREACH_COST: dict[str, int] = {
    **ELEMENTWISE_COST,
    "norm": 2,  # square, add (a reduction per list entry)
    "max": 1,
}


def foreach_flops(rec: OpRecord) -> int:
    """Per-element cost of the base op (``_foreach_addcdiv_`` -> addcdiv) x the elements of the
    first tensor-list argument. NB: an op not in the table counts 1 per element."""
    base = rec.op.removeprefix(FOREACH_PREFIX).rstrip("_")
    return FOREACH_COST.get(base, 1) * sum(t.numel for t in first_list(rec))


def foreach_entry(op: str) -> Entry:
    """The rule every ``aten._foreach_*`` op gets (the family is open-ended, matched by prefix)."""
    base = op.removeprefix(FOREACH_PREFIX).rstrip("_")
    io = overwrite_io if op.endswith("_") and base in _OVERWRITE else default_io
    return Entry(foreach_flops, OpClass.ELEMENTWISE, io)


# --- fused optimizers -------------------------------------------------------------------------
def _list_bytes(rec: OpRecord, *names: str) -> int:
    return sum(t.nbytes for n in names for t in iter_tensors(arg(rec, n)))


def adam_flops(rec: OpRecord) -> int:
    """Per parameter element, the steps of torch's foreach Adam: m.lerp_(g, 1-b1) 2;
    v.mul_(b2).addcmul_(g, g, 1-b2) 3; denom = v.sqrt() / sqrt(bc2) + eps 3;
    p.addcdiv_(m, denom, -step) 2 -> 10. Weight decay adds 1 (AdamW p.mul_(1 - lr*wd), Adam
    g.add(p, alpha=wd)); amsgrad's running maximum adds 1."""
    per = 10
    if float(arg(rec, "weight_decay", 0.0) or 0.0) != 0.0:
        per += 1
    if arg(rec, "amsgrad", False):
        per += 1
    return per * sum(t.numel for t in first_list(rec))


def adam_io(rec: OpRecord) -> tuple[int, int]:
    """Reads every list; writes params and both moments (and max_exp_avg_sqs with amsgrad)."""
    read, written = default_io(rec)
    if rec.op.endswith("_"):
        lists = ["self", "exp_avgs", "exp_avg_sqs"]
        if arg(rec, "amsgrad"):
            lists.append("max_exp_avg_sqs")
        written = _list_bytes(rec, *lists)
    return read, written


def sgd_flops(rec: OpRecord) -> int:
    """Per parameter element: p.add_(d, alpha=-lr) 1; momentum buf.mul_(mu).add_(g, 1-damp) 2,
    Nesterov d = g.add(buf, alpha=mu) 1; weight decay g.add(p, alpha=wd) 1."""
    per = 1
    if float(arg(rec, "momentum", 0.0) or 0.0) != 0.0:
        per += 3 if arg(rec, "nesterov", False) else 2
    if float(arg(rec, "weight_decay", 0.0) or 0.0) != 0.0:
        per += 1
    return per * sum(t.numel for t in first_list(rec))


def sgd_io(rec: OpRecord) -> tuple[int, int]:
    read, written = default_io(rec)
    if rec.op.endswith("_"):
        momentum = float(arg(rec, "momentum", 0.0) or 0.0) != 0.0
        written = _list_bytes(rec, "self", *(["momentum_buffer_list"] if momentum else []))
    return read, written


def adagrad_flops(rec: OpRecord) -> int:
    """Per parameter element: sum.addcmul_(g, g) 2; std = sum.sqrt().add_(eps) 2;
    g * -clr 1; p.addcdiv_(g, std) 2 -> 7; weight decay adds 1."""
    per = 7 + (1 if float(arg(rec, "weight_decay", 0.0) or 0.0) != 0.0 else 0)
    return per * sum(t.numel for t in first_list(rec))


def adagrad_io(rec: OpRecord) -> tuple[int, int]:
    read, _ = default_io(rec)
    return read, _list_bytes(rec, "self", "state_sums")


_ADAM = ("aten._fused_adam_", "aten._fused_adamw_", "aten._fused_adam", "aten._fused_adamw")
register(*_ADAM, op_class=OpClass.ELEMENTWISE, io=adam_io)(adam_flops)
register("aten._fused_sgd_", "aten._fused_sgd", op_class=OpClass.ELEMENTWISE, io=sgd_io)(sgd_flops)
register("aten._fused_adagrad_", op_class=OpClass.ELEMENTWISE, io=adagrad_io)(adagrad_flops)
