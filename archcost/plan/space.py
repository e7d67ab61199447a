"""The parallel-plan space: what a plan is, which plans are valid for a model on N GPUs, and all
of them as one numpy structured array (``PLAN_DTYPE``) that the cost kernels score row by row.

Rules follow the systems that run these plans: Megatron-LM (Shoeybi et al. 2019; Narayanan et al.
SC'21 for pipeline and interleaved schedules; Korthikanti et al. 2022 for sequence parallel),
ZeRO / DeepSpeed (Rajbhandari et al. SC'20) and PyTorch FSDP (Zhao et al. VLDB'23) for sharding
stages, and torchtitan's ``ParallelDims`` for the product check and for carving expert ranks out
of the data x context ranks. Each rule is written once, over columns that are either one plan's
ints or whole numpy arrays, so ``validate`` and ``enumerate_plans`` cannot disagree.
"""

from __future__ import annotations

import difflib
import enum
import functools
import itertools
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from archcost.errors import ConfigError, PlanError

__all__ = [
    "Schedule", "Recompute", "ZeroStage", "Offload", "Axis", "PLACEMENTS", "DEFAULT_PLACEMENT",
    "Plan", "ModelShape", "parse_plan", "validate", "check", "PLAN_DTYPE", "plan_from_row",
    "plans_to_array", "enumerate_plans",
]


class _Coded(str, enum.Enum):
    """A closed set of named options; ``code`` (the position) is what a plan row stores."""

    @property
    def code(self) -> int:
        return _members(type(self)).index(self)

    @classmethod
    def from_code(cls, code: int):
        return _members(cls)[int(code)]


@functools.cache
def _members(cls) -> tuple:
    return tuple(cls)


class Schedule(_Coded):
    GPIPE = "gpipe"  # Huang et al. 2019: all forwards, then all backwards
    ONE_F_ONE_B = "1f1b"  # PipeDream-Flush, Narayanan et al. SC'21 Sec. 2.2.1
    INTERLEAVED = "interleaved-1f1b"  # Narayanan et al. SC'21 Sec. 2.2.2, vpp chunks per rank


class Recompute(_Coded):
    NONE = "none"
    SELECTIVE = "selective"  # attention core only (Korthikanti et al. 2022 Sec. 5)
    FULL = "full"  # every layer keeps only its input


class Offload(_Coded):
    NONE = "none"
    OPTIMIZER = "optimizer"  # ZeRO-Offload (Ren et al. 2021): optimizer states and step on CPU
    ACTIVATIONS = "activations"  # saved activations to host memory


class ZeroStage(enum.IntEnum):
    """What data-parallel ranks shard. FSDP FULL_SHARD is stage 3, SHARD_GRAD_OP stage 2; FSDP
    HYBRID_SHARD is stage 3 with ``Plan.hybrid_shard``."""

    NONE = 0  # DDP: everything replicated
    OPTIMIZER = 1
    GRADIENTS = 2
    PARAMETERS = 3


class Axis(_Coded):
    TP = "tp"
    CP = "cp"
    DP = "dp"
    PP = "pp"


