"""Low precision (fp8 recipes, mxfp8, nvfp4): a traced step against closed forms written from
the recipes, and the casts run for real on a CPU.

The model is Llama with 2 layers, hidden 128, 4 heads (4 kv heads), SwiGLU width 256, at one
sequence of 128 tokens: every converted linear has (N, K) in {128, 256}, so no block-scale
tensor is padded. Expected values come from the recipe tables in ``lowp_linear``'s docstring
(per tensor of n elements: bytes read and written by each cast), never from the code.
"""

from __future__ import annotations

from collections import defaultdict

import pytest
import torch

from archcost.loader import load_model_file, parse_overrides
from archcost.trace import trace_model
from archcost.trace.precision import parse_precision
from archcost.trace.rules import op_cost
from tests.conftest import MODELS

H, F, LAYERS, S = 128, 256, 2, 128
M = S  # tokens of the step (batch 1)
# (N, K) of each converted linear of one layer; the LM head (output) stays bf16
LINEARS = {"wq": (H, H), "wk": (H, H), "wv": (H, H), "wo": (H, H),
           "w1": (F, H), "w3": (F, H), "w2": (H, F)}
T = len(LINEARS) * LAYERS  # converted linears in the model
HISTORY = 1024  # Transformer Engine DelayedScaling.amax_history_len
LOWP = "archcost_lowp."
CASES = [("fp8", "tensorwise"), ("fp8", "delayed"), ("fp8", "rowwise"), ("mxfp8", None),
         ("nvfp4", None)]


def _spec():
    return load_model_file(str(MODELS / "llama.py"), parse_overrides(
        ["layers=2", f"hidden={H}", "heads=4", "kv_heads=4", f"ffn={F}", "vocab=256"]))


@pytest.fixture(scope="module")
def traces():
    spec = _spec()
    out = {("bf16-mixed", None): trace_model(spec, 1, S, parse_precision("bf16-mixed"))}
    for dtype, recipe in CASES:
        out[(dtype, recipe)] = trace_model(spec, 1, S, parse_precision(dtype, fp8_recipe=recipe))
    return out


def _tally(g, pred=lambda d: True):
    """(phase, op) -> [occurrences, bytes read, bytes written, FLOPs] over the graph."""
    out = defaultdict(lambda: [0, 0, 0, 0])
    for _, d in g.nodes(data=True):
        if pred(d):
            row = out[(d["phase"], d["op"])]
            for i, v in enumerate((1, d["bytes_read"], d["bytes_written"], d["flops"])):
                row[i] += v * d["count"]
    return out


