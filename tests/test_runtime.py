"""Runtime profiles: the bundled stacks say what their sources say, malformed files are refused
one line per error, and each property the engine reads moves the cost as it should.

Expected values come from the stacks' code and documents (cited beside each) and from hand
computation, never from the code under test.
"""

from __future__ import annotations

import dataclasses

import networkx as nx
import numpy as np
import pytest
from typer.testing import CliRunner

from archcost.cli import app
from archcost.cost.fusion import executed_graph, fuse_graph
from archcost.errors import ProfileError
from archcost.hardware.profile import load_cluster
from archcost.options import Recompute
from archcost.plan.costmodel import CostModel
from archcost.plan.evaluate import estimate_plan
from archcost.plan.space import parse_plan
from archcost.plan.workload import trace_workload
from archcost.runtime import (
    AttentionKernel,
    Fusion,
    OptimizerKernel,
    ReduceDtype,
    SelectiveRecompute,
    list_runtimes,
    load_runtime,
)
from archcost.trace import trace_model
from archcost.trace.precision import parse_precision
from tests.conftest import MODELS, ROOT

RUNTIMES = ROOT / "runtime_profiles"


# --- the bundled profiles ------------------------------------------------------------------------
def test_every_bundled_runtime_loads_and_the_default_is_eager():
    names = list_runtimes()
    assert {"eager", "torchtitan", "torchtitan-compile", "fsdp", "deepspeed", "megatron",
            "megatron-2022"} <= set(names)
    for n in names:
        assert load_runtime(n).name == n
    assert load_runtime().name == "eager"


@pytest.mark.parametrize("name, field, value", [
    # torchtitan 9dec370 config_manager.py:389-396: mixed_precision_reduce float32
    ("torchtitan", "gradient_reduce_dtype", ReduceDtype.FP32),
    # torchtitan 9dec370 optimizer.py:130-139: fused=False, foreach=True
    ("torchtitan", "optimizer", OptimizerKernel.FOREACH),
    # torchtitan 9dec370 parallelize_llama.py:214-270: per-op SAC
    ("torchtitan", "selective_recompute", SelectiveRecompute.OP_SAC),
    ("torchtitan-compile", "fusions", frozenset({Fusion.ELEMENTWISE})),
    # Megatron-LM core_v0.8.0 arguments.py:300-308: bf16 reduces gradients in fp32
    ("megatron", "gradient_reduce_dtype", ReduceDtype.FP32),
    # TE v1.8: cuDNN fused attention preferred on sm90, FlashAttention elsewhere
    ("megatron", "attention_kernel", (AttentionKernel.CUDNN, AttentionKernel.FLASH2)),
    ("megatron", "optimizer", OptimizerKernel.FUSED),
    # Megatron-Bridge performance guide: one of 4 ReduceScatter chunks stays exposed
    ("megatron", "tp_comm_exposed", 0.25),
    # DeepSpeed zero/config.py overlap_comm_valid: overlap only at stage 3 by default
    ("deepspeed", "overlap_dp", frozenset({3})),
    # Megatron-LM 2021 local DDP all-reduces after the whole forward-backward
    ("megatron-2022", "overlap_dp", frozenset()),
    # what archcost validate runs: the trace's ops, torch.optim with foreach=False
    ("eager", "fusions", frozenset()),
    ("eager", "optimizer", OptimizerKernel.PER_TENSOR),
    ("fsdp", "optimizer", OptimizerKernel.FOREACH),
    # Lee et al. 2025 (arXiv 2507.03114): compute beside communication 18.9 % slower on average
    ("megatron", "overlap_slowdown", 0.189),
    ("torchtitan", "overlap_slowdown", 0.189),
    ("eager", "overlap_slowdown", 0.189),
    # an inference engine reduces no gradients: nothing charged
    ("tensorrt-llm", "overlap_slowdown", 0.0),
])
def test_bundled_figures_match_their_sources(name, field, value):
    assert getattr(load_runtime(name), field) == value


