"""``archcost calibrate``: measure this machine (one CPU host or one CUDA GPU, and the links between
N processes on it) into the figures of a hardware profile.

Benchmarks (timing code here; every fit is a pure function of ``fit.py``):

- matmul rate over a grid of square and skinny shapes per dtype (cpu: fp32, bf16; cuda: fp32,
  tf32, bf16, fp16, fp8 where ``torch._scaled_mm`` runs), as a linear layer runs it
  (``F.linear``: the weight held (n, k) as ``nn.Linear`` holds it, read transposed; on a CPU a
  one-row matmul reads such a weight 1.5-2.4x slower than a (k, n) one), on operands out of
  the last-level cache (``_Arena``: a small matmul runs 1.2-1.8x slower on them on a CPU, as in
  a step, where a layer's weight was last read a layer or a step before) -> peak per dtype and
  ``matmul_efficiency``; then, in the fastest of bf16 and fp32, every (m, n, k) of a grid of
  dims (cells above a FLOPs cap are not timed: the curve by FLOPs fills them) ->
  ``matmul_shape_efficiency``; on a CPU, one-row linears over working sets up to twice the
  last-level cache -> ``l2_cache`` (the largest still read from cache), and the table's decode
  rows again on operands cycling through half of it (a small model's weights stay there
  between decode steps) -> ``matmul_shape_efficiency_warm``;
- causal ``scaled_dot_product_attention`` over a few sequence lengths -> ``attention_efficiency``;
  and each SDPA backend over head dims x sequence lengths x mask x phase -> ``attention_kernels``
  (``attnbench.py``);
- ``dst.copy_(src)`` (bytes = read + write) and ``torch.add(a, b, out=c)`` (two reads, one
  write) from KB to hundreds of MB -> ``memory_bandwidth`` and ``memory_efficiency``;
- an add of 1-element tensors -> ``kernel_launch``; device memory (cuda: ``total_memory``; cpu:
  MemTotal of /proc/meminfo) and the last-level cache (cuda: L2; cpu: sysfs) are read, not timed;
- with N > 1 processes, all-reduce, all-gather, reduce-scatter and send/recv through a real
  ``torch.distributed`` process group (gloo on cpu, nccl on cuda) started with the standard
  launcher (``collective_worker.py``) -> latency and bandwidth per rank of one link level.

Method, per point: warm-up calls, then repetitions of a batch of calls timed with
``time.perf_counter`` around a device synchronisation (a batch lasts at least ``min_rep_s`` so
microsecond ops are not lost in timer resolution); the figure is the median per-call time and
the spread its 10th/90th percentiles. Points whose one call takes longer than ``max_call_s``
(bf16 on CPUs without bf16 instructions) are skipped and recorded as such: matmul shapes are
run by increasing FLOPs, each estimated from the latest call of its dtype, and not run when
the estimate passes four times the limit (the limit itself once a call of the dtype passed it).
The collective benchmark's launch (its own session, stopped with every rank on a timeout, an
error or an interrupt) is ``collective_launch.py``.
"""

from __future__ import annotations

import datetime
import itertools
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archcost.errors import ConfigError, ValidationError
from archcost.hardware.attnbench import fit_attention_tables, measure_attention_tables
from archcost.hardware.attnbench import table_cells as attention_cells
from archcost.hardware.fit import (
    COLLECTIVES,
    CollectiveFit,
    FitError,
    Spread,
    best_rate,
    cache_capacity,
    efficiency_curve,
    fit_collective,
    held_out_error,
    kernel_seconds,
    matmul_flops,
    per_op_overhead,
    sdpa_flops,
    shape_table,
    spread,
)
from archcost.report.fmt import seconds as fmt_seconds

__all__ = [
    "DEVICES", "Grid", "grid_for", "count_points", "check_request", "Point", "Measurements",
    "Derived", "TableFit", "measure", "derive", "reference_dtype", "busy_warning",
    "DEFAULT_TDP_W", "DEFAULT_IDLE_FRACTION", "PROBE_NK", "time_cache_probe",
]

DEVICES = ("cpu", "cuda")
# NB: assumptions, written as such in the profile: the bundled `cpu` profile's 2-socket server,
# and an H100/H200 SXM board (hardware_profiles/gpus/*.yaml)
DEFAULT_TDP_W = {"cpu": 600.0, "cuda": 700.0}
DEFAULT_IDLE_FRACTION = {"cpu": 0.3, "cuda": 0.15}
_MAX_NPROC_PER_CORE = 4


# --- what to measure -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Grid:
    """The benchmark points of one calibration and how each is timed."""

    dtypes: tuple[str, ...]
    matmul_shapes: tuple[tuple[int, int, int], ...]  # (m, n, k)
    attention_dtype: str
    attention_shapes: tuple[tuple[int, int, int, int], ...]  # (batch, heads, seq, head_dim)
    memory_bytes: tuple[int, ...]  # bytes of one tensor
    collective_bytes: tuple[int, ...]  # bytes of the full buffer
    warmup: int
    reps: int
    min_rep_s: float
    max_call_s: float
    collective_warmup: int
    collective_reps: int
    collective_min_rep_s: float
    # (batch, channels in, channels out, map size, kernel, stride); forward and backward each
    conv_shapes: tuple[tuple[int, int, int, int, int, int], ...] = ()
    op_numels: tuple[int, ...] = ()  # elements of one input of each op of opbench.OPS
    # copies a cold op (opbench.COLD) cycles over, at most (twice the last-level cache's worth
    # below that); a small bound keeps a quick calibration's memory small
    cold_copies: int = 4096
    # every (m, n, k) over these dims (m over matmul_table_m_dims where given), timed up to
    # matmul_table_max_flops (one call)
    matmul_table_dims: tuple[int, ...] = ()
    matmul_table_m_dims: tuple[int, ...] = ()
    matmul_table_max_flops: float = 0.0
    # the dtypes the shape table is timed in (each a table of its own); empty: the reference
    # dtype alone, which every other dtype reads at its same-duration shape
    matmul_table_dtypes: tuple[str, ...] = ()
    # rows of the shape table timed again with the weights in the last-level cache (cycled
    # through half of what the cache probe found): a decode step whose bytes moved fit there
    # reads them (``GpuProfile.warm_weights``); only cells whose n and k reach
    # matmul_warm_min_dim
    matmul_warm_m_dims: tuple[int, ...] = ()
    matmul_warm_min_dim: int = 64
    # time one-row linears over working sets from 1 MiB to twice the last-level cache (at most
    # 1 GiB): the largest one still read from cache sizes the warm rows' arena and is the
    # profile's l2_cache (a VM's sysfs gives its host's whole cache: 480 MiB read where reads
    # over 64 MiB already came from memory)
    cache_probe: bool = False
    # attention tables per SDPA backend (attnbench.py): head dims x sequence lengths, at
    # batch x seq = tokens and heads x head dim = hidden (the FlashAttention benchmarks' rule)
    attention_table_kernels: tuple[str, ...] = ()  # attnbench.BACKENDS names
    attention_table_head_dims: tuple[int, ...] = ()
    attention_table_seqs: tuple[int, ...] = ()
    attention_table_tokens: int = 0
    attention_table_hidden: int = 0
    # (batch, heads, keys, head dim) of decode attention: one query per sequence against the
    # keys, no mask, timed on operands cycling out of the last-level cache ->
    # attention_decode_efficiency
    attention_decode_shapes: tuple[tuple[int, int, int, int], ...] = ()

    @property
    def table_m_dims(self) -> tuple[int, ...]:
        """The shape table's grid of m (the rows: tokens, or a decode step's batch)."""
        return self.matmul_table_m_dims or self.matmul_table_dims

    def table_cells(self) -> list[tuple[int, int, int]]:
        """The (m, n, k) cells of the shape table that are timed."""
        d = self.matmul_table_dims
        return [(m, n, k) for m in self.table_m_dims for n in d for k in d
                if matmul_flops(m, n, k) <= self.matmul_table_max_flops]

    def warm_cells(self) -> list[tuple[int, int, int]]:
        """The (m, n, k) cells timed again with their weights in the last-level cache."""
        low = self.matmul_warm_min_dim
        return [c for c in self.table_cells()
                if c[0] in self.matmul_warm_m_dims and min(c[1], c[2]) >= low]


