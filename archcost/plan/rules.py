"""Plan validity: every rule once, with the reason a broken plan gets.

Rules follow the systems that run these plans: Megatron-LM (Shoeybi et al. 2019; Narayanan et al.
SC'21 for pipeline and interleaved schedules; Korthikanti et al. 2022 for sequence parallel),
ZeRO / DeepSpeed (Rajbhandari et al. SC'20) and PyTorch FSDP (Zhao et al. VLDB'23) for sharding
stages, and torchtitan's ``ParallelDims`` for the product check and for carving expert ranks out
of the data x context ranks. Each rule is written once, over columns that are either one plan's
ints or whole numpy arrays, so ``validate`` and ``enumerate_plans`` cannot disagree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from archcost.errors import PlanError
from archcost.plan.space import PLACEMENTS, ModelShape, Offload, Plan, Schedule

__all__ = ["RULES", "Rule", "columns", "validate", "check"]

# ---------------------------------------------------------------- validity rules --------------
# A rule reads named columns (ints of one plan, or numpy arrays of many) and returns
# (broken, message): ``broken`` a bool or bool array; ``message()`` one line, for one plan.

@dataclass(frozen=True, slots=True)
class Rule:
    reads: frozenset[str]
    check: Callable


RULES: list[Rule] = []
_INTERLEAVED = Schedule.INTERLEAVED.code
_1F1B = Schedule.ONE_F_ONE_B.code


def _rule(*reads: str):
    def register(fn):
        RULES.append(Rule(frozenset(reads), fn))
        return fn
    return register


@_rule("dp", "tp", "pp", "cp")
def _product(c, shape, gpus):
    n = c["dp"] * c["tp"] * c["pp"] * c["cp"]
    return (False if gpus is None else n != gpus), lambda: (
        f"dp({c['dp']}) * tp({c['tp']}) * pp({c['pp']}) * cp({c['cp']}) = {n} != GPUs({gpus}): "
        f"choose sizes whose product is {gpus}")


def _divisors_text(n: int) -> str:
    return ", ".join(str(d) for d in range(1, n + 1) if n % d == 0)


@_rule("tp")
def _heads(c, shape, gpus):
    return shape.heads % c["tp"] != 0, lambda: (
        f"heads({shape.heads}) % tp({c['tp']}) != 0: use tp in {_divisors_text(shape.kv_heads)}")


@_rule("tp")
def _kv_heads(c, shape, gpus):
    # kv_heads divides heads, so only report it when the heads rule is silent
    return (shape.kv_heads % c["tp"] != 0) & (shape.heads % c["tp"] == 0), lambda: (
        f"kv_heads({shape.kv_heads}) % tp({c['tp']}) != 0: use tp in "
        f"{_divisors_text(shape.kv_heads)}")


@_rule("ep")
def _ep_dense(c, shape, gpus):
    return (c["ep"] > 1) & (shape.experts == 0), lambda: (
        f"ep({c['ep']}) > 1 on a dense model (experts=0): set ep=1")


@_rule("ep")
def _experts(c, shape, gpus):
    return (shape.experts > 0) & (shape.experts % c["ep"] != 0), lambda: (
        f"experts({shape.experts}) % ep({c['ep']}) != 0: use ep in {_divisors_text(shape.experts)}")


@_rule("ep", "dp", "cp")
def _ep_carved(c, shape, gpus):
    return (c["dp"] * c["cp"]) % c["ep"] != 0, lambda: (
        f"ep({c['ep']}) must divide dp*cp({c['dp'] * c['cp']}): expert ranks are carved from "
        "data x context ranks")


@_rule("ep", "tp", "sp")
def _ep_needs_sp(c, shape, gpus):
    return (c["ep"] > 1) & (c["tp"] > 1) & (c["sp"] == 0), lambda: (
        f"ep({c['ep']}) with tp({c['tp']}) needs sp=1 (as Megatron-LM requires)")


@_rule("pp")
def _pp_layers(c, shape, gpus):
    return c["pp"] > shape.layers, lambda: (
        f"pp({c['pp']}) > layers({shape.layers}): every stage needs a layer")


@_rule("pp", "vpp")
def _vpp_layers(c, shape, gpus):
    # chunks may differ by one layer (plan.partition.uniform_counts), as Megatron-Core's uneven
    # split (account_for_embedding/loss_in_pipeline_split) and torchtitan's split points run
    # 126 layers on 64 and 16 chunks
    return (c["vpp"] > 1) & (shape.layers < c["pp"] * c["vpp"]), lambda: (
        f"layers({shape.layers}) < pp({c['pp']})*vpp({c['vpp']}): every interleaved chunk "
        "needs a layer")


@_rule("vpp", "schedule")
def _vpp_schedule(c, shape, gpus):
    return (c["vpp"] > 1) & (c["schedule"] != _INTERLEAVED), lambda: (
        f"vpp({c['vpp']}) > 1 needs schedule interleaved-1f1b, not "
        f"{Schedule.from_code(c['schedule']).value}")


@_rule("vpp", "schedule")
def _interleaved_vpp(c, shape, gpus):
    return (c["vpp"] == 1) & (c["schedule"] == _INTERLEAVED), lambda: (
        "schedule interleaved-1f1b needs vpp > 1: set vpp=2 or schedule=1f1b")


@_rule("pp", "schedule")
def _no_pipeline(c, shape, gpus):
    return (c["pp"] == 1) & (c["schedule"] != _1F1B), lambda: (
        f"schedule {Schedule.from_code(c['schedule']).value} needs pp > 1: with pp=1 use "
        "schedule=1f1b")


@_rule("gbs", "dp", "mbs")
def _batch(c, shape, gpus):
    return c["gbs"] % (c["dp"] * c["mbs"]) != 0, lambda: (
        f"gbs({c['gbs']}) % (dp({c['dp']})*mbs({c['mbs']})) != 0: the global batch must split "
        "into whole micro-batches")


@_rule("gbs", "dp", "mbs", "pp", "schedule")
def _interleaved_micro(c, shape, gpus):
    m = c["gbs"] // (c["dp"] * c["mbs"])
    return (c["schedule"] == _INTERLEAVED) & (m % c["pp"] != 0), lambda: (
        f"num_microbatches({m}) % pp({c['pp']}) != 0: interleaved 1F1B needs a multiple of pp")


def _where(cond, a, b):
    """``np.where`` over columns, a plain conditional over one plan's ints."""
    return np.where(cond, a, b) if isinstance(cond, np.ndarray) else (a if cond else b)


