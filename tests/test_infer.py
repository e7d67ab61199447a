"""Inference pricing (``archcost.infer``): traced prefill and decode steps against closed forms,
real CPU steps under ``FlopCounterMode`` and direct traces (the interpolation and batch
scaling the pricing does must equal tracing the step itself), and the ``infer`` command's
one-line errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from typer.testing import CliRunner

from archcost.cli import app
from archcost.cli.infer import one_replica_cluster, quantizer
from archcost.errors import ConfigError
from archcost.infer.capture import InferStep, capture_inference
from archcost.infer.price import InferenceCosts
from archcost.loader import load_model_file
from archcost.runtime import load_runtime
from archcost.trace.precision import parse_precision
from tests.conftest import MODELS, class_flops

LLAMA_TINY = dict(layers=2, hidden=64, heads=4, kv_heads=2, ffn=176, vocab=512)  # the preset


def _llama(**extra):
    return load_model_file(str(MODELS / "llama.py"), dict(preset="tiny", **extra))


def _costs(spec, build_len=64, tp=1, hardware="h100-sxm", dtype="bf16", pp=1, **kw):
    return InferenceCosts(spec, one_replica_cluster(hardware, tp * pp), parse_precision(dtype),
                          load_runtime("eager"), build_len=build_len, tp=tp, pp=pp, **kw)



@pytest.mark.parametrize("batch,max_len,tp", [(1, 64, 1), (3, 40, 1), (2, 64, 2), (2, 64, 4)])
def test_kv_cache_bytes_closed_form(batch, max_len, tp):
    """2 * layers * kv_heads * head_dim * context * batch * bytes, split over the KV heads: tp
    past the 2 KV heads leaves each GPU a whole head."""
    d = LLAMA_TINY
    closed = 2 * d["layers"] * d["kv_heads"] * (d["hidden"] // d["heads"]) * max_len * batch * 2
    hw = "dgx-h100-ndr" if tp > 1 else "h100-sxm"
    costs = _costs(_llama(), build_len=max_len, tp=tp, hardware=hw)
    mem = costs.memory_bytes(batch, max_len)
    assert costs.kv_heads() == d["kv_heads"]
    assert mem["kv_cache"] == closed / min(tp, d["kv_heads"])


def test_a_latent_kv_cache_is_held_whole_on_every_tensor_parallel_gpu():
    """DeepSeek-V3's MLA caches one latent per token (kv_lora_rank + qk_rope_head_dim =
    576 values, bf16) that every head reads: as transformers caches it, one 'head' (its
    attention has 128), so tp 8 leaves each GPU the whole cache (closed form)."""
    spec = load_model_file("hf:deepseek-v3", {"num_hidden_layers": 2})
    eight = _costs(spec, build_len=144, tp=8, hardware="dgx-h100-ndr")
    assert eight.kv_heads() == 1
    assert eight.memory_bytes(1, 144)["kv_cache"] == 2 * 576 * 144 * 2


def test_kv_cache_bytes_mha_and_fp8():
    spec = load_model_file(str(MODELS / "gpt2.py"), dict(layers=2, hidden=64, heads=4,
                                                         vocab=256))
    mem = _costs(spec, build_len=48, kv_dtype="float8_e4m3fn").memory_bytes(2, 48)
    assert mem["kv_cache"] == 2 * 2 * 4 * 16 * 48 * 2 * 1  # MHA: kv_heads = heads, 1 byte


def test_static_memory_prefills_at_the_input_length():
    """A static batch prefills its input, then decodes one token a step: the transient peak is
    the larger of the input-length prefill's and the last decode step's, not a prefill of the
    whole input + output (the upper bound kept for callers that do not know the input)."""
    from archcost.infer.serving import largest_batch, static_serving

    costs = _costs(_llama(), build_len=64)
    st = static_serving(costs, 4, 8, 56)
    prefill = costs.activation_bytes(4, InferStep.prefill(1, 8))
    last = costs.activation_bytes(4, InferStep.decode(1, 63))
    assert st.memory_bytes["activations"] == max(prefill, last)
    bound = costs.memory_bytes(4, 64)["activations"]
    assert st.memory_bytes["activations"] < bound == costs.activation_bytes(
        4, InferStep.prefill(1, 64))
    assert st.max_batch == largest_batch(costs, 64, input_len=8) >= largest_batch(costs, 64)


def test_decode_flops_closed_form_and_flop_counter():
    """Decode FLOPs per token = 2 x the parameters a token multiplies (every linear, the head;
    not the embedding's lookup) + attention over the context (QK^T and PV: 4 * heads *
    head_dim * keys per layer); the matmuls' equal FlopCounterMode's count of a real CPU decode
    step (it counts no FLOPs for the CPU's fused attention op)."""
    d, ctx = LLAMA_TINY, 21
    spec = _llama()
    cap = capture_inference(spec, InferStep.decode(1, ctx), parse_precision("fp32"))
    h, f, g = d["hidden"], d["ffn"], d["kv_heads"] * d["hidden"] // d["heads"]
    linear = d["layers"] * (2 * h * h + 2 * h * g + 3 * h * f) + d["vocab"] * h
    attention = d["layers"] * 4 * d["heads"] * (h // d["heads"]) * (ctx + 1)
    assert class_flops(cap.graph, "matmul", "attention") == 2 * linear + attention
    assert class_flops(cap.graph, "attention") == attention
    model = spec.build(1, ctx + 1)
    cache = spec.kv_cache(model, 1, ctx + 1)
    with torch.no_grad():
        model(torch.randint(0, d["vocab"], (1, ctx)), cache=cache, start_pos=0)
        with FlopCounterMode(display=False) as fc:
            model(torch.randint(0, d["vocab"], (1, 1)), cache=cache, start_pos=ctx)
    assert fc.get_total_flops() == class_flops(cap.graph, "matmul") == 2 * linear


@pytest.mark.parametrize("step", [InferStep.prefill(3, 7), InferStep.decode(3, 21)])
def test_each_step_ends_with_its_greedy_pick(step):
    """A step puts out one token per sequence as a greedy generation picks it (what
    ``validate --infer`` times): its last op is one argmax over the vocabulary of each
    sequence's last position, whatever the number of positions the forward returned."""
    cap = capture_inference(_llama(), step, parse_precision("fp32"))
    last = max(cap.capture.records, key=lambda r: r.index)
    assert last.op == "aten.argmax" and last.module == ""
    assert _arg_shape(last) == (step.batch, LLAMA_TINY["vocab"])
    assert sum(r.op == "aten.argmax" for r in cap.capture.records) == 1


def _arg_shape(rec) -> tuple[int, ...]:
    from archcost.trace.records import TensorMeta

    return next(a.shape for a in rec.args if isinstance(a, TensorMeta))


def test_decode_interpolation_equals_a_direct_trace():
    """A decode step at any context is priced from two traced contexts; its op table must be
    the one a trace at that context gives (FLOPs, bytes, attention geometry)."""
    from archcost.options import Recompute
    from archcost.plan.workload import workload_from_traces

    spec = _llama(gqa="native")
    costs = _costs(spec, build_len=128)
    policy, runtime = costs.policy, costs.runtime
    ctx = 77
    got = costs.workload(InferStep.decode(1, ctx)).ops[Recompute.NONE]
    one, two = (capture_inference(spec, InferStep.decode(b, ctx), policy, build_len=128)
                for b in (1, 2))
    want = workload_from_traces({Recompute.NONE: one}, policy, at_batch_2={Recompute.NONE: two},
                                runtime=runtime).ops[Recompute.NONE]
    assert got.op == want.op
    for name in ("flops", "nbytes", "nbytes_fixed", "mnk", "attn", "slices"):
        np.testing.assert_allclose(getattr(got, name), getattr(want, name), rtol=1e-12,
                                   err_msg=name)


@pytest.mark.parametrize("kind", ["prefill", "decode"])
def test_batch_scaling_equals_a_direct_trace(kind):
    """FLOPs and bytes of a step at batch 3, scaled from batch 1 and 2, equal the trace at 3."""
    spec = _llama()
    costs = _costs(spec, build_len=64)
    step = InferStep.prefill(1, 24) if kind == "prefill" else InferStep.decode(1, 32)
    got = costs.work(3, step)
    cap = capture_inference(spec, InferStep(step.kind, 3, step.new_tokens, step.context),
                            costs.policy, build_len=64)
    from archcost.cost.fusion import executed_graph

    run = executed_graph(cap.graph, costs.runtime)
    flops = sum(d["flops"] * d["count"] for _, d in run.nodes(data=True))
    nbytes = sum((d["bytes_read"] + d["bytes_written"]) * d["count"]
                 for _, d in run.nodes(data=True))
    assert got["flops_per_gpu"] == pytest.approx(flops, rel=1e-9)
    assert got["bytes_per_gpu"] == pytest.approx(nbytes, rel=1e-9)


def test_int4_weights_are_packed_in_memory():
    """int4 weight-only: the layers' linears hold numel/2 bytes plus one bf16 scale per group;
    everything else (embedding, head, norms) stays bf16."""
    d, group = LLAMA_TINY, 16  # divides every input width (64, 176)
    h, f, g = d["hidden"], d["ffn"], d["kv_heads"] * d["hidden"] // d["heads"]
    linear = d["layers"] * (2 * h * h + 2 * h * g + 3 * h * f)
    rest = 2 * d["vocab"] * h + (2 * d["layers"] + 1) * h
    costs = _costs(_llama(), quantize=quantizer("bf16", "int4", group, None))
    assert costs.weight_bytes_per_gpu() == linear // 2 + linear // group * 2 + rest * 2


def test_explicit_attention_heads_are_found_in_a_decode_step():
    """A decode step's explicit attention scores one query row (B, heads, 1, S), no square
    matrix: its heads come from the softmax over them, so tp is checked against them."""
    spec = load_model_file(str(MODELS / "gpt2.py"), dict(layers=2, hidden=64, heads=4,
                                                         vocab=256, flash=False))
    costs = _costs(spec, build_len=48)
    assert costs.kv_heads() == 4
    assert not any("no attention found" in n for n in costs.notes())
    with pytest.raises(ConfigError, match="does not divide gpt2.py's 4 attention heads"):
        _costs(spec, build_len=48, tp=8, hardware="dgx-h100-ndr").check_shapes()


def test_int4_dequantized_weights_are_held_once_not_per_sequence():
    """A weight-only linear's dequantized weight lives for its matmul whatever the batch: at
    batch 64 int4 holds no more transient memory than bf16 does plus the two largest dequantized
    weights (the MLP's gate and up, bf16), and at batch 1 it holds more than bf16 (the weights
    are there)."""
    d = LLAMA_TINY
    dequantized = 2 * d["hidden"] * d["ffn"] * 2
    plain = _costs(_llama())
    int4 = _costs(_llama(), quantize=quantizer("bf16", "int4", 16, None))
    step = InferStep.prefill(1, 32)
    assert int4.activation_bytes(1, step) > plain.activation_bytes(1, step)
    assert int4.activation_bytes(64, step) <= plain.activation_bytes(64, step) + dequantized


def test_transient_envelope_is_the_peak_of_every_step_at_every_batch():
    """Brute force: each step's live bytes affine in the batch through the two traced ones;
    the envelope's peak equals the maximum over the steps at every batch."""
    from archcost.plan.workload import transient_envelope

    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(1, 40))
        fixed, per = rng.uniform(0, 100, n), rng.uniform(0, 10, n)
        pieces = transient_envelope(fixed + per, fixed + 2 * per)
        for b in (1, 2, 3, 7, 20, 1000):
            assert max(f + b * p for f, p in pieces) == pytest.approx(
                float(np.max(fixed + b * per)), rel=1e-12)
    # traces whose steps differ, unpaired: the line through their peaks (5 at b = 1, 6 at 2)
    assert transient_envelope(np.array([5.0, 3.0]), np.array([6.0])) == ((4.0, 1.0),)
    # paired by their ops: the batch-2 trace's extra step dropped, each paired step its line
    # (a weight of 30 held once, 2 per sequence; a step that doubles), the peaks' line beside
    live_1, live_2 = np.array([32.0, 10.0]), np.array([34.0, 7.0, 20.0])
    pieces = transient_envelope(live_1, live_2, [("mm", "f"), ("add", "f")],
                                [("mm", "f"), ("topk", "f"), ("add", "f")])
    for b in (1, 2, 3, 10, 100):
        want = max(30 + 2 * b, 10 * b)  # (the peaks' line, 32 -> 34, is the mm step's)
        assert max(f + b * p for f, p in pieces) == pytest.approx(want)
    # a step that shrinks with the batch is held at its batch-1 figure: the peak at b = 1 is
    # the batch-1 trace's
    shrink = transient_envelope(np.array([9.0, 4.0]), np.array([7.0, 6.0]))
    assert max(f + p for f, p in shrink) == 9.0
    assert max(f + 3 * p for f, p in shrink) == 9.0  # the growing step: 4 + 2 * 2 = 8


def test_pipeline_never_splits_a_sequence_and_a_prefill_fills_and_drains_it():
    """pp = 2 over a 2-layer model: a micro-batch is whole sequences, min(pp, batch) of them.
    One sequence crosses every stage once: the one-GPU step's compute plus a hop, never less;
    a second micro-batch adds one slowest stage (a layer and the heavier end: less than the
    whole model) to the prefill; a decode step is the longer of the round trip and the slowest
    stage serving each micro-batch."""
    spec = _llama()
    one, two = _costs(spec), _costs(spec, hardware="dgx-h100-ndr", pp=2)
    prefill, decode = InferStep.prefill(1, 32), InferStep.decode(1, 40)
    for step in (prefill, decode):
        alone, split = one.step(1, step), two.step(1, step)
        assert split["compute_s"] == pytest.approx(alone["compute_s"], rel=1e-12)
        assert split["pp_comm_s"] > 0
        assert split["seconds"] == pytest.approx(alone["seconds"] + split["pp_comm_s"],
                                                 rel=1e-12)
    stage = two.step(2, prefill)["compute_s"] - two.step(1, prefill)["compute_s"]
    assert 0 < stage < one.step(1, prefill)["compute_s"]
    assert two.step(3, prefill)["seconds"] == two.step(4, prefill)["seconds"]
    assert two.activation_bytes(3, prefill) == two.activation_bytes(4, prefill)
    d1, d2 = two.step(1, decode)["seconds"], two.step(2, decode)["seconds"]
    assert d1 <= d2 <= 2 * d1


def test_roofline_verdict_reads_the_stage_a_gpu_holds_and_the_peak_its_gemms_run_at():
    """pp = 2 over 2 layers: a GPU runs one layer and the head (the end that moves more), not
    half the model; fp8 linears put the ridge at the fp8 peak (the profile's figures)."""
    from archcost.hardware.profile import load_gpu

    spec, step = _llama(), InferStep.prefill(1, 32)
    one = _costs(spec).work(4, step)
    two = _costs(spec, hardware="dgx-h100-ndr", pp=2).work(4, step)
    assert one["flops_per_gpu"] / 2 < two["flops_per_gpu"] < one["flops_per_gpu"]
    g = load_gpu("h100-sxm").for_inference()
    fp8 = _costs(_llama(), quantize=quantizer("fp8", None, 128, None)).work(4, step)
    assert fp8["ridge_point_flop_per_byte"] == pytest.approx(
        g.peak_flops_per_s["fp8"] * g.sustained_clock / g.mem_bw_bytes_per_s, rel=1e-12)


def test_tp_splits_time_and_adds_all_reduces():
    spec = _llama()
    one = _costs(spec).step(8, InferStep.decode(1, 40))
    two = _costs(spec, tp=2, hardware="dgx-h100-ndr").step(8, InferStep.decode(1, 40))
    assert two["tp_comm_s"] > 0 and one["tp_comm_s"] == 0
    assert two["compute_s"] < one["compute_s"]


# --- the command -----------------------------------------------------------------------------
runner = CliRunner()


def _infer(*args):
    return runner.invoke(app, ["infer", str(MODELS / "llama.py"), "--set", "preset=tiny",
                               *args])


def test_infer_json_has_the_documented_keys():
    res = _infer("--batch", "2", "--input-len", "16", "--output-len", "8", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    inf = doc["inference"]
    assert doc["schema_version"] == 1 and doc["kind"] == "inference"
    for key in ("ttft_s", "tpot_s", "output_tokens_per_s", "output_tokens_per_s_per_gpu",
                "fits"):
        assert key in inf
    assert set(inf["memory_bytes"]) >= {"weights", "kv_cache", "peak_per_gpu"}
    assert inf["output_tokens_per_s"] == pytest.approx(2 * 8 / inf["e2e_s"])


@pytest.mark.parametrize("args,needle", [
    (("--tp", "3", "--hardware", "dgx-h100-ndr"), "does not divide"),
    (("--set", "hidden=96", "--set", "heads=12", "--set", "kv_heads=3", "--tp", "2",
      "--hardware", "dgx-h100-ndr"), "cannot split llama.py's 3 KV heads"),
    (("--tp", "2"), "is one GPU"),
    (("--batch", "100000", "--input-len", "4096", "--output-len", "4096", "--hardware",
      "l4"), "does not fit"),
    (("--dtype", "int3"), "--dtype"),
    (("--weights", "int4", "--dtype", "fp8"), "already stores"),
    (("--dtype", "fp8", "--hardware", "a100-sxm-80gb"), "has no fp8 peak"),
    (("--weights", "int4"), "none of the 14 linears"),  # group 128 > every tiny width
    (("--gpus", "2", "--hardware", "dgx-h100-ndr", "--tp", "2", "--rate", "3"),
     "drop --tp (choose"),
    (("--gpus", "2", "--hardware", "dgx-h100-ndr", "--rate", "0"),
     "--rate 0 with --gpus: the requests/s to serve; give a positive rate"),
    (("--gpus", "2", "--hardware", "dgx-h100-ndr", "--ttft-slo", "500"),
     "give 500ms or 500s"),
    (("--gpus", "64", "--hardware", "l40s-pcie", "--precisions", "bf16"),
     "l40s-pcie holds at most 8 GPUs"),
    (("--gpus", "2", "--hardware", "dgx-a100-hdr", "--precisions", "fp8"),
     "no plan on 2 GPUs can serve these requests"),
    (("--gpus", "2", "--hardware", "dgx-h100-ndr", "--ignore-memory"), "drop --ignore-memory"),
    (("--gpus", "2", "--hardware", "dgx-h100-ndr", "--tp", "1", "--dtype", "bf16"),
     "drop --tp, --dtype"),  # given at their defaults: still the search's to choose
    # options this run does not read, given (at their defaults too)
    (("--precisions", "fp8"), "--precisions: options of the serving search; add --gpus N"),
    (("--precisions", "bf16,fp8", "--continuous"),
     "--continuous, --precisions: options of the serving search"),
    (("--group-size", "64"), "--group-size: the weights per scale of --weights int8/int4"),
    (("--max-seqs", "4"), "--max-seqs: the cap on running requests of continuous batching"),
    (("--max-batched-tokens", "4096"),
     "--max-batched-tokens: the prompt tokens prefilled an iteration of continuous batching"),
    (("--chunked-prefill",), "--[no-]chunked-prefill: whether decodes and prompt chunks "
     "share a forward of continuous batching"),
    (("--no-chunked-prefill",), "--[no-]chunked-prefill: whether decodes and prompt chunks"),
    (("--gpus", "2", "--hardware", "dgx-h100-ndr", "--max-seqs", "4"),
     "add --rate R (or --gpus N --continuous)"),
    (("--group-size", "128", "--dtype", "fp8"), "add --weights int8 or int4"),
    (("--gpus", "2", "--hardware", "dgx-h100-ndr", "--group-size", "64"),
     "add int8 or int4 to --precisions"),
])
def test_infer_bad_inputs_one_line(args, needle):
    res = _infer(*args)
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0], res.stderr


def test_infer_notes_say_what_was_converted_and_a_sparse_rate_the_profile_lacks():
    res = _infer("--sparsity", "2:4", "--hardware", "apple-m3-max", "--json")
    assert res.exit_code == 0, res.output
    notes = json.loads(res.stdout)["notes"]
    assert any("weights of 14 linears" in n and "2:4 sparse" in n for n in notes), notes
    assert any("apple-m3-max states no 2:4-sparse bf16 rate" in n for n in notes), notes
    res = _infer("--sparsity", "2:4", "--hardware", "h100-sxm", "--json")
    assert not any("states no 2:4" in n for n in json.loads(res.stdout)["notes"])


def test_infer_converts_a_model_that_reads_a_linears_weight_outside_its_forward():
    """DeepSeek's absorbed attention reads ``wkv_b.weight``: under each conversion the trace
    unpacks it (and the layers' weights shrink against bf16)."""
    for args in (("--dtype", "fp8"), ("--weights", "int4", "--group-size", "16")):
        res = runner.invoke(app, ["infer", str(MODELS / "deepseek_v3.py"), "--set",
                                  "preset=tiny", "-i", "16", "-n", "4", "--json", *args])
        assert res.exit_code == 0, res.output
        inf = json.loads(res.stdout)["inference"]
        assert inf["memory_bytes"]["weights"] < inf["bf16_baseline"]["memory_bytes"]["weights"]


def test_infer_input_past_the_model_limit():
    res = runner.invoke(app, ["infer", str(MODELS / "gpt2.py"), "--set", "layers=2", "--set",
                              "hidden=64", "--set", "heads=4", "--set", "vocab=256", "--set",
                              "block_size=64", "--input-len", "60", "--output-len", "8"])
    assert res.exit_code == 2
    assert "pass the model's limit of 64" in res.stderr and len(res.stderr.splitlines()) == 1


def test_infer_model_without_cache_hook(tmp_path):
    src = (MODELS / "llama.py").read_text().replace("def kv_cache(", "def _no_kv_cache(")
    path = tmp_path / "nocache.py"
    path.write_text(src)
    res = runner.invoke(app, ["infer", str(path), "--set", "preset=tiny"])
    assert res.exit_code == 2 and "kv_cache" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("kv", [None, "float8_e4m3fn"])
def test_a_fused_kv_cache_reads_repeated_heads_once_per_kv_head(kv):
    """Under a runtime whose attention reads the cache in its kernel (``kv-cache``), a model
    that copies each KV head to its query heads before attention (``gqa=repeat``, as HF's
    ``repeat_kv``) reads the cache as one that hands SDPA the grouped heads does: once per KV
    head, in the cache's dtype (closed form), whatever that dtype."""
    from archcost.cost.fusion import executed_graph

    d, ctx = LLAMA_TINY, 30
    hd = d["hidden"] // d["heads"]
    cache = 2 * (2 * d["kv_heads"] * (ctx + 1) * hd * (2 if kv is None else 1))
    query = 2 * d["heads"] * 1 * hd * 2
    reads = []
    for gqa in ("repeat", "native"):
        cap = capture_inference(_llama(gqa=gqa), InferStep.decode(2, ctx),
                                parse_precision("bf16"), kv_dtype=kv)
        run = executed_graph(cap.graph, load_runtime("tensorrt-llm"))
        (a,) = [x for _, x in run.nodes(data=True) if x["op_class"] == "attention"
                and x["module"] == "layers.0.attention"]
        reads.append(a["bytes_read"])
    assert reads == [query + cache, query + cache]


@pytest.mark.parametrize("gqa", ["native", "repeat"])
@pytest.mark.parametrize("kv", ["float8_e4m3fn", None])
def test_kv_cache_per_head_reads_a_grouped_kv_head_once_per_query_head(gqa, kv):
    """tensorrt-llm-0.5's generation attention (before XQA) loads the KV head a group of query
    heads shares once per query head: llama tiny groups 4 query heads on 2 KV heads, so the
    cache bytes it reads double, whether the cache is cast (fp8) or read as it is (bf16) and
    whether the model hands SDPA grouped heads or copies; the query's bytes do not change."""
    from archcost.cost.fusion import executed_graph

    d, ctx = LLAMA_TINY, 30
    cap = capture_inference(_llama(gqa=gqa), InferStep.decode(2, ctx),
                            parse_precision("bf16"), kv_dtype=kv)
    reads = {}
    for name in ("tensorrt-llm", "tensorrt-llm-0.5"):
        run = executed_graph(cap.graph, load_runtime(name))
        (a,) = [x for n, x in run.nodes(data=True) if x["op_class"] == "attention"]
        reads[name] = a["bytes_read"]
    hd = d["hidden"] // d["heads"]
    query = 2 * d["heads"] * 1 * hd * 2  # bf16
    cache = 2 * (2 * d["kv_heads"] * (ctx + 1) * hd * (1 if kv else 2))  # K and V
    assert reads["tensorrt-llm"] - query == cache
    assert reads["tensorrt-llm-0.5"] - query == cache * d["heads"] // d["kv_heads"]


@pytest.mark.parametrize("heads,kv_heads,hidden,xqa", [
    (16, 2, 2048, True),  # 8 query heads per KV head, head dim 128: the XQA kernel's shape
    (8, 2, 1024, False),  # 4 per KV head (Mistral's, Mixtral's group): masked MHA
    (16, 2, 1024, False),  # 8 per KV head of head dim 64 (not 128): masked MHA
])
def test_kv_cache_per_head_xqa8_reads_once_only_the_xqa_shape(heads, kv_heads, hidden, xqa):
    """tensorrt-llm-0.8's generation attention: TensorRT-LLM's first XQA kernels serve 8
    query heads per KV head of head dim 128 and read each KV head once (as tensorrt-llm);
    every other grouped shape falls back to the per-query-head read (as tensorrt-llm-0.5)."""
    from archcost.cost.fusion import executed_graph

    ctx = 30
    cap = capture_inference(_llama(layers=1, hidden=hidden, heads=heads, kv_heads=kv_heads,
                                   ffn=64, gqa="native"),
                            InferStep.decode(1, ctx), parse_precision("bf16"))
    reads = {}
    for name in ("tensorrt-llm", "tensorrt-llm-0.5", "tensorrt-llm-0.8"):
        run = executed_graph(cap.graph, load_runtime(name))
        (a,) = [x for n, x in run.nodes(data=True) if x["op_class"] == "attention"]
        reads[name] = a["bytes_read"]
    hd = hidden // heads
    query = heads * hd * 2
    cache = 2 * kv_heads * (ctx + 1) * hd * 2  # K and V, bf16
    assert reads["tensorrt-llm"] - query == cache
    assert reads["tensorrt-llm-0.5"] - query == cache * heads // kv_heads
    assert reads["tensorrt-llm-0.8"] == reads["tensorrt-llm" if xqa else "tensorrt-llm-0.5"]


def test_search_and_continuous_documents_validate_and_render(tmp_path):
    """The serving search and continuous batching write documents the inference schema
    checks and `report` renders (their tables: plans ranked within the SLOs, the Pareto front;
    latency percentiles and the bf16 comparison)."""
    from archcost.report.schema import check

    search = tmp_path / "search.json"
    res = _infer("--gpus", "2", "--tpot-slo", "5ms", "--precisions", "bf16", "--input-len",
                 "16", "--output-len", "4", "-o", str(search))
    assert res.exit_code == 0, res.output
    doc = check(json.loads(search.read_text()))
    ranked = doc["search"]["ranked"]
    assert ranked and all(e["meets_slo"] and e["tpot_s"] <= 5e-3 for e in ranked)
    assert [e["output_tokens_per_s_per_gpu"] for e in ranked] == sorted(
        (e["output_tokens_per_s_per_gpu"] for e in ranked), reverse=True)
    cont = tmp_path / "cont.json"
    res = _infer("--batch", "2", "--input-len", "16", "--output-len", "4", "--rate", "50",
                 "--kv-dtype", "fp8", "-o", str(cont))
    assert res.exit_code == 0, res.output
    inf = check(json.loads(cont.read_text()))["inference"]
    assert inf["continuous"]["ttft"]["p50_s"] <= inf["continuous"]["ttft"]["p99_s"]
    assert inf["memory_bytes"]["kv_cache"] == inf["bf16_baseline"]["memory_bytes"]["kv_cache"] / 2
    for path, needle in ((search, "Throughput-latency Pareto front"),
                         (cont, "Continuous batching")):
        out = tmp_path / (path.stem + ".md")
        assert runner.invoke(app, ["report", str(path), "-o", str(out)]).exit_code == 0
        assert needle in out.read_text()


def test_max_seqs_caps_the_running_requests():
    """--max-seqs is the scheduler's cap: a flooded replica runs that many at most, nearly
    always (its mean batch within 1 % of the cap), the document says so, and a larger cap
    serves more tokens/s (decode steps read the weights once for the whole batch); the
    default is vLLM's 256."""
    docs = {}
    for cap in (None, "2", "8"):
        extra = () if cap is None else ("--max-seqs", cap)
        res = _infer("--input-len", "16", "--output-len", "8", "--rate", "1e6", "--json", *extra)
        assert res.exit_code == 0, res.output
        docs[cap] = json.loads(res.stdout)["inference"]["continuous"]
    assert docs[None]["max_seqs"] == 256 and docs[None]["max_batched_tokens"] is None
    for cap in ("2", "8"):
        c = docs[cap]
        assert c["max_seqs"] == c["max_running"] == int(cap)
        assert 0.99 * int(cap) <= c["mean_batch"] <= int(cap)
    assert docs["8"]["output_tokens_per_s"] > 2 * docs["2"]["output_tokens_per_s"]


def _with_warm_rows(l2_bytes: float):
    """The bundled cpu profile with a shape table of every dtype and warm rows for m = 1 and 4
    at twice the table's efficiency, its last-level cache ``l2_bytes``: a one-GPU cluster."""
    import dataclasses

    from archcost.hardware.profile import ShapeTable, load_gpu

    dims = (1.0, 4.0, 16.0, 256.0, 4096.0)
    cold = [[[0.01 * (1 + i) * (1 + j) * (1 + k) / 125 for k in range(5)] for j in range(5)]
            for i in range(5)]
    rows = ShapeTable((1.0, 4.0), [[[2 * v for v in r] for r in cold[i]] for i in (0, 1)],
                      dims, dims)
    gpu = dataclasses.replace(load_gpu("cpu"), l2_bytes=l2_bytes,
                              matmul_shape_efficiency={"all": ShapeTable(dims, cold)},
                              matmul_shape_efficiency_warm={"all": rows})
    cluster = one_replica_cluster("cpu", 1)
    return dataclasses.replace(cluster, gpu=gpu)


def test_decode_reads_the_warm_rows_where_weights_and_cache_fit_the_last_level_cache():
    """A decode step whose bytes moved (weights, KV cache, activations: ``work``) fit in the
    last-level cache is priced on the profile with its warm rows in place (``warm_weights``):
    exactly that profile's price, and below the cold one; a cache too small for them, and a
    prefill, keep the cold table."""
    import dataclasses

    spec = _llama()

    def costs(cluster):
        return InferenceCosts(spec, cluster, parse_precision("fp32"), load_runtime("eager"),
                              build_len=64)

    big, small = costs(_with_warm_rows(1e9)), costs(_with_warm_rows(1e3))
    held = big.work(2, InferStep.decode(1, 32))["bytes_per_gpu"]
    assert big.weight_bytes_per_gpu() + big.kv_bytes_per_gpu(2, 33) < held < 1e9
    decode, prefill = InferStep.decode(1, 32), InferStep.prefill(1, 32)
    assert big.weights_cached(2, decode) and not small.weights_cached(2, decode)
    assert not big.weights_cached(2, prefill)
    just = costs(_with_warm_rows(held))  # the bound is inclusive: bytes moved == the cache
    assert just.weights_cached(2, decode)
    assert not costs(_with_warm_rows(held * (1 - 1e-9))).weights_cached(2, decode)
    warm_profile = dataclasses.replace(small.cluster, gpu=small.cluster.gpu.warm_weights())
    assert big.step(2, decode)["seconds"] == pytest.approx(
        costs(warm_profile).step(2, decode)["seconds"], rel=1e-12)
    assert big.step(2, decode)["seconds"] < small.step(2, decode)["seconds"]
    assert big.step(2, prefill)["seconds"] == small.step(2, prefill)["seconds"]


def test_a_document_says_which_rows_priced_its_decode_step():
    """``phases.decode.weights_from_cache``: the same verdict as ``weights_cached`` at the
    document's batch, on a profile with warm rows (true under a large cache, false under a
    small one); absent on a profile without them, and on the prefill. Every rendering says it
    where it is there."""
    from archcost.infer.document import inference_section
    from archcost.report.infer_tables import inference_tables, weights_source
    from archcost.report.tables import Report

    spec = _llama()

    def section(cluster):
        costs = InferenceCosts(spec, cluster, parse_precision("fp32"), load_runtime("eager"),
                               build_len=48)
        return costs, inference_section(costs, 2, 32, 16)

    for l2, cached in ((1e9, True), (1e3, False)):
        costs, inf = section(_with_warm_rows(l2))
        decode = inf["phases"]["decode"]
        assert decode["weights_from_cache"] is cached
        assert costs.weights_cached(2, InferStep.decode(1, decode["context"])) is cached
        assert "weights_from_cache" not in inf["phases"]["prefill"]
        said = "weights in the last-level cache" if cached else "weights from memory"
        assert weights_source(decode) == said
        rep = Report("inference")
        inference_tables({"inference": inf}, rep)
        text = json.dumps([t.rows for t in rep.tables])
        assert f"memory ({said})" in text or f"compute ({said})" in text
    _, plain = section(one_replica_cluster("cpu", 1))
    assert "weights_from_cache" not in plain["phases"]["decode"]
    assert weights_source(plain["phases"]["decode"]) == ""


def test_decode_on_more_gpus_than_kv_heads_reads_a_whole_head_each():
    """Past tp = KV heads each GPU holds a copy of one KV head (kv_bytes_per_gpu) and its
    decode attention reads all of it: attention's bytes a GPU at tp 4 equal those at tp 2 on
    a model of 2 KV heads (and halve from tp 1 to 2), and a step moves at least the cache a
    GPU holds."""
    spec = load_model_file(str(MODELS / "llama.py"), {"preset": "tiny", "gqa": "native"})
    step, batch = InferStep.decode(1, 1000), 16

    def attention_bytes(tp):
        c = InferenceCosts(spec, one_replica_cluster("dgx-h100-ndr", tp),
                           parse_precision("bf16"), load_runtime("tensorrt-llm"),
                           build_len=1024, tp=tp)
        ops = c._ops(c.workload(step), batch, step)
        att = ops.attention & (ops.section == 1)
        return float((ops.nbytes * ops.count)[att].sum()) / tp, c

    one, _ = attention_bytes(1)
    two, _ = attention_bytes(2)
    four, c4 = attention_bytes(4)
    assert c4.kv_heads() == 2
    assert two == pytest.approx(one / 2) and four == pytest.approx(two)
    assert c4.work(batch, step)["bytes_per_gpu"] >= c4.kv_bytes_per_gpu(batch, 1001)


@pytest.mark.parametrize("gqa", ["repeat", "native"])
def test_tensor_parallel_splits_what_decode_reads_of_the_cache(gqa):
    """Each GPU holds its KV heads' share of the cache: what a decode step reads of it (the
    slice of the cache, its copies to the query heads under gqa=repeat) divides by tp as
    the cache does. At a long context, where the cache dominates, a GPU of tp 2 moves about
    half of what one GPU does (the norms' and the head's replicated bytes the rest)."""
    spec = load_model_file(str(MODELS / "llama.py"), {"preset": "tiny", "gqa": gqa})
    step = InferStep.decode(1, 4000)

    def moved(tp):
        c = InferenceCosts(spec, one_replica_cluster("dgx-h100-ndr", tp),
                           parse_precision("bf16"), load_runtime("eager"), build_len=4096,
                           tp=tp)
        return c.work(8, step)["bytes_per_gpu"], c.kv_bytes_per_gpu(8, 4001)

    (one, kv1), (two, kv2) = moved(1), moved(2)
    assert kv2 == pytest.approx(kv1 / 2)
    assert one > kv1  # the cache dominates (read; under gqa=repeat copied to the query heads)
    assert two == pytest.approx(one / 2, rel=0.05)


def test_the_search_document_states_what_shapes_its_plans():
    """The cache's dtype, the weights' group size and the usable share of memory change the
    plans a search finds; its document states them, so diff tells two such searches apart,
    and it validates against the schema."""
    from archcost.report.schema import check

    docs = []
    for extra in ((), ("--kv-dtype", "fp8", "--usable-memory", "0.8")):
        res = _infer("--gpus", "2", "--hardware", "dgx-h100-ndr", "-i", "16", "-n", "4",
                     "--precisions", "bf16", "--json", *extra)
        assert res.exit_code == 0, res.output
        docs.append(json.loads(res.stdout))
        check(docs[-1])
    (a, b) = docs
    assert (a["workload"]["kv_dtype"], b["workload"]["kv_dtype"]) == (None, "fp8")
    assert a["workload"]["group_size"] == 128
    assert (a["hardware"]["usable_memory"], b["hardware"]["usable_memory"]) == (0.9, 0.8)


@pytest.mark.parametrize("kind", ["prefill", "decode"])
def test_a_serving_runtime_prices_written_out_and_sdpa_attention_alike(kind):
    """The bundled GPT-2 written two ways, its attention as ops (``flash=false``: matmul,
    scale, mask, softmax, matmul) and through SDPA (``flash=true``): under tensorrt-llm
    (``attention``) the two price the same step, one attention kernel each (the same FLOPs,
    times within 10 %); under eager the written-out one pays its score matrix."""
    step = InferStep.prefill(1, 64) if kind == "prefill" else InferStep.decode(1, 64)
    sets = {"layers": 2, "hidden": 128, "heads": 4}

    def priced(flash, runtime):
        spec = load_model_file(str(MODELS / "gpt2.py"), dict(sets, flash=flash))
        costs = InferenceCosts(spec, one_replica_cluster("h100-sxm", 1),
                               parse_precision("bf16"), load_runtime(runtime), build_len=96)
        (ops,) = costs.workload(step).ops.values()
        return costs.step(4, step)["seconds"], ops

    (t_ops, ops), (t_sdpa, sdpa) = priced(False, "tensorrt-llm"), priced(True, "tensorrt-llm")
    attention = [o.startswith("aten._scaled_dot_product") for o in ops.op]
    assert sum(attention) == sum(o.startswith("aten._scaled_dot_product") for o in sdpa.op)
    assert ops.flops[np.array(attention)].sum() == pytest.approx(
        sdpa.flops[np.array([o.startswith("aten._scaled_dot_product") for o in sdpa.op])].sum())
    assert t_ops == pytest.approx(t_sdpa, rel=0.10)
    if kind == "prefill":
        assert priced(False, "eager")[0] > priced(True, "eager")[0]


@pytest.mark.parametrize("tp,pp", [(1, 1), (2, 1), (1, 2)])
def test_a_mixed_forward_against_the_steps_it_merges(tp, pp):
    """One forward of in-flight batching (``InferenceCosts.mixed``): with no prompt chunks it
    is the decode step exactly; one whole prompt and no decodes is the prefill step within 2 %
    (its tokens' work read off the decode trace, its attention off the prefill's); a prompt's
    chunks' attention sums to the prompt's (their rows of the causal triangle); decodes and a
    prompt in one forward cost less than the two steps apart (the weights read once, one
    launch of every op) and more than either alone."""
    hw = "dgx-h100-ndr" if tp * pp > 1 else "h100-sxm"
    c = _costs(_llama(), build_len=96, tp=tp, pp=pp, hardware=hw)
    for n, ctx in ((1, 40), (5, 70)):
        assert c.mixed_s(n, ctx, ()) == pytest.approx(c.decode_s(n, ctx), rel=1e-12)
    whole = c.mixed(0, 0, ((0, 64, 64),))
    assert whole["seconds"] == pytest.approx(c.prefill_s(1, 64), rel=0.02)
    parts = [c.mixed(0, 0, ((a, a + 16, 64),)) for a in range(0, 64, 16)]
    assert sum(p["attention_s"] for p in parts) == pytest.approx(whole["attention_s"],
                                                                 rel=1e-9)
    assert parts[-1]["attention_s"] > parts[0]["attention_s"]  # later rows attend to more
    both, dec, pre = c.mixed_s(3, 50, ((0, 64, 64),)), c.decode_s(3, 50), c.prefill_s(1, 64)
    assert max(dec, pre) < both < dec + pre
    with pytest.raises(ConfigError, match="prompt chunk 10..5"):
        c.mixed(0, 0, ((10, 5, 64),))
    with pytest.raises(ConfigError, match="at least one"):
        c.mixed(0, 0, ())


def test_chunked_prefill_is_recorded_and_reads_the_weights_once_an_iteration():
    """--chunked-prefill: the document says so; flooded, a replica whose iterations run a
    prompt and the decodes in one forward serves more tokens/s than one running them apart
    (a tiny model: every forward's cost is its ops' launches, paid once instead of twice).
    Without the option, the runtime decides: eager apart, tensorrt-llm in one forward."""
    docs = {}
    for extra in ((), ("--chunked-prefill",)):
        res = _infer("--input-len", "16", "--output-len", "8", "--rate", "1e6",
                     "--max-batched-tokens", "40", "--json", *extra)
        assert res.exit_code == 0, res.output
        docs[bool(extra)] = json.loads(res.stdout)["inference"]["continuous"]
    assert docs[True]["chunked_prefill"] and not docs[False]["chunked_prefill"]
    assert docs[True]["max_batched_tokens"] == 40
    assert docs[True]["output_tokens_per_s"] > 1.2 * docs[False]["output_tokens_per_s"]
    # the default is the runtime's: TensorRT-LLM's in-flight batching shares the forward
    for extra, chunked in (((), True), (("--no-chunked-prefill",), False)):
        res = _infer("--input-len", "16", "--output-len", "8", "--rate", "1e6", "--runtime",
                     "tensorrt-llm", "--json", *extra)
        assert res.exit_code == 0, res.output
        assert json.loads(res.stdout)["inference"]["continuous"]["chunked_prefill"] is chunked


def test_the_continuous_search_runs_chunked_prefill_and_says_so():
    """`--gpus N --continuous --chunked-prefill`: the search's document names its scheduler
    (the cap, the budget, chunked, the cached prefix) and ranks plans within the SLO."""
    res = _infer("--gpus", "1", "--hardware", "h100-sxm", "--continuous", "--chunked-prefill",
                 "--max-batched-tokens", "32", "--tpot-slo", "5ms", "--precisions", "bf16",
                 "--input-len", "16", "--output-len", "4", "--prefix-len", "8", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert {k: doc["workload"][k] for k in ("max_seqs", "max_batched_tokens",
                                            "chunked_prefill", "prefix_len")} == {
        "max_seqs": 256, "max_batched_tokens": 32, "chunked_prefill": True, "prefix_len": 8}
    assert doc["search"]["ranked"] and doc["search"]["ranked"][0]["tpot_s"] <= 5e-3


def test_the_search_for_a_target_rate_takes_the_fewest_gpus(tmp_path):
    """`--gpus N --rate R`: the continuous search serves R requests/s in all, each plan with
    the replicas it needs (R over the most one replica serves within the SLOs, rounded up),
    ranked by the GPUs they take; the schema accepts the document and the terminal names the
    target. R is one and a half times what one GPU serves (measured by the search on one GPU):
    two one-GPU replicas."""
    from archcost.report.schema import check

    common = ("--hardware", "dgx-h100-ndr", "--tpot-slo", "5ms", "--precisions", "bf16",
              "--input-len", "16", "--output-len", "4")
    res = _infer("--gpus", "1", "--continuous", "--json", *common)
    assert res.exit_code == 0, res.output
    one = json.loads(res.stdout)["search"]["ranked"][0]["replica_max_rate_per_s"]
    target = 1.5 * one
    path = tmp_path / "target.json"
    res = _infer("--gpus", "2", "--rate", f"{target}", "-o", str(path), *common)
    assert res.exit_code == 0, res.output
    assert "serving" in res.stdout and "max req/s" in res.stdout
    doc = check(json.loads(path.read_text()))
    s = doc["search"]
    assert doc["workload"]["batching"] == "continuous"
    assert s["target_rate_per_s"] == pytest.approx(target)
    assert s["ranked"] and s["ranked"][0]["plan"] == "tp=1,pp=1,replicas=2,bf16"
    for e in s["ranked"]:
        assert e["gpus_used"] == e["replicas"] * e["tp"] * e["pp"] <= 2
        assert e["rate_per_s"] == pytest.approx(target)
        assert e["replicas"] >= math.ceil(target / e["replica_max_rate_per_s"] * (1 - 1e-9))
        assert e["tpot_s"] <= 5e-3
    assert [e["gpus_used"] for e in s["ranked"]] == sorted(e["gpus_used"] for e in s["ranked"])
    assert s["ranked"][0]["why"].startswith("best: the fewest GPUs serving")
    md = tmp_path / "target.md"
    assert runner.invoke(app, ["report", str(path), "-o", str(md)]).exit_code == 0
    text = " ".join(md.read_text().split())
    assert "requests/s in all, split evenly over each plan's replicas; ranked by the fewest GPUs, then" \
        in text and "max requests/s a replica" in text


def test_a_chunked_prefill_document_says_its_scheduler_in_every_rendering(tmp_path):
    """A continuous run under --chunked-prefill: the schema accepts its document, the terminal
    table and `report`'s Markdown both say the forward holds decodes and prompt chunks."""
    from archcost.report.schema import check

    path = tmp_path / "chunked.json"
    res = _infer("--input-len", "16", "--output-len", "4", "--rate", "50", "--chunked-prefill",
                 "--max-batched-tokens", "24", "-o", str(path))
    assert res.exit_code == 0, res.output
    assert "24 tokens a forward, decodes and prompt chunks together" in " ".join(
        res.stdout.split())
    assert check(json.loads(path.read_text()))["inference"]["continuous"]["chunked_prefill"]
    out = tmp_path / "chunked.md"
    assert runner.invoke(app, ["report", str(path), "-o", str(out)]).exit_code == 0
    assert "decodes and prompt chunks in one forward (chunked prefill)" in out.read_text()


def test_a_cached_prefix_is_recorded_said_and_shortens_the_first_token(tmp_path):
    """--prefix-len: the document records it (schema-valid), the terminal and `report` say it,
    and at light load the first token comes sooner than without it (the prefill computes 8 of
    the 32 prompt tokens) while the decode steps, attending to the whole prompt, are as long."""
    from archcost.report.schema import check

    docs = {}
    for prefix in ("0", "24"):
        path = tmp_path / f"p{prefix}.json"
        res = _infer("--input-len", "32", "--output-len", "4", "--rate", "1", "--prefix-len",
                     prefix, "-o", str(path))
        assert res.exit_code == 0, res.output
        docs[prefix] = check(json.loads(path.read_text()))["inference"]["continuous"]
        said = "every prompt's first 24 tokens cached and reused"
        assert (said in " ".join(res.stdout.split())) is (prefix == "24")
    assert docs["24"]["prefix_len"] == 24 and docs["0"]["prefix_len"] == 0
    assert docs["24"]["ttft"]["p50_s"] < docs["0"]["ttft"]["p50_s"]
    assert docs["24"]["tpot"]["p50_s"] == pytest.approx(docs["0"]["tpot"]["p50_s"], rel=1e-6)
    out = tmp_path / "p24.md"
    assert runner.invoke(app, ["report", str(tmp_path / "p24.json"), "-o", str(out)]
                         ).exit_code == 0
    assert "every prompt's first 24 tokens cached and reused" in out.read_text()


@pytest.mark.parametrize("argv, message", [
    (["--prefix-len", "8"], "--prefix-len: the cached prompt prefix every request shares of "
                            "continuous batching; add --rate R"),
    (["--rate", "5", "--prefix-len", "32"], "cached prefix of 32 tokens: give 0 <= prefix < "
                                            "the shortest prompt (32 tokens)"),
])
def test_a_cached_prefix_where_it_cannot_apply_is_one_line(argv, message):
    res = _infer("--input-len", "32", "--output-len", "4", *argv)
    assert res.exit_code != 0
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and message in " ".join(res.output.split()), res.output


def test_a_runtime_that_replays_cuda_graphs_charges_decode_kernels_the_graph_launch():
    """`cuda_graphs` (tensorrt-llm): a decode step is priced exactly as on the same GPU whose
    kernel_launch is its measured in-graph figure (0.83 us on an H200, not the eager 4 us), at
    any batch, and so is a mixed forward without prompt tokens; a prefill, and a forward
    holding a prompt chunk, run without a graph and keep the eager figure."""
    import dataclasses

    spec = load_model_file(str(MODELS / "llama.py"), {"preset": "tiny"})
    graphs = load_runtime("tensorrt-llm")
    assert graphs.cuda_graphs
    eager = dataclasses.replace(graphs, cuda_graphs=False)
    h200 = one_replica_cluster("h200", 1)
    assert h200.gpu.graph_launch_s == pytest.approx(0.83e-6)
    in_graph = dataclasses.replace(h200, gpu=dataclasses.replace(
        h200.gpu, kernel_launch_s=h200.gpu.graph_launch_s))

    def costs(cluster, runtime):
        return InferenceCosts(spec, cluster, parse_precision("bf16"), runtime, build_len=96)

    g, e, ref = costs(h200, graphs), costs(h200, eager), costs(in_graph, eager)
    for batch in (1, 16):
        assert g.decode_s(batch, 40) == pytest.approx(ref.decode_s(batch, 40), rel=1e-12)
        assert g.decode_s(batch, 40) < e.decode_s(batch, 40)
        assert g.mixed_s(batch, 40, ()) == pytest.approx(g.decode_s(batch, 40), rel=1e-12)
    assert g.prefill_s(2, 64) == e.prefill_s(2, 64)
    chunk = ((0, 32, 64),)
    assert g.mixed_s(4, 40, chunk) == pytest.approx(e.mixed_s(4, 40, chunk), rel=1e-12)


def test_a_padded_graph_runs_the_tokens_work_at_the_captured_size_and_attention_as_is():
    """``graph_batch_sizes`` (tensorrt-llm's published trtllm-bench list): a decode step pads
    its batch to the next captured size. At a captured size nothing changes; between sizes it
    costs more than the batch unpadded and less than the captured batch at the same context,
    what grows with the context is the real sequences' alone (the dummies attend to nothing),
    a mixed forward without prompt tokens is the decode step still, and a batch past the last
    size runs without a graph (the eager runtime exactly)."""
    import dataclasses

    spec = load_model_file(str(MODELS / "llama.py"), {"preset": "tiny"})
    graphs = load_runtime("tensorrt-llm")
    assert graphs.graph_batch_sizes[:4] == (1, 2, 4, 8) and graphs.graph_batch(300) == 384
    padded = dataclasses.replace(graphs, graph_batch_sizes=(1, 2, 4, 8))
    anywhere = dataclasses.replace(graphs, graph_batch_sizes=())
    eager = dataclasses.replace(graphs, cuda_graphs=False)
    h200 = one_replica_cluster("h200", 1)

    def costs(runtime):
        return InferenceCosts(spec, h200, parse_precision("bf16"), runtime, build_len=96)

    p, a, e = costs(padded), costs(anywhere), costs(eager)
    for batch in (1, 4, 8):
        assert p.decode_s(batch, 40) == pytest.approx(a.decode_s(batch, 40), rel=1e-12)
    assert a.decode_s(5, 40) < p.decode_s(5, 40) < a.decode_s(8, 40)
    grows = p.decode_s(5, 80) - p.decode_s(5, 40)
    assert grows == pytest.approx(a.decode_s(5, 80) - a.decode_s(5, 40), rel=1e-9)
    assert p.mixed_s(5, 40, ()) == pytest.approx(p.decode_s(5, 40), rel=1e-12)
    assert p.decode_s(9, 40) == pytest.approx(e.decode_s(9, 40), rel=1e-12)
    chunk = ((0, 32, 64),)
    assert p.mixed_s(5, 40, chunk) == pytest.approx(e.mixed_s(5, 40, chunk), rel=1e-12)
    # an engine whose largest graph batch is 6 pads 5 to 6, not 8; 7 runs without a graph
    six = dataclasses.replace(p, graph_max_batch=6)
    assert a.decode_s(5, 40) < six.decode_s(5, 40) < p.decode_s(5, 40)
    assert six.decode_s(7, 40) == pytest.approx(e.decode_s(7, 40), rel=1e-12)


def test_the_in_graph_profile_drops_host_time_and_keeps_what_it_cannot_replace():
    """``in_cuda_graph``: a datasheet GPU with a graph_launch figure takes it as its per-kernel
    time; a calibrated one (host_ahead: its kernel_launch measured in a graph) keeps its
    kernel_launch and drops the host floors; a GPU without either is unchanged."""
    import dataclasses

    from archcost.hardware.profile import load_gpu

    h200 = load_gpu("h200").in_cuda_graph()
    assert h200.overhead_s("forward") == pytest.approx(0.83e-6)
    a100 = load_gpu("a100-sxm-80gb")
    assert a100.graph_launch_s is None and a100.in_cuda_graph() is a100
    calibrated = dataclasses.replace(a100, host_ahead=True, kernel_launch_s=1e-6,
                                     op_overhead_s={"forward": 2e-5, "inference": 1e-5})
    assert calibrated.host_floor_s("inference") == 1e-5
    replayed = calibrated.in_cuda_graph()
    assert replayed.overhead_s("inference") == 1e-6 and replayed.host_floor_s("inference") == 0
