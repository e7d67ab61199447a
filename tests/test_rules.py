"""Op rules against outside ground truth.

FLOPs of matrix products, convolutions and attention are compared with
``torch.utils.flop_counter.FlopCounterMode`` per op on small real CPU runs (and on the meta
device for the CUDA-only attention kernels); causal attention must be exactly half of it.
Where FlopCounterMode has no formula (the CPU flash kernel) the oracle is flop_counter's own
``sdpa_flop``/``sdpa_backward_flop`` mapped onto the kernel, plus the closed form 4*B*H*S^2*D.
Bytes and the remaining conventions are checked on real recorded ops and hand-built records.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils import flop_counter

from archcost.trace.records import OpClass, OpRecord, Phase, TensorMeta
from archcost.trace.rules import OpCost, classify, has_flop_rule, op_cost
from archcost.trace.rules_base import POSITIONS, RULES, register
from tests._record import flops_by_op, record, run_both

aten = torch.ops.aten
RULES_DIR = Path(__file__).resolve().parent.parent / "archcost" / "trace"


def assert_matches(fn, ops, bind=False, custom_mapping=None):
    """Our FLOPs equal FlopCounterMode's for every op it counts; ``ops`` must be among them."""
    theirs, records = run_both(fn, bind, custom_mapping)
    ours = flops_by_op(records, op_cost)
    assert set(ops) <= set(theirs), (ops, theirs)
    for op, n in theirs.items():
        assert ours[op] == n, (op, ours[op], n)
    return ours, records


def one(records, op) -> OpRecord:
    found = [r for r in records if r.op == op]
    assert len(found) == 1, [r.op for r in records]
    return found[0]


# --- matrix products --------------------------------------------------------------------------
def test_matmul_ops_equal_flop_counter_mode():
    a, b, bias = torch.randn(5, 7), torch.randn(7, 3), torch.randn(3)
    x, y, c = torch.randn(4, 5, 7), torch.randn(4, 7, 3), torch.randn(4, 5, 3)

    def fn():
        aten.mm(a, b)
        aten.addmm(bias, a, b)
        aten.bmm(x, y)
        aten.baddbmm(c, x, y, beta=0.5, alpha=2.0)

    ours, _ = assert_matches(fn, ["aten.mm", "aten.addmm", "aten.bmm", "aten.baddbmm"])
    assert ours["aten.mm"] == 2 * 5 * 7 * 3  # closed form besides


@pytest.mark.parametrize("bind", [False, True])
def test_linear_forward_and_backward_equal_flop_counter_mode(bind):
    lin = torch.nn.Linear(6, 4)
    x = torch.randn(3, 5, 6, requires_grad=True)
    assert_matches(lambda: lin(x).sum().backward(), ["aten.addmm", "aten.mm"], bind)


def test_matrix_vector_and_dot_are_two_flops_per_multiply_add():
    m, v, c = torch.randn(6, 4), torch.randn(4), torch.randn(6)
    recs = record(lambda: (aten.mv(m, v), aten.dot(v, v), aten.addmv(c, m, v)))
    assert [op_cost(r).flops for r in recs] == [2 * 6 * 4, 2 * 4, 2 * 6 * 4]
    assert all(op_cost(r).op_class is OpClass.MATMUL for r in recs)


# --- convolution ------------------------------------------------------------------------------
CONVS = {
    # name: (module, input shape)
    "2d": (lambda: torch.nn.Conv2d(4, 6, 3), (2, 4, 9, 9)),
    "2d_stride_pad_dilation": (lambda: torch.nn.Conv2d(4, 6, 3, stride=2, padding=2, dilation=2),
                               (2, 4, 11, 10)),
    "2d_groups_no_bias": (lambda: torch.nn.Conv2d(6, 9, (3, 2), groups=3, bias=False),
                          (2, 6, 8, 8)),
    "depthwise": (lambda: torch.nn.Conv2d(4, 4, 3, padding=1, groups=4), (1, 4, 7, 7)),
    "1d": (lambda: torch.nn.Conv1d(3, 5, 4, stride=3), (2, 3, 20)),
    "3d": (lambda: torch.nn.Conv3d(2, 3, 2), (1, 2, 4, 5, 4)),
    "transposed": (lambda: torch.nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1,
                                                    output_padding=1), (2, 4, 5, 5)),
    "transposed_groups": (lambda: torch.nn.ConvTranspose2d(4, 6, 2, stride=2, groups=2),
                          (1, 4, 3, 4)),
}