# ResNet-like convolutions, small to large FLOPs (opbench.measure_conv)
_CONVS = ((4, 16, 16, 8, 3, 1), (8, 16, 16, 16, 3, 1), (8, 32, 32, 8, 3, 1),
          (16, 32, 32, 8, 1, 1), (8, 16, 16, 32, 3, 1), (8, 32, 32, 16, 3, 1), (8, 64, 64, 16, 3, 1),
          (8, 64, 64, 32, 1, 1), (16, 16, 32, 32, 3, 2), (16, 64, 64, 32, 3, 1),
          (16, 128, 128, 16, 3, 1), (16, 256, 256, 8, 3, 1), (32, 64, 64, 56, 3, 1))


def _squares(lo: int, hi: int) -> tuple[tuple[int, int, int], ...]:
    out, n = [], lo
    while n <= hi:
        out.append((n, n, n))
        n *= 2
    return tuple(out)


def grid_for(device: str, quick: bool) -> Grid:
    """The grid for ``device``; ``quick`` keeps a few points per benchmark (for tests)."""
    if device == "cpu":
        dts = ("fp32", "bf16")
        if quick:
            return Grid(dts, _squares(64, 1024)[::2] + ((1024, 1024, 64), (64, 1024, 1024)), "fp32",
                        ((1, 8, 128, 16), (1, 8, 512, 64), (4, 8, 256, 32)),
                        (4096, 262144, 16 << 20, 64 << 20),
                        (8, 4096, 262144, 1 << 20, 4 << 20, 16 << 20),
                        warmup=1, reps=5, min_rep_s=2e-3, max_call_s=0.1,
                        collective_warmup=2, collective_reps=7, collective_min_rep_s=5e-3,
                        conv_shapes=_CONVS[:2], op_numels=(1 << 16,), cold_copies=16,
                        matmul_table_dims=(64, 256, 1024), matmul_table_m_dims=(16, 64, 256, 1024),
                        matmul_table_max_flops=2 ** 28, matmul_table_dtypes=dts,
                        matmul_warm_m_dims=(16, 64), cache_probe=True,
                        attention_table_kernels=("math", "cpu-flash"),
                        attention_table_head_dims=(16, 32), attention_table_seqs=(64, 128),
                        attention_table_tokens=256, attention_table_hidden=64,
                        attention_decode_shapes=((1, 8, 128, 32), (8, 4, 256, 16),
                                                 (2, 8, 512, 64)))
        return Grid(dts, _squares(64, 2048) + ((2048, 2048, 64), (64, 2048, 2048), (2048, 128, 1024)),
                    # head dims 16-128 at one batch x heads, and a second batch: tells a rate
                    # that follows the (batch, head) slice from one that follows the op
                    "fp32", tuple((1, 8, s, d) for s in (128, 256, 512, 1024, 2048)
                                  for d in (16, 32, 64, 128) if s * d <= 2048 * 64)
                    + tuple((4, 8, s, 32) for s in (128, 256, 512)),
                    (4096, 65536, 1 << 20, 16 << 20, 64 << 20, 256 << 20),
                    (8, 512, 8192, 131072, 1 << 20, 4 << 20, 16 << 20, 64 << 20),
                    # a shared CPU's speed swings by +-20 % within seconds: each point is
                    # timed over ~0.3 s so the medians average the swings out
                    warmup=2, reps=9, min_rep_s=3e-2, max_call_s=0.5,
                    collective_warmup=3, collective_reps=7, collective_min_rep_s=2e-2,
                    conv_shapes=_CONVS, op_numels=(1 << 10, 1 << 14, 1 << 17, 1 << 20, 1 << 23),
                    # m = 1: a decode step's one-row matmuls (GEMVs, memory-bound), which the
                    # rule below the grid (x sqrt(m / 16)) priced 4x faster than m = 16; m = 2-8
                    # and 32: a decode step's batch, where the time of a memory-bound matmul
                    # grows far from linearly in log m (interpolating m = 8 between the m = 1 and
                    # m = 16 cells read a (8, 768, 256) linear 25 % fast)
                    matmul_table_dims=(1, 16, 64, 256, 1024, 4096),
                    matmul_table_m_dims=(1, 2, 4, 8, 16, 32, 64, 256, 1024, 4096),
                    matmul_table_max_flops=2 ** 31,
                    # a table per dtype: on a CPU whose bf16 runs on matrix units (AMX) an fp32
                    # matmul's time is not the bf16 table's at any one shape (read at the
                    # same-duration shape, a decode step's one-row fp32 matmuls came out 2-3x
                    # slow against the fp32 table's)
                    matmul_table_dtypes=dts,
                    # a decode step's rows again with the weights in the last-level cache: a
                    # small model's 17 MB of weights stay there from step to step, and fp32
                    # linears of 1-8 rows read from there took 0.44-0.59x their time from memory
                    # (on a VM whose probe read 33.55 MB of cache where sysfs gives 503 MB)
                    matmul_warm_m_dims=(1, 2, 4, 8), cache_probe=True,
                    attention_table_kernels=("math", "cpu-flash"),
                    attention_table_head_dims=(32, 64), attention_table_seqs=(128, 256, 512),
                    attention_table_tokens=2048, attention_table_hidden=256,
                    # a decode step's SDPA: memory-bound on the keys and values, its rate by
                    # the FLOPs of a (batch, head) slice unlike a square one's at the same FLOPs
                    # (one query over 149 keys, 8 heads of 32, priced 9.3 us from the square
                    # cells' curve, took 14-17 us alone; at batch 8, 54 us against 101-108 us)
                    attention_decode_shapes=tuple((b, 8, s, d) for b in (1, 8)
                                                  for s in (64, 128, 256, 512, 1024, 2048)
                                                  for d in (16, 32, 64, 128)))
    dts = ("fp32", "tf32", "bf16", "fp16", "fp8")
    if quick:
        return Grid(dts, _squares(256, 4096)[::2] + ((4096, 4096, 256),), "bf16",
                    ((4, 16, 512, 128), (4, 16, 2048, 128)), (1 << 16, 1 << 22, 1 << 28),
                    (8, 1 << 16, 1 << 22, 1 << 26),
                    warmup=2, reps=5, min_rep_s=2e-3, max_call_s=0.5,
                    collective_warmup=3, collective_reps=5, collective_min_rep_s=2e-3,
                    matmul_table_dims=(256, 1024, 4096), matmul_table_max_flops=2 ** 38,
                    attention_table_kernels=("flash2", "efficient", "cudnn"),
                    attention_table_head_dims=(64, 128), attention_table_seqs=(512, 2048),
                    attention_table_tokens=4096, attention_table_hidden=1024)
    return Grid(dts, _squares(128, 8192) + ((8192, 8192, 1024), (1024, 8192, 8192),
                                            (16384, 4096, 4096)),
                "bf16", tuple((4, 16, s, 128) for s in (256, 512, 1024, 2048, 4096, 8192))
                + tuple((16, 16, s, 64) for s in (512, 1024, 2048)),
                (4096, 65536, 1 << 20, 16 << 20, 256 << 20, 1 << 30),
                (8, 512, 8192, 131072, 1 << 20, 16 << 20, 64 << 20, 256 << 20, 1 << 29),
                warmup=3, reps=10, min_rep_s=5e-3, max_call_s=1.0,
                collective_warmup=5, collective_reps=10, collective_min_rep_s=5e-3,
                conv_shapes=_CONVS, op_numels=(1 << 20, 1 << 24),
                # m = 1-16: decode batches and short prompts, where a GEMM reads its weights
                # for few rows (memory- or launch-bound) and the rule below the grid guesses
                matmul_table_dims=(64, 256, 1024, 4096, 16384),
                matmul_table_m_dims=(1, 4, 16, 64, 256, 1024, 4096, 16384),
                matmul_table_max_flops=2 ** 41,
                # the FlashAttention-2/3 papers' grid: 16k tokens, 2048 hidden
                attention_table_kernels=("flash2", "efficient", "cudnn"),
                attention_table_head_dims=(64, 128, 256),
                attention_table_seqs=(512, 1024, 2048, 4096, 8192, 16384),
                attention_table_tokens=16384, attention_table_hidden=2048)


