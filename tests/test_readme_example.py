"""The README's worked example: the block is what the tool prints today, and the tool's backward
and AdamW figures agree with FlopCounterMode, a real optimizer step and closed forms."""

from __future__ import annotations

import difflib
import importlib.util

import pytest
import sympy
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from archcost.loader import load_model_file
from archcost.trace import trace_model
from archcost.trace.precision import parse_precision
from tests.conftest import MODELS, ROOT, load_module

spec = importlib.util.spec_from_file_location("readme_example", ROOT / "scripts" /
                                              "readme_example.py")
readme_example = importlib.util.module_from_spec(spec)
spec.loader.exec_module(readme_example)

b = sympy.Symbol("b")
# seed_mlp: 512 -> 256, eight 256 -> 256, 256 -> 512, ReLU between, loss mean(y**2)
WIDTHS = [512] + [256] * 9 + [512]
LAYERS = list(zip(WIDTHS[:-1], WIDTHS[1:]))


@pytest.fixture(scope="module")
def fig():
    return readme_example.figures()


def test_the_readme_block_is_what_the_tool_prints(fig):
    have = readme_example.block_of((ROOT / "README.md").read_text())
    want = readme_example.render(fig)
    assert have is not None, f"README.md lost its {readme_example.BEGIN} block"
    if have != want:
        diff = "\n".join(difflib.unified_diff(have.splitlines(), want.splitlines(), "README.md",
                                              "tool", lineterm=""))
        pytest.fail("README.md's worked example is stale: regenerate it with "
                    f"`{readme_example.COMMAND}`\n{diff}")


def _formula(fig, name):
    return sympy.sympify(fig["symbolic"]["formulas"][name], locals={"b": b})


def test_backward_flops_match_flop_counter_and_the_closed_form(fig):
    """Per sample: weight gradients 2 d_in d_out for every layer and input gradients for every
    layer but the first (its input needs none) -- the matmuls, what FlopCounterMode counts --
    plus one add per element of each bias gradient (a sum over the batch), one select per
    element of the nine ReLU masks, and the loss's backward, 2y/N on 512 outputs: div, pow and
    two muls, four ops per element."""
    matmuls = 2 * sum(i * o for i, o in LAYERS) + 2 * sum(i * o for i, o in LAYERS[1:])
    rest = sum(o for _, o in LAYERS) + 9 * 256 + 4 * 512
    assert _formula(fig, "flops_backward") == (matmuls + rest) * b
    batch = 3
    mod = load_module(MODELS / "seed_mlp.py")
    torch.manual_seed(0)
    model = mod.build_model()
    x = torch.randn(batch, 512)
    loss = mod.loss(model(x), (x,))
    with FlopCounterMode(display=False) as counter:
        loss.backward()
    assert counter.get_total_flops() == matmuls * batch
    traced = trace_model(load_model_file(str(MODELS / "seed_mlp.py"), {}), batch, 1,
                         parse_precision("fp32")).graph
    assert sum(d["flops"] * d["count"] for _, d in traced.nodes(data=True)
               if d["phase"] == "backward" and d["op_class"] == "matmul") == matmuls * batch


class _Ops(TorchDispatchMode):
    """(aten op name, output elements) of every op run."""

    def __init__(self):
        super().__init__()
        self.ops: list[tuple[str, int]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        n = out.numel() if isinstance(out, torch.Tensor) else 0
        self.ops.append((func.overloadpacket.__name__, n))
        return out


# the AdamW update per element as the PyTorch docs write it, one FLOP per arithmetic step with
# a scalar factor folded into the step it scales: p *= 1 - lr wd (1); m.lerp_(g, 1 - b1) (2);
# v *= b2 (1); v.addcmul_(g, g, 1 - b2) (2); sqrt(v) / sqrt(bc2) + eps (3);
# p.addcdiv_(m, denom, -step) (2) = 11; plus the step counter, one add per tensor
PER_ELEMENT = {"mul_": 1, "lerp_": 2, "addcmul_": 2, "sqrt": 1, "div": 1, "add_": 1,
               "addcdiv_": 2}
NO_ARITHMETIC = {"zeros_like", "zeros", "empty_like", "_local_scalar_dense", "lift_fresh",
                 "detach", "copy_", "clone", "alias", "_to_copy", "item",
                 "_record_function_enter_new", "_record_function_exit"}  # profiler marks


def test_adamw_step_flops_match_a_real_step_and_the_closed_form(fig):
    mod = load_module(MODELS / "seed_mlp.py")
    model = mod.build_model()
    params = list(model.parameters())
    n, tensors = sum(p.numel() for p in params), len(params)
    assert (n, tensors) == (789_248, 20)
    for p in params:
        p.grad = torch.randn_like(p)
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01)
    with _Ops() as log:
        opt.step()
    unknown = {op for op, _ in log.ops} - set(PER_ELEMENT) - NO_ARITHMETIC
    assert not unknown, f"AdamW ran ops this closed form does not cover: {unknown}"
    counted = sum(PER_ELEMENT.get(op, 0) * k for op, k in log.ops)
    assert counted == 11 * n + tensors
    assert _formula(fig, "flops_optimizer") == 11 * n + tensors
