"""The schemas of archcost's result documents, one per kind and version, and the check every
document read goes through (``report``, both sides of ``diff``, ``ci``'s baselines and fresh
reports, ``estimate --plan FILE.json``, ``report --timeline``).

The schemas are JSON Schema (draft 2020-12) files shipped inside the package
(``archcost/report/schemas/KIND.vN.schema.json``, package data) and published as the same
bytes in ``docs/schemas/`` (``docs/result-documents.md`` describes the fields and units). The
versions this archcost reads are the files it ships: a document of another version is refused
with the versions it reads and the fix (regenerate it, or upgrade archcost for a newer one).

A document that does not match is refused with one line: the file, the JSON path of the first
offending field, what was expected, what was found, and the command that writes that kind.
Beyond what a schema can say, a sweep must hold every point of its grid.
"""

from __future__ import annotations

import functools
import json
import math
from importlib import resources
from typing import Any

from archcost.errors import DocumentError
from archcost.report.validator import Problem, describe, first_problem

__all__ = ["KINDS", "WRITTEN_BY", "versions", "load_schema", "schema_names", "check",
           "check_trace"]

KINDS = ("analysis", "plan", "estimate", "validation", "sweep", "inference")
WRITTEN_BY = {"analysis": "archcost analyze -o", "plan": "archcost plan -o",
              "estimate": "archcost estimate -o", "validation": "archcost validate -o",
              "sweep": "archcost sweep -o", "inference": "archcost infer -o"}
TRACE = "trace"
_TRACE_FIX = "give the file written by archcost plan/estimate --timeline"


def _folder():
    return resources.files("archcost.report") / "schemas"


def schema_names() -> list[str]:
    """File names of the shipped schemas, sorted."""
    return sorted(p.name for p in _folder().iterdir() if p.name.endswith(".schema.json"))


@functools.cache
def versions(kind: str) -> tuple[int, ...]:
    """The schema versions of ``kind`` this archcost reads (the files it ships)."""
    out = []
    for name in schema_names():
        stem = name.removesuffix(".schema.json")
        head, _, version = stem.rpartition(".v")
        if head == kind and version.isdigit():
            out.append(int(version))
    return tuple(sorted(out))


@functools.cache
def load_schema(name: str, version: int | None = None) -> dict[str, Any]:
    """The schema of kind ``name`` at ``version`` (``trace``: no version)."""
    file = f"{name}.v{version}.schema.json" if version is not None else f"{name}.schema.json"
    return json.loads((_folder() / file).read_text(encoding="utf-8"))


def _kinds_text() -> str:
    """``analyze, plan, estimate, validate, sweep or infer``"""
    commands = [cmd.split()[1] for cmd in WRITTEN_BY.values()]
    return ", ".join(commands[:-1]) + " or " + commands[-1]


def _refuse(where: str, problem: Problem | str, fix: str) -> DocumentError:
    return DocumentError(f"{where}: {problem}; {fix}")


def check(doc: Any, where: str = "document", fix: str | None = None) -> dict[str, Any]:
    """``doc`` if it is a result document of a known kind and version that matches its schema;
    DocumentError (one line: ``where``, the JSON path, expected and found, the fix) if not.
    ``fix`` replaces the default advice (regenerate with the command that writes the kind)."""
    if not isinstance(doc, dict):
        raise _refuse(where, Problem((), "a JSON object (a result document)", describe(doc)),
                      f"give a document written by archcost {_kinds_text()} -o")
    kind = doc.get("kind")
    if kind not in KINDS:
        problem = Problem(("kind",), f"one of {', '.join(KINDS)}",
                          describe(kind) if "kind" in doc else "")
        raise DocumentError(f"{where}: not a result document: {problem}; give a document "
                            f"written by archcost {_kinds_text()} -o")
    regenerate = fix or f"regenerate it with {WRITTEN_BY[kind]}"
    version = doc.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise _refuse(where, Problem(("schema_version",), "an integer",
                                     describe(version) if "schema_version" in doc else ""),
                      regenerate)
    known = versions(kind)
    if version not in known:
        reads = f"{kind} documents of schema_version {', '.join(map(str, known))}"
        advice = (f"it was written by a newer archcost: upgrade archcost, or {regenerate}"
                  if version > max(known) else regenerate)
        raise DocumentError(f"{where}: schema_version {version} is not one this archcost "
                            f"reads ({reads}); {advice}")
    problem = first_problem(doc, load_schema(kind, version))
    if problem is not None:
        raise _refuse(where, problem, regenerate)
    if kind == "sweep":
        _check_grid(doc, where, regenerate)
    return doc


def _check_grid(doc: dict[str, Any], where: str, fix: str) -> None:
    """A sweep holds every point of its grid, each at its own index."""
    sizes = [len(a["values"]) for a in doc["axes"]]
    grid = math.prod(sizes)
    if doc["grid_points"] != grid or len(doc["points"]) != grid:
        raise DocumentError(f"{where}: $.points: expected the {grid} points of the grid its "
                            f"axes span ($.grid_points {doc['grid_points']}), found "
                            f"{len(doc['points'])}; {fix}")
    for i, p in enumerate(doc["points"]):
        index = p.get("index")
        if index is not None and (len(index) != len(sizes)
                                  or any(k >= n for k, n in zip(index, sizes))):
            raise DocumentError(f"{where}: $.points[{i}].index: expected one index per axis "
                                f"within sizes {sizes}, found {index}; {fix}")


def check_trace(trace: Any, where: str = "trace") -> dict[str, Any]:
    """A Chrome trace (the object form, or the bare event array) as an object, checked
    against ``trace.schema.json``; DocumentError in one line if it does not match."""
    problem = first_problem(trace, load_schema(TRACE))
    if problem is not None:
        raise _refuse(where, f"not a Chrome trace archcost can draw: {problem}", _TRACE_FIX)
    if isinstance(trace, list):
        trace = {"traceEvents": trace}
    if not any(e.get("ph") == "X" for e in trace["traceEvents"]):
        raise _refuse(where, "the trace has no complete ('X') events to draw", _TRACE_FIX)
    return trace
