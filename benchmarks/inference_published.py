"""Inference fidelity: predict every published TensorRT-LLM measurement with ``archcost infer``.

``inference_cases.csv`` holds 47 rows from TensorRT-LLM v0.5.0 ``docs/source/performance.md``:
static-batching throughput (output tokens/s, all GPUs of the run) at a batch, tensor
parallelism, input and output length, and first-token latency at batch 1, on H100 SXM (FP8
weights, activations and KV cache), L40S (FP8) and A100 SXM 80GB (FP16). Each row's model is
built from the dimensions the row gives, with the bundled model file of its family:

- GPT-J 6B: ``models/gptj.py`` (parallel attention and MLP, partial rotary, the row's dims);
- LLaMA 7B / 70B: ``models/llama.py`` with the row's dims (LLaMA 1/2: RoPE theta 10,000;
  70B's 8 KV heads grouped, TensorRT-LLM's GQA kernel: ``gqa=native``, no copies);
- Falcon 180B: ``models/falcon.py`` (parallel attention and MLP, 8 KV heads).

Rows beyond these are read the same way: another family as a LLaMA-style decoder of its dims,
a mixture of experts (Mixtral, or a row with ``experts`` and ``top_k``) as transformers' Mixtral
of its dims (its grouped GEMMs read the experts the tokens reach), a GPU by its name (a cluster
for tp > 1: ``dgx-h200``, ``l40s-pcie``), weight-only int8/int4, throughput per GPU
(``output_tokens_per_s_per_gpu``), a release from v0.10 on on the current ``tensorrt-llm``
runtime, v0.8 and v0.9 on ``tensorrt-llm-0.8`` (opt-in XQA for one GQA shape), earlier ones on
``tensorrt-llm-0.5``.

Hardware: H100 runs on ``dgx-h100-ndr`` (NVLink within the node for tp <= 8), A100 on
``dgx-a100-hdr``, L40S on its GPU profile (tp 1). Runtime: ``tensorrt-llm-0.5``, the release
measured (what its engines fuse, read from its sources; its generation attention loads a
grouped KV head once per query head: it predates the XQA kernel). Throughput is the row's batch x
output length over the run's end-to-end latency, prefill included (gptSessionBenchmark's
definition: one generation session of the whole batch); first-token latency is the prefill of
one sequence with its first token (output length 1).

    python benchmarks/inference_published.py [--cases PATH] [--out BENCHMARKS.md] [--only ID,...]
        [--cache DIR]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import pickle
import platform
import sys
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from _section import publish

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_CASES = next((p for p in (ROOT.parent / "shared" / "data" / "inference_cases.csv",
                                  ROOT.parent.parent / "shared" / "data" / "inference_cases.csv")
                      if p.is_file()), ROOT.parent / "shared" / "data" / "inference_cases.csv")
TARGET = {"mean": 0.12, "max": 0.30}  # issue 16's bar

_GPUS = {"H100-SXM-80GB": ("dgx-h100-ndr", "H100 SXM 80GB, DGX H100"),
         "A100-SXM-80GB": ("dgx-a100-hdr", "A100 SXM 80GB, DGX A100")}
# a row's GPU not listed above: the first profile whose name its words start (cluster profiles
# for tp > 1 where one holds that GPU)
_GPU_WORDS = (("H100-SXM", "dgx-h100-ndr", "h100-sxm"), ("H100-PCIE", None, "h100-pcie"),
              ("H200", "dgx-h200", "h200"), ("A100-SXM-40", None, "a100-sxm-40gb"),
              ("A100", "dgx-a100-hdr", "a100-sxm-80gb"), ("L40S", "l40s-pcie", "l40s"),
              ("L4", None, "l4"), ("GB200", "gb200-nvl72", "gb200"), ("B200", None, "b200"),
              ("MI300X", "mi300x-ib", "mi300x"))


def _hardware(gpu: str, tp: int) -> str:
    """The profile a row's GPU runs on: ``_GPUS``, else by the GPU's name (a cluster for tp >
    1 where the bundled ones hold that GPU; "" where none does)."""
    if gpu in _GPUS:
        return _GPUS[gpu][0]
    name = gpu.upper().replace(" ", "-")
    for words, cluster, single in _GPU_WORDS:
        if name.startswith(words):
            return (cluster or "") if tp > 1 else single
    return ""


@dataclass
class Case:
    id: str
    family: str
    model: str  # bundled model file
    sets: dict
    gpu: str  # the CSV's GPU
    hardware: str  # profile name
    tp: int
    batch: int
    input_len: int
    output_len: int
    precision: str  # the CSV's
    metric: str
    value: float
    assumptions: list[str] = field(default_factory=list)
    source: str = "TensorRT-LLM v0.5"


def _model(row: dict) -> tuple[str, dict, list[str]]:
    """The model file, its settings and the assumptions for a row's model, from its family
    name and the dims the row gives; a family without a bundled file of its own is built as
    a LLaMA-style decoder of those dims (the nearest layout: pre-norm, RoPE, SwiGLU, grouped
    KV heads), and a mixture of experts (a row with ``experts`` and ``top_k``, or a Mixtral)
    as transformers' Mixtral of those dims, whose grouped GEMM reads the experts its tokens
    reach, as TensorRT-LLM's MoE kernels do."""
    name = row["model"]
    dims = {k: int(row[k]) for k in ("layers", "hidden", "heads", "kv_heads", "ffn", "vocab")}
    experts = int(row.get("experts") or 0) or (8 if name.startswith("Mixtral") else 0)
    top_k = int(row.get("top_k") or 0) or (2 if experts else 0)
    if experts:
        return "hf:mixtral-8x7b", {
            "num_hidden_layers": dims["layers"], "hidden_size": dims["hidden"],
            "num_attention_heads": dims["heads"], "num_key_value_heads": dims["kv_heads"],
            "intermediate_size": dims["ffn"], "vocab_size": dims["vocab"],
            "num_local_experts": experts, "num_experts_per_tok": top_k}, [
            f"{name}: transformers' Mixtral layout with the row's dims, {experts} experts, top "
            f"{top_k}, balanced routing; its experts kept 16-bit under fp8"]
    if name.startswith("GPT-J"):
        return "gptj.py", {"layers": dims["layers"], "hidden": dims["hidden"],
                           "heads": dims["heads"], "vocab": dims["vocab"]}, [
            "GPT-J: rotary on 64 of each head's 256 dims, ffn 4h (the row's 16384)"]
    if name.startswith("LLaMA"):
        return "llama.py", {**dims, "rope_theta": 10000.0, "gqa": "native"}, [
            "LLaMA 1/2 dims as the row gives; RoPE theta 10,000; GQA heads fed to one kernel "
            "(gqa=native)"]
    if name.startswith("Falcon"):
        return "falcon.py", {**dims}, ["Falcon: parallel attention and MLP, GELU ffn, the row's "
                                       "dims"]
    return "llama.py", {**dims, "gqa": "native"}, [
        f"{name}: no bundled file of its own; a LLaMA-style decoder of the row's dims (RoPE "
        "theta 500,000, GQA heads fed to one kernel)"]


