"""Hardware profiles: GPUs and clusters, read from YAML and validated into frozen dataclasses.

A name ("h100-sxm", "dgx-h100-ndr") is a profile bundled in ``hardware_profiles/`` of the source
tree, installed as the package ``archcost.profiles`` and read with importlib.resources; anything
ending in ``.yaml``/``.yml`` or holding a path separator is a user's file. Values in files carry
units ("989 TFLOP/s", "80 GB", "450 GB/s", see units.py); the dataclasses hold SI units only
(FLOP/s, bytes, bytes/s, seconds, watts). A malformed file gives one ProfileError line naming the
file, the field and the fix. The figures themselves and their sources live in the YAML files;
the measured tables a GPU may carry (GEMM efficiency by shape per dtype, attention efficiency
per kernel) are ``tables.py``'s.
A part may also state its 2:4-sparse peaks (``sparse_peak_flops``: the figures datasheets print
with sparsity, each above its dtype's dense peak and at most twice it) and that its memory is
unified with the CPU's (``unified_memory: {gpu_share: 0.75}``: ``memory`` is then the whole
shared memory and ``mem_bytes``, the capacity every estimate reads, the GPU's share of it).
Profiles written by ``archcost calibrate`` add an optional ``calibration`` mapping (per benchmark
point medians and spreads, date, device): checked only to be a mapping, kept on the dataclass,
never read by the cost engine.
"""

from __future__ import annotations

import bisect
import enum
import math
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from archcost.errors import ProfileError
from archcost.hardware.reader import EXAMPLE, Reader, read_yaml, suggest
from archcost.hardware.tables import (
    ALL_DTYPES,
    AttentionTable,
    ShapeTable,
    read_attention_tables,
    read_shape_tables,
)
from archcost.hardware.units import Quantity

__all__ = [
    "Dtype", "DTYPES", "Topology", "EfficiencyCurve", "ShapeTable", "AttentionTable",
    "GpuProfile", "LinkLevel",
    "ClusterProfile",
    "load_gpu", "load_cluster", "load_any", "list_profiles", "gpu_from_dict",
]


class Dtype(str, enum.Enum):
    """Dtypes with a peak rate in a profile; ``peak_flops_per_s`` is keyed by their values."""

    FP32 = "fp32"
    TF32 = "tf32"
    BF16 = "bf16"
    FP16 = "fp16"
    FP8 = "fp8"
    MXFP8 = "mxfp8"  # OCP MX FP8: FP8 elements, one shared scale per 32 (Blackwell tensor cores)
    NVFP4 = "nvfp4"  # NVIDIA FP4 (e2m1) with one FP8 scale per 16 elements (Blackwell)
    INT8 = "int8"  # integer tensor-core multiply-adds, two operations each (datasheets' TOPS)


DTYPES = tuple(d.value for d in Dtype)


class Topology(str, enum.Enum):
    SWITCH = "switch"
    FULL_MESH = "full-mesh"
    RING = "ring"
    FAT_TREE = "fat-tree"
    RAIL_OPTIMIZED = "rail-optimized"
    TORUS = "torus"


@dataclass(frozen=True, slots=True)
class EfficiencyCurve:
    """Achieved fraction of peak vs. the size of one op (FLOPs or bytes).

    Piecewise-linear in log10(x) between the points, constant beyond the first and last point
    (Calculon's efficiency tables, interpolated in log space). ``xs_log10``/``ys`` are the
    arrays the numba kernels take.
    """

    points: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        pts = tuple((float(x), float(y)) for x, y in self.points)
        # internal invariant: files are validated (with a user-facing message) before this
        if not pts or any(x <= 0 or not 0 < y <= 1 for x, y in pts) or any(
            b[0] <= a[0] for a, b in zip(pts, pts[1:])
        ):
            raise ValueError(f"invalid efficiency curve {pts!r}")
        object.__setattr__(self, "points", pts)

    @property
    def xs_log10(self) -> np.ndarray:
        return np.log10(np.array([x for x, _ in self.points], dtype=np.float64))

    @property
    def ys(self) -> np.ndarray:
        return np.array([y for _, y in self.points], dtype=np.float64)

    def scaled(self, factor: float) -> EfficiencyCurve:
        """The curve of a part ``factor`` times as fast: an op reaches each efficiency at the
        same duration, so at ``factor`` times the size."""
        return replace(self, points=tuple((x * factor, y) for x, y in self.points))

    def capped_by(self, base: EfficiencyCurve) -> EfficiencyCurve:
        """This curve with, at each of ``base``'s points strictly inside its range, a point no
        higher than ``base`` there times the largest ratio to ``base`` this curve has at its
        own points; its own points and constant ends unchanged. An op timed at a few sizes
        (``op_efficiency``) then moves its bytes no faster, against the fastest streaming op
        (``memory_efficiency``: the best of copy and add) at the same size, than it was ever
        timed to: that curve's denser points see a cache edge falling between the op's, which
        reading the op's curve straight across would bridge. Parameter-free: an op timed
        faster than streaming (its bytes by the tracer's rule more than it moves) is capped
        that much higher."""
        own = self.points
        ratio = max(y / base.at(x) for x, y in own)
        inner = [(x, min(self.at(x), base.at(x) * ratio)) for x, _ in base.points
                 if own[0][0] < x < own[-1][0] and all(x != ox for ox, _ in own)]
        if not inner:
            return self
        return replace(self, points=tuple(sorted(list(own) + inner)))

    def at(self, x: float) -> float:
        pts = self.points
        if x <= pts[0][0]:
            return pts[0][1]
        if x >= pts[-1][0]:
            return pts[-1][1]
        i = bisect.bisect_right([p[0] for p in pts], x)  # pts[i-1].x <= x < pts[i].x
        (x0, y0), (x1, y1) = pts[i - 1], pts[i]
        t = (math.log10(x) - math.log10(x0)) / (math.log10(x1) - math.log10(x0))
        return y0 + t * (y1 - y0)


