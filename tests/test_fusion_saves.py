"""What a fused kernel saves for backward (cost.fused_saves): ground truth from real CPU steps.

A block written with eager ops is traced under a runtime that fuses its norm, activation and
dropout;
the same block written with fused autograd functions that save what TransformerEngine's RMSNorm
(input and per-row rstd) or LayerNorm (input, per-row mean and rstd), Megatron's SwiGLU (its input) and CUDA's dropout (a one-byte mask)
save is run for real, its saved tensors measured with saved_tensors_hooks. The fused rule maps one onto the other.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from archcost.cost.fused_saves import fused_saves, saved_graph
from archcost.cost.memory import liveness_arrays
from archcost.loader import load_model_file
from archcost.options import Recompute
from archcost.plan.workload import workload_from_traces
from archcost.runtime import Fusion, load_runtime
from archcost.trace import trace_model
from archcost.trace.precision import parse_precision
from tests.groundtruth import real_saved_bytes

_MODEL = '''
import torch
from torch import nn


class RMSNorm(nn.Module):
    def __init__(self, dim, fused):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.fused = fused

    def forward(self, x):
        if self.fused:
            return FusedRMSNorm.apply(x, self.weight)
        x32 = x.float()
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + 1e-5)).type_as(x) \\
            * self.weight


class LayerNorm(nn.Module):
    def __init__(self, dim, fused):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.fused = fused

    def forward(self, x):
        if self.fused:
            return FusedLayerNorm.apply(x, self.weight, self.bias)
        x32 = x.float()
        mean = x32.mean(-1, keepdim=True)
        xc = x32 - mean
        rstd = torch.rsqrt(xc.pow(2).mean(-1, keepdim=True) + 1e-5)
        return (xc * rstd).type_as(x) * self.weight + self.bias


class FusedLayerNorm(torch.autograd.Function):
    """Saves its input, the per-row mean and rstd (fp32), as a fused LayerNorm kernel does."""

    @staticmethod
    def forward(ctx, x, w, b):
        mean = x.float().mean(-1, keepdim=True)
        rstd = torch.rsqrt((x.float() - mean).pow(2).mean(-1, keepdim=True) + 1e-5)
        ctx.save_for_backward(x, w, mean, rstd)
        return ((x.float() - mean) * rstd).type_as(x) * w + b

    @staticmethod
    def backward(ctx, go):
        x, w, mean, rstd = ctx.saved_tensors
        with torch.enable_grad():
            xx, ww = x.detach().requires_grad_(), w.detach().requires_grad_()
            xc = xx.float() - xx.float().mean(-1, keepdim=True)
            y = (xc * torch.rsqrt(xc.pow(2).mean(-1, keepdim=True) + 1e-5)).type_as(xx) * ww
            return (*torch.autograd.grad(y, (xx, ww), go), go.sum((0, 1)))


class FusedRMSNorm(torch.autograd.Function):
    """Saves its input and the per-row rstd (fp32), as a fused RMSNorm kernel does."""

    @staticmethod
    def forward(ctx, x, w):
        rstd = torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-5)
        ctx.save_for_backward(x, w, rstd)
        return (x.float() * rstd).type_as(x) * w

    @staticmethod
    def backward(ctx, go):
        x, w, rstd = ctx.saved_tensors
        with torch.enable_grad():
            xx, ww = x.detach().requires_grad_(), w.detach().requires_grad_()
            y = (xx.float() * rstd).type_as(xx) * ww
            return torch.autograd.grad(y, (xx, ww), go)


class FusedSwiGLU(torch.autograd.Function):
    """Saves its inputs only, as a fused SwiGLU kernel does."""

    @staticmethod
    def forward(ctx, g, u):
        ctx.save_for_backward(g, u)
        return torch.nn.functional.silu(g) * u

    @staticmethod
    def backward(ctx, go):
        g, u = ctx.saved_tensors
        s = torch.sigmoid(g)
        return go * u * s * (1 + g * (1 - s)), go * g * s


class FusedDropout(torch.autograd.Function):
    """Saves its mask as one byte per element, as CUDA's native_dropout does."""

    @staticmethod
    def forward(ctx, x):
        mask = torch.rand_like(x) >= 0.1
        ctx.save_for_backward(mask)
        return x * mask / 0.9

    @staticmethod
    def backward(ctx, go):
        (mask,) = ctx.saved_tensors
        return go * mask / 0.9


