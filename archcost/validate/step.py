"""Real timed training steps of a model file on this machine, one process or one rank of many.

The model is materialised for real (random initialisation) at the requested size, wrapped by the
plan's data parallelism — DDP (``zero=0``), DDP with ``ZeroRedundancyOptimizer`` (``zero=1``),
FSDP2 ``fully_shard`` on every repeated block and the root (``zero=2``: parameters stay gathered
between forward and backward; ``zero=3``: resharded after forward) — and run for warm-up steps
then timed steps of ``gbs / dp`` sequences per rank in micro-batches of ``mbs`` (gradient
accumulation, no gradient sync before the last micro-batch). Tensor-parallel plans shard the
model with DTensor and pipeline-parallel plans run ``torch.distributed.pipelining`` schedules
(``archcost.validate.parallel``); every rank builds the same initial weights and the ranks of one
data-parallel replica read the same data, so a tensor- or pipeline-parallel run computes the
one-process run's losses (``losses``).

Measured per step: wall time (the slowest rank), forward (with loss), backward and optimizer
time, from host timers around synchronised phases (pipeline: the schedule, forward and backward
interleaved inside it, and the optimizer); communication time and the bytes handed to
collectives and point-to-point sends from ``torch.profiler`` on one extra step, per plan
dimension; peak memory from the CUDA allocator or, on CPU, from a storage-counting dispatch mode
on one more step (live storages created during the step, plus the persistent ones: parameters,
buffers, optimizer states). On CPU without tensor or pipeline parallelism, one more step counts
the subnormal floats its ops put out (``archcost.validate.subnormal``). On CPU each rank keeps
the memory its steps free (``archcost.validate.allocator``; ``allocator`` says what was set).
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
# backend event name fragments of each collective
_COLLECTIVE_KINDS = {"all_reduce": ("all_reduce", "allreduce"),
                     "all_gather": ("all_gather", "allgather"),
                     "reduce_scatter": ("reduce_scatter", "reducescatter"),
                     "broadcast": ("broadcast",), "all_to_all": ("alltoall", "all_to_all")}
_COLLECTIVE_MARKS = tuple(m for marks in _COLLECTIVE_KINDS.values() for m in marks)
_REPLAYED = ("all_reduce", "all_gather", "reduce_scatter", "broadcast")
_P2P_MARKS = (":send", ":recv")


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
    tp: int = 1
    sp: int = 0  # sequence parallel inside the tensor-parallel group
    pp: int = 1
    schedule: str = "1f1b"  # 1f1b or gpipe
    layers_per_stage: tuple[int, ...] = ()  # blocks per pipeline stage, as the estimate split

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
    from archcost.validate.parallel import build_mesh, mesh_coordinates

    device = torch.device("cuda", rank % max(1, torch.cuda.device_count())) \
        if cfg.device == "cuda" else torch.device("cpu")
    if cfg.device == "cuda":
        torch.cuda.set_device(device)
        allocator = "the CUDA caching allocator (the steps' tensors are on the device)"
    else:
        from archcost.validate.allocator import keep_freed_memory

        allocator = keep_freed_memory()
    dtype = DTYPES[cfg.dtype]
    spec = load_model_file(cfg.model, cfg.overrides)
    mesh = build_mesh(cfg, device) if distributed else None
    coords = mesh_coordinates(mesh, rank, cfg.dp)
    torch.manual_seed(0)  # the same initial weights on every rank, as a checkpoint would give
    model = spec.build(cfg.mbs, cfg.seq_len).to(device=device, dtype=dtype)
    model.train()
    torch.manual_seed(1000 + coords["dp"])  # different data on every data-parallel replica
    batches = [_cast_inputs(spec.inputs(model, cfg.mbs, cfg.seq_len), dtype, device)
               for _ in range(cfg.micro_batches)]
    partial_grads: dict[str, int] = {}
    if cfg.tp > 1:
        from archcost.validate.parallel import apply_tp, reduce_partial_grads

        apply_tp(spec, model, mesh, bool(cfg.sp))

        def prepare() -> None:  # timed with the optimizer
            partial_grads["tp_partial_grad_bytes"] = reduce_partial_grads(model.parameters())
    else:
        prepare = None
    if cfg.pp > 1:  # the stage replaces the model: the other stages' blocks are freed
        model, opt, step = _pipeline(spec, model, cfg, mesh, batches, device, prepare)
    else:
        model, opt, step = _accumulation(spec, model, cfg, distributed, batches, device,
                                         prepare)

    losses: list[float | None] = [_mean(step(None)) for _ in range(cfg.warmup)]
    rows = []
    for _ in range(cfg.steps):
        if distributed:
            torch.distributed.barrier()
        timings = dict.fromkeys(("schedule", "optimizer") if cfg.pp > 1 else
                                ("forward", "backward", "optimizer"), 0.0)
        t0 = time.perf_counter()
        step_losses = step(timings)
        timings["step"] = time.perf_counter() - t0
        rows.append(timings)
        losses.append(_mean(step_losses))
    result: dict[str, Any] = {
        "rank": rank,
        "mesh": coords,
        "steps": [dict(r) for r in rows],
        "median": {k: statistics.median(r[k] for r in rows) for k in rows[0]},
        "spread": {k: (min(r[k] for r in rows), max(r[k] for r in rows)) for k in rows[0]},
        "params_local": sum(_local(p).numel() for p in model.parameters()),
        "losses": losses,  # mean over the micro-batches, warm-up steps first; None: no loss here
        "allocator": allocator,
        **partial_grads,  # tensor parallel: bytes of gradients all-reduced before the step
    }
    if distributed and cfg.profile_comm:
        result["comm"] = _profile_comm(step, dtype, cfg)
    if device.type == "cpu" and cfg.tp == 1 and cfg.pp == 1:  # one more step, every rank
        from archcost.validate.subnormal import count_subnormals

        result["subnormal"] = count_subnormals(lambda: step(None))
    if cfg.measure_memory:
        result["memory"] = _measure_memory(step, model, opt, device)
    return result


Step = Callable[[dict[str, float] | None], list[torch.Tensor]]


def _accumulation(spec, model: nn.Module, cfg: RunConfig, distributed: bool, batches,
                  device: torch.device, prepare: Callable[[], None] | None
                  ) -> tuple[nn.Module, torch.optim.Optimizer, Step]:
    """Micro-batches one after the other, gradients accumulated, then the optimizer."""
    call, opt, no_sync = _wrap(model, cfg, distributed)

    def forward(inputs):
        out = call(**inputs) if isinstance(inputs, dict) else call(*inputs)
        return out, spec.loss(out, inputs)

    def step(timings: dict[str, float] | None) -> list[torch.Tensor]:
        losses = []
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
                losses.append(loss.detach())
                del out, loss
            if timings is not None:
                timings["forward"] += t1 - t0
                timings["backward"] += t2 - t1
        _optimizer_step(opt, device, timings, prepare)
        return losses
    return model, opt, step


def _pipeline(spec, model: nn.Module, cfg: RunConfig, mesh, batches, device: torch.device,
              prepare: Callable[[], None] | None
              ) -> tuple[nn.Module, torch.optim.Optimizer, Step]:
    """The pipeline schedule over all micro-batches (forward and backward inside it), then the
    optimizer on this stage's parameters. The caller drops the rest of the model."""
    from archcost.validate.parallel import build_pipeline

    stage, run = build_pipeline(spec, model, cfg, mesh, device)
    opt = _optimizer(cfg.optimizer, stage.parameters())
    batch = torch.cat([b[0] for b in batches])  # the schedule splits it into the micro-batches

    def step(timings: dict[str, float] | None) -> list[torch.Tensor]:
        t0 = time.perf_counter()
        losses = run(batch)
        _sync(device)
        if timings is not None:
            timings["schedule"] += time.perf_counter() - t0
        _optimizer_step(opt, device, timings, prepare)
        return [loss.detach() for loss in losses]
    return stage, opt, step