# --- malformed files -----------------------------------------------------------------------------
def _write(tmp_path, text: str):
    p = tmp_path / "stack.yaml"
    p.write_text(text)
    return str(p)


@pytest.mark.parametrize("edit, field, words", [
    (("fusions: []", "fusions: [dropout, compile]"), "fusions", "use one of"),
    (("optimizer: per-tensor", "optimizer: fast"), "optimizer", "use one of"),
    (("tp_comm_exposed: 1.0", "tp_comm_exposed: 1.5"), "tp_comm_exposed", "in [0, 1]"),
    (("tp_comm_exposed: 1.0", "tp_comm_exposed: '25 %'"), "tp_comm_exposed", "in [0, 1]"),
    (("overlap_dp: [0, 1, 2, 3]", "overlap_dp: true"), "overlap_dp", "list of ZeRO stages"),
    (("overlap_dp: [0, 1, 2, 3]", "overlap_dp: [4]"), "overlap_dp", "list of ZeRO stages"),
    (("attention_kernel: flash2", "attention_kernel: flash5"), "attention_kernel",
     "is unknown; did you mean"),
    (("name: eager", "name: ''"), "name", "non-empty text"),
    (("fp8: null", "fp8: {recipe: lazy, weight_all_gather: true}"), "fp8.recipe", "use one of"),
    (("fp8: null", "fp8: {recipe: current}"), "fp8.weight_all_gather", "missing"),
    (("fp8: null", "fp8: null\nfusion: none"), "fusion", "did you mean 'fusions'"),
    (("fp8: null", "allocator_headroom: -0.1"), "allocator_headroom", ">= 0"),
    (("overlap_slowdown: 0.189", "overlap_slowdown: 1.5"), "overlap_slowdown", "in [0, 1]"),
    (("overlap_slowdown: 0.189", "overlap_slowdown: '19 %'"), "overlap_slowdown", "in [0, 1]"),
    (("fp8: null", "fp8: null\ncuda_graphs: true\ngraph_batch_sizes: [1, 8, 4]"),
     "graph_batch_sizes", "increasing order"),
    (("fp8: null", "fp8: null\ncuda_graphs: true\ngraph_batch_sizes: [0, 8]"),
     "graph_batch_sizes", "batch sizes >= 1"),
    (("fp8: null", "fp8: null\ngraph_batch_sizes: [1, 8]"), "graph_batch_sizes",
     "add cuda_graphs: true or drop graph_batch_sizes"),
])
def test_a_malformed_runtime_is_one_line_naming_file_field_and_fix(tmp_path, edit, field, words):
    text = (RUNTIMES / "eager.yaml").read_text()
    assert edit[0] in text
    path = _write(tmp_path, text.replace(edit[0], edit[1]))
    with pytest.raises(ProfileError) as info:
        load_runtime(path)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"stack.yaml: field '{field}': ") and words in msg


def test_every_error_of_a_file_is_its_own_line_and_the_cli_prints_each(tmp_path):
    text = (RUNTIMES / "eager.yaml").read_text()
    text = text.replace("optimizer: per-tensor", "optimizer: 3").replace(
        "tp_comm_exposed: 1.0", "tp_comm_exposed: 2").replace("fusions: []", "")
    path = _write(tmp_path, text)
    with pytest.raises(ProfileError) as info:
        load_runtime(path)
    lines = str(info.value).splitlines()
    assert sorted(line.split("'")[1] for line in lines) == ["fusions", "optimizer",
                                                            "tp_comm_exposed"]
    res = CliRunner().invoke(app, ["profiles", "show", path])
    assert res.exit_code == 2
    err = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert len(err) == 3 and all("stack.yaml: field '" in ln for ln in err)


def test_a_hardware_profile_given_as_a_runtime_is_refused():
    with pytest.raises(ProfileError, match="hardware profile; give it to --hardware"):
        load_runtime(str(ROOT / "hardware_profiles" / "gpus" / "h100-sxm.yaml"))
    with pytest.raises(ProfileError, match="no runtime profile named 'megatorn'; did you mean"):
        load_runtime("megatorn")