@dataclass(frozen=True, slots=True, kw_only=True)
class GpuProfile:
    name: str
    vendor: str
    peak_flops_per_s: dict[str, float]  # dense (not 2:4 sparse), keys Dtype values; absent = unsupported
    mem_bytes: float
    mem_bw_bytes_per_s: float
    l2_bytes: float  # last-level on-chip cache in front of device memory
    kernel_launch_s: float
    tdp_w: float
    idle_power_fraction: float  # idle draw / TDP
    price_per_gpu_hour_usd: float | None
    matmul_efficiency: EfficiencyCurve  # x: FLOPs of one matmul
    attention_efficiency: EfficiencyCurve  # x: FLOPs of one attention op
    memory_efficiency: EfficiencyCurve  # x: bytes moved by one op
    source_path: str = ""
    # the GPU's link to host memory, per direction (PCIe, NVLink-C2C), and the host-memory
    # bandwidth a GPU's share of its node gets: what offloading optimizer states or
    # activations runs on; None = unknown (offloaded plans cannot be costed)
    host_link_bw_bytes_per_s: float | None = None
    host_memory_bw_bytes_per_s: float | None = None
    # what `archcost calibrate` measured (per benchmark point median and spread, date, device):
    # a record kept with the figures, never read by the cost engine; None for datasheet profiles
    calibration: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    # measured refinements (`archcost calibrate` writes them; datasheet profiles leave them
    # out): convolutions' own efficiency curve (None: the matmul curve); per aten op, the
    # fraction of memory bandwidth that op reaches by its size in bytes, replacing
    # memory_efficiency for it (ops that are slower than their bytes, such as transcendental
    # pointwise ops and normalisations on a CPU); and the per-op overhead of each phase of a
    # step (forward, backward, optimizer) where it differs from kernel_launch
    conv_efficiency: EfficiencyCurve | None = None
    conv_backward_efficiency: EfficiencyCurve | None = None  # None: conv_efficiency's
    # attention by the FLOPs of one (batch, head) slice, where the op's shape tells them: on a
    # CPU an attention's rate follows its sequence length and head dim, not its batch x heads
    # (None: attention_efficiency by the op's FLOPs)
    attention_head_efficiency: EfficiencyCurve | None = None
    # attention ops of one query (a decode step's) by the FLOPs of one (batch, head) slice;
    # None: they read the curves above
    attention_decode_efficiency: EfficiencyCurve | None = None
    # matmuls (mm, addmm; bmm, baddbmm as (b*m, n, k)) by their (m, n, k), per dtype key
    # (``ALL_DTYPES``: every dtype, what a CUDA calibration writes; a CPU one writes fp32 and
    # bf16); fractions of the peak of each op's
    # dtype. A dtype without a table reads matmul_efficiency by FLOPs. A bare ShapeTable given
    # here is taken as the table of every dtype.
    matmul_shape_efficiency: dict[str, ShapeTable] = field(default_factory=dict)
    # rows of those tables (per key alike) timed with the weights in the last-level cache
    # (l2_bytes): what a decode step reads whose bytes moved fit there, its weights staying
    # from step to step (``warm_weights``); a CPU calibration writes them, {} elsewhere
    matmul_shape_efficiency_warm: dict[str, ShapeTable] = field(default_factory=dict)
    # fused attention kernels (flash2, flash3, cudnn, ...) by head dim, sequence, mask and
    # phase: read for attention ops when the caller names the kernel that runs them
    attention_kernels: dict[str, AttentionTable] = field(default_factory=dict)
    op_efficiency: dict[str, EfficiencyCurve] = field(default_factory=dict)
    # the share of the clock its rate tables were measured at that the GPU holds through a
    # whole training step at its power limit: compute-bound ops (matmuls, attention,
    # convolutions) run at their table's rate times this; memory-bound ops are unchanged (the
    # memory clock is separate). 1.0 where the tables were measured as training runs.
    sustained_clock: float = 1.0
    op_overhead_s: dict[str, float] = field(default_factory=dict)
    # False (a CPU, a datasheet): an op costs its roofline time plus its phase's op_overhead
    # (else kernel_launch), one after the other. True (a GPU calibrated by archcost): the host
    # issues kernels ahead of the device, so op_overhead (the host's time per op of eager
    # PyTorch) is a floor under each op's time and kernel_launch (the device's time per
    # kernel) what is added to it: tiny ops run at the host's pace, large ones at the GPU's
    host_ahead: bool = False
    # a kernel's time beyond its work when replayed in a CUDA graph (no host launch, no host
    # time per op): what a runtime that captures its decode steps pays a kernel
    # (``in_cuda_graph``); None: not measured, kernel_launch applies
    graph_launch_s: float | None = None
    # what eager Python pays beyond the charged ops of an inference forward (calibration
    # measures it under torch.inference_mode; datasheet profiles leave it out, and nothing is
    # charged): per ``DISPATCH_KINDS`` entry, seconds per call -- a view or
    # metadata op (no work of its own), an nn.Module call
    dispatch_overhead_s: dict[str, float] = field(default_factory=dict)
    # streaming multiprocessors: what a runtime's communication kernels take a share of while
    # they overlap compute (None: unknown, no share taken)
    sm_count: int | None = None
    # 2:4 structured-sparse peaks, keyed like peak_flops_per_s (only dtypes the datasheet gives)
    sparse_peak_flops_per_s: dict[str, float] = field(default_factory=dict)
    # memory shared with the CPU (Apple silicon, Jetson): the whole of it; mem_bytes is the share
    # the GPU may use. None: the GPU's own memory.
    unified_memory_bytes: float | None = None

    def __post_init__(self) -> None:
        table = self.matmul_shape_efficiency
        if table is None:
            object.__setattr__(self, "matmul_shape_efficiency", {})
        elif isinstance(table, ShapeTable):
            object.__setattr__(self, "matmul_shape_efficiency", {ALL_DTYPES: table})

    def shape_table(self, dtype_key: str) -> ShapeTable | None:
        """The shape table of ops of ``dtype_key`` (a ``peak_flops_per_s`` key), or None."""
        tables = self.matmul_shape_efficiency
        return tables.get(dtype_key) or tables.get(ALL_DTYPES)

    def attention_table(self, kernel: str) -> AttentionTable:
        """The table of attention kernel ``kernel``; a one-line ProfileError naming the kernels
        this profile has when it has none for it."""
        table = self.attention_kernels.get(kernel)
        if table is None:
            have = ", ".join(sorted(self.attention_kernels)) or "none"
            hint = suggest(kernel, sorted(self.attention_kernels))
            raise ProfileError(f"GPU profile {self.name} has no attention table for kernel "
                               f"'{kernel}'; {hint}its kernels: {have}")
        return table

    def scaled(self, flops: float = 1.0, mem_bw: float = 1.0) -> GpuProfile:
        """This part with every FLOP rate ``flops`` times and its memory bandwidth ``mem_bw``
        times as fast; each efficiency curve (and shape table) reaches its efficiencies at
        sizes scaled alike, as ops of the same duration. Overheads are unchanged."""
        def curve(c):
            return c.scaled(flops) if c is not None else None

        return replace(
            self, peak_flops_per_s={k: v * flops for k, v in self.peak_flops_per_s.items()},
            sparse_peak_flops_per_s={k: v * flops
                                     for k, v in self.sparse_peak_flops_per_s.items()},
            matmul_efficiency=curve(self.matmul_efficiency),
            attention_efficiency=curve(self.attention_efficiency),
            attention_head_efficiency=curve(self.attention_head_efficiency),
            attention_decode_efficiency=curve(self.attention_decode_efficiency),
            conv_efficiency=curve(self.conv_efficiency),
            conv_backward_efficiency=curve(self.conv_backward_efficiency),
            matmul_shape_efficiency={k: t.scaled(flops)
                                     for k, t in self.matmul_shape_efficiency.items()},
            matmul_shape_efficiency_warm={k: t.scaled(flops) for k, t
                                          in self.matmul_shape_efficiency_warm.items()},
            attention_kernels={k: t.scaled(flops) for k, t in self.attention_kernels.items()},
            mem_bw_bytes_per_s=self.mem_bw_bytes_per_s * mem_bw,
            memory_efficiency=self.memory_efficiency.scaled(mem_bw),
            op_efficiency={op: c.scaled(mem_bw) for op, c in self.op_efficiency.items()})

    def attention_kernel(self, preference) -> str | None:
        """The first kernel of ``preference`` (names, a runtime's order) this profile rates."""
        return next((k for k in preference if k in self.attention_kernels), None)

    def overhead_s(self, phase: str) -> float:
        """Seconds added to each op's roofline time in ``phase``: its per-op overhead
        (recomputation runs forward ops), or ``kernel_launch`` where the host runs ahead."""
        if self.host_ahead:
            return float(self.kernel_launch_s)
        return float(self.op_overhead_s.get(self._phase_key(phase), self.kernel_launch_s))

    def host_floor_s(self, phase: str) -> float:
        """The least time an op of ``phase`` takes where the host runs ahead of the device (the
        host's time per op); 0 elsewhere."""
        if not self.host_ahead:
            return 0.0
        return float(self.op_overhead_s.get(self._phase_key(phase), 0.0))

    def _phase_key(self, phase: str) -> str:
        key = "forward" if phase == "recompute" else phase
        if key == "inference" and key not in self.op_overhead_s:
            key = "forward"  # a profile calibrated before the inference phase was measured
        return key

    def in_cuda_graph(self) -> GpuProfile:
        """This profile as a replayed CUDA graph sees it: each kernel costs ``graph_launch``
        beyond its work, no host floor or per-op host overhead (the host launches the graph
        once). A GPU calibrated by archcost (``host_ahead``) measured its ``kernel_launch`` in
        a graph already; itself where no in-graph figure is known (a CPU, a datasheet without
        one)."""
        if self.graph_launch_s is None and not self.host_ahead:
            return self
        launch = self.kernel_launch_s if self.graph_launch_s is None else self.graph_launch_s
        return replace(self, kernel_launch_s=launch, op_overhead_s={}, host_ahead=False,
                       dispatch_overhead_s={})

    def warm_weights(self) -> GpuProfile:
        """This profile as a step sees it whose weights (and KV cache) stay in the last-level
        cache from one step to the next: each shape table with its warm rows in place of
        its own (tables without warm rows unchanged)."""
        if not self.matmul_shape_efficiency_warm:
            return self
        warm = self.matmul_shape_efficiency_warm
        return replace(self, matmul_shape_efficiency={
            k: t.with_rows(warm[k]) if k in warm else t
            for k, t in self.matmul_shape_efficiency.items()}, matmul_shape_efficiency_warm={})

    def for_inference(self) -> GpuProfile:
        """This profile with its forward ops charged the inference-mode per-op overhead (a
        generation's forward keeps no autograd records), where the profile measured one."""
        if "inference" not in self.op_overhead_s:
            return self
        return replace(self, op_overhead_s={**self.op_overhead_s,
                                             "forward": self.op_overhead_s["inference"]})


