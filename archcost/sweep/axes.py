"""What-if axes: ``--vary KEY=V1,V2,...`` parsed and applied to a cluster (hardware) or to the
workload (sequence length, global batch, precision, GPU count).

Values are multipliers (``2x``, ``0.5x``) of the profile's figure or absolute values with units
(``1.8TB/s``, ``192GB``, ``2000TFLOP/s``, ``3us``); counts are plain integers. Changing a peak
FLOP rate or the memory bandwidth also rescales the x axis of the matching efficiency curves by
the same factor: an op reaches a given efficiency at the same duration, so a faster part needs
proportionally more FLOPs (bytes) to get there — the rule the bundled profiles follow.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass
from typing import Any

from archcost.errors import ConfigError
from archcost.hardware.units import Quantity, UnitError, parse_quantity

__all__ = ["Axis", "AXES", "parse_vary", "apply_hardware", "check_mode", "HARDWARE_KEYS",
           "WORKLOAD_KEYS", "INFER_ONLY_KEYS", "INFER_KEYS", "LINK_KEYS", "RESOURCES"]

# key -> (quantity kind or "count"/"name"/"dtype", description)
AXES: dict[str, tuple[str, str]] = {
    "peak_flops": (Quantity.FLOPS_RATE, "dense peak of every dtype (absolute: the compute dtype's)"),
    "mem_bw": (Quantity.BANDWIDTH, "device memory bandwidth"),
    "mem_capacity": (Quantity.BYTES, "device memory capacity"),
    "link_bw": (Quantity.BANDWIDTH, "bandwidth per GPU of the innermost link level (NVLink)"),
    "net_bw": (Quantity.BANDWIDTH, "bandwidth per GPU of the outermost link level (network)"),
    "link_latency": (Quantity.TIME, "latency of the innermost link level"),
    "net_latency": (Quantity.TIME, "latency of the outermost link level"),
    "scaleup_domain": ("count", "GPUs in the innermost (NVLink) domain"),
    "gpus_per_node": ("count", "GPUs per node"),
    "host_link_bw": (Quantity.BANDWIDTH, "GPU-host link bandwidth (offload)"),
    "tdp": (Quantity.POWER, "board power"),
    "price": (Quantity.USD_PER_HOUR, "price per GPU-hour"),
    "gpu": ("name", "GPU profile swapped into the cluster"),
    "cluster": ("name", "cluster profile, optionally with another GPU: dgx-h100-ndr+h200"),
    "gpus": ("count", "GPUs used"),
    "seq_len": ("count", "tokens per sequence"),
    "gbs": ("count", "global batch in sequences"),
    "dtype": ("dtype", "precision policy"),
    # inference (sweep --infer) only
    "batch": ("count", "sequences generated together (inference)"),
    "input_len": ("count", "prompt tokens per sequence (inference)"),
    "output_len": ("count", "tokens generated per sequence (inference)"),
    "hardware": ("name", "GPU or cluster profile one replica runs on (inference)"),
}
ALIASES = {"nvlink_bw": "link_bw", "memory": "mem_capacity", "hbm_bw": "mem_bw",
           "nvlink_domain": "scaleup_domain", "network_bw": "net_bw", "flops": "peak_flops",
           "global_batch": "gbs", "seq": "seq_len"}
WORKLOAD_KEYS = ("gpus", "seq_len", "gbs", "dtype")
INFER_ONLY_KEYS = ("batch", "input_len", "output_len", "hardware")
HARDWARE_KEYS = tuple(k for k in AXES if k not in WORKLOAD_KEYS + INFER_ONLY_KEYS)
# what an inference sweep varies: its own keys, the precision, a GPU swapped in, and the
# hardware figures generation reads (power, price, host link and node shape it does not)
INFER_KEYS = (*INFER_ONLY_KEYS, "dtype", "gpu", "peak_flops", "mem_bw", "mem_capacity",
              "link_bw", "net_bw", "link_latency", "net_latency", "scaleup_domain")
# figures of the link levels between GPUs: a lone GPU (a GPU profile) has none
LINK_KEYS = ("link_bw", "net_bw", "link_latency", "net_latency", "scaleup_domain")
# continuous resources whose elasticity ``sensitivity`` reports
RESOURCES = ("peak_flops", "mem_bw", "link_bw", "net_bw", "link_latency", "net_latency")


@dataclass(frozen=True)
class Axis:
    key: str
    values: tuple[Any, ...]  # ("x", factor) for multipliers, else absolute values
    labels: tuple[str, ...]


def _canonical(key: str) -> str:
    k = ALIASES.get(key.strip().lower(), key.strip().lower())
    if k in ("tp", "pp", "dp", "cp", "ep"):
        given = f"give --{k} (with --infer; the same for every point) or " if k in (
            "tp", "pp") else ""
        raise ConfigError(f"--vary {key}: parallelism is not a sweep axis; {given}let a "
                          "sweep choose it at each point (its plan search, or archcost infer "
                          "--gpus N)")
    if k not in AXES:
        near = difflib.get_close_matches(k, list(AXES) + list(ALIASES), n=1, cutoff=0.5)
        hint = f"did you mean {near[0]!r}? " if near else ""
        raise ConfigError(f"--vary {key}: unknown key; {hint}keys: {', '.join(AXES)}")
    return k


def _value(key: str, text: str):
    kind = AXES[key][0]
    t = text.strip()
    if kind in ("name", "dtype"):
        return t
    if t.lower().endswith("x") and kind != "count":
        try:
            f = float(t[:-1])
        except ValueError:
            raise ConfigError(f"--vary {key}={text}: write a multiplier like 2x") from None
        if not f > 0:
            raise ConfigError(f"--vary {key}={text}: multipliers must be > 0")
        return ("x", f)
    if kind == "count":
        try:
            n = int(t)
        except ValueError:
            raise ConfigError(f"--vary {key}={text}: {AXES[key][1]} is a whole number") from None
        if n < 1:
            raise ConfigError(f"--vary {key}={text}: must be >= 1")
        return n
    try:
        return parse_quantity(t, kind)
    except UnitError as exc:
        raise ConfigError(f"--vary {key}={text}: {exc}; or a multiplier like 2x") from None


def parse_vary(items: list[str]) -> list[Axis]:
    axes: list[Axis] = []
    for item in items:
        key, eq, rest = item.partition("=")
        if not eq or not rest.strip():
            raise ConfigError(f"--vary {item!r}: write KEY=V1,V2,... e.g. mem_bw=1x,2x,4x")
        k = _canonical(key)
        if any(a.key == k for a in axes):
            raise ConfigError(f"--vary {k} given twice: give its values once")
        labels = tuple(v.strip() for v in rest.split(",") if v.strip())
        values = tuple(_value(k, v) for v in labels)
        twice = next((lab for i, lab in enumerate(labels) if values[i] in values[:i]), None)
        if twice is not None:
            raise ConfigError(f"--vary {k}={rest}: {twice} given twice; give each value once")
        axes.append(Axis(k, values, labels))
    return axes


def check_mode(axes: list[Axis], infer: bool) -> None:
    """One line when an axis does not belong to the kind of sweep: inference keys without
    ``--infer``, training-only keys (or figures generation does not read) with it."""
    for a in axes:
        if not infer and a.key in INFER_ONLY_KEYS:
            raise ConfigError(f"--vary {a.key}: an inference axis; add --infer to sweep "
                              "generation (a training sweep varies gbs and seq_len)")
        if infer and a.key not in INFER_KEYS:
            raise ConfigError(f"--vary {a.key}: not an inference axis; with --infer vary "
                              f"{', '.join(INFER_KEYS)}")


def _resolve(value, current: float) -> float:
    return current * value[1] if isinstance(value, tuple) else float(value)


def apply_hardware(cluster, key: str, value, compute_key: str = "bf16"):
    """``cluster`` with one hardware figure changed. A link figure of a lone GPU (a GPU
    profile: no link levels) is refused, as a training sweep refuses a GPU profile."""
    gpu = cluster.gpu
    levels = list(cluster.levels)
    if key in LINK_KEYS and not levels:
        raise ConfigError(f"--vary {key}: {cluster.name} is one GPU, with no links to vary; "
                          "give a cluster profile, e.g. --hardware dgx-h100-ndr (its links "
                          "carry the traffic of --tp or --pp > 1)")
    if key == "peak_flops":
        current = gpu.peak_flops_per_s.get(compute_key) or gpu.peak_flops_per_s["fp32"]
        gpu = gpu.scaled(flops=_resolve(value, current) / current)
    elif key == "mem_bw":
        gpu = gpu.scaled(mem_bw=_resolve(value, gpu.mem_bw_bytes_per_s) / gpu.mem_bw_bytes_per_s)
    elif key == "mem_capacity":
        gpu = dataclasses.replace(gpu, mem_bytes=_resolve(value, gpu.mem_bytes))
    elif key in ("link_bw", "net_bw", "link_latency", "net_latency"):
        i = 0 if key.startswith("link") else len(levels) - 1
        lv = levels[i]
        if key.endswith("_bw"):
            levels[i] = lv.scaled(bw_factor=_resolve(value, lv.bandwidth_per_gpu_bytes_per_s)
                                  / lv.bandwidth_per_gpu_bytes_per_s)
        else:
            levels[i] = lv.scaled(latency_factor=_resolve(value, lv.latency_s) / lv.latency_s)
    elif key == "scaleup_domain":
        n = int(value[1] * (levels[0].domain_size or 1)) if isinstance(value, tuple) else value
        levels[0] = dataclasses.replace(levels[0], domain_size=n)
    elif key == "gpus_per_node":
        n = int(value[1] * cluster.gpus_per_node) if isinstance(value, tuple) else value
        cluster = dataclasses.replace(cluster, gpus_per_node=n)
    elif key == "host_link_bw":
        cur = gpu.host_link_bw_bytes_per_s or 0.0
        if isinstance(value, tuple) and not cur:
            raise ConfigError(f"--vary host_link_bw: {gpu.name} has no host link figure to "
                              "multiply; give an absolute value like 64GB/s")
        gpu = dataclasses.replace(gpu, host_link_bw_bytes_per_s=_resolve(value, cur))
    elif key == "tdp":
        gpu = dataclasses.replace(gpu, tdp_w=_resolve(value, gpu.tdp_w))
    elif key == "price":
        cur = cluster.price_per_gpu_hour_usd or gpu.price_per_gpu_hour_usd
        if isinstance(value, tuple) and cur is None:
            raise ConfigError("--vary price: the profile has no price to multiply; give "
                              "absolute prices like '$2/h'")
        cluster = dataclasses.replace(cluster, price_per_gpu_hour_usd=_resolve(value, cur or 0))
    elif key == "gpu":
        from archcost.hardware.profile import load_gpu

        gpu = load_gpu(value)
    else:
        raise ConfigError(f"{key} is not a hardware figure")
    if not all(math.isfinite(lv.bandwidth_per_gpu_bytes_per_s) for lv in levels):
        raise ConfigError(f"--vary {key}: bandwidth must be finite")
    return dataclasses.replace(cluster, gpu=gpu, levels=tuple(levels))
