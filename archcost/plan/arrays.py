"""All valid plans as one numpy structured array (``PLAN_DTYPE``, one row per plan, int32
columns) that the cost kernels score row by row; enumeration applies each rule of ``rules`` as
soon as the columns it reads exist, so the space never blows up.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable, Mapping

import numpy as np

from archcost.errors import PlanError
from archcost.options import CodedEnum
from archcost.plan.rules import RULES, columns
from archcost.plan.space import (
    PLACEMENTS,
    ModelShape,
    Offload,
    Plan,
    Recompute,
    Schedule,
    ZeroStage,
    _canonical_key,
    _coerce,
    _pairs,
    _parse_int,
    _positive,
)

__all__ = ["PLAN_DTYPE", "plan_from_row", "plans_to_array", "enumerate_plans"]

# ---------------------------------------------------------------- plan arrays -----------------

_ARRAY_FIELDS = ("dp", "tp", "pp", "cp", "ep", "zero", "hybrid_shard", "shard_group", "sp", "vpp",
                 "schedule", "mbs", "gbs", "recompute", "offload", "placement", "num_micro", "gpus")
# One plan per row, int32 each. Enum fields hold ``code`` (position in the Enum): schedule
# gpipe=0, 1f1b=1, interleaved-1f1b=2; recompute none=0, selective=1, full=2; offload none=0,
# optimizer=1, activations=2; zero the stage; placement an index into PLACEMENTS; shard_group the
# ranks a shard spans (dp*cp unless hybrid_shard); num_micro = gbs // (dp*mbs); gpus the product.
PLAN_DTYPE = np.dtype([(name, np.int32) for name in _ARRAY_FIELDS])


def plan_from_row(row) -> Plan:
    hybrid = bool(row["hybrid_shard"])
    return Plan(dp=int(row["dp"]), tp=int(row["tp"]), pp=int(row["pp"]), cp=int(row["cp"]),
                ep=int(row["ep"]), zero=ZeroStage(int(row["zero"])), hybrid_shard=hybrid,
                shard_group=int(row["shard_group"]) if hybrid else None, sp=bool(row["sp"]),
                vpp=int(row["vpp"]), schedule=Schedule.from_code(row["schedule"]),
                mbs=int(row["mbs"]), gbs=int(row["gbs"]),
                recompute=Recompute.from_code(row["recompute"]),
                offload=Offload.from_code(row["offload"]),
                placement=PLACEMENTS[int(row["placement"])])


def plans_to_array(plans: Iterable[Plan]) -> np.ndarray:
    rows = [tuple(columns(p)[k] for k in _ARRAY_FIELDS) for p in plans]
    return np.array(rows, dtype=PLAN_DTYPE)


# ---------------------------------------------------------------- enumeration -----------------

_OPS = {"<=": operator.le, ">=": operator.ge, "==": operator.eq, "=": operator.eq,
        "!=": operator.ne, "<": operator.lt, ">": operator.gt}
_CONSTRAINT = re.compile(r"^\s*([A-Za-z_]+)\s*(<=|>=|==|!=|=|<|>)\s*([A-Za-z0-9_\-]+)\s*$")
_UNORDERED = ("schedule", "recompute", "offload", "placement")


def _to_code(key: str, value) -> int:
    """The PLAN_DTYPE column value of a field value given as text or typed."""
    if key in ("num_micro", "gpus"):
        return _parse_int(key, value) if isinstance(value, str) else _positive(key, value)
    value = _coerce(key, value)
    if key == "placement":
        return PLACEMENTS.index(value)
    return value.code if isinstance(value, CodedEnum) else int(value)


def _parse_constraint(text: str) -> tuple[str, Callable, int]:
    m = _CONSTRAINT.match(text)
    if not m:
        raise PlanError(f"constraint {text!r}: write key, operator, value, e.g. tp<=8 or pp>=2 "
                        "(operators <, <=, =, !=, >=, >)")
    key = _canonical_key(m[1], _ARRAY_FIELDS)
    if key in _UNORDERED and m[2] not in ("=", "==", "!="):
        raise PlanError(f"constraint {text!r}: {key} has no order, use = or !=")
    return key, _OPS[m[2]], _to_code(key, m[3])


def _parse_fixed(fixed) -> dict[str, int]:
    if fixed is None:
        return {}
    if isinstance(fixed, str):
        fixed = [fixed]
    items = list(fixed.items()) if isinstance(fixed, Mapping) else [
        pair for text in fixed for pair in _pairs(text)]
    out: dict[str, int] = {}
    settable = [k for k in _ARRAY_FIELDS if k not in ("gbs", "num_micro", "gpus")]
    for raw_key, value in items:
        key = _canonical_key(raw_key, _ARRAY_FIELDS)
        if key not in settable:
            raise PlanError(f"fixed {key}: gbs and gpus are arguments of enumerate_plans and "
                            "num_micro follows from them; use a constraint to filter it")
        out[key] = _to_code(key, value)
    return out


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _expand(cols: dict[str, np.ndarray], key: str, values) -> dict[str, np.ndarray]:
    """Cross join: every row with every value of a new column."""
    values = np.asarray(values, dtype=np.int32)
    n = len(next(iter(cols.values())))
    out = {k: np.repeat(v, len(values)) for k, v in cols.items()}
    out[key] = np.tile(values, n)
    return out


class _Filter:
    """Applies each rule and constraint once, as soon as the columns it reads exist."""

    def __init__(self, shape: ModelShape, gpus: int, constraints: list) -> None:
        self.shape, self.gpus = shape, gpus
        self.pending_rules = list(RULES)
        self.pending_constraints = list(constraints)

    def __call__(self, cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        keep = np.ones(len(next(iter(cols.values()))), dtype=bool)
        for rule in [r for r in self.pending_rules if r.reads <= cols.keys()]:
            keep &= ~np.asarray(rule.check(cols, self.shape, self.gpus)[0], dtype=bool)
            self.pending_rules.remove(rule)
        for con in [c for c in self.pending_constraints if c[0] in cols]:
            keep &= con[1](cols[con[0]], con[2])
            self.pending_constraints.remove(con)
        return {k: v[keep] for k, v in cols.items()}


def enumerate_plans(
    shape: ModelShape,
    gpus: int,
    gbs: int,
    *,
    max_tp: int | None = 8,
    constraints: Iterable[str] | str = (),
    fixed: Mapping[str, object] | Iterable[str] | str | None = None,
    vpps: Iterable[int] = range(1, 9),
    max_mbs: int | None = None,
    placements: str = "default",
) -> np.ndarray:
    """Every valid plan for ``shape`` on exactly ``gpus`` GPUs with global batch ``gbs``, as a
    PLAN_DTYPE array, in lexicographic order of (dp, tp, pp, mbs, ep, vpp, schedule, sp, zero,
    recompute).

    Axes: dp, tp, pp, cp dividing ``gpus`` (tp <= ``max_tp``, default one 8-GPU NVLink node),
    ep dividing gpus, zero 0-3, sp, vpp in ``vpps`` (default 1-8: Megatron-LM interleaves any
    number of chunks that divides the layers of a stage, e.g. SC'21's 3 chunks of 105 layers on
    35 stages), every schedule, mbs a power of two up to
    ``max_mbs`` (default gbs), every recompute policy; offload none, no hybrid sharding and the
    default placement unless ``fixed``. ``fixed`` pins fields (``{"pp": 4}``, ``"pp=4,zero=1"`` or
    ``["pp=4"]``), replacing the axis (so ``fixed`` tp=16 beats ``max_tp``); fixing
    ``hybrid_shard=1`` enumerates shard_group unless it is fixed too. ``constraints`` are
    strings ``"tp<=8"``, ``"pp>=2"``, ``"dp=16"``, ``"schedule!=gpipe"`` over PLAN_DTYPE fields.
    Rules are applied as soon as the columns they read exist, so the space never blows up.
    ``placements="all"`` tries every rank order of (tp, cp, dp, pp) instead of the default.
    """
    if placements not in ("default", "all"):
        raise PlanError(f"placements={placements!r}: use default or all")
    gpus, gbs = _positive("gpus", gpus), _positive("gbs", gbs)
    fix = _parse_fixed(fixed)
    constraints = [constraints] if isinstance(constraints, str) else list(constraints)
    keep = _Filter(shape, gpus, [_parse_constraint(t) for t in constraints])
    divs = _divisors(gpus)
    top_mbs = gbs if max_mbs is None else max_mbs
    axes: dict[str, list[int]] = {
        "dp": divs, "tp": [d for d in divs if max_tp is None or d <= max_tp], "pp": divs,
        "cp": divs, "mbs": [1 << k for k in range(top_mbs.bit_length())], "ep": divs,
        "hybrid_shard": [0], "shard_group": divs, "vpp": sorted(set(vpps)),
        "schedule": [s.code for s in Schedule], "sp": [0, 1], "zero": [int(z) for z in ZeroStage],
        "recompute": [r.code for r in Recompute], "offload": [Offload.NONE.code],
        "placement": list(range(len(PLACEMENTS))) if placements == "all" else [0],
    }
    for key, value in fix.items():
        axes[key] = [value]
    if "shard_group" in fix and axes["hybrid_shard"] != [1]:
        raise PlanError("fixed shard_group needs hybrid_shard=1 fixed too")

    base = [(dp, tp, pp, gpus // (dp * tp * pp))
            for dp in axes["dp"] if gpus % dp == 0
            for tp in axes["tp"] if (gpus // dp) % tp == 0
            for pp in axes["pp"] if (gpus // (dp * tp)) % pp == 0
            if gpus // (dp * tp * pp) in axes["cp"]]
    table = np.array(base, dtype=np.int32).reshape(-1, 4)
    cols = {k: table[:, i] for i, k in enumerate(("dp", "tp", "pp", "cp"))}
    cols["gbs"] = np.full(len(table), gbs, dtype=np.int32)
    cols["gpus"] = np.full(len(table), gpus, dtype=np.int32)
    cols = keep(cols)
    cols = keep(_expand(cols, "mbs", axes["mbs"]))
    cols["num_micro"] = cols["gbs"] // (cols["dp"] * cols["mbs"])
    for key in ("ep", "hybrid_shard"):
        cols = keep(_expand(cols, key, axes[key]))
    if axes["hybrid_shard"] == [1]:
        cols = _expand(cols, "shard_group", axes["shard_group"])
    else:
        cols["shard_group"] = cols["dp"] * cols["cp"]
    for key in ("vpp", "schedule", "sp", "zero", "recompute", "offload", "placement"):
        cols = keep(_expand(cols, key, axes[key]))
    assert not keep.pending_rules and not keep.pending_constraints, "a rule read a missing column"
    out = np.empty(len(cols["dp"]), dtype=PLAN_DTYPE)
    for name in _ARRAY_FIELDS:
        out[name] = cols[name]
    return out
