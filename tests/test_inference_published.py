"""benchmarks/inference_published.py predicts rows beyond the ones it was written for: a family
with no bundled file of its own, a mixture of experts, a GPU outside its table, a weight-only
precision and a later release each map to a model, a profile and a runtime, and such a row is
predicted, not refused (rows at small dims here, so they trace in seconds)."""

from __future__ import annotations

import csv
import dataclasses

import pytest

from tests.conftest import ROOT, load_module

load_module(ROOT / "benchmarks" / "gemm_probe.py")  # puts benchmarks/ on the path
import inference_published as published  # noqa: E402

_HEAD = ["id", "source", "model", "layers", "hidden", "heads", "kv_heads", "ffn", "vocab", "gpu",
         "precision", "tp", "batch", "input_len", "output_len", "metric", "value", "experts",
         "top_k"]
_ROWS = [
    ["A", "TensorRT-LLM v0.5 first-token latency", "Mistral 7B", 2, 64, 4, 2, 128, 256,
     "H200-SXM-141GB", "fp16", 1, 1, 32, 1, "first_token_latency_ms", 1.0, "", ""],
    ["B", "TensorRT-LLM v0.8 docs/source/performance.md", "Mixtral 8x7B", 2, 64, 4, 2, 96, 256,
     "H100-SXM-80GB", "fp8", 2, 4, 32, 8, "output_tokens_per_s_per_gpu", 1000.0, 8, 2],
    ["C", "TensorRT-LLM v0.8 docs/source/performance.md", "LLaMA 7B", 2, 64, 4, 4, 128, 256,
     "L40S-48GB", "int4 weight-only (AWQ)", 1, 2, 32, 8, "output_tokens_per_s_total", 1000.0,
     "", ""],
]


@pytest.fixture
def cases(tmp_path):
    path = tmp_path / "cases.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(_HEAD)
        w.writerows(_ROWS)
    return {c.id: c for c in published.load_cases(str(path))}


def test_rows_map_to_a_model_a_profile_and_a_runtime(cases):
    a, b, c = cases["A"], cases["B"], cases["C"]
    assert (a.model, a.hardware, published.runtime_name(a.source)) == (
        "llama.py", "h200", "tensorrt-llm-0.5")
    assert (b.model, b.hardware, published.runtime_name(b.source)) == (
        "hf:mixtral-8x7b", "dgx-h100-ndr", "tensorrt-llm-0.8")
    assert b.sets["num_local_experts"] == 8 and b.sets["num_experts_per_tok"] == 2
    # before the XQA kernel (v0.8) a grouped KV head is read once per query head; v0.8 and
    # v0.9 serve one grouped shape with it; from v0.10 it runs by default
    assert [published.runtime_name(f"TensorRT-LLM v{v} docs") for v in
            ("0.6.1", "0.7.1", "0.8.0", "0.9.0", "0.10.0", "1.0")] == [
        "tensorrt-llm-0.5"] * 2 + ["tensorrt-llm-0.8"] * 2 + ["tensorrt-llm"] * 2
    assert published._precision(c.precision) == ("fp16", "int4")
    assert published._precision("fp8 (weights, activations, KV cache)") == ("fp8", None)
    assert all(published.pending_reason(x) == "" for x in cases.values())
    assert published._hardware("A100-SXM-40GB", 1) == "a100-sxm-40gb"
    assert published._hardware("H200-SXM-141GB", 8) == "dgx-h200"
    assert published._hardware("L40S-48GB", 4) == "l40s-pcie"
    assert published._hardware("Gaudi2", 1) == ""  # no profile: the row stays pending


def test_such_rows_are_predicted(cases):
    """Each row predicted; the per-GPU metric is the run's throughput over its tp GPUs."""
    memo = {}
    for case in cases.values():
        r = published.predict(case, memo)
        assert r["pred"] > 0 and r["fits"], case.id
    b = cases["B"]
    total = dataclasses.replace(b, metric="output_tokens_per_s_total")
    assert published.predict(total, memo)["pred"] == pytest.approx(
        b.tp * published.predict(b, memo)["pred"])
