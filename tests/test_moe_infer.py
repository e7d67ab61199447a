"""Mixture-of-experts inference: a grouped GEMM reads the experts its tokens reach.

transformers' Mixtral runs its experts as ``torch._grouped_mm`` over the stacked weights with
each expert's end row as offsets; a group without rows runs no tile and reads no weights. A
decode step of one token through top-2 of 8 experts reads two experts' weights; a batch reads
more until every expert is reached. Ground truth: the closed form (each expert's
``3 * hidden * ffn`` weights times the experts reached, ``min(experts, tokens * top_k)`` under
balanced routing) and, for the pricing's batch scaling, a step traced directly at that batch.
"""

from __future__ import annotations

import pytest

from archcost.infer.capture import InferStep, capture_inference
from archcost.loader import load_model_file
from archcost.options import Recompute
from archcost.trace.assume import Routing, expert_loads, groups_reached, parse_routing
from archcost.trace.precision import parse_precision

# Mixtral's layout shrunk: 2 layers, hidden 64, ffn 96, 8 experts, top 2
TINY = dict(num_hidden_layers=2, hidden_size=64, intermediate_size=96, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=256, num_local_experts=8, num_experts_per_tok=2)
LAYERS, H, F, E, K = 2, 64, 96, 8, 2
EXPERT_BYTES = 3 * H * F * 2  # gate, up and down, bf16


def _spec():
    return load_model_file("hf:mixtral-8x7b", TINY)


@pytest.mark.parametrize("batch", [1, 2, 3, 8])
def test_decode_reads_the_experts_its_tokens_reach(batch):
    """A decode step of ``batch`` tokens reads min(8, 2 * batch) experts' weights a layer, and
    its grouped GEMMs read exactly those (the rest of their bytes: activations)."""
    cap = capture_inference(_spec(), InferStep.decode(batch, 5), parse_precision("bf16"))
    grouped = [d for _, d in cap.graph.nodes(data=True) if d["grouped"]]
    assert grouped, "the experts ran as no grouped GEMM"
    reached = min(E, K * batch)
    weights = sum(d["grouped"][2] * d["grouped"][3] // d["grouped"][0] * d["count"]
                  for d in grouped)
    assert weights == LAYERS * reached * EXPERT_BYTES
    for d in grouped:
        groups, rows, every, hit = d["grouped"]
        assert (groups, rows, hit) == (E, K * batch, reached)
        assert every == E * EXPERT_BYTES // 3 * (2 if d["out_shapes"][0][-1] == 2 * F else 1)
        assert d["bytes_read"] >= every * hit // groups


def test_batch_scaling_equals_a_direct_trace():
    """The pricing reads a step of B sequences off the batch-1 and batch-2 traces; the grouped
    GEMMs' bytes it gives at B = 3, 4 and 16 equal those of a step traced at B."""
    from archcost.infer.price import _scale
    from archcost.plan.workload import workload_from_traces

    spec, policy = _spec(), parse_precision("bf16")
    one, two = (capture_inference(spec, InferStep.decode(b, 5), policy) for b in (1, 2))
    w = workload_from_traces({Recompute.NONE: one}, policy, at_batch_2={Recompute.NONE: two})
    ops = w.ops[Recompute.NONE]
    rows = ops.groups[:, 0] > 0
    assert rows.sum() == 2  # gate-up and down, one layer
    for batch in (3, 4, 16):
        direct = capture_inference(spec, InferStep.decode(batch, 5), policy)
        want = sum(d["bytes_read"] + d["bytes_written"]  # the block's one traced layer
                   for _, d in direct.graph.nodes(data=True) if d["grouped"])
        assert all(d["count"] == LAYERS for _, d in direct.graph.nodes(data=True)
                   if d["grouped"])
        priced = _scale(ops, batch).nbytes[rows].sum()
        assert priced == pytest.approx(want, rel=1e-9), batch


