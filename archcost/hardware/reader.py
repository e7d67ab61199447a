"""Reading profile YAML field by field: every error is one line naming the file, the field, the fix.

The generic half of profile loading (which fields exist and what they mean is in profile.py):
a strict YAML load (a key given twice is an error, PyYAML would keep the last), unknown-field
suggestions by difflib, and checks of texts, counts, quantities with units, efficiency curves and
free-form mappings (``calibration``: only its being a mapping is checked).
"""

from __future__ import annotations

import difflib
import math
from pathlib import Path
from typing import Any

import yaml

from archcost.errors import ProfileError
from archcost.hardware.units import KINDS, Quantity, UnitError, parse_quantity

__all__ = ["Reader", "read_yaml", "as_number", "example", "suggest", "EXAMPLE"]

EXAMPLE = {  # how to write a field of each non-quantity kind
    "str": "'h100-sxm'", "peaks": "{bf16: '989 TFLOP/s'}", "fraction": "0.15", "count": "8",
    "curve": "[[1.0e+9, 0.5], [1.0e+12, 0.8]]", "levels": "a list of link levels",
    "domain": "8 (or unbounded)", "topology": "switch",
    "mapping": "{date: '2026-01-31', device: 'NVIDIA H100 80GB HBM3'}",
}


def example(kind: Quantity | str) -> str:
    return repr(KINDS[kind.value]) if isinstance(kind, Quantity) else EXAMPLE[kind]


def suggest(text: str, names: list[str] | tuple[str, ...]) -> str:
    """"did you mean 'x'? " for a near name ('h100' -> the names starting with it), else ""."""
    near = [n for n in names if n.startswith(text)][:3] if text else []
    near = near or difflib.get_close_matches(text, list(names), n=1, cutoff=0.6)
    return f"did you mean {' or '.join(repr(n) for n in near)}? " if near else ""


def as_number(v: Any) -> float | None:
    """A number; also a string such as '1.0e6', which YAML 1.1 leaves unparsed (it wants 1.0e+6)."""
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return None


class Reader:
    """Field-by-field validation; every error names the file and the field."""

    def __init__(self, path: str | Path):
        self.file = Path(path).name

    def fail(self, fld: str, msg: str) -> ProfileError:
        return ProfileError(f"{self.file}: field '{fld}': {msg}")

    def check_keys(self, data: dict, known: dict, optional: set, where: str = "",
                   examples: dict[str, str] | None = None) -> None:
        for key in data:
            if key not in known:
                hint = suggest(str(key), list(known)) or f"known fields: {', '.join(known)}"
                raise self.fail(where + str(key), f"unknown field; {hint.strip()}")
        for key, kind in known.items():
            if key not in data and key not in optional:
                shown = (examples or {}).get(key) or example(kind)
                raise self.fail(where + key, f"missing; add it, e.g. {key}: {shown}")

    def text(self, data: dict, key: str, where: str = "") -> str:
        v = data[key]
        if not isinstance(v, str) or not v.strip():
            raise self.fail(where + key, f"{v!r} must be a non-empty text, e.g. {EXAMPLE['str']}")
        return v

    def count(self, data: dict, key: str, where: str = "") -> int:
        v = data[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise self.fail(where + key, f"{v!r} must be a positive whole number, e.g. 8")
        return v

    def quantity(self, data: dict, key: str, kind: Quantity, where: str = "") -> float:
        try:
            v = parse_quantity(data[key], kind)
        except UnitError as exc:
            raise self.fail(where + key, str(exc)) from None
        if not v > 0 or math.isinf(v):
            raise self.fail(where + key, f"{data[key]!r} must be positive and finite; give the real figure")
        return v

    def mapping(self, data: dict, key: str, what: str | None = None) -> dict[str, Any] | None:
        """An optional mapping (a record such as ``calibration``); None when absent. ``what``
        says what it must map, for the error (default: a free-form record)."""
        v = data.get(key)
        if v is None:
            return None
        if not isinstance(v, dict):
            raise self.fail(key, what or f"must be a mapping of names to values, e.g. "
                                         f"{EXAMPLE['mapping']}; leave it out if there is "
                                         "nothing to record")
        return v

    def curve(self, data: dict, key: str) -> tuple[tuple[float, float], ...]:
        """[x, efficiency] points: x > 0 and increasing, efficiency in (0, 1]."""
        pts = data[key]
        if not isinstance(pts, list) or not pts:
            raise self.fail(key, f"must be a list of [x, efficiency] pairs, e.g. {EXAMPLE['curve']}")
        out: list[tuple[float, float]] = []
        for p in pts:
            pair = [as_number(v) for v in p] if isinstance(p, list) else []
            if len(pair) != 2 or None in pair:
                raise self.fail(key, f"point {p!r} is not a pair [x, efficiency] of numbers")
            x, y = pair
            if not x > 0:
                raise self.fail(key, f"point {p!r}: x must be positive (it is interpolated in log10 x)")
            if not 0 < y <= 1:
                raise self.fail(key, f"point {p!r}: efficiency must be in (0, 1]; write a fraction of peak")
            if out and x <= out[-1][0]:
                raise self.fail(key, f"point {p!r}: x must increase from point to point; sort the points")
            out.append((x, y))
        return tuple(out)


class _DuplicateKey(Exception):
    def __init__(self, key: Any, line: int):
        self.key, self.line = key, line


class _StrictLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last
    silently); parsed by libyaml where PyYAML has it (a calibrated profile of 200 kB: 0.1 s,
    not 1.3 s), by PyYAML's own parser elsewhere."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, str):
                continue
            if key in seen:
                raise _DuplicateKey(key, key_node.start_mark.line + 1)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{path.name}: cannot read it ({exc}); check the file") from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as exc:
        raise ProfileError(f"{path.name}: field '{exc.key}': given twice (again at line "
                           f"{exc.line}); keep one") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = " ".join(str(getattr(exc, "problem", "") or "").split())
        raise ProfileError(f"{path.name}: YAML syntax error{where}: {problem}; fix the file") from None
    if not isinstance(data, dict):
        got = "empty" if data is None else f"a {type(data).__name__}"
        raise ProfileError(f"{path.name}: the top level is {got}; it must be a mapping of "
                           "fields ('name: value' lines)")
    return data
