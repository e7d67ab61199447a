"""``hf:`` models: Hugging Face configs built through transformers, offline, on the meta device.

The bundled configs are checked against the parameter counts their publishers state (model
cards and the hub's safetensors index, three significant digits) and against a closed form over
the config's fields computed here; every command that takes a model takes ``hf:``; bad configs
and ``--set`` values are one-line errors.
"""

from __future__ import annotations

import json
import shutil
import sys

import pytest

from archcost.cli import app
from archcost.hf import CONFIGS, bundled_names
from archcost.loader import load_model_file
from tests.conftest import DATA

TINY = DATA / "hf" / "llama.json"  # 2 layers, width 64, vocab 256, 64 positions
# what the publishers state (hub's "Model size" from the safetensors index; DeepSeek-V3: its
# model card's 671B for the main model, the 14B multi-token-prediction module not included)
PUBLISHED = {
    "llama-3.1-8b": 8.03e9, "llama-3.1-70b": 70.6e9, "mistral-7b": 7.25e9,
    "mixtral-8x7b": 46.7e9, "qwen2.5-72b": 72.7e9, "qwen3-8b": 8.19e9, "deepseek-v3": 671e9,
}


def _closed_form_params(c: dict) -> int:
    """Parameters of a decoder LM from its config fields, written from the architectures'
    descriptions (GQA attention, SwiGLU MLP, RMSNorm; Mixtral's experts; DeepSeek-V3's MLA)."""
    h, L, V = c["hidden_size"], c["num_hidden_layers"], c["vocab_size"]
    heads = c["num_attention_heads"]
    kv = c.get("num_key_value_heads", heads)
    hd = c.get("head_dim") or h // heads
    embed = V * h * (1 if c.get("tie_word_embeddings") else 2) + h  # + final norm
    mtype = c["model_type"]
    if mtype == "deepseek_v3":
        qk = c["qk_nope_head_dim"] + c["qk_rope_head_dim"]
        attn = (h * c["q_lora_rank"] + c["q_lora_rank"] + c["q_lora_rank"] * heads * qk
                + h * (c["kv_lora_rank"] + c["qk_rope_head_dim"]) + c["kv_lora_rank"]
                + c["kv_lora_rank"] * heads * (qk - c["qk_rope_head_dim"] + c["v_head_dim"])
                + heads * c["v_head_dim"] * h)
        dense = c["first_k_dense_replace"]
        experts = c["n_routed_experts"] + c["n_shared_experts"]
        moe = experts * 3 * h * c["moe_intermediate_size"] + c["n_routed_experts"] * h
        return embed + L * (attn + 2 * h) + dense * 3 * h * c["intermediate_size"] + (L - dense) * moe
    attn = 2 * h * heads * hd + 2 * h * kv * hd
    if mtype == "qwen2":
        attn += heads * hd + 2 * kv * hd  # q, k, v biases
    if mtype == "qwen3":
        attn += 2 * hd  # q_norm, k_norm
    mlp = 3 * h * c["intermediate_size"]
    if mtype == "mixtral":
        mlp = c["num_local_experts"] * mlp + h * c["num_local_experts"]  # experts + router
    return embed + L * (attn + mlp + 2 * h)


def _params(target: str, *sets: str) -> int:
    import torch

    from archcost.loader import parse_overrides

    spec = load_model_file(target, parse_overrides(list(sets)))
    with torch.device("meta"):
        return sum(p.numel() for p in spec.build(1, 64).parameters())


def test_every_bundled_name_is_listed_with_its_published_size():
    assert bundled_names() == sorted(PUBLISHED)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_bundled_config_builds_the_published_model(name):
    raw = json.loads((CONFIGS / f"{name}.json").read_text())
    n = _params(f"hf:{name}")
    assert n == _closed_form_params(raw)
    assert float(f"{n:.3g}") == PUBLISHED[name]


