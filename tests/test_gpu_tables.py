"""The bundled GPU profiles' measured tables: they reproduce the published cells they cite
(read here from the committed extracts in benchmarks/data/, independently of the generator),
their stated rules hold against the data that checks them, and the engine (one device and the
plan table) prices matmuls and attention ops of a cited shape at FLOPs / (peak x the cited
efficiency) + launch."""

from __future__ import annotations

import csv
import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

from archcost.errors import ProfileError
from archcost.hardware.profile import load_gpu

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "benchmarks" / "data"
ROUND = 5e-3  # the files hold 3 significant digits: half a unit in the last place


def _csv(name: str) -> list[dict[str, str]]:
    with open(DATA / name, newline="") as fh:
        return list(csv.DictReader(line for line in fh if not line.startswith("#")))


def _xla(gpu: str, dtype: str) -> dict[tuple[int, int, int, int], float]:
    return {tuple(int(r[c]) for c in "bmnk"): float(r["flops_per_s"])
            for r in _csv("xla_matmul_perf_table.csv") if (r["gpu"], r["dtype"]) == (gpu, dtype)}


def _generator():
    spec = importlib.util.spec_from_file_location("gpu_tables", ROOT / "benchmarks" / "gpu_tables.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_generated_blocks_are_what_the_extracts_give():
    gen = _generator()
    for name, part in gen.PROFILES.items():
        text = (ROOT / "hardware_profiles" / "gpus" / f"{name}.yaml").read_text()
        assert gen.updated(text, gen.render(part)) == text, f"rerun benchmarks/gpu_tables.py ({name})"


# profile, dtype, XLA rows, peak FLOP/s, rate scale (GB200: B200 x the MAMF ratio 1822 / 1745)
CITED = [
    ("h100-sxm", "bf16", ("sm_90", "bf16"), 989e12, 1.0),
    ("h200", "bf16", ("sm_90", "bf16"), 989e12, 1.0),
    ("a100-sxm-80gb", "bf16", ("sm_90", "bf16"), 989e12, 1.0),  # same fraction as H100 (rule)
    ("h100-sxm-96gb-500w", "fp16", ("sm_90", "bf16"), 989e12, 1.0),  # fp16 names bf16's
    ("b200", "bf16", ("sm_100_B200", "bf16"), 2250e12, 1.0),
    ("b200", "fp8", ("sm_100_B200", "fp8"), 4500e12, 1.0),
    ("gb200", "bf16", ("sm_100_B200", "bf16"), 2500e12, 1822 / 1745),
    ("gb200", "fp8", ("sm_100_B200", "fp8"), 5000e12, 3615.6 / 3432.5),
]


@pytest.mark.parametrize("name, dtype, rows, peak, scale", CITED, ids=[f"{c[0]}-{c[1]}" for c in CITED])
def test_shape_tables_hit_every_cited_cell(name, dtype, rows, peak, scale):
    """Every grid point reads XLA's measured rate (b = 1 cells; m = 8192, 16384 from b = 2, 4
    at m = 4096; n = 8192, 16384 from the transposed cell) as a fraction of the part's peak, to
    the files' rounding."""
    table = load_gpu(name).shape_table(dtype)
    cells = _xla(*rows)
    dims = (256, 512, 1024, 2048, 4096)
    wide = dims + (8192, 16384)
    pts = [(m, n, k) for m in wide for n in wide for k in dims]
    got = table.at(*np.array(pts, dtype=float).T)
    for (m, n, k), eff in zip(pts, got):
        if n > 4096:  # the transposed cell; past the grid both ways, n = 4096's
            m, n = (n, m) if m <= 4096 else (m, 4096)
        b, mm = (1, m) if m <= 4096 else (m // 4096, 4096)
        want = cells[(b, mm, n, k)] * scale / peak
        assert eff == pytest.approx(want, rel=ROUND), (m, n, k)


@pytest.mark.parametrize("gpu, dtype", [("sm_90", "bf16"), ("sm_100_B200", "bf16"),
                                        ("sm_100_B200", "fp8")])
def test_a_gemm_reads_as_its_transpose_in_xla_tables(gpu, dtype):
    """The rule behind the n = 8192, 16384 cells: XLA's cells measured both ways, (m, n, k)
    against (n, m, k), agree (H100's fp8 rows, refused, are the exception the rule skips)."""
    cells = _xla(gpu, dtype)
    r = np.array([v / cells[(1, n, m, k)] for (b, m, n, k), v in cells.items()
                  if b == 1 and m < n and (1, n, m, k) in cells])
    assert len(r) == 50 and abs(np.median(r) - 1) < 0.01
    assert np.percentile(r, 10) > 0.93 and np.percentile(r, 90) < 1.15


def test_a_few_rows_through_a_wide_weight_read_as_many_rows_through_a_narrow_one():
    """A prefill's GEMM (128 rows, 16384 wide) reads the rate of its transpose, which the
    cookbook measured on A100 (27648 rows, 128 wide: 0.442 of peak), not the n = 4096 edge's."""
    t = load_gpu("a100-sxm-80gb").shape_table("fp16")
    measured = {(int(r["m"]), int(r["n"])): float(r["tflops"]) * 1e12 / 312e12
                for r in _csv("cookbook_a100_gemm.csv")
                if r["file"] == "mm/ksweep_low" and int(r["k"]) == 4096}
    for n in (128, 192, 256):  # (below 128 the sub-grid rule's own spread: test above)
        wide, tall = float(t.at(n, 27648, 4096)), float(t.at(27648, n, 4096))
        assert wide == pytest.approx(tall, rel=0.02)
        assert wide == pytest.approx(measured[(27648, n)], rel=0.2), n
    assert float(t.at(128, 16384, 4096)) > 1.3 * float(t.at(128, 4096, 4096))


def test_a_batch_reads_as_rows_in_xla_tables():
    """The rule behind reading bmm as (b*m, n, k): XLA's b = 2 and 4 cells against its b = 1
    cell of the same output rows, H100 and B200 bf16."""
    for gpu in ("sm_90", "sm_100_B200"):
        cells = _xla(gpu, "bf16")
        r = np.array([v / cells[(1, b * m, n, k)] for (b, m, n, k), v in cells.items()
                      if b > 1 and (1, b * m, n, k) in cells])
        assert len(r) == 175 and abs(np.median(r) - 1) < 0.01
        assert np.percentile(r, 10) > 0.95 and np.percentile(r, 90) < 1.02


def test_h100_fp8_rows_are_refused_and_fp8_matmuls_keep_the_curve():
    fp8 = _xla("sm_90", "fp8")
    over = [v for v in fp8.values() if v > 1979e12]
    assert len(over) == 29 and max(over) > 2.5e15  # faster than the FP8 tensor cores can run
    g = load_gpu("h100-sxm")
    assert g.shape_table("fp8") is None and g.shape_table("fp32") is None
    assert load_gpu("b200").shape_table("fp8") is not load_gpu("b200").shape_table("bf16")


def _engine_seconds(gpu, op: str, out_shape, flops: float, dtype: str = "bfloat16",
                    attention_kernel=None, attn=(0.0,) * 5, op_class: str = "matmul"):
    """One op through the engine as the estimate runs it (lower's per-op attributes)."""
    from archcost.cost.compute import (
        curve_for,
        memory_curve_index,
        op_mnk,
        overhead_seconds,
        peak_flops_for,
        peak_keys,
        roofline_seconds,
    )

    node = {"op": op, "out_shapes": [list(out_shape)], "flops": flops}
    t, bound = roofline_seconds(
        gpu, np.array([flops]), np.array([1.0]), np.array([peak_flops_for(gpu, dtype, True)]),
        np.array([curve_for(op_class, op)]), memory_curve_index(gpu, [op]),
        overhead_seconds(gpu, ["forward"]), np.zeros(1), np.array([op_mnk(node)]),
        peak_keys([dtype]), np.array([attn]), attention_kernel)
    return float(t[0]) - gpu.kernel_launch_s, int(bound[0])


def test_bmm_and_shapes_beyond_the_grid():
    """A bmm (b, m, n, k) runs at XLA's rate of its (b*m, n, k) cell; above the grid the edge
    cell; below it the edge x sqrt(size / 256) per dim."""
    g = load_gpu("h100-sxm")
    cells = _xla("sm_90", "bf16")
    f = 2.0 * 4 * 4096 ** 3
    t, bound = _engine_seconds(g, "aten.bmm", (4, 4096, 4096), f)
    clk = g.sustained_clock  # every rate at the clock a training step holds
    assert bound == 0 and t == pytest.approx(f / (cells[(4, 4096, 4096, 4096)] * clk), rel=ROUND)
    f = 2.0 * 8 * 8192 * 8192 * 8192
    t, _ = _engine_seconds(g, "aten.bmm", (8, 8192, 8192), f)  # (65536, 8192, 8192): clamped
    assert t == pytest.approx(f / (cells[(4, 4096, 4096, 4096)] * clk), rel=ROUND)
    f = 2.0 * 16384 * 2048 * 128  # k = 128: half of the smallest measured 256
    t, _ = _engine_seconds(g, "aten.mm", (16384, 2048), f)
    assert t == pytest.approx(f / (cells[(4, 4096, 2048, 256)] * math.sqrt(0.5) * clk), rel=ROUND)


def test_the_a100_rule_against_the_cookbook_sweeps():
    """A100 = H100's fraction of peak at the same shape: EleutherAI's A100 fp16 sweeps agree
    where their per-call launch + sync (<= 39.4 us) is small against the call, and below the
    grid the measurements lie between the two bounds of the sqrt rule (clamped: constant
    efficiency; proportional: constant time) and closer to the rule than to either."""
    t = load_gpu("a100-sxm-80gb").shape_table("fp16")
    pts = []
    for r in _csv("cookbook_a100_gemm.csv"):
        b, m, n, k = (int(r[c]) for c in "bmnk")
        rate = float(r["tflops"]) * 1e12
        pts.append((2 * b * m * n * k / rate, b * m, n, k, rate / 312e12))
    big = np.array([e / float(t.at(m, n, k)) for s, m, n, k, e in pts
                    if s >= 300e-6 and min(n, k) >= 256])
    assert len(big) > 150 and 0.9 < np.median(big) < 1.05
    assert np.percentile(big, 10) > 0.8 and np.percentile(big, 90) < 1.1
    small = [(e, float(t.at(m, n, k)), float(t.at(m, max(n, 256), max(k, 256))),
              min(n, 256) * min(k, 256) / 256 ** 2) for s, m, n, k, e in pts
             if s >= 150e-6 and min(n, k) < 256]
    assert len(small) > 40
    between = [c * p * 0.95 <= e <= c * 1.05 for e, _, c, p in small]
    assert np.mean(between) > 0.8
    err = {name: np.median([abs(math.log(e / x)) for e, x in zip(
        (s[0] for s in small), col)]) for name, col in (
        ("sqrt", [s[1] for s in small]), ("clamp", [s[2] for s in small]),
        ("proportional", [s[2] * s[3] for s in small]))}
    assert err["sqrt"] < min(err["clamp"], err["proportional"]), err


def _fa(source: str, kernel: str, phase: str, d: int, s: int, causal: int) -> float:
    for r in _csv("attention_rates.csv"):
        if (r["source"], r["kernel"], r["phase"], int(r["head_dim"]), int(r["seq"]),
                int(r["causal"])) == (source, kernel, phase, d, s, causal):
            return float(r["value"])
    raise KeyError((source, kernel, phase, d, s, causal))


SEQS = (512, 1024, 2048, 4096, 8192, 16384)


@pytest.mark.parametrize("name", ["h100-sxm", "h200"])
def test_h100_attention_forward_is_the_fa3_figure(name):
    g = load_gpu(name)
    for kernel in ("flash3", "cudnn", "flash2"):
        t = g.attention_table(kernel)
        for d in (64, 128, 256):
            for c in (0, 1):
                got = t.at(d, np.array(SEQS, dtype=float), c, False) * 989
                want = [_fa("fa3_fwd", kernel, "forward", d, s, c) for s in SEQS]
                assert got == pytest.approx(want, rel=ROUND), (kernel, d, c)


def _fwd_bwd(t, d, s, c, peak):
    """The forward + backward rate of a table cell: 3.5 f over f / R_f + 2.5 f / R_b."""
    rf, rb = (float(t.at(d, s, c, b)) * peak for b in (False, True))
    return 3.5 / (1 / rf + 2.5 / rb)


def test_flash2_forward_and_backward_add_up_to_the_published_fwd_bwd_rate():
    for name, source, peak in (("h100-sxm", "fa2_h100", 989), ("a100-sxm-80gb", "fa2_a100", 312)):
        t = load_gpu(name).attention_table("flash2")
        for d in (64, 128):
            for c in (0, 1):
                for s in SEQS:
                    want = _fa(source, "flash2", "forward_backward", d, s, c)
                    assert _fwd_bwd(t, d, s, c, peak) == pytest.approx(want, rel=2 * ROUND)


def test_fa3_and_cudnn_backward_keep_their_measured_ratio_at_d64():
    """At d = 64, S = 16k the backward / forward ratio of each kernel and mask is PyTorch PR
    #137036's, its times converted by the convention (fwd 4 b s^2 h d, halved when causal)."""
    t3, tc = (load_gpu("h100-sxm").attention_table(k) for k in ("flash3", "cudnn"))
    for t, kernel in ((t3, "flash3"), (tc, "cudnn")):
        for c in (0, 1):
            want = 2.5 * _fa("pt137036", kernel, "forward", 64, 16384, c) / _fa(
                "pt137036", kernel, "backward", 64, 16384, c)
            got = float(t.at(64, 16384, c, True) / t.at(64, 16384, c, False))
            assert got == pytest.approx(want, rel=2 * ROUND)
    # FA3's backward at d = 256 is PR #2889's 480 TFLOP/s (S = 16k, full mask)
    assert float(t3.at(256, 16384, 0, True)) * 989 == pytest.approx(480, rel=ROUND)


def test_blackwell_flash4_hits_the_pull_request_figures():
    prs = {128: "fa2280", 192: "fa2270"}
    for name, peak, scale in (("b200", 2250, 1.0), ("gb200", 2500, 1822 / 1745)):
        t = load_gpu(name).attention_table("flash4")
        for d, src in prs.items():
            for c in (0, 1):
                for phase, bwd in (("forward", False), ("backward", True)):
                    want = _fa(src, "flash4", phase, d, 8192, c) * scale
                    assert float(t.at(d, 8192, c, bwd)) * peak == pytest.approx(want, rel=ROUND)


_MODEL = """
import torch
import torch.nn.functional as F

class Block(torch.nn.Module):
    def __init__(self, hidden, heads):
        super().__init__()
        self.heads = heads
        self.qkv = torch.nn.Linear(hidden, 3 * hidden, bias=False)

    def forward(self, x):
        b, s, h = x.shape
        q, k, v = self.qkv(x.to(self.qkv.weight.dtype)).view(b, s, 3, self.heads, h // self.heads).permute(2, 0, 3, 1, 4)
        return F.scaled_dot_product_attention(q, k, v, is_causal=True).sum()

def build_model(hidden: int = 2048, heads: int = 16):
    return Block(hidden, heads)

def example_inputs(batch_size, seq_len):
    return (torch.randn(batch_size, seq_len, 2048),)

def loss(output, inputs):
    return output
"""


@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    """A causal SDPA of (b, h, s, d) = (1, 16, 2048, 128) behind a 2048 -> 6144 linear, bf16."""
    from archcost.loader import load_model_file
    from archcost.trace import trace_model
    from archcost.trace.precision import parse_precision

    path = tmp_path_factory.mktemp("m") / "attn.py"
    path.write_text(_MODEL)
    return trace_model(load_model_file(str(path), {}), 1, 2048, parse_precision("bf16"))


def test_the_engine_prices_a_traced_step_at_the_cited_rates(traced):
    """Forward linear (2048, 6144, 2048) at XLA's rate of its cell's neighbours (trilinear in
    log2: m, k on the grid, n between 4096 and 8192 clamped to 4096); causal attention at
    FA3's published 521 TFLOP/s (d = 128, s = 2k), FLOPs counted as FA3 counts them."""
    from archcost.cost.compute import compute_times, lower

    g = load_gpu("h100-sxm")
    arrays = lower(traced.graph)
    res = compute_times(arrays, g, attention_kernel="flash3")
    launch = g.kernel_launch_s
    fwd_mm = [i for i, (op, ph) in enumerate(zip(arrays.op, arrays.phase))
              if op == "aten.mm" and ph == "forward"]
    assert len(fwd_mm) == 1 and tuple(arrays.mnk[fwd_mm[0]]) == (2048, 6144, 2048)
    clk = g.sustained_clock  # every rate at the clock a training step holds
    rate = _xla("sm_90", "bf16")[(1, 2048, 4096, 2048)] * clk  # n = 6144 above the grid: clamped
    assert res.seconds[fwd_mm[0]] == pytest.approx(2 * 2048 * 6144 * 2048 / rate + launch,
                                                   rel=ROUND)
    att = [i for i, c in enumerate(arrays.op_class) if c == "attention"]
    fwd = [i for i in att if arrays.attn[i][4] == 0]
    bwd = [i for i in att if arrays.attn[i][4] == 1]
    assert len(fwd) == len(bwd) == 1 and list(arrays.attn[fwd[0]]) == [128, 2048, 2048, 1, 0]
    fa_flops = 4 * 1 * 2048 ** 2 * 16 * 128 / 2  # the FA convention: causal at half
    assert arrays.flops[fwd[0]] == fa_flops
    want = fa_flops / (_fa("fa3_fwd", "flash3", "forward", 128, 2048, 1) * 1e12 * clk) + launch
    assert res.seconds[fwd[0]] == pytest.approx(want, rel=ROUND)
    cell = float(g.attention_table("flash3").at(128, 2048, 1, True))
    assert res.seconds[bwd[0]] == pytest.approx(2.5 * fa_flops / (989e12 * cell * clk) + launch,
                                                rel=1e-9)
    # no kernel named: today's curves; another kernel: its own cells
    plain = compute_times(arrays, g).seconds
    assert plain[fwd[0]] != pytest.approx(res.seconds[fwd[0]], rel=1e-3)
    assert plain[fwd_mm[0]] == res.seconds[fwd_mm[0]]
    cudnn = compute_times(arrays, g, attention_kernel="cudnn").seconds
    want = fa_flops / (_fa("fa3_fwd", "cudnn", "forward", 128, 2048, 1) * 1e12 * clk) + launch
    assert cudnn[fwd[0]] == pytest.approx(want, rel=ROUND)


def test_a_kernel_the_profile_lacks_is_one_line_and_tableless_profiles_keep_their_curves(traced):
    from archcost.cost.compute import compute_times, lower

    arrays = lower(traced.graph)
    with pytest.raises(ProfileError) as info:
        compute_times(arrays, load_gpu("a100-sxm-80gb"), attention_kernel="flash3")
    msg = str(info.value)
    assert "\n" not in msg and "a100-sxm-80gb has no attention table for kernel 'flash3'" in msg
    assert msg.endswith("its kernels: flash2")
    cpu = load_gpu("cpu")
    assert np.array_equal(compute_times(arrays, cpu, attention_kernel="flash3").seconds,
                          compute_times(arrays, cpu).seconds)


def test_the_plan_table_reads_the_kernel_as_the_single_device_engine(traced):
    """The planner's cost table prices attention by the named kernel as the one-device engine
    does: a plan of one GPU equals the engine on the full trace; with cp the chunk is s / cp."""
    from archcost.cost.compute import compute_times, lower
    from archcost.loader import load_model_file
    from archcost.options import Recompute
    from archcost.plan.costmodel import CostModel
    from archcost.plan.evaluate import estimate_plan
    from archcost.plan.space import parse_plan
    from archcost.plan.table import attention_dims
    from archcost.plan.workload import trace_workload
    from archcost.trace.precision import parse_precision
    from archcost.validate.compare import single_gpu_cluster
    from tests.conftest import MODELS

    # GPT-2 with SDPA, head dim 128 at 1024 tokens: attention well above the launch overhead
    spec = load_model_file(str(MODELS / "gpt2.py"), dict(layers=2, hidden=512, heads=4,
                                                        vocab=256, flash=True))
    bf16 = parse_precision("bf16")
    w = trace_workload(spec, 1024, bf16, "adamw", (Recompute.NONE,))
    g = load_gpu("h100-sxm")
    cm = CostModel(w, single_gpu_cluster(g), usable_memory=1.0, attention_kernel="flash3")
    est, _ = estimate_plan(parse_plan("mbs=2,gbs=2"), cm, with_schedule=False)
    from archcost.trace import trace_model

    full = lower(trace_model(spec, 2, 1024, bf16).graph)
    assert est["step_time_s"] == pytest.approx(
        float(compute_times(full, g, "flash3").seconds.sum()), rel=1e-3)
    from archcost.plan.table import C

    combo = np.array([[Recompute.NONE.code, 2, 1, 0, 1, 1]])
    plain = CostModel(w, single_gpu_cluster(g), usable_memory=1.0).table(combo).rows[0]
    named = cm.table(combo).rows[0]
    ops = w.ops[Recompute.NONE]
    table = g.attention_table("flash3")
    for col, phase in (("attn_f", 0), ("attn_b", 1)):  # closed form: the cells at mbs 2
        sel = np.flatnonzero(ops.attention & (ops.phase == phase) & (ops.section == 1))
        assert len(sel) == 1 and ops.attn[sel[0]][4] == phase
        d, sq, sk, causal, bwd = ops.attn[sel[0]]
        cell = float(table.at(d, math.sqrt(sq * sk), causal, bwd))
        want = 2 * ops.flops[sel[0]] / (989e12 * cell * g.sustained_clock) + g.kernel_launch_s
        assert named[C[col]] == pytest.approx(want, rel=1e-9)
    assert named[C["attn_f"]] != pytest.approx(plain[C["attn_f"]], rel=0.1)  # not the curve
    rows = attention_dims(ops, np.array([[1.0], [4.0]])).reshape(2, -1, 5)
    att = ops.attn[:, 0] > 0
    assert att.any() and np.array_equal(rows[1][att][:, 1:3], ops.attn[att][:, 1:3] / 4)
    assert np.array_equal(rows[1][att][:, [0, 3, 4]], ops.attn[att][:, [0, 3, 4]])
