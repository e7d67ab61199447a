"""``archcost infer hf:...``: Hugging Face causal LMs through transformers' own ``DynamicCache``.

Ground truth from outside the code under test: the logits of a full recompute (the model's own
forward without a cache) at every step of a real CPU greedy generation; the cache shapes
transformers' own ``DynamicCache`` ends with after a real forward; ``FlopCounterMode`` on a
real CPU decode step; closed forms with the sizes written out from the published configs.
"""

from __future__ import annotations

import inspect
import json

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from typer.testing import CliRunner

from archcost.cli import app
from archcost.hf.cache import layer_shapes
from archcost.infer.capture import InferStep, capture_inference
from archcost.loader import load_model_file
from archcost.trace.precision import parse_precision
from tests.conftest import DATA, class_flops

# llama-3.1-8b's widths shrunk: 2 layers, hidden 64, 4 heads on 2 KV heads, ffn 176, vocab 512
TINY = dict(num_hidden_layers=2, hidden_size=64, intermediate_size=176, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=512)
runner = CliRunner()



@pytest.mark.parametrize("width", ["tiny", "published"])
def test_decode_flops_closed_form_and_flop_counter(width):
    """Decode FLOPs = 2 x the parameters a token multiplies (q, k, v, o, gate, up, down, the
    head; not the embedding's lookup) + attention over the context (QK^T and PV: 4 * heads *
    head_dim * keys per layer). At llama-3.1-8b's published widths (hidden 4096, 32 heads of
    128 on 8 KV heads, ffn 14336, vocab 128256) on 2 layers, and tiny, where a real CPU decode
    step under FlopCounterMode gives the matmuls' count (it counts no FLOPs for the CPU's fused
    attention op)."""
    cfg = TINY if width == "tiny" else {"num_hidden_layers": 2}
    h, f, V, heads, kvh = ((64, 176, 512, 4, 2) if width == "tiny"
                           else (4096, 14336, 128256, 32, 8))
    layers, hd, ctx = 2, h // heads, 21
    spec = load_model_file("hf:llama-3.1-8b", cfg)
    cap = capture_inference(spec, InferStep.decode(1, ctx), parse_precision("fp32"))
    linear = layers * (2 * h * h + 2 * h * kvh * hd + 3 * h * f) + V * h
    attention = layers * 4 * heads * hd * (ctx + 1)
    assert class_flops(cap.graph, "matmul", "attention") == 2 * linear + attention
    assert class_flops(cap.graph, "attention") == attention
    if width != "tiny":
        return
    model = spec.build(1, ctx + 1).eval()
    cache = spec.kv_cache(model, 1, ctx + 1)
    with torch.no_grad():
        spec.infer_step(model, {"input_ids": torch.randint(0, V, (1, ctx))}, cache, 0)()
        step = spec.infer_step(model, {"input_ids": torch.randint(0, V, (1, 1))}, cache, ctx)
        with FlopCounterMode(display=False) as fc:
            step()
    assert fc.get_total_flops() == class_flops(cap.graph, "matmul") == 2 * linear


def test_prefill_runs_the_head_on_the_last_position_only():
    """logits_to_keep=1: a prefill of I tokens multiplies I tokens through the layers' linears
    and one through the head (vocab x hidden), as generate does."""
    h, f, V, kvh, hd, layers, n = 64, 176, 512, 2, 16, 2, 12
    spec = load_model_file("hf:llama-3.1-8b", TINY)
    cap = capture_inference(spec, InferStep.prefill(1, n), parse_precision("fp32"))
    per_token = layers * (2 * h * h + 2 * h * kvh * hd + 3 * h * f)
    assert class_flops(cap.graph, "matmul") == 2 * (n * per_token + V * h)