# inference: a forward under torch.inference_mode (archcost.hardware.opbench)
OVERHEAD_PHASES = ("forward", "backward", "optimizer", "inference")
# dispatch_overhead: a view or metadata op; an nn.Module __call__ (archcost.hardware.opbench)
DISPATCH_KINDS = ("view", "module_call")


# collectives a link level may give figures of its own (``collectives:`` in a cluster file)
COLLECTIVE_NAMES = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "broadcast",
                    "send_recv")


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkLevel:
    name: str
    domain_size: int | None  # GPUs reachable inside this level; None = unbounded
    bandwidth_per_gpu_bytes_per_s: float  # one direction, per GPU
    latency_s: float  # alpha of one message hop
    topology: Topology
    # (collective, latency s, bandwidth B/s): measured figures of one collective that replace
    # the level's for it (a gloo all-reduce and a send/recv on one loopback differ 3x)
    collectives: tuple[tuple[str, float, float], ...] = ()
    # GPUs sharing one link of this level (a node with 4 NICs for 8 GPUs: 2); a GPU's share is
    # bandwidth_per_gpu, a lone point-to-point flow may use the whole link
    gpus_per_link: int = 1

    def figures(self, collective: str) -> tuple[float, float]:
        """(latency s, bandwidth B/s) of ``collective`` (a COLLECTIVE_NAMES entry) here."""
        for name, lat, bw in self.collectives:
            if name == collective:
                return lat, bw
        return self.latency_s, self.bandwidth_per_gpu_bytes_per_s

    def scaled(self, bw_factor: float = 1.0, latency_factor: float = 1.0) -> LinkLevel:
        """This level with its bandwidth and latency scaled; each collective's own figures
        keep their ratio to the level's."""
        return replace(
            self, bandwidth_per_gpu_bytes_per_s=self.bandwidth_per_gpu_bytes_per_s * bw_factor,
            latency_s=self.latency_s * latency_factor,
            collectives=tuple((c, lat * latency_factor, bw * bw_factor)
                              for c, lat, bw in self.collectives))


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterProfile:
    """GPUs in nodes, joined by link levels ordered innermost (fastest) to outermost."""

    name: str
    gpu: GpuProfile
    gpus_per_node: int
    levels: tuple[LinkLevel, ...]
    nodes: int
    gpus: int  # GPUs in use: nodes * gpus_per_node, or fewer inside a single node
    max_nodes: int | None = None
    node_power_overhead_w: float = 0.0  # CPUs, NICs, fans, ... per node, beyond the GPUs' TDP
    price_per_gpu_hour_usd: float | None = None  # all-in, overrides the GPU profile's price
    source_path: str = ""
    notes: str = ""
    calibration: dict[str, Any] | None = field(default=None, compare=False, repr=False)  # as GpuProfile's

    @property
    def most_gpus(self) -> int | None:
        """The GPUs its ``max_nodes`` nodes hold; None: unbounded."""
        return None if self.max_nodes is None else self.max_nodes * self.gpus_per_node

    def with_gpus(self, n: int) -> ClusterProfile:
        """The same cluster sized to ``n`` GPUs.

        Policy: up to one node, any count (a partial node); beyond one node, whole nodes only,
        because a job spread over partial nodes has no single bandwidth per level. Nodes are
        ``ceil(n / gpus_per_node)``, at most ``max_nodes``, and ``n`` must fit the outermost
        level when that level is bounded.
        """
        gpn = self.gpus_per_node
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ProfileError(f"{self.name}: {n!r} GPUs asked for; ask for a whole number >= 1")
        if n > gpn and n % gpn:
            raise ProfileError(
                f"{self.name}: {n} GPUs is not a whole number of {gpn}-GPU nodes; "
                f"ask for at most {gpn} or a multiple of {gpn} (e.g. {n // gpn * gpn} or {(n // gpn + 1) * gpn})"
            )
        nodes = math.ceil(n / gpn)
        if self.most_gpus is not None and n > self.most_gpus:
            raise ProfileError(
                f"{self.name}: {n} GPUs needs {nodes} nodes but the cluster has at most "
                f"{self.max_nodes}; ask for at most {self.most_gpus} GPUs"
            )
        outer = self.levels[-1]
        if outer.domain_size is not None and n > outer.domain_size:
            raise ProfileError(
                f"{self.name}: {n} GPUs exceed its outermost level '{outer.name}' "
                f"({outer.domain_size} GPUs); ask for at most {outer.domain_size}"
            )
        return replace(self, nodes=nodes, gpus=n)