def test_analyze_a_bundled_name_with_fewer_layers(runner):
    r = runner.invoke(app, ["analyze", "hf:llama-3.1-8b", "--set", "num_hidden_layers=1",
                            "-s", "64", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    raw = json.loads((CONFIGS / "llama-3.1-8b.json").read_text())
    assert doc["model"]["name"] == "llama-3.1-8b"
    assert doc["model"]["builder"] == "LlamaForCausalLM"
    assert doc["totals"]["params"] == _closed_form_params({**raw, "num_hidden_layers": 1})


def test_plan_estimate_and_sweep_take_an_hf_config(runner, tmp_path):
    common = [f"hf:{TINY}", "-s", "32", "--cluster", "dgx-h100-ndr"]
    r = runner.invoke(app, ["estimate", *common, "--plan", "dp=2,tp=2,gbs=4", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["model"]["name"] == "llama"
    r = runner.invoke(app, ["plan", *common, "--gpus", "2", "--gbs", "2", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["model"]["builder"] == "LlamaForCausalLM"
    r = runner.invoke(app, ["sweep", f"hf:{TINY}", "-s", "32", "--cluster", "dgx-h100-ndr",
                            "--gpus", "2", "--gbs", "2", "--vary", "peak_flops=1x,2x", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["model"]["name"] == "llama"


def test_a_folder_holding_config_json_and_set_fields(tmp_path):
    folder = tmp_path / "my-llama"
    folder.mkdir()
    shutil.copy(TINY, folder / "config.json")
    raw = json.loads(TINY.read_text())
    assert load_model_file(f"hf:{folder}").name == "my-llama"
    assert _params(f"hf:{folder}") == _closed_form_params(raw)
    wider = {**raw, "hidden_size": 96, "num_hidden_layers": 3, "tie_word_embeddings": True}
    assert _params(f"hf:{folder}", "hidden_size=96", "num_hidden_layers=3",
                   "tie_word_embeddings=true") == _closed_form_params(wider)


def test_hub_code_and_quantization_are_ignored(tmp_path):
    raw = json.loads(TINY.read_text())
    raw["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"}
    raw["quantization_config"] = {"quant_method": "fp8", "fmt": "e4m3"}
    (tmp_path / "config.json").write_text(json.dumps(raw))
    assert load_model_file(f"hf:{tmp_path}").builder_name == "LlamaForCausalLM"
    assert _params(f"hf:{tmp_path}") == _params(f"hf:{TINY}")


def _write(tmp_path, text: str) -> str:
    (tmp_path / "c.json").write_text(text)
    return f"hf:{tmp_path / 'c.json'}"


@pytest.mark.parametrize("make, args, message", [
    (lambda t: "hf:lama-3.1-8b", [], "did you mean 'llama-3.1-8b'?"),
    (lambda t: f"hf:{t}/missing/config.json", [], "no such config file"),
    (lambda t: _write(t, "{not json"), [], "c.json:1: not valid JSON"),
    (lambda t: _write(t, "[1, 2]"), [], "holds a JSON list, not an object"),
    (lambda t: _write(t, '{"hidden_size": 8}'), [], 'has no "model_type"'),
    (lambda t: _write(t, '{"model_type": "lama"}'), [], "did you mean 'llama'?"),
    (lambda t: f"hf:{TINY}", ["--set", "hiden_size=32"], "did you mean 'hidden_size'?"),
    (lambda t: f"hf:{TINY}", ["--set", "hidden_size=wide"], "hidden_size is a whole number"),
    (lambda t: f"hf:{TINY}", ["--set", "model_type=mistral"], "pass another config"),
    (lambda t: f"hf:{TINY}", ["--set", "text_config.hidden_size=8"], "no nested config"),
    (lambda t: f"hf:{TINY}", ["-s", "65"], "--seq-len 65: llama has max_position_embeddings = 64"),
    (lambda t: f"hf:{TINY}", ["--set", "num_attention_heads=5"],
     "is not a multiple of the number of attention heads (5)"),
])
def test_bad_configs_are_one_line_errors(runner, tmp_path, make, args, message):
    r = runner.invoke(app, ["analyze", make(tmp_path), "-s", "16", *args])
    assert r.exit_code == 2, r.output
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "Traceback" not in r.output


def test_without_transformers_the_error_names_the_extra(runner, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers -> ImportError
    r = runner.invoke(app, ["analyze", f"hf:{TINY}", "-s", "16"])
    assert r.exit_code == 2
    assert "pip install 'archcost[hf]'" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_ci_runs_take_hf_models_relative_to_the_project(tmp_path):
    from archcost.ci import load_config

    (tmp_path / "cfg").mkdir()
    shutil.copy(TINY, tmp_path / "cfg" / "config.json")
    (tmp_path / "pyproject.toml").write_text(
        '[tool.archcost]\n'
        '[[tool.archcost.runs]]\nname = "a"\nkind = "analyze"\nmodel = "hf:llama-3.1-8b"\n'
        '[[tool.archcost.runs]]\nname = "b"\nkind = "analyze"\nmodel = "hf:cfg"\n')
    a, b = load_config(tmp_path / "pyproject.toml").runs
    assert a.model == "hf:llama-3.1-8b"
    assert b.model == f"hf:{tmp_path / 'cfg'}" and load_model_file(b.model).name == "cfg"
