"""Time, on this CUDA GPU, the GEMMs of the TensorRT-LLM rows' models at each row's shapes, in
fp8 (``torch._scaled_mm``, per-tensor scales, bf16 out) and in bf16, with the weights cold.

    python benchmarks/gemm_probe.py [--cases inference_cases.csv] [-o gemms.csv]
    python benchmarks/gemm_probe.py --price gemms.csv --hardware h200   (no GPU needed)

Each model's linears per GPU under the row's tensor parallelism (column-parallel QKV, MLP up and
gate and LM head; row-parallel attention output and MLP down), at m = each row's decode batch and
prefill tokens (batch x input length). Weights are cycled over copies that together pass four
times the L2, as a model's layers read theirs. Prints one CSV row per GEMM: model, tp, linear,
m, n, k, dtype, seconds (median of 5 timed batches), TFLOP/s. What it answers: whether a model's
shapes run at the rate other models' shapes of the same size do, and (``--price``) how the
engine's price of each GEMM on a profile compares: per model and m, one layer's linears (the LM
head apart), measured against priced.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def linears(row: dict) -> list[tuple[str, int, int]]:
    """(name, n, k) of one layer's linears on one GPU, then the LM head's."""
    h, a, g, f, v, tp = (int(row[x]) for x in ("hidden", "heads", "kv_heads", "ffn", "vocab",
                                                 "tp"))
    hd = h // a
    q, kv = a // tp * hd, max(1, g // tp) * hd
    out = [("qkv", q + 2 * kv, h), ("attn_out", h, q), ("mlp_up", f // tp, h),
           ("mlp_down", h, f // tp)]
    if row["model"].startswith("LLaMA"):
        out.insert(3, ("mlp_gate", f // tp, h))
    return out + [("lm_head", v // tp, h)]


def row_ms(row: dict) -> list[int]:
    b, i = int(row["batch"]), int(row["input_len"])
    return [b * i] if row["metric"] == "first_token_latency_ms" else [b, b * i]


def plan(rows: list[dict]) -> list[tuple[str, int, str, int, int, int]]:
    """Distinct (model, tp, linear, m, n, k) over the rows on GPUs with fp8 (H100)."""
    seen: dict[tuple, None] = {}
    for row in rows:
        if not row["gpu"].startswith("H100"):
            continue
        for m in row_ms(row):
            for name, n, k in linears(row):
                seen[(row["model"], int(row["tp"]), name, m, n, k)] = None
    return list(seen)


def time_gemm(torch, m: int, n: int, k: int, dtype: str, l2_bytes: int) -> float:
    dev = "cuda"
    fp8 = dtype == "fp8"
    wdt = torch.float8_e4m3fn if fp8 else torch.bfloat16
    esize = 1 if fp8 else 2
    copies = max(1, min(64, -(-4 * l2_bytes // (n * k * esize))))
    a = torch.randn(m, k, device=dev).to(wdt)
    ws = [torch.randn(n, k, device=dev).to(wdt) for _ in range(copies)]
    one = torch.ones((), device=dev)

    def call(w):
        if fp8:
            return torch._scaled_mm(a, w.t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16)
        return a @ w.t()

    for w in ws[:3]:
        call(w)
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    call(ws[0])
    end.record()
    torch.cuda.synchronize()
    reps = max(len(ws), min(200, int(0.02 / max(start.elapsed_time(end) * 1e-3, 1e-6))))
    times = []
    for _ in range(5):
        start.record()
        for r in range(reps):
            call(ws[r % len(ws)])
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) * 1e-3 / reps)
    return sorted(times)[2]


def priced(rows: list[dict], gpu) -> list[float]:
    """The engine's seconds for each measured GEMM (one ``aten.mm`` each) on ``gpu``."""
    import numpy as np

    from archcost.cost.compute import OpArrays, compute_times

    n = len(rows)
    dtypes = ["float8_e4m3fn" if r["dtype"] == "fp8" else "bfloat16" for r in rows]
    mnk = np.array([[float(r[x]) for x in ("m", "n", "k")] for r in rows]).reshape(-1, 3)
    size = np.array([1.0 if d.startswith("float8") else 2.0 for d in dtypes])
    m, nn, k = mnk.T
    arrays = OpArrays(node=np.arange(n), op=["aten.mm"] * n, curve_key=["aten.mm"] * n,
                      flops=2 * m * nn * k, nbytes=(m * k + nn * k) * size + 2 * m * nn,
                      count=np.ones(n), op_class=["matmul"] * n, dtype=dtypes,
                      phase=["forward"] * n, module=[""] * n, slices=np.zeros(n), mnk=mnk,
                      attn=np.zeros((n, 5)), launches=np.ones(n))
    return [float(s) for s in compute_times(arrays, gpu).seconds]


def price_table(path: str, hardware: str) -> list[str]:
    from archcost.hardware.profile import load_gpu

    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    sums: dict[tuple, list[float]] = {}
    for r, s in zip(rows, priced(rows, load_gpu(hardware))):
        if r["linear"] != "lm_head":
            a = sums.setdefault((r["dtype"], r["model"], int(r["m"])), [0.0, 0.0])
            a[0] += float(r["seconds"])
            a[1] += s
    out = [f"| dtype | model | m | measured (us) | priced on {hardware} (us) | priced / measured |",
           "|---|---|---:|---:|---:|---:|"]
    for (dtype, model, m), (meas, pred) in sorted(sums.items()):
        out.append(f"| {dtype} | {model} | {m} | {meas * 1e6:.1f} | {pred * 1e6:.1f} | "
                   f"{pred / meas:.2f} |")
    return out


def main() -> None:
    from inference_published import DEFAULT_CASES

    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", default=str(DEFAULT_CASES))
    ap.add_argument("-o", "--out", default=None)
    ap.add_argument("--price", default=None, help="a CSV this script wrote: price it")
    ap.add_argument("--hardware", default="h200", help="the profile --price prices on")
    args = ap.parse_args()
    if args.price:
        from archcost.errors import ArchcostError

        try:
            print("\n".join(price_table(args.price, args.hardware)))
        except OSError as exc:
            sys.exit(f"error: cannot read {args.price}: {exc.strerror}; give a CSV this "
                     "script wrote on a GPU")
        except (KeyError, ValueError) as exc:
            sys.exit(f"error: {args.price} is not a CSV this script wrote ({exc!r}); give "
                     "one it wrote on a GPU")
        except ArchcostError as exc:
            sys.exit(f"error: {exc}")
        return
    import torch

    if not torch.cuda.is_available():
        sys.exit("error: no CUDA device: run this on a GPU")
    with open(args.cases, newline="") as fh:
        rows = list(csv.DictReader(fh))
    props = torch.cuda.get_device_properties(0)
    l2 = getattr(props, "L2_cache_size", 50 * 2**20)
    fh = open(args.out, "w", newline="") if args.out else sys.stdout
    w = csv.writer(fh)
    w.writerow(["model", "tp", "linear", "m", "n", "k", "dtype", "seconds", "tflops"])
    for model, tp, name, m, n, k in plan(rows):
        for dtype in ("fp8", "bf16"):
            s = time_gemm(torch, m, n, k, dtype, l2)
            w.writerow([model, tp, name, m, n, k, dtype, f"{s:.6e}",
                        f"{2 * m * n * k / s / 1e12:.1f}"])
            fh.flush()
    print(f"# {props.name}, torch {torch.__version__}", file=sys.stderr)


if __name__ == "__main__":
    main()
