"""Time the calibration's forward ops at sizes between the op grid's, and price them on a
profile calibrated on this machine: each op's curve read straight across between its points,
and read as the engine does (``EfficiencyCurve.capped_by``: no faster than the memory curve
between them).

    archcost calibrate --device cpu -o this-machine.yaml
    python benchmarks/op_curve_between.py --profile this-machine.yaml [--threads 1]

The op grid times each op at 1 Ki, 16 Ki, 128 Ki, 1 Mi and 8 Mi elements (8x apart); a core's
cache edge (an L2 of 1-2 MiB) falls between two of them. The sizes here are their geometric
midpoints. Each op is made and timed as the calibration makes and times it (``opbench``, same
callables, same bytes by the tracer's rule, same repetitions). Prints one row per op and size:
bytes, measured microseconds, each reading's price and its ratio to measured; then, per
reading, the median and the largest |log(price / measured)| over all rows.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MIDPOINTS = (1 << 12, 46341, 370728, 2965821)  # 2^12, 2^15.5, 2^18.5, 2^21.5 elements


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", required=True,
                    help="a profile `archcost calibrate --device cpu` wrote on this machine")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: as set)")
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    from archcost.cost.compute import memory_curve_index, roofline_seconds
    from archcost.errors import ArchcostError
    from archcost.hardware.calibrate import _sync_for, _time_calls, grid_for
    from archcost.hardware.fit import spread
    from archcost.hardware.opbench import COLD, _made, _ops_table, _size_of
    from archcost.hardware.profile import load_gpu

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        gpu = load_gpu(args.profile)
    except ArchcostError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    ops = [op for op in sorted(gpu.op_efficiency) if op not in COLD]
    if not ops:
        print(f"error: {args.profile} has no per-op curves (op_efficiency); calibrate this "
              f"machine with `archcost calibrate --device cpu -o FILE`", file=sys.stderr)
        return 2
    grid = grid_for("cpu", quick=False)
    table = _ops_table(torch)
    bw, launch = gpu.mem_bw_bytes_per_s, gpu.kernel_launch_s  # what the curves were fitted less
    rows = []
    for numel in MIDPOINTS:
        made = [(op, _made(table[op], numel, "cpu")[0]) for op in ops if op in table]
        sizes = [_size_of(fn, op, "nbytes") for op, fn in made]
        timed = _time_calls([fn for _, fn in made], _sync_for("cpu"), grid)
        nbytes = np.array(sizes, dtype=np.float64)
        engine, _ = roofline_seconds(
            gpu, np.zeros(len(made)), nbytes, np.ones(len(made)), np.full(len(made), -1),
            memory_curve_index(gpu, [op for op, _ in made]), np.full(len(made), launch))
        for (op, _), b, t, capped in zip(made, sizes, timed, engine):
            if t.samples is None:
                continue
            straight = b / (bw * gpu.op_efficiency[op].at(b)) + launch
            rows.append((op, numel, b, spread(t.samples).median, straight, float(capped)))
    print("op,numel,bytes,measured_us,straight_us,straight_ratio,capped_us,capped_ratio")
    for op, numel, b, meas, straight, capped in rows:
        print(f"{op},{numel},{b},{meas * 1e6:.2f},{straight * 1e6:.2f},{straight / meas:.3f},"
              f"{capped * 1e6:.2f},{capped / meas:.3f}")
    for name, col in (("straight", 4), ("capped", 5)):
        err = sorted(abs(math.log(r[col] / r[3])) for r in rows)
        print(f"# {name}: median |log(price / measured)| {err[len(err) // 2]:.3f}, "
              f"max {err[-1]:.3f} over {len(err)} rows")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
