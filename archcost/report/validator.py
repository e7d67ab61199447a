"""A validator for the subset of JSON Schema (draft 2020-12) that archcost's document schemas
use, reporting the first offending field: its JSON path, what was expected and what was found.

The subset (``KEYWORDS``): ``type``, ``properties``, ``required``, ``additionalProperties``,
``items``, ``minItems``, ``enum``, ``const``, ``minimum``, ``$ref`` to ``#/$defs/NAME``, and
``if``/``then``/``else``; annotations (``title``, ``description``, ...) are read by nobody. The
schemas in ``archcost/report/schemas/`` use nothing else (``unsupported_keywords`` finds
anything else, and a test runs it), so any draft 2020-12 validator reads them as this one does.

Semantics follow the specification (Core and Validation, draft 2020-12, sections 6-10), with
one deliberate difference: NaN and infinities, which Python's json module reads but JSON does
not have (RFC 8259 section 6), are no number here.

"First" means: at an object, its missing required fields (in the schema's order), then its
fields in the document's order, depth first; at an array, its items in order.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["Problem", "KEYWORDS", "ANNOTATIONS", "first_problem", "unsupported_keywords",
           "json_path", "describe"]

KEYWORDS = frozenset({"type", "properties", "required", "additionalProperties", "items",
                      "minItems", "enum", "const", "minimum", "$ref", "if", "then",
                      "else"})
ANNOTATIONS = frozenset({"$schema", "$id", "$comment", "$defs", "title", "description",
                         "examples", "default"})
_TYPE_WORDS = {"object": "an object", "array": "an array", "string": "a string",
               "number": "a number", "integer": "an integer", "boolean": "true or false",
               "null": "null"}


@dataclass(frozen=True)
class Problem:
    path: tuple[str | int, ...]
    expected: str
    found: str  # "" when the field is missing

    @property
    def where(self) -> str:
        return json_path(self.path)

    def __str__(self) -> str:
        if not self.found:
            return f"{self.where}: missing, expected {self.expected}"
        return f"{self.where}: expected {self.expected}, found {self.found}"


def json_path(path: tuple[str | int, ...]) -> str:
    """``$.plans[0].estimate`` (keys that are not identifiers in brackets)."""
    out = "$"
    for p in path:
        if isinstance(p, int):
            out += f"[{p}]"
        elif p.isidentifier():
            out += f".{p}"
        else:
            out += "[" + repr(p) + "]"
    return out


def describe(value: Any) -> str:
    """``the string 'fast'``, ``null``, ``an array``: a found value, in a few words."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            name = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
            return f"{name} (not a JSON number)"
        return f"the number {value!r}"
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:37] + "..."
        return f"the string {text!r}"
    if isinstance(value, list):
        return f"an array of {len(value)}"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _is_type(value: Any, name: str) -> bool:
    if name == "null":
        return value is None
    if name == "boolean":
        return isinstance(value, bool)
    if name in ("number", "integer"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if isinstance(value, float):
            if not math.isfinite(value):
                return False
            return name == "number" or value.is_integer()
        return True
    if name == "string":
        return isinstance(value, str)
    if name == "array":
        return isinstance(value, list)
    if name == "object":
        return isinstance(value, dict)
    raise ValueError(f"unknown JSON Schema type {name!r}")


def _expected_type(types: list[str], schema: dict[str, Any]) -> str:
    words = [_TYPE_WORDS[t] for t in types]
    if "minimum" in schema and any(t in ("number", "integer") for t in types):
        words = [w + f" >= {schema['minimum']:g}" if w in ("a number", "an integer") else w
                 for w in words]
    return " or ".join(words)


def _equal(a: Any, b: Any) -> bool:
    """JSON equality: 1 equals 1.0, true equals no number."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def _literal(value: Any) -> str:
    """``'s'``, ``1``, ``true``, ``null``: a schema's constant as a user reads it."""
    return "true" if value is True else "false" if value is False else \
        "null" if value is None else repr(value)


def _resolve(ref: str, root: dict[str, Any]) -> dict[str, Any]:
    prefix = "#/$defs/"
    if not ref.startswith(prefix) or ref[len(prefix):] not in root.get("$defs", {}):
        raise ValueError(f"$ref {ref!r}: only #/$defs/NAME of the same schema is supported")
    return root["$defs"][ref[len(prefix):]]


def first_problem(value: Any, schema: dict[str, Any] | bool, root: dict[str, Any] | None = None,
                  path: tuple[str | int, ...] = ()) -> Problem | None:
    """The first place where ``value`` does not match ``schema``; None when it matches."""
    root = root if root is not None else (schema if isinstance(schema, dict) else {})
    if schema is True:
        return None
    if schema is False:
        return Problem(path, "no field here", describe(value))
    if "$ref" in schema:
        found = first_problem(value, _resolve(schema["$ref"], root), root, path)
        if found:
            return found
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is_type(value, t) for t in types):
            return Problem(path, _expected_type(types, schema), describe(value))
    if "const" in schema and not _equal(value, schema["const"]):
        return Problem(path, _literal(schema["const"]), describe(value))
    if "enum" in schema and not any(_equal(value, e) for e in schema["enum"]):
        return Problem(path, "one of " + ", ".join(_literal(e) for e in schema["enum"]),
                       describe(value))
    if "minimum" in schema and _is_type(value, "number") and value < schema["minimum"]:
        return Problem(path, f"a number >= {schema['minimum']:g}", describe(value))
    if isinstance(value, dict):
        found = _object_problem(value, schema, root, path)
        if found:
            return found
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            return Problem(path, f"an array of at least {schema['minItems']}", describe(value))
        if "items" in schema:
            for i, item in enumerate(value):
                found = first_problem(item, schema["items"], root, (*path, i))
                if found:
                    return found
    if "if" in schema:
        branch = "then" if first_problem(value, schema["if"], root, path) is None else "else"
        if branch in schema:
            return first_problem(value, schema[branch], root, path)
    return None


def _object_problem(value: dict[str, Any], schema: dict[str, Any], root: dict[str, Any],
                    path: tuple[str | int, ...]) -> Problem | None:
    props = schema.get("properties", {})
    for key in schema.get("required", ()):
        if key not in value:
            sub = props.get(key, {})
            if isinstance(sub, dict) and "$ref" in sub:
                sub = _resolve(sub["$ref"], root)
            types = sub.get("type", []) if isinstance(sub, dict) else []
            types = types if isinstance(types, list) else [types]
            expected = _expected_type(types, sub) if types else "a value"
            return Problem((*path, key), expected, "")
    extra = schema.get("additionalProperties", True)
    for key, item in value.items():
        sub = props.get(key, extra)
        found = first_problem(item, sub, root, (*path, key))
        if found:
            return found
    return None


def unsupported_keywords(schema: Any, path: str = "#") -> Iterator[str]:
    """Where ``schema`` uses a keyword outside ``KEYWORDS`` and ``ANNOTATIONS``."""
    if not isinstance(schema, dict):
        return
    for key, sub in schema.items():
        here = f"{path}/{key}"
        if key not in KEYWORDS and key not in ANNOTATIONS:
            yield here
        elif key in ("properties", "$defs"):
            for name, s in sub.items():
                yield from unsupported_keywords(s, f"{here}/{name}")
        elif key in ("additionalProperties", "items", "if", "then", "else"):
            yield from unsupported_keywords(sub, here)
