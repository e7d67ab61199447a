"""Speed of ``archcost sweep``: grid points per second for the Llama-3 70B study of
``docs/whatif-llama70b-1024.md`` (4 systems) and for a 10 x 10 grid (memory bandwidth x NVLink
bandwidth) on 1024 H100s; tracing (once per sweep) is reported apart.

    python benchmarks/sweep_speed.py [--out BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from _section import publish

ROOT = Path(__file__).resolve().parent.parent
STUDY = ["models/llama.py", "--set", "preset=70b", "-s", "8192", "--dtype", "bf16-mixed", "--gpus",
         "1024", "--gbs", "1024", "--vary", "cluster=dgx-h100-ndr,dgx-h100-ndr+h200,dgx-h100-ndr+b200,gb200-nvl72"]
STEPS = "0.5x,0.75x,1x,1.25x,1.5x,2x,2.5x,3x,3.5x,4x"
GRID = ["models/llama.py", "--set", "preset=70b", "-s", "8192", "--dtype", "bf16-mixed", "--gpus",
        "1024", "--gbs", "1024", "--hardware", "dgx-h100-ndr", "--vary", f"mem_bw={STEPS}", "--vary", f"link_bw={STEPS}"]


def run(args: list[str]) -> tuple[dict, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "sweep.json"
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "archcost", "sweep", *args, "--no-sensitivity",
                        "--json", "-o", str(out)], cwd=ROOT, check=True, capture_output=True)
        wall = time.perf_counter() - t0
        return json.loads(out.read_text()), wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    rows = []
    for name, argv in (("study: 4 systems", STUDY), ("10 x 10 grid: mem_bw x link_bw", GRID)):
        doc, wall = run(argv)
        rows.append((name, doc["grid_points"], doc["seconds"], doc["points_per_second"], wall))
    lines = [
        f"### sweep speed ({date.today().isoformat()}, {platform.machine()}, "
        f"{len(os.sched_getaffinity(0))} cores, Llama-3 70B, seq 8192, 1024 GPUs)",
        "",
        "Command: `python benchmarks/sweep_speed.py`",
        "",
        "| sweep | grid points | grid seconds | points/s | wall s (imports, tracing, grid) |",
        "|---|---:|---:|---:|---:|",
        *[f"| {n} | {p} | {s:.1f} | {r:.2f} | {w:.1f} |" for n, p, s, r, w in rows],
    ]
    publish(lines, args.out)


if __name__ == "__main__":
    main()