# --- reading -------------------------------------------------------------------------------------
# field -> kind; kinds that are not a units.Quantity are checked by reader.Reader or below
GPU_FIELDS: dict[str, Any] = {
    "name": "str", "vendor": "str", "peak_flops": "peaks", "memory": Quantity.BYTES,
    "memory_bandwidth": Quantity.BANDWIDTH, "l2_cache": Quantity.BYTES,
    "kernel_launch": Quantity.TIME, "tdp": Quantity.POWER, "idle_power_fraction": "fraction",
    "price_per_gpu_hour": Quantity.USD_PER_HOUR, "matmul_efficiency": "curve",
    "attention_efficiency": "curve", "memory_efficiency": "curve",
    "host_link_bandwidth": Quantity.BANDWIDTH, "host_memory_bandwidth": Quantity.BANDWIDTH,
    "calibration": "mapping", "conv_efficiency": "curve", "op_efficiency": "curves",
    "op_overhead": "times", "dispatch_overhead": "times", "attention_head_efficiency": "curve",
    "attention_decode_efficiency": "curve",
    "conv_backward_efficiency": "curve", "matmul_shape_efficiency": "shape table",
    "matmul_shape_efficiency_warm": "shape table",
    "attention_kernels": "attention tables", "sm_count": "count",
    "sustained_clock": "fraction", "sparse_peak_flops": "sparse peaks",
    "unified_memory": "unified memory", "host_ahead": "bool", "graph_launch": Quantity.TIME,
}
# attention defaults to matmul's curve; without host figures offloaded plans are refused
GPU_OPTIONAL = {"price_per_gpu_hour", "attention_efficiency", "host_link_bandwidth",
                "host_memory_bandwidth", "calibration", "conv_efficiency", "op_efficiency",
                "op_overhead", "dispatch_overhead", "attention_head_efficiency",
                "attention_decode_efficiency", "conv_backward_efficiency",
                "matmul_shape_efficiency", "matmul_shape_efficiency_warm", "attention_kernels",
                "sm_count", "sustained_clock",
                "sparse_peak_flops", "unified_memory", "host_ahead", "graph_launch"}