def test_profiles_list_and_show_cover_runtimes():
    res = CliRunner().invoke(app, ["profiles", "list"])
    assert res.exit_code == 0 and "torchtitan-compile" in res.output and "runtimes" in res.output
    res = CliRunner().invoke(app, ["profiles", "show", "megatron"])
    assert res.exit_code == 0 and "cudnn, flash2" in res.output and "0.25" in res.output
    res = CliRunner().invoke(app, ["profiles", "show", "tensorrt-llm"], env={"COLUMNS": "200"})
    assert res.exit_code == 0
    assert "decode steps as CUDA graphs" in res.output and "256, 384, 512, 1024" in res.output
    assert "no (a compiled engine)" in res.output


# --- fusion: bytes of fused groups by hand -------------------------------------------------------
def _node(g, n, op, cls, rd, wr, phase="forward", group="layers.0", module="m"):
    g.add_node(n, op=op, op_class=cls, bytes_read=rd, bytes_written=wr, phase=phase,
               repeat_group=group, index=n, module=module, flops=0, out_shapes=[[4, 8]],
               count=1)


def test_a_fused_chain_moves_its_external_bytes_once():
    # mm -> a -> b -> c -> mm: a reads 100 from the matmul and a 10-byte parameter, each op
    # writes 100; only c's output leaves the chain
    g = nx.DiGraph()
    _node(g, 0, "aten.mm", "matmul", 0, 100)
    _node(g, 1, "aten.mul", "elementwise", 110, 100)
    _node(g, 2, "aten.add", "elementwise", 100, 100)
    _node(g, 3, "aten.silu", "elementwise", 100, 100)
    _node(g, 4, "aten.mm", "matmul", 100, 100)
    for u, v in ((0, 1), (1, 2), (2, 3), (3, 4)):
        g.add_edge(u, v, bytes=100)
    f = fuse_graph(g, ["elementwise"])
    moved = [f.nodes[n]["bytes_read"] + f.nodes[n]["bytes_written"] for n in (1, 2, 3)]
    assert moved == [110 + 100, 0, 0]
    assert [f.nodes[n]["launches"] for n in range(5)] == [1, 1, 0, 0, 1]
    assert [fuse_graph(g, []).nodes[n]["launches"] for n in range(5)] == [1] * 5


def test_a_chain_through_a_matmul_never_fuses_across_it():
    # a -> mm -> b and a -> b: fusing a with b would need the matmul's output inside the group
    g = nx.DiGraph()
    _node(g, 0, "aten.mul", "elementwise", 100, 100)
    _node(g, 1, "aten.mm", "matmul", 100, 100)
    _node(g, 2, "aten.add", "elementwise", 200, 100)
    for u, v in ((0, 1), (1, 2), (0, 2)):
        g.add_edge(u, v, bytes=100)
    f = fuse_graph(g, ["elementwise"])
    assert [f.nodes[n]["launches"] for n in range(3)] == [1, 1, 1]
    assert f.nodes[2]["bytes_read"] == 200


def test_a_saved_output_is_still_written():
    # the chain's middle tensor is read by a backward op: written once, from inside the kernel
    g = nx.DiGraph()
    _node(g, 0, "aten.mul", "elementwise", 100, 100)
    _node(g, 1, "aten.add", "elementwise", 100, 100)
    _node(g, 2, "aten.mul", "elementwise", 100, 100, phase="backward")
    g.add_edge(0, 1, bytes=100)
    g.add_edge(0, 2, bytes=100)
    g.add_edge(1, 2, bytes=100)
    f = fuse_graph(g, ["elementwise"])
    assert f.nodes[0]["bytes_read"] + f.nodes[0]["bytes_written"] == 100 + 100 + 100