def _casts(recipe: str, r: int, c: int, weight: bool, cached: bool = True
           ) -> list[tuple[str, int, int]]:
    """(op, read, written) of the kernels casting one (r, c) bf16 tensor, per the recipe."""
    n = r * c
    if recipe == "tensorwise":  # amax pass, then one cast writing both layouts + fp32 scale
        return [("amax", 2 * n, 4), ("quantize", 2 * n + 4, 2 * n + 4)]
    if recipe == "delayed":  # scale from the history; the cast also writes the amax (not the
        # weight cache's recast after the step)
        return [("quantize", 2 * n + 4, 2 * n + 4 + (0 if weight and cached else 4))]
    if recipe == "rowwise":  # one fp32 scale per row of each layout
        if weight:  # cast rows, bf16 transpose, cast its rows (torchao's weight kernels)
            return [("quantize", 2 * n, n + 4 * r), ("aten.clone", 2 * n, 2 * n),
                    ("quantize", 2 * n, n + 4 * c)]
        return [("quantize", 2 * n, n + 4 * r + 2 * n), ("quantize", 2 * n, n + 4 * c)]
    if recipe == "mxfp8":  # two casts from bf16, one E8M0 byte per 32 elements each
        return [("quantize", 2 * n, n + n // 32)] * 2
    if recipe == "nvfp4":  # global amax, two casts: half a byte each + E4M3 per 16 + fp32
        return [("amax", 2 * n, 4)] + [("quantize", 2 * n + 4, n // 2 + n // 16 + 4)] * 2
    raise AssertionError(recipe)


def _expected_casts(recipe: str) -> dict:
    """(phase, op) -> [occurrences, read, written] of every cast of one step (weights cached:
    cast once per step, in the optimizer phase)."""
    out = defaultdict(lambda: [0, 0, 0])
    for n_out, k in LINEARS.values():
        for phase, (r, c), weight in (("forward", (M, k), False), ("backward", (M, n_out), False),
                                      ("optimizer", (n_out, k), True)):
            for op, read, written in _casts(recipe, r, c, weight):
                name = op if op.startswith("aten.") else LOWP + op
                if weight and op == "quantize":
                    name = LOWP + "quantize_into"
                row = out[(phase, name)]
                row[0] += LAYERS
                row[1] += LAYERS * read
                row[2] += LAYERS * written
    if recipe == "delayed":  # one history update per pass over every linear's history
        for phase, slots in (("forward", 3), ("backward", 2)):
            hist, vec = HISTORY * slots * T * 4, slots * T * 4
            out[(phase, LOWP + "amax_history_update")] = [1, hist + vec, hist + vec]
    return out


@pytest.mark.parametrize("dtype, recipe", CASES)
def test_cast_ops_and_bytes_equal_the_recipe(traces, dtype, recipe):
    got = _tally(traces[(dtype, recipe)].graph, lambda d: d["op"].startswith(LOWP))
    want = _expected_casts(recipe or dtype)
    lowp_want = {k: v for k, v in want.items() if k[1].startswith(LOWP)}
    assert {k: v[:3] for k, v in got.items()} == lowp_want
    if recipe == "rowwise":  # the weight's bf16 transposes are extra clones of the optimizer
        clone = ("optimizer", "aten.clone")
        base = _tally(traces[("bf16-mixed", None)].graph)[clone]
        mine = _tally(traces[(dtype, recipe)].graph)[clone]
        assert [a - b for a, b in zip(mine[:3], base[:3])] == want[clone]


@pytest.mark.parametrize("dtype, recipe", CASES)
def test_gemm_flops_are_those_of_bf16(traces, dtype, recipe):
    """Three GEMMs per linear (forward, dgrad, wgrad), 2*M*N*K each, at the fp8 peak's dtype;
    the LM head stays an aten.mm; total matmul FLOPs equal the bf16-mixed step's."""
    g = traces[(dtype, recipe)].graph
    got = _tally(g, lambda d: d["op"] == "aten._scaled_mm")
    one = sum(2 * M * n * k for n, k in LINEARS.values()) * LAYERS
    assert got[("forward", "aten._scaled_mm")][::3] == [len(LINEARS) * LAYERS, one]
    assert got[("backward", "aten._scaled_mm")][::3] == [2 * len(LINEARS) * LAYERS, 2 * one]
    matmul = sum(d["flops"] * d["count"] for _, d in g.nodes(data=True)
                 if d["op_class"] == "matmul")
    base = traces[("bf16-mixed", None)].graph
    assert matmul == sum(d["flops"] * d["count"] for _, d in base.nodes(data=True)
                         if d["op_class"] == "matmul")
    formats = {d["compute_dtype"] for _, d in g.nodes(data=True) if d["op"] == "aten._scaled_mm"}
    assert formats == {"fp8": {"float8_e4m3fn", "float8_e5m2"} if recipe != "rowwise"
                       else {"float8_e4m3fn"}, "mxfp8": {"mxfp8"}, "nvfp4": {"nvfp4"}}[dtype]


def test_step_flops_grow_by_the_casts_alone(traces):
    """fp8 tensorwise minus bf16-mixed FLOPs = the casts' FLOPs (2 per element per pass: abs
    and max of the amax; scale and clamp per layout written)."""
    cast = 0
    for n_out, k in LINEARS.values():
        for r, c in ((M, k), (M, n_out), (n_out, k)):
            cast += 2 * r * c + 2 * 2 * r * c  # amax, then the cast writing two layouts
    total = {key: sum(d["flops"] * d["count"] for _, d in t.graph.nodes(data=True))
             for key, t in traces.items()}
    assert total[("fp8", "tensorwise")] - total[("bf16-mixed", None)] == LAYERS * cast


def test_tensorwise_gemm_bytes(traces):
    """Operands at 1 byte, one fp32 scale each, bf16 results (forward: y; dgrad: dx; wgrad: dW)."""
    got = _tally(traces[("fp8", "tensorwise")].graph, lambda d: d["op"] == "aten._scaled_mm")
    fwd = sum(M * k + n * k + 8 for n, k in LINEARS.values()) * LAYERS
    bwd = sum((M * n + n * k + 8) + (M * n + M * k + 8) for n, k in LINEARS.values()) * LAYERS
    assert got[("forward", "aten._scaled_mm")][1:3] == [
        fwd, sum(2 * M * n for n, _ in LINEARS.values()) * LAYERS]
    assert got[("backward", "aten._scaled_mm")][1:3] == [
        bwd, sum(2 * M * k + 2 * n * k for n, k in LINEARS.values()) * LAYERS]


@pytest.mark.parametrize("dtype, elem, block", [("mxfp8", 1.0, 32), ("nvfp4", 0.5, 16)])
def test_block_scaled_gemms_read_their_scales(traces, dtype, elem, block):
    """Each GEMM reads its two operands (elem bytes per element) and one scale byte per block
    of each operand along the contraction (E8M0 per 32, E4M3 per 16)."""
    got = _tally(traces[(dtype, None)].graph, lambda d: d["op"] == "aten._scaled_mm")
    reads = 0.0
    for n, k in LINEARS.values():
        for a, b in ((M * k, n * k), (M * n, n * k), (M * n, M * k)):  # fwd, dgrad, wgrad
            reads += (a + b) * (elem + 1 / block)
    assert got[("forward", "aten._scaled_mm")][1] + got[("backward", "aten._scaled_mm")][1] == \
        LAYERS * reads


def _cache_bytes(recipe: str) -> int:
    """Persistent state: the weight's operands (both layouts) and, delayed, scales and
    histories (3 fwd + 2 bwd slots per linear)."""
    total = 0
    for n, k in LINEARS.values():
        w = n * k
        total += {"tensorwise": 2 * w + 4, "delayed": 2 * w + 4 + 3 * 4,
                  "rowwise": 2 * w + 4 * n + 4 * k, "mxfp8": 2 * w + 2 * w // 32,
                  "nvfp4": w + 2 * w // 16 + 2 * 4}[recipe] * LAYERS
    if recipe == "delayed":
        total += sum(HISTORY * s * T * 4 + 2 * s * T * 4 for s in (3, 2))
    return total


@pytest.mark.parametrize("dtype, recipe", CASES)
def test_weight_cache_memory(traces, dtype, recipe):
    cap = traces[(dtype, recipe)].capture
    assert cap.lowp_state_bytes == _cache_bytes(recipe or dtype)
    assert cap.lowp_params == sum(n * k for n, k in LINEARS.values()) * LAYERS


def test_without_the_cache_each_forward_casts_the_weight_and_saves_its_column_copy(traces):
    spec = _spec()
    policy = parse_precision("fp8", fp8_recipe="tensorwise", fp8_weight_cache=False)
    t = trace_model(spec, 1, S, policy)
    got = _tally(t.graph, lambda d: d["op"].startswith(LOWP))
    w = sum(n * k for n, k in LINEARS.values()) * LAYERS
    x = sum(M * k for _, k in LINEARS.values()) * LAYERS
    n_ops = len(LINEARS) * LAYERS
    assert got[("forward", LOWP + "amax")][:3] == [2 * n_ops, 2 * (w + x), 8 * n_ops]
    assert got[("forward", LOWP + "quantize")][:3] == [2 * n_ops, 2 * (w + x) + 4 * 2 * n_ops,
                                                       2 * (w + x) + 4 * 2 * n_ops]
    assert not any(phase == "optimizer" for phase, _ in got)
    assert t.capture.lowp_state_bytes == 0
    cached = sum(traces[("fp8", "tensorwise")].capture.saved.values())
    assert sum(t.capture.saved.values()) - cached == w + 4 * n_ops  # W's fp8 column + scale


# --- real casts on a CPU --------------------------------------------------------------------
def _real_step(dtype: str, recipe: str | None):
    """A converted linear run for real (forward and backward) under the test recorder."""
    from torch import nn

    from archcost.trace.lowp_linear import LowPrecisionLinears
    from tests._record import Recorder

    torch.manual_seed(0)
    model = nn.Module()
    model.blocks = nn.ModuleList([nn.Sequential(nn.Linear(128, 64, bias=False))])
    model = model.to(torch.bfloat16)
    policy = parse_precision(dtype, fp8_recipe=recipe, fp8_weight_cache=False)
    LowPrecisionLinears(model, ["blocks.0"], policy.low_precision, False)
    x = torch.randn(32, 128, dtype=torch.bfloat16, requires_grad=True)
    ref = x.detach().float() @ model.blocks[0][0].weight.detach().float().t()
    with Recorder(bind=True) as rec:
        y = model.blocks[0](x)
        y.float().pow(2).sum().backward()
    return rec.records, y, ref


@pytest.mark.parametrize("recipe", ["tensorwise", "delayed", "rowwise"])
def test_real_fp8_step_bytes_are_the_recipes(recipe):
    """A (32 x 128) @ (64 x 128)^T linear, forward and backward for real on a CPU: the casts'
    bytes recorded from the real tensors equal the recipe's closed form for x, W (cast each
    forward: no cache) and g, and the fp8 product is the bf16 one to fp8 accuracy."""
    records, y, ref = _real_step("fp8", recipe)
    m, n, k = 32, 64, 128
    want = [0, 0]
    for (r, c), weight in (((m, k), False), ((n, k), True), ((m, n), False)):
        for _, read, written in _casts(recipe, r, c, weight, cached=False):
            want[0] += read
            want[1] += written
    got = [0, 0]
    for r in records:
        if r.op.startswith(LOWP) or r.op == "aten.clone":
            cost = op_cost(r)
            got[0] += cost.bytes_read
            got[1] += cost.bytes_written
    assert got == want
    gemms = [r for r in records if r.op == "aten._scaled_mm"]
    assert sorted(op_cost(r).flops for r in gemms) == [2 * m * n * k] * 3
    assert (y.float() - ref).abs().max() / ref.abs().max() < 0.1  # e4m3 operands


@pytest.mark.parametrize("fmt, block, scale_dtype, elem_bytes",
                         [("float8_e4m3fn", 32, "float8_e8m0fnu", 1.0),
                          ("float4_e2m1fn_x2", 16, "float8_e4m3fn", 0.5)])
def test_real_block_casts(fmt, block, scale_dtype, elem_bytes):
    """MXFP8 / NVFP4 casts on a real (256, 128) tensor: outputs of the closed-form sizes (data,
    one scale byte per block), and the MX data times its scales gives the tensor back."""
    from archcost.trace.lowp_ops import amax, quantize

    torch.manual_seed(0)
    x = torch.randn(256, 128, dtype=torch.bfloat16)
    a = amax(x) if fmt.startswith("float4") else None
    for layout, (r, c) in (("row", (256, 128)), ("col", (128, 256))):
        out = quantize(x, a, None, fmt, block, scale_dtype, layout, False, False)
        assert out[0].numel() * out[0].element_size() == r * c * elem_bytes
        assert out[1].numel() * out[1].element_size() == r * c // block
        if fmt == "float8_e4m3fn":
            deq = out[0].float().reshape(r, c // block, block) * \
                out[1].float().reshape(r, c // block, 1)
            src = x.float() if layout == "row" else x.float().t()
            # E4M3 rounds to 1/16 relative; OCP's floor(log2 amax) - 8 scale clamps a block's
            # largest values from up to 512 X down to 448 X (1/8)
            err = (deq.reshape(r, c) - src).abs() / src.abs().amax()
            assert 0 < err.max() <= 0.125