FIELD_EXAMPLES = {  # shown when a field is missing
    "name": "'h100-sxm'", "vendor": "NVIDIA", "peak_flops": "{fp32: '67 TFLOP/s', bf16: '989 TFLOP/s'}",
    "memory": "'80 GB'", "memory_bandwidth": "'3.35 TB/s'", "l2_cache": "'50 MB'",
    "kernel_launch": "'4 us'", "tdp": "'700 W'", "gpu": "h100-sxm", "bandwidth_per_gpu": "'450 GB/s'",
    "latency": "'3 us'", "domain_size": "8", "topology": "switch",
}
CLUSTER_FIELDS: dict[str, Any] = {
    "name": "str", "gpu": "str", "gpus_per_node": "count", "levels": "levels",
    "max_nodes": "count", "node_power_overhead": Quantity.POWER,
    "price_per_gpu_hour": Quantity.USD_PER_HOUR, "notes": "str", "calibration": "mapping",
}
CLUSTER_OPTIONAL = {"max_nodes", "node_power_overhead", "price_per_gpu_hour", "notes",
                    "calibration"}
LEVEL_FIELDS: dict[str, Any] = {
    "name": "str", "domain_size": "domain", "bandwidth_per_gpu": Quantity.BANDWIDTH,
    "latency": Quantity.TIME, "topology": "topology", "collectives": "mapping",
    "gpus_per_link": "count",
}
LEVEL_OPTIONAL = {"collectives", "gpus_per_link"}
COLLECTIVE_FIELDS: dict[str, Any] = {"bandwidth_per_gpu": Quantity.BANDWIDTH,
                                     "latency": Quantity.TIME}


# --- finding files -------------------------------------------------------------------------------
_KIND_LABEL = {"gpus": "GPU", "clusters": "cluster"}


def _is_path(text: str) -> bool:
    return text.endswith((".yaml", ".yml")) or "/" in text or "\\" in text


def profile_file(text: str) -> Path | None:
    """The file a profile argument names (a ``.yaml`` file or a path); None for a bundled
    name."""
    return Path(text).expanduser() if _is_path(text) else None


def _bundled(kind: str):
    return resources.files("archcost.profiles").joinpath(kind)


def list_profiles() -> dict[str, list[str]]:
    """Names of the bundled profiles: {'gpus': [...], 'clusters': [...]}."""
    return {
        kind: sorted(p.name[: -len(".yaml")] for p in _bundled(kind).iterdir() if p.name.endswith(".yaml"))
        for kind in ("gpus", "clusters")
    }


def _resolve(name_or_path: str, kind: str) -> Path:
    text = str(name_or_path)
    names = list_profiles()[kind]
    if _is_path(text):
        p = Path(text).expanduser()
        if not p.is_file():
            raise ProfileError(f"{text}: no such profile file; check the path, or use a bundled "
                               f"{_KIND_LABEL[kind]} name: {', '.join(names)}")
        return p
    res = _bundled(kind).joinpath(f"{text}.yaml")
    other = "clusters" if kind == "gpus" else "gpus"
    if not res.is_file() and text in list_profiles()[other]:
        raise ProfileError(f"'{text}' is a {_KIND_LABEL[other]} profile; a "
                           f"{_KIND_LABEL[kind]} profile is needed here: {', '.join(names)}")
    if not res.is_file():
        hint = suggest(text, names)
        raise ProfileError(f"no {_KIND_LABEL[kind]} profile named '{text}'; {hint}"
                           f"bundled: {', '.join(names)} (or give a path to a .yaml file)")
    return Path(str(res))  # a real file: the package is installed unzipped (wheel or editable)


# --- GPUs ----------------------------------------------------------------------------------------
def load_gpu(name_or_path: str) -> GpuProfile:
    """A bundled GPU profile by name, or a user's GPU profile file."""
    path = _resolve(name_or_path, "gpus")
    data = read_yaml(path)
    if "levels" in data or "gpus_per_node" in data:
        raise ProfileError(f"{path.name}: this is a cluster profile (it has 'levels'); "
                           "give it where a cluster is expected, or give a GPU profile here")
    return gpu_from_dict(data, str(path))