def test_rmsnorm_fuses_to_one_kernel_under_the_norm_family():
    spec_traced = trace_model(_llama_tiny(), 1, 16, parse_precision("fp32"))
    g = spec_traced.graph
    norm = [n for n, d in g.nodes(data=True)
            if d["module"] == "layers.0.attention_norm" and d["phase"] == "forward"]
    f = fuse_graph(g, ["norm"])
    assert sum(f.nodes[n]["launches"] for n in norm) == 1
    # x (16 x 64 fp32) read once, the weight once, the output written; plus what autograd saves
    head = min(norm, key=lambda n: g.nodes[n]["index"])
    moved = f.nodes[head]["bytes_read"] + f.nodes[head]["bytes_written"]
    x, w = 16 * 64 * 4, 64 * 4
    assert x + w + x <= moved < sum(g.nodes[n]["bytes_read"] + g.nodes[n]["bytes_written"]
                                    for n in norm)


def _llama_tiny():
    from archcost.loader import load_model_file

    return load_model_file(str(MODELS / "llama.py"), {"preset": "tiny"})


# --- what selective recompute saves --------------------------------------------------------------
def test_op_sac_recomputes_every_second_matmul_and_no_attention():
    spec = _llama_tiny()
    t = trace_model(spec, 1, 16, parse_precision("bf16-mixed"), recompute=Recompute.SELECTIVE,
                    selective=SelectiveRecompute.OP_SAC)
    rc = [d for _, d in t.graph.nodes(data=True) if d["phase"] == "recompute"]
    mods = sorted(d["module"].split(".")[-1] for d in rc if d["op"] == "aten.mm")
    # block matmuls in order wq, wk, wv, wo, w1, w3, w2: the 2nd, 4th, 6th are recomputed
    assert mods == ["w3", "wk", "wo"]
    assert not any("attention" in d["op"] for d in rc)


# --- engine: reduce dtype, TP exposure, DP overlap -----------------------------------------------
@pytest.fixture(scope="module")
def gpt_runtimes():
    from archcost.loader import load_model_file

    spec = load_model_file(str(MODELS / "gpt2.py"), {"layers": 4, "hidden": 256, "heads": 4,
                                                     "vocab": 1024})
    out = {}
    for name in ("eager", "torchtitan", "deepspeed", "megatron"):
        out[name] = trace_workload(spec, 128, parse_precision("bf16-mixed"), "adamw",
                                   (Recompute.NONE,), runtime=load_runtime(name))
    return out


def _est(w, plan, **kw):
    cm = CostModel(w, load_cluster("dgx-h100-ndr", parse_plan(plan).gpus), **kw)
    return estimate_plan(parse_plan(plan), cm, with_schedule=False)[0], cm


def test_fp32_gradient_reduction_doubles_the_reduce_scatter_bytes(gpt_runtimes):
    plan = "dp=8,zero=2,mbs=1,gbs=8"
    rows = {}
    for name in ("eager", "torchtitan"):
        est, _ = _est(gpt_runtimes[name], plan)
        rows[name] = next(c for c in est["comm"] if c["collective"] == "reduce-scatter")
    w = gpt_runtimes["eager"]
    # bf16 gradients: 2 bytes per trainable parameter; torchtitan reduces in fp32: 4
    assert rows["eager"]["bytes"] == pytest.approx(2 * w.trainable_params)
    assert rows["torchtitan"]["bytes"] == pytest.approx(4 * w.trainable_params)


def test_tp_comm_exposed_scales_the_layers_tensor_parallel_time(gpt_runtimes):
    plan = "tp=4,sp=1,mbs=2,gbs=2"
    w = gpt_runtimes["eager"]
    full, _ = _est(w, plan)
    quarter, _ = _est(dataclasses.replace(w, runtime=dataclasses.replace(
        load_runtime("eager"), tp_comm_exposed=0.25)), plan)
    # the layers' collectives scale by the exposed share; embedding and head keep theirs
    emb = _one_tp(full)
    layers_full = full["components_s"]["tp_comm"] - emb
    assert quarter["components_s"]["tp_comm"] - emb == pytest.approx(0.25 * layers_full)


