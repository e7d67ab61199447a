"""Numbers with units: the one formatter of every command, report, diff and plot label.

One convention (IEC 80000-13 for memory, SI for the rest):

- memory and byte counts in binary units: ``B``, ``KiB``, ``MiB``, ``GiB``, ``TiB`` (``nbytes``);
- rates, FLOPs and counts with decimal SI prefixes: ``k``, ``M``, ``G``, ``T``, ``P``, ``E``
  (``TFLOP/s``, ``GB/s``, ``tokens/s``; ``si``), below one ``m``, ``u``, ``n``, ``p`` (``mJ``);
- times in ``s``, ``ms``, ``us``, ``ns`` (``seconds``).

Values keep ``digits`` significant digits (3 by default), trailing zeros dropped as ``%g``
does, and never print in e-notation: a value moves to the next unit once it rounds to 1000 of
the current one (999.4 MiB -> ``999 MiB``, 999.5 MiB -> ``0.976 GiB``, 1000 MiB -> ``0.977 GiB``, 1023.9 MiB
-> ``1 GiB``; 999.5 ms -> ``1 s``), and values past the largest unit print every integer digit
(4,321 s -> ``4,321 s``). Plain text out: callers escape.
"""

from __future__ import annotations

import math

__all__ = ["sig", "si", "count", "seconds", "nbytes", "percent", "signed_percent", "number",
           "usd"]

_UP = ("", "k", "M", "G", "T", "P", "E")
_DOWN = ("", "m", "u", "n", "p")
_IEC = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
_TIME = ((1.0, "s"), (1e-3, "ms"), (1e-6, "us"), (1e-9, "ns"))


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _missing(value) -> str:
    return "-" if value is None else str(value)


def sig(value: float, digits: int = 3) -> str:
    """``value`` with ``digits`` significant digits in positional notation, trailing zeros
    dropped: 0.012345 -> '0.0123', 999.96 -> '1000', 123456 -> '123,456' (every integer digit
    once the value has more than ``digits`` of them)."""
    v = float(value)
    if v == 0:
        return "0"
    if abs(v) >= 10 ** digits - 0.5:
        return f"{round(v):,}"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(v))))
    text = f"{v:.{decimals}f}"
    digits_shown = len(text.lstrip("-").replace(".", "").lstrip("0"))
    if digits_shown > digits and decimals:  # rounding carried into a new digit: 9.996 -> 10.00
        text = f"{v:.{decimals - 1}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _scaled(v: float, base: float, lo: int, hi: int, digits: int) -> tuple[str, int]:
    """(mantissa text, exponent) with ``base ** exponent`` the unit: the smallest exponent in
    [lo, hi] at which the value rounds below 1000."""
    e = 0 if v == 0 else math.floor(math.log(abs(v), base) + 1e-12)
    e = min(max(e, lo), hi)
    carried = False
    while True:
        m = v / base**e
        if carried and base == 1000:  # it rounded to 1000 one unit down: 1 here, whatever the
            m = math.copysign(max(abs(m), 1.0), m)  # float noise in the division
        text = sig(m, digits)
        if e < hi and abs(float(text.replace(",", ""))) >= 1000:
            e += 1
            carried = True
            continue
        return text, e


def si(value, unit: str = "", digits: int = 3) -> str:
    """A count, FLOPs or a rate with a decimal SI prefix: 1.5e12, 'FLOP/s' -> '1.5 TFLOP/s';
    2.5e5 -> '250 k'. Below 1, a unit takes m, u, n, p (1.2e-3, 'J' -> '1.2 mJ'); a bare
    count does not (0.25 -> '0.25'). '-' when missing."""
    if not _finite(value):
        return _missing(value)
    v = float(value)
    lo = -(len(_DOWN) - 1) if unit else 0
    text, e = _scaled(v, 1000.0, lo, len(_UP) - 1, digits)
    prefix = _UP[e] if e >= 0 else _DOWN[-e]
    if prefix or unit:
        return f"{text} {prefix}{unit}"
    return text


def nbytes(value, digits: int = 3) -> str:
    """Bytes in IEC binary units: 1.5 * 2**30 -> '1.5 GiB'; whole bytes below 1 KiB as an
    integer ('512 B')."""
    if not _finite(value):
        return _missing(value)
    v = float(value)
    text, e = _scaled(v, 1024.0, 0, len(_IEC) - 1, digits)
    if e == 0 and v.is_integer():
        text = f"{round(v):,}"
    return f"{text} {_IEC[e]}"


def seconds(value, digits: int = 3) -> str:
    """1.5e-3 -> '1.5 ms' with ``digits`` significant digits; 0 -> '0 s'."""
    if not _finite(value):
        return _missing(value)
    t = float(value)
    if t == 0:
        return "0 s"
    i = next((k for k, (scale, _) in enumerate(_TIME) if abs(t) >= scale), len(_TIME) - 1)
    m = t / _TIME[i][0]
    while True:
        text = sig(m, digits)
        if i > 0 and abs(float(text.replace(",", ""))) >= 1000:
            i -= 1  # it rounded to 1000: 1 of the next unit
            m = math.copysign(max(abs(t / _TIME[i][0]), 1.0), t)
            continue
        return f"{text} {_TIME[i][1]}"


def count(value) -> str:
    """Exact integer with thousands separators."""
    if not _finite(value):
        return _missing(value)
    return f"{round(value):,}"


def percent(value, digits: int = 1) -> str:
    """0.4123 -> '41.2%'; small shares keep two significant digits (0.00046 -> '0.046%')."""
    if not _finite(value):
        return _missing(value)
    if value and abs(100 * value) < 10 ** -digits:
        return f"{sig(100 * value, 2)}%"
    return f"{100 * value:,.{digits}f}%"


def signed_percent(value, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "+inf" if value > 0 else "-inf"
    if not _finite(value):
        return str(value)
    return f"{100 * value:+,.{digits}f}%"


def usd(value, digits: int = 3) -> str:
    """Dollars: 0.003051 -> '$0.00305', 1234.5 -> '$1,234'."""
    if not _finite(value):
        return _missing(value)
    text = sig(abs(value), digits)
    return f"-${text}" if value < 0 else f"${text}"


def number(value) -> str:
    """A plain number without a unit, compact: integers exact, others four significant
    digits, large ones with an SI prefix."""
    if not _finite(value):
        return _missing(value)
    if isinstance(value, int) or float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    if abs(value) >= 1e4:
        return si(value)
    return sig(value, 4)