def test_the_cache_concatenates_as_transformers_eager_does():
    """DynamicCache.update copies the held K and V with the new token into new tensors
    (torch.cat): a decode at context L writes L + 1 tokens of K and of V per layer."""
    ctx, kvh, hd, layers = 21, 2, 16, 2
    spec = load_model_file("hf:llama-3.1-8b", TINY)
    cap = capture_inference(spec, InferStep.decode(1, ctx), parse_precision("fp32"))
    written = sum(d["bytes_written"] * d["count"] for _, d in cap.graph.nodes(data=True)
                  if d["op"] == "aten.cat" and d["bytes_written"] == kvh * (ctx + 1) * hd * 4)
    assert written == 2 * layers * kvh * (ctx + 1) * hd * 4


# published config.json values: (layers, kv heads, head_dim)
PUBLISHED_KV = {"llama-3.1-8b": (32, 8, 128), "mistral-7b": (32, 8, 128),
                "qwen3-8b": (36, 8, 128)}


@pytest.mark.parametrize("name", list(PUBLISHED_KV))
@pytest.mark.parametrize("depth", ["2 layers", "published"])
def test_kv_cache_bytes_closed_form(name, depth):
    """2 * layers * kv_heads * head_dim * max_len * batch * bytes (bf16)."""
    layers, kvh, hd = PUBLISHED_KV[name]
    layers = 2 if depth == "2 layers" else layers
    batch, ctx = 3, 40
    spec = load_model_file(f"hf:{name}", {"num_hidden_layers": layers})
    cap = capture_inference(spec, InferStep.decode(batch, ctx), parse_precision("bf16"))
    assert cap.kv_cache_bytes == 2 * layers * kvh * hd * (ctx + 1) * batch * 2


def test_deepseek_v3_caches_its_latent():
    """transformers' DeepSeek-V3 caches the compressed latent (d_c = 512) and the shared roped
    key (d_h^R = 64) per token and layer (DeepSeek-V3 report, table of hyper-parameters;
    DeepSeek-V2 section 2.1: KV cache (d_c + d_h^R) * layers elements per token), not per-head
    K and V (128 heads x (192 + 128))."""
    spec = load_model_file("hf:deepseek-v3", {"num_hidden_layers": 2})
    with torch.device("meta"):
        model = spec.build(2, 48).to(torch.bfloat16)
    cache = spec.kv_cache(model, 2, 48)
    held = sum(t.numel() * t.element_size() for layer in cache.layers
               for t in (layer.keys, layer.values))
    assert held == 2 * (512 + 64) * 48 * 2 * 2


@pytest.mark.parametrize("config", ["llama", "qwen3", "deepseek_v3"])
def test_hook_shapes_are_those_transformers_caches(config):
    """The per-layer K and V shapes the hook builds equal what transformers' own DynamicCache
    holds after a real forward of the same tokens."""
    from transformers import DynamicCache

    spec = load_model_file(f"hf:{DATA / 'hf' / f'{config}.json'}")
    torch.manual_seed(0)
    model = spec.build(2, 10).eval()
    own = DynamicCache(config=model.config)
    name = "cache" if "cache" in inspect.signature(model.forward).parameters else \
        "past_key_values"
    with torch.no_grad():
        model(input_ids=torch.randint(0, 256, (2, 10)), use_cache=True, **{name: own})
    k, v = layer_shapes(model.config, 2, 10)
    for layer in own.layers:
        assert (tuple(layer.keys.shape), tuple(layer.values.shape)) == (k, v)


def _greedy_generation(config: str, batch: int, prompt: int, new: int):
    """A real greedy generation of ``new`` tokens after ``prompt`` through the hooks (the
    prefill, then one token at a time), each step's last logits checked against a full
    recompute without a cache; returns the cache it ends with."""
    spec = load_model_file(f"hf:{DATA / 'hf' / f'{config}.json'}")
    torch.manual_seed(0)
    model = spec.build(batch, prompt + new).eval()
    ids = torch.randint(0, 256, (batch, prompt), generator=torch.Generator().manual_seed(1))
    cache = spec.kv_cache(model, batch, prompt + new)
    with torch.no_grad():
        pos = 0
        for _ in range(new):
            got = spec.infer_step(model, {"input_ids": ids[:, pos:]}, cache, pos)().logits
            want = model(input_ids=ids).logits[:, -1:]
            assert got.shape == (batch, 1, 256)
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
            pos = ids.shape[1]
            ids = torch.cat([ids, got.argmax(-1)], dim=1)
    return cache