def _one_tp(est) -> float:
    """The vocab-parallel embedding and head collectives: one all-gather + reduce-scatter each
    (sequence parallel), from the recorded per-collective seconds."""
    ag = next(c for c in est["comm"] if c["collective"] == "all-gather")["seconds_each"]
    rs = next(c for c in est["comm"] if c["collective"] == "reduce-scatter")["seconds_each"]
    return 2 * est["plan"]["num_microbatches"] * (ag + rs)


def test_deepspeed_overlaps_gradient_reduction_only_at_stage_3(gpt_runtimes):
    w = gpt_runtimes["deepspeed"]
    _, cm = _est(w, "dp=8,zero=1,mbs=1,gbs=8")
    assert [cm.overlaps_dp(z) for z in range(4)] == [False, False, False, True]
    assert [CostModel(gpt_runtimes["megatron"], cm.cluster).overlaps_dp(z)
            for z in range(4)] == [True] * 4
    assert CostModel(w, cm.cluster, overlap_dp=True).overlaps_dp(1)  # the flag overrides
    est, _ = _est(w, "dp=8,zero=1,mbs=1,gbs=8")
    rs = sum(c["seconds_each"] * c["per_step"] for c in est["comm"] if c["group"] == "dp")
    assert est["components_s"]["dp_comm"] == pytest.approx(rs)  # nothing hidden


def _slowed(w, slowdown: float):
    return dataclasses.replace(w, runtime=dataclasses.replace(load_runtime("eager"),
                                                              overlap_slowdown=slowdown))


@pytest.mark.parametrize("plan", ["dp=8,zero=1,mbs=1,gbs=8", "dp=8,zero=1,mbs=1,gbs=32"])
def test_compute_beside_an_overlapped_gradient_reduction_runs_slower(gpt_runtimes, plan):
    """A collective hidden behind backward still costs what it slows the compute beside it:
    with the compute s slower while it runs, a hidden collective of T seconds adds
    T s / (1 + s) (the compute it displaced), checked against the recorded collectives."""
    w = gpt_runtimes["eager"]
    free, _ = _est(_slowed(w, 0.0), plan)
    assert free["components_s"]["dp_comm"] == 0.0  # hidden entirely without interference
    s = 0.189
    slowed, _ = _est(_slowed(w, s), plan)
    dp = sum(c["seconds_each"] * c["per_step"] for c in slowed["comm"] if c["group"] == "dp")
    assert dp > 0
    assert slowed["components_s"]["dp_comm"] == pytest.approx(dp * s / (1 + s))
    assert slowed["step_time_s"] - free["step_time_s"] == pytest.approx(dp * s / (1 + s))


def test_zero3_gathers_slow_every_layer_they_overlap(gpt_runtimes):
    """ZeRO-3: each micro-batch gathers every layer's parameters before its forward and its
    backward and reduce-scatters its gradients; all but the first gather and the last reduce
    hide behind a neighbouring layer, each slowing it by its time x s / (1 + s)."""
    plan = "dp=8,zero=3,mbs=1,gbs=16"
    w = gpt_runtimes["eager"]
    free, _ = _est(_slowed(w, 0.0), plan)
    s = 0.189
    slowed, _ = _est(_slowed(w, s), plan)
    ag = next(c for c in slowed["comm"] if c["collective"] == "all-gather")["seconds_each"]
    rs = next(c for c in slowed["comm"] if c["collective"] == "reduce-scatter")["seconds_each"]
    layers = w.layers
    m = slowed["plan"]["num_microbatches"]
    assert m == 2
    # without interference only the first layer's gather and the last layer's reduce show
    assert free["components_s"]["dp_comm"] == pytest.approx((ag + rs) / layers)
    assert slowed["components_s"]["dp_comm"] - free["components_s"]["dp_comm"] == \
        pytest.approx(m * (2 * ag + rs) * s / (1 + s))