def _precision(text: str) -> tuple[str, str | None]:
    """(--dtype, --weights) of a row's precision: fp8 (weights, activations and cache), a
    weight-only int8/int4 over fp16, else fp16/bf16."""
    low = text.lower()
    if low.startswith("fp8"):
        return "fp8", None
    for bits in ("int4", "int8", "w4", "w8"):
        if bits in low:
            return ("bf16" if "bf16" in low else "fp16"), ("int4" if "4" in bits else "int8")
    return ("bf16" if low.startswith("bf16") else "fp16"), None


def load_cases(path: str) -> list[Case]:
    out = []
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            model, sets, notes = _model(row)
            hw = _hardware(row["gpu"], int(row["tp"]))
            out.append(Case(id=row["id"], family=row["model"], model=model, sets=sets,
                            gpu=row["gpu"], hardware=hw, tp=int(row["tp"]),
                            batch=int(row["batch"]), input_len=int(row["input_len"]),
                            output_len=int(row["output_len"]), precision=row["precision"],
                            metric=row["metric"], value=float(row["value"]),
                            assumptions=notes, source=row.get("source") or ""))
    return out


def pending_reason(case: Case) -> str:
    from archcost.hardware.profile import list_profiles

    if not case.model.startswith("hf:") and not (ROOT / "models" / case.model).is_file():
        return f"models/{case.model} is not bundled yet"
    if case.hardware not in list_profiles()["gpus"] + list_profiles()["clusters"]:
        return f"no profile for {case.gpu} at tp {case.tp}"
    return ""