@_rule("tp", "cp", "sp")
def _seq_split(c, shape, gpus):
    # NB: cp > 1 splits the sequence into 2*cp chunks for causal load balance (Megatron/TE and
    # torchtitan); sp splits each rank's part over tp.
    factor = _where(c["sp"] == 1, c["tp"], 1) * _where(c["cp"] > 1, 2 * c["cp"], 1)

    def message() -> str:
        parts = ([f"tp({c['tp']})"] if c["sp"] else []) + ([f"2*cp({c['cp']})"] if c["cp"] > 1
                                                             else [])
        return (f"seq_len({shape.seq_len}) % ({'*'.join(parts)}) != 0: sequence/context "
                "parallel split the sequence evenly")
    return shape.seq_len % factor != 0, message


@_rule("zero", "pp")
def _zero3_pp(c, shape, gpus):
    return (c["zero"] == 3) & (c["pp"] > 1), lambda: (
        f"zero(3) with pp({c['pp']}) > 1 is unsupported (as in DeepSpeed): use zero<=2 or pp=1")


@_rule("sp", "tp")
def _sp_tp(c, shape, gpus):
    return (c["sp"] == 1) & (c["tp"] == 1), lambda: "sp needs tp > 1: set sp=0"


@_rule("zero", "dp", "cp")
def _zero_alone(c, shape, gpus):
    return (c["zero"] > 0) & (c["dp"] * c["cp"] == 1), lambda: (
        f"zero({c['zero']}) needs dp*cp > 1 to shard over: set zero=0")


@_rule("hybrid_shard", "zero")
def _hybrid_zero(c, shape, gpus):
    return (c["hybrid_shard"] == 1) & (c["zero"] == 0), lambda: (
        "hybrid_shard needs zero >= 1: set zero=3 (FSDP hybrid) or hybrid_shard=0")


@_rule("hybrid_shard", "shard_group", "dp", "cp")
def _hybrid_group(c, shape, gpus):
    n, g = c["dp"] * c["cp"], c["shard_group"]
    return (c["hybrid_shard"] == 1) & ((n % g != 0) | (g == 1) | (g == n)), lambda: (
        f"shard_group({g}) must divide dp*cp({n}) and lie strictly between 1 and it")


@_rule("offload", "zero")
def _offload_zero(c, shape, gpus):
    return (c["offload"] == Offload.OPTIMIZER.code) & (c["zero"] == 0), lambda: (
        "offload=optimizer needs zero >= 1 (ZeRO-Offload moves the partitioned optimizer)")


def columns(plan: Plan) -> dict[str, int]:
    c = {k: int(getattr(plan, k)) for k in ("dp", "tp", "pp", "cp", "ep", "zero",
                                             "hybrid_shard", "sp", "vpp", "mbs", "gbs")}
    c.update(schedule=plan.schedule.code, recompute=plan.recompute.code,
             offload=plan.offload.code, placement=PLACEMENTS.index(plan.placement),
             shard_group=plan.zero_group, num_micro=plan.num_microbatches, gpus=plan.gpus)
    return c


def validate(plan: Plan, shape: ModelShape, gpus: int | None = None) -> list[str]:
    """Every reason ``plan`` cannot run ``shape`` on ``gpus`` GPUs, one line each; [] if valid."""
    c = columns(plan)
    reasons = []
    for rule in RULES:
        broken, message = rule.check(c, shape, gpus)
        if bool(broken):
            reasons.append(message())
    return reasons


def check(plan: Plan, shape: ModelShape, gpus: int | None = None) -> Plan:
    """``plan`` if valid, else PlanError with every reason joined by '; '."""
    reasons = validate(plan, shape, gpus)
    if reasons:
        raise PlanError(f"plan {plan.to_string()} is invalid: " + "; ".join(reasons))
    return plan