def count_points(grid: Grid, nproc: int) -> int:
    """Benchmark points of a run: what a progress bar counts."""
    n = len(grid.dtypes) * len(grid.matmul_shapes) + len(grid.attention_shapes)
    n += (len(grid.table_cells()) + len(grid.warm_cells())) * max(1, len(grid.matmul_table_dtypes))
    n += len(grid.attention_decode_shapes)
    n += len(grid.attention_table_kernels) * len(attention_cells(grid)) * 2
    n += 2 * len(grid.memory_bytes) + 1  # copy and add per size, the launch
    n += len(_PROBE_SETS) if grid.cache_probe else 0
    n += len(grid.conv_shapes) + len(grid.op_numels) + 2  # + the overheads, the dispatch
    if nproc > 1:
        n += len(COLLECTIVES) * len(grid.collective_bytes)
    return n


def check_request(device: str, nproc: int) -> None:
    """Refuse, before anything is measured, a device that is not here or a bad process count."""
    import torch

    if device not in DEVICES:
        raise ConfigError(f"--device {device!r} is unknown; use cpu or cuda")
    cores = os.cpu_count() or 1
    if nproc < 1 or nproc > cores * _MAX_NPROC_PER_CORE:
        raise ConfigError(f"--nproc {nproc}: give 1 (no collectives) up to {cores * _MAX_NPROC_PER_CORE} "
                          f"({_MAX_NPROC_PER_CORE} per CPU core of this machine)")
    if device == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else "a CUDA build"
            raise ConfigError(f"--device cuda: no CUDA device on this machine (torch "
                              f"{torch.__version__} is {build}); use --device cpu, or run on a "
                              "machine with a GPU and a CUDA build of torch")
        if nproc > torch.cuda.device_count():
            raise ConfigError(f"--nproc {nproc}: this machine has {torch.cuda.device_count()} CUDA "
                              "device(s) and nccl needs one per process; use at most that many")


# --- measurements --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Point:
    """One benchmark point: what ran (``params``), its size (FLOPs or bytes moved), its times."""

    bench: str  # "matmul", "attention", "copy", "add"
    params: dict[str, Any]
    size: int
    time: Spread
    iters: int  # calls per timed repetition


# the last-level cache assumed where none could be read (the profile says so)
ASSUMED_LLC_BYTES = 32e6


@dataclass(slots=True)
class Measurements:
    """Everything one calibration measured or read, before any fitting."""

    device: str
    device_name: str
    vendor: str
    torch_version: str
    threads: int
    date: str
    grid: Grid
    nproc: int
    matmul: dict[str, list[Point]] = field(default_factory=dict)
    matmul_table: dict[str, list[Point]] = field(default_factory=dict)  # dtype -> (m, n, k) cells
    # dtype -> the warm cells (Grid.warm_cells), weights in the last-level cache
    matmul_warm: dict[str, list[Point]] = field(default_factory=dict)
    cache_probe: list[Point] = field(default_factory=list)  # one-row linears by working set
    attention: list[Point] = field(default_factory=list)
    attention_decode: list[Point] = field(default_factory=list)  # one query per sequence
    attention_table: list[Point] = field(default_factory=list)  # per backend, attnbench.py
    memory: list[Point] = field(default_factory=list)
    conv: list[Point] = field(default_factory=list)
    ops: dict[str, list[Point]] = field(default_factory=dict)  # aten op -> points (bytes)
    overheads: dict[str, dict[str, Any]] = field(default_factory=dict)  # phase -> record
    dispatch: dict[str, dict[str, Any]] = field(default_factory=dict)  # kind -> record
    skipped: list[dict[str, Any]] = field(default_factory=list)
    launch: Spread | None = None
    mem_bytes: float = 0.0
    mem_source: str = ""
    llc_bytes: float | None = None
    llc_source: str = ""
    host_link_bw: float | None = None
    collectives: dict[str, Any] | None = None
    elapsed_s: float = 0.0
    load_average: float | None = None  # 1-minute load average when the run started
    warnings: list[str] = field(default_factory=list)

    @property
    def llc_or_assumed(self) -> float:
        """The last-level cache that operands are cycled past: what was read, else assumed."""
        return self.llc_bytes or ASSUMED_LLC_BYTES


Progress = Callable[[str], None]  # called once per benchmark point done, with a description


def _sync_for(device: str) -> Callable[[], None]:
    import torch

    return torch.cuda.synchronize if device == "cuda" else (lambda: None)


@dataclass(frozen=True, slots=True)
class _Timed:
    """Per-call seconds of each repetition and the calls per repetition, or, for a point
    skipped because one call took longer than the grid allows, ``samples`` None."""

    samples: list[float] | None
    iters: int
    first_s: float  # the first call's time (what the next point's estimate starts from)


@dataclass(frozen=True, slots=True)
class _Sized:
    """A call after its warm-up: calls per timed batch, or None when one call is too slow."""

    fn: Callable[[], Any]
    iters: int | None
    first_s: float  # the first call's time
    once_s: float  # the last warm-up call's time


def _size_call(fn: Callable[[], Any], sync: Callable[[], None], grid: Grid,
               max_iters: int = 1000) -> _Sized:
    """Warm-up calls; the last one sizes the batches (a batch lasts >= ``min_rep_s``). A first
    call over ``max_call_s`` gets one second chance (it may pay one-time set-up: cuBLAS
    handles, OpenMP threads) unless it took over four times the limit."""
    cap = grid.max_call_s
    first = once = _once(fn, sync)
    if once > cap and (once > 4 * cap or _once(fn, sync) > cap):
        return _Sized(fn, None, first, once)
    for _ in range(grid.warmup):
        once = _once(fn, sync)
    return _Sized(fn, max(1, min(max_iters, math.ceil(grid.min_rep_s / max(once, 1e-9)))),
                  first, once)