def _optimizer_step(opt: torch.optim.Optimizer, device: torch.device,
                    timings: dict[str, float] | None, prepare: Callable[[], None] | None
                    ) -> None:
    t0 = time.perf_counter()
    if prepare is not None:
        prepare()
    opt.step()
    opt.zero_grad(set_to_none=True)
    _sync(device)
    if timings is not None:
        timings["optimizer"] += time.perf_counter() - t0


def _mean(losses: list[torch.Tensor]) -> float | None:
    return float(torch.stack([x.float() for x in losses]).mean()) if losses else None


def _comm_group(name: str, cfg: RunConfig) -> str | None:
    """The plan dimension a backend event belongs to: point-to-point is the pipeline's,
    collectives the tensor-parallel group's when tp > 1, else data parallel's."""
    if not name.startswith(("gloo:", "nccl:")):
        return None
    if any(m in name for m in _P2P_MARKS):
        return "pp"
    if any(m in name for m in _COLLECTIVE_MARKS):
        return "tp" if cfg.tp > 1 else "dp"
    return None


def _collective_kind(name: str) -> str | None:
    return next((k for k, marks in _COLLECTIVE_KINDS.items() if any(m in name for m in marks)),
                None)


def _replay(calls: list[tuple[str, int]], dtype: torch.dtype) -> float | None:
    """Seconds (slowest rank) of the same collectives, same sizes and order, run one at a time
    after a barrier on the whole group: what the cost model's collective formulas describe,
    without a step's overlap with compute or waiting for a peer still computing. The calls are
    replayed in one canonical order, since one at a time their order does not change the sum
    (a loaded host can make two ranks' profilers start overlapping calls in different orders).
    None when the ranks recorded different calls."""
    import torch.distributed as dist

    world = dist.get_world_size()
    calls = sorted(calls)
    counts: list[Any] = [None] * world
    dist.all_gather_object(counts, [(k, n) for k, n in calls])
    if any(c != counts[0] for c in counts):
        return None
    total = 0.0
    for kind, numel in calls:
        shard = max(1, numel // world)
        full = torch.zeros(shard * world, dtype=dtype)
        part = torch.zeros(shard, dtype=dtype)
        dist.barrier()
        t0 = time.perf_counter()
        if kind == "all_reduce":
            dist.all_reduce(full)
        elif kind == "all_gather":
            dist.all_gather_into_tensor(full, part)
        elif kind == "reduce_scatter":
            dist.reduce_scatter_tensor(part, full)
        else:
            dist.broadcast(full, 0)
        total += time.perf_counter() - t0
    slowest = torch.tensor([total], dtype=torch.float64)
    dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
    return float(slowest.item())


def _profile_comm(step: Step, dtype: torch.dtype, cfg: RunConfig) -> dict[str, Any]:
    """Communication time and bytes of one step from torch.profiler's host-side events of the
    backend (``gloo:*`` / ``nccl:*``), per plan dimension (``groups``: dp, tp, pp). Bytes follow
    the nccl-tests convention: the full buffer (an all-gather's output, a reduce-scatter's
    input), as the estimate counts them; a send or receive counts its tensor. Times are host
    time inside the backend's calls, waiting for the peers included; a group that spans every
    rank also gets ``replayed_seconds`` (:func:`_replay`)."""
    from torch.profiler import ProfilerActivity, profile

    group_size = {"dp": cfg.dp, "tp": cfg.tp, "pp": 2}
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        step(None)
    itemsize = torch.tensor([], dtype=dtype).element_size()
    by_name: dict[str, list[float]] = {}
    groups: dict[str, dict[str, float]] = {}
    calls: list[tuple[float, str, str, int]] = []  # (start, group, kind, full-buffer numel)
    for ev in sorted(prof.events(), key=lambda e: e.time_range.start):
        name = ev.name.lower()
        group = _comm_group(name, cfg)
        if group is None:
            continue
        shapes = [s for s in (ev.input_shapes or []) if s]
        n = 1
        for d in (shapes[0] if shapes else []):
            n *= d
        if "gather" in name:
            n *= group_size[group]  # the input is this rank's shard
        kind = _collective_kind(name)
        if group != "pp" and kind in _REPLAYED:
            calls.append((ev.time_range.start, group, kind, n))
        row = by_name.setdefault(ev.name, [0, 0.0, 0.0])
        row[0] += 1
        row[1] += ev.cpu_time_total / 1e6
        row[2] += n * itemsize
        g = groups.setdefault(group, {"calls": 0, "seconds": 0.0, "bytes": 0.0})
        g["calls"] += 1
        g["seconds"] += ev.cpu_time_total / 1e6
        g["bytes"] += float(n * itemsize)
        if group == "pp":
            key = "sent_bytes" if "send" in name else "received_bytes"
            g[key] = g.get(key, 0.0) + float(n * itemsize)
    world = torch.distributed.get_world_size()
    for group, g in groups.items():
        if group != "pp" and group_size[group] == world:
            replayed = _replay([(k, n) for _, grp, k, n in calls if grp == group], dtype)
            if replayed is not None:
                g["replayed_seconds"] = replayed
    return {"seconds": sum(r[1] for r in by_name.values()),
            "calls": int(sum(r[0] for r in by_name.values())),
            "bytes": float(sum(r[2] for r in by_name.values())),
            "by_collective": {k: {"calls": int(v[0]), "seconds": v[1], "bytes": v[2]}
                              for k, v in by_name.items()},
            "groups": groups}


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