@pytest.mark.parametrize("name", ["torchtitan", "deepspeed", "megatron"])
def test_kernel_equals_full_estimate_under_every_runtime(gpt_runtimes, name):
    from archcost.plan import enumerate_plans
    from tests.test_plan_cost import _kernel_vs_estimate

    w = gpt_runtimes[name]
    cm = CostModel(w, load_cluster("dgx-h100-ndr", 16), uniform_stages=True)
    plans = enumerate_plans(w.shape, 16, 32, constraints=["pp=1", "recompute=none"])
    assert len(plans) > 50
    _kernel_vs_estimate(cm, plans[::5], ("step_s", "mem_peak", "mfu"))


# --- the optimizer kernel and the attention kernel -----------------------------------------------
def test_foreach_launches_one_kernel_per_kind_of_optimizer_op():
    t = trace_model(_llama_tiny(), 1, 16, parse_precision("bf16-mixed"))
    g = executed_graph(t.graph, load_runtime("fsdp"))
    opt = [d for _, d in g.nodes(data=True) if d["phase"] == "optimizer"]
    assert sum(d["launches"] * d["count"] for d in opt) == pytest.approx(
        len({d["op"] for d in opt}))


def test_the_runtimes_attention_kernel_prices_sdpa_at_its_published_rate():
    from archcost.cost.compute import compute_times, lower, runtime_attention_kernel
    from archcost.hardware.profile import load_gpu
    from archcost.loader import load_model_file

    gpu = load_gpu("h100-sxm")
    # head dim 128 (512 / 4), causal, 4096 tokens: a point of the FA3 paper's Fig. 5 grid
    spec = load_model_file(str(MODELS / "llama.py"), {"preset": "tiny", "hidden": 512,
                                                      "heads": 4, "kv_heads": 4})
    arrays = lower(trace_model(spec, 1, 4096, parse_precision("bf16")).graph)
    i = next(i for i, op in enumerate(arrays.op) if "scaled_dot_product" in op
             and "backward" not in op)
    chosen = {name: runtime_attention_kernel(gpu, load_runtime(name))
              for name in ("fsdp", "torchtitan", "megatron", "eager")}
    # eager and FSDP run PyTorch's default SDPA backend on H100 (FlashAttention-2), Megatron-Core
    # with Transformer Engine cuDNN's fused attention
    assert chosen == {"fsdp": "flash2", "torchtitan": "flash2", "megatron": "cudnn",
                      "eager": "flash2"}
    t = {k: compute_times(arrays, gpu, k).seconds[i] / arrays.count[i]
         for k in ("flash2", "cudnn")}
    assert t["cudnn"] < t["flash2"]
    # FlashAttention-2 forward, causal, d = 128, 4k tokens: 319 TFLOP/s of 989 (FA3 paper Fig. 5)
    # at the clock a training step holds (the profile's sustained_clock)
    assert t["flash2"] == pytest.approx(arrays.flops[i] / (319e12 * gpu.sustained_clock)
                                        + gpu.kernel_launch_s, rel=2e-3)


def test_overlapped_tp_communication_takes_its_sms_from_the_layers_matmuls():
    from archcost.plan.table import C, build_table
    from tests.test_plan_cost import synthetic

    cluster = load_cluster("dgx-h100-ndr", 8)
    gpu = cluster.gpu
    assert gpu.sm_count == 132  # H100 SXM5 (NVIDIA H100 whitepaper)
    rows = {}
    for name in ("megatron", "eager"):
        w = dataclasses.replace(synthetic(), runtime=load_runtime(name))
        t = build_table(w, gpu, np.array([[0, 1, 1, 0, 1, 1], [0, 1, 2, 0, 1, 1]]))
        rows[name] = t.rows[:, C["block_f"]]
    launch = gpu.kernel_launch_s
    eff = gpu.matmul_efficiency.at(2e12)  # the synthetic layer's 4e12 FLOPs over tp = 2
    eff *= gpu.sustained_clock  # at the clock a training step holds
    # tp = 1: no TP collective beside the matmul; tp = 2: megatron's 16 of 132 SMs are held
    assert rows["megatron"][0] == pytest.approx(rows["eager"][0])
    assert rows["eager"][1] == pytest.approx(2e12 / (989e12 * eff) + launch)
    assert rows["megatron"][1] == pytest.approx(2e12 / (989e12 * eff * (1 - 16 / 132)) + launch)