def _repeat(sized: list[_Sized], sync: Callable[[], None], reps: int) -> list[_Timed]:
    """``reps`` timed batches of each call, round-robin over the calls: every point's samples
    spread over the whole benchmark, so a slow spell of a shared machine falls on all points
    alike instead of on the few timed during it."""
    samples: list[list[float]] = [[] for _ in sized]
    for _ in range(reps):
        for i, c in enumerate(sized):
            if c.iters is None:
                continue
            t0 = time.perf_counter()
            for _ in range(c.iters):
                c.fn()
            sync()
            samples[i].append((time.perf_counter() - t0) / c.iters)
    return [_Timed(samples[i] if c.iters is not None else None, c.iters or 0, c.first_s)
            for i, c in enumerate(sized)]


def _time_calls(fns: list[Callable[[], Any]], sync: Callable[[], None], grid: Grid
                ) -> list[_Timed]:
    """Each call warmed up and sized, then their repetitions interleaved (:func:`_repeat`)."""
    return _repeat([_size_call(fn, sync, grid) for fn in fns], sync, grid.reps)


def _time_call(fn: Callable[[], Any], sync: Callable[[], None], grid: Grid, *,
               max_iters: int = 1000, reps: int | None = None) -> _Timed:
    """One call: warm-up, then repetitions of batched calls."""
    return _repeat([_size_call(fn, sync, grid, max_iters)], sync, reps or grid.reps)[0]


def _once(fn: Callable[[], Any], sync: Callable[[], None]) -> float:
    t0 = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t0


@contextmanager
def _fp32_precision(level: str) -> Iterator[None]:
    """fp32 matmuls at ``level`` ("highest": true fp32, "high": TF32 on CUDA), then restored."""
    import torch

    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(level)
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


