"""Hardware profiles: GPUs and clusters, read from YAML and validated into frozen dataclasses.

Bundled profiles live in ``hardware_profiles/`` of the source tree, installed as the package
``archcost.profiles``; a path ending in ``.yaml``/``.yml`` or containing a separator names a
user's file instead. Values carry units ("989 TFLOP/s", "80 GB", "450 GB/s"); inside, everything
is SI (FLOP/s, bytes, bytes/s, seconds, watts). Every malformed file gives one ProfileError line
naming the file, the field and the fix.
"""

from __future__ import annotations

import difflib
import enum
import math
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from archcost.errors import ProfileError
from archcost.hardware.units import UnitError, parse_quantity

__all__ = [
    "EfficiencyCurve", "GpuProfile", "LinkLevel", "ClusterProfile", "Topology",
    "load_gpu", "load_cluster", "load_any", "list_profiles", "DTYPES",
]

DTYPES = ("fp32", "tf32", "bf16", "fp16", "fp8")


class Topology(str, enum.Enum):
    SWITCH = "switch"
    FULL_MESH = "full-mesh"
    RING = "ring"
    FAT_TREE = "fat-tree"
    RAIL_OPTIMIZED = "rail-optimized"
    TORUS = "torus"


@dataclass(frozen=True, slots=True)
class EfficiencyCurve:
    """Achieved fraction of peak as a piecewise-linear function of log10(x), clamped."""

    points: tuple[tuple[float, float], ...]

    @property
    def xs_log10(self) -> np.ndarray:
        return np.array([math.log10(x) for x, _ in self.points], dtype=np.float64)

    @property
    def ys(self) -> np.ndarray:
        return np.array([y for _, y in self.points], dtype=np.float64)

    def at(self, x: float) -> float:
        xs, ys = self.xs_log10, self.ys
        if x <= 0:
            return float(ys[0])
        return float(np.interp(math.log10(x), xs, ys))


@dataclass(frozen=True, slots=True)
class GpuProfile:
    name: str
    vendor: str
    peak_flops_per_s: dict[str, float]  # dense, per dtype in DTYPES (absent when unsupported)
    mem_bytes: float
    mem_bw_bytes_per_s: float
    l2_bytes: float
    kernel_launch_s: float
    tdp_w: float
    idle_power_fraction: float
    matmul_efficiency: EfficiencyCurve
    attention_efficiency: EfficiencyCurve
    memory_efficiency: EfficiencyCurve
    price_per_gpu_hour_usd: float | None = None
    source_path: str = ""


@dataclass(frozen=True, slots=True)
class LinkLevel:
    name: str
    domain_size: int | None  # GPUs reachable inside this level; None = unbounded
    bandwidth_per_gpu_bytes_per_s: float  # one direction, per GPU
    latency_s: float
    topology: Topology


@dataclass(frozen=True, slots=True)
class ClusterProfile:
    name: str
    gpu: GpuProfile
    gpus_per_node: int
    levels: tuple[LinkLevel, ...]
    nodes: int = 1
    max_nodes: int | None = None
    node_power_overhead_w: float = 0.0
    source_path: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def gpus(self) -> int:
        return self.nodes * self.gpus_per_node

    def with_gpus(self, n: int) -> ClusterProfile:
        """The same cluster scaled to hold ``n`` GPUs (whole nodes beyond one node)."""
        if n < 1:
            raise ProfileError(f"{self.name}: {n} GPUs asked for; ask for at least 1")
        nodes = math.ceil(n / self.gpus_per_node)
        if n > self.gpus_per_node and n % self.gpus_per_node:
            raise ProfileError(
                f"{self.name}: {n} GPUs is not a whole number of {self.gpus_per_node}-GPU nodes; "
                f"ask for a multiple of {self.gpus_per_node}"
            )
        if self.max_nodes is not None and nodes > self.max_nodes:
            raise ProfileError(
                f"{self.name}: {n} GPUs needs {nodes} nodes but the cluster has at most "
                f"{self.max_nodes}; ask for at most {self.max_nodes * self.gpus_per_node}"
            )
        return replace(self, nodes=nodes)


# --- reading ------------------------------------------------------------------------------------
GPU_FIELDS = {
    "name": "str", "vendor": "str", "peak_flops": "map", "memory": "bytes",
    "memory_bandwidth": "bandwidth", "l2_cache": "bytes", "kernel_launch": "time",
    "tdp": "power", "idle_power_fraction": "fraction", "price_per_gpu_hour": "usd_per_hour",
    "matmul_efficiency": "curve", "attention_efficiency": "curve", "memory_efficiency": "curve",
}
GPU_OPTIONAL = {"price_per_gpu_hour", "attention_efficiency"}
CLUSTER_FIELDS = {
    "name": "str", "gpu": "str", "gpus_per_node": "int", "levels": "levels",
    "max_nodes": "int", "node_power_overhead": "power", "notes": "str",
}
CLUSTER_OPTIONAL = {"max_nodes", "node_power_overhead", "notes"}
LEVEL_FIELDS = {"name": "str", "domain_size": "int_or_null", "bandwidth_per_gpu": "bandwidth",
                "latency": "time", "topology": "str"}