def test_repeated_kv_heads_are_read_as_the_models_kv_heads():
    from archcost.loader import load_model_file

    out = {}
    for gqa in ("repeat", "native"):
        spec = load_model_file(str(MODELS / "llama.py"), {"preset": "tiny", "gqa": gqa})
        w = trace_workload(spec, 32, parse_precision("bf16-mixed"), "adamw", (Recompute.NONE,))
        out[gqa] = w
    # tiny: 4 query heads of 16, 2 KV heads: K and V are 2 x 16 wide per token either way
    for w in out.values():
        assert (w.shape.heads, w.shape.kv_heads, w.kv_hidden) == (4, 2, 32)
    ops = {k: w.ops[Recompute.NONE] for k, w in out.items()}
    # the copies' gradient sums back over the repeated heads: one add per element of the
    # repeated K and V gradients, 2 layers x 2 tensors x (4 heads x 32 tokens x 16)
    assert ops["repeat"].model_flops - ops["native"].model_flops == 2 * 2 * 4 * 32 * 16
    # Meta's repeat_kv copies K and V to every query head: more bytes, same FLOPs
    assert (ops["repeat"].nbytes * ops["repeat"].count).sum() > \
        (ops["native"].nbytes * ops["native"].count).sum()


def test_a_search_keeps_to_the_plans_the_stack_can_run(tmp_path):
    from archcost.loader import load_model_file
    from archcost.plan.search import search

    # Megatron-LM 2021-22 had neither the distributed optimizer nor context parallelism
    assert load_runtime("megatron-2022").plan_constraints == ("zero=0", "cp=1")
    spec = load_model_file(str(MODELS / "gpt2.py"), {"layers": 4, "hidden": 256, "heads": 4,
                                                     "vocab": 1024})
    found = {}
    for name in ("eager", "megatron-2022"):
        w = trace_workload(spec, 256, parse_precision("fp16-mixed"), "adamw",
                           (Recompute.NONE,), runtime=load_runtime(name))
        res = search(CostModel(w, load_cluster("dgx-a100-hdr", 16)), [16], 64, top=400,
                     pareto_max=0, rerank=400)
        found[name] = [parse_plan(p["plan"]) for p in res["plans"]]
    assert all(p.cp == 1 and int(p.zero) == 0 for p in found["megatron-2022"])
    assert any(p.cp > 1 or int(p.zero) > 0 for p in found["eager"])
    text = (RUNTIMES / "eager.yaml").read_text() + "plan_constraints: ['cp<<2']\n"
    with pytest.raises(ProfileError, match="field 'plan_constraints': .* list of plan constr"):
        load_runtime(_write(tmp_path, text))


# --- what selective recomputation runs again --------------------------------------------------
def _recomputed_matmuls(model: str, sets: dict, selective: SelectiveRecompute,
                        batch: int = 2, seq: int = 32) -> dict:
    """(module, op) -> count of the matmuls the selective trace runs again in backward."""
    from archcost.loader import load_model_file
    from archcost.trace.capture import capture_step
    from archcost.trace.records import Phase

    spec = load_model_file(str(MODELS / model), sets)
    r = capture_step(spec, batch, seq, parse_precision("fp32"), "adamw",
                     recompute=Recompute.SELECTIVE, selective=selective)
    out: dict = {}
    for rec in r.records:
        if rec.phase is Phase.RECOMPUTE and rec.op in ("aten.mm", "aten.addmm", "aten.bmm"):
            shapes = tuple(tuple(a.shape) for a in rec.args if hasattr(a, "shape"))
            key = (rec.module.rpartition(".")[2], rec.op, shapes)
            out[key] = out.get(key, 0) + rec.count  # repeated layers traced once, counted
    return out


