"""One rank of the collective benchmark of ``archcost calibrate``, started by the standard launcher.

    python -m torch.distributed.run --standalone --nproc-per-node N \
        -m archcost.hardware.collective_worker --out RESULT.json --device cpu \
        --sizes 8,1024,1048576 --warmup 2 --reps 5 --pg-timeout 120

Measures all-reduce, all-gather, reduce-scatter (``torch.distributed`` on gloo for cpu, nccl for
cuda) and a send/recv ping-pong between ranks 0 and 1 over float32 buffers of the given sizes
(bytes of the full buffer, nccl-tests' convention: all-gather's output, reduce-scatter's
input). Per point: warm-up calls, then repetitions, each a barrier followed by a timed batch of
calls (enough to last ``--min-rep`` seconds, agreed by all ranks), the per-call time of a
repetition being the slowest rank's (an all-reduce MAX). Send/recv times a round trip and
halves it. Rank 0 writes the median, p10 and p90 per point as JSON and prints
``archcost-progress DONE TOTAL`` lines. A rank that fails writes ``RESULT.json.rank<R>.error``
with one line and exits non-zero (the launcher then stops the others).
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

OPS = ("all_reduce", "all_gather", "reduce_scatter", "send_recv")


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="archcost.hardware.collective_worker")
    p.add_argument("--out", required=True)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--sizes", required=True, help="comma-separated buffer sizes in bytes")
    p.add_argument("--ops", default=",".join(OPS))
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--min-rep", type=float, default=2e-3, help="seconds a repetition lasts at least")
    p.add_argument("--max-iters", type=int, default=50)
    p.add_argument("--pg-timeout", type=float, default=120.0)
    return p.parse_args(argv)


def _single(dist, name: str, legacy: str):
    """``dist.all_gather_single`` (torch >= 2.13) or its older name."""
    return getattr(dist, name, None) or getattr(dist, legacy)


def _runner(op: str, numel: int, rank: int, world: int, device, dist, torch) -> Callable[[], None]:
    """One call of ``op`` on a buffer of ``numel`` float32 elements (the full buffer)."""
    if op == "all_reduce":
        buf = torch.ones(numel, device=device)
        return lambda: dist.all_reduce(buf)
    if op == "all_gather":
        out, inp = torch.empty(numel, device=device), torch.ones(numel // world, device=device)
        fn = _single(dist, "all_gather_single", "all_gather_into_tensor")
        return lambda: fn(out, inp)
    if op == "reduce_scatter":
        out, inp = torch.empty(numel // world, device=device), torch.ones(numel, device=device)
        fn = _single(dist, "reduce_scatter_single", "reduce_scatter_tensor")
        return lambda: fn(out, inp)
    if op == "send_recv":  # ping-pong between ranks 0 and 1; one call = a round trip
        buf = torch.ones(numel, device=device)
        if rank == 0:
            return lambda: (dist.send(buf, 1), dist.recv(buf, 1))
        if rank == 1:
            return lambda: (dist.recv(buf, 0), dist.send(buf, 0))
        return lambda: None
    raise ValueError(f"unknown collective {op!r}")


def _slowest(values: list[float], device, dist, torch) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.cpu().tolist()


def _time_point(run: Callable[[], None], sync: Callable[[], None], args, device, dist,
                torch) -> tuple[list[float], int]:
    """Per-call seconds of each repetition (slowest rank), and the calls per repetition."""
    for _ in range(args.warmup):
        run()
    sync()
    dist.barrier()
    t0 = time.perf_counter()
    run()
    sync()
    once = _slowest([time.perf_counter() - t0], device, dist, torch)[0]
    iters = max(1, min(args.max_iters, math.ceil(args.min_rep / max(once, 1e-9))))
    samples = []
    for _ in range(args.reps):
        dist.barrier()
        t0 = time.perf_counter()
        for _ in range(iters):
            run()
        sync()
        samples.append((time.perf_counter() - t0) / iters)
    return _slowest(samples, device, dist, torch), iters


def measure(args: argparse.Namespace, rank: int, world: int) -> dict[str, Any]:
    import torch
    import torch.distributed as dist

    from archcost.hardware.fit import spread

    if args.device == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
        sync = torch.cuda.synchronize
    else:
        device, sync = torch.device("cpu"), (lambda: None)
    timeout = datetime.timedelta(seconds=args.pg_timeout)
    if args.device == "cuda":  # bound to this rank's GPU: barriers need no guess
        dist.init_process_group("nccl", timeout=timeout, device_id=device)
    else:
        dist.init_process_group("gloo", timeout=timeout)
    try:
        ops = [op for op in args.ops.split(",") if op]
        sizes = [int(s) for s in args.sizes.split(",") if s]
        total, done = len(ops) * len(sizes), 0
        result: dict[str, Any] = {"backend": dist.get_backend(), "world_size": world, "ops": {}}
        for op in ops:
            rows = []
            for size in sizes:
                numel = max(world, round(size / 4 / world) * world)  # divisible by the ranks
                samples, iters = _time_point(_runner(op, numel, rank, world, device, dist, torch),
                                             sync, args, device, dist, torch)
                if op == "send_recv":
                    samples = [s / 2 for s in samples]  # one way of the round trip
                sp = spread(samples)
                rows.append({"bytes": numel * 4, "median_s": sp.median, "p10_s": sp.p10,
                             "p90_s": sp.p90, "reps": sp.reps, "iters": iters})
                done += 1
                if rank == 0:
                    print(f"archcost-progress {done} {total}", flush=True)
            result["ops"][op] = rows
        dist.barrier()
        return result
    finally:
        dist.destroy_process_group()


def main(argv: list[str]) -> int:
    args = _parse(argv)
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    out = Path(args.out)
    try:
        if world < 2:
            raise ValueError("the collective benchmark needs at least 2 ranks")
        result = measure(args, rank, world)
        if rank == 0:
            from archcost.io import write_json

            write_json(out, result)
        return 0
    except Exception as exc:  # this rank's failure in one line; the launcher stops the others
        first = (str(exc).strip().splitlines() or [""])[0]
        Path(f"{out}.rank{rank}.error").write_text(f"{type(exc).__name__}: {first}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
