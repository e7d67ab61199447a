"""How far the machine moved since its calibration: the calibration's cache probe timed again
around a real generation, so a validation says when its measured times come from a machine
slower (or faster) than the one its profile describes.

A calibrated CPU profile records its cache probe (``calibration.cache_probe``: one-row fp32
linears over weights cycled through working sets of 1 MiB to twice the last-level cache,
``archcost.hardware.calibrate.time_cache_probe``). A small decoder's decode step is such
linears over weights in that cache; on a shared host the cache is shared with the host's other
tenants, and the probe's in-cache time swings several-fold within a minute while a large
matmul's rate stays within ~15 % (BENCHMARKS.md, "CPU inference fidelity on an AMD EPYC host,
with a decode probe"). ``machine_drift`` times the recorded working sets again with the
calibration's own method and order, and reports two: the largest at most half the cache the
probe found (where the warm rows of the shape table were timed) and the largest (out of every
cache).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["DRIFT_WARN", "drift_sets", "machine_drift", "drift_warning"]

# a probe this much slower or faster than at calibration gets a warning (the tolerance)
DRIFT_WARN = 0.2


def drift_sets(points: list[dict[str, Any]], cache_bytes: float) -> list[dict[str, Any]]:
    """Of the recorded probe points (``calibration.cache_probe.points``), the ones to time
    again: the largest working set of at most ``cache_bytes / 2`` (in cache) and the largest
    (from memory), each once; [] when the record has no point."""
    timed = sorted((p for p in points if p.get("median_s")), key=lambda p: p["bytes"])
    if not timed:
        return []
    inside = [p for p in timed if p["bytes"] <= cache_bytes / 2]
    chosen = ([inside[-1]] if inside else []) + [timed[-1]]
    out, seen = [], set()
    for p in chosen:
        if p["bytes"] not in seen:
            seen.add(p["bytes"])
            out.append({"working_set_bytes": float(p["bytes"]),
                        "in_cache": p["bytes"] <= cache_bytes / 2,
                        "calibrated_s": float(p["median_s"])})
    return out


def machine_drift(gpu, device: str, run: Callable[[], Any]) -> tuple[Any, dict | None]:
    """``run()``'s result, and the drift record: the probe's recorded sets timed right before
    and right after ``run`` on ``device``, and for the chosen ones (:func:`drift_sets`) their
    calibrated median and the two medians now. None (and ``run`` alone) where the profile
    records no cache probe."""
    from archcost.hardware.calibrate import PROBE_NK, grid_for, time_cache_probe

    record = (getattr(gpu, "calibration", None) or {}).get("cache_probe") or {}
    sets = drift_sets(record.get("points") or [], float(record.get("cache_bytes")
                                                        or gpu.l2_bytes))
    if not sets:
        return run(), None
    # every recorded set, in the calibration's order and interleave: a set's time depends on
    # what ran before it (on a 2-core VM, 8 MiB after 4 MiB: 30 us a call, as calibrated;
    # after 64 MiB: 40 us, the cache's state outlasting a thousand calls)
    mib = tuple(sorted({int(round(p["bytes"] / 2**20)) for p in record["points"]
                        if p.get("median_s")}))
    grid = grid_for(device, quick=False)

    def now() -> dict[int, float]:
        return {int(p.size): p.time.median for p in time_cache_probe(mib, device, grid)}

    before = now()
    result = run()
    after = now()
    for s in sets:
        key = int(s["working_set_bytes"])
        s["before_s"], s["after_s"] = before.get(key), after.get(key)
    n, k = PROBE_NK
    return result, {"probe": f"F.linear of a (1, {k}) fp32 input by ({n}, {k}) weights cycled "
                             "over the working set", "points": sets}


def drift_warning(record: dict | None) -> str | None:
    """One line where a probe ran more than ``DRIFT_WARN`` away from its calibrated time
    before or after the generation; None otherwise."""
    if not record:
        return None
    worst = None
    for p in record["points"]:
        for when in ("before_s", "after_s"):
            if p.get(when):
                ratio = p[when] / p["calibrated_s"]
                if worst is None or abs(ratio - 1.0) > abs(worst[0] - 1.0):
                    worst = (ratio, p, when)
    if worst is None or abs(worst[0] - 1.0) <= DRIFT_WARN:
        return None
    ratio, p, when = worst
    where = "in cache" if p["in_cache"] else "from memory"
    pace = f"{ratio:.2f}x slower" if ratio > 1 else f"{1 / ratio:.2f}x faster"
    return (f"the calibration's cache probe ({p['working_set_bytes'] / 2**20:.0f} MiB of "
            f"weights, {where}) ran {pace} {when[:-2]} the generation than at calibration: the "
            "machine moved since (a shared host's neighbours), and the prediction assumes the "
            "calibrated speed; recalibrate, or rerun when the machine is quieter")