class _Reader:
    """Field-by-field validation with errors that name the file and the field."""

    def __init__(self, path: str):
        self.file = Path(path).name

    def fail(self, fld: str, msg: str) -> ProfileError:
        return ProfileError(f"{self.file}: field '{fld}': {msg}")

    def check_keys(self, data: dict, known: dict, optional: set, where: str = "") -> None:
        for key in data:
            if key not in known:
                near = difflib.get_close_matches(str(key), list(known), n=1)
                hint = f"did you mean '{near[0]}'?" if near else f"known fields: {', '.join(known)}"
                raise self.fail(where + str(key), f"unknown field; {hint}")
        for key in known:
            if key not in data and key not in optional:
                raise self.fail(where + key, f"missing; add it (e.g. {_example(known[key])})")

    def quantity(self, data: dict, key: str, kind: str, where: str = "", positive=True) -> float:
        try:
            v = parse_quantity(data[key], kind)
        except UnitError as exc:
            raise self.fail(where + key, str(exc)) from None
        if positive and not v > 0:
            raise self.fail(where + key, f"{data[key]!r} must be positive; give the real rate or size")
        return v

    def curve(self, data: dict, key: str) -> EfficiencyCurve:
        pts = data[key]
        if not isinstance(pts, list) or not pts:
            raise self.fail(key, "must be a list of [x, efficiency] pairs, e.g. [[1e9, 0.5], [1e12, 0.8]]")
        out = []
        for p in pts:
            if not (isinstance(p, list) and len(p) == 2 and all(_as_num(v) is not None for v in p)):
                raise self.fail(key, f"point {p!r} is not a pair [x, efficiency] of numbers")
            x, y = _as_num(p[0]), _as_num(p[1])
            if x <= 0:
                raise self.fail(key, f"point {p!r}: x must be positive")
            if not 0 < y <= 1:
                raise self.fail(key, f"point {p!r}: efficiency must be in (0, 1]")
            out.append((x, y))
        if any(b[0] <= a[0] for a, b in zip(out, out[1:])):
            raise self.fail(key, "x values must increase from point to point")
        return EfficiencyCurve(tuple(out))


def _as_num(v) -> float | None:
    """A number, or a string YAML left unparsed such as '1.0e6' (YAML 1.1 wants '1.0e+6')."""
    if _is_num(v):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return None


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _example(kind: str) -> str:
    return {"str": "'h100-sxm'", "bytes": "'80 GB'", "bandwidth": "'3.35 TB/s'", "time": "'3 us'",
            "power": "'700 W'", "fraction": "0.3", "map": "{bf16: '989 TFLOP/s'}",
            "curve": "[[1e9, 0.5], [1e12, 0.8]]", "int": "8", "levels": "a list of link levels",
            "usd_per_hour": "'2.50 $/h'", "int_or_null": "8"}.get(kind, "a value")


def _read_yaml(path: Path, label: str) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileError(f"{label}: cannot read it ({exc.strerror}); check the path") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ProfileError(f"{path.name}: YAML syntax error{where}; fix the file") from None
    if not isinstance(data, dict):
        raise ProfileError(f"{path.name}: the top level must be a mapping of fields")
    return data


def _bundled_dir(kind: str):
    return resources.files("archcost.profiles").joinpath(kind)


def _resolve(name_or_path: str, kind: str) -> Path:
    text = str(name_or_path)
    if text.endswith((".yaml", ".yml")) or "/" in text or "\\" in text:
        p = Path(text)
        if not p.is_file():
            raise ProfileError(f"{text}: profile file not found; check the path")
        return p
    res = _bundled_dir(kind).joinpath(f"{text}.yaml")
    if not res.is_file():
        names = list_profiles()[kind]
        near = difflib.get_close_matches(text, names, n=1)
        hint = f"did you mean '{near[0]}'? " if near else ""
        raise ProfileError(f"no {kind[:-1]} profile named '{text}'; {hint}known: {', '.join(names)}")
    return Path(str(res))


def list_profiles() -> dict[str, list[str]]:
    out = {}
    for kind in ("gpus", "clusters"):
        d = _bundled_dir(kind)
        out[kind] = sorted(p.name[: -len(".yaml")] for p in d.iterdir() if p.name.endswith(".yaml"))
    return out


def load_gpu(name_or_path: str) -> GpuProfile:
    path = _resolve(name_or_path, "gpus")
    data = _read_yaml(path, str(name_or_path))
    return gpu_from_dict(data, str(path))


