"""How low precision reaches the cost engine and the planner: the peak each GEMM runs at, the
bf16-equivalent efficiency of fp8 GEMMs, the peak MFU is against, the parameter all-gather in
fp8 and the weight cache in a plan's memory. Expected values come from the profiles' figures
and closed forms, not from the code under test."""

from __future__ import annotations

import json

import numpy as np
import pytest

from archcost.cli import app
from archcost.cost.compute import CURVE_MATMUL, compute_times, lower, roofline_seconds
from archcost.errors import ConfigError
from archcost.hardware.profile import load_cluster, load_gpu
from archcost.loader import load_model_file, parse_overrides
from archcost.options import Recompute
from archcost.plan.costmodel import CostModel
from archcost.plan.evaluate import estimate_plan
from archcost.plan.space import parse_plan
from archcost.plan.workload import trace_workload
from archcost.trace import trace_model
from archcost.trace.precision import parse_precision
from tests.conftest import MODELS

LLAMA = ["layers=2", "hidden=128", "heads=4", "kv_heads=4", "ffn=256", "vocab=256"]
LINEAR_PARAMS = 2 * (4 * 128 * 128 + 3 * 128 * 256)  # the converted linears' weights


def _spec():
    return load_model_file(str(MODELS / "llama.py"), parse_overrides(LLAMA))


def test_scaled_gemms_run_at_the_peak_of_their_format():
    gpu = load_gpu("h100-sxm")
    g = trace_model(_spec(), 1, 128, parse_precision("fp8")).graph
    arrays = lower(g)
    peaks = compute_times(arrays, gpu).peak_used
    by_op = {}
    for op, cls, peak in zip(arrays.op, arrays.op_class, peaks):
        if cls == "matmul":
            by_op.setdefault(op, set()).add(float(peak))
    # h100-sxm.yaml: fp8 1979, bf16 989 TFLOP/s dense; the LM head stays a bf16 aten.mm
    assert by_op == {"aten._scaled_mm": {1979e12}, "aten.mm": {989e12}}


@pytest.mark.parametrize("flops", [1e8, 3e9, 5e10, 1e13])
def test_fp8_gemm_efficiency_is_the_bf16_curve_at_equal_duration(flops):
    """An fp8 GEMM of F FLOPs takes the time of a bf16 GEMM of F * 989/1979 FLOPs (the bf16
    curve read where a bf16 GEMM runs as long), not F / 2 of the bf16 time at F."""
    gpu = load_gpu("h100-sxm")
    p8, p16 = gpu.peak_flops_per_s["fp8"], gpu.peak_flops_per_s["bf16"]

    def seconds(f, peak, key):
        t, _ = roofline_seconds(gpu, np.array([f]), np.zeros(1), np.array([peak]),
                                np.array([CURVE_MATMUL]), np.zeros(1, dtype=np.int64),
                                np.zeros(1), keys=[key])
        return float(t[0])

    fp8 = seconds(flops, p8, "fp8")
    assert fp8 == pytest.approx(seconds(flops * p16 / p8, p16, "bf16"), rel=1e-9)
    eff = gpu.matmul_efficiency
    clk = gpu.sustained_clock  # at the clock a training step holds
    assert fp8 == pytest.approx(flops / (p8 * eff.at(flops * p16 / p8) * clk), rel=1e-9)


def _mm_seconds(gpu, mnk, key):
    m, n, k = mnk
    t, _ = roofline_seconds(gpu, np.array([2.0 * m * n * k]), np.zeros(1),
                            np.array([gpu.peak_flops_per_s[key]]), np.array([CURVE_MATMUL]),
                            np.zeros(1, dtype=np.int64), np.zeros(1),
                            mnk=np.array([mnk], dtype=np.float64), keys=[key])
    return float(t[0])


def test_scaled_gemm_reads_the_fp8_shape_table_where_the_profile_has_one():
    """b200.yaml's fp8 table (XLA's measured B200 fp8 matmuls): cell (m, n, k) = (2048, 4096,
    1024) reads 0.316 (m = 2048 block, n = 4096 row, k = 1024 column) of the 4500 TFLOP/s peak."""
    gpu = load_gpu("b200")
    flops = 2.0 * 2048 * 4096 * 1024
    assert _mm_seconds(gpu, (2048, 4096, 1024), "fp8") == pytest.approx(
        flops / (4500e12 * 0.316), rel=1e-6)


def test_scaled_gemm_reads_the_bf16_shape_table_at_equal_duration_elsewhere():
    """h100-sxm.yaml has a bf16 table only: an fp8 GEMM runs as long as a bf16 GEMM of its
    FLOPs times 989/1979, each of m, n, k times the cube root of that ratio."""
    gpu = load_gpu("h100-sxm")
    assert "fp8" not in gpu.matmul_shape_efficiency
    c = (989 / 1979) ** (1 / 3)
    for mnk in [(8192.0, 4096.0, 4096.0), (2048.0, 1024.0, 4096.0)]:
        eq = tuple(x * c for x in mnk)
        assert _mm_seconds(gpu, mnk, "fp8") == pytest.approx(_mm_seconds(gpu, eq, "bf16"),
                                                             rel=1e-9)