@pytest.mark.parametrize("config", ["llama", "qwen3", "deepseek_v3"])
def test_greedy_generation_with_cache_matches_recomputing(config):
    """Prefill then one token at a time through the hooks (transformers' cache, the call
    ``generate`` makes): each step's last logits equal a full recompute without a cache."""
    prompt, new = 9, 6
    cache = _greedy_generation(config, 2, prompt, new)
    assert cache.get_seq_length() == prompt + new - 1


def test_infer_command_runs_with_the_closed_form_kv_bytes():
    res = runner.invoke(app, ["infer", "hf:llama-3.1-8b", "--set", "num_hidden_layers=2",
                              "--batch", "2", "--input-len", "16", "--output-len", "8",
                              "--json"])
    assert res.exit_code == 0, res.output
    inf = json.loads(res.stdout)["inference"]
    assert inf["memory_bytes"]["kv_cache"] == 2 * 2 * 8 * 128 * (16 + 8) * 2 * 2
    assert inf["tpot_s"] > 0 and inf["ttft_s"] > 0


def test_the_same_model_at_another_batch_and_length_is_compared(tmp_path):
    """The builder's sequence length and batch size size the workload, not the model: two
    documents of the same config at other batches and lengths diff (no "different models"),
    their model config is the --set values alone, and their KV caches are the closed form
    (2 layers x K and V x 2 KV heads x 16 dims x tokens x 2 bytes per sequence)."""
    sets = [a for k, v in TINY.items() for a in ("--set", f"{k}={v}")]
    docs = []
    for batch, prompt in ((2, 16), (4, 24)):
        path = tmp_path / f"b{batch}.json"
        res = runner.invoke(app, ["infer", "hf:llama-3.1-8b", *sets, "-b", str(batch), "-i",
                                  str(prompt), "-n", "4", "-o", str(path)])
        assert res.exit_code == 0, res.output
        doc = json.loads(path.read_text())
        assert doc["model"]["config"] == TINY
        docs.append(path)
    res = runner.invoke(app, ["diff", *map(str, docs), "--json"])
    assert res.exit_code in (0, 1) and "different models" not in res.output, res.output
    rows = {r["metric"]: r for r in json.loads(res.stdout)["rows"]}
    per_token = 2 * 2 * 2 * 16 * 2
    assert rows["memory.kv_cache"]["base"] == 2 * (16 + 4) * per_token
    assert rows["memory.kv_cache"]["head"] == 4 * (24 + 4) * per_token
    analysis = runner.invoke(app, ["analyze", "hf:llama-3.1-8b", *sets, "-b", "2", "-s", "8",
                                 "--json"])
    assert analysis.exit_code == 0, analysis.output
    assert json.loads(analysis.stdout)["model"]["config"] == TINY  # the training documents too


