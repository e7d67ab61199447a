"""Inference weight compression: packed bytes by closed form, forwards against hand-dequantized
references, and the executed graph of a runtime that fuses the dequantization and the KV cache.

Ground truth: closed forms of the storage (n/2 bytes per int4 weight, one scale per group),
references decoded byte by byte in plain Python, torch's FlopCounterMode for the GEMM FLOPs.
"""

from __future__ import annotations

import dataclasses

import networkx as nx
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils.flop_counter import FlopCounterMode

from archcost.cost.fusion import executed_graph
from archcost.errors import ConfigError
from archcost.runtime import Fusion, load_runtime
from archcost.trace.capture import _install_module_hooks
from archcost.trace.fake import to_fake
from archcost.trace.graph import build_graph
from archcost.trace.quant import parse_weight_quant, quantize_linears
from archcost.trace.recorder import CaptureState, Recorder
from archcost.trace.repeats import RepeatTracker
from tests.conftest import MODELS

TRT = load_runtime("tensorrt-llm")


# --- parsing -------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, group, sparsity, words", [
    ("int3", 128, None, "unknown"),
    ("int4", 0, None, "group size"),
    ("int4", 33, None, "group size"),
    ("int8", 128, "1:4", "2:4"),
    ("int4", 128, "2:4", "not a kernel"),
])
def test_bad_weight_quantization_is_one_line_naming_the_fix(text, group, sparsity, words):
    with pytest.raises(ConfigError) as err:
        parse_weight_quant(text, group, sparsity)
    msg = str(err.value)
    assert words in msg and "\n" not in msg


def test_no_quantization_is_none_and_sparsity_alone_keeps_the_compute_dtype():
    assert parse_weight_quant(None, 128, None) is None
    q = parse_weight_quant(None, 128, "2:4")
    assert (q.scheme, q.sparsity) == ("none", "2:4")
    assert parse_weight_quant("FP8", 128, "2:4").scheme == "fp8"


# --- packed bytes: closed forms ------------------------------------------------------------------
def _llama_tiny():
    from archcost.loader import load_model_file

    spec = load_model_file(str(MODELS / "llama.py"), {"preset": "tiny"})
    return spec.build(1, 16)


def _block_linears(model):
    return {p: (m.out_features, m.in_features) for p, m in model.named_modules()
            if isinstance(m, nn.Linear) and p.startswith("layers.")}