def _analyze(args: list[str]) -> dict:
    from typer.testing import CliRunner

    sets = [x for kv in LLAMA for x in ("--set", kv)]
    r = CliRunner().invoke(app, ["analyze", str(MODELS / "llama.py"), *sets, "-s", "128",
                                 "--json", *args])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


@pytest.mark.parametrize("dtype, hardware, peak", [("fp8", "h100-sxm", 1979e12),
                                                   ("nvfp4", "b200", 9000e12),
                                                   ("mxfp8", "gb200", 5000e12)])
def test_mfu_is_against_the_peak_of_the_gemm_format(dtype, hardware, peak):
    doc = _analyze(["--dtype", dtype, "--hardware", hardware])
    est = doc["estimate"]
    assert est["peak_flops_per_s"] == peak
    flops = doc["totals"]["flops"]
    assert est["mfu"] == pytest.approx((flops["forward"] + flops["backward"])
                                       / (est["step_time_s"] * peak))
    assert doc["totals"]["memory_bytes"]["lowp_state"] > 0


@pytest.fixture(scope="module")
def workload():
    return trace_workload(_spec(), 128, parse_precision("fp8"), recomputes=(Recompute.NONE,))


def test_workload_bytes_per_parameter(workload):
    """Weights bf16 (2 B) plus the fp8 cache (row and column copies: 2 B per converted weight,
    and one fp32 scale per linear); an fp8 all-gather moves 1 B per converted weight."""
    n = workload.params
    assert workload.gather_bytes == 2.0
    assert workload.lowp_gather_bytes == pytest.approx((2 * n - LINEAR_PARAMS) / n)
    assert workload.weight_bytes == pytest.approx((2 * n + 2 * LINEAR_PARAMS + 14 * 4) / n)
    assert workload.gemm_dtype == "float8_e4m3fn"


def test_fp8_param_allgather_moves_a_byte_per_converted_weight(workload):
    cluster = load_cluster("dgx-h100-ndr", 8)
    plan = parse_plan("dp=8,zero=3,mbs=1,gbs=8")
    rows = {}
    for dtype in (None, "fp8"):
        cm = CostModel(workload, cluster, param_allgather_dtype=dtype)
        assert cm.peak_flops == 1979e12
        est, _ = estimate_plan(plan, cm, with_schedule=False)
        rows[dtype] = [c for c in est["comm"] if c["collective"] == "all-gather"]
    n = workload.params
    assert [c["bytes"] for c in rows[None]] == [2 * n]
    assert [c["bytes"] for c in rows["fp8"]] == [pytest.approx(2 * n - LINEAR_PARAMS)]
    with pytest.raises(ConfigError, match="param_allgather_dtype='nvfp4'"):
        CostModel(workload, cluster, param_allgather_dtype="nvfp4")


def test_cli_fp8_all_gather_moves_a_byte_per_converted_weight():
    """estimate --fp8-all-gather: the ZeRO-3 all-gather of 2n bytes (bf16 weights) loses one
    byte per converted linear weight; the document names the format."""
    from typer.testing import CliRunner

    sets = [x for kv in LLAMA for x in ("--set", kv)]
    base = ["estimate", str(MODELS / "llama.py"), *sets, "-s", "128", "--dtype", "fp8",
            "--plan", "dp=8,zero=3,mbs=1,gbs=8", "--json"]
    docs = {}
    for flag in ([], ["--fp8-all-gather"]):
        r = CliRunner().invoke(app, base + flag)
        assert r.exit_code == 0, r.output
        docs[bool(flag)] = json.loads(r.stdout)
    gathered = {k: [c["bytes"] for c in d["estimate"]["comm"] if c["collective"] == "all-gather"]
                for k, d in docs.items()}
    n = docs[False]["workload"]["params"]
    assert gathered[False] == [pytest.approx(2 * n)]
    assert gathered[True] == [pytest.approx(2 * n - LINEAR_PARAMS)]
    assert docs[True]["assumptions"]["param_all_gather"] == "fp8"
    assert "param_all_gather" not in docs[False]["assumptions"]


def test_emitted_configurations_say_fp8_is_not_in_them():
    from archcost.plan.emit import caveats

    plan = parse_plan("dp=8,zero=1,mbs=1,gbs=8")
    for fmt in ("torchtitan", "deepspeed", "megatron"):
        notes = caveats(plan, fmt, precision="fp8", seq_len=128, layers=2)
        assert any("precision fp8: emitted as bf16-mixed" in n for n in notes), fmt
