"""The fake-tensor capture: phases, attribution, repeated blocks, frozen parameters, saved bytes.

Ground truth comes from real CPU runs of the same model (FlopCounterMode, saved_tensors_hooks).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from archcost.analysis import phase_flops
from archcost.loader import load_model_file
from archcost.trace import trace_model
from archcost.trace.precision import parse_precision
from archcost.trace.repeats import RepeatTracker
from tests.conftest import DATA
from tests.groundtruth import real_saved_bytes, real_step_flops

TINY = str(DATA / "models" / "tiny_ok.py")
FP32 = parse_precision("fp32")


def _trace(overrides=None, b=2, s=8, **kw):
    spec = load_model_file(TINY, overrides or {})
    return spec, trace_model(spec, b, s, FP32, **kw)


def test_every_phase_present_and_ordered():
    _, t = _trace()
    phases = [d["phase"] for _, d in sorted(t.graph.nodes(data=True))]
    first = {p: phases.index(p) for p in ("forward", "backward", "optimizer")}
    assert first["forward"] < first["backward"] < first["optimizer"]


def test_backward_ops_are_attributed_to_their_forward_module():
    _, t = _trace()
    mm_modules = {
        d["module"] for _, d in t.graph.nodes(data=True)
        if d["phase"] == "backward" and d["op"] == "aten.mm"
    }
    assert {"out", "layers.0.fc", "inp"} <= mm_modules
    ln_bwd = [d for _, d in t.graph.nodes(data=True) if d["op"] == "aten.native_layer_norm_backward"]
    assert ln_bwd and all(d["module"] == "layers.0.ln" for d in ln_bwd)


def test_repeated_blocks_traced_once_counted_many():
    _, dedup = _trace({"layers": 6})
    _, full = _trace({"layers": 6}, dedupe_repeats=False)
    assert dedup.capture.repeat_groups["layers.0"]["count"] == 6
    assert len(dedup.capture.records) < len(full.capture.records)
    assert phase_flops(dedup.graph) == phase_flops(full.graph)
    moved = [
        sum((d["bytes_read"] + d["bytes_written"]) * d["count"] for _, d in t.graph.nodes(data=True))
        for t in (dedup, full)
    ]
    assert moved[0] == moved[1]
    assert sum(dedup.capture.saved.values()) == sum(full.capture.saved.values())
    assert dedup.capture.optimizer_state_bytes == full.capture.optimizer_state_bytes


def test_frozen_parameters_have_no_weight_gradient_or_state():
    _, train = _trace()
    _, frozen = _trace({"frozen_input": True})
    assert frozen.capture.optimizer_state_bytes < train.capture.optimizer_state_bytes
    def backward_matmul(t):
        return sum(d["flops"] * d["count"] for _, d in t.graph.nodes(data=True)
                   if d["phase"] == "backward" and d["op_class"] == "matmul")

    # the input layer's weight gradient is one (d_in x hidden) <- (B*T) mm: 2*B*T*d_in*hidden;
    # its input gradient is not needed either way (the data needs no grad)
    assert backward_matmul(train) - backward_matmul(frozen) == 2 * (2 * 8) * 16 * 32


@pytest.mark.parametrize("b, s", [(2, 8), (3, 5)])
def test_matmul_flops_equal_flop_counter_mode(b, s):
    spec, t = _trace(b=b, s=s)
    ours = sum(
        d["flops"] * d["count"] for _, d in t.graph.nodes(data=True)
        if d["op_class"] in ("matmul", "conv", "attention") and d["phase"] != "optimizer"
    )
    assert ours == real_step_flops(spec, b, s)


def test_saved_activation_bytes_match_a_real_run():
    spec, t = _trace({"layers": 3})
    assert sum(t.capture.saved.values()) == real_saved_bytes(spec, 2, 8)


def test_mixed_precision_states_are_fp32_and_sixteen_bytes_per_param():
    spec = load_model_file(TINY)
    t = trace_model(spec, 2, 8, parse_precision("bf16-mixed"))
    n = sum(p.numel for p in t.capture.params if p.trainable and not p.is_buffer)
    weights = sum(p.numel * 2 for p in t.capture.params if not p.is_buffer)
    # bf16 weights (2) + bf16 grads (2) + fp32 master, m, v (12), plus Adam's step scalars
    steps = 4 * sum(1 for p in t.capture.params if p.trainable and not p.is_buffer)
    assert t.capture.master_weight_bytes == 4 * n
    assert t.capture.optimizer_state_bytes == 8 * n + steps
    assert weights == 2 * n


def test_tied_parameters_stay_tied():
    spec = load_model_file(str(DATA / "models" / "tied.py"))
    t = trace_model(spec, 2, 4, FP32)
    assert sum(p.numel for p in t.capture.params if not p.is_buffer) == 50 * 8


def test_fused_optimizer_does_the_same_flops_in_fewer_passes():
    spec = load_model_file(TINY)

    def optimizer_totals(name):
        t = trace_model(spec, 2, 8, FP32, name)
        nodes = [d for _, d in t.graph.nodes(data=True) if d["phase"] == "optimizer"]
        return (sum(d["flops"] * d["count"] for d in nodes),
                sum((d["bytes_read"] + d["bytes_written"]) * d["count"] for d in nodes),
                t.capture.optimizer_state_bytes)

    flops, moved, states = optimizer_totals("adamw")
    f_flops, f_moved, f_states = optimizer_totals("adamw-fused")
    assert f_flops == flops and f_states == states
    # one pass reads param, grad, m, v and writes param, m, v (7 tensors' bytes per parameter),
    # after m and v are zero-filled at this first step (2 more); step counters are a few bytes
    n = sum(p.numel for p in trace_model(spec, 2, 8, FP32).capture.params if p.trainable)
    assert 9 * 4 * n <= f_moved <= 9 * 4 * n + 64 * 6
    assert moved > 2 * f_moved


SHARED = str(DATA / "models" / "shared_blocks.py")


@pytest.mark.parametrize("style", ["decoder", "conv"])
def test_tensors_shared_by_repeated_blocks_are_counted_once_under_dedupe(style):
    # decoder layers all read the encoder output and RoPE cos/sin made outside them; conv
    # blocks save their output, which the next block saves as its input
    spec = load_model_file(SHARED, {"style": style, "layers": 4})
    dedup = trace_model(spec, 2, 8, FP32)
    full = trace_model(spec, 2, 8, FP32, dedupe_repeats=False)
    assert dedup.capture.repeat_groups["layers.0"]["count"] == 4
    saved = [sum(t.capture.saved.values()) for t in (dedup, full)]
    assert saved[0] == saved[1] == real_saved_bytes(spec, 2, 8)
    # the whole step agrees with a trace of every block, backward included: there autograd
    # sums the encoder output's gradient over the 4 layers (adds a dedupe trace runs once)
    flops = [phase_flops(t.graph) for t in (dedup, full)]
    moved = [sum((d["bytes_read"] + d["bytes_written"]) * d["count"]
                 for _, d in t.graph.nodes(data=True))
             for t in (dedup, full)]
    assert flops[0] == flops[1] and moved[0] == moved[1]


def test_buffers_autograd_saves_are_held_once_as_buffers_not_again_as_activations():
    # measured on a real step: what autograd saves of a buffer is the buffer's own storage (a
    # reference, no copy), so the memory it holds is the buffer's, counted once under buffers
    from archcost.analysis import summarize

    spec = load_model_file(str(DATA / "models" / "saved_buffers.py"))
    model = spec.build(2, 8)
    bufs = {b.untyped_storage().data_ptr(): n for n, b in model.named_buffers()}
    held = set()

    def pack(t):
        held.add(bufs.get(t.untyped_storage().data_ptr()))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(*spec.inputs(model, 2, 8)).mean()
    assert {"position_ids", "table", "bn.running_mean", "bn.running_var"} <= held
    t = trace_model(spec, 2, 8, FP32)
    assert sum(t.capture.saved.values()) == real_saved_bytes(spec, 2, 8)
    doc = summarize(t.graph, t.capture, FP32, {})
    assert doc["totals"]["memory_bytes"]["buffers"] == sum(
        b.numel() * b.element_size() for b in model.buffers())


class _Block(nn.Module):
    """A block with a position label, an int setting, a float rate and a swappable child."""

    def __init__(self, layer_idx=0, shift=0, rate=0.0, width=4, stride=1, drop=None):
        super().__init__()
        self.fc = nn.Linear(width, width)
        self.conv = nn.Conv1d(width, width, 1, stride=stride)
        self.drop = drop if drop is not None else nn.Identity()
        self.layer_idx, self.shift, self.rate = layer_idx, shift, rate


def _groups(blocks) -> list[list[str]]:
    model = nn.Module()
    model.layers = nn.ModuleList(blocks)
    return sorted(g.members for g in RepeatTracker.from_model(model).groups)


def _blocks_of(blocks) -> list[list[str]]:
    model = nn.Module()
    model.layers = nn.ModuleList(blocks)
    return [b.members for b in RepeatTracker.from_model(model).blocks]


def test_a_label_that_numbers_the_members_keeps_one_group():
    assert _groups(_Block(layer_idx=i + 3) for i in range(4)) == [
        [f"layers.{i}" for i in range(4)]]
    # interleaved blocks of two shapes: each numbered by its position in the container
    mixed = [_Block(layer_idx=i, width=4 if i % 2 == 0 else 8) for i in range(4)]
    assert _groups(mixed) == [["layers.0", "layers.2"], ["layers.1", "layers.3"]]


def test_a_differing_setting_splits_the_group():
    shifted = [_Block(layer_idx=i, shift=2 * (i % 2)) for i in range(4)]  # Swin: 0, w/2, 0, w/2
    assert _groups(shifted) == [["layers.0", "layers.2"], ["layers.1", "layers.3"]]
    strided = [_Block(stride=2 if i == 1 else 1) for i in range(3)]  # a submodule's setting
    assert _groups(strided) == [["layers.0", "layers.2"]]
    # every block is still a block (recomputation wraps it), deduped or not
    assert _blocks_of(shifted) == [[f"layers.{i}" for i in range(4)]]


def test_rates_split_at_zero_only_and_child_classes_must_agree():
    rates = [_Block(rate=0.1 * i / 3) for i in range(4)]  # stochastic depth: 0 ... 0.1
    assert _groups(rates) == [["layers.1", "layers.2", "layers.3"]]
    dropped = [_Block(drop=nn.Dropout(0.1) if i else None) for i in range(3)]  # Identity at 0
    assert _groups(dropped) == [["layers.1", "layers.2"]]


def test_blocks_differing_in_settings_agree_with_a_full_trace_and_a_real_step():
    # 6 blocks: twice on odd ones, rate 0 on the first: groups {1, 3, 5}, {2, 4}, 0 alone
    spec = load_model_file(str(DATA / "models" / "varied_blocks.py"))
    dedup = trace_model(spec, 2, 8, FP32)
    full = trace_model(spec, 2, 8, FP32, dedupe_repeats=False)
    assert {rep: g["count"] for rep, g in dedup.capture.repeat_groups.items()} == {
        "layers.1": 3, "layers.2": 2}
    moved = [sum((d["bytes_read"] + d["bytes_written"]) * d["count"]
                 for _, d in t.graph.nodes(data=True)) for t in (dedup, full)]
    assert phase_flops(dedup.graph) == phase_flops(full.graph) and moved[0] == moved[1]
    matmul = sum(d["flops"] * d["count"] for _, d in dedup.graph.nodes(data=True)
                 if d["op_class"] == "matmul" and d["phase"] != "optimizer")
    assert matmul == real_step_flops(spec, 2, 8)
    saved = [sum(t.capture.saved.values()) for t in (dedup, full)]
    assert saved[0] == saved[1] == real_saved_bytes(spec, 2, 8)
