"""Fidelity on this machine: calibrate the CPU into a profile, then predict real timed training
steps of the bundled small models with it and report the error per model and component, and
the collective-time error of gloo over loopback (two processes, DDP).

    python benchmarks/cpu_validation.py [--out BENCHMARKS.md] [--steps 5]

Everything runs in one go so the profile and the runs see the same machine state. Target of
the issue: mean absolute step-time error <= 15% on a noisy 2-core machine.
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

# small enough to run for real on 2 cores, large enough that kernels, not Python, dominate
MODELS = [
    ("seed_mlp", ["models/seed_mlp.py", "-s", "1", "--plan", "mbs=64,gbs=64"]),
    ("gpt2", ["models/gpt2.py", "--set", "layers=4", "--set", "hidden=256", "--set", "heads=8",
              "--set", "vocab=4096", "-s", "256", "--plan", "mbs=8,gbs=8"]),
    ("llama", ["models/llama.py", "--set", "preset=tiny", "--set", "hidden=256", "--set",
               "heads=8", "--set", "kv_heads=4", "--set", "ffn=704", "--set", "layers=4",
               "--set", "vocab=4096", "-s", "256", "--plan", "mbs=8,gbs=8"]),
    ("moe", ["models/moe.py", "--set", "preset=tiny", "-s", "256", "--plan", "mbs=8,gbs=8"]),
    ("vit", ["models/vit.py", "--set", "image_size=64", "--set", "patch=8", "--set", "layers=4",
             "--set", "hidden=256", "--set", "heads=8", "--set", "ffn=1024", "-s", "1",
             "--plan", "mbs=16,gbs=16"]),
    ("bert", ["models/bert.py", "--set", "layers=4", "--set", "hidden=256", "--set", "heads=8",
              "--set", "ffn=1024", "--set", "vocab=4096", "-s", "128", "--plan",
              "mbs=8,gbs=8"]),
    ("resnet", ["models/resnet.py", "--set", "width=16", "--set", "image_size=64", "-s", "1",
                "--plan", "mbs=16,gbs=16"]),
]


def _archcost(*args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "archcost", *args, "--json"], cwd=ROOT,
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"archcost {' '.join(args)} failed: {out.stderr.strip()[-400:]}")
    return json.loads(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None)
    ap.add_argument("--steps", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        profile = Path(tmp) / "this-machine.yaml"
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "archcost", "calibrate", "--device", "cpu",
                        "--nproc", "2", "-o", str(profile)], cwd=ROOT, check=True,
                       capture_output=True)
        calib_s = time.perf_counter() - t0
        cluster = profile.with_name(f"{profile.stem}.cluster.yaml")
        rows = []
        for name, argv in MODELS:
            doc = _archcost("validate", *argv, "--hardware", str(profile), "--steps",
                            str(args.steps), "--warmup", "2")
            comps = {c["name"]: c for c in doc["validation"]["components"]}
            rows.append((name, comps))
            print(name, {k: None if v["error"] is None else round(100 * v["error"], 1)
                         for k, v in comps.items()}, flush=True)
        ddp = _archcost("validate", *MODELS[1][1][:-2], "--plan", "dp=2,mbs=8,gbs=16",
                        "--nproc", "2", "--hardware", str(cluster), "--steps", str(args.steps),
                        "--warmup", "2")
        dcomps = {c["name"]: c for c in ddp["validation"]["components"]}
    errs = [abs(c["step_time"]["error"]) for _, c in rows]
    lines = [
        f"### CPU fidelity with a profile calibrated in the same run ({date.today().isoformat()}, "
        f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores)",
        "",
        f"Command: `python benchmarks/cpu_validation.py --steps {args.steps}` (calibration "
        f"{calib_s:.0f} s; medians of {args.steps} timed steps after 2 warm-up steps)",
        "",
        "| model | step predicted | step measured | step error | forward | backward | optimizer "
        "| peak memory |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def e(c):
        return "-" if c is None or c["error"] is None else f"{100 * c['error']:+.1f}%"

    for name, c in rows:
        s = c["step_time"]
        lines.append(f"| {name} | {1e3 * s['predicted']:.1f} ms | {1e3 * s['measured']:.1f} ms "
                     f"| {e(s)} | {e(c.get('forward'))} | {e(c.get('backward'))} | "
                     f"{e(c.get('optimizer'))} | {e(c.get('peak_memory'))} |")
    lines += ["", f"Step-time mean absolute error **{100 * sum(errs) / len(errs):.1f}%**, max "
              f"{100 * max(errs):.1f}% over {len(errs)} models (target: mean <= 15%).", "",
              "Collectives, gloo over loopback (GPT above, 2 processes, DDP): predicted "
              f"{1e3 * dcomps['dp_comm_time']['predicted']:.2f} ms against measured "
              f"{1e3 * dcomps['dp_comm_time']['measured']:.2f} ms per step "
              f"({e(dcomps['dp_comm_time'])}); bytes {e(dcomps['dp_comm_bytes'])}; step "
              f"{e(dcomps['step_time'])}."]
    publish(lines, args.out)


if __name__ == "__main__":
    main()