@pytest.mark.parametrize("kv,size", [("fp8", 1), ("int8", 1), ("fp32", 4)])
def test_infer_command_prices_the_cache_in_its_kv_dtype(kv, size):
    """--kv-dtype stores the cache narrower (or wider) than bf16: the closed form at its bytes."""
    res = runner.invoke(app, ["infer", "hf:llama-3.1-8b", "--set", "num_hidden_layers=2",
                              "--batch", "2", "--input-len", "16", "--output-len", "8",
                              "--kv-dtype", kv, "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["workload"]["kv_dtype"] == kv
    assert doc["inference"]["memory_bytes"]["kv_cache"] == 2 * 2 * 8 * 128 * (16 + 8) * 2 * size


def test_an_fp8_cache_holds_what_attention_computed_cast_to_fp8():
    """A real CPU prefill and decode through an fp8 cache: every layer holds float8 K/V, the
    first layer's equal to what transformers' own cache holds after the same tokens, cast to
    fp8; attention gets them back in the compute dtype (the logits stay close to a full
    recompute's)."""
    from transformers import DynamicCache

    spec = load_model_file(f"hf:{DATA / 'hf' / 'llama.json'}")
    torch.manual_seed(0)
    model = spec.build(2, 12).eval()
    ids = torch.randint(0, 256, (2, 11), generator=torch.Generator().manual_seed(1))
    fp8 = spec.kv_cache(model, 2, 12, torch.float8_e4m3fn)
    own = DynamicCache(config=model.config)
    name = "cache" if "cache" in inspect.signature(model.forward).parameters else \
        "past_key_values"
    with torch.no_grad():
        model(input_ids=ids, use_cache=True, **{name: own})
        got = spec.infer_step(model, {"input_ids": ids}, fp8, 0)().logits
        want = model(input_ids=ids).logits[:, -1:]
        step = spec.infer_step(model, {"input_ids": got.argmax(-1)}, fp8, 11)().logits
    assert all(held.keys.dtype == held.values.dtype == torch.float8_e4m3fn
               for held in fp8.layers)
    # the first layer sees the same inputs either way; later ones see fp8-rounded attention
    first, ref = fp8.layers[0], own.layers[0]
    for held, want_kv in ((first.keys, ref.keys), (first.values, ref.values)):
        assert torch.equal(held[:, :, :11].view(torch.uint8),
                           want_kv.to(torch.float8_e4m3fn).view(torch.uint8))
    assert got.dtype == torch.float32 and step.shape == (2, 1, 256)
    torch.testing.assert_close(got, want, rtol=0, atol=0.05 * want.abs().max().item())
    assert fp8.get_seq_length() == 12


def test_a_narrow_cache_is_cast_up_for_attention_in_the_trace():
    """The decode trace reads the fp8 cache and writes its compute-dtype copy: a cast per K and
    V per layer of the whole context (eager's cost; a serving kernel reads fp8 directly)."""
    ctx, kvh, hd, layers = 21, 2, 16, 2
    spec = load_model_file("hf:llama-3.1-8b", TINY)
    cap = capture_inference(spec, InferStep.decode(1, ctx), parse_precision("fp32"),
                            kv_dtype="float8_e4m3fn")
    assert cap.kv_cache_bytes == 2 * layers * kvh * (ctx + 1) * hd * 1
    up = [d for _, d in cap.graph.nodes(data=True) if d["op"] == "aten._to_copy"
          and d["bytes_read"] == kvh * (ctx + 1) * hd and d["bytes_written"] == 4 * d["bytes_read"]]
    assert sum(d["count"] for d in up) == 2 * layers


def _sliding_costs(config: str):
    """The pricing of a bundled sliding-window test config on one H100, bf16, eager, built
    for 64 tokens."""
    from archcost.cli.infer import one_replica_cluster
    from archcost.infer.price import InferenceCosts
    from archcost.runtime import load_runtime

    spec = load_model_file(f"hf:{DATA / 'hf' / f'{config}.json'}")
    return InferenceCosts(spec, one_replica_cluster("h100-sxm", 1), parse_precision("bf16"),
                          load_runtime("eager"), build_len=64)


@pytest.mark.parametrize("config,window", [("mistral", 32), ("gemma2", 8)])
def test_sliding_window_kv_bytes_closed_form(config, window):
    """A sliding layer holds the last window's tokens (the last step's concatenation: window - 1
    kept and the new one), a full layer all: 2 * kv_heads * head_dim * bytes * batch *
    (sum over layers of min(length, window) or length). Mistral's layers all slide; Gemma 2's
    alternate sliding and full."""
    costs = _sliding_costs(config)
    kinds = ["sliding"] * 2 if config == "mistral" else ["sliding", "full"]
    assert costs.kv_windows() == (window,)
    per_token = 2 * 2 * 16 * 2  # K and V, 2 KV heads, head_dim 16, bf16
    for length in (5, window - 1, window, window + 1, 40, 64):
        want = per_token * sum(min(length, window) if k == "sliding" else length for k in kinds)
        assert costs.kv_bytes_per_sequence(length) == pytest.approx(want, abs=1e-6), length


@pytest.mark.parametrize("config", ["mistral", "gemma2"])
def test_sliding_window_decode_interpolation_equals_a_direct_trace(config):
    """Either side of the window's edge a decode step is priced from two traces on that side;
    its op table equals a trace at that very context."""
    from archcost.options import Recompute
    from archcost.plan.workload import workload_from_traces

    costs = _sliding_costs(config)
    spec, policy, runtime = costs.spec, costs.policy, costs.runtime
    window = costs.kv_windows()[0]
    for ctx in (window // 2 + 1, window + 9, 60):
        got = costs.workload(InferStep.decode(1, ctx)).ops[Recompute.NONE]
        one, two = (capture_inference(spec, InferStep.decode(b, ctx), policy, build_len=64)
                    for b in (1, 2))
        want = workload_from_traces({Recompute.NONE: one}, policy,
                                    at_batch_2={Recompute.NONE: two},
                                    runtime=runtime).ops[Recompute.NONE]
        assert got.op == want.op, ctx
        for name in ("flops", "nbytes", "nbytes_fixed", "mnk", "attn", "slices"):
            np.testing.assert_allclose(getattr(got, name), getattr(want, name), rtol=1e-9,
                                       atol=1e-6, err_msg=f"{name} at {ctx}")


def test_decode_anchors_sit_on_one_side_of_the_window_edge():
    """Both anchors of a decode step lie on its side of the edge (context W - 1), where every
    quantity is affine: below it their caches hold at most W - 1 tokens (context <= W - 2);
    from it on both contexts are >= W - 1. Two distinct windows in one model: one line."""
    from archcost.errors import ConfigError
    from archcost.infer.price import decode_anchors

    assert decode_anchors(100, ()) == (16, 32)
    for w in (4, 8, 32, 4096):
        for ctx in (0, 1, w - 2, w - 1, w, 3 * w):
            a, b = decode_anchors(ctx, (w,))
            assert 1 <= a < b
            assert (b <= w - 2) if ctx < w - 1 else (a >= w - 1)
    with pytest.raises(ConfigError) as err:
        decode_anchors(10, (8, 16))
    assert "\n" not in str(err.value) and "8, 16" in str(err.value)


@pytest.mark.parametrize("config", ["mistral", "gemma2"])
def test_greedy_generation_past_the_window_matches_recomputing(config):
    """Prefill then one token at a time past the sliding window through the hooks: each step's
    logits equal a full recompute (transformers' sliding mask), and the sliding layers hold
    window - 1 tokens."""
    window = 32 if config == "mistral" else 8
    cache = _greedy_generation(config, 1, window - 3, 8)
    held = [layer.keys.shape[-2] for layer in cache.layers if layer.is_sliding]
    assert held and all(h == window - 1 for h in held)


@pytest.mark.parametrize("config,args,needle", [
    ("bert", (), "keeps no KV cache"),
    ("mistral", ("--set", "sliding_window=2"), "give sliding_window >= 4"),
    # max_position_embeddings = 64: 60 + 8 tokens pass it
    ("llama", ("--input-len", "60"), "llama: 68 tokens (input + output) pass the model's "
     "max_position_embeddings = 64; shorten --input-len or --output-len, or --set "
     "max_position_embeddings=N"),
])
def test_infer_refusals_one_line(config, args, needle):
    res = runner.invoke(app, ["infer", f"hf:{DATA / 'hf' / f'{config}.json'}", "--input-len",
                              "16", "--output-len", "8", *args])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0], res.stderr
    assert " -s " not in lines[0] and "--seq-len" not in lines[0]  # training's options


@pytest.mark.parametrize("kind,sets,kv", [
    ("multi-query", {}, 1),
    ("grouped", {"new_decoder_architecture": True, "multi_query": False, "num_kv_heads": 2}, 2),
])
@pytest.mark.parametrize("step", ["prefill", "decode"])
def test_falcon_query_heads_folded_into_rows(kind, sets, kv, step):
    """transformers' Falcon hands SDPA its query heads folded into the rows of each KV head,
    (batch, kv heads, heads / kv heads x tokens, head dim): the workload reads its 4 query
    heads and ``kv`` KV heads off that, in a prefill and a decode step alike (the config's
    num_attention_heads and num_kv_heads are the ground truth)."""
    from archcost.options import Recompute
    from archcost.plan.workload import workload_from_traces

    spec, policy = load_model_file(f"hf:{DATA / 'hf' / 'falcon.json'}", sets), \
        parse_precision("bf16")
    make = (lambda b: InferStep.prefill(b, 8)) if step == "prefill" else \
        (lambda b: InferStep.decode(b, 6))
    one, two = (capture_inference(spec, make(b), policy) for b in (1, 2))
    w = workload_from_traces({Recompute.NONE: one}, policy, at_batch_2={Recompute.NONE: two})
    assert (w.shape.heads, w.shape.kv_heads) == (4, kv)


@pytest.mark.parametrize("kv", [None, "float8_e4m3fn"])
def test_a_serving_runtime_appends_to_the_cache_in_place(kv):
    """DynamicCache.update concatenates (the eager runtime prices that copy of the cache and
    its casts); a serving engine writes the new token in place and its attention kernel reads the cache once, in its own dtype: under tensorrt-llm
    a decode layer's attention reads its query, and K and V of the L held tokens in the cache
    dtype plus the new token's (closed form), and nothing else of the cache moves."""
    from archcost.cost.fusion import executed_graph
    from archcost.runtime import load_runtime

    ctx, heads, kvh, hd = 21, 4, 2, 16
    spec = load_model_file("hf:llama-3.1-8b", TINY)
    cap = capture_inference(spec, InferStep.decode(1, ctx), parse_precision("bf16"),
                            kv_dtype=kv)
    size = 1 if kv else 2
    fused = executed_graph(cap.graph, load_runtime("tensorrt-llm"))
    (att,) = [d for _, d in fused.nodes(data=True) if d["op_class"] == "attention"]
    query = heads * hd * 2
    new = 2 * kvh * hd * size  # the step's K and V, as the cache stores them
    assert att["bytes_read"] == pytest.approx(query + 2 * kvh * ctx * hd * size + new, abs=8)
    moved = sum(d["bytes_read"] + d["bytes_written"] for _, d in fused.nodes(data=True)
                if d["module"].endswith("self_attn") and d["repeat_group"]
                and d["op_class"] not in ("matmul", "attention"))
    assert moved < 2 * kvh * ctx * hd * size  # no copy of the cache outside the kernel
    eager = executed_graph(cap.graph, load_runtime("eager"))
    copied = sum(d["bytes_written"] for _, d in eager.nodes(data=True)
                 if d["module"].endswith("self_attn") and d["repeat_group"]
                 and d["op_class"] not in ("matmul", "attention"))
    assert copied >= 2 * kvh * (ctx + 1) * hd * size  # the concatenation's copy of the cache


@pytest.mark.parametrize("config", ["mistral"])
def test_a_serving_runtime_masks_inside_the_attention_kernel(config):
    """Past the window's edge transformers builds a sliding-window mask (arange, comparisons,
    where) that the eager runtime runs; a serving engine's attention masks inside the kernel
    from the window: under tensorrt-llm a decode step past the edge launches as many kernels
    as one before it, none for the mask's ops. NB: Gemma 2's
    soft-capped attention is traced as ops (the mask added to the scores), not one kernel."""
    from archcost.cost.fusion import executed_graph
    from archcost.runtime import load_runtime

    costs = _sliding_costs(config)
    window = costs.kv_windows()[0]
    trt, eager = load_runtime("tensorrt-llm"), load_runtime("eager")

    def launches(ctx, runtime):
        """(kernels a decode step launches, of which the mask-building ops', those ops)."""
        cap = capture_inference(costs.spec, InferStep.decode(1, ctx), costs.policy,
                                build_len=64)
        g = executed_graph(cap.graph, runtime)
        masking = [n for n, d in cap.graph.nodes(data=True)
                   if d["op"] in ("aten.where", "aten.le", "aten.gt", "aten.bitwise_and")]
        return (sum(d["launches"] for _, d in g.nodes(data=True)),
                sum(g.nodes[n]["launches"] for n in masking), len(masking))

    (before, _, m0), (after, masked, m1) = launches(window - 4, trt), launches(window + 9, trt)
    assert m1 > m0
    assert after == before and masked == 0
    (e_before, _, _), (e_after, e_masked, _) = (launches(window - 4, eager),
                                                launches(window + 9, eager))
    assert e_after > e_before and e_masked == m1  # eager runs the mask's ops


def _written_out(config: str, step: InferStep, runtime: str):
    """The attention nodes of ``step`` of a bundled test config as ``runtime`` runs it."""
    from archcost.cost.fusion import executed_graph
    from archcost.runtime import load_runtime

    spec = load_model_file(f"hf:{DATA / 'hf' / f'{config}.json'}")
    cap = capture_inference(spec, step, parse_precision("bf16"), build_len=64)
    g = executed_graph(cap.graph, load_runtime(runtime))
    return sorted((d["module"], d) for _, d in g.nodes(data=True)
                  if d["op_class"] == "attention"), cap


# (heads, KV heads the cache holds per layer as the attention reads them, query-key head dim,
# value head dim, a sliding window (Gemma 2's first layer), layers): Gemma 2 runs its
# soft-capped attention as ops (eager); DeepSeek-V3's SDPA takes the math path on a CPU (value
# head dim 16 against the query's 24), its K and V made per head from the latent cache
_WRITTEN = {"gemma2": (4, 2, 16, 16, (8, None), 2), "deepseek_v3": (4, 4, 24, 16, (None, None), 2)}


@pytest.mark.parametrize("config", sorted(_WRITTEN))
@pytest.mark.parametrize("kind", ["prefill", "decode"])
def test_a_serving_runtime_runs_an_attention_written_out_as_one_kernel(config, kind):
    """Under tensorrt-llm (``attention`` family) each layer's attention written out as ops
    (scores matmul, scale, softcap, mask, softmax, values matmul) is one attention kernel of
    the closed form: FLOPs 2*H*Sq*Sk*(Dq + Dv), halved for a causal prefill; bytes the query,
    the keys and values at their storage (the KV heads, not their repeats) and the output;
    eager runs the ops (no attention kernel)."""
    heads, kvh, dq, dv, windows, layers = _WRITTEN[config]
    tokens, ctx = (12, 0) if kind == "prefill" else (1, 12)
    step = InferStep.prefill(1, tokens) if kind == "prefill" else InferStep.decode(1, ctx)
    # v0.5's profile: the written-out attention without MLA's absorption (``mla``)
    att, _ = _written_out(config, step, "tensorrt-llm-0.5")
    assert len(att) == layers
    for (_, d), window in zip(att, windows, strict=True):
        keys = tokens + ctx if window is None or kind == "prefill" else min(window, ctx + 1)
        flops = 2 * heads * tokens * keys * (dq + dv)
        assert d["flops"] == (flops // 2 if kind == "prefill" else flops)
        assert d["attention_shape"] == [dq, tokens, keys, int(kind == "prefill"), 0]
        read = 2 * (heads * tokens * dq + kvh * keys * (dq + dv))
        assert d["bytes_read"] == read
        assert d["bytes_written"] == 2 * heads * tokens * dv
        assert d["kv_heads"] == kvh  # the heads it reads as stored
    assert _written_out(config, step, "eager")[0] == []


@pytest.mark.parametrize("config", sorted(_WRITTEN))
def test_an_attention_written_out_holds_no_score_matrix_under_a_serving_runtime(config):
    """A prefill of 256 tokens: eager holds the fp32 (or bf16) score matrix, H*S*S elements,
    at its peak; under tensorrt-llm the kernel keeps it inside, so the step's transient peak
    is below one H*S*S bf16 matrix."""
    from archcost.cli.infer import one_replica_cluster
    from archcost.infer.price import InferenceCosts
    from archcost.runtime import load_runtime

    heads, s = _WRITTEN[config][0], 256
    spec = load_model_file(f"hf:{DATA / 'hf' / f'{config}.json'}",
                           {"max_position_embeddings": 512})

    def peak(runtime):
        costs = InferenceCosts(spec, one_replica_cluster("h100-sxm", 1),
                               parse_precision("bf16"), load_runtime(runtime), build_len=s + 1)
        return costs.activation_bytes(1, InferStep.prefill(1, s))

    assert peak("eager") >= 2 * heads * s * s
    assert peak("tensorrt-llm") < 2 * heads * s * s


@pytest.mark.parametrize("runtime", ["tensorrt-llm-0.5", "tensorrt-llm"])
def test_a_latent_cache_splits_its_attention_over_tp_as_the_attention_reads_it(runtime):
    """DeepSeek-V3's cache holds one latent 'head' every GPU keeps whole. Expanded (v0.5's
    profile: no ``mla``), its attention reads the K and V that kv_b_proj (column-parallel) made
    per query head: at tp 2 a decode step's attention bytes split over tp like the heads.
    Absorbed (``mla``), every head attends to the one latent: each GPU reads it whole (the
    bytes multiplied up to one KV head a GPU)."""
    from archcost.cli.infer import one_replica_cluster
    from archcost.infer.price import InferenceCosts
    from archcost.plan.workload import Recompute
    from archcost.runtime import load_runtime

    spec = load_model_file(f"hf:{DATA / 'hf' / 'deepseek_v3.json'}")
    costs = InferenceCosts(spec, one_replica_cluster("dgx-h100-ndr", 2), parse_precision("bf16"),
                           load_runtime(runtime), build_len=64, tp=2)
    step = InferStep.decode(1, 12)
    assert costs.kv_heads() == 1  # the latent cache
    w = costs.workload(step)
    ops = costs._ops(w, 1.0, step)
    kernel = np.array([op == "aten._scaled_dot_product_efficient_attention" for op in ops.op])
    assert kernel.any()
    heads, dq, dv, r, dr, keys = 4, 24, 16, 16, 8, 13
    traced = w.ops[Recompute.NONE].nbytes[kernel]
    if runtime == "tensorrt-llm-0.5":
        closed = 2 * (heads * dq + heads * keys * (dq + dv)) + 2 * heads * dv  # read + written
        assert ops.nbytes[kernel] == pytest.approx(traced)
    else:
        closed = 2 * (heads * (r + dr) + keys * (r + dr)) + 2 * heads * r
        assert ops.nbytes[kernel] == pytest.approx(traced * 2)
    assert traced[0] == pytest.approx(closed)


@pytest.mark.parametrize("layer", ["layers.0", "layers.1"])
def test_an_attention_written_out_reads_the_cache_in_place_under_a_serving_runtime(layer):
    """Gemma 2's eager attention reads the cache's concatenation of the held and new K and V
    (a copy of the cache each step, which eager prices; its sliding layer 0 keeps a view of
    the concatenation's last window as the cache, its full layer 1 the whole); under
    tensorrt-llm the append joins the written-out attention's kernel (``kv-cache``): what
    moves outside the kernel does not grow with the context, where eager's concatenation
    reads and writes K and V of every held token (2 x 2 x kv_heads x head_dim x 2 bytes a
    token more). Contexts of 3 and 6, inside the window of 8; the kernel's own read in
    test_a_serving_runtime_runs_an_attention_written_out_as_one_kernel."""
    from archcost.cost.fusion import executed_graph
    from archcost.runtime import load_runtime

    kvh, hd = 2, 16
    caps = {ctx: _written_out("gemma2", InferStep.decode(1, ctx), "tensorrt-llm")[1]
            for ctx in (3, 6)}

    def moved(runtime, ctx):
        g = executed_graph(caps[ctx].graph, load_runtime(runtime))
        return sum(d["bytes_read"] + d["bytes_written"] for _, d in g.nodes(data=True)
                   if d["module"].endswith(f"{layer}.self_attn")
                   and d["op_class"] not in ("matmul", "attention"))

    assert moved("tensorrt-llm", 6) == moved("tensorrt-llm", 3)
    assert moved("eager", 6) - moved("eager", 3) >= 3 * 2 * 2 * kvh * hd * 2