def test_decode_bytes_grow_with_the_experts_reached():
    """At widths where the weights dominate (hidden 1024, ffn 3584: 22 MB an expert), a decode
    step of 4 sequences moves 6 more experts a layer than one of 1 (2 of 8 reached, then all),
    and one of 8 hardly more than one of 4 (the same weights, more activations); on one H100
    the 6 experts take at least their bytes over the memory bandwidth."""
    from archcost.cli.infer import one_replica_cluster
    from archcost.infer.price import InferenceCosts
    from archcost.runtime import load_runtime

    h, f = 1024, 3584
    spec = load_model_file("hf:mixtral-8x7b", {**TINY, "hidden_size": h, "intermediate_size": f,
                                               "num_attention_heads": 8})
    costs = InferenceCosts(spec, one_replica_cluster("h100-sxm", 1), parse_precision("bf16"),
                           load_runtime("tensorrt-llm"), build_len=64)
    step = InferStep.decode(1, 20)
    work = {b: costs.work(b, step)["bytes_per_gpu"] for b in (1, 4, 8)}
    experts = LAYERS * (E - K) * 3 * h * f * 2
    assert experts < work[4] - work[1] < 1.01 * experts
    assert 0 < work[8] - work[4] < 0.01 * experts
    seconds = {b: costs.step(b, step)["seconds"] for b in (1, 4)}
    assert seconds[4] - seconds[1] > experts / costs.gpu.mem_bw_bytes_per_s  # no faster than HBM


@pytest.mark.parametrize("routing", ["balanced", "capacity=2", "histogram"])
def test_groups_reached_counts_the_loaded_experts(routing, tmp_path):
    """Brute force: the experts ``expert_loads`` gives a choice, over token counts."""
    if routing == "histogram":
        path = tmp_path / "h.json"
        path.write_text("[5, 0, 3, 0, 1, 1, 0, 2]")
        routing = f"histogram={path}"
    rule = parse_routing(routing)
    for rows in (1, 2, 3, 5, 8, 13, 100):
        want = sum(1 for x in expert_loads(rule, rows, 1, E) if x > 0)
        assert groups_reached(rule, rows, E) == want
    if rule.kind == "balanced":
        assert [groups_reached(rule, r, E) for r in (1, 2, 7, 8, 9)] == [1, 2, 7, 8, 8]
    if rule.kind == "histogram":
        assert groups_reached(rule, 1000, E) == 5  # the experts with a share
    assert groups_reached(Routing(), 0, E) == 0


@pytest.mark.parametrize("model,sets", [
    ("hf:mixtral-8x7b", TINY),  # grouped GEMMs over the experts, a replicated router
    ("models/moe.py", {"preset": "tiny"}),  # batched matmuls over a capacity buffer
    ("hf:tests/data/hf/gemma2.json", {"num_hidden_layers": 4}),  # two groups: sliding, global
    ("hf:llama-3.1-8b", {"num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 176,
                         "num_attention_heads": 4, "num_key_value_heads": 2,
                         "vocab_size": 256}),
])
def test_two_tensor_parallel_all_reduces_a_layer(model, sets):
    """Megatron-LM's layout (Shoeybi et al. 2019, Sec. 3): one all-reduce after attention's
    row-parallel output projection, one after the MLP's (a mixture of experts' experts split
    as an MLP, the router replicated), whatever the stack's groups; the experts' projections
    hold shards, the router does not."""
    from archcost.plan.workload import workload_from_traces

    spec, policy = load_model_file(model, sets), parse_precision("bf16")
    one, two = (capture_inference(spec, InferStep.decode(b, 5), policy) for b in (1, 2))
    w = workload_from_traces({Recompute.NONE: one}, policy, at_batch_2={Recompute.NONE: two})
    assert w.tp_points == 2


def test_stacked_experts_under_weight_quantization_are_named():
    """--weights int8 converts the blocks' nn.Linear layers; transformers' experts are stacked
    3-D parameters, which stay in the compute dtype: the notes say so, and the weights held
    count them at 2 bytes each (the closed form: layers x (3 h f E) x 2)."""
    from functools import partial

    from archcost.trace.quant import parse_weight_quant, quantize_linears

    quant = partial(quantize_linears, quant=parse_weight_quant("int8", 32))
    cap = capture_inference(_spec(), InferStep.decode(1, 5), parse_precision("bf16"),
                            quantize=quant)
    note = next(n for n in cap.notes if "stacked expert weights" in n)
    assert note.startswith(f"{2 * LAYERS} stacked expert weights")
    assert cap.weight_bytes - cap.packed_bytes >= LAYERS * E * EXPERT_BYTES
