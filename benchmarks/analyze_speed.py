"""Benchmark: wall time and peak RSS of ``archcost analyze`` on Llama-3 8B and 405B.

Reference measured in the same run: ``torch.utils.flop_counter.FlopCounterMode`` over a
meta-device forward + backward of the same model (what a user would otherwise run), each in its
own process so peak RSS is per command.

    python benchmarks/analyze_speed.py [--seq-len 8192] [--out BENCHMARKS-analyze.md]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

from _section import publish

ROOT = Path(__file__).resolve().parent.parent

REFERENCE = r"""
import sys, torch, importlib.util
from torch.utils.flop_counter import FlopCounterMode
spec = importlib.util.spec_from_file_location("m", sys.argv[1]); m = importlib.util.module_from_spec(spec)
spec.loader.exec_module(m)
with torch.device("meta"):
    model = m.build_model(preset=sys.argv[2])
    idx = torch.randint(0, 100, (1, int(sys.argv[3])))
    with FlopCounterMode(display=False) as fc:
        out = model(idx)
        m.loss(out, (idx,)).backward()
print(fc.get_total_flops())
"""


def run(cmd: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MiB of the child, stdout)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"benchmark command failed: {' '.join(cmd)}\n{proc.stderr}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # ru_maxrss of children is the max over all children so far: run the largest last or alone
    return wall, max(peak, before) / 1024, proc.stdout


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seq-len", type=int, default=8192)
    ap.add_argument("--out", default=None, help="append a Markdown table to this file")
    args = ap.parse_args()
    rows = []
    for preset in ("8b", "405b"):
        cmd = [sys.executable, "-m", "archcost", "analyze", "models/llama.py", "--set",
               f"preset={preset}", "--seq-len", str(args.seq_len), "--json"]
        wall, rss, out = run([sys.executable, str(ROOT / "benchmarks" / "_rss.py"), *cmd])
        doc = json.loads(out.split("\n", 1)[1])
        rss = float(out.split("\n", 1)[0])
        ref_cmd = [sys.executable, "-c", REFERENCE, "models/llama.py", preset, str(args.seq_len)]
        rwall, _, rout = run([sys.executable, str(ROOT / "benchmarks" / "_rss.py"), *ref_cmd])
        rrss = float(rout.split("\n", 1)[0])
        rows.append((preset, wall, rss, rwall, rrss, doc["totals"]["flops"]["total"],
                     int(rout.split("\n")[1])))
    lines = [
        f"### analyze speed ({date.today().isoformat()}, {platform.processor() or platform.machine()}, "
        f"{_cores()} cores, seq_len {args.seq_len})",
        "",
        f"Command: `python benchmarks/analyze_speed.py --seq-len {args.seq_len}`",
        "",
        "| model | archcost analyze wall s | peak RSS MiB | FlopCounterMode meta fwd+bwd wall s "
        "| peak RSS MiB | wall ratio | archcost FLOPs (step) | FlopCounterMode FLOPs (fwd+bwd) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for preset, wall, rss, rwall, rrss, fl, rfl in rows:
        lines.append(
            f"| llama {preset} | {wall:.2f} | {rss:.0f} | {rwall:.2f} | {rrss:.0f} | "
            f"{wall / rwall:.2f}x | {fl:.4g} | {rfl:.4g} |"
        )
    publish(lines, args.out)


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    main()