@pytest.mark.parametrize("text, group, sparsity, per_linear", [
    # int4: two per byte + one bf16 scale per 16 weights
    ("int4", 16, None, lambda n, k: n * k // 2 + (n * k // 16) * 2),
    # int8 per channel: one byte each + one bf16 scale per output row
    ("int8", -1, None, lambda n, k: n * k + n * 2),
    # fp8: one byte each + the weight's and the input's fp32 scales
    ("fp8", 128, None, lambda n, k: n * k + 4 + 4),
    # fp8 2:4: half the values, 2 bits of position per kept value, the two scales
    ("fp8", 128, "2:4", lambda n, k: n * k // 2 + (n * k // 2) * 2 // 8 + 8),
    # bf16 2:4: half the values in bf16 + the positions
    (None, 128, "2:4", lambda n, k: (n * k // 2) * 2 + (n * k // 2) * 2 // 8),
])
def test_state_bytes_are_the_closed_form_of_the_packed_storage(text, group, sparsity, per_linear):
    model = _llama_tiny().to(torch.bfloat16)
    shapes = _block_linears(model)
    head = model.output
    quant = parse_weight_quant(text, group, sparsity)
    with FakeTensorMode(), torch.no_grad():  # as the capture runs it: on fake parameters
        to_fake(model, torch.bfloat16)
        state = quantize_linears(model, ["layers.0", "layers.1"], quant)
        assert state.state_bytes() == sum(per_linear(n, k) for n, k in shapes.values())
    assert state.params() == sum(n * k for n, k in shapes.values())
    assert set(state.linears) == set(shapes) and not state.kept
    # the head stays a compute-dtype linear; the converted weights left the parameters
    assert model.output is head
    names = {n for n, _ in model.named_parameters()}
    assert not any(p + ".weight" in names for p in shapes)
    assert "output.weight" in names


def test_a_linear_the_group_does_not_divide_stays_in_the_compute_dtype():
    model = _llama_tiny()
    state = quantize_linears(model, ["layers.0"], parse_weight_quant("int4", 32, None))
    # hidden 64 inputs divide into groups of 32; w2's ffn = 176 inputs do not
    assert set(state.kept) == {"layers.0.feed_forward.w2"}
    assert isinstance(model.layers[0].feed_forward.w2, nn.Linear)
    assert any("w2" in n for n in state.notes())


# --- forwards against hand-dequantized references ------------------------------------------------
def _nibble(b: int) -> int:
    return b - 16 if b >= 8 else b


def _int4_reference(packed: torch.Tensor, scales: torch.Tensor, group: int) -> torch.Tensor:
    rows = []
    for n, row in enumerate(packed.tolist()):
        vals = []
        for b in row:
            u = b & 0xFF
            vals += [_nibble(u & 0xF), _nibble(u >> 4)]
        rows.append([v * float(scales[n, j // group]) for j, v in enumerate(vals)])
    return torch.tensor(rows, dtype=torch.float64)


def _positions(meta: torch.Tensor) -> list[list[int]]:
    return [[(b >> (2 * j)) & 3 for b in row for j in range(4)] for row in meta.tolist()]


class _Block(nn.Module):
    """A linear whose input an op makes, as in a model (a norm, the embedding)."""

    def __init__(self, lin: nn.Linear):
        super().__init__()
        self.lin = lin

    def forward(self, x):
        return self.lin(torch.relu(x))


def _one_linear(n=48, k=64, bias=True, dtype=torch.float32):
    torch.manual_seed(0)
    root = nn.Module()
    root.block = _Block(nn.Linear(k, n, bias=bias).to(dtype))
    return root


@pytest.mark.parametrize("scheme,sparsity", [("int4", None), ("int8", None), ("fp8", None),
                                             ("none", "2:4")])
def test_a_converted_linears_weight_is_its_dense_form(scheme, sparsity):
    """Model code that reads ``lin.weight`` outside the forward (DeepSeek's absorbed attention)
    gets the dense weight the packed state holds: what the forward multiplies by (int4, int8,
    2:4: ``F.linear`` on it equals the forward), fp8's within one E4M3 step of the original."""
    root = _one_linear()
    w = root.block.lin.weight.detach().clone()
    quant = parse_weight_quant(None if scheme == "none" else scheme, 32, sparsity)
    state = quantize_linears(root, ["block"], quant)
    lin = state.linears["block.lin"]
    dense = lin.weight
    assert dense.shape == w.shape and dense.dtype == w.dtype
    x = torch.randn(2, 3, 64)
    if scheme == "fp8":
        assert ((dense - w).abs() <= w.abs() / 8 + lin.state["weight_scale"]).all()
    else:
        torch.testing.assert_close(F.linear(x, dense, lin.bias), lin(x))


def test_int4_forward_equals_the_weight_decoded_byte_by_byte():
    root = _one_linear()
    w = root.block.lin.weight.detach().clone()
    b = root.block.lin.bias.detach().clone()
    state = quantize_linears(root, ["block"], parse_weight_quant("int4", 32, None))
    lin = state.linears["block.lin"]
    wd = _int4_reference(lin.state["weight"], lin.state["scales"], 32)
    x = torch.randn(2, 3, 64)
    torch.testing.assert_close(root.block.lin(x).double(), x.double() @ wd.T + b.double(),
                               rtol=1e-5, atol=1e-5)
    # symmetric round-to-nearest: every weight within half a step of its group's scale
    step = lin.state["scales"].double().repeat_interleave(32, dim=1)
    assert ((wd - w.double()).abs() <= step / 2 + 1e-6).all()


def test_int8_per_channel_forward_equals_the_hand_dequantized_weight():
    root = _one_linear()
    b = root.block.lin.bias.detach().clone()
    state = quantize_linears(root, ["block"], parse_weight_quant("int8", -1, None))
    lin = state.linears["block.lin"]
    q, s = lin.state["weight"].tolist(), lin.state["scales"].tolist()  # (N, K), (N, 1)
    wd = torch.tensor([[v * s[n][0] for v in row] for n, row in enumerate(q)],
                      dtype=torch.float64)
    x = torch.randn(5, 64)
    torch.testing.assert_close(root.block.lin(x).double(), x.double() @ wd.T + b.double(),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("sparsity", [None, "2:4"])
def test_fp8_forward_equals_the_scaled_fp8_product(sparsity):
    root = _one_linear()
    w = root.block.lin.weight.detach().clone()
    b = root.block.lin.bias.detach().clone()
    state = quantize_linears(root, ["block"], parse_weight_quant("fp8", 128, sparsity))
    lin = state.linears["block.lin"]
    sw, sx = float(lin.state["weight_scale"]), float(lin.state["input_scale"])
    vals = lin.state["weight"].float().double() * sw  # kept values (N, K/2) or (N, K)
    if sparsity:
        wd = torch.zeros(48, 64, dtype=torch.float64)
        for n, pos in enumerate(_positions(lin.state["meta"])):
            for j, p in enumerate(pos):
                wd[n, 4 * (j // 2) + p] = vals[n, j]
        # the two kept weights of each four are its two largest in magnitude
        kept = w.abs().view(48, 16, 4).topk(2, dim=-1).values.sum(-1)
        assert torch.allclose((wd != 0).double().view(48, 16, 4).mul(
            w.abs().double().view(48, 16, 4)).sum(-1), kept.double())
    else:
        wd = vals
    x = torch.randn(4, 64)
    xq = (x / sx).clamp(-448, 448).to(torch.float8_e4m3fn).double() * sx
    torch.testing.assert_close(root.block.lin(x).double(), xq @ wd.T + b.double(),
                               rtol=1e-4, atol=1e-4)


def test_bf16_2_4_forward_scatters_the_kept_values_back():
    root = _one_linear(bias=False)
    w = root.block.lin.weight.detach().clone()
    state = quantize_linears(root, ["block"], parse_weight_quant(None, 128, "2:4"))
    lin = state.linears["block.lin"]
    vals = lin.state["weight"].double()
    wd = torch.zeros(48, 64, dtype=torch.float64)
    for n, pos in enumerate(_positions(lin.state["meta"])):
        for j, p in enumerate(pos):
            wd[n, 4 * (j // 2) + p] = vals[n, j]
    assert ((wd == 0) | (wd == w.double())).all()
    assert ((wd != 0).view(48, 16, 4).sum(-1) <= 2).all()
    x = torch.randn(3, 64)
    # an fp32 forward against the float64 product, at fp32's tolerance (the CPU's kernel sums
    # 64 products in its own order: 2.4e-7 apart on one AVX-512 server)
    torch.testing.assert_close(root.block.lin(x), (x.double() @ wd.T).float())


# --- pricing: the executed graph under a fusing runtime ------------------------------------------
def _graph(model, *args):
    st = CaptureState(RepeatTracker.empty())
    handles = _install_module_hooks(model, st)
    try:
        with torch.no_grad(), Recorder(st):
            model(*args)
    finally:
        for h in handles:
            h.remove()
    classes = {p: type(m).__name__ for p, m in model.named_modules()}
    return build_graph(st.records, {"module_classes": classes})


def _moved(g, nodes):
    return sum(g.nodes[n]["bytes_read"] + g.nodes[n]["bytes_written"] for n in nodes)


def test_a_fused_int4_linear_reads_the_packed_weight_and_keeps_the_gemms_flops():
    m, n, k, group = 8, 48, 64, 32
    root = _one_linear(n, k, bias=False, dtype=torch.bfloat16)
    state = quantize_linears(root, ["block"], parse_weight_quant("int4", group, None))
    x = torch.randn(m, k, dtype=torch.bfloat16)
    with FlopCounterMode(display=False) as fc:
        root.block.lin(x)
    gemm_flops = fc.get_total_flops()
    assert gemm_flops == 2 * m * n * k
    g = _graph(root.block, x)
    lin_nodes = [v for v, d in g.nodes(data=True) if d["module"] == "lin"]
    ex = executed_graph(g, TRT)
    mm = [v for v in lin_nodes if g.nodes[v]["op_class"] == "matmul"]
    assert len(mm) == 1 and ex.nodes[mm[0]]["launches"] == 1
    assert sum(ex.nodes[v]["launches"] for v in lin_nodes if v != mm[0]
               if g.nodes[v]["bytes_read"] + g.nodes[v]["bytes_written"]) == 0
    packed, scales = n * k // 2, (n * k // group) * 2
    assert state.state_bytes() == packed + scales
    activations = m * k * 2 + m * n * 2  # x read, y written (bf16)
    fused = _moved(ex, lin_nodes)
    assert packed + scales + activations <= fused <= packed + scales + activations + 16
    assert fused < _moved(g, lin_nodes) / 3  # unfused: the bf16 weight written and read back
    # FLOPs: the GEMM's and its shape; the unpacking (shifts and the scale multiply, 3 a
    # weight, per weight not per token) overlapped inside the kernel
    assert sum(g.nodes[v]["flops"] for v in lin_nodes) == gemm_flops + 3 * n * k
    assert sum(ex.nodes[v]["flops"] for v in lin_nodes) == gemm_flops
    assert ex.nodes[mm[0]]["flops"] == gemm_flops
    # eager runs every op of the chain as its own kernel
    eager = executed_graph(g, load_runtime("eager"))
    assert _moved(eager, lin_nodes) == _moved(g, lin_nodes)


def test_a_fused_2_4_fp8_gemm_is_marked_sparse_and_reads_values_and_metadata():
    m, n, k = 8, 48, 64
    root = _one_linear(n, k, bias=False, dtype=torch.bfloat16)
    quantize_linears(root, ["block"], parse_weight_quant("fp8", 128, "2:4"))
    x = torch.randn(m, k, dtype=torch.bfloat16)
    g = _graph(root.block, x)
    ex = executed_graph(g, TRT)
    gemm = [v for v, d in g.nodes(data=True) if d["op"] == "aten._scaled_mm"]
    assert len(gemm) == 1
    d = ex.nodes[gemm[0]]
    assert d.get("sparsity") == "2:4"
    # kept fp8 values + 2-bit positions + the two scales + the fp8 input, bf16 output
    weight = n * k // 2 + n * k // 8 + 4 + 4
    assert weight + m * k + m * n * 2 <= d["bytes_read"] + d["bytes_written"] \
        <= weight + m * k + m * n * 2 + 16
    assert "sparsity" not in executed_graph(g, load_runtime("eager")).nodes[gemm[0]]


# --- the KV cache: casts inside the attention kernel ---------------------------------------------
class _CachedAttention(nn.Module):
    """One attention layer following the inference convention: cast on cache write and read."""

    def __init__(self, dim=64, heads=4):
        super().__init__()
        self.heads, self.hd = heads, dim // heads
        self.wqkv = nn.Linear(dim, 3 * dim, bias=False)

    def forward(self, x, cache, start_pos):
        B, T, _ = x.shape
        q, k, v = self.wqkv(x).view(B, T, 3, self.heads, self.hd).permute(2, 0, 3, 1, 4)
        kc, vc = cache  # (B, H, max_len, hd)
        kc[:, :, start_pos:start_pos + T] = k.to(kc.dtype)
        vc[:, :, start_pos:start_pos + T] = v.to(vc.dtype)
        keys = kc[:, :, :start_pos + T].to(q.dtype)  # (B, H, L, hd)
        values = vc[:, :, :start_pos + T].to(q.dtype)
        return F.scaled_dot_product_attention(q, keys, values)  # T == 1: no mask


def _attention_read(cache_dtype, runtime):
    torch.manual_seed(0)
    att = _CachedAttention().to(torch.bfloat16)
    B, L = 2, 40
    cache = [torch.zeros(B, 4, L + 1, 16, dtype=cache_dtype) for _ in range(2)]
    g = _graph(att, torch.randn(B, 1, 64, dtype=torch.bfloat16), cache, L)
    ex = executed_graph(g, runtime)
    (a,) = [v for v, d in g.nodes(data=True) if d["op_class"] == "attention"]
    return ex.nodes[a]["bytes_read"], B * 4 * 1 * 16 * 2, B * 4 * (L + 1) * 16  # q bytes, K elems


def test_an_fp8_cache_halves_what_the_fused_attention_reads():
    bf16, q, kv = _attention_read(torch.bfloat16, TRT)
    fp8, _, _ = _attention_read(torch.float8_e4m3fn, TRT)
    assert bf16 - q == 2 * kv * 2  # K and V of L+1 tokens in bf16
    assert fp8 - q == 2 * kv * 1  # read in their fp8 storage
    # without the fusion the attention reads the casts' bf16 copies
    unfused, _, _ = _attention_read(torch.float8_e4m3fn, load_runtime("eager"))
    assert unfused == bf16


def test_the_tensorrt_llm_runtime_fuses_what_its_sources_say():
    assert {Fusion.DEQUANT, Fusion.KV_CACHE, Fusion.ROPE, Fusion.NORM} <= TRT.fusions


# --- 2:4 sparse GEMMs at the profile's sparse peak -----------------------------------------------
class _WithSpeedup:
    """A GPU profile that also states a 2:4 sparsity speedup (as a profile field would)."""

    def __init__(self, gpu, speedup: float):
        self._gpu, self.sparsity_speedup = gpu, speedup

    def __getattr__(self, name):
        return getattr(self._gpu, name)


def test_a_sparse_gemm_runs_at_the_sparse_peak_or_the_dense_one_with_a_note():
    from types import SimpleNamespace

    from archcost.cost.compute import compute_times, lower
    from archcost.hardware.profile import load_gpu
    from archcost.hardware.sparsity import sparse_speedup

    # A100 whitepaper: 2:4 sparse tensor cores run at twice the dense rate
    a100 = SimpleNamespace(name="a100", peak_flops_per_s={"bf16": 312e12},
                           sparse_peak_flops_per_s={"bf16": 624e12})
    assert sparse_speedup(a100, "bf16") == (2.0, None)
    factor, note = sparse_speedup(a100, "fp8")
    assert factor == 1.0 and "dense peak" in note

    root = _one_linear(48, 64, bias=False, dtype=torch.bfloat16)
    quantize_linears(root, ["block"], parse_weight_quant("fp8", 128, "2:4"))
    g = _graph(root.block, torch.randn(8, 64, dtype=torch.bfloat16))
    arrays = lower(executed_graph(g, TRT))
    (i,) = [j for j, op in enumerate(arrays.op) if op == "aten._scaled_mm"]
    # the profile's own sparse peaks set aside: the accessor's fallback and _WithSpeedup's 2x
    gpu = dataclasses.replace(load_gpu("h100-sxm"), sparse_peak_flops_per_s={})
    dense = compute_times(arrays, gpu).peak_used[i]
    assert dense == gpu.peak_flops_per_s["fp8"]
    assert compute_times(arrays, _WithSpeedup(gpu, 2.0)).peak_used[i] == 2 * dense
    # the same GEMM unfused (eager) is a dense one
    eager = lower(executed_graph(g, load_runtime("eager")))
    assert compute_times(eager, _WithSpeedup(gpu, 2.0)).peak_used[i] == dense


def test_the_plan_tables_price_a_sparse_gemm_at_the_sparse_peak():
    from archcost.hardware.profile import load_gpu
    from archcost.plan.table import _peaks
    from archcost.plan.workload import _op_table

    root = _one_linear(48, 64, bias=False, dtype=torch.bfloat16)
    quantize_linears(root, ["block"], parse_weight_quant("fp8", 128, "2:4"))
    g = executed_graph(_graph(root.block, torch.randn(8, 64, dtype=torch.bfloat16)), TRT)
    ops, _ = _op_table(g, (), 1, 64, 64, [])
    (i,) = [j for j, op in enumerate(ops.op) if op == "aten._scaled_mm"]
    gpu = dataclasses.replace(load_gpu("h100-sxm"), sparse_peak_flops_per_s={})
    assert ops.sparse[i] and ops.sparse.sum() == 1
    assert _peaks(ops, gpu)[i] == gpu.peak_flops_per_s["fp8"]  # no sparse rate stated
    assert _peaks(ops, _WithSpeedup(gpu, 2.0))[i] == 2 * gpu.peak_flops_per_s["fp8"]


# --- a whole model, on fake tensors as the capture runs it ---------------------------------------
def test_a_fake_llama_forward_fuses_every_block_linear_and_leaves_the_head_alone():
    model = _llama_tiny().to(torch.bfloat16)
    shapes = _block_linears(model)
    with FakeTensorMode(), torch.no_grad():
        to_fake(model, torch.bfloat16)
        state = quantize_linears(model, ["layers.0", "layers.1"],
                                 parse_weight_quant("int4", 16, None))
        g = _graph(model, torch.zeros(2, 8, dtype=torch.long))
    ex = executed_graph(g, TRT)
    mms = {d["module"]: v for v, d in g.nodes(data=True) if d["op_class"] == "matmul"}
    assert set(shapes) | {"output"} <= set(mms)
    tokens = 2 * 8
    for path, (n, k) in shapes.items():
        if path.rpartition(".")[2] in ("wq", "wk", "wv"):
            continue  # one GEMM (qkv): test_the_qkv_projections_run_as_one_gemm_reading_the_input_once
        d = ex.nodes[mms[path]]
        assert d["flops"] == 2 * tokens * n * k  # the GEMM's (the unpacking overlapped)
        packed = n * k // 2 + (n * k // 16) * 2
        act = tokens * (k + n) * 2
        assert packed + act <= d["bytes_read"] + d["bytes_written"] <= packed + act + 16
    for layer in ("layers.0", "layers.1"):  # the merged projections: packed weights, x once
        qkv = [shapes[f"{layer}.attention.{w}"] for w in ("wq", "wk", "wv")]
        n, k = sum(s[0] for s in qkv), qkv[0][1]
        d = ex.nodes[mms[f"{layer}.attention.wq"]]
        assert d["flops"] == 2 * tokens * n * k
        packed = n * k // 2 + (n * k // 16) * 2
        act = tokens * (k + n) * 2
        assert packed + act <= d["bytes_read"] + d["bytes_written"] <= packed + act + 3 * 16
    head = ex.nodes[mms["output"]]
    assert head["flops"] == g.nodes[mms["output"]]["flops"]  # the head: an ordinary bf16 GEMM
    assert state.params() == sum(n * k for n, k in shapes.values())


@pytest.mark.parametrize("dtype, itemsize", [(torch.bfloat16, 2), (torch.float32, 4)])
def test_the_qkv_projections_run_as_one_gemm_reading_the_input_once(dtype, itemsize):
    """TensorRT-LLM's one ``qkv`` linear: the query, key and value GEMMs of an attention module
    (grouped-query widths) as one GEMM of their widths side by side, FLOPs by FlopCounterMode,
    bytes by closed form (weights, the input once, the outputs); the gated FFN's two GEMMs on
    one input (not an attention module) stay apart, and eager runs all of them alone."""
    from archcost.cost.compute import op_mnk

    model = _llama_tiny().to(dtype)
    shapes = _block_linears(model)
    tokens = 2 * 8
    counted = {}  # FLOPs torch counts for each projection on `tokens` rows of its input
    for path, mod in model.named_modules():
        if path.rpartition(".")[2] in ("wq", "wk", "wv"):
            with FlopCounterMode(display=False) as fc, torch.no_grad():
                mod(torch.randn(tokens, mod.in_features, dtype=dtype))
            counted[path] = fc.get_total_flops()
    with FakeTensorMode(), torch.no_grad():
        to_fake(model, dtype)
        g = _graph(model, torch.zeros(2, 8, dtype=torch.long))
    ex = executed_graph(g, TRT)
    mms = {d["module"]: v for v, d in g.nodes(data=True) if d["op_class"] == "matmul"}
    for layer in ("layers.0", "layers.1"):
        att = [f"{layer}.attention.{w}" for w in ("wq", "wk", "wv")]
        n, k = sum(shapes[a][0] for a in att), shapes[att[0]][1]
        assert shapes[att[1]][0] < shapes[att[0]][0]  # grouped-query: narrower keys, values
        first = ex.nodes[mms[att[0]]]
        assert first["launches"] == 1 and first["gemm_shape"] == [tokens, n]
        assert op_mnk(first) == (tokens, n, k)
        assert first["flops"] == sum(counted[a] for a in att) == 2 * tokens * n * k
        assert first["bytes_read"] + first["bytes_written"] == (n * k + tokens * k
                                                                + tokens * n) * itemsize
        for a in att[1:]:
            d = ex.nodes[mms[a]]
            assert (d["launches"], d["flops"], d["bytes_read"], d["bytes_written"]) == (0, 0, 0, 0)
        for w in ("w1", "w3"):  # one input, two GEMMs, but a feed-forward module: apart
            path = f"{layer}.feed_forward.{w}"
            assert ex.nodes[mms[path]]["launches"] == 1 and "gemm_shape" not in ex.nodes[mms[path]]
    eager = executed_graph(g, load_runtime("eager"))
    assert all(eager.nodes[v]["launches"] == 1 and "gemm_shape" not in eager.nodes[v]
               for v in mms.values())


def test_the_fp8_input_cast_is_one_kernel_reading_bf16_and_writing_fp8():
    m, n, k = 8, 48, 64
    root = _one_linear(n, k, bias=False, dtype=torch.bfloat16)
    quantize_linears(root, ["block"], parse_weight_quant("fp8", 128, None))
    g = _graph(root.block, torch.randn(m, k, dtype=torch.bfloat16))
    ex = executed_graph(g, TRT)
    (gemm,) = [v for v, d in g.nodes(data=True) if d["op"] == "aten._scaled_mm"]
    # what the GEMM's input passes through in the linear (reshape, divide, clamp, convert)
    cast = [v for v in nx.ancestors(g, gemm) if g.nodes[v]["module"] == "lin" and g.in_degree(v)]
    assert {g.nodes[v]["op"] for v in cast} >= {"aten.div", "aten.clamp", "aten._to_copy"}
    assert sum(ex.nodes[v]["launches"] for v in cast) == 1
    # x in bf16 and its fp32 scale read, the E4M3 copy written
    assert _moved(ex, cast) == m * k * 2 + 4 + m * k


@pytest.mark.parametrize("text, group, sparsity", [
    ("int8", -1, None), ("fp8", 128, None), ("fp8", 128, "2:4"), (None, 128, "2:4")])
def test_every_scheme_runs_on_fake_tensors_and_only_2_4_gemms_are_sparse(text, group, sparsity):
    model = _llama_tiny().to(torch.bfloat16)
    with FakeTensorMode(), torch.no_grad():
        to_fake(model, torch.bfloat16)
        state = quantize_linears(model, ["layers.0", "layers.1"],
                                 parse_weight_quant(text, group, sparsity))
        g = _graph(model, torch.zeros(2, 8, dtype=torch.long))
    ex = executed_graph(g, TRT)
    sparse = {d["module"] for _, d in ex.nodes(data=True) if d.get("sparsity") == "2:4"}
    assert sparse == (set(state.linears) if sparsity else set())
    assert len(state.linears) == 14  # 7 linears in each of the 2 blocks


@pytest.mark.parametrize("weights", ["int4", "int8"])
def test_weight_only_decode_does_the_bf16_flops_at_any_batch(weights):
    """Under a runtime that unpacks weights inside the GEMM (tensorrt-llm), a decode step of
    64 sequences does the FLOPs of the bf16 step (2 x the linears' weights x 64 + attention:
    the unpacking is per weight, not per token) and reads fewer bytes, so it is no slower."""
    from functools import partial

    from archcost.cli.infer import one_replica_cluster
    from archcost.infer.capture import InferStep
    from archcost.infer.price import InferenceCosts
    from archcost.loader import load_model_file
    from archcost.trace.precision import parse_precision

    spec = load_model_file(str(MODELS / "llama.py"), {"preset": "tiny"})

    def costs(quant):
        return InferenceCosts(spec, one_replica_cluster("h100-sxm", 1), parse_precision("bf16"),
                              TRT, build_len=64, quantize=quant)

    step = InferStep.decode(1, 40)
    bf16 = costs(None)
    packed = costs(partial(quantize_linears, quant=parse_weight_quant(weights, 16)))
    one, two = (c.work(64, step) for c in (bf16, packed))
    assert two["flops_per_gpu"] == pytest.approx(one["flops_per_gpu"], rel=1e-9)
    assert two["bytes_per_gpu"] < one["bytes_per_gpu"]
    assert packed.step(64, step)["seconds"] <= bf16.step(64, step)["seconds"]


def test_an_unpacked_weight_is_held_only_where_the_runtime_materializes_it():
    """Eager PyTorch unpacks an int4 weight into a bf16 tensor before its GEMM: the transient
    memory holds it (at most the largest linear's bf16 weight more than bf16's); a runtime that
    unpacks inside the GEMM (tensorrt-llm) never allocates it: the same transient as bf16."""
    from functools import partial

    from archcost.cli.infer import one_replica_cluster
    from archcost.infer.capture import InferStep
    from archcost.infer.price import InferenceCosts
    from archcost.loader import load_model_file
    from archcost.trace.precision import parse_precision

    spec = load_model_file(str(MODELS / "llama.py"), {"preset": "tiny"})
    step, quant = InferStep.decode(1, 20), partial(quantize_linears,
                                                   quant=parse_weight_quant("int4", 16))

    def held(runtime, q):
        return InferenceCosts(spec, one_replica_cluster("h100-sxm", 1), parse_precision("bf16"),
                              runtime, build_len=64, quantize=q).activation_bytes(1, step)

    for runtime in (TRT, load_runtime("eager")):
        base, packed = held(runtime, None), held(runtime, quant)
        if runtime is TRT:
            assert packed == base
        else:
            largest = 176 * 64 * 2  # the MLP's bf16 weight (ffn 176 x hidden 64)
            assert base < packed <= base + 3 * largest
