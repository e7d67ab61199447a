"""Predicted against measured: the plan's estimate on a hardware profile next to real timed steps.

Predictions come from the same path ``archcost estimate`` takes (the workload traced once per
sequence, the plan cost model on the profile), except peak memory of a one-process run, which
comes from the liveness pass over a trace at the run's micro-batch (``analyze --hardware``'s
figure): that is the finer model and the one a single device is checked against. Measured times
are each component's median over the timed steps on the slowest rank.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["components", "profile_warnings", "single_gpu_cluster", "available_memory_bytes"]


def single_gpu_cluster(gpu):
    """A one-device 'cluster' around a GPU profile (no links: nothing to communicate)."""
    from archcost.hardware.profile import ClusterProfile, LinkLevel, Topology

    level = LinkLevel(name="none", domain_size=None, bandwidth_per_gpu_bytes_per_s=1e30,
                      latency_s=0.0, topology=Topology.SWITCH)
    return ClusterProfile(name=gpu.name, gpu=gpu, gpus_per_node=1, levels=(level,), nodes=1,
                          gpus=1)


def profile_warnings(gpu, device: str) -> list[str]:
    """Why this profile may not describe this machine (empty when it was measured here)."""
    from archcost.hardware.machine import machine_id

    calib = getattr(gpu, "calibration", None) or {}
    here = machine_id(device)
    if not calib:
        return [f"profile {gpu.name} is not a measurement of this machine ({here}); predictions "
                "use its datasheet figures: run archcost calibrate for a fair comparison"]
    measured_on = str(calib.get("device") or calib.get("device_name") or "")
    if measured_on and measured_on != here:
        return [f"profile {gpu.name} was measured on {measured_on!r}, this machine is {here!r}: "
                "continuing, but recalibrate for a fair comparison"]
    return []


def _row(name: str, unit: str, predicted: float | None, measured: float | None
         ) -> dict[str, Any]:
    error = None
    if predicted is not None and measured:
        error = predicted / measured - 1.0
    return {"name": name, "unit": unit, "predicted": predicted, "measured": measured,
            "error": error}


def components(estimate: dict[str, Any], results: list[dict[str, Any]],
               single_peak_bytes: float | None) -> list[dict[str, Any]]:
    """``validation.components``: one row per quantity with predicted, measured and error."""
    def slowest(key: str) -> float:
        return max(r["median"][key] for r in results)

    rows = [
        _row("step_time", "s", estimate["step_time_s"], slowest("step")),
        _row("forward", "s", estimate["phases_s"]["forward"], slowest("forward")),
        _row("backward", "s", estimate["phases_s"]["backward"], slowest("backward")),
        _row("optimizer", "s", estimate["phases_s"]["optimizer"], slowest("optimizer")),
    ]
    if len(results) > 1:
        dp = [c for c in estimate["comm"] if c["group"].startswith("dp")]
        rows.append(_row("dp_comm_time", "s", sum(c["seconds_each"] * c["per_step"] for c in dp),
                         max(r["comm"]["seconds"] for r in results if "comm" in r)))
        rows.append(_row("dp_comm_bytes", "B", sum(c["bytes"] * c["per_step"] for c in dp),
                         float(results[0]["comm"]["bytes"]) if "comm" in results[0] else None))
    if all("memory" in r for r in results):
        predicted = single_peak_bytes if (len(results) == 1 and single_peak_bytes) else \
            estimate["memory_bytes"]["peak_per_gpu"]
        rows.append(_row("peak_memory", "B", predicted,
                         max(float(r["memory"]["peak_bytes"]) for r in results)))
    return rows


def available_memory_bytes(device: str) -> float | None:
    """Memory a run can use: device memory on CUDA, MemAvailable on a CPU host."""
    if device == "cuda":
        import torch

        return float(torch.cuda.get_device_properties(0).total_memory)
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    pages = os.sysconf("SC_AVPHYS_PAGES") if hasattr(os, "sysconf") else None
    return float(pages * os.sysconf("SC_PAGE_SIZE")) if pages else None
