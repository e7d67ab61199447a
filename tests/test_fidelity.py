"""Traced counts of every bundled model against ground truth from outside archcost.

- matmul and convolution FLOPs (forward + backward) equal ``FlopCounterMode`` on a real CPU run
  of the same small model (FlopCounterMode has no formula for the CPU attention kernel, so
  attention is checked against its closed form instead);
- attention FLOPs equal 4*B*H*Sq*Sk*D forward (half when causal: our documented convention) and
  2.5x that in backward (FlopCounterMode's convention: scores are recomputed);
- parameters equal ``sum(p.numel())``; saved-activation bytes are within 1% of a real run's
  ``saved_tensors_hooks`` count;
- GPT totals agree with Korthikanti et al. 2022's 72*B*s*l*h^2*(1 + s/(6h) + V/(12*l*h)).
"""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from archcost.loader import load_model_file
from archcost.trace import trace_model
from archcost.trace.precision import parse_precision
from tests.conftest import MODELS, TINY
from tests.groundtruth import real_saved_bytes

POINTS = [(2, 16), (3, 24)]
FP32 = parse_precision("fp32")
_TRACES: dict = {}


def traced(name, b, s):
    key = (name, b, s)
    if key not in _TRACES:
        spec = load_model_file(str(MODELS / f"{name}.py"), TINY[name])
        _TRACES[key] = (spec, trace_model(spec, b, s, FP32))
    return _TRACES[key]


def real_run_flops(spec, b, s) -> int:
    torch.manual_seed(0)
    model = spec.build(b, s)
    inputs = spec.inputs(model, b, s)
    with FlopCounterMode(display=False) as fc:
        out = model(**inputs) if isinstance(inputs, dict) else model(*inputs)
        spec.loss(out, inputs).backward()
    return fc.get_total_flops()


def _sum(t, classes, phases=("forward", "backward")):
    return sum(
        d["flops"] * d["count"] for _, d in t.graph.nodes(data=True)
        if d["op_class"] in classes and d["phase"] in phases
    )


@pytest.mark.parametrize("b, s", POINTS)
@pytest.mark.parametrize("name", sorted(TINY))
def test_matmul_and_conv_flops_equal_flop_counter_mode(name, b, s):
    spec, t = traced(name, b, s)
    assert _sum(t, ("matmul", "conv")) == real_run_flops(spec, b, s)


def _attention_calls(t):
    """(B, Hq, Sq, Sk, D, Dv, causal) for every forward attention op, with its count."""
    out = []
    for _, d in t.graph.nodes(data=True):
        if d["op_class"] == "attention" and d["phase"] == "forward":
            out.append(d)
    return out


ATTENTION_MODELS = {"gpt2": True, "llama": True, "moe": True, "bert": False, "vit": False,
                    "gptj": True, "falcon": True}


@pytest.mark.parametrize("b, s", POINTS)
@pytest.mark.parametrize("name", sorted(ATTENTION_MODELS))
def test_attention_flops_equal_closed_form(name, b, s):
    spec, t = traced(name, b, s)
    # the "tiny" presets of llama.py, moe.py, gptj.py and falcon.py are 2 layers of width 64,
    # like the others here
    layers, hidden = 2, 64
    seq = (32 // 8) ** 2 + 1 if name == "vit" else s  # 4x4 patches + the class token
    causal = ATTENTION_MODELS[name]
    full_fwd = layers * 4 * b * seq * seq * hidden  # sum over heads of 4*B*S*S*D
    fwd = full_fwd // 2 if causal else full_fwd
    assert _sum(t, ("attention",), ("forward",)) == fwd
    assert _sum(t, ("attention",), ("backward",)) == fwd * 5 // 2


@pytest.mark.parametrize("name", sorted(TINY))
def test_parameter_counts_equal_numel(name):
    spec, t = traced(name, *POINTS[0])
    with torch.device("meta"):
        model = spec.build(*POINTS[0])
    expected = sum(p.numel() for p in model.parameters())
    got = sum(p.numel for p in t.capture.params if not p.is_buffer)
    assert got == expected


@pytest.mark.parametrize("b, s", POINTS)
@pytest.mark.parametrize("name", sorted(TINY))
def test_saved_activations_within_one_percent_of_real_run(name, b, s):
    spec, t = traced(name, b, s)
    ours = sum(t.capture.saved.values())
    real = real_saved_bytes(spec, b, s)
    assert ours == pytest.approx(real, rel=0.01)


@pytest.mark.parametrize("b, s", POINTS)
def test_gpt_totals_agree_with_korthikanti_formula(b, s):
    spec, t = traced("gpt2", b, s)
    cfg = TINY["gpt2"]
    n_layers, h, V = cfg["layers"], cfg["hidden"], cfg["vocab"]
    formula = 72 * b * s * n_layers * h * h * (1 + s / (6 * h) + V / (12 * n_layers * h))
    # the formula counts attention in full with backward = 2x forward; we count causal attention
    # at half and its backward at 2.5x (scores recomputed), so rebuild its convention from ours:
    attention_forward_full = 2 * _sum(t, ("attention",), ("forward",))
    ours = _sum(t, ("matmul",)) + 3 * attention_forward_full
    assert ours == pytest.approx(formula, rel=1e-12)
