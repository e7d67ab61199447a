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

from archcost.report.fmt import seconds as fmt_seconds

__all__ = ["components", "generation_components", "profile_warnings", "single_gpu_cluster",
           "available_memory_bytes", "cpu_rank_share", "profile_device", "validation_cluster"]


def single_gpu_cluster(gpu):
    """A one-device 'cluster' around a GPU profile (no links: nothing to communicate)."""
    from archcost.hardware.profile import ClusterProfile, LinkLevel, Topology

    level = LinkLevel(name="none", domain_size=None, bandwidth_per_gpu_bytes_per_s=1e30,
                      latency_s=0.0, topology=Topology.SWITCH)
    return ClusterProfile(name=gpu.name, gpu=gpu, gpus_per_node=1, levels=(level,), nodes=1,
                          gpus=1)


def profile_device(gpu) -> str | None:
    """The kind of device a profile describes, ``cpu`` or ``cuda``: what its calibration
    recorded, else for a bundled datasheet profile ``cpu`` (the bundled cpu) or ``cuda`` (a
    GPU's; ROCm runs as cuda in PyTorch); None for a file of figures that does not say."""
    from archcost.hardware.profile import list_profiles, load_gpu

    kind = (gpu.calibration or {}).get("device_kind")
    if kind in ("cpu", "cuda"):
        return kind
    if gpu.name in list_profiles()["gpus"] and gpu == load_gpu(gpu.name):
        return "cpu" if gpu.name == "cpu" else "cuda"
    return None


def _check_device_kind(cluster, name: str, device: str, nproc: int) -> None:
    """Refuse predictions for another kind of device than the one the steps run on: CPU
    timings against a GPU's figures (or the reverse) measure nothing."""
    from archcost.errors import ConfigError

    kind = profile_device(cluster.gpu)
    if kind is None or kind == device:
        return
    if device == "cpu":
        bundled = "cpu-host" if nproc > 1 else "cpu"
        raise ConfigError(f"--hardware {name} describes a GPU ({cluster.gpu.name}), but "
                          "--device cpu runs on this CPU: leave --hardware out (the bundled "
                          f"{bundled}) or calibrate this CPU (archcost calibrate --device cpu "
                          "-o my-cpu.yaml, then --hardware my-cpu.yaml); --device cuda runs on "
                          "a GPU")
    raise ConfigError(f"--hardware {name} describes a CPU ({cluster.gpu.name}), but --device "
                      "cuda runs on a GPU: give its GPU profile (default h100-sxm) or calibrate "
                      "it (archcost calibrate --device cuda -o my-gpu.yaml, then --hardware "
                      "my-gpu.yaml); --device cpu runs on this CPU")


def validation_cluster(name: str | None, device: str, nproc: int):
    """The cluster a validation's predictions use (``name``: ``--hardware``). Without it: the
    bundled ``cpu`` profile (one process) or ``cpu-host`` cluster (several: ``cpu`` with rough
    gloo-over-loopback links) on a CPU, ``h100-sxm`` or ``dgx-h100-ndr`` on CUDA. A CPU's
    profile (the bundled ``cpu``, or one ``archcost calibrate --device cpu`` wrote without
    --nproc) for several CPU processes gets ``cpu-host``'s links."""
    from archcost.hardware.profile import load_any

    if name is None:
        name = {("cpu", True): "cpu", ("cpu", False): "cpu-host",
                ("cuda", True): "h100-sxm", ("cuda", False): "dgx-h100-ndr"}[device, nproc == 1]
    prof = load_any(name)
    cluster = _sized(prof, name, device, nproc)
    _check_device_kind(cluster, name, device, nproc)
    return cluster


def _sized(prof, name: str, device: str, nproc: int):
    """The cluster of ``nproc`` processes around profile ``prof`` (a GPU or cluster profile)."""
    from dataclasses import replace

    from archcost.errors import ConfigError
    from archcost.hardware.profile import ClusterProfile, load_cluster, load_gpu

    if isinstance(prof, ClusterProfile):
        return prof.with_gpus(nproc) if nproc <= prof.gpus_per_node or nproc % \
            prof.gpus_per_node == 0 else prof
    if nproc == 1:
        return single_gpu_cluster(prof)
    if device == "cpu" and (prof == load_gpu("cpu")
                            or (prof.calibration or {}).get("device_kind") == "cpu"):
        host = load_cluster("cpu-host")
        return replace(host, gpu=prof).with_gpus(min(nproc, host.gpus_per_node))
    raise ConfigError(f"--hardware {name} is a GPU profile; {nproc} processes need a cluster "
                      "profile with the links between them (archcost calibrate --nproc N "
                      "writes one)")