def gpu_from_dict(data: dict[str, Any], path: str) -> GpuProfile:
    r = _Reader(path)
    r.check_keys(data, GPU_FIELDS, GPU_OPTIONAL)
    peaks_raw = data["peak_flops"]
    if not isinstance(peaks_raw, dict) or not peaks_raw:
        raise r.fail("peak_flops", "must map dtypes to rates, e.g. {bf16: '989 TFLOP/s'}")
    peaks = {}
    for dt, v in peaks_raw.items():
        if dt not in DTYPES:
            raise r.fail(f"peak_flops.{dt}", f"unknown dtype; use one of {', '.join(DTYPES)}")
        if v is None:
            continue  # unsupported on this part
        peaks[dt] = r.quantity(peaks_raw, dt, "flops_rate", "peak_flops.")
    if "fp32" not in peaks:
        raise r.fail("peak_flops.fp32", "missing; every profile needs the fp32 rate")
    idle = data["idle_power_fraction"]
    if not _is_num(idle) or not 0 <= idle < 1:
        raise r.fail("idle_power_fraction", f"{idle!r} must be a number in [0, 1)")
    mm = r.curve(data, "matmul_efficiency")
    return GpuProfile(
        name=str(data["name"]), vendor=str(data["vendor"]), peak_flops_per_s=peaks,
        mem_bytes=r.quantity(data, "memory", "bytes"),
        mem_bw_bytes_per_s=r.quantity(data, "memory_bandwidth", "bandwidth"),
        l2_bytes=r.quantity(data, "l2_cache", "bytes"),
        kernel_launch_s=r.quantity(data, "kernel_launch", "time"),
        tdp_w=r.quantity(data, "tdp", "power"),
        idle_power_fraction=float(idle),
        matmul_efficiency=mm,
        attention_efficiency=r.curve(data, "attention_efficiency") if "attention_efficiency" in data else mm,
        memory_efficiency=r.curve(data, "memory_efficiency"),
        price_per_gpu_hour_usd=(r.quantity(data, "price_per_gpu_hour", "usd_per_hour")
                                if data.get("price_per_gpu_hour") is not None else None),
        source_path=path,
    )


def load_any(name_or_path: str) -> GpuProfile | ClusterProfile:
    """A GPU or a cluster profile, whichever the name or file holds."""
    text = str(name_or_path)
    if text in list_profiles()["clusters"]:
        return load_cluster(text)
    if text.endswith((".yaml", ".yml")) or "/" in text or "\\" in text:
        path = _resolve(text, "gpus")
        data = _read_yaml(path, text)
        if "levels" in data or "gpus_per_node" in data:
            return load_cluster(text)
    return load_gpu(text)


def load_cluster(name_or_path: str, gpus: int | None = None) -> ClusterProfile:
    path = _resolve(name_or_path, "clusters")
    data = _read_yaml(path, str(name_or_path))
    r = _Reader(str(path))
    r.check_keys(data, CLUSTER_FIELDS, CLUSTER_OPTIONAL)
    gpn = data["gpus_per_node"]
    if not isinstance(gpn, int) or isinstance(gpn, bool) or gpn < 1:
        raise r.fail("gpus_per_node", f"{gpn!r} must be a positive whole number")
    gpu_ref = str(data["gpu"])
    if not (gpu_ref.endswith((".yaml", ".yml")) or "/" in gpu_ref):
        if gpu_ref not in list_profiles()["gpus"]:
            raise r.fail("gpu", f"no GPU profile named '{gpu_ref}'; use one of "
                                f"{', '.join(list_profiles()['gpus'])}")
    else:
        gpu_ref = str(path.parent / gpu_ref) if not Path(gpu_ref).is_absolute() else gpu_ref
    levels_raw = data["levels"]
    if not isinstance(levels_raw, list) or not levels_raw:
        raise r.fail("levels", "must be a list of link levels from innermost to outermost")
    levels = []
    for i, lv in enumerate(levels_raw):
        where = f"levels[{i}]."
        if not isinstance(lv, dict):
            raise r.fail(f"levels[{i}]", "each level must be a mapping")
        r.check_keys(lv, LEVEL_FIELDS, set(), where)
        dom = lv["domain_size"]
        if dom is not None and (not isinstance(dom, int) or isinstance(dom, bool) or dom < 1):
            raise r.fail(where + "domain_size", f"{dom!r} must be a positive whole number or null")
        try:
            topo = Topology(str(lv["topology"]))
        except ValueError:
            raise r.fail(where + "topology", f"{lv['topology']!r} is unknown; use one of "
                                             f"{', '.join(t.value for t in Topology)}") from None
        levels.append(LinkLevel(
            name=str(lv["name"]), domain_size=dom,
            bandwidth_per_gpu_bytes_per_s=r.quantity(lv, "bandwidth_per_gpu", "bandwidth", where),
            latency_s=r.quantity(lv, "latency", "time", where), topology=topo,
        ))
    max_nodes = data.get("max_nodes")
    cluster = ClusterProfile(
        name=str(data["name"]), gpu=load_gpu(gpu_ref), gpus_per_node=gpn, levels=tuple(levels),
        nodes=1, max_nodes=max_nodes,
        node_power_overhead_w=(r.quantity(data, "node_power_overhead", "power")
                               if "node_power_overhead" in data else 0.0),
        source_path=str(path), notes=(str(data["notes"]),) if "notes" in data else (),
    )
    return cluster.with_gpus(gpus) if gpus else cluster
