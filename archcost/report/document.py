"""Reading result documents (``analyze``/``plan``/``estimate``/``validate``/``sweep``/``infer``
``-o``) and Chrome traces (``--timeline``), each checked against its schema (``schema``): the
only I/O of the report package. Everything else takes the checked dicts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from archcost.errors import DocumentError
from archcost.report import schema
from archcost.report.schema import KINDS

__all__ = ["KINDS", "load_document", "load_trace", "check_document", "check_trace",
           "chosen_estimate", "model_title", "sweep_keys", "point_label"]


def _read_json(path: Path | str, what: str, fix: str) -> Any:
    p = Path(path)
    if not p.is_file():
        raise DocumentError(f"{p}: no such file; give the {what} written with -o")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DocumentError(f"{p}: cannot read it ({exc}); {fix}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DocumentError(f"{p}: not JSON ({exc.msg}: line {exc.lineno} column "
                            f"{exc.colno}); {fix}") from None


def check_document(doc: Any, where: str = "document", fix: str | None = None) -> dict[str, Any]:
    """``doc`` if it is a result document matching its kind's schema; DocumentError (one line
    naming ``where``, the JSON path, what was expected and the fix) otherwise."""
    return schema.check(doc, where, fix)


def load_document(path: Path | str, fix: str | None = None) -> dict[str, Any]:
    """The result document at ``path``, checked against its schema (DocumentError names the
    file, the first offending field and the fix; ``fix`` replaces the default advice)."""
    default = "give a result document written by archcost analyze, plan, estimate, validate, " \
              "sweep or infer -o (a cut-off file: write it again)"
    return check_document(_read_json(path, "result document", fix or default), str(path), fix)


def check_trace(trace: Any, where: str = "trace") -> dict[str, Any]:
    """A Chrome trace (object with ``traceEvents``, or the bare event array) as an object,
    checked against the trace schema."""
    return schema.check_trace(trace, where)


def load_trace(path: Path | str) -> dict[str, Any]:
    fix = "give the file written by archcost plan/estimate --timeline"
    return check_trace(_read_json(path, "Chrome trace", fix), str(path))


def chosen_estimate(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The plan estimate a document is about: the best plan of a search, the estimated plan,
    the validated plan's prediction; None for an analysis (its estimate is one device's)."""
    kind = doc.get("kind")
    if kind == "plan":
        plans = doc.get("plans") or []
        return plans[0].get("estimate") if plans else None
    if kind in ("estimate", "validation"):
        est = doc.get("estimate")
        return est if isinstance(est, dict) else None
    return None


def model_title(doc: dict[str, Any]) -> str:
    """``llama (preset=tiny, layers=4)``: the model and its builder arguments."""
    model = doc.get("model") or {}
    name = str(model.get("name", "?"))
    config = model.get("config") or {}
    if isinstance(config, dict) and config:
        return f"{name} ({', '.join(f'{k}={v}' for k, v in config.items())})"
    return name


def sweep_keys(doc: dict[str, Any]) -> list[str]:
    """The varied parameters of a sweep, in grid order."""
    return [str(a.get("key")) for a in doc.get("axes") or [] if isinstance(a, dict)]


def point_label(point: Any, keys: list[str], sep: str = ", ") -> str:
    """``mem_bw=2x, gpus=16``: a grid point by its axis values; ``base`` with no axes."""
    if not isinstance(point, dict):
        return str(point)
    items = [f"{k}={point[k]}" for k in keys if k in point]
    items += [f"{k}={v}" for k, v in point.items() if k not in keys]
    return sep.join(items) or "base"