def runtime_name(source: str = "v0.5") -> str:
    """The runtime profile of a row's release (its ``vMAJOR.MINOR``): ``tensorrt-llm-0.5``
    before v0.8, the releases whose generation attention loads a grouped KV head once per query
    head (the XQA kernel "will be included in the v0.8 releases": TensorRT-LLM
    docs/source/blogs/XQA-kernel.md @585c756); ``tensorrt-llm-0.8`` for v0.8 and v0.9, whose
    XQA kernels, opt-in, serve 8 query heads per KV head of head dim 128 alone (the profile's
    sources); the current ``tensorrt-llm`` from v0.10 on and for a source naming no release
    (NB: v0.9.0's document still calls XQA opt-in; the release that made it the default is not
    pinned here)."""
    import re

    from archcost.runtime import list_runtimes

    m = re.search(r"\bv(\d+)\.(\d+)", source)
    release = (int(m[1]), int(m[2])) if m else None
    want = "tensorrt-llm" if release is None or release >= (0, 10) else \
        "tensorrt-llm-0.5" if release < (0, 8) else "tensorrt-llm-0.8"
    return want if want in list_runtimes() else "eager"


def predict(case: Case, memo: dict) -> dict:
    from archcost.cli.infer import infer_policy, one_replica_cluster, quantizer
    from archcost.infer.price import InferenceCosts
    from archcost.infer.serving import static_serving
    from archcost.loader import load_model_file
    from archcost.runtime import load_runtime

    target = case.model if case.model.startswith("hf:") else str(ROOT / "models" / case.model)
    spec = load_model_file(target, dict(case.sets))
    dtype, weights = _precision(case.precision)
    quantize, kv = quantizer(dtype, weights, 128, None), None
    if dtype == "fp8":  # the layers' linears in fp8 (per-tensor scales), the cache in fp8
        kv = "float8_e4m3fn"
    ttft_only = case.metric == "first_token_latency_ms"
    out_len = 1 if ttft_only else case.output_len
    costs = InferenceCosts(spec, one_replica_cluster(case.hardware, case.tp),
                           infer_policy(dtype), load_runtime(runtime_name(case.source)),
                           build_len=case.input_len + out_len, tp=case.tp, kv_dtype=kv,
                           quantize=quantize, memo=memo, graph_max_batch=case.batch)
    run = static_serving(costs, case.batch, case.input_len, out_len)
    if ttft_only:
        pred = run.ttft_s * 1e3
    elif "per_gpu" in case.metric:  # later releases print throughput per GPU
        pred = run.output_tokens_per_s / case.tp
    else:
        pred = run.output_tokens_per_s
    return {"pred": pred, "error": pred / case.value - 1.0, "fits": run.fits,
            "peak_gib": run.memory_bytes["peak_per_gpu"] / 2**30, "ttft_s": run.ttft_s,
            "tpot_s": run.tpot_s}


class DiskMemo(dict):
    """The traces and workloads an ``InferenceCosts`` memo holds, kept in ``folder`` too (a
    rerun reads them; clear the folder when the tracer or the models change)."""

    def __init__(self, folder: str | None):
        super().__init__()
        self.folder = Path(folder) if folder else None

    def _path(self, key) -> Path:
        return self.folder / (hashlib.sha256(repr(key).encode()).hexdigest()[:24] + ".pkl")

    def __contains__(self, key) -> bool:
        if super().__contains__(key):
            return True
        if self.folder is not None and self._path(key).is_file():
            super().__setitem__(key, pickle.loads(self._path(key).read_bytes()))
            return True
        return False

    def __setitem__(self, key, value) -> None:
        super().__setitem__(key, value)
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._path(key).write_bytes(pickle.dumps(value))


