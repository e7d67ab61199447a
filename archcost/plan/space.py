"""What a parallel plan is: its fields, the model facts its validity depends on, and parsing
from ``"dp=8,tp=8,pp=4,..."`` text. Validity rules live in ``rules``; the space of all valid
plans as one numpy structured array in ``arrays``.

"""

from __future__ import annotations

import difflib
import enum
import itertools
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from archcost.errors import ConfigError, PlanError
from archcost.options import CodedEnum, Recompute

__all__ = [
    "Schedule", "Recompute", "ZeroStage", "Offload", "Axis", "PLACEMENTS", "DEFAULT_PLACEMENT",
    "Plan", "ModelShape", "parse_plan",
]


class Schedule(CodedEnum):
    GPIPE = "gpipe"  # Huang et al. 2019: all forwards, then all backwards
    ONE_F_ONE_B = "1f1b"  # PipeDream-Flush, Narayanan et al. SC'21 Sec. 2.2.1
    INTERLEAVED = "interleaved-1f1b"  # Narayanan et al. SC'21 Sec. 2.2.2, vpp chunks per rank


class Offload(CodedEnum):
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


class Axis(CodedEnum):
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
