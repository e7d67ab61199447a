"""Mixture-of-experts inference: a grouped GEMM reads the experts its tokens reach.

transformers' Mixtral runs its experts as ``torch._grouped_mm`` over the stacked weights with
each expert's end row as offsets; a group without rows runs no tile and reads no weights. A
decode step of one token through top-2 of 8 experts reads two experts' weights; a batch reads
more until every expert is reached. Ground truth: the closed form (each expert's
``3 * hidden * ffn`` weights times the experts reached, ``min(experts, tokens * top_k)`` under
balanced routing) and, for the pricing's batch scaling, a step traced directly at that batch.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from archcost.infer.capture import InferStep, capture_inference
from archcost.loader import load_model_file
from archcost.options import Recompute
from archcost.trace.assume import Routing, expert_loads, groups_reached, parse_routing
from archcost.trace.precision import parse_precision
from archcost.trace.quant import parse_weight_quant, quantize_linears
from tests.conftest import class_flops

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


# DeepSeek-V3's layout shrunk: a dense first layer, then MoE layers of 8 routed experts (top 2)
# and one shared expert; multi-latent attention (no projection of the hidden width but o_proj's)
DEEPSEEK_TINY = dict(num_hidden_layers=3, first_k_dense_replace=1, hidden_size=64,
                     intermediate_size=128, moe_intermediate_size=48, n_routed_experts=8,
                     num_experts_per_tok=2, n_group=2, topk_group=1, num_attention_heads=4,
                     num_key_value_heads=4, q_lora_rank=32, kv_lora_rank=16,
                     qk_rope_head_dim=8, qk_nope_head_dim=16, v_head_dim=16, vocab_size=256)


@pytest.mark.parametrize("model,sets,own,summed", [
    # routed and shared experts: TensorRT-LLM's SharedMoE adds them, then one allreduce
    ("hf:deepseek-v3", DEEPSEEK_TINY, 3, 2),
    # the bundled DeepSeek-V3: routed experts gathered back through a zero row and summed
    ("models/deepseek_v3.py", {"preset": "tiny"}, 3, 2),
    # Qwen2-MoE: the shared expert scaled by a one-value gate (replicated) before the sum
    ("hf:tests/data/hf/qwen2_moe.json", {}, 3, 2),
    ("hf:tests/data/hf/olmoe.json", {}, 2, 2),  # no shared expert
    ("hf:tests/data/hf/falcon.json", {}, 2, 1),  # transformers' parallel Falcon layer
    # x + attn(h) + mlp(h): TensorRT-LLM's GPT-J and Falcon sum the two, then one allreduce
    ("models/gptj.py", {"preset": "tiny"}, 2, 1),
    ("models/falcon.py", {"preset": "tiny"}, 2, 1),
    # sequential sub-layers: the residual stream is normed between them, nothing to sum
    ("hf:mixtral-8x7b", TINY, 2, 2),
    ("hf:llama-3.1-8b", {"num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 176,
                         "num_attention_heads": 4, "num_key_value_heads": 2,
                         "vocab_size": 256}, 2, 2),
])
def test_partial_sums_added_before_one_all_reduce(model, sets, own, summed):
    """Each row-parallel projection all-reduces its own output (Megatron-Core; ``eager``);
    a runtime with ``tp_sum_partials`` adds the partial sums that meet in an add before any
    other use and all-reduces the sum once (TensorRT-LLM's SharedMoE and parallel blocks)."""
    from archcost.plan.workload import workload_from_traces
    from archcost.runtime import load_runtime

    spec, policy = load_model_file(model, sets), parse_precision("bf16")
    one, two = (capture_inference(spec, InferStep.decode(b, 5), policy) for b in (1, 2))
    got = [workload_from_traces({Recompute.NONE: one}, policy, runtime=load_runtime(r),
                                at_batch_2={Recompute.NONE: two}).tp_points
           for r in ("eager", "tensorrt-llm")]
    assert got == [own, summed]


def test_stacked_experts_the_group_does_not_divide_stay_and_are_named():
    """Group size 64: the experts' gate-up weights (K = hidden 64) pack; their down weights
    (K = ffn 96) stay in the compute dtype, which the notes say, and are held at 2 bytes a
    weight (the closed form: layers x E x h x f x 2)."""
    from functools import partial

    quant = partial(quantize_linears, quant=parse_weight_quant("int8", 64))
    cap = capture_inference(_spec(), InferStep.decode(1, 5), parse_precision("bf16"),
                            quantize=quant)
    note = next(n for n in cap.notes if "stay in the compute dtype" in n)
    assert note.startswith(f"{LAYERS} stacked expert weights") and "down_proj" in note
    assert "group size 64" in note
    assert cap.weight_bytes - cap.packed_bytes >= LAYERS * E * H * F * 2


def _real_tiny_mixtral():
    import torch

    from archcost.loader import load_model_file as load

    torch.manual_seed(0)
    spec = load("hf:mixtral-8x7b", TINY)
    return spec.build(1, 16).eval().to(torch.float32)


@pytest.mark.parametrize("scheme", ["int8", "int4", "fp8"])
def test_packed_experts_unpack_to_each_expert_quantized_as_a_linear(scheme):
    """Each expert's matrix of a stacked weight packs as a linear of its shape does (the int
    schemes' group scales; fp8: one scale per expert, as one linear's per-tensor scale): the
    dense weight the module's forward reads equals, expert by expert, the dense weight of
    that expert's matrix converted as an nn.Linear; and the packed bytes are the closed form."""
    import torch
    from torch import nn

    from archcost.trace.quant import STACKED_SUFFIX, _convert

    model = _real_tiny_mixtral()
    experts = model.model.layers[0].mlp.experts
    dense = {n: getattr(experts, n).detach().clone() for n in ("gate_up_proj", "down_proj")}
    quant = parse_weight_quant(scheme, 32)
    blocks = [f"model.layers.{i}" for i in range(LAYERS)]
    state = quantize_linears(model, blocks, quant)
    assert type(experts).__name__.endswith(STACKED_SUFFIX)
    assert "gate_up_proj" not in dict(experts.named_parameters())
    per_weight = {"int8": 1.0 + 4 / 32, "int4": 0.5 + 4 / 32, "fp8": 1.0}[scheme]  # fp32 scales
    for name, w in dense.items():
        got = getattr(experts, name)
        assert got.shape == w.shape and got.dtype == w.dtype
        for e in range(E):
            lin = nn.Linear(w.shape[2], w.shape[1], bias=False)
            lin.weight.data = w[e].clone()
            assert torch.equal(got[e], _convert(lin, quant).dense(w.dtype)), (name, e)
        packed = state.experts[f"model.layers.0.mlp.experts.{name}"]
        size = sum(t.numel() * t.element_size() for t in packed.values())
        assert size == pytest.approx(w.numel() * per_weight + (4 * E if scheme == "fp8" else 0))


def test_a_quantized_mixtral_generates_as_the_unquantized_one():
    """int8 experts and linears (group 32) on a real CPU forward: logits within int8's
    rounding of the unquantized model's (3 % in norm) and the same greedy tokens almost
    everywhere, the experts read through their packed state."""
    import torch

    model = _real_tiny_mixtral()
    ids = torch.randint(0, 256, (2, 12))
    with torch.no_grad():
        want = model(input_ids=ids).logits
        quantize_linears(model, [f"model.layers.{i}" for i in range(LAYERS)],
                         parse_weight_quant("int8", 32))
        got = model(input_ids=ids).logits
    assert not torch.equal(got, want)
    assert (got - want).norm() < 0.03 * want.norm()  # int8's rounding, a router flip or two
    assert (got.argmax(-1) == want.argmax(-1)).float().mean() > 0.9


@pytest.mark.parametrize("scheme,compute", [("int4", "bfloat16"), ("fp8", "float8_e4m3fn")])
def test_a_fused_grouped_gemm_reads_the_packed_experts_it_reaches(scheme, compute):
    """Under a runtime that fuses the dequantization into the GEMM (tensorrt-llm), a decode
    step of one token reads 2 of the 8 experts' packed bytes (values and scales), and fp8
    experts run as an fp8 GEMM; the eager runtime unpacks every expert each step."""
    from functools import partial

    from archcost.cost.fusion import executed_graph
    from archcost.runtime import load_runtime

    quant = partial(quantize_linears, quant=parse_weight_quant(scheme, 32))
    cap = capture_inference(_spec(), InferStep.decode(1, 5), parse_precision("bf16"),
                            quantize=quant)
    packed = {"int4": 3 * H * F * (0.5 + 2 / 32), "fp8": 3 * H * F + 2 * 4}[scheme]  # per expert
    fused = executed_graph(cap.graph, load_runtime("tensorrt-llm"))
    grouped = [d for _, d in fused.nodes(data=True) if d["grouped"]]
    # (int4: and the two bytes of the shifts that unpack it, per weight)
    assert sum(d["grouped"][2] for d in grouped) == pytest.approx(E * packed, abs=4)
    for d in grouped:
        groups, _, every, reached = d["grouped"]
        assert every * reached / groups <= d["bytes_read"] < every * reached / groups + 2048
        assert d["compute_dtype"] == compute
    eager = executed_graph(cap.graph, load_runtime("eager"))
    unpack = sum(d["bytes_read"] for _, d in eager.nodes(data=True)
                 if d["module"].endswith("mlp.experts") and d["op_class"] != "matmul"
                 and d["repeat_group"])
    assert unpack >= E * packed  # every expert's packed bytes read to unpack them



def test_a_lone_layer_beside_the_repeated_ones_is_quantized():
    """DeepSeek-V2-Lite's layout: one dense layer, then MoE layers (one block of several).
    TensorRT-LLM quantizes every decoder layer's linears, the lone one too; the LM head stays."""
    from archcost.trace.repeats import RepeatTracker

    model = load_model_file("hf:deepseek-v3", DEEPSEEK_TINY).build(1, 16)
    tracker = RepeatTracker.from_model(model)
    assert tracker.layers == ("model.layers.0", "model.layers.1", "model.layers.2")
    assert [b.members for b in tracker.blocks][0] == ["model.layers.1", "model.layers.2"]
    state = quantize_linears(model, list(tracker.layers), parse_weight_quant("int8", 16))
    dense = [p for p in state.linears if p.startswith("model.layers.0.mlp.")]
    assert sorted(dense) == ["model.layers.0.mlp.down_proj", "model.layers.0.mlp.gate_proj",
                             "model.layers.0.mlp.up_proj"]
    assert not any("lm_head" in p for p in state.linears)


@pytest.mark.parametrize("model,sets,layers", [
    ("hf:deepseek-v3", dict(DEEPSEEK_TINY, num_hidden_layers=2), 2),  # dense + MoE: no block
    ("hf:llama-3.1-8b", {"num_hidden_layers": 1, "hidden_size": 64, "intermediate_size": 176,
                         "num_attention_heads": 4, "num_key_value_heads": 2,
                         "vocab_size": 256}, 1),  # one layer
])
def test_layers_without_a_repeated_block_are_the_model_s_layers(model, sets, layers):
    """A module list of one class is the model's layers, repeated or not: a one-layer model's
    linears are converted (7 of Llama's: q, k, v, o, gate, up, down), the LM head is not."""
    from archcost.trace.repeats import RepeatTracker

    model = load_model_file(model, sets).build(1, 16)
    tracker = RepeatTracker.from_model(model)
    assert not tracker.blocks
    assert tracker.layers == tuple(f"model.layers.{i}" for i in range(layers))
    linears = [p for p, m in model.named_modules() if isinstance(m, torch.nn.Linear)
               and p.startswith("model.layers.")]
    assert layers > 1 or len(linears) == 7
    state = quantize_linears(model, list(tracker.layers), parse_weight_quant("int8", 16))
    assert sorted([*state.linears, *state.kept]) == sorted(linears) and state.linears
    assert not any("lm_head" in p for p in state.linears)


def test_layers_outside_the_main_stack_all_reduce_too():
    """DeepSeek-V3's layout with 2 dense layers before 3 MoE layers: the MoE layers are the
    main stack (2 all-reduces each under TensorRT-LLM), the dense ones run 2 each outside it
    (o_proj, down_proj); a tensor-parallel step pays 3 x 2 + 2 x 2 = 10 all-reduces."""
    from archcost.cli.infer import one_replica_cluster
    from archcost.cost.comm import Collective, collective_cost
    from archcost.infer.price import InferenceCosts
    from archcost.runtime import load_runtime

    spec = load_model_file("hf:deepseek-v3", dict(DEEPSEEK_TINY, num_hidden_layers=5,
                                                  first_k_dense_replace=2))
    cluster = one_replica_cluster("dgx-h100-ndr", 2)
    costs = InferenceCosts(spec, cluster, parse_precision("bf16"),
                           load_runtime("tensorrt-llm"), build_len=64, tp=2)
    step = InferStep.decode(1, 40)
    w = costs.workload(step)
    assert (w.layers, w.tp_points, w.tp_points_outside) == (3, 2, 4)
    one = collective_cost(Collective.ALL_REDUCE, 4 * w.hidden * w.act_bytes, 2, cluster).seconds
    assert costs.step(4, step)["tp_comm_s"] == pytest.approx(10 * one, rel=1e-12)


def test_pipeline_stages_count_every_decoder_layer():
    """DeepSeek-V3's layout with 1 dense and 3 MoE layers: 4 decoder layers, each a cache
    (MLA: one latent head of kv_lora_rank + rope dims, copied on every GPU). pp 4 is one layer
    a stage; pp 3 puts ceil(4 / 3) = 2 layers' caches on the fullest stage:
    2 * (16 + 8) * 2 bytes per token and layer."""
    from archcost.cli.infer import one_replica_cluster
    from archcost.infer.price import InferenceCosts
    from archcost.runtime import load_runtime

    spec = load_model_file("hf:deepseek-v3", dict(DEEPSEEK_TINY, num_hidden_layers=4))

    def costs(pp):
        return InferenceCosts(spec, one_replica_cluster("dgx-h100-ndr", pp),
                              parse_precision("bf16"), load_runtime("eager"), build_len=64,
                              pp=pp)

    assert costs(4).layer_count() == 4
    costs(4).check_shapes()  # 4 stages of one layer: accepted
    per_token_layer = (16 + 8) * 2
    assert costs(3).kv_bytes_per_gpu(2, 64) == pytest.approx(2 * per_token_layer * 64 * 2)
    assert costs(4).kv_bytes_per_gpu(2, 64) == pytest.approx(1 * per_token_layer * 64 * 2)


def _attention_region(spec, step, runtime):
    """(the absorbing GEMMs' FLOPs, the attention kernel's FLOPs and bytes read) of the MoE
    layer's attention in ``step`` as ``runtime`` runs it: the matmuls of the attention module
    that read no hidden-width input (kv_b_proj, or the bundled model's absorbing bmms) and
    the attention kernel."""
    from archcost.cost.fusion import executed_graph
    from archcost.runtime import load_runtime

    cap = capture_inference(spec, step, parse_precision("bf16"), build_len=40)
    g = executed_graph(cap.graph, load_runtime(runtime))
    layer = [d for _, d in g.nodes(data=True) if ".layers.1." in f".{d['module']}."
             and ("attn" in d["module"] or "attention" in d["module"])]
    gemms = sum(d["flops"] for d in layer if d["op_class"] == "matmul"
                and d["module"].split(".")[-1] in ("kv_b_proj", "self_attn", "attention"))
    att = [d for d in layer if d["op_class"] == "attention"]
    if not att:  # eager: transformers' ops as they run
        return gemms, None, None, None
    return gemms, att[0]["flops"], att[0]["bytes_read"], att[0]


def test_a_serving_runtime_absorbs_latent_attention_in_a_generation_step():
    """transformers' DeepSeek-V3 projects every cached token's latent through kv_b_proj at each
    step; TensorRT-LLM's MLA generation absorbs it (``mla``): per head the query through the
    key half (dn x r), one attention over the latent (r + dr wide, one KV head), the output
    through the value half (r x dv). Closed forms at H 4, r 16, dr 8, dn 16, dv 16, a context
    of 12 (13 keys); and against the bundled model, which writes the absorbed form itself:
    its two absorbing bmms make kv_b_proj's FLOPs, its SDPA (the value padded to r + dr) the
    attention's plus 2*H*Sk*dr."""
    heads, r, dr, dn, dv, keys = 4, 16, 8, 16, 16, 13
    step = InferStep.decode(1, keys - 1)
    hf = load_model_file("hf:deepseek-v3", DEEPSEEK_TINY)
    gemms, flops, read, att = _attention_region(hf, step, "tensorrt-llm")
    assert gemms == 2 * heads * r * (dn + dv)
    assert flops == 2 * heads * keys * (2 * r + dr)
    assert read == 2 * (heads * (r + dr) + keys * (r + dr))  # the query and the latent, bf16
    assert att["kv_heads"] == 1 and att["attention_shape"] == [r + dr, 1, keys, 0, 0]
    bundled = load_model_file("models/deepseek_v3.py", {"preset": "tiny"})
    b_gemms, b_flops, _, _ = _attention_region(bundled, step, "tensorrt-llm")
    assert b_gemms == gemms
    assert b_flops == flops + 2 * heads * keys * dr
    # eager runs transformers' form: kv_b_proj over every cached token, per-head K and V
    e_gemms, e_flops, _, _ = _attention_region(hf, step, "eager")
    scores = 2 * heads * keys * (dn + dr + dv)  # the two bmms over the expanded heads
    assert e_flops is None and e_gemms == 2 * keys * r * heads * (dn + dv) + scores


def test_a_prefill_keeps_the_expanded_latent_attention():
    """The context phase expands the latent through kv_b_proj (TensorRT-LLM's
    forward_context_default): a prefill's kv_b_proj FLOPs stay 2*S*r*H*(dn + dv)."""
    heads, r, dn, dv, tokens = 4, 16, 16, 16, 9
    hf = load_model_file("hf:deepseek-v3", DEEPSEEK_TINY)
    gemms, *_ = _attention_region(hf, InferStep.prefill(1, tokens), "tensorrt-llm")
    assert gemms == 2 * tokens * r * heads * (dn + dv)


@pytest.mark.parametrize("model,sets,down,up", [
    ("hf:deepseek-v3", DEEPSEEK_TINY, ("q_a_proj", "kv_a_proj_with_mqa"),
     ("q_b_proj", "kv_b_proj")),
    # (its decode multiplies the query and output by wkv_b's halves itself: no wkv_b GEMM)
    ("models/deepseek_v3.py", {"preset": "tiny"}, ("wq_a", "wkv_a"), ("wq_b",)),
])
def test_latent_down_projections_stay_whole_under_tensor_parallelism(model, sets, down, up):
    """MLA's down-projections (hidden to the q and kv latents, each RMS-normalized whole
    before its up-projection) run whole on every rank, as Megatron-Core builds them
    (``duplicated``) and TensorRT-LLM's MLA (``fused_a``, no tensor-parallel mode); the
    up-projections split by columns. At tp 2 a GPU's share of a down-projection's FLOPs is
    all of them, of an up-projection's half."""
    from archcost.plan.table import sharded_work
    from archcost.plan.workload import (
        _main_group,
        _ordered,
        _sections,
        _tp_layout,
        workload_from_traces,
    )

    spec, policy = load_model_file(model, sets), parse_precision("bf16")
    one, two = (capture_inference(spec, InferStep.decode(b, 5), policy) for b in (1, 2))
    g = one.graph
    w = workload_from_traces({Recompute.NONE: one}, policy, at_batch_2={Recompute.NONE: two})
    rep = _main_group(one.capture)[0]
    nodes = _ordered(g)
    sharded, _, _, whole = _tp_layout(g, nodes, _sections(nodes, rep), w.hidden)

    def gemms(leaf):
        return [n for n, d in g.nodes(data=True) if d["phase"] == "forward"
                and d["op_class"] == "matmul" and d["module"].split(".")[-1] == leaf]

    assert all(gemms(x) and set(gemms(x)) <= whole for x in down)
    assert all(gemms(x) and set(gemms(x)) <= sharded for x in up)
    ops = w.ops[Recompute.NONE]
    flops = sharded_work(ops, np.array([[1, 2, 0, 1, 1]], dtype=np.int64))[0]
    by_op = {i: flops[i] / max(ops.flops[i], 1e-30) for i in range(len(ops.flops))
             if ops.flops[i] > 0 and ops.op[i] in ("aten.mm", "aten.addmm")}
    shares = sorted(set(round(v, 6) for v in by_op.values()))
    assert shares == [0.5, 1.0]  # split projections and the whole ones (the router too)


def test_weights_of_whole_matmuls_are_held_whole_on_every_rank():
    """At tp 2 a GPU holds half of the split weights and all of the layers' whole ones: the
    two MoE layers' q and kv down-projections and router with its 8 correction biases
    (DeepSeek-V3's balancing bias), (64 x 32 + 64 x 24 + 64 x 8 + 8) x 2 bytes each (bf16),
    and the dense first layer's down-projections, (64 x 32 + 64 x 24) x 2 bytes: W(tp 2) -
    W(tp 1) / 2 is half of theirs."""
    from archcost.cli.infer import one_replica_cluster
    from archcost.infer.price import InferenceCosts
    from archcost.runtime import load_runtime

    spec, policy = load_model_file("hf:deepseek-v3", DEEPSEEK_TINY), parse_precision("bf16")

    def held(tp):
        costs = InferenceCosts(spec, one_replica_cluster("h100-sxm" if tp == 1 else
                                                         "dgx-h100-ndr", tp), policy,
                               load_runtime("eager"), build_len=40, tp=tp)
        return costs.weight_bytes_per_gpu()

    whole = 2 * (64 * 32 + 64 * 24 + 64 * 8 + 8) * 2 + (64 * 32 + 64 * 24) * 2
    assert held(2) - held(1) / 2 == pytest.approx(whole / 2)


def test_absorbed_latent_decode_flops_are_two_per_active_parameter_plus_attention():
    """The issue's decode closed form holds for multi-head latent attention as a serving engine
    runs it (``mla``): 2 x the parameters a token multiplies (per layer q_a, q_b, kv_a, kv_b,
    o; the dense layer's MLP; each MoE layer's router, shared expert and top-2 of the routed;
    the head) + the attention over the context, 2 * H * keys * (2r + dr) a layer (scores over
    the latent and its rotary part, values over the latent)."""
    from archcost.cost.fusion import executed_graph
    from archcost.runtime import load_runtime

    ctx = 12
    spec = load_model_file("hf:deepseek-v3", DEEPSEEK_TINY)
    cap = capture_inference(spec, InferStep.decode(1, ctx), parse_precision("fp32"),
                            build_len=40)
    g = executed_graph(cap.graph, load_runtime("tensorrt-llm"))
    h, heads, q_rank, r, dr, dn, dv, ffn, e_ffn, experts, top_k, vocab, layers = (
        64, 4, 32, 16, 8, 16, 16, 128, 48, 8, 2, 256, 3)
    attn = h * q_rank + q_rank * heads * (dn + dr) + h * (r + dr) + r * heads * (dn + dv) \
        + heads * dv * h
    moe = h * experts + 3 * h * e_ffn + top_k * 3 * h * e_ffn
    linear = layers * attn + 3 * h * ffn + 2 * moe + vocab * h
    attention = layers * 2 * heads * (ctx + 1) * (2 * r + dr)
    assert class_flops(g, "attention") == attention
    assert class_flops(g, "matmul", "attention") == 2 * linear + attention