@pytest.mark.parametrize("model, sets", [
    ("gpt2.py", dict(layers=2, hidden=64, heads=4, vocab=256, flash=False, dropout=0.1)),
    ("llama.py", dict(preset="tiny")),
])
def test_attention_core_recompute_runs_no_projection_again(model, sets):
    """Megatron checkpoints the attention core alone (Korthikanti et al. 2022, Sec. 5): its
    projections and the MLP do not run again in backward; with explicit attention the score and
    value batched matmuls do (torch's replay of the block would otherwise rerun every op before
    the core whose own output autograd does not save)."""
    got = _recomputed_matmuls(model, sets, SelectiveRecompute.ATTENTION_CORE)
    assert all(op == "aten.bmm" for _, op, _ in got), got
    if not sets.get("flash", True):
        assert got  # the explicit core's bmm run again


def test_mla_up_proj_recompute_runs_the_two_up_projections_again():
    """Megatron-Core's recompute_modules = [mla_up_proj]: the query and key-value
    up-projections run again, each on its latent (B*T x q_rank, B*T x kv_rank), and no other
    matmul: the down-projections, the output projection and the experts keep their outputs."""
    from models.deepseek_v3 import PRESETS

    # two dense and two MoE layers: each kind a repeated block, so every layer is checkpointed
    cfg = {**PRESETS["tiny"], "layers": 4, "dense_layers": 2}
    heads = cfg["heads"]
    got = _recomputed_matmuls("deepseek_v3.py", dict(preset="tiny", layers=4, dense_layers=2),
                              SelectiveRecompute.MLA_UP_PROJ, batch=2, seq=64)
    rows = 2 * 64
    q_out = heads * (cfg["qk_nope_dim"] + cfg["qk_rope_dim"])
    kv_out = heads * (cfg["qk_nope_dim"] + cfg["v_dim"])
    assert got == {
        ("wq_b", "aten.mm", ((rows, cfg["q_rank"]), (cfg["q_rank"], q_out))): cfg["layers"],
        ("wkv_b", "aten.mm", ((rows, cfg["kv_rank"]), (cfg["kv_rank"], kv_out))): cfg["layers"],
    }


@pytest.mark.parametrize("sizes, batch, most, padded", [
    ((1, 2, 4, 8, 16, 32, 64, 128, 256, 384, 512, 1024), 300, None, 384),
    ((1, 2, 4, 8, 16, 32, 64, 128, 256, 384, 512, 1024), 385, 640, 512),
    ((1, 2, 4, 8, 16, 32, 64, 128, 256, 384, 512, 1024), 513, 640, 640),  # padded to the cap
    ((1, 2, 4, 8, 16, 32, 64, 128, 256, 384, 512, 1024), 700, 640, None),  # past the engine's
    ((1, 2, 4, 8, 16, 32, 64, 128, 256, 384, 512, 1024), 2000, None, None),  # past the list
    ((1, 2, 4), 5, 8, None),  # the list stops short of the cap: nothing to pad to
    ((1, 2, 4), 3, 3, 3),
    ((), 77, 640, 77),  # a graph at every batch size
])
def test_a_decode_pads_to_the_next_captured_batch_within_the_engine(sizes, batch, most, padded):
    """TensorRT-LLM's rule (``_filter_cuda_graph_batch_sizes``): sizes past the engine's
    largest graph batch are dropped and, where the list went past it, padding goes to it."""
    rt = dataclasses.replace(load_runtime("tensorrt-llm"), graph_batch_sizes=sizes)
    assert rt.graph_batch(batch, most) == padded
    assert dataclasses.replace(rt, cuda_graphs=False).graph_batch(batch, most) is None
