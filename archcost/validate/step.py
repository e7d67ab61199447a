"""Real timed training steps of a model file on this machine, one process or one rank of many.

The model is materialised for real (random initialisation) at the requested size, wrapped by the
plan's data parallelism — DDP (``zero=0``), DDP with ``ZeroRedundancyOptimizer`` (``zero=1``),
FSDP2 ``fully_shard`` on every repeated block and the root (``zero=2``: parameters stay gathered
between forward and backward; ``zero=3``: resharded after forward) — and run for warm-up steps
then timed steps of ``gbs / dp`` sequences per rank in micro-batches of ``mbs`` (gradient
accumulation, no gradient sync before the last micro-batch).

Measured per step: wall time (the slowest rank), forward (with loss), backward and optimizer
time, from host timers around synchronised phases; communication time and the bytes handed to
collectives from ``torch.profiler`` on one extra step; peak memory from the CUDA allocator or,
on CPU, from a storage-counting dispatch mode on one more step (live storages created during
the step, plus the persistent ones: parameters, buffers, optimizer states).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from archcost.errors import ValidationError

__all__ = ["RunConfig", "run_steps", "DTYPES"]

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
_COLLECTIVE_MARKS = ("all_reduce", "allreduce", "reduce_scatter", "reducescatter", "all_gather",
                     "allgather", "broadcast", "alltoall", "all_to_all")


@dataclass(frozen=True)
class RunConfig:
    model: str  # model file (path or path:builder)
    overrides: dict[str, Any]
    seq_len: int
    mbs: int
    gbs: int
    dp: int
    zero: int
    dtype: str  # fp32, bf16, fp16
    optimizer: str
    steps: int
    warmup: int
    device: str  # cpu, cuda
    measure_memory: bool = True
    profile_comm: bool = True

    @property
    def micro_batches(self) -> int:
        return self.gbs // (self.dp * self.mbs)


def _optimizer(name: str, params) -> torch.optim.Optimizer:
    makers: dict[str, Callable] = {
        "adamw": lambda p: torch.optim.AdamW(p, lr=1e-4, foreach=False),
        "adam": lambda p: torch.optim.Adam(p, lr=1e-4, foreach=False),
        "sgd": lambda p: torch.optim.SGD(p, lr=1e-4, momentum=0.9, foreach=False),
        "adamw-fused": lambda p: torch.optim.AdamW(p, lr=1e-4, fused=True),
        "adam-fused": lambda p: torch.optim.Adam(p, lr=1e-4, fused=True),
    }
    if name not in makers:
        raise ValidationError(f"optimizer {name!r}: use one of {', '.join(makers)}")
    return makers[name](params)


def _repeated_blocks(model: nn.Module) -> list[nn.Module]:
    """Members of the ModuleLists / Sequentials of identical blocks (the FSDP wrapping unit)."""
    blocks: list[nn.Module] = []
    for module in model.modules():
        if isinstance(module, (nn.ModuleList, nn.Sequential)) and len(module) > 1:
            kinds = {type(m) for m in module}
            if len(kinds) == 1 and any(True for _ in module[0].parameters()):
                blocks.extend(module)
    return blocks


def _cast_inputs(inputs, dtype: torch.dtype, device: torch.device):
    def cast(x):
        if isinstance(x, torch.Tensor):
            x = x.to(device)
            return x.to(dtype) if x.is_floating_point() else x
        return x
    if isinstance(inputs, dict):
        return {k: cast(v) for k, v in inputs.items()}
    return tuple(cast(v) for v in inputs)


def _wrap(model: nn.Module, cfg: RunConfig, distributed: bool):
    """(model to call, optimizer, no_sync context factory or None)."""
    if not distributed or cfg.dp == 1:
        return model, _optimizer(cfg.optimizer, model.parameters()), None
    if cfg.zero in (0, 1):
        from torch.nn.parallel import DistributedDataParallel as DDP

        ddp = DDP(model)
        if cfg.zero == 1:
            from torch.distributed.optim import ZeroRedundancyOptimizer

            cls = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam,
                   "sgd": torch.optim.SGD}.get(cfg.optimizer.replace("-fused", ""))
            opt = ZeroRedundancyOptimizer(ddp.parameters(), optimizer_class=cls, lr=1e-4)
        else:
            opt = _optimizer(cfg.optimizer, ddp.parameters())
        return ddp, opt, ddp.no_sync
    from torch.distributed.fsdp import fully_shard

    reshard = cfg.zero == 3
    for block in _repeated_blocks(model):
        fully_shard(block, reshard_after_forward=reshard)
    fully_shard(model, reshard_after_forward=reshard)
    opt = _optimizer(cfg.optimizer, model.parameters())

    class _NoSync:  # FSDP2: skip the reduce-scatter until the last micro-batch
        def __enter__(self):
            model.set_requires_gradient_sync(False)

        def __exit__(self, *exc):
            model.set_requires_gradient_sync(True)
            return False
    return model, opt, _NoSync


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _local(t: torch.Tensor) -> torch.Tensor:
    return t.to_local() if hasattr(t, "to_local") else t


def _persistent_bytes(model: nn.Module, opt: torch.optim.Optimizer) -> int:
    seen: dict[int, int] = {}
    tensors = [_local(t) for t in list(model.parameters()) + list(model.buffers())]
    states = opt.state.values() if not hasattr(opt, "optim") else opt.optim.state.values()
    for state in states:
        tensors += [_local(v) for v in state.values() if isinstance(v, torch.Tensor)]
    for t in tensors:
        st = t.untyped_storage()
        try:
            seen[st.data_ptr()] = st.nbytes()
        except RuntimeError:  # a storage freed in place (FSDP's unsharded parameters)
            continue
    return sum(seen.values())


def run_steps(cfg: RunConfig, rank: int = 0, distributed: bool = False) -> dict[str, Any]:
    """Build, run and measure; this rank's measurements."""
    from archcost.loader import load_model_file

    device = torch.device("cuda", rank % max(1, torch.cuda.device_count())) \
        if cfg.device == "cuda" else torch.device("cpu")
    if cfg.device == "cuda":
        torch.cuda.set_device(device)
    dtype = DTYPES[cfg.dtype]
    spec = load_model_file(cfg.model, cfg.overrides)
    torch.manual_seed(0)  # the same initial weights on every rank, as a checkpoint would give
    model = spec.build(cfg.mbs, cfg.seq_len).to(device=device, dtype=dtype)
    model.train()
    torch.manual_seed(1000 + rank)  # different data on every rank
    batches = [_cast_inputs(spec.inputs(model, cfg.mbs, cfg.seq_len), dtype, device)
               for _ in range(cfg.micro_batches)]
    call, opt, no_sync = _wrap(model, cfg, distributed)

    def forward(inputs):
        out = call(**inputs) if isinstance(inputs, dict) else call(*inputs)
        return out, spec.loss(out, inputs)

    def step(timings: dict[str, float] | None) -> None:
        for i, inputs in enumerate(batches):
            last = i == len(batches) - 1
            ctx = no_sync() if (no_sync is not None and not last) else nullcontext()
            with ctx:
                t0 = time.perf_counter()
                out, loss = forward(inputs)  # the loop holds the output through backward
                _sync(device)
                t1 = time.perf_counter()
                loss.backward()
                _sync(device)
                t2 = time.perf_counter()
                del out, loss
            if timings is not None:
                timings["forward"] += t1 - t0
                timings["backward"] += t2 - t1
        t3 = time.perf_counter()
        opt.step()
        opt.zero_grad(set_to_none=True)
        _sync(device)
        if timings is not None:
            timings["optimizer"] += time.perf_counter() - t3

    for _ in range(cfg.warmup):
        step(None)
    rows = []
    for _ in range(cfg.steps):
        if distributed:
            torch.distributed.barrier()
        timings = {"forward": 0.0, "backward": 0.0, "optimizer": 0.0}
        t0 = time.perf_counter()
        step(timings)
        timings["step"] = time.perf_counter() - t0
        rows.append(timings)
    result: dict[str, Any] = {
        "rank": rank,
        "steps": [dict(r) for r in rows],
        "median": {k: statistics.median(r[k] for r in rows) for k in rows[0]},
        "spread": {k: (min(r[k] for r in rows), max(r[k] for r in rows)) for k in rows[0]},
        "params_local": sum(_local(p).numel() for p in model.parameters()),
    }
    if distributed and cfg.profile_comm:
        result["comm"] = _profile_comm(step, dtype)
    if cfg.measure_memory:
        result["memory"] = _measure_memory(step, model, opt, device)
    return result


