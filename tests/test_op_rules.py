"""Op rules on hand-built records: expected values worked out by hand from the shapes."""

from __future__ import annotations

import pytest

from archcost.trace.records import OpClass, OpRecord, Phase, TensorMeta
from archcost.trace.rules import classify, has_flop_rule, op_cost, register

_tid = iter(range(1, 10**6))


def T(*shape, dtype="float32", itemsize=4, storage=None, view=False):
    tid = next(_tid)
    return TensorMeta(tuple(shape), dtype, itemsize, storage or tid, view, tid)


def rec(op, args=(), outputs=(), named=None, kwargs=None):
    return OpRecord(op=op, overload=op + ".default", phase=Phase.FORWARD, module="", args=tuple(args),
                    kwargs=kwargs or {}, outputs=tuple(outputs), named=named or {})


def test_mm_is_two_flops_per_multiply_add_and_reads_both_operands():
    a, b, out = T(16, 32), T(32, 8), T(16, 8)
    c = op_cost(rec("aten.mm", (a, b), (out,)))
    assert c.flops == 2 * 16 * 32 * 8
    assert (c.bytes_read, c.bytes_written) == (16 * 32 * 4 + 32 * 8 * 4, 16 * 8 * 4)
    assert c.op_class is OpClass.MATMUL and c.has_rule


def test_views_move_nothing():
    x = T(4, 6)
    v = TensorMeta((6, 4), "float32", 4, x.storage, True, 999_999)
    c = op_cost(rec("aten.t", (x,), (v,)))
    assert (c.flops, c.bytes_read, c.bytes_written) == (0, 0, 0)


def test_in_place_writes_its_first_argument_only():
    x, y = T(10), T(10)
    out = TensorMeta((10,), "float32", 4, x.storage, False, x.tid)
    c = op_cost(rec("aten.add_", (x, y), (out,)))
    assert c.flops == 10 and c.bytes_read == 80 and c.bytes_written == 40


def test_foreach_ops_sum_over_the_list():
    params = [T(3, 4), T(5)]
    grads = [T(3, 4), T(5)]
    c = op_cost(rec("aten._foreach_addcmul_", (params, grads, grads), ()))
    assert c.flops == 2 * (12 + 5)
    assert c.bytes_written == 4 * 17
    assert c.bytes_read == 2 * 4 * 17  # params and grads; the grads passed twice count once


def test_causal_attention_counts_half_and_gqa_counts_query_heads():
    q, k, v = T(2, 8, 64, 16), T(2, 2, 64, 16), T(2, 2, 64, 16)
    out = T(2, 8, 64, 16)
    full = op_cost(rec("aten._scaled_dot_product_flash_attention_for_cpu", (q, k, v), (out,),
                       named={"query": q, "key": k, "value": v, "is_causal": False}))
    causal = op_cost(rec("aten._scaled_dot_product_flash_attention_for_cpu", (q, k, v), (out,),
                         named={"query": q, "key": k, "value": v, "is_causal": True}))
    assert full.flops == 4 * 2 * 8 * 64 * 64 * 16
    assert causal.flops == full.flops // 2
    bwd = op_cost(rec("aten._scaled_dot_product_flash_attention_for_cpu_backward",
                      (out, q, k, v), (q, k, v),
                      named={"grad_out": out, "query": q, "key": k, "value": v, "is_causal": False}))
    assert bwd.flops == 5 * full.flops // 2


def test_conv_backward_honours_output_mask():
    x, w, gout = T(2, 3, 8, 8), T(4, 3, 3, 3), T(2, 4, 6, 6)
    fwd = 2 * 2 * 36 * 27 * 4  # batch * out pixels * (C_in * k * k) * C_out * 2
    both = op_cost(rec("aten.convolution_backward", (gout, x, w), (T(2, 3, 8, 8), T(4, 3, 3, 3)),
                       named={"transposed": False, "output_mask": [True, True, False]}))
    weight_only = op_cost(rec("aten.convolution_backward", (gout, x, w), (T(4, 3, 3, 3),),
                              named={"transposed": False, "output_mask": [False, True, False]}))
    assert weight_only.flops == fwd
    assert both.flops == 2 * fwd  # the grad-input (transposed) conv does the same multiply-adds


def test_embedding_reads_only_gathered_rows_and_backward_adds_each_gradient():
    weight, idx, out = T(1000, 16), T(2, 5, dtype="int64", itemsize=8), T(2, 5, 16)
    c = op_cost(rec("aten.embedding", (weight, idx), (out,)))
    assert c.flops == 0 and c.bytes_read == idx.nbytes + out.nbytes
    g = op_cost(rec("aten.embedding_dense_backward", (out, idx, 1000), (T(1000, 16),)))
    assert g.flops == 2 * 5 * 16 and g.bytes_written == 1000 * 16 * 4


def test_unknown_op_is_listed_not_free():
    x = T(8)
    c = op_cost(rec("aten.some_new_op", (x,), (T(8),)))
    assert not c.has_rule and c.op_class is OpClass.OTHER
    assert c.bytes_read == 32 and c.bytes_written == 32
    assert not has_flop_rule("aten.some_new_op") and classify("aten.mm") is OpClass.MATMUL


def test_duplicate_registration_raises():
    with pytest.raises(ValueError, match="already registered"):
        register("aten.mm", op_class=OpClass.MATMUL)(lambda r: 0)
