"""models/deepseek_v3.py against DeepSeek-V3's published sizes and against real CPU steps.

Sizes come from the published config (``archcost/hf/configs/deepseek-v3.json``, a copy of
``deepseek-ai/DeepSeek-V3`` config.json) and the report's figures (DeepSeek-AI 2024, arXiv
2412.19437, Sec. 4.2: "671B total parameters, of which 37B are activated for each token"); the
closed forms are written here from the report's description, never read from the model file.
FLOPs are checked against ``FlopCounterMode`` on a real CPU step and against closed forms.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from archcost.cli import app
from archcost.hf import CONFIGS
from archcost.loader import load_model_file
from archcost.trace import trace_model
from archcost.trace.precision import parse_precision
from tests.conftest import MODELS, load_module
from tests.groundtruth import real_step_flops

FILE = MODELS / "deepseek_v3.py"
CFG = json.loads((CONFIGS / "deepseek-v3.json").read_text())
SHAPE = dict(  # the config's fields under the model file's --set names
    layers=CFG["num_hidden_layers"], dense_layers=CFG["first_k_dense_replace"],
    hidden=CFG["hidden_size"], heads=CFG["num_attention_heads"], q_rank=CFG["q_lora_rank"],
    kv_rank=CFG["kv_lora_rank"], qk_nope_dim=CFG["qk_nope_head_dim"],
    qk_rope_dim=CFG["qk_rope_head_dim"], v_dim=CFG["v_head_dim"], ffn=CFG["intermediate_size"],
    expert_ffn=CFG["moe_intermediate_size"], experts=CFG["n_routed_experts"],
    shared_experts=CFG["n_shared_experts"], top_k=CFG["num_experts_per_tok"],
    vocab=CFG["vocab_size"])
TINY = dict(preset="tiny")


def _attn(s) -> int:
    """MLA weights: q down + norm + up (nope and rope parts), kv down (+ the shared rope key) +
    norm + up (key nope and value parts), output projection (report Eq. 1-11)."""
    h, a = s["hidden"], s["heads"]
    return (h * s["q_rank"] + s["q_rank"] + s["q_rank"] * a * (s["qk_nope_dim"] + s["qk_rope_dim"])
            + h * (s["kv_rank"] + s["qk_rope_dim"]) + s["kv_rank"]
            + s["kv_rank"] * a * (s["qk_nope_dim"] + s["v_dim"]) + a * s["v_dim"] * h)


def params(s) -> int:
    h, ld, l_moe = s["hidden"], s["dense_layers"], s["layers"] - s["dense_layers"]
    expert = 3 * h * s["expert_ffn"]  # one SwiGLU expert
    moe = (s["experts"] + s["shared_experts"]) * expert + s["experts"] * h  # + router
    return (s["layers"] * (_attn(s) + 2 * h) + ld * 3 * h * s["ffn"] + l_moe * moe
            + 2 * s["vocab"] * h + h)


def active_params(s) -> int:
    """Less the unchosen routed experts of each MoE layer and the input embedding (a lookup)."""
    unchosen = (s["experts"] - s["top_k"]) * 3 * s["hidden"] * s["expert_ffn"]
    return params(s) - (s["layers"] - s["dense_layers"]) * unchosen - s["vocab"] * s["hidden"]


def _meta_model(**cfg):
    with torch.device("meta"):
        return load_module(FILE).build_model(**cfg)


def test_parameter_count_is_the_published_671b():
    n = sum(p.numel() for p in _meta_model().parameters())
    assert n == params(SHAPE) == 671_026_404_352
    assert round(n / 1e9) == 671  # "671B total parameters" (the MTP module's 14B not included)
    assert sum(p.numel() for p in _meta_model(**SHAPE).parameters()) == n  # the config's fields


def test_active_parameters_per_token_are_the_published_37b():
    model = _meta_model()
    k_over_e = SHAPE["top_k"] / SHAPE["experts"]
    active = 0.0
    for name, p in model.named_parameters():
        if name.startswith("tok_embeddings."):
            continue  # a row lookup: no parameter multiplies the token
        active += p.numel() * (k_over_e if p.dim() == 3 else 1)  # stacked routed experts
    assert active == active_params(SHAPE) == 36_625_603_584
    assert 36.5e9 <= active < 37.5e9  # "37B activated for each token", rounded to 1B


def test_capacity_dispatch_matches_a_per_token_loop_when_nothing_drops():
    """Eq. 12-16 written directly (sigmoid affinities, top-k, normalised gates, shared expert)."""
    torch.manual_seed(0)
    mod = load_module(FILE)
    E, k = 8, 2
    model = mod.build_model(preset="tiny", capacity_factor=E / k)  # C = N: nothing drops
    moe = model.layers[1].ffn
    moe.expert_bias.normal_()  # the balancing bias steers the choice, not the gates
    x = torch.randn(2, 5, 64)
    xf = x.reshape(-1, 64)
    s = torch.sigmoid(xf @ moe.gate.weight.t())
    ref = moe.shared(xf)
    for n in range(xf.shape[0]):
        chosen = (s[n] + moe.expert_bias).topk(k).indices
        g = s[n, chosen] / s[n, chosen].sum() * 2.5
        for j, e in enumerate(chosen.tolist()):
            h = F.silu(xf[n] @ moe.w1[e]) * (xf[n] @ moe.w3[e])
            ref[n] += g[j] * (h @ moe.w2[e])
    torch.testing.assert_close(moe(x), ref.view_as(x))


def test_tiny_analyze_matmul_flops_equal_flop_counter_mode(runner):
    b, s = 2, 16
    r = runner.invoke(app, ["analyze", str(FILE), "--set", "preset=tiny", "-b", str(b),
                            "-s", str(s), "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["ops_without_rule"] == []
    blocks = doc["capture"]["repeated_blocks"]
    assert blocks["layers.1"]["count"] == 2  # the MoE layers; the dense layer 0 is alone
    matmul = next(c["flops"] for c in doc["op_classes"] if c["class"] == "matmul")
    spec = load_model_file(str(FILE), TINY)
    assert matmul == real_step_flops(spec, b, s)  # forward + backward, FlopCounterMode


@pytest.mark.parametrize("capacity_factor", [1.0, 2.0])
def test_expert_and_attention_flops_equal_closed_forms(capacity_factor):
    """The full-size model at 64 tokens: balanced routing fills every expert's C = k·N/E·cf
    slots, so the experts' batched matmuls do 3 · 2·(k·N·cf)·h·f_e FLOPs per MoE layer; every
    other matmul multiplies the N tokens by an active weight once (2·N per parameter); causal
    attention counts 2·H·N²·(d_qk + d_v)/2 with v padded to d_qk = 192."""
    n = 64
    spec = load_model_file(str(FILE), dict(capacity_factor=capacity_factor))
    t = trace_model(spec, 1, n, parse_precision("bf16-mixed"))
    fwd = [d for _, d in t.graph.nodes(data=True) if d["phase"] == "forward"]
    s = SHAPE
    l_moe = s["layers"] - s["dense_layers"]
    bmm = sum(d["flops"] * d["count"] for d in fwd if d["op"] == "aten.bmm")
    rows = math.ceil(s["top_k"] * n / s["experts"] * capacity_factor) * s["experts"]
    assert bmm == l_moe * 3 * 2 * rows * s["hidden"] * s["expert_ffn"]
    routed = l_moe * s["top_k"] * 3 * s["hidden"] * s["expert_ffn"]
    norms = s["layers"] * (2 * s["hidden"] + s["q_rank"] + s["kv_rank"]) + s["hidden"]
    dense_weights = active_params(s) - routed - norms
    linear = sum(d["flops"] * d["count"] for d in fwd
                 if d["op_class"] == "matmul" and d["op"] != "aten.bmm")
    assert linear == 2 * n * dense_weights
    d_qk = s["qk_nope_dim"] + s["qk_rope_dim"]
    attention = sum(d["flops"] * d["count"] for d in fwd if d["op_class"] == "attention")
    assert attention == s["layers"] * 2 * s["heads"] * n * n * (d_qk + d_qk) // 2


def test_bad_sizes_are_refused():
    mod = load_module(FILE)
    with pytest.raises(ValueError, match="dense_layers"):
        mod.build_model(preset="tiny", dense_layers=4)
    with pytest.raises(ValueError, match="top_k"):
        mod.build_model(preset="tiny", top_k=9)
    with pytest.raises(ValueError, match="preset"):
        mod.build_model(preset="v2")