# rank layouts, innermost (fastest-varying rank, closest link) first. NB: expert ranks are
# carved from the innermost part of the cp x dp block, as Megatron's order "tp-cp-ep-dp-pp".
PLACEMENTS: tuple[tuple[Axis, ...], ...] = tuple(itertools.permutations(Axis))
DEFAULT_PLACEMENT = PLACEMENTS[0]  # tp, cp, dp, pp


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """One way to train on ``gpus = dp * tp * pp * cp`` GPUs (``ep`` divides ``dp * cp``)."""

    dp: int = 1  # data-parallel replicas (ZeRO/FSDP shard over dp * cp ranks)
    tp: int = 1  # tensor parallel
    pp: int = 1  # pipeline stages
    cp: int = 1  # context parallel (ring attention over sequence chunks)
    ep: int = 1  # expert parallel, carved out of dp * cp
    zero: ZeroStage = ZeroStage.NONE
    hybrid_shard: bool = False  # FSDP hybrid / ZeRO++ hpZ: shard in groups, replicate across
    shard_group: int | None = None  # ranks one shard group spans; set exactly when hybrid_shard
    sp: bool = False  # sequence parallel in the tp group (Korthikanti et al. 2022)
    vpp: int = 1  # virtual pipeline stages (model chunks) per pipeline rank
    schedule: Schedule = Schedule.ONE_F_ONE_B
    mbs: int = 1  # micro-batch, sequences
    gbs: int  # global batch, sequences per optimizer step
    recompute: Recompute = Recompute.NONE
    offload: Offload = Offload.NONE
    placement: tuple[Axis, ...] = DEFAULT_PLACEMENT

    def __post_init__(self) -> None:
        for name in _PLAN_FIELDS:
            value = getattr(self, name)
            coerced = _coerce(name, value)
            if coerced is not value:
                object.__setattr__(self, name, coerced)
        if self.hybrid_shard != (self.shard_group is not None):
            raise PlanError("hybrid_shard and shard_group go together: give hybrid_shard=1 with "
                            "shard_group=<ranks per shard group>, or neither")

    @property
    def gpus(self) -> int:
        return self.dp * self.tp * self.pp * self.cp

    @property
    def num_microbatches(self) -> int:
        """Micro-batches each data-parallel replica runs per step."""
        return self.gbs // (self.dp * self.mbs)

    @property
    def grad_accum_steps(self) -> int:
        """Sequential forward-backward passes outside a pipeline: all micro-batches when pp == 1;
        one when a pipeline schedule consumes them."""
        return self.num_microbatches if self.pp == 1 else 1

    @property
    def zero_group(self) -> int:
        """Ranks one ZeRO/FSDP shard is spread over (dp * cp unless hybrid)."""
        return self.shard_group if self.shard_group is not None else self.dp * self.cp

    def to_string(self) -> str:
        """``parse_plan`` text of this plan; optional keys appear only when not the default."""
        keys = ["dp", "tp", "pp", "cp", "ep", "zero", "sp", "vpp", "schedule", "mbs", "gbs",
                "recompute", "offload"]
        if self.hybrid_shard:
            keys += ["hybrid_shard", "shard_group"]
        if self.placement != DEFAULT_PLACEMENT:
            keys.append("placement")
        return ",".join(f"{k}={_format(getattr(self, k))}" for k in keys)


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelShape:
    """What plan validity needs to know about a model."""

    layers: int
    heads: int
    hidden: int
    seq_len: int  # tokens per sequence
    kv_heads: int | None = None  # None: as many as heads (no grouped-query attention)
    experts: int = 0  # routed experts per MoE layer; 0 = dense
    vocab: int | None = None

    def __post_init__(self) -> None:
        if self.kv_heads is None:
            object.__setattr__(self, "kv_heads", self.heads)
        for name in ("layers", "heads", "hidden", "seq_len", "kv_heads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"model {name}({getattr(self, name)}) must be >= 1")
        if self.heads % self.kv_heads:
            raise ConfigError(f"model heads({self.heads}) % kv_heads({self.kv_heads}) != 0: "
                              "query heads must group evenly over key/value heads")
        if self.experts < 0:
            raise ConfigError(f"model experts({self.experts}) must be >= 0 (0 = dense)")


# ---------------------------------------------------------------- parsing ---------------------

def _format(value) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, enum.IntEnum):
        return str(int(value))
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple):
        return "-".join(a.value for a in value)
    return str(value)


def _positive(key: str, value) -> int:
    try:
        n = operator.index(value)
    except TypeError:
        raise PlanError(f"{key}={value!r}: expected a positive integer") from None
    if n < 1:
        raise PlanError(f"{key}={n}: expected a positive integer")
    return int(n)


def _parse_int(key: str, text: str) -> int:
    try:
        return _positive(key, int(text))
    except ValueError:
        raise PlanError(f"{key}={text!r}: expected a positive integer") from None


def _parse_bool(key: str, text: str) -> bool:
    t = text.strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise PlanError(f"{key}={text!r}: allowed 0, 1 (or true, false)")


def _enum_parser(cls, aliases: Mapping[str, object] = {}):  # noqa: B006 - read-only
    def parse(key: str, text: str):
        t = text.strip().lower()
        for member in cls:
            if t in (str(member.value), member.name.lower()):
                return member
        if t in aliases:
            return aliases[t]
        allowed = ", ".join([str(m.value) for m in cls] + list(aliases))
        raise PlanError(f"{key}={text!r}: allowed {allowed}")
    return parse