def cpu_rank_share(gpu, threads: int, nproc: int = 1) -> float:
    """The part of a CPU profile each of ``nproc`` ranks on this host runs at (``threads`` each,
    ``launch.rank_threads``). Calibrated on a CPU: its threads over the threads the profile was
    measured with (all cores where it does not say), at most 1 (a 2-process gloo DDP step on 2
    cores ran twice the time the whole-host profile gave each rank). A datasheet profile
    describes the whole host (the bundled ``cpu``): 1 / nproc. Calibrated on a GPU: 1."""
    calib = getattr(gpu, "calibration", None) or {}
    if not calib:
        return 1.0 / max(1, nproc)
    if calib.get("device_kind") != "cpu":
        return 1.0
    measured = int(calib.get("threads") or os.cpu_count() or 1)
    return min(1.0, max(1, threads) / measured)


def profile_warnings(gpu, device: str, cluster=None, nproc: int = 1) -> list[str]:
    """Why the profile may not describe this machine (empty when it was measured here), in one
    line naming the calibration that gives fairer predictions."""
    from archcost.hardware.machine import machine_id

    calib = getattr(gpu, "calibration", None) or {}
    here = machine_id(device)
    links = nproc > 1 and cluster is not None and not getattr(cluster, "calibration", None)
    command = (f"archcost calibrate --device {device}"
               + (f" --nproc {nproc} -o my-machine.yaml (then --hardware "
                  "my-machine.cluster.yaml)" if nproc > 1 else
                  " -o my-machine.yaml (then --hardware my-machine.yaml)"))
    if not calib:
        what = f"profile {gpu.name}" + (f" and the links of {cluster.name}" if links else "")
        return [f"predictions use rough datasheet-like figures ({what}), not measurements of "
                f"this machine ({here}): {command} gives fairer ones"]
    measured_on = str(calib.get("device") or calib.get("device_name") or "")
    if measured_on and measured_on != here:
        return [f"profile {gpu.name} was measured on {measured_on!r}, this machine is {here!r}: "
                f"continuing, but {command} gives fairer predictions"]
    if links:
        return [f"the links between the {nproc} processes use {cluster.name}'s rough figures, "
                f"not measurements of this machine: {command} measures them"]
    return []


def _row(name: str, unit: str, predicted: float | None, measured: float | None,
         note: str | None = None) -> dict[str, Any]:
    error = None
    if predicted is not None and measured:
        error = predicted / measured - 1.0
    return {"name": name, "unit": unit, "predicted": predicted, "measured": measured,
            "error": error, "note": note}


def components(estimate: dict[str, Any], results: list[dict[str, Any]],
               single_peak_bytes: float | None) -> list[dict[str, Any]]:
    """``validation.components``: one row per quantity with predicted, measured, error and a
    note where the two count different things."""
    def slowest(key: str) -> float | None:
        values = [r["median"][key] for r in results if key in r["median"]]
        return max(values) if values else None

    plan = estimate["plan"]
    pipelined = plan.get("pp", 1) > 1
    rows = [_row("step_time", "s", estimate["step_time_s"], slowest("step"))]
    inside = "inside the pipeline schedule: see pipeline_schedule" if pipelined else None
    rows.append(_row("forward", "s", estimate["phases_s"]["forward"], slowest("forward"), inside))
    rows.append(_row("backward", "s", estimate["phases_s"]["backward"], slowest("backward"),
                     inside))
    if pipelined:
        rows.append(_row("pipeline_schedule", "s", estimate["pipeline"]["makespan_s"],
                         slowest("schedule"), "the schedule's forwards, backwards and sends of "
                         "all micro-batches (simulated makespan against its wall time)"))
    rows.append(_row("optimizer", "s", estimate["phases_s"]["optimizer"], slowest("optimizer")))
    if len(results) > 1:
        for group in ("dp", "tp", "pp"):
            if plan.get(group, 1) > 1:
                rows += _comm_rows(group, estimate, results)
    if all("memory" in r for r in results):
        predicted = single_peak_bytes if (len(results) == 1 and single_peak_bytes) else \
            estimate["memory_bytes"]["peak_per_gpu"]
        rows.append(_row("peak_memory", "B", predicted,
                         max(float(r["memory"]["peak_bytes"]) for r in results)))
    return rows