def stats(errors: list[float]) -> dict:
    if not errors:
        return {"n": 0, "mean": float("nan"), "max": float("nan"), "signed": float("nan")}
    return {"n": len(errors), "mean": sum(abs(e) for e in errors) / len(errors),
            "max": max(abs(e) for e in errors), "signed": sum(errors) / len(errors)}


def _pct(x: float) -> str:
    return f"{100 * x:+.1f}%"


def _figure(x: float) -> str:
    """A predicted figure as the published ones are written: whole above 100, else 4 digits."""
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.4g}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", default=str(DEFAULT_CASES))
    ap.add_argument("--out", default=None, help="append the result section to this file")
    ap.add_argument("--only", default=None, help="comma list of case ids")
    ap.add_argument("--cache", default=None, help="keep traces in this folder")
    args = ap.parse_args()
    cases = load_cases(args.cases)
    if args.only:
        keep = set(args.only.split(","))
        cases = [c for c in cases if c.id in keep]
    memo = DiskMemo(args.cache)
    results, pending = {}, {}
    t0 = time.perf_counter()
    for c in cases:
        why = pending_reason(c)
        if why:
            pending[c.id] = why
            print(f"{c.id:34s} {why}", flush=True)
            continue
        r = predict(c, memo)
        results[c.id] = r
        print(f"{c.id:34s} published {c.value:9.1f} predicted {r['pred']:9.1f} "
              f"{_pct(r['error'])}  ttft {1e3 * r['ttft_s']:.1f} ms tpot "
              f"{1e3 * r['tpot_s']:.2f} ms peak {r['peak_gib']:.1f} GiB", flush=True)
    publish(report(cases, results, pending, time.perf_counter() - t0), args.out)


def report(cases, results, pending, wall) -> list[str]:
    lines = [f"## Inference against TensorRT-LLM's published measurements ({date.today()})", "",
             f"`python benchmarks/inference_published.py` on {platform.machine()} "
             f"({wall:.0f} s, runtime profiles: "
             f"{', '.join(sorted({f'`{runtime_name(c.source)}`' for c in cases}))}, by each "
             "row's release). Error = predicted / "
             "published - 1 (throughput: + is faster than measured; first-token latency: + "
             "is slower).", "",
             "| id | model | GPU | tp | batch | in | out | metric | published | predicted | "
             "error |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in cases:
        r = results.get(c.id)
        metric = ("tok/s/GPU" if "per_gpu" in c.metric else "tok/s") \
            if c.metric.startswith("output") else "TTFT ms"
        if r is None:
            lines.append(f"| {c.id} | {c.family} | {c.gpu} | {c.tp} | {c.batch} | "
                         f"{c.input_len} | {c.output_len} | {metric} | {c.value:g} | pending "
                         f"| {pending.get(c.id, '')} |")
            continue
        lines.append(f"| {c.id} | {c.family} | {c.gpu} | {c.tp} | {c.batch} | {c.input_len} | "
                     f"{c.output_len} | {metric} | {c.value:g} | {_figure(r['pred'])} | "
                     f"{_pct(r['error'])} |")
    lines.append("")
    groups = {"all": [c for c in cases if c.id in results]}
    for key in dict.fromkeys(c.gpu for c in groups["all"]):
        groups[key] = [c for c in groups["all"] if c.gpu == key]
    groups["throughput"] = [c for c in groups["all"] if c.metric.startswith("output")]
    groups["first-token latency"] = [c for c in groups["all"] if c.metric.startswith("first")]
    lines += ["| rows | n | mean abs | max abs | signed mean |", "|---|---|---|---|---|"]
    for name, cs in groups.items():
        s = stats([results[c.id]["error"] for c in cs])
        if s["n"]:
            lines.append(f"| {name} | {s['n']} | {100 * s['mean']:.1f}% | {100 * s['max']:.1f}% "
                         f"| {_pct(s['signed'])} |")
    s = stats([results[c.id]["error"] for c in groups["all"]])
    lines += ["", f"{s['n']} of {len(cases)} rows predicted; target mean <= "
              f"{100 * TARGET['mean']:.0f}% and max <= {100 * TARGET['max']:.0f}%."]
    if pending:
        lines.append(f"Pending: {len(pending)} rows ({'; '.join(sorted(set(pending.values())))}).")
    return lines


if __name__ == "__main__":
    main()