class MLP(nn.Module):
    def __init__(self, dim, fused):
        super().__init__()
        self.w1 = nn.Linear(dim, 3 * dim, bias=False)
        self.w3 = nn.Linear(dim, 3 * dim, bias=False)
        self.w2 = nn.Linear(3 * dim, dim, bias=False)
        self.fused = fused

    def forward(self, x):
        g, u = self.w1(x), self.w3(x)
        h = FusedSwiGLU.apply(g, u) if self.fused else torch.nn.functional.silu(g) * u
        out = self.w2(h)
        return FusedDropout.apply(out) if self.fused else torch.nn.functional.dropout(out, 0.1)


class Block(nn.Module):
    def __init__(self, dim, fused, norm):
        super().__init__()
        self.norm = (RMSNorm if norm == "rms" else LayerNorm)(dim, fused)
        self.mlp = MLP(dim, fused)

    def forward(self, x):
        return x + self.mlp(self.norm(x))


class Net(nn.Module):
    def __init__(self, dim, layers, fused, norm):
        super().__init__()
        self.layers = nn.ModuleList(Block(dim, fused, norm) for _ in range(layers))

    def forward(self, x):
        x = x * 2.0  # the first layer's input is a tensor of the step (saves nothing)
        for layer in self.layers:
            x = layer(x)
        return x


def build_model(dim: int = 32, layers: int = 3, fused: bool = False, norm: str = "rms"):
    return Net(dim, layers, fused, norm)


def example_inputs(batch_size, seq_len, model):
    dim = model.layers[0].norm.weight.shape[0]
    return (torch.randn(batch_size, seq_len, dim, requires_grad=True),)


def loss(output, inputs):
    return output.sum()
'''

_FUSING = frozenset({Fusion.NORM, Fusion.ACTIVATION, Fusion.DROPOUT, Fusion.RESIDUAL})


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("fused") / "block.py"
    path.write_text(_MODEL)
    return str(path)


@pytest.fixture(params=["rms", "layer"])
def specs(model_file, request):
    return (load_model_file(model_file, {"fused": False, "norm": request.param}),
            load_model_file(model_file, {"fused": True, "norm": request.param}))


def _saved_by_liveness(g) -> int:
    """Bytes allocated in forward and read in backward (what is saved; the model's output and
    the loss, which the caller holds, aside), each counted as often as it is held at once."""
    alloc, last, size, weight, order = liveness_arrays(g)
    d = [g.nodes[n] for n in order]
    return int(sum(s * w for a, e, s, w in zip(alloc, last, size, weight, strict=True)
                   if d[a]["phase"] == "forward" and d[e]["phase"] == "backward"
                   and not d[a]["held_by_caller"]))


@pytest.mark.parametrize("dtype", ["bf16", "fp32"])
def test_fused_saves_equal_a_real_step_of_the_fused_block(specs, dtype):
    eager, fused = specs
    policy = parse_precision(dtype)
    torch_dtype = getattr(torch, policy.compute_dtype)
    t = trace_model(eager, 1, 16, policy)  # one layer traced, counted three times
    full = trace_model(eager, 1, 16, policy, dedupe_repeats=False)
    measured_eager = real_saved_bytes(eager, 1, 16, torch_dtype)
    measured_fused = real_saved_bytes(fused, 1, 16, torch_dtype)
    assert measured_fused < measured_eager  # the fused kernels keep less
    # the liveness pass: eager as traced, fused by the rule
    assert _saved_by_liveness(full.graph) == measured_eager
    assert _saved_by_liveness(saved_graph(full.graph, _FUSING)) == measured_fused
    # one layer traced: its fused norm keeps the layer's input in each layer
    assert _saved_by_liveness(saved_graph(t.graph, _FUSING)) == measured_fused
    # the plan workload (its layers from the trace's record of saved tensors, the rest from the
    # liveness pass, which also holds the model's output and the loss): what the fusion saves
    def total(rt) -> float:
        w = workload_from_traces({Recompute.NONE: t}, policy, runtime=rt)
        r = Recompute.NONE
        return sum(w.saved_block[r]) * w.layers + w.saved_pre[r] + w.saved_post[r]

    fusing = dataclasses.replace(load_runtime("eager"), fusions=_FUSING)
    assert total(None) - total(fusing) == measured_eager - measured_fused


def test_nothing_changes_without_a_fused_family_that_has_a_rule(specs):
    t = trace_model(specs[0], 1, 16, parse_precision("bf16"))
    assert fused_saves(t.graph, ()).bytes == {}
    assert saved_graph(t.graph, ()) is t.graph
    assert saved_graph(t.graph, [Fusion.ELEMENTWISE]) is t.graph
