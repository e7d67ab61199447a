"""Shape rules for ops whose fake kernel refuses what the real CPU kernel accepts: each checked
against the real kernel's output shape, and the refusal itself checked (so a torch that fixes
its fake kernel shows here that the rule can go)."""

from __future__ import annotations

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from archcost.trace.fake import quiet_fake_tensor_log
from archcost.trace.fallbacks import SHAPE_RULES

# (mat_a, mat_b, offs): the four layouts of torch._grouped_mm, 4 groups
LAYOUTS = [((8, 16), (4, 16, 8), [2, 4, 6, 8]),      # 2-D x 3-D: rows split by offs
           ((4, 8, 16), (16, 8), [2, 4, 6, 8]),      # 3-D x 2-D
           ((8, 16), (16, 8), [4, 8, 12, 16]),       # 2-D x 2-D: the contraction split
           ((4, 8, 16), (4, 16, 8), None)]           # 3-D x 3-D: batched


@pytest.mark.parametrize("a, b, offs", LAYOUTS)
def test_grouped_mm_rule_gives_the_real_kernels_shape_where_the_fake_kernel_refuses(a, b, offs):
    mat_a, mat_b = torch.randn(*a), torch.randn(*b)
    o = None if offs is None else torch.tensor(offs, dtype=torch.int32)
    real = torch._grouped_mm(mat_a, mat_b, offs=o)  # the CPU kernel runs fp32
    with FakeTensorMode() as mode, quiet_fake_tensor_log():
        fa, fb = mode.from_tensor(mat_a), mode.from_tensor(mat_b)
        fo = None if o is None else mode.from_tensor(o)
        with pytest.raises(RuntimeError, match="BF16"):
            torch._grouped_mm(fa, fb, offs=fo)
        out = SHAPE_RULES["aten._grouped_mm.default"](fa, fb, fo)
    assert (tuple(out.shape), out.dtype) == (tuple(real.shape), real.dtype)