def generation_components(predicted: dict[str, Any], measured: dict[str, Any]
                          ) -> list[dict[str, Any]]:
    """``validation.components`` of a generation (``validate --infer``): TTFT, mean TPOT,
    end-to-end latency, and the decode step at each context the prediction reports
    (``inference.tpot_by_context``) against the measured step at that context.
    ``predicted``: ``archcost infer``'s ``inference`` section; ``measured``:
    ``archcost.validate.generate.run_generation``'s result."""
    steps = dict(measured["tpot_by_context"])
    e2e = measured["ttft_s"] + sum(steps.values())
    rows = [_row("ttft", "s", predicted["ttft_s"], measured["ttft_s"],
                 "prefill of the prompt with the first token's argmax"),
            _row("tpot", "s", predicted["tpot_s"], measured["tpot_s"] if steps else None,
                 "mean of the decode steps"),
            _row("e2e", "s", predicted["e2e_s"], e2e, "TTFT + the decode steps")]
    for point in predicted["tpot_by_context"]:
        context = point["context"]
        rows.append(_row(f"decode_at_{context}", "s", point["seconds"], steps.get(context),
                         f"one decode step attending {context} tokens"))
    return rows


def _comm_rows(group: str, estimate: dict[str, Any], results: list[dict[str, Any]]
               ) -> list[dict[str, Any]]:
    """``<group>_comm_time`` and ``<group>_comm_bytes``: the estimate's collectives of that plan
    dimension (bytes x count per step) against what the profiler saw in one step."""
    rows = [c for c in estimate["comm"] if c["group"].startswith(group)]
    measured = [r["comm"].get("groups", {}).get(group, {}) for r in results if "comm" in r]
    seconds = max((m.get("seconds", 0.0) for m in measured), default=None)
    if group == "pp":  # per stage boundary: activations forward and gradients back
        sent = sum(m.get("sent_bytes", 0.0) for m in measured)
        nbytes = sent / (estimate["plan"]["pp"] - 1) if measured else None
    else:  # every rank of the group hands the same bytes to its collectives
        nbytes = float(measured[0].get("bytes", 0.0)) if measured else None
    time_note, bytes_note = _notes(group, estimate, rows,
                                   float(results[0].get("tp_partial_grad_bytes", 0)))
    replayed = [m["replayed_seconds"] for m in measured if "replayed_seconds" in m]
    if replayed and seconds is not None:
        time_note = (f"the step's {group} collectives replayed one at a time after a barrier, "
                     "the setting of the collective formulas; inside the step the backend's "
                     f"host time was {fmt_seconds(seconds, 4)} (waiting for peers and overlap with "
                     "compute included)")
        seconds = max(replayed)
    return [_row(f"{group}_comm_time", "s", sum(c["seconds_each"] * c["per_step"] for c in rows),
                 seconds, time_note),
            _row(f"{group}_comm_bytes", "B", sum(c["bytes"] * c["per_step"] for c in rows),
                 nbytes, bytes_note)]


def _notes(group: str, estimate: dict[str, Any], rows: list[dict[str, Any]],
           partial_grad_bytes: float) -> tuple[str | None, str | None]:
    """What the measured and the predicted figures of a dimension count, where they differ."""
    plan = estimate["plan"]
    if group == "pp":
        return ("host time in send and receive, waiting for the peer stage included",
                "per stage boundary: the activation forward and its gradient back, per "
                "micro-batch (bytes sent by all ranks / (pp - 1))")
    if group != "tp":
        return None, None
    grads = (f" + {partial_grad_bytes:.0f} B: one all-reduce per step of the gradients of the "
             "replicated weights that saw sequence-sharded activations (the sequence-parallel "
             "norms), which the estimate leaves out" if partial_grad_bytes else "")
    if not plan.get("sp"):
        return None, ("all-reduce after each row-parallel projection in forward and of each "
                      "sub-layer's input gradient in backward; embedding and head replicated"
                      + (f"; measured = predicted{grads}" if grads else ""))
    act = rows[0]["bytes"] if rows else 0.0
    m = plan.get("num_microbatches", 1)
    return None, (f"measured = predicted + {2 * m * act:.0f} B: two all-gathers of the "
                  "activation per micro-batch that the estimate's rows leave out (the head's "
                  "input in forward, the embedding output's gradient in backward; embedding and "
                  f"head replicated){grads}; gloo runs reduce-scatter as an all-reduce of the "
                  "full buffer")


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
