"""Numbers with units, for tables and plot labels (plain text: callers escape nothing here)."""

from __future__ import annotations

import math

__all__ = ["si", "count", "seconds", "nbytes", "percent", "signed_percent", "number"]

_PREFIXES = ("", "K", "M", "G", "T", "P", "E")


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def si(value, unit: str = "", base: int = 1000) -> str:
    """1.5e12 -> '1.5 T' + unit; '-' when missing."""
    if not _finite(value):
        return "-" if value is None else str(value)
    v = float(value)
    i = 0
    while abs(v) >= base and i < len(_PREFIXES) - 1:
        v /= base
        i += 1
    text = f"{v:.3g}"
    if i or unit:
        return f"{text} {_PREFIXES[i]}{unit}"
    return text


def count(value) -> str:
    """Exact integer with thousands separators."""
    if not _finite(value):
        return "-" if value is None else str(value)
    return f"{round(value):,}"


def seconds(value, digits: int = 3) -> str:
    """1.5e-3 -> '1.5 ms', with ``digits`` significant digits."""
    if not _finite(value):
        return "-" if value is None else str(value)
    t = float(value)
    a = abs(t)
    if a == 0:
        return "0 s"
    if a >= 1:
        return f"{t:.{digits}g} s"
    if a >= 1e-3:
        return f"{t * 1e3:.{digits}g} ms"
    if a >= 1e-6:
        return f"{t * 1e6:.{digits}g} us"
    return f"{t * 1e9:.{digits}g} ns"


def nbytes(value) -> str:
    """Bytes in binary units: 1.5 GiB."""
    if not _finite(value):
        return "-" if value is None else str(value)
    v = float(value)
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
    i = 0
    while abs(v) >= 1024 and i < len(units) - 1:
        v /= 1024
        i += 1
    return f"{v:.3g} {units[i]}"


def percent(value, digits: int = 1) -> str:
    """0.4123 -> '41.2%'; small shares keep two significant digits (0.00046 -> '0.046%')."""
    if not _finite(value):
        return "-" if value is None else str(value)
    if value and abs(100 * value) < 10 ** -digits:
        return f"{100 * value:.2g}%"
    return f"{100 * value:.{digits}f}%"


def signed_percent(value, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "+inf" if value > 0 else "-inf"
    if not _finite(value):
        return str(value)
    return f"{100 * value:+.{digits}f}%"


def number(value) -> str:
    """A plain number, compact."""
    if not _finite(value):
        return "-" if value is None else str(value)
    if isinstance(value, int) or float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    if abs(value) >= 1e4:
        return si(value)
    return f"{value:.4g}"