def gpu_from_dict(data: dict[str, Any], path: str) -> GpuProfile:
    r = Reader(path)
    r.check_keys(data, GPU_FIELDS, GPU_OPTIONAL, examples=FIELD_EXAMPLES)
    idle = data["idle_power_fraction"]
    if isinstance(idle, bool) or not isinstance(idle, (int, float)) or not 0 <= idle < 1:
        raise r.fail("idle_power_fraction", f"{idle!r} must be a number in [0, 1): idle draw / TDP")
    matmul = EfficiencyCurve(r.curve(data, "matmul_efficiency"))
    price = data.get("price_per_gpu_hour")
    peaks = _peaks(r, data["peak_flops"])
    memory = r.quantity(data, "memory", Quantity.BYTES)
    share = _gpu_share(r, data.get("unified_memory"))
    tables = read_shape_tables(r, data, DTYPES)
    return GpuProfile(
        name=r.text(data, "name"), vendor=r.text(data, "vendor"),
        peak_flops_per_s=peaks,
        sparse_peak_flops_per_s=_sparse_peaks(r, data.get("sparse_peak_flops"), peaks),
        mem_bytes=memory if share is None else memory * share,
        unified_memory_bytes=None if share is None else memory,
        mem_bw_bytes_per_s=r.quantity(data, "memory_bandwidth", Quantity.BANDWIDTH),
        l2_bytes=r.quantity(data, "l2_cache", Quantity.BYTES),
        kernel_launch_s=r.quantity(data, "kernel_launch", Quantity.TIME),
        graph_launch_s=_optional(r, data, "graph_launch", Quantity.TIME),
        tdp_w=r.quantity(data, "tdp", Quantity.POWER),
        idle_power_fraction=float(idle),
        price_per_gpu_hour_usd=(None if price is None else
                                r.quantity(data, "price_per_gpu_hour", Quantity.USD_PER_HOUR)),
        matmul_efficiency=matmul,
        attention_efficiency=(EfficiencyCurve(r.curve(data, "attention_efficiency"))
                              if data.get("attention_efficiency") is not None else matmul),
        memory_efficiency=EfficiencyCurve(r.curve(data, "memory_efficiency")),
        source_path=path,
        host_link_bw_bytes_per_s=_optional(r, data, "host_link_bandwidth"),
        host_memory_bw_bytes_per_s=_optional(r, data, "host_memory_bandwidth"),
        calibration=r.mapping(data, "calibration"),
        conv_efficiency=_optional_curve(r, data, "conv_efficiency"),
        conv_backward_efficiency=_optional_curve(r, data, "conv_backward_efficiency"),
        attention_head_efficiency=_optional_curve(r, data, "attention_head_efficiency"),
        attention_decode_efficiency=_optional_curve(r, data, "attention_decode_efficiency"),
        matmul_shape_efficiency=tables,
        matmul_shape_efficiency_warm=_warm_tables(r, data, tables),
        attention_kernels=read_attention_tables(r, data),
        op_efficiency=_op_curves(r, data),
        op_overhead_s=_overheads(r, data),
        dispatch_overhead_s=_dispatch(r, data),
        sm_count=r.count(data, "sm_count") if data.get("sm_count") is not None else None,
        sustained_clock=_sustained_clock(r, data),
        host_ahead=_host_ahead(r, data),
    )


def _warm_tables(r: Reader, data: dict[str, Any], tables: dict[str, ShapeTable]
                 ) -> dict[str, ShapeTable]:
    """``matmul_shape_efficiency_warm``: warm rows of tables the profile has (per key)."""
    warm = read_shape_tables(r, data, DTYPES, key="matmul_shape_efficiency_warm")
    for k in warm:
        if k not in tables:
            where = "matmul_shape_efficiency_warm" + ("" if k == ALL_DTYPES else f".{k}")
            raise r.fail(where, "warm rows of a table matmul_shape_efficiency does not have; "
                         "give that table too, or remove these rows")
    return warm


def _host_ahead(r: Reader, data: dict[str, Any]) -> bool:
    x = data.get("host_ahead", False)
    if not isinstance(x, bool):
        raise r.fail("host_ahead", f"{x!r} must be true or false: whether the host issues "
                     "kernels ahead of the device (a GPU's calibration writes true)")
    return x


# datasheets round both figures (L4: fp8 242.5 dense, 485 sparse): a sparse peak may exceed twice
# the dense one written beside it by this much
_SPARSE_ROUNDING = 5e-3


def _sparse_peaks(r: Reader, raw: Any, dense: dict[str, float]) -> dict[str, float]:
    """2:4-sparse peaks: per dtype with a dense peak, above it and at most twice it (2:4
    sparsity skips half the multiplies: NVIDIA A100 whitepaper, "Fine-grained structured
    sparsity")."""
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not raw:
        raise r.fail("sparse_peak_flops", "must map dtypes to 2:4-sparse rates, e.g. "
                     "{bf16: '1979 TFLOP/s'}; leave it out if the part has none")
    out = {}
    for dt in raw:
        where = f"sparse_peak_flops.{dt}"
        if dt not in DTYPES:
            hint = suggest(str(dt), DTYPES)
            raise r.fail(where, f"unknown dtype; {hint}use {', '.join(DTYPES)}")
        v = r.quantity(raw, dt, Quantity.FLOPS_RATE, "sparse_peak_flops.")
        base = dense.get(dt)
        if base is None:
            raise r.fail(where, f"peak_flops has no {dt} rate; give its dense peak there too "
                                "(datasheets print both)")
        if not base < v <= 2 * base * (1 + _SPARSE_ROUNDING):
            raise r.fail(where, f"{raw[dt]!r} must lie above the dense {dt} peak "
                                f"({base / 1e12:g} TFLOP/s) and at most twice it: 2:4 sparsity "
                                "skips half the multiplies; give the datasheet's sparse figure")
        out[dt] = v
    return out


