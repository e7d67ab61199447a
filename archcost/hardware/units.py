"""Quantities with units, as written in profile files: "989 TFLOP/s", "80 GB", "200 Gb/s", "3 us".

Everything is converted to SI base units (FLOP/s, bytes, bytes/s, seconds, watts). Decimal
prefixes (GB = 1e9) unless the binary form is written (GiB = 2**30). ``b`` is a bit, ``B`` a
byte: "200 Gb/s" is 25e9 bytes/s.
"""

from __future__ import annotations

import re

__all__ = ["UnitError", "parse_quantity", "KINDS"]

_PREFIX = {"": 1.0, "K": 1e3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50}
_TIME = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}

# kind -> (example, unit names accepted)
KINDS = {
    "flops_rate": "989 TFLOP/s",
    "bytes": "80 GB",
    "bandwidth": "3.35 TB/s",
    "time": "3 us",
    "power": "700 W",
    "usd_per_hour": "2.50 $/h",
}

_NUM = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
_RE = re.compile(rf"^\s*{_NUM}\s*(.*?)\s*$")


class UnitError(ValueError):
    """A value whose number or unit cannot be read as the kind asked for."""


def _scale(prefix: str) -> float | None:
    if prefix in _BINARY:
        return float(_BINARY[prefix])
    return _PREFIX.get(prefix)


def parse_quantity(value, kind: str) -> float:
    """Parse ``value`` (a string with a unit, or a bare number for dimensionless kinds)."""
    if kind not in KINDS:
        raise ValueError(f"unknown quantity kind {kind!r}")
    if isinstance(value, bool):
        raise UnitError(f"{value!r} is not a quantity; write it like {KINDS[kind]!r}")
    if isinstance(value, (int, float)):
        if kind == "usd_per_hour":
            return float(value)
        raise UnitError(f"{value!r} has no unit; write it like {KINDS[kind]!r}")
    m = _RE.match(str(value))
    if not m:
        raise UnitError(f"{value!r} is not a number with a unit; write it like {KINDS[kind]!r}")
    number, unit = float(m.group(1)), m.group(2).replace(" ", "")
    factor = _unit_factor(unit, kind)
    if factor is None:
        raise UnitError(f"{value!r} is not a {kind.replace('_', ' ')}; write it like {KINDS[kind]!r}")
    return number * factor


def _unit_factor(unit: str, kind: str) -> float | None:
    if kind == "time":
        return _TIME.get(unit)
    if kind == "power":
        m = re.fullmatch(r"([kKM]?)W", unit)
        return _scale(m.group(1)) if m else None
    if kind == "usd_per_hour":
        return 1.0 if unit in ("$/h", "USD/h", "$/hour", "USD/hour") else None
    if kind == "flops_rate":
        m = re.fullmatch(r"([KMGTPE]?)FLOP(?:S|s)?/s", unit) or re.fullmatch(r"([KMGTPE]?)FLOPS", unit)
        return _scale(m.group(1)) if m else None
    if kind == "bytes":
        m = re.fullmatch(r"([KkMGTPE]i?)?(B|b)", unit)
        if not m:
            return None
        scale = _scale(m.group(1) or "")
        if scale is None:
            return None
        return scale / 8 if m.group(2) == "b" else scale
    if kind == "bandwidth":
        m = re.fullmatch(r"([KkMGTPE]i?)?(B|b)/s", unit) or re.fullmatch(r"([KkMGTPE]i?)?(B|b)ps", unit)
        if not m:
            return None
        scale = _scale(m.group(1) or "")
        if scale is None:
            return None
        return scale / 8 if m.group(2) == "b" else scale
    return None
