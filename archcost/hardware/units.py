"""Quantities with units, as written in profile files: "989 TFLOP/s", "80 GB", "200 Gb/s", "3 us".

This is the file boundary of the hardware layer: everything is converted here to SI base units
(FLOP/s, bytes, bytes/s, seconds, watts, USD per hour) and nothing downstream sees a unit string;
``format_quantity`` is the way back, for the profiles ``archcost calibrate`` writes.

Conventions (SI / IEC 80000-13):
- decimal prefixes unless the binary form is written: "80 GB" = 80e9 bytes, "80 GiB" = 80 * 2**30;
- ``B`` is a byte, ``b`` a bit: "200 Gb/s" (an InfiniBand HDR port) = 25e9 bytes/s;
- a price is "$2.50/h", "2.50 $/h", "2.50 USD/h" or a bare number of USD per hour;
- every other kind needs its unit: a bare 80 is refused rather than guessed.
"""

from __future__ import annotations

import enum
import re

__all__ = ["Quantity", "UnitError", "parse_quantity", "format_quantity", "KINDS"]


class Quantity(str, enum.Enum):
    """The kinds of quantity a profile field can hold."""

    FLOPS_RATE = "flops_rate"
    BYTES = "bytes"
    BANDWIDTH = "bandwidth"
    TIME = "time"
    POWER = "power"
    USD_PER_HOUR = "usd_per_hour"


# how each kind is named in messages, and how to write one
_NOUN = {
    Quantity.FLOPS_RATE: ("a FLOP rate", "989 TFLOP/s"),
    Quantity.BYTES: ("a size in bytes", "80 GB"),
    Quantity.BANDWIDTH: ("a bandwidth", "3.35 TB/s"),
    Quantity.TIME: ("a time", "3 us"),
    Quantity.POWER: ("a power", "700 W"),
    Quantity.USD_PER_HOUR: ("a price per hour", "$2.50/h"),
}
KINDS = {k.value: example for k, (_, example) in _NOUN.items()}  # kind -> example

_DECIMAL = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}
_BINARY = {"Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50}
_TIME = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "\u00b5s": 1e-6, "\u03bcs": 1e-6, "ns": 1e-9}
_PER_HOUR = {"/h", "/hr", "/hour"}

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_RE = re.compile(rf"^\s*(\$?)\s*({_NUM})\s*(.*?)\s*$")


class UnitError(ValueError):
    """A value whose number or unit cannot be read as the kind asked for."""


def parse_quantity(value: object, kind: Quantity | str) -> float:
    """``value`` (a string with a unit; a bare number only for prices) in SI units.

    >>> parse_quantity("200 Gb/s", "bandwidth")
    25000000000.0
    """
    kind = Quantity(kind)
    noun, example = _NOUN[kind]
    if isinstance(value, bool) or value is None:
        raise UnitError(f"{value!r} is not {noun}; write it like {example!r}")
    if isinstance(value, (int, float)):
        if kind is Quantity.USD_PER_HOUR:
            return float(value)
        raise UnitError(f"{value!r} has no unit; write it like {example!r}")
    m = _RE.match(str(value))
    if not m:
        raise UnitError(f"{value!r} is not a number with a unit; write it like {example!r}")
    dollar, number, unit = m.group(1), float(m.group(2)), m.group(3).replace(" ", "")
    if dollar:  # "$2.50/h"
        if kind is Quantity.USD_PER_HOUR and unit in _PER_HOUR:
            return number
        raise UnitError(f"{value!r} is not {noun}; write it like {example!r}")
    factor = _factor(unit, kind)
    if factor is not None:
        return number * factor
    if not unit:
        raise UnitError(f"{value!r} has no unit; write it like {example!r}")
    raise UnitError(f"{value!r} is {_what(unit)}not {noun}; write it like {_fix(m.group(2), unit, kind)!r}")


