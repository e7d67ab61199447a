"""The one number formatter (``archcost.report.fmt``): IEC units for memory, SI prefixes for
counts, FLOPs and rates, and no e-notation at any unit boundary. Expected strings are worked
out by hand (999.5 MiB / 1024 = 0.976 GiB); a brute-force sweep over 36 decades reads every
formatted value back and checks it against the number it came from."""

from __future__ import annotations

import math
import re

import pytest

from archcost.report import fmt

MiB, GiB = 2**20, 2**30


@pytest.mark.parametrize("value, text", [
    (0, "0 B"), (1, "1 B"), (512, "512 B"), (999, "999 B"),
    (1000, "0.977 KiB"),            # 1000 / 1024 = 0.9766: past 999 the next unit
    (1023, "0.999 KiB"),            # 1023 / 1024 = 0.99902
    (1024, "1 KiB"), (1536, "1.5 KiB"),
    (999.4 * MiB, "999 MiB"),
    (999.5 * MiB, "0.976 GiB"),     # rounds to 1000 MiB: 999.5 / 1024 = 0.97607 GiB
    (1000 * MiB, "0.977 GiB"),      # 1000 / 1024 = 0.97656
    (1023.9 * MiB, "1 GiB"),        # 0.99990 GiB to three digits
    (GiB, "1 GiB"), (1.5 * GiB, "1.5 GiB"),
    (80e9, "74.5 GiB"),             # an "80 GB" GPU: 80e9 / 2**30 = 74.506
    (2**50, "1 PiB"), (3 * 2**60, "3 EiB"),
])
def test_nbytes_binary_units_at_their_boundaries(value, text):
    assert fmt.nbytes(value) == text


def test_nbytes_digits_and_missing_values():
    assert fmt.nbytes(80e9, 4) == "74.51 GiB"
    assert fmt.nbytes(50e6, 4) == "47.68 MiB"  # 50e6 / 2**20 = 47.684
    assert fmt.nbytes(None) == "-" and fmt.nbytes(float("nan")) == "nan"


@pytest.mark.parametrize("value, text", [
    (0, "0 s"), (1.5e-9, "1.5 ns"), (999.4e-9, "999 ns"), (999.6e-9, "1 us"),
    (1e-3, "1 ms"), (0.9996e-3, "1 ms"), (12.34e-3, "12.3 ms"),
    (999.4e-3, "999 ms"), (999.6e-3, "1 s"),  # not "1e+03 ms"
    (1.0, "1 s"), (59.99, "60 s"), (999.4, "999 s"), (4321.2, "4,321 s"),
])
def test_seconds_at_their_boundaries(value, text):
    assert fmt.seconds(value) == text


@pytest.mark.parametrize("value, unit, text", [
    (0, "FLOP", "0 FLOP"), (999.4, "", "999"), (999.5, "", "1 k"), (1000, "", "1 k"),
    (121_000, "", "121 k"), (1.5e12, "FLOP/s", "1.5 TFLOP/s"), (3.35e12, "B/s", "3.35 TB/s"),
    (999.6e12, "FLOP/s", "1 PFLOP/s"), (0.25, "", "0.25"), (0.0012, "J", "1.2 mJ"),
    (4.5e-7, "J", "450 nJ"), (2e21, "", "2,000 E"),
])
def test_si_prefixes_at_their_boundaries(value, unit, text):
    assert fmt.si(value, unit) == text


@pytest.mark.parametrize("value, text", [
    (0.012345, "0.0123"), (9.996, "10"), (99.96, "100"), (999.96, "1,000"), (123456, "123,456"),
    (-0.5, "-0.5"), (1.0, "1"), (0.0009996, "0.001"),
])
def test_sig_is_positional_with_three_digits(value, text):
    assert fmt.sig(value) == text


def test_money_percent_and_plain_numbers():
    assert fmt.usd(0.003051) == "$0.00305" and fmt.usd(1234.4) == "$1,234"
    assert fmt.percent(0.4123) == "41.2%" and fmt.percent(0.00046) == "0.046%"
    assert fmt.number(12) == "12" and fmt.number(12345.6) == "12.3 k"
    assert fmt.number(1.23456e-5) == "0.00001235"


_IEC = {u: 1024.0**i for i, u in enumerate(("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"))}
_SI = {p: 1000.0**e for e, p in zip(range(-4, 7), ("p", "n", "u", "m", "", "k", "M", "G", "T",
                                                   "P", "E"))}
_TIME = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}


def _read(text: str, table: dict[str, float], unit: str = "") -> tuple[float, str]:
    number, _, suffix = text.partition(" ")
    prefix = suffix[:len(suffix) - len(unit)] if unit else suffix
    return float(number.replace(",", "")) * table[prefix], number


@pytest.mark.parametrize("kind", ["nbytes", "si", "seconds"])
def test_no_value_prints_in_e_notation_and_every_value_reads_back(kind):
    """36 decades, each with the values that round across a unit boundary."""
    values = []
    for e in range(-12, 24):
        for m in (1.0, 1.2345, 9.995, 99.95, 999.4, 999.5, 999.96, 1000.0, 1023.9):
            values.append(m * 10.0**e)
        values.append(1023.9 * 1024.0 ** (e % 7))
    for v in values:
        if kind == "nbytes":
            if v < 1:
                continue
            text = fmt.nbytes(v)
            back, number = _read(text, _IEC)
        elif kind == "si":
            text = fmt.si(v, "FLOP/s")
            back, number = _read(text, _SI, "FLOP/s")
        else:
            text = fmt.seconds(v)
            back, number = _read(text, _TIME) if v >= 1e-9 else (v, "0")
        assert not re.search(r"\d[eE][+-]?\d", text), text
        mantissa = abs(float(number.replace(",", "")))
        top = text.endswith((" EiB", " EFLOP/s", " s"))
        assert top or mantissa < 1000, text  # the largest unit where it rounds below 1000
        if v >= 1e-9:
            digits = max(len(number.replace(",", "").replace(".", "").lstrip("0")), 3)
            assert math.isclose(back, v, rel_tol=10 ** (1 - digits)), (v, text)