def _parse_placement(key: str, text: str) -> tuple[Axis, ...]:
    names = [n for n in re.split(r"[-/ ]+", text.strip().lower()) if n]
    if sorted(names) != sorted(a.value for a in Axis):
        raise PlanError(f"{key}={text!r}: list tp, cp, dp, pp once each, innermost first "
                        "(e.g. tp-cp-dp-pp)")
    return tuple(Axis(n) for n in names)


_INT_KEYS = ("dp", "tp", "pp", "cp", "ep", "shard_group", "vpp", "mbs", "gbs")
_BOOL_KEYS = ("hybrid_shard", "sp")
_VALUE_PARSERS: dict[str, Callable[[str, str], object]] = {
    **{k: _parse_int for k in _INT_KEYS},
    **{k: _parse_bool for k in _BOOL_KEYS},
    "zero": _enum_parser(ZeroStage, {"fsdp-full": ZeroStage.PARAMETERS,
                                     "fsdp-grad-op": ZeroStage.GRADIENTS}),
    "schedule": _enum_parser(Schedule, {"interleaved": Schedule.INTERLEAVED}),
    "recompute": _enum_parser(Recompute),
    "offload": _enum_parser(Offload),
    "placement": _parse_placement,
}
_FIELD_ENUMS = {"zero": ZeroStage, "schedule": Schedule, "recompute": Recompute,
                "offload": Offload}
_PLAN_FIELDS = Plan.__dataclass_fields__.keys()


def _coerce(name: str, value):
    """A Plan field value from a typed value or text; PlanError naming the field if bad."""
    if name in _FIELD_ENUMS:
        if type(value) is _FIELD_ENUMS[name]:
            return value
        return _VALUE_PARSERS[name](name, str(getattr(value, "value", value)))
    if name in _BOOL_KEYS:
        if type(value) is bool:
            return value
        return _parse_bool(name, value) if isinstance(value, str) else bool(value)
    if name == "placement":
        if isinstance(value, tuple) and all(type(a) is Axis for a in value) and value in PLACEMENTS:
            return value
        text = value if isinstance(value, str) else "-".join(str(getattr(a, "value", a))
                                                             for a in value)
        return _parse_placement(name, text)
    if name == "shard_group" and value is None:
        return value
    if type(value) is int and value >= 1:
        return value
    return _parse_int(name, value) if isinstance(value, str) else _positive(name, value)


_KEY_ALIASES = {"zero_stage": "zero", "sequence_parallel": "sp", "micro_batch_size": "mbs",
                "global_batch_size": "gbs", "num_microbatches": "num_micro"}


def _canonical_key(key: str, known: Iterable[str]) -> str:
    key = _KEY_ALIASES.get(key.strip().lower(), key.strip().lower())
    known = list(known)
    if key in known:
        return key
    near = difflib.get_close_matches(key, known, n=1, cutoff=0.4)
    hint = f"did you mean {near[0]!r}? " if near else ""
    raise PlanError(f"unknown plan key {key!r}: {hint}(keys: {', '.join(known)})")


def _pairs(text: str) -> Iterable[tuple[str, str]]:
    for item in (s for s in text.split(",") if s.strip()):
        key, eq, value = item.partition("=")
        if not eq or not value.strip():
            raise PlanError(f"plan item {item.strip()!r}: write key=value, e.g. tp=8")
        yield key, value.strip()