def _factor(unit: str, kind: Quantity) -> float | None:
    if kind is Quantity.TIME:
        return _TIME.get(unit)
    if kind is Quantity.POWER:
        m = re.fullmatch(r"([kKM]?)W", unit)
        return _DECIMAL[m.group(1)] if m else None
    if kind is Quantity.USD_PER_HOUR:
        m = re.fullmatch(r"(\$|USD)(/h|/hr|/hour)", unit)
        return 1.0 if m else None
    if kind is Quantity.FLOPS_RATE:
        # an integer rate (int8 tensor cores) is written in operations: "624 TOPS", "624 TOP/s"
        m = (re.fullmatch(r"([kKMGTPE]?)(?:FLOP|OP)(?:S|s)?/s", unit)
             or re.fullmatch(r"([kKMGTPE]?)(?:FLOP|OP)S", unit))
        return _DECIMAL[m.group(1)] if m else None
    if kind is Quantity.BYTES:
        return _data(unit)
    if kind is Quantity.BANDWIDTH:
        m = re.fullmatch(r"(.+?)(?:/s|ps)", unit)
        return _data(m.group(1)) if m else None
    return None


def _data(unit: str) -> float | None:
    """Bytes per unit of "GB", "GiB", "Gb", "MB", ... (``b`` = bit)."""
    m = re.fullmatch(r"([kKMGTPE]i?)?([Bb])", unit)
    if not m:
        return None
    prefix = m.group(1) or ""
    scale = _BINARY.get(prefix) if prefix.endswith("i") else _DECIMAL.get(prefix)
    if scale is None:
        return None
    return scale / 8 if m.group(2) == "b" else scale


def _what(unit: str) -> str:
    """'a size in bytes, ' when ``unit`` belongs to another kind, else ''."""
    for other in Quantity:
        if other is not Quantity.USD_PER_HOUR and _factor(unit, other) is not None:
            return f"{_NOUN[other][0]}, "
    return ""


def _fix(number: str, unit: str, kind: Quantity) -> str:
    """The user's own figure rewritten in the kind asked for, when the repair is obvious."""
    if kind is Quantity.BANDWIDTH and _data(unit) is not None:
        return f"{number} {unit}/s"  # "3.35 TB" -> "3.35 TB/s"
    if kind is Quantity.BYTES and unit.endswith("/s") and _data(unit[:-2]) is not None:
        return f"{number} {unit[:-2]}"  # "80 GB/s" -> "80 GB"
    if kind is Quantity.FLOPS_RATE and re.fullmatch(r"[kKMGTPE]?FLOPs?", unit):
        return f"{number} {unit.rstrip('s')}/s"  # "989 TFLOP" -> "989 TFLOP/s"
    return _NOUN[kind][1]


_UNIT = {Quantity.FLOPS_RATE: "FLOP/s", Quantity.BYTES: "B", Quantity.BANDWIDTH: "B/s",
         Quantity.POWER: "W"}
_PREFIX_STEPS = ((1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"),
                 (1.0, ""))
_TIME_STEPS = ((1.0, "s"), (1e-3, "ms"), (1e-6, "us"), (1e-9, "ns"))


def format_quantity(value: float, kind: Quantity | str, digits: int = 4) -> str:
    """``value`` (SI units) written the way profiles write it, with a decimal prefix and
    ``digits`` significant digits: 1.234e11 FLOP/s -> "123.4 GFLOP/s", 3.2e-6 s -> "3.2 us".
    ``parse_quantity`` reads it back to within the rounding.

    >>> format_quantity(2.5e10, "bandwidth")
    '25 GB/s'
    """
    kind = Quantity(kind)
    if kind is Quantity.USD_PER_HOUR:
        return f"${value:.2f}/h"
    if kind is Quantity.TIME:
        steps = _TIME_STEPS
        unit = ""
    else:
        steps = tuple(s for s in _PREFIX_STEPS if kind is not Quantity.POWER or s[1] in ("", "k", "M"))
        unit = _UNIT[kind]
    for scale, prefix in steps:
        if abs(value) >= scale or scale == steps[-1][0]:
            return f"{value / scale:.{digits}g} {prefix}{unit}"
    raise AssertionError("unreachable: the last step always matches")