def _profile_comm(step, dtype: torch.dtype) -> dict[str, Any]:
    """Collective time and bytes of one step from torch.profiler's host-side events of the
    backend (``gloo:*`` / ``nccl:*``). Bytes follow the nccl-tests convention: the full buffer
    (an all-gather's output, a reduce-scatter's input), as the estimate counts them."""
    from torch.profiler import ProfilerActivity, profile

    world = torch.distributed.get_world_size()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        step(None)
    itemsize = torch.tensor([], dtype=dtype).element_size()
    by_name: dict[str, list[float]] = {}
    for ev in prof.events():
        name = ev.name.lower()
        if not name.startswith(("gloo:", "nccl:")) or not any(m in name for m in
                                                             _COLLECTIVE_MARKS):
            continue
        shapes = [s for s in (ev.input_shapes or []) if s]
        n = 1
        for d in (shapes[0] if shapes else []):
            n *= d
        if "gather" in name:
            n *= world  # the input is this rank's shard
        row = by_name.setdefault(ev.name, [0, 0.0, 0.0])
        row[0] += 1
        row[1] += ev.cpu_time_total / 1e6
        row[2] += n * itemsize
    return {"seconds": sum(r[1] for r in by_name.values()),
            "calls": int(sum(r[0] for r in by_name.values())),
            "bytes": float(sum(r[2] for r in by_name.values())),
            "by_collective": {k: {"calls": int(v[0]), "seconds": v[1], "bytes": v[2]}
                              for k, v in by_name.items()}}


def _measure_memory(step, model, opt, device: torch.device) -> dict[str, Any]:
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        step(None)
        return {"peak_bytes": int(torch.cuda.max_memory_allocated(device)),
                "method": "torch.cuda.max_memory_allocated"}
    from archcost.validate.memory import StorageTracker

    base = _persistent_bytes(model, opt)
    with StorageTracker() as tr:
        step(None)
    return {"peak_bytes": int(base + tr.peak), "persistent_bytes": int(base),
            "method": "storage-counting dispatch mode (CPU)"}
