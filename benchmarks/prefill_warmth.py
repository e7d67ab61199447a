"""Time a bundled model's prefill warm, inside a generation and after its caches went cold, and
price it on a profile calibrated on this machine: how much of a CPU first-token latency is the
state of the caches the prefill starts from, which the engine (forward ops priced on operands
in cache, as the calibration times them) does not see.

    archcost calibrate --device cpu -o this-machine.yaml
    python benchmarks/prefill_warmth.py --profile this-machine.yaml [--threads 1]

For each model and batch of ``cpu_infer_validation.py`` (input 128 tokens, cache for 160), the
median over ``--reps`` prefills (the forward over the prompt and the greedy pick, as
``archcost validate --infer`` times a first token) of each of:

- ``back-to-back``: one prefill right after another (every buffer last touched a prefill ago);
- ``in a generation``: the first token of a greedy generation of 32 tokens, the one before it
  complete (``validate --infer``'s protocol: 31 decode steps between two prefills);
- ``after a 25 ms spin``: a prefill after 25 ms of a Python loop that touches no memory;
- ``after 2x LLC written``: a prefill after writing a buffer twice the last-level cache (sysfs;
  512 MiB where none is given): every operand from memory.

Prints one row per point with the price and each time's ratio to it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from cpu_infer_validation import MODELS, POINTS  # noqa: E402

INPUT, OUTPUT = 128, 32


def _overrides(argv: list[str]) -> tuple[str, dict]:
    """A model's file and its ``--set`` values, parsed as ``archcost infer`` parses them."""
    from archcost.loader import parse_overrides

    return argv[0], parse_overrides([argv[i + 1] for i, a in enumerate(argv) if a == "--set"])


def _price(argv: list[str], profile: str, batch: int) -> float:
    import json
    import subprocess

    out = subprocess.run(["archcost", "infer", *argv, "--hardware", profile, "-b", str(batch),
                          "-i", str(INPUT), "-n", str(OUTPUT), "--dtype", "fp32", "--json"],
                         capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"error: archcost infer {argv[0]} on {profile}: "
                         f"{(out.stderr.strip().splitlines() or ['failed'])[-1]}")
    return json.loads(out.stdout)["inference"]["ttft_s"]


def _times(path: str, overrides: dict, batch: int, reps: int, llc_bytes: int) -> dict[str, float]:
    from types import SimpleNamespace

    import torch

    from archcost.loader import load_model_file
    from archcost.validate.generate import _generate
    from archcost.validate.generate import prefill as forward

    spec = load_model_file(path, overrides)
    torch.manual_seed(0)
    model = spec.build(batch, INPUT + OUTPUT).eval()
    prompt = spec.inputs(model, batch, INPUT)
    cfg = SimpleNamespace(batch=batch, input_len=INPUT, output_len=OUTPUT)
    flush = torch.ones(2 * llc_bytes // 4)
    device = torch.device("cpu")

    def prefill(before=None) -> float:
        cache = spec.kv_cache(model, batch, INPUT + OUTPUT)
        if before is not None:
            before()
        t0 = time.perf_counter()
        forward(spec, model, prompt, cache).argmax(-1)
        return time.perf_counter() - t0

    def spin() -> None:
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 0.025:
            pass

    def median(xs: list[float]) -> float:
        return sorted(xs)[len(xs) // 2]

    with torch.inference_mode():
        prefill()
        _generate(spec, model, prompt, cfg, device)
        return {
            "back-to-back": median([prefill() for _ in range(reps)]),
            "in a generation": median([_generate(spec, model, prompt, cfg, device)[0]
                                       for _ in range(reps)]),
            "after a 25 ms spin": median([prefill(spin) for _ in range(reps)]),
            "after 2x LLC written": median([prefill(lambda: flush.add_(1.0))
                                            for _ in range(reps)]),
        }


def main(argv: list[str] | None = None) -> int:
    from archcost.hardware.calibrate import _last_level_cache

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", required=True,
                    help="a profile `archcost calibrate --device cpu` wrote on this machine")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: as set)")
    ap.add_argument("--reps", type=int, default=7, help="prefills timed per way (median)")
    ap.add_argument("--llc-mib", type=float, default=0.0,
                    help="last-level cache in MiB (0: from sysfs, else 512)")
    args = ap.parse_args(argv)
    if not Path(args.profile).is_file():
        print(f"error: no profile at {args.profile}; write one with `archcost calibrate "
              f"--device cpu -o FILE`", file=sys.stderr)
        return 2
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    llc = int(args.llc_mib * 2**20 or _last_level_cache("cpu")[0] or 512 * 2**20)
    ways = ("back-to-back", "in a generation", "after a 25 ms spin", "after 2x LLC written")
    print("| model | batch | priced | " + " | ".join(ways) + " |")
    print("|---|---:|---:|" + "---:|" * len(ways))
    for name, model_argv in MODELS:
        path, overrides = _overrides(model_argv)
        for batch, _, _ in POINTS:
            priced = _price(model_argv, args.profile, batch)
            times = _times(str(ROOT / path), overrides, batch, args.reps, llc)
            cells = [f"{times[w] * 1e3:.2f} ms ({times[w] / priced:.2f}x)" for w in ways]
            print(f"| {name} | {batch} | {priced * 1e3:.2f} ms | " + " | ".join(cells) + " |",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