@pytest.mark.parametrize("input_grad", [True, False])
@pytest.mark.parametrize("name", sorted(CONVS))
def test_convolution_forward_and_backward_equal_flop_counter_mode(name, input_grad):
    make, shape = CONVS[name]
    torch.manual_seed(0)
    conv = make()
    x = torch.randn(*shape, requires_grad=input_grad)
    ours, recs = assert_matches(lambda: conv(x).sum().backward(),
                                ["aten.convolution", "aten.convolution_backward"],
                                bind=input_grad)
    bwd = one(recs, "aten.convolution_backward")
    mask = bwd.args[10]
    assert list(mask) == [input_grad, True, conv.bias is not None]


def test_convolution_backward_counts_only_requested_gradients():
    x, w, g = torch.randn(2, 3, 8, 8), torch.randn(5, 3, 3, 3), torch.randn(2, 5, 6, 6)
    fwd = 2 * 2 * 36 * 27 * 5  # N * out pixels * (C_in * kH * kW) * C_out * 2

    def grads(mask):
        recs = record(lambda: aten.convolution_backward(g, x, w, [5], [1, 1], [0, 0], [1, 1],
                                                        False, [0, 0], 1, mask))
        return op_cost(recs[0]).flops

    assert grads([False, True, False]) == fwd  # grad_weight
    assert grads([True, False, False]) == fwd  # grad_input: the same multiply-adds
    assert grads([True, True, True]) == 2 * fwd  # grad_bias: a reduction, not counted
    assert grads([False, False, True]) == 0


# --- attention --------------------------------------------------------------------------------
# flop_counter's own formulas (its registered ones are already shape-wrapped: use the counts)
CPU_FLASH = {
    aten._scaled_dot_product_flash_attention_for_cpu:
        lambda q, k, v, *a, out_shape=None, **kw: flop_counter.sdpa_flop_count(q, k, v),
    aten._scaled_dot_product_flash_attention_for_cpu_backward:
        lambda g, q, k, v, *a, out_shape=None, **kw: flop_counter.sdpa_backward_flop_count(
            g, q, k, v),
}
FLASH_CPU = "aten._scaled_dot_product_flash_attention_for_cpu"


def _qkv(b, hq, hkv, s, d, dv=None, grad=True):
    torch.manual_seed(0)
    q = torch.randn(b, hq, s, d, requires_grad=grad)
    k = torch.randn(b, hkv, s, d, requires_grad=grad)
    v = torch.randn(b, hkv, s, dv or d, requires_grad=grad)
    return q, k, v


@pytest.mark.parametrize("bind", [False, True])
@pytest.mark.parametrize("hq, hkv", [(4, 4), (4, 2), (6, 1)])
def test_cpu_flash_attention_equals_flop_counter_formula_and_closed_form(hq, hkv, bind):
    b, s, d = 2, 16, 8
    q, k, v = _qkv(b, hq, hkv, s, d)

    def step(causal):
        return lambda: F.scaled_dot_product_attention(
            q, k, v, is_causal=causal, enable_gqa=hq != hkv).sum().backward()

    theirs, recs = run_both(step(False), bind, CPU_FLASH)
    ours = flops_by_op(recs, op_cost)
    full = 4 * b * hq * s * s * d  # closed form, query heads under GQA
    assert ours[FLASH_CPU] == theirs[FLASH_CPU] == full
    assert ours[FLASH_CPU + "_backward"] == theirs[FLASH_CPU + "_backward"] == full * 5 // 2

    theirs, recs = run_both(step(True), bind, CPU_FLASH)
    ours = flops_by_op(recs, op_cost)
    assert 2 * ours[FLASH_CPU] == theirs[FLASH_CPU]
    assert 2 * ours[FLASH_CPU + "_backward"] == theirs[FLASH_CPU + "_backward"]
    assert op_cost(one(recs, FLASH_CPU)).op_class is OpClass.ATTENTION


def test_cpu_flash_kernel_has_no_flop_counter_formula_but_has_a_rule():
    q, k, v = _qkv(1, 2, 2, 8, 4, grad=False)
    theirs, recs = run_both(lambda: F.scaled_dot_product_attention(q, k, v))
    assert FLASH_CPU not in theirs  # REFERENCES.md: "attention counts 0 on CPU"
    assert op_cost(one(recs, FLASH_CPU)).flops == 4 * 2 * 8 * 8 * 4


