"""Data-dependent shapes: routers written with nonzero, torch.where, boolean masks, .item()
counts and a grouped GEMM trace under a stated routing assumption, and count what a real CPU
step routed the same way does (FlopCounterMode, saved_tensors_hooks)."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from archcost.cli import app
from archcost.loader import load_model_file
from archcost.trace import CaptureOptions, trace_model
from archcost.trace.assume import parse_routing
from archcost.trace.precision import parse_precision
from tests.conftest import DATA

FP32 = parse_precision("fp32")
MOE = str(DATA / "models" / "moe_routers.py")
B, S, E, K, H, F = 2, 8, 4, 2, 16, 32  # the test model's defaults
N = B * S


def _round_robin(model):
    """A real run's router made uniform: token n picks experts (n*K + j) % E, j < K, so each
    expert gets N*K/E tokens (what 'balanced' assumes) and no token picks one twice."""
    logits = torch.zeros(N, E)
    for n in range(N):
        for j in range(K):
            logits[n, (n * K + j) % E] = 10.0 - j
    model.gate.register_forward_hook(lambda _m, _i, out: out * 0 + logits)  # gate still trains


def _real(spec):
    """(matmul FLOPs by FlopCounterMode, saved bytes) of a real step with uniform routing."""
    torch.manual_seed(0)
    model = spec.build(B, S)
    _round_robin(model)
    inputs = spec.inputs(model, B, S)
    params = {t.untyped_storage().data_ptr() for t in model.parameters()}
    saved = {}

    def pack(t):
        st = t.untyped_storage()
        if st.data_ptr() not in params:
            saved[st.data_ptr()] = st.nbytes()
        return t

    with FlopCounterMode(display=False) as fc:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = spec.loss(model(*inputs), inputs)
        loss.backward()
    return fc.get_total_flops(), sum(saved.values())


def _matmul_flops(t):
    return sum(d["flops"] * d["count"] for _, d in t.graph.nodes(data=True)
               if d["op_class"] == "matmul" and d["phase"] != "optimizer")


def _expert_rows(t, layer="fc_in"):
    """Rows each expert's first linear multiplies in the forward, by expert."""
    rows = {}
    for r in t.capture.records:
        if r.phase.value == "forward" and r.module.startswith(f"{layer}.") and r.op == "aten.mm":
            rows[int(r.module.split(".")[1])] = r.args[0].shape[0]
    return [rows.get(e, 0) for e in range(E)]


@pytest.mark.parametrize("style", ["hf_loop", "item_loop"])
def test_loop_routers_count_what_a_uniformly_routed_real_step_does(style):
    spec = load_model_file(MOE, {"style": style})
    t = trace_model(spec, B, S, FP32)
    flops, saved = _real(spec)
    assert _matmul_flops(t) == flops
    assert sum(t.capture.saved.values()) == saved
    assert _expert_rows(t) == [N * K // E] * E
    (router,) = t.capture.assumptions["routing"]["routers"]
    assert (router["tokens"], router["top_k"], router["experts"]) == (N, K, E)
    assert router["tokens_per_expert"] == [N * K // E] * E
    assert t.capture.assumptions["routing"]["assumption"] == "balanced"


def test_grouped_gemm_router_in_fp32_counts_the_closed_form():
    # aten._grouped_mm's fake kernel demands bf16, the CPU kernel runs fp32; FlopCounterMode
    # counts grouped GEMMs as 0, so the closed form: N*K rows through (H x F) and (F x H), twice
    # forward; backward needs both weight gradients and the hidden's gradient, not the input's
    # (it needs no grad); the gate (N x H x E) forward and its weight gradient.
    spec = load_model_file(MOE, {"style": "grouped"})
    t = trace_model(spec, B, S, FP32)
    experts = 2 * N * K * H * F
    assert _matmul_flops(t) == 2 * experts + 3 * experts + 2 * (2 * N * H * E)
    (fb,) = t.capture.assumptions["fallbacks"]
    assert fb["op"] == "aten._grouped_mm.default" and "shape rule" in fb["how"]
    # and the loop router, routed the same way, does the same matmul work
    loop = trace_model(load_model_file(MOE, {"style": "hf_loop"}), B, S, FP32)
    assert _matmul_flops(loop) == _matmul_flops(t)


def test_capacity_factor_gives_the_busiest_expert_that_multiple_of_the_mean():
    spec = load_model_file(MOE, {"style": "hf_loop"})
    t = trace_model(spec, B, S, FP32, options=CaptureOptions(routing=parse_routing("capacity=1.5")))
    rows = _expert_rows(t)
    mean = N * K / E
    assert max(rows) == 1.5 * mean and sum(rows) == N * K
    assert sorted(rows)[:-1] in ([6, 7, 7], [7, 6, 7], [7, 7, 6])  # (32 - 12) / 3 each, whole
    # dropless: the total work is the same however the router spreads it
    assert _matmul_flops(t) == _matmul_flops(trace_model(spec, B, S, FP32))


def test_a_measured_histogram_routes_each_expert_its_share(tmp_path):
    hist = tmp_path / "hist.json"
    hist.write_text(json.dumps({"tokens_per_expert": [400, 200, 100, 100]}))
    spec = load_model_file(MOE, {"style": "item_loop"})
    t = trace_model(spec, B, S, FP32,
                    options=CaptureOptions(routing=parse_routing(f"histogram={hist}")))
    # shares 1/2, 1/4, 1/8, 1/8 of N*K = 32 choices; no expert above N = 16 (one pick per token)
    assert _expert_rows(t) == [16, 8, 4, 4]


def test_a_histogram_of_another_number_of_experts_is_refused(runner, tmp_path):
    hist = tmp_path / "hist.json"
    hist.write_text(json.dumps([400, 200, 100]))
    r = runner.invoke(app, ["analyze", MOE, "-b", "2", "-s", "8", "--set", "style=item_loop",
                            "--routing", f"histogram={hist}"])
    assert r.exit_code == 2, r.output
    assert "3 counts for a router over 4 experts" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_a_mask_computed_from_the_weights_selects_the_stated_share():
    spec = load_model_file(str(DATA / "models" / "data_dependent.py"))
    for density, rows in ((1.0, 8), (0.5, 4), (0.25, 2)):
        t = trace_model(spec, 8, 4, FP32, options=CaptureOptions(mask_density=density))
        (index,) = [r for r in t.capture.records if r.op == "aten.index"]
        assert index.outputs[0].shape == (rows, 4)
        (bound,) = t.capture.assumptions["bounds"]
        assert bound["rule"] == f"mask true at {density:g} of its elements"


def test_the_routing_assumption_is_printed_and_in_the_json(runner, tmp_path):
    out = tmp_path / "a.json"
    r = runner.invoke(app, ["analyze", MOE, "-b", "2", "-s", "8", "--routing", "capacity=1.5",
                            "-o", str(out)])
    assert r.exit_code == 0, r.stderr
    assert "routing assumed: capacity factor 1.5" in " ".join(r.stdout.split())
    doc = json.loads(out.read_text())
    routing = doc["capture"]["assumptions"]["routing"]
    assert routing["assumption"] == "capacity=1.5"
    assert routing["routers"][0]["busiest_expert_tokens"] == 12