class _Arena:
    """One buffer per dtype, twice the last-level cache plus the largest operand pair of the
    grid: a matmul's operands are slices of it at offsets that cycle through it, so each call
    reads operands out of cache, as a step's matmuls do (a weight was last touched a layer or
    a step before), at no more memory than the buffer."""

    def __init__(self, device: str, cache_bytes: float, largest: int):
        self.device, self.cache_bytes, self.largest = device, cache_bytes, largest
        self.buffers: dict[Any, Any] = {}

    def operands(self, tdt, m: int, n: int, k: int) -> list[tuple[Any, Any]]:
        """Pairs of an (m, k) input and an (n, k) weight (a linear layer's), cycling through
        the buffer."""
        return self.copies(tdt, ((m, k), (n, k)))

    def copies(self, tdt, shapes: tuple[tuple[int, ...], ...]) -> list[tuple[Any, ...]]:
        """Copies of one set of operands of ``shapes`` (contiguous, together at most the
        arena's ``largest`` elements), cycling through the buffer."""
        import torch

        sizes = [math.prod(sh) for sh in shapes]
        size = sum(sizes)
        item = torch.empty((), dtype=tdt).element_size()
        span = max(1, math.ceil(2 * self.cache_bytes / item))
        if tdt not in self.buffers:  # every operand set of the grid fits after the span
            self.buffers[tdt] = torch.randn(span + self.largest, device=self.device, dtype=tdt)
        buf = self.buffers[tdt]
        out = []
        for i in range(max(1, min(span // size, 4096))):
            at, views = i * size, []
            for sh, n in zip(shapes, sizes):
                views.append(buf[at:at + n].view(sh))
                at += n
            out.append(tuple(views))
        return out


def _matmul_fn(dtype: str, m: int, n: int, k: int, device: str,
               arena: _Arena | None = None) -> Callable[[], Any]:
    """A call of an (m, k) @ (k, n) matmul as a linear layer runs it: ``F.linear`` of an
    (m, k) input and an (n, k) weight (row-major, read transposed: ``nn.Linear``'s layout and
    the fp8 path's); on operands cycling out of cache through ``arena`` where given (fp8
    aside: its operands are converted copies), else on one pair."""
    import torch
    import torch.nn.functional as F

    if dtype == "fp8":  # a row-major (m, k) by a column-major (k, n), scaled, bf16 out
        a = torch.randn(m, k, device=device).to(torch.float8_e4m3fn)
        b = torch.randn(n, k, device=device).to(torch.float8_e4m3fn).t()
        one = torch.ones((), device=device)
        return lambda: torch._scaled_mm(a, b, scale_a=one, scale_b=one, out_dtype=torch.bfloat16)
    tdt = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16,
           "fp16": torch.float16}[dtype]
    if arena is None:
        a = torch.randn(m, k, device=device, dtype=tdt)
        w = torch.randn(n, k, device=device, dtype=tdt)
        return lambda: F.linear(a, w)
    pairs = itertools.cycle(arena.operands(tdt, m, n, k))
    return lambda: F.linear(*next(pairs))


def _dtype_unsupported(dtype: str, device: str) -> str | None:
    """Why ``dtype`` cannot be measured on ``device`` (None: try it)."""
    import torch

    if device == "cpu" and dtype not in ("fp32", "bf16"):
        return "calibrate measures fp32 and bf16 on a CPU"
    if device == "cuda" and dtype == "fp8":
        if not hasattr(torch, "float8_e4m3fn") or torch.cuda.get_device_capability() < (8, 9):
            return "fp8 matmuls need compute capability 8.9 or later"
        try:
            _matmul_fn("fp8", 32, 32, 32, device)()
            torch.cuda.synchronize()
        except Exception as exc:  # a build without the fp8 kernels
            return f"torch._scaled_mm failed: {type(exc).__name__}"
    return None


def _measure_matmul(m: Measurements, device: str, grid: Grid, progress: Progress,
                    arena: _Arena) -> None:
    sync = _sync_for(device)
    for dtype in grid.dtypes:
        shapes = sorted(grid.matmul_shapes, key=lambda s: matmul_flops(*s))
        reason = _dtype_unsupported(dtype, device)
        if reason:
            m.skipped.append({"bench": "matmul", "dtype": dtype, "reason": reason})
            for _ in shapes:
                progress(f"matmul {dtype} (skipped)")
            continue
        points: list[Point] = []
        last: tuple[int, float] | None = None  # (FLOPs, seconds) of the latest call sized
        too_slow = False  # a call of this dtype took longer than the grid allows
        run: list[tuple[tuple[int, int, int], _Sized]] = []
        with _fp32_precision("high" if dtype == "tf32" else "highest"):
            for mm, nn, kk in shapes:  # warm-up and sizing, by increasing FLOPs
                flops = matmul_flops(mm, nn, kk)
                limit = grid.max_call_s * (1 if too_slow else 4)
                if last is not None and flops * last[1] / last[0] > limit:
                    m.skipped.append(_skip("matmul", dtype, (mm, nn, kk), grid, estimated=True))
                else:
                    sized = _size_call(_matmul_fn(dtype, mm, nn, kk, device, arena), sync,
                                       grid)
                    if sized.iters is None:
                        too_slow = True
                        last = (flops, sized.first_s)
                        m.skipped.append(_skip("matmul", dtype, (mm, nn, kk), grid))
                    else:
                        last = (flops, sized.once_s)
                        run.append(((mm, nn, kk), sized))
            for (mm, nn, kk), timed in zip([s for s, _ in run],
                                           _repeat([c for _, c in run], sync, grid.reps)):
                points.append(Point("matmul", {"m": mm, "n": nn, "k": kk},
                                    matmul_flops(mm, nn, kk), spread(timed.samples),
                                    timed.iters))
        for mm, nn, kk in shapes:
            progress(f"matmul {dtype} {mm}x{nn}x{kk}")
        if points:
            m.matmul[dtype] = points
        else:
            m.skipped.append({"bench": "matmul", "dtype": dtype,
                              "reason": f"every shape took over {grid.max_call_s} s a call"})


def reference_dtype(m: Measurements) -> str | None:
    """The faster of bf16 and fp32 by their best matmul rate: the dtype whose efficiency the
    profile's matmul curve and shape table hold (None: neither was measured)."""
    launch = m.launch.median if m.launch is not None else 0.0
    rates = {dt: best_rate([p.size for p in pts],
                           [kernel_seconds(p.time.median, launch) for p in pts])
             for dt, pts in m.matmul.items() if dt in ("bf16", "fp32") and pts}
    return max(rates, key=rates.__getitem__) if rates else None


def table_dtypes(m: Measurements) -> tuple[str, ...]:
    """The dtypes the shape table is timed in: the grid's that had a matmul measured (the
    reference dtype first), else the reference dtype alone."""
    ref = reference_dtype(m)
    if ref is None:
        return ()
    more = [dt for dt in m.grid.matmul_table_dtypes if dt != ref and m.matmul.get(dt)]
    return (ref, *more)


def _measure_matmul_table(m: Measurements, device: str, grid: Grid, progress: Progress,
                          arena: _Arena, warm: bool = False) -> None:
    """Every timed cell of the shape table in each of its dtypes, repetitions interleaved
    (``warm``: the warm cells, on an arena that the last-level cache holds)."""
    cells = grid.warm_cells() if warm else grid.table_cells()
    into, bench = (m.matmul_warm, "matmul_warm") if warm else (m.matmul_table, "matmul_table")
    dtypes = table_dtypes(m)
    if not dtypes:
        for _ in cells:
            progress(f"{bench} (skipped)")
        return
    sync = _sync_for(device)
    for dtype in dtypes:
        with _fp32_precision("highest"):
            timed = _time_calls([_matmul_fn(dtype, *c, device, arena) for c in cells], sync,
                                grid)
        for (mm, nn, kk), t in zip(cells, timed):
            if t.samples is None:
                m.skipped.append(_skip(bench, dtype, (mm, nn, kk), grid))
            else:
                into.setdefault(dtype, []).append(
                    Point("matmul", {"m": mm, "n": nn, "k": kk}, matmul_flops(mm, nn, kk),
                          spread(t.samples), t.iters))
            progress(f"matmul {dtype} {mm}x{nn}x{kk}{' warm' if warm else ''}")


# the cache probe: a (1, 256) input by (1024, 256) fp32 weights (1 MiB each, a decode step's
# one-row linear) cycled over working sets of 2^i MiB; the largest is twice the last-level
# cache, at most 1 GiB
PROBE_NK = (1024, 256)
_PROBE_SETS = tuple(2 ** i for i in range(11))  # MiB


def _probe_sets(llc_bytes: float) -> tuple[int, ...]:
    """Working sets of the cache probe in MiB: 1 MiB up to under twice the cache, then twice
    the cache (the reference, out of every cache)."""
    top = min(1024, max(2, math.ceil(2 * llc_bytes / 2**20)))
    return tuple(s for s in _PROBE_SETS if s < top) + (top,)


def time_cache_probe(sets_mib: tuple[int, ...], device: str, grid: Grid) -> list[Point]:
    """The cache probe at each working set of ``sets_mib`` (MiB): one-row fp32 linears, a (1,
    k) input by (n, k) weights (``PROBE_NK``) cycled over the working set, their repetitions
    interleaved -> one ``Point`` per set timed (size: the working set in bytes; a set whose
    call took longer than the grid allows is left out). ``archcost calibrate`` records them;
    ``archcost validate --infer`` times them again to see how far the machine moved since."""
    import torch
    import torch.nn.functional as F

    n, k = PROBE_NK
    buf = torch.full((max(sets_mib) * 2**20 // 4,), 0.5, device=device)
    x = torch.full((1, k), 0.5, device=device)
    per = n * k

    def call_over(mib: int) -> Callable[[], Any]:
        ws = itertools.cycle([buf[i * per:(i + 1) * per].view(n, k)
                              for i in range(max(1, mib * 2**20 // (4 * per)))])
        return lambda: F.linear(x, next(ws))

    timed = _time_calls([call_over(s) for s in sets_mib], _sync_for(device), grid)
    return [Point("cache", {"working_set_mib": s}, s * 2**20, spread(t.samples), t.iters)
            for s, t in zip(sets_mib, timed) if t.samples is not None]


def _measure_cache(m: Measurements, device: str, grid: Grid, progress: Progress) -> None:
    """One-row linears over weights cycling through working sets from 1 MiB to twice the
    last-level cache -> ``m.cache_probe`` (:func:`time_cache_probe`)."""
    sets = _probe_sets(m.llc_or_assumed)
    m.cache_probe.extend(time_cache_probe(sets, device, grid))
    for s in sets:
        progress(f"cache probe {s} MiB")
    for _ in range(len(_PROBE_SETS) - len(sets)):
        progress("cache probe (not needed)")


def probe_capacity(m: Measurements) -> float | None:
    """The largest working set the cache probe read from cache (None: not probed, or none),
    from each set's fastest repetitions (p10: a busy machine only slows a repetition, and a
    slowed small set or a fast reference would hide the cache)."""
    if len(m.cache_probe) < 2:
        return None
    return cache_capacity([p.size for p in m.cache_probe], [p.time.p10 for p in m.cache_probe])


def _skip(bench: str, dtype: str, shape: tuple[int, int, int], grid: Grid,
          estimated: bool = False) -> dict[str, Any]:
    why = ("estimated from the previous shape, not run" if estimated else "timed")
    return {"bench": bench, "dtype": dtype, "m": shape[0], "n": shape[1], "k": shape[2],
            "reason": f"one call takes over {grid.max_call_s} s ({why})"}


def _measure_attention(m: Measurements, device: str, grid: Grid, progress: Progress,
                       decode: bool = False) -> None:
    """Causal SDPA over ``grid.attention_shapes`` -> ``m.attention``, operands reused (a
    step's activations were written a layer before); with ``decode``, one query per sequence
    over the keys of ``grid.attention_decode_shapes``, no mask (the last position sees every
    key) -> ``m.attention_decode``, on query, keys and values cycling out of the last-level
    cache (``_Arena``): a layer's KV cache is read once a step, and every other layer's weights
    and cache pass through the caches in between (a GPT-2 batch-8 decode's SDPA took 253 us a
    call in the model against 103 us on reused operands)."""
    import torch
    import torch.nn.functional as F

    sync = _sync_for(device)
    tdt = {"fp32": torch.float32, "bf16": torch.bfloat16,
           "fp16": torch.float16}[grid.attention_dtype]
    shapes = grid.attention_decode_shapes if decode else grid.attention_shapes
    bench, out = ("attention_decode", m.attention_decode) if decode else ("attention", m.attention)
    arena = _Arena(device, m.llc_or_assumed, max(b * h * d * (1 + 2 * s)
                                                 for b, h, s, d in shapes)) if decode else None
    fns = []
    for b, h, s, d in shapes:
        if arena is not None:
            sets = itertools.cycle(arena.copies(tdt, ((b, h, 1, d), (b, h, s, d), (b, h, s, d))))
            fns.append(lambda sets=sets: F.scaled_dot_product_attention(*next(sets)))
            continue
        q = torch.randn(b, h, s, d, device=device, dtype=tdt)
        k, v = (torch.randn(b, h, s, d, device=device, dtype=tdt) for _ in range(2))
        fns.append(lambda q=q, k=k, v=v: F.scaled_dot_product_attention(q, k, v,
                                                                       is_causal=True))
    for (b, h, s, d), timed in zip(shapes, _time_calls(fns, sync, grid)):
        params = {"batch": b, "heads": h, "keys" if decode else "seq": s, "head_dim": d}
        if timed.samples is None:
            m.skipped.append({"bench": bench, **params,
                              "reason": f"one call takes over {grid.max_call_s} s"})
        else:
            out.append(Point(bench, params,
                             sdpa_flops(b, h, 1 if decode else s, s, d, d, not decode),
                             spread(timed.samples), timed.iters))
        progress(f"{'decode ' if decode else ''}attention {grid.attention_dtype} "
                 f"{'keys' if decode else 'seq'} {s}")


def _measure_memory(m: Measurements, device: str, grid: Grid, progress: Progress) -> None:
    import torch

    sync = _sync_for(device)
    for nbytes in grid.memory_bytes:
        numel = max(1, nbytes // 4)
        src = torch.ones(numel, device=device)
        dst = torch.empty(numel, device=device)
        other = torch.ones(numel, device=device)
        copy = lambda d=dst, s=src: d.copy_(s)  # noqa: E731 - bytes = read + write
        add = lambda d=dst, s=src, o=other: torch.add(s, o, out=d)  # noqa: E731 - 2 reads, 1 write
        for bench, fn, moved in (("copy", copy, 2), ("add", add, 3)):
            timed = _time_call(fn, sync, grid)
            if timed.samples is None:
                m.skipped.append({"bench": bench, "tensor_bytes": numel * 4,
                                  "reason": f"one call takes over {grid.max_call_s} s"})
            else:
                m.memory.append(Point(bench, {"tensor_bytes": numel * 4}, moved * numel * 4,
                                      spread(timed.samples), timed.iters))
            progress(f"memory {bench} {numel * 4} B")
        del src, dst, other


_GRAPH_ADDS = 100  # adds per CUDA graph replay (kernel_launch on a GPU)


def _measure_launch(device: str, grid: Grid) -> Spread:
    """Seconds one tiny kernel costs the device. CPU: an add of 1-element tensors, called
    from Python (the host is the device). GPU: one of ``_GRAPH_ADDS`` such adds captured in a
    CUDA graph and replayed, the device's gap between back-to-back kernels with no host in it;
    the host's time per op of eager PyTorch is ``op_overhead`` (``opbench.measure_overheads``)."""
    import torch

    a, b = torch.ones(1, device=device), torch.ones(1, device=device)
    if device == "cuda":
        return _measure_graph_launch(torch, a, b, grid)
    timed = _time_call(lambda: torch.add(a, b), _sync_for(device), grid, max_iters=5000,
                       reps=max(grid.reps, 15))
    if timed.samples is None:
        raise ValidationError(f"one add of 1-element tensors took {fmt_seconds(timed.first_s)} on "
                              f"{device}; the device is stalled or busy: rerun on an idle machine")
    return spread(timed.samples)


def _measure_graph_launch(torch, a, b, grid: Grid) -> Spread:
    out = torch.empty_like(a)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # the capture's warm-up, off the default stream
        for _ in range(3):
            torch.add(a, b, out=out)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(_GRAPH_ADDS):
            torch.add(a, b, out=out)
    timed = _time_call(graph.replay, torch.cuda.synchronize, grid, max_iters=500,
                       reps=max(grid.reps, 15))
    if timed.samples is None:
        raise ValidationError(f"one replay of {_GRAPH_ADDS} adds took "
                              f"{fmt_seconds(timed.first_s)}; the GPU is stalled or busy: rerun "
                              "on an idle machine")
    return spread([t / _GRAPH_ADDS for t in timed.samples])


def _host_link_bw(grid: Grid) -> float:
    """Best of pinned host-to-device and device-to-host copies of the largest memory size."""
    import torch

    numel = max(grid.memory_bytes) // 4
    host = torch.ones(numel, pin_memory=True)
    dev = torch.empty(numel, device="cuda")
    best = 0.0
    for fn in (lambda: dev.copy_(host, non_blocking=True), lambda: host.copy_(dev, non_blocking=True)):
        timed = _time_call(fn, torch.cuda.synchronize, grid)
        if timed.samples is not None:
            best = max(best, numel * 4 / spread(timed.samples).median)
    return best


# --- reading the machine -------------------------------------------------------------------------
def _memory_capacity(device: str) -> tuple[float, str]:
    if device == "cuda":
        import torch

        return float(torch.cuda.get_device_properties(0).total_memory), "torch.cuda total_memory"
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return float(line.split()[1]) * 1024, "/proc/meminfo MemTotal"
    except OSError:
        pass
    return float(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")), "os.sysconf physical pages"


def _last_level_cache(device: str) -> tuple[float | None, str]:
    if device == "cuda":
        import torch

        size = getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 0)
        return (float(size), "torch.cuda L2_cache_size") if size else (None, "")
    best = 0.0
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            text = (index / "size").read_text().strip()
        except OSError:
            continue
        scale = {"K": 1024, "M": 1024**2, "G": 1024**3}.get(text[-1:], 1)
        digits = text.rstrip("KMG")
        if digits.isdigit():
            best = max(best, float(digits) * scale)
    return (best, "sysfs cpu0 largest cache level") if best else (None, "")


def _vendor(device: str) -> str:
    import torch

    if device == "cuda":
        return "AMD" if getattr(torch.version, "hip", None) else "NVIDIA"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("vendor_id"):
                    vid = line.split(":", 1)[1].strip()
                    return {"GenuineIntel": "Intel", "AuthenticAMD": "AMD"}.get(vid, vid)
    except OSError:
        pass
    import platform

    return platform.machine() or "unknown"


def busy_warning(load_average: float, cores: int) -> str | None:
    """A warning when other jobs already use half the cores or more: they take CPU time from
    the benchmarks (and from the host thread feeding a GPU), so the figures come out low."""
    if load_average < 0.5 * cores:
        return None
    return (f"this machine was busy when calibration started (load average {load_average:.1f} "
            f"on {cores} cores): figures may come out low; calibrate an idle machine")


# --- one calibration -----------------------------------------------------------------------------
def measure(device: str, nproc: int, grid: Grid, progress: Progress | None = None,
            timeout_s: float = 600.0, pg_timeout_s: float = 120.0) -> Measurements:
    """Run every benchmark of ``grid`` on ``device`` (and the collectives when ``nproc`` > 1)."""
    import torch

    from archcost.hardware.machine import machine_id
    from archcost.hardware.opbench import (
        measure_conv,
        measure_dispatch,
        measure_ops,
        measure_overheads,
    )

    report = progress or (lambda _desc: None)
    start = time.perf_counter()
    if device == "cuda":
        torch.cuda.set_device(0)
    m = Measurements(device=device, device_name=machine_id(device), vendor=_vendor(device),
                     torch_version=str(torch.__version__), threads=torch.get_num_threads(),
                     date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                     grid=grid, nproc=nproc)
    if hasattr(os, "getloadavg"):
        m.load_average = os.getloadavg()[0]
        warning = busy_warning(m.load_average, os.cpu_count() or 1)
        if warning:
            m.warnings.append(warning)
    m.mem_bytes, m.mem_source = _memory_capacity(device)
    m.llc_bytes, m.llc_source = _last_level_cache(device)
    m.launch = _measure_launch(device, grid)  # outside inference mode: dispatch as in training
    report("kernel launch")
    measure_overheads(m, device, grid, report)  # a training step's phases: with autograd
    measure_dispatch(m, device, grid, report)  # views and module calls: inference mode
    measure_attention_tables(m, device, grid, _time_calls, _sync_for(device), report,
                             lambda params, flops, t: Point("attention", params, flops,
                                                            spread(t.samples), t.iters))
    with torch.inference_mode():
        largest = max(mm * kk + kk * nn for mm, nn, kk in
                      (*grid.matmul_shapes, *grid.table_cells()))
        arena = _Arena(device, m.llc_or_assumed, largest)
        _measure_matmul(m, device, grid, report, arena)
        _measure_matmul_table(m, device, grid, report, arena)
        del arena
        if grid.cache_probe:
            _measure_cache(m, device, grid, report)
        cached = probe_capacity(m)
        if grid.warm_cells() and cached:  # half the cache the probe found: operands cycle there
            _measure_matmul_table(m, device, grid, report, _Arena(device, cached / 4, largest),
                                  warm=True)
        else:
            for _ in range(len(grid.warm_cells()) * max(1, len(grid.matmul_table_dtypes))):
                report("matmul warm (no cache found)")
        _measure_attention(m, device, grid, report)
        if grid.attention_decode_shapes:
            _measure_attention(m, device, grid, report, decode=True)
        _measure_memory(m, device, grid, report)
        measure_conv(m, device, grid, report)
        if grid.op_numels:
            measure_ops(m, device, grid, report)
        if device == "cuda":
            m.host_link_bw = _host_link_bw(grid) or None
    if device == "cuda":
        torch.cuda.empty_cache()
    if nproc > 1:
        from archcost.hardware.collective_launch import run_collectives

        m.collectives = run_collectives(device, nproc, grid, progress=report, timeout_s=timeout_s,
                                        pg_timeout_s=pg_timeout_s)
    m.elapsed_s = time.perf_counter() - start
    return m


def _overheads(m: Measurements, peaks, curves, attention, conv, mem_bw, memory_curve, op_curves,
               launch: float) -> dict[str, float]:
    """Per-op overhead of each phase: its measured time less the work the cost engine, with
    the figures just fitted, gives its ops (fp32), over the ops; at least the bare launch. The
    inference phase also less its views at the measured per-view figure (``dispatch_s``),
    which inference pricing charges on its own."""
    import numpy as np

    from archcost.cost.compute import curve_for, memory_curve_index, roofline_seconds
    from archcost.hardware.profile import EfficiencyCurve, GpuProfile

    if not m.overheads or "fp32" not in peaks:
        return {}
    matmul = EfficiencyCurve(curves["fp32"])
    gpu = GpuProfile(
        name="calibration", vendor="", peak_flops_per_s={"fp32": peaks["fp32"]}, mem_bytes=1.0,
        mem_bw_bytes_per_s=mem_bw, l2_bytes=1.0, kernel_launch_s=0.0, tdp_w=1.0,
        idle_power_fraction=0.0, price_per_gpu_hour_usd=None, matmul_efficiency=matmul,
        attention_efficiency=EfficiencyCurve(attention) if attention else matmul,
        memory_efficiency=EfficiencyCurve(memory_curve),
        conv_efficiency=EfficiencyCurve(conv) if conv else None,
        op_efficiency={op: EfficiencyCurve(pts) for op, pts in op_curves.items()})
    out = {}
    for phase, rec in m.overheads.items():
        ops = rec["charged"]
        if not ops:
            continue
        flops = np.array([float(o[2]) for o in ops])
        nbytes = np.array([float(o[3]) for o in ops])
        work, _ = roofline_seconds(
            gpu, flops, nbytes, np.full(len(ops), peaks["fp32"]),
            np.array([curve_for(o[1], o[0]) for o in ops], dtype=np.int64),
            memory_curve_index(gpu, [o[0] for o in ops]), np.zeros(len(ops)))
        views = rec.get("views", 0) * dispatch_s(m).get("view", 0.0) if phase == "inference" \
            else 0.0
        out[phase] = per_op_overhead(rec["median_s"] - views, float(work.sum()), len(ops),
                                     launch)
    return out


def dispatch_s(m: Measurements) -> dict[str, float]:
    """Seconds per view op and per nn.Module call (``opbench.measure_dispatch``)."""
    return {kind: rec["median_s"] / rec["calls"] for kind, rec in m.dispatch.items()
            if rec["calls"] > 0}


@dataclass(frozen=True, slots=True)
class TableFit:
    """The shape table of one dtype fitted from its timed cells (fractions of its peak)."""

    dims: tuple[int, ...]  # the grid of n and k
    values: list  # values[i][j][l]: efficiency at (m_dims[i], dims[j], dims[l])
    filled: list[tuple[int, int, int]]  # cells not timed (over the FLOPs cap): from the curve
    curve_error: float  # rms log error of the curve by FLOPs on the timed cells
    m_dims: tuple[int, ...]  # the grid of m (the grid's table_m_dims)


@dataclass(frozen=True, slots=True)
class Derived:
    """The profile's figures, fitted from one calibration's measurements."""

    peaks: dict[str, float]  # FLOP/s per dtype
    reference_dtype: str  # the dtype whose curve is matmul_efficiency
    matmul_curve: tuple[tuple[int, float], ...]
    matmul_table: dict[str, TableFit]  # dtype -> table (the reference dtype first); {}: none
    attention_curve: tuple[tuple[int, float], ...] | None
    # by the FLOPs of one (batch, head) slice: kept when it predicts held-out points better
    attention_slice_curve: tuple[tuple[int, float], ...] | None
    # decode attention (one query) by the FLOPs of one (batch, head) slice; None: not measured
    attention_decode_curve: tuple[tuple[int, float], ...] | None
    attention_held_out: dict[str, float]  # curve indexing -> rms log error, leave one out
    # kernel -> {head_dims, seq_lens, values[phase][mask][d][s]}: attnbench.fit_attention_tables
    attention_tables: dict[str, dict[str, Any]]
    mem_bw: float
    memory_curve: tuple[tuple[int, float], ...]
    launch_s: float
    conv_curve: tuple[tuple[int, float], ...] | None  # forward
    conv_backward_curve: tuple[tuple[int, float], ...] | None
    op_curves: dict[str, tuple[tuple[int, float], ...]]  # aten op -> [bytes, fraction of mem_bw]
    overheads_s: dict[str, float]  # phase -> seconds per charged op
    collective_fits: dict[str, CollectiveFit]
    level_fit: CollectiveFit | None  # one (alpha, bw) for the link level: all ops together
    dispatch_s: dict[str, float] = field(default_factory=dict)  # view, module_call -> seconds
    # dtype -> the warm rows (weights in the last-level cache; cells not timed warm: the
    # table's); {}: none
    matmul_warm: dict[str, TableFit] = field(default_factory=dict)
    # the largest working set the cache probe read from cache (bytes); None: not probed/none
    cache_bytes: float | None = None

    @property
    def shared_table_dtype(self) -> str | None:
        """The dtype of the one shape table every dtype reads (at its same-duration shape);
        None with a table per dtype, or none."""
        return next(iter(self.matmul_table)) if len(self.matmul_table) == 1 else None


def _per_slice_flops(points: list[Point]) -> list[int]:
    """The FLOPs of one (batch, head) slice of each attention point."""
    return [p.size // (p.params["batch"] * p.params["heads"]) for p in points]


def _warm_fit(m: Measurements, pts: list[Point], table: TableFit, peak: float,
              launch: float) -> TableFit:
    """The warm rows of one dtype's table: each timed warm cell rated as the table's cells are
    (``fit.shape_table``), the cold table's value where a cell was not timed warm (weights too
    small to leave the caches near the core); ``curve_error``: how far the warm cells lie from
    the cold ones (rms log)."""
    rows = m.grid.matmul_warm_m_dims
    cells = {(p.params["m"], p.params["n"], p.params["k"]): kernel_seconds(p.time.median, launch)
             for p in pts}
    values, filled = shape_table(table.dims, cells, peak, lambda _flops: 1.0, m_dims=rows)
    logs = []
    for i, mm in enumerate(rows):
        cold = table.values[table.m_dims.index(mm)]
        for j, nn in enumerate(table.dims):
            for l_, kk in enumerate(table.dims):
                if (mm, nn, kk) in cells:
                    logs.append(math.log(values[i][j][l_] / cold[j][l_]))
                else:
                    values[i][j][l_] = cold[j][l_]
    err = math.sqrt(sum(x * x for x in logs) / len(logs)) if logs else 0.0
    return TableFit(table.dims, values, filled, err, tuple(rows))


def derive(m: Measurements) -> Derived:
    """Peaks, curves, bandwidth and collective fits from ``m`` (no timing: fit.py's rules)."""
    if m.launch is None or "fp32" not in m.matmul or not m.memory:
        raise ValidationError("the calibration measured no fp32 matmul or no memory copy; rerun "
                              "it (with --debug to see why)")
    launch = m.launch.median

    def curve(pts: list[Point], peak: float) -> tuple[tuple[int, float], ...]:
        """Efficiency by size of ``pts`` against ``peak``, their launch overhead taken off."""
        return efficiency_curve([p.size for p in pts],
                                [kernel_seconds(p.time.median, launch) for p in pts], peak)

    peaks, curves = {}, {}
    for dtype, pts in m.matmul.items():
        secs = [kernel_seconds(p.time.median, launch) for p in pts]
        peaks[dtype] = best_rate([p.size for p in pts], secs)
        curves[dtype] = efficiency_curve([p.size for p in pts], secs, peaks[dtype])
    ref = reference_dtype(m)
    from archcost.hardware.profile import EfficiencyCurve

    shape_fits: dict[str, TableFit] = {}
    for dt, pts in m.matmul_table.items():  # measured in table_dtypes' order: reference first
        by_flops = EfficiencyCurve(curves[dt])
        cells = {(p.params["m"], p.params["n"], p.params["k"]):
                 kernel_seconds(p.time.median, launch) for p in pts}
        values, filled = shape_table(m.grid.matmul_table_dims, cells, peaks[dt], by_flops.at,
                                     m_dims=m.grid.table_m_dims)
        miss = [math.log(p.size / (peaks[dt] * by_flops.at(p.size)) / cells[c])
                for c, p in zip(cells, pts)]
        shape_fits[dt] = TableFit(m.grid.matmul_table_dims, values, filled,
                                  math.sqrt(sum(x * x for x in miss) / len(miss)),
                                  m.grid.table_m_dims)
    warm_fits = {dt: _warm_fit(m, pts, shape_fits[dt], peaks[dt], launch)
                 for dt, pts in m.matmul_warm.items() if dt in shape_fits}
    attention = attention_slice = None
    held_out: dict[str, float] = {}
    if m.attention and m.grid.attention_dtype in peaks:
        secs = [kernel_seconds(p.time.median, launch) for p in m.attention]
        peak = peaks[m.grid.attention_dtype]
        flops = [p.size for p in m.attention]
        attention = efficiency_curve(flops, secs, peak)
        per_slice = _per_slice_flops(m.attention)
        if len(m.attention) >= 3:
            held_out = {"by_op_flops": held_out_error(flops, secs, peak),
                        "by_slice_flops": held_out_error(per_slice, secs, peak, work=flops)}
            if held_out["by_slice_flops"] < held_out["by_op_flops"]:
                attention_slice = efficiency_curve(per_slice, secs, peak, work=flops)
    decode = None
    if m.attention_decode and m.grid.attention_dtype in peaks:
        secs = [kernel_seconds(p.time.median, launch) for p in m.attention_decode]
        decode = efficiency_curve(_per_slice_flops(m.attention_decode), secs,
                                  peaks[m.grid.attention_dtype],
                                  work=[p.size for p in m.attention_decode])
    tables = {}
    if m.attention_table and m.grid.attention_dtype in peaks:
        tables = fit_attention_tables(m.attention_table, launch, peaks[m.grid.attention_dtype],
                                      m.grid.attention_table_head_dims,
                                      m.grid.attention_table_seqs)
    conv = conv_backward = None
    if m.conv and "fp32" in peaks:  # forward and backward each by their own curve
        forward = [p for p in m.conv if p.params["direction"] == "forward"]
        backward = [p for p in m.conv if p.params["direction"] == "backward"]
        conv = curve(forward, peaks["fp32"]) if forward else None
        conv_backward = curve(backward, peaks["fp32"]) if backward else None
    secs = [kernel_seconds(p.time.median, launch) for p in m.memory]
    mem_bw = best_rate([p.size for p in m.memory], secs)
    memory_curve = efficiency_curve([p.size for p in m.memory], secs, mem_bw)
    op_curves = {op: curve(pts, mem_bw) for op, pts in m.ops.items()}
    overheads = _overheads(m, peaks, curves, attention, conv, mem_bw, memory_curve, op_curves,
                           launch)
    fits: dict[str, CollectiveFit] = {}
    level = None
    if m.collectives:
        n = int(m.collectives["world_size"])
        rows = [(op, r["bytes"], r["median_s"]) for op, pts in m.collectives["ops"].items()
                for r in pts]
        for op in [*m.collectives["ops"], "all"]:
            try:
                if op == "all":
                    level = fit_collective(rows, n)
                else:
                    fits[op] = fit_collective([r for r in rows if r[0] == op], n)
            except FitError as exc:
                raise ValidationError(f"collective benchmark, {op}: {exc}; rerun on an idle "
                                      "machine, or calibrate with --nproc 1") from None
    return Derived(peaks=peaks, reference_dtype=ref, matmul_curve=curves[ref],
                   matmul_table=shape_fits, matmul_warm=warm_fits,
                   cache_bytes=probe_capacity(m),
                   attention_curve=attention, attention_slice_curve=attention_slice,
                   attention_decode_curve=decode,
                   attention_held_out=held_out, attention_tables=tables, mem_bw=mem_bw,
                   memory_curve=memory_curve, launch_s=launch, conv_curve=conv,
                   conv_backward_curve=conv_backward, op_curves=op_curves,
                   overheads_s=overheads, collective_fits=fits, level_fit=level,
                   dispatch_s=dispatch_s(m))
