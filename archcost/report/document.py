"""Reading result documents (``analyze``/``plan``/``estimate``/``validate``/``sweep`` ``-o``)
and Chrome traces (``--timeline``): the only I/O of the report package. Everything else takes
the dicts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from archcost.errors import DocumentError

__all__ = ["KINDS", "load_document", "load_trace", "check_document", "check_trace",
           "chosen_estimate", "model_title", "sweep_keys", "point_label"]

KINDS = ("analysis", "plan", "estimate", "validation", "sweep")
_WRITTEN_BY = {"analysis": "archcost analyze -o", "plan": "archcost plan -o",
               "estimate": "archcost estimate -o", "validation": "archcost validate -o",
               "sweep": "archcost sweep -o"}


def _read_json(path: Path | str, what: str) -> Any:
    p = Path(path)
    if not p.is_file():
        raise DocumentError(f"{p}: no such file; give the {what} written with -o")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DocumentError(f"{p}: cannot read it ({exc}); give the {what} written with "
                            "-o") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DocumentError(f"{p}: not JSON ({exc.msg} at line {exc.lineno}); give the "
                            f"{what} written with -o") from None


def check_document(doc: Any, where: str = "document") -> dict[str, Any]:
    """``doc`` if it is a result document of a kind reports read; DocumentError otherwise."""
    if not isinstance(doc, dict):
        raise DocumentError(f"{where}: a result document is a JSON object; this is a "
                            f"{type(doc).__name__}")
    kind = doc.get("kind")
    if kind not in KINDS:
        raise DocumentError(f"{where}: kind {kind!r} is not a result document; give one "
                            f"written by {', '.join(_WRITTEN_BY.values())}")
    version = doc.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise DocumentError(f"{where}: no integer schema_version; regenerate it with "
                            f"{_WRITTEN_BY[kind]}")
    if not isinstance(doc.get("model"), dict):
        raise DocumentError(f"{where}: no model section; regenerate it with "
                            f"{_WRITTEN_BY[kind]}")
    if kind == "sweep":
        axes, points = doc.get("axes"), doc.get("points")
        if not isinstance(axes, list) or not isinstance(points, list) or not points \
                or not all(isinstance(a, dict) and "key" in a for a in axes) \
                or not all(isinstance(p, dict) and isinstance(p.get("point"), dict)
                           for p in points):
            raise DocumentError(f"{where}: a sweep without its grid (axes and points); "
                                f"regenerate it with {_WRITTEN_BY[kind]}")
    return doc


def load_document(path: Path | str) -> dict[str, Any]:
    """The result document at ``path``, checked (DocumentError names the file and the fix)."""
    return check_document(_read_json(path, "result document"), str(path))


def check_trace(trace: Any, where: str = "trace") -> dict[str, Any]:
    """A Chrome trace (object with ``traceEvents``, or the bare event array) as an object."""
    if isinstance(trace, list):
        trace = {"traceEvents": trace}
    if not isinstance(trace, dict) or not isinstance(trace.get("traceEvents"), list):
        raise DocumentError(f"{where}: not a Chrome trace (no traceEvents list); give the file "
                            "written by archcost plan/estimate --timeline")
    if not any(isinstance(e, dict) and e.get("ph") == "X" for e in trace["traceEvents"]):
        raise DocumentError(f"{where}: the trace has no complete ('X') events to draw; give the "
                            "file written by archcost plan/estimate --timeline")
    return trace


def load_trace(path: Path | str) -> dict[str, Any]:
    return check_trace(_read_json(path, "Chrome trace"), str(path))


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