def test_math_attention_with_repeated_heads_equals_flop_counter_mode():
    q, k, v = _qkv(2, 4, 2, 8, 8, dv=4)
    k, v = k.repeat_interleave(2, dim=1), v.repeat_interleave(2, dim=1)  # GQA by repetition

    def fn():
        with sdpa_kernel(SDPBackend.MATH):
            F.scaled_dot_product_attention(q, k, v, is_causal=True).sum().backward()

    ours, _ = assert_matches(fn, ["aten.bmm"])
    # the math path counts the masked scores in full: QK^T and PV, then 2x that backward
    assert ours["aten.bmm"] == 3 * 2 * 2 * 4 * 8 * 8 * (8 + 4)


def _meta(*shape):
    return torch.empty(*shape, device="meta")


B, H, S, D = 2, 4, 8, 16
QKV_META = [_meta(B, H, S, D) for _ in range(5)]  # q, k, v, out, grad_out (B, H, S, D)
BSHD_META = [t.transpose(1, 2) for t in QKV_META]  # (B, S, H, D) views
_SDPA_CALLS = {
    "aten._scaled_dot_product_flash_attention": lambda c: aten._scaled_dot_product_flash_attention(
        *QKV_META[:3], 0.0, c),
    "aten._scaled_dot_product_flash_attention_backward":
        lambda c: aten._scaled_dot_product_flash_attention_backward(
            QKV_META[4], *QKV_META[:4], _meta(B, H, S), None, None, S, S, 0.0, c, _meta(2),
            _meta(())),
    "aten._scaled_dot_product_efficient_attention":
        lambda c: aten._scaled_dot_product_efficient_attention(*QKV_META[:3], None, True, 0.0, c),
    "aten._scaled_dot_product_efficient_attention_backward":
        lambda c: aten._scaled_dot_product_efficient_attention_backward(
            QKV_META[4], *QKV_META[:3], None, QKV_META[3], _meta(B, H, 32), _meta(()), _meta(()),
            0.0, [True, True, True, False], c),
    "aten._scaled_dot_product_cudnn_attention":
        lambda c: aten._scaled_dot_product_cudnn_attention(*QKV_META[:3], None, True, 0.0, c),
    "aten._scaled_dot_product_cudnn_attention_backward":
        lambda c: aten._scaled_dot_product_cudnn_attention_backward(
            QKV_META[4], *QKV_META[:4], _meta(B, H, S, 1), _meta(()), _meta(()), None, None, None,
            S, S, 0.0, c),
}