def parse_plan(text: str, **defaults) -> Plan:
    """A plan from ``"dp=8,tp=8,pp=4,zero=1,mbs=1,gbs=512,schedule=1f1b"``. Keys left out come
    from ``defaults`` (Plan field names, typed values or text), then from ``Plan``'s defaults;
    ``gbs`` has none. ``zero`` also takes ``fsdp-full`` (3), ``fsdp-grad-op`` (2) and
    ``fsdp-hybrid`` (3 with hybrid_shard=1, which then needs shard_group)."""
    values: dict[str, object] = {}
    for key, value in defaults.items():
        key = _canonical_key(key, _VALUE_PARSERS)
        values[key] = _VALUE_PARSERS[key](key, value) if isinstance(value, str) else value
    given: set[str] = set()
    hybrid_alias = False
    for raw_key, text_value in _pairs(text):
        key = _canonical_key(raw_key, _VALUE_PARSERS)
        if key in given:
            raise PlanError(f"plan key {key!r} given twice: keep one")
        given.add(key)
        if key == "zero" and text_value.strip().lower() == "fsdp-hybrid":
            values["zero"], hybrid_alias = ZeroStage.PARAMETERS, True
            continue
        values[key] = _VALUE_PARSERS[key](key, text_value)
    if hybrid_alias:
        if "hybrid_shard" in given and not values["hybrid_shard"]:
            raise PlanError("zero=fsdp-hybrid conflicts with hybrid_shard=0: drop one")
        values["hybrid_shard"] = True
    if "gbs" not in values:
        raise PlanError("plan has no gbs: add gbs=<global batch in sequences>")
    return Plan(**values)


# ---------------------------------------------------------------- validity rules --------------
# A rule reads named columns (ints of one plan, or numpy arrays of many) and returns
# (broken, message): ``broken`` a bool or bool array; ``message()`` one line, for one plan.

@dataclass(frozen=True, slots=True)
class _Rule:
    reads: frozenset[str]
    check: Callable


_RULES: list[_Rule] = []
_INTERLEAVED = Schedule.INTERLEAVED.code
_1F1B = Schedule.ONE_F_ONE_B.code


def _rule(*reads: str):
    def register(fn):
        _RULES.append(_Rule(frozenset(reads), fn))
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
    return (c["vpp"] > 1) & (shape.layers % (c["pp"] * c["vpp"]) != 0), lambda: (
        f"layers({shape.layers}) % (pp({c['pp']})*vpp({c['vpp']})) != 0: interleaved chunks "
        "need equal layer counts")


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


def _columns(plan: Plan) -> dict[str, int]:
    c = {k: int(getattr(plan, k)) for k in ("dp", "tp", "pp", "cp", "ep", "zero",
                                             "hybrid_shard", "sp", "vpp", "mbs", "gbs")}
    c.update(schedule=plan.schedule.code, recompute=plan.recompute.code,
             offload=plan.offload.code, placement=PLACEMENTS.index(plan.placement),
             shard_group=plan.zero_group, num_micro=plan.num_microbatches, gpus=plan.gpus)
    return c


def validate(plan: Plan, shape: ModelShape, gpus: int | None = None) -> list[str]:
    """Every reason ``plan`` cannot run ``shape`` on ``gpus`` GPUs, one line each; [] if valid."""
    c = _columns(plan)
    reasons = []
    for rule in _RULES:
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
    rows = [tuple(_columns(p)[k] for k in _ARRAY_FIELDS) for p in plans]
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
    return value.code if isinstance(value, _Coded) else int(value)


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
        self.pending_rules = list(_RULES)
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
    vpps: Iterable[int] = (1, 2, 4),
    max_mbs: int | None = None,
) -> np.ndarray:
    """Every valid plan for ``shape`` on exactly ``gpus`` GPUs with global batch ``gbs``, as a
    PLAN_DTYPE array, in lexicographic order of (dp, tp, pp, mbs, ep, vpp, schedule, sp, zero,
    recompute).

    Axes: dp, tp, pp, cp dividing ``gpus`` (tp <= ``max_tp``, default one 8-GPU NVLink node),
    ep dividing gpus, zero 0-3, sp, vpp in ``vpps``, every schedule, mbs a power of two up to
    ``max_mbs`` (default gbs), every recompute policy; offload none, no hybrid sharding and the
    default placement unless ``fixed``. ``fixed`` pins fields (``{"pp": 4}``, ``"pp=4,zero=1"`` or
    ``["pp=4"]``), replacing the axis (so ``fixed`` tp=16 beats ``max_tp``); fixing
    ``hybrid_shard=1`` enumerates shard_group unless it is fixed too. ``constraints`` are
    strings ``"tp<=8"``, ``"pp>=2"``, ``"dp=16"``, ``"schedule!=gpipe"`` over PLAN_DTYPE fields.
    Rules are applied as soon as the columns they read exist, so the space never blows up.
    """
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
        "recompute": [r.code for r in Recompute], "offload": [Offload.NONE.code], "placement": [0],
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
