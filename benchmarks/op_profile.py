"""Where a training step's time goes, op by op: measured (``torch.profiler``: the host's own
time per aten op and, on CUDA, its kernels' time) against the time the cost engine prices each
op at on a profile. For finding which ops a validation miss comes from.

    python benchmarks/op_profile.py models/gpt2.py -s 1024 --mbs 8 --dtype bf16 --device cuda \\
        --hardware gpu.yaml [--set KEY=VALUE ...] [--steps 3] [-o op-gpt2.md]

One process, plain AdamW (``foreach=False``, as ``archcost validate`` steps it). Measured
figures are per step: the profiled steps' totals over their number, after two warm-up steps.
"host us": the op's own time on the host (self CPU time; composite ops such as ``aten::linear``
keep only their own dispatch); "device us": its kernels' time (CUDA only); "predicted us": the
engine's time for the op (roofline, overheads, floors) summed over the step's occurrences, all
phases. Op names differ where the trace records what a composite op dispatches (``aten.addmm``
for ``aten::linear``) or where CPU and CUDA kernels differ (flash attention).
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def predicted(model: str, overrides: dict, seq: int, mbs: int, dtype: str, hardware: str,
              device: str) -> dict[str, list[float]]:
    """{aten op: [seconds per step, occurrences per step]} as the engine prices them."""
    from archcost.cost.compute import compute_times, lower, runtime_attention_kernel
    from archcost.loader import load_model_file
    from archcost.runtime import load_runtime
    from archcost.trace import trace_model
    from archcost.trace.precision import parse_precision
    from archcost.validate.compare import validation_cluster

    spec = load_model_file(model, overrides)
    gpu = validation_cluster(hardware, device, 1).gpu
    traced = trace_model(spec, mbs, seq, parse_precision(dtype), "adamw")
    arrays = lower(traced.graph)
    res = compute_times(arrays, gpu, runtime_attention_kernel(gpu, load_runtime("eager")))
    out: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0])
    for op, s, n in zip(arrays.op, res.seconds, arrays.count):
        out[op.replace("aten.", "aten::")][0] += float(s)
        out[op.replace("aten.", "aten::")][1] += float(n)
    return out


def measured(model: str, overrides: dict, seq: int, mbs: int, dtype: str, device: str,
             steps: int) -> dict[str, list[float]]:
    """{aten op: [host seconds, device seconds, calls], per step} from torch.profiler."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from archcost.loader import load_model_file
    from archcost.validate.step import DTYPES, RunConfig, _accumulation, _cast_inputs

    cfg = RunConfig(model=model, overrides=overrides, seq_len=seq, mbs=mbs, gbs=mbs, dp=1,
                    zero=0, dtype=dtype, optimizer="adamw", steps=steps, warmup=2,
                    device=device)
    dev = torch.device(device)
    spec = load_model_file(model, overrides)
    torch.manual_seed(0)
    net = spec.build(mbs, seq).to(device=dev, dtype=DTYPES[dtype])
    net.train()
    batches = [_cast_inputs(spec.inputs(net, mbs, seq), DTYPES[dtype], dev)]
    _, _, step = _accumulation(spec, net, cfg, False, batches, dev, None)
    for _ in range(2):
        step(None)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step(None)
        if device == "cuda":
            torch.cuda.synchronize()
    out: dict[str, list[float]] = {}
    for e in prof.key_averages():
        if not e.key.startswith("aten::"):
            continue
        dev_us = getattr(e, "self_device_time_total", None)
        if dev_us is None:
            dev_us = getattr(e, "self_cuda_time_total", 0.0)
        out[e.key] = [e.self_cpu_time_total * 1e-6 / steps, float(dev_us or 0.0) * 1e-6 / steps,
                      e.count / steps]
    return out


def table(pred: dict, meas: dict, top: int) -> list[str]:
    keys = set(pred) | set(meas)

    def weight(k: str) -> float:
        m = meas.get(k, [0.0, 0.0, 0.0])
        return max(pred.get(k, [0.0])[0], m[0], m[1])

    lines = ["| op | calls | host us | device us | predicted us | predicted calls |",
             "|---|---:|---:|---:|---:|---:|"]
    for k in sorted(keys, key=weight, reverse=True)[:top]:
        m, p = meas.get(k, [0.0, 0.0, 0.0]), pred.get(k, [0.0, 0.0])
        lines.append(f"| {k} | {m[2]:.0f} | {m[0] * 1e6:.1f} | {m[1] * 1e6:.1f} | "
                     f"{p[0] * 1e6:.1f} | {p[1]:.0f} |")
    host = sum(m[0] for m in meas.values())
    device = sum(m[1] for m in meas.values())
    lines.append(f"\nper step: host {host * 1e3:.2f} ms (own time of every aten op), device "
                 f"{device * 1e3:.2f} ms (every kernel), predicted {sum(p[0] for p in pred.values()) * 1e3:.2f} ms")
    return lines


def main(argv: list[str] | None = None) -> int:
    from archcost.loader import parse_overrides

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("-s", "--seq-len", type=int, required=True)
    ap.add_argument("--mbs", type=int, required=True)
    ap.add_argument("--dtype", default="fp32", choices=("fp32", "bf16", "fp16"))
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--hardware", required=True)
    ap.add_argument("--set", action="append", default=[], dest="sets")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("-o", "--output", type=Path)
    args = ap.parse_args(argv)
    overrides = parse_overrides(args.sets)
    pred = predicted(args.model, overrides, args.seq_len, args.mbs, args.dtype, args.hardware,
                     args.device)
    meas = measured(args.model, overrides, args.seq_len, args.mbs, args.dtype, args.device,
                    args.steps)
    text = "\n".join([f"{args.model} {args.sets} seq {args.seq_len} mbs {args.mbs} "
                      f"{args.dtype} on {args.device}, priced on {args.hardware}", ""]
                     + table(pred, meas, args.top)) + "\n"
    if args.output:
        args.output.write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