@pytest.mark.parametrize("bind", [False, True])
@pytest.mark.parametrize("op", sorted(_SDPA_CALLS))
def test_cuda_attention_kernels_on_meta_equal_flop_counter_mode_and_half_when_causal(op, bind):
    theirs, recs = run_both(lambda: _SDPA_CALLS[op](False), bind)
    assert op_cost(one(recs, op)).flops == theirs[op]
    theirs, recs = run_both(lambda: _SDPA_CALLS[op](True), bind)
    assert 2 * op_cost(one(recs, op)).flops == theirs[op]
    full = 4 * B * H * S * S * D
    assert theirs[op] == (full * 5 // 2 if op.endswith("backward") else full)


def test_flash_and_efficient_forward_read_the_bshd_layout():
    """(B, S, H, D) kernels. With H == S FlopCounterMode agrees; with H != S it reads the layout
    as (B, H, S, D) (torch 2.13), so the closed form is the oracle."""
    for h, s in [(8, 8), (4, 8)]:
        q = _meta(B, s, h, D)
        calls = {
            "aten._flash_attention_forward":
                lambda causal, q=q, s=s: aten._flash_attention_forward(
                    q, q, q, None, None, s, s, 0.0, causal, False),
            "aten._efficient_attention_forward":
                lambda causal, q=q, s=s: aten._efficient_attention_forward(
                    q, q, q, None, None, None, s, s, 0.0, int(causal), True),
        }
        for op, call in calls.items():
            theirs, recs = run_both(lambda call=call: call(False))
            ours = op_cost(one(recs, op)).flops
            assert ours == 4 * B * h * s * s * D
            assert (ours == theirs[op]) is (h == s)
            _, recs = run_both(lambda call=call: call(True))
            assert 2 * op_cost(one(recs, op)).flops == ours


def test_flash_backward_and_varlen_match_flop_counter_mode():
    g, q, k, v, o = BSHD_META
    theirs, recs = run_both(lambda: aten._flash_attention_backward(
        g, q, k, v, o, _meta(B, H, S), None, None, S, S, 0.0, False, _meta(2), _meta(())))
    assert H != S and op_cost(one(recs, "aten._flash_attention_backward")).flops \
        == 10 * B * H * S * S * D
    # packed variable-length batch: (total, H, D) with offsets; meta offsets mean max lengths
    qp, offs = _meta(3 * S, H, D), _meta(4)
    theirs, recs = run_both(lambda: aten._flash_attention_forward(
        qp, qp, qp, offs, offs, S, S, 0.0, False, False))
    rec = one(recs, "aten._flash_attention_forward")
    assert op_cost(rec).flops == theirs["aten._flash_attention_forward"] == 4 * 3 * H * S * S * D


def _attn_rec(op, q, k, v, **named):
    return OpRecord(op, op + ".default", Phase.FORWARD, "", (q, k, v), {}, (),
                    named={"query": q, "key": k, "value": v, **named})


def test_flash_sliding_window_keeps_its_band():
    q = TensorMeta((1, 64, 2, 8), "bfloat16", 2, 1, False, 1)  # (B, S, H, D)
    full = op_cost(_attn_rec("aten._flash_attention_forward", q, q, q, is_causal=False)).flops
    band = op_cost(_attn_rec("aten._flash_attention_forward", q, q, q, is_causal=True,
                             window_size_left=15, window_size_right=-1)).flops
    assert band == full * 16 // 64  # 15 keys to the left plus the diagonal


def test_quantized_flash_overload_finds_is_causal_at_its_own_position():
    q = TensorMeta((1, 2, 8, 4), "float8_e4m3fn", 1, 1, False, 1)
    args = (q, q, q, None, None, None, 0.0, True)  # three descale tensors before dropout_p
    rec = OpRecord("aten._scaled_dot_product_flash_attention",
                   "aten._scaled_dot_product_flash_attention.quantized", Phase.FORWARD, "", args,
                   {}, ())
    assert op_cost(rec).flops == 4 * 2 * 8 * 8 * 4 // 2


# --- schema positions and registered names ----------------------------------------------------
def _overloads(key: str):
    ns, _, rest = key.partition(".")
    name, _, overload = rest.partition(".")
    packet = getattr(getattr(torch.ops, ns), name)
    names = [overload] if overload else packet.overloads()
    return [(f"{key}" if overload else f"{key}.{o}", getattr(packet, o)) for o in names]


@pytest.mark.parametrize("key", sorted(POSITIONS))
def test_declared_argument_positions_match_the_torch_schemas(key):
    checked = 0
    for full, overload in _overloads(key):
        if full != key and full.removesuffix("_out") in POSITIONS:
            continue  # the overload declares its own positions
        positional = [a.name for a in overload._schema.arguments if not a.kwarg_only]
        for name, pos in POSITIONS[key].items():
            if name in positional:
                assert positional.index(name) == pos, (full, name, positional)
                checked += 1
    assert checked >= len(POSITIONS[key])  # every declared name exists in some overload


def test_every_registered_op_exists_in_torch():
    missing = []
    for op in RULES:
        ns, _, name = op.partition(".")
        lib = getattr(torch.ops, ns)
        if not (hasattr(lib, name) or (name.endswith("_") and hasattr(lib, name[:-1]))):
            missing.append(op)
    assert missing == []


def test_rule_modules_do_not_import_torch():
    for path in sorted(RULES_DIR.glob("rules*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n == "torch" or n.startswith("torch.") for n in names), path.name


# --- elementwise, norms, reductions -----------------------------------------------------------
def test_elementwise_counts_the_broadcast_output():
    recs = record(lambda: (torch.randn(4, 1) + torch.randn(1, 5), F.gelu(torch.randn(3, 7)),
                           torch.where(torch.randn(2, 3) > 0, 1.0, torch.randn(2, 3))))
    costs = {r.op: op_cost(r) for r in recs}
    assert costs["aten.add"].flops == 20
    assert costs["aten.gelu"].flops == 7 * 21  # NB convention: erf 4 + 3 arithmetic
    assert costs["aten.where"].flops == 6 and costs["aten.gt"].flops == 6
    assert {costs[op].op_class for op in ("aten.add", "aten.gelu", "aten.where", "aten.gt")} \
        == {OpClass.ELEMENTWISE}


def test_layer_norm_backward_honours_output_mask():
    ln = torch.nn.LayerNorm(8)
    x = torch.randn(3, 8, requires_grad=True)
    recs = record(lambda: ln(x).sum().backward(), bind=True)
    fwd, bwd = one(recs, "aten.native_layer_norm"), one(recs, "aten.native_layer_norm_backward")
    assert op_cost(fwd).flops == (5 + 2) * 24 and op_cost(fwd).op_class is OpClass.NORM
    assert op_cost(bwd).flops == (8 + 2 + 1) * 24
    ln.weight.requires_grad_(False)
    ln.bias.requires_grad_(False)
    bwd = one(record(lambda: ln(x).sum().backward()), "aten.native_layer_norm_backward")
    assert list(bwd.args[7]) == [True, False, False] and op_cost(bwd).flops == 8 * 24


def test_softmax_and_cross_entropy_are_reductions_per_input_element():
    logits = torch.randn(4, 10, requires_grad=True)
    target = torch.randint(0, 10, (4,))
    recs = record(lambda: F.cross_entropy(logits, target).backward())
    costs = {r.op: op_cost(r) for r in recs}
    assert costs["aten._log_softmax"].flops == 8 * 40
    assert costs["aten.nll_loss_forward"].flops == 4
    assert costs["aten._log_softmax_backward_data"].flops == 7 * 40
    assert {costs[op].op_class for op in ("aten._log_softmax", "aten.nll_loss_forward")} \
        == {OpClass.REDUCTION}


# --- bytes ------------------------------------------------------------------------------------
def test_views_move_no_bytes_and_copies_read_and_write():
    x = torch.randn(6, 4)
    recs = record(lambda: (x.t(), x.view(4, 6), x[1:3], x.unsqueeze(0).expand(2, 6, 4),
                           x.detach(), x.t().clone(), x.to(torch.float16)))
    for r in recs[:-2]:
        c = op_cost(r)
        assert (c.flops, c.bytes_read, c.bytes_written) == (0, 0, 0), r.op
    clone, cast = op_cost(recs[-2]), op_cost(recs[-1])
    assert (clone.bytes_read, clone.bytes_written) == (96, 96)
    assert (cast.bytes_read, cast.bytes_written) == (96, 48)
    assert clone.op_class is OpClass.DATA_MOVEMENT and clone.has_rule


def test_in_place_writes_the_mutated_argument_and_overwrites_skip_the_read():
    x, y = torch.randn(10), torch.randn(10)
    add_, copy_, zero_ = record(lambda: (x.add_(y), x.copy_(y), x.zero_()))
    assert (op_cost(add_).flops, op_cost(add_).bytes_read, op_cost(add_).bytes_written) \
        == (10, 80, 40)
    assert (op_cost(copy_).bytes_read, op_cost(copy_).bytes_written) == (40, 40)
    assert (op_cost(zero_).bytes_read, op_cost(zero_).bytes_written) == (0, 40)


def test_factories_write_only_and_allocations_move_nothing():
    x = torch.randn(3, 5)
    recs = record(lambda: (torch.zeros_like(x), torch.empty(7), torch.arange(4)))
    zeros, empty, arange = (r for r in recs if r.op != "aten.detach")
    assert (op_cost(zeros).bytes_read, op_cost(zeros).bytes_written) == (0, 60)
    assert (op_cost(empty).bytes_read, op_cost(empty).bytes_written) == (0, 0)
    assert op_cost(arange).bytes_written == 4 * 8


def test_foreach_ops_cover_the_whole_list():
    ps = [torch.randn(3, 4), torch.randn(5)]
    gs = [torch.randn(3, 4), torch.randn(5)]
    recs = record(lambda: (torch._foreach_mul_(ps, 0.5), torch._foreach_addcmul_(ps, gs, gs),
                           torch._foreach_norm(gs), torch._foreach_copy_(ps, gs)))
    mul_, addcmul_, norm, copy_ = (op_cost(r) for r in recs)
    assert recs[0].outputs == () and mul_.flops == 17
    assert (mul_.bytes_read, mul_.bytes_written) == (68, 68)
    assert addcmul_.flops == 2 * 17 and addcmul_.bytes_read == 2 * 68  # gs passed twice: once
    assert norm.flops == 2 * 17 and norm.bytes_written == 2 * 4
    assert (copy_.flops, copy_.bytes_read, copy_.bytes_written) == (0, 68, 68)
    assert has_flop_rule("aten._foreach_some_future_op_") and \
        classify("aten._foreach_some_future_op_") is OpClass.ELEMENTWISE


@pytest.mark.parametrize("opt, kwargs", [
    (torch.optim.AdamW, dict(weight_decay=0.1)),
    (torch.optim.Adam, dict(weight_decay=0.0, amsgrad=True)),
    (torch.optim.SGD, dict(momentum=0.9, weight_decay=0.01)),
    (torch.optim.SGD, dict(momentum=0.9, nesterov=True)),
    (torch.optim.Adagrad, dict(weight_decay=0.1)),
])
def test_fused_optimizer_counts_the_same_steps_as_the_foreach_implementation(opt, kwargs):
    def step_records(**impl):
        torch.manual_seed(0)
        ps = [torch.nn.Parameter(torch.randn(3, 4)), torch.nn.Parameter(torch.randn(5))]
        o = opt(ps, lr=0.01, **kwargs, **impl)
        for _ in range(2):  # the second step is the steady state (momentum buffers exist)
            for p in ps:
                p.grad = torch.randn_like(p)
            recs = record(o.step)
        return recs

    foreach, fused = step_records(foreach=True), step_records(fused=True)
    assert any(r.op.startswith("aten._fused_") for r in fused)
    assert all(op_cost(r).has_rule for r in foreach + fused)
    assert sum(op_cost(r).flops for r in fused) == sum(op_cost(r).flops for r in foreach)
    fused_op = next(op_cost(r) for r in fused if r.op.startswith("aten._fused_"))
    assert fused_op.bytes_written > 17 * 4  # parameters and optimizer state


def test_embedding_reads_gathered_rows_and_its_backward_adds_each_gradient():
    emb = torch.nn.Embedding(100, 8)
    idx = torch.randint(0, 100, (2, 5))
    recs = record(lambda: emb(idx).sum().backward())
    fwd, bwd = one(recs, "aten.embedding"), one(recs, "aten.embedding_dense_backward")
    c = op_cost(fwd)
    assert (c.flops, c.bytes_read, c.bytes_written) == (0, 10 * 8 + 10 * 8 * 4, 10 * 8 * 4)
    g = op_cost(bwd)
    assert g.flops == 10 * 8 and g.bytes_written == 100 * 8 * 4
    assert c.op_class is g.op_class is OpClass.EMBEDDING


def test_scatter_adds_count_source_elements():
    x, src = torch.zeros(6, 4), torch.randn(3, 4)
    idx = torch.tensor([0, 2, 2])
    recs = record(lambda: (x.index_add(0, idx, src), x.index_put((idx,), src, accumulate=True),
                           x.index_put((idx,), src)))
    assert [op_cost(r).flops for r in recs] == [12, 12, 0]


# --- unknown ops and the registry -------------------------------------------------------------
def test_unknown_op_is_listed_not_free():
    x = TensorMeta((8,), "float32", 4, 1, False, 1)
    out = TensorMeta((8,), "float32", 4, 2, False, 2)
    c = op_cost(OpRecord("aten.some_new_op", "aten.some_new_op.default", Phase.FORWARD, "",
                         (x,), {}, (out,)))
    assert c == OpCost(0, 32, 32, OpClass.OTHER, False)
    assert not has_flop_rule("aten.some_new_op") and classify("aten.some_new_op") is OpClass.OTHER


def test_duplicate_registration_raises_and_registers_nothing():
    with pytest.raises(ValueError, match="already registered"):
        register("aten.__brand_new_op", "aten.mm", op_class=OpClass.MATMUL)(lambda r: 0)
    assert "aten.__brand_new_op" not in RULES
    with pytest.raises(ValueError, match="twice"):
        register("aten.__x", "aten.__x", op_class=OpClass.OTHER)


def test_a_small_training_step_has_a_rule_for_every_op():
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(16, 2, 32, dropout=0.1, batch_first=True,
                                             norm_first=True)
    layer.self_attn.dropout = 0.0  # the CPU flash kernel then runs, not the math decomposition
    head = torch.nn.Linear(16, 10)
    opt = torch.optim.AdamW([*layer.parameters(), *head.parameters()], foreach=True)
    x, y = torch.randn(2, 6, 16), torch.randint(0, 10, (2, 6))

    def step():
        F.cross_entropy(head(layer(x)).flatten(0, 1), y.flatten()).backward()
        opt.step()

    recs = record(step)
    assert [r.op for r in recs if not op_cost(r).has_rule] == []
    assert any(op_cost(r).op_class is OpClass.ATTENTION for r in recs)