def _gpu_share(r: Reader, raw: Any) -> float | None:
    """The share of a unified memory the GPU may use; None for a GPU with its own memory."""
    if raw is None:
        return None
    shown = "{gpu_share: 0.75}"
    if not isinstance(raw, dict):
        raise r.fail("unified_memory", f"must be a mapping such as {shown}: the share of "
                                       "'memory' (shared with the CPU) the GPU may use")
    r.check_keys(raw, {"gpu_share": "fraction"}, set(), "unified_memory.",
                 examples={"gpu_share": "0.75"})
    x = raw["gpu_share"]
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not 0 < x <= 1:
        raise r.fail("unified_memory.gpu_share", f"{x!r} must be a number in (0, 1]: the "
                     "share of the shared memory the GPU may use (macOS: 0.75)")
    return float(x)


def _sustained_clock(r: Reader, data: dict[str, Any]) -> float:
    x = data.get("sustained_clock", 1.0)
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not 0 < x <= 1:
        raise r.fail("sustained_clock", f"{x!r} must be a number in (0, 1]: the share of the "
                     "clock its tables were measured at that a training step sustains")
    return float(x)


def _optional_curve(r: Reader, data: dict[str, Any], key: str) -> EfficiencyCurve | None:
    return EfficiencyCurve(r.curve(data, key)) if data.get(key) is not None else None


def _op_curves(r: Reader, data: dict[str, Any]) -> dict[str, EfficiencyCurve]:
    raw = r.mapping(data, "op_efficiency", "must map aten op names to curves, e.g. "
                    "{aten.gelu: [[1.0e+6, 0.1], [1.0e+8, 0.2]]}") or {}
    out = {}
    for op in raw:
        if not isinstance(op, str) or not op.startswith("aten."):
            raise r.fail(f"op_efficiency.{op}", "keys are aten op names such as aten.gelu")
        out[op] = EfficiencyCurve(r.curve(raw, op))
    return out


def _times(r: Reader, data: dict[str, Any], key: str, names: tuple[str, ...], what: str,
           example: str) -> dict[str, float]:
    """``key``: a mapping of ``names`` (each a ``what``) to times; {} when absent."""
    raw = r.mapping(data, key, f"must map {what}s to times, e.g. {example}") or {}
    out = {}
    for name in raw:
        if name not in names:
            hint = suggest(str(name), names)
            raise r.fail(f"{key}.{name}", f"unknown {what}; {hint}use {', '.join(names)}")
        out[name] = r.quantity(raw, name, Quantity.TIME, f"{key}.")
    return out


def _overheads(r: Reader, data: dict[str, Any]) -> dict[str, float]:
    return _times(r, data, "op_overhead", OVERHEAD_PHASES, "phase",
                  "{forward: '6 us', backward: '9 us', optimizer: '12 us'}")


def _dispatch(r: Reader, data: dict[str, Any]) -> dict[str, float]:
    return _times(r, data, "dispatch_overhead", DISPATCH_KINDS, "kind",
                  "{view: '0.5 us', module_call: '2 us'}")


def _optional(r: Reader, data: dict[str, Any], key: str,
              kind: Quantity = Quantity.BANDWIDTH) -> float | None:
    if data.get(key) is None:
        return None
    return r.quantity(data, key, kind)


def _peaks(r: Reader, raw: Any) -> dict[str, float]:
    if not isinstance(raw, dict) or not raw:
        raise r.fail("peak_flops", f"must map dtypes to dense rates, e.g. {EXAMPLE['peaks']}")
    peaks = {}
    for dt, v in raw.items():
        if dt not in DTYPES:
            hint = suggest(str(dt), DTYPES)
            raise r.fail(f"peak_flops.{dt}", f"unknown dtype; {hint}use {', '.join(DTYPES)}")
        if v is not None:  # null: the part has no such mode (fp8 on A100)
            peaks[dt] = r.quantity(raw, dt, Quantity.FLOPS_RATE, "peak_flops.")
    if Dtype.FP32.value not in peaks:
        raise r.fail("peak_flops.fp32", "missing; every profile needs the fp32 rate, e.g. fp32: '67 TFLOP/s'")
    return peaks


# --- clusters ------------------------------------------------------------------------------------
def load_cluster(name_or_path: str, gpus: int | None = None) -> ClusterProfile:
    """A bundled cluster by name, or a user's cluster file; one node unless ``gpus`` is given."""
    path = _resolve(name_or_path, "clusters")
    data = read_yaml(path)
    if "peak_flops" in data:
        raise ProfileError(f"{path.name}: this is a GPU profile (it has 'peak_flops'); give it "
                           "where a GPU is expected, or give a cluster profile here")
    r = Reader(path)
    r.check_keys(data, CLUSTER_FIELDS, CLUSTER_OPTIONAL, examples=FIELD_EXAMPLES)
    gpn = r.count(data, "gpus_per_node")
    gpu = load_gpu(_gpu_ref(r, path, r.text(data, "gpu")))
    price = data.get("price_per_gpu_hour")
    cluster = ClusterProfile(
        name=r.text(data, "name"), gpu=gpu, gpus_per_node=gpn, levels=_levels(r, data["levels"]),
        nodes=1, gpus=gpn,
        max_nodes=r.count(data, "max_nodes") if data.get("max_nodes") is not None else None,
        node_power_overhead_w=(r.quantity(data, "node_power_overhead", Quantity.POWER)
                               if data.get("node_power_overhead") is not None else 0.0),
        price_per_gpu_hour_usd=(None if price is None else
                                r.quantity(data, "price_per_gpu_hour", Quantity.USD_PER_HOUR)),
        source_path=str(path), notes=r.text(data, "notes") if data.get("notes") else "",
        calibration=r.mapping(data, "calibration"),
    )
    outer = cluster.levels[-1].domain_size
    if outer is not None and outer < gpn:
        raise r.fail(f"levels[{len(cluster.levels) - 1}].domain_size",
                     f"{outer} GPUs cannot hold one {gpn}-GPU node; make it >= {gpn} or unbounded")
    return cluster.with_gpus(gpus) if gpus is not None else cluster


def _gpu_ref(r: Reader, cluster_path: Path, ref: str) -> str:
    """A bundled GPU name, or a GPU file path (relative to the cluster file)."""
    if _is_path(ref):
        p = Path(ref).expanduser()
        return str(p if p.is_absolute() else cluster_path.parent / p)
    names = list_profiles()["gpus"]
    if ref not in names:
        hint = suggest(ref, names)
        raise r.fail("gpu", f"no GPU profile named '{ref}'; {hint}use one of {', '.join(names)} "
                            "or a path to a GPU .yaml file")
    return ref


def _levels(r: Reader, raw: Any) -> tuple[LinkLevel, ...]:
    if not isinstance(raw, list) or not raw:
        raise r.fail("levels", "must be a list of link levels, innermost (e.g. NVLink) first")
    levels: list[LinkLevel] = []
    for i, lv in enumerate(raw):
        where = f"levels[{i}]."
        if not isinstance(lv, dict):
            raise r.fail(f"levels[{i}]", "each level must be a mapping of name, domain_size, "
                                         "bandwidth_per_gpu, latency, topology")
        r.check_keys(lv, LEVEL_FIELDS, LEVEL_OPTIONAL, where, examples=FIELD_EXAMPLES)
        dom = lv["domain_size"]
        if dom in (None, "unbounded"):
            dom = None
        elif isinstance(dom, bool) or not isinstance(dom, int) or dom < 1:
            raise r.fail(where + "domain_size", f"{dom!r} must be a positive whole number of GPUs, or unbounded")
        try:
            topo = Topology(lv["topology"])
        except ValueError:
            raise r.fail(where + "topology", f"{lv['topology']!r} is unknown; use one of "
                                             f"{', '.join(t.value for t in Topology)}") from None
        inner = levels[-1] if levels else None
        if inner is not None and inner.domain_size is None:
            raise r.fail(f"levels[{i - 1}].domain_size", "only the outermost level may be "
                         "unbounded; list levels innermost first")
        if inner is not None and dom is not None and dom <= inner.domain_size:
            raise r.fail(where + "domain_size", f"{dom} must be larger than the level inside it "
                         f"('{inner.name}', {inner.domain_size} GPUs); list levels innermost first")
        levels.append(LinkLevel(
            name=r.text(lv, "name", where), domain_size=dom,
            bandwidth_per_gpu_bytes_per_s=r.quantity(lv, "bandwidth_per_gpu", Quantity.BANDWIDTH, where),
            latency_s=r.quantity(lv, "latency", Quantity.TIME, where), topology=topo,
            collectives=_level_collectives(r, lv.get("collectives"), where),
            gpus_per_link=r.count(lv, "gpus_per_link", where) if "gpus_per_link" in lv else 1,
        ))
    return tuple(levels)


def _level_collectives(r: Reader, raw: Any, where: str) -> tuple[tuple[str, float, float], ...]:
    """A level's own figures per collective: {all_reduce: {bandwidth_per_gpu, latency}, ...}."""
    if raw is None:
        return ()
    shown = "{all_reduce: {bandwidth_per_gpu: '0.7 GB/s', latency: '300 us'}}"
    if not isinstance(raw, dict):
        raise r.fail(where + "collectives", f"must map collectives to figures, e.g. {shown}")
    out = []
    for name, figs in raw.items():
        at = f"{where}collectives.{name}"
        if name not in COLLECTIVE_NAMES:
            hint = suggest(str(name), COLLECTIVE_NAMES)
            raise r.fail(at, f"unknown collective; {hint}use {', '.join(COLLECTIVE_NAMES)}")
        if not isinstance(figs, dict):
            raise r.fail(at, f"must be a mapping of bandwidth_per_gpu and latency, e.g. {shown}")
        r.check_keys(figs, COLLECTIVE_FIELDS, set(), at + ".", examples=FIELD_EXAMPLES)
        out.append((name, r.quantity(figs, "latency", Quantity.TIME, at + "."),
                    r.quantity(figs, "bandwidth_per_gpu", Quantity.BANDWIDTH, at + ".")))
    return tuple(out)


def load_any(name_or_path: str) -> GpuProfile | ClusterProfile:
    """A GPU or a cluster profile, whichever the name or the file holds."""
    text = str(name_or_path)
    names = list_profiles()
    if _is_path(text):
        path = _resolve(text, "gpus")
        data = read_yaml(path)
        return load_cluster(text) if "levels" in data or "gpus_per_node" in data else load_gpu(text)
    if text in names["clusters"]:
        return load_cluster(text)
    if text in names["gpus"]:
        return load_gpu(text)
    hint = suggest(text, names["gpus"] + names["clusters"])
    raise ProfileError(f"no profile named '{text}'; {hint}GPUs: {', '.join(names['gpus'])}; "
                       f"clusters: {', '.join(names['clusters'])}")
