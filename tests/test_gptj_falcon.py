"""GPT-J and Falcon model files: parameter counts and logits against Hugging Face's models.

The closed forms are written out here from the papers' shapes; Hugging Face's
``GPTJForCausalLM`` and ``FalconForCausalLM`` (an independent implementation) give the reference
parameter counts (built on the meta device) and, with their weights copied into the tiny model
files, the reference logits.
"""

from __future__ import annotations

import pytest
import torch
from transformers import FalconConfig, FalconForCausalLM, GPTJConfig, GPTJForCausalLM

from tests.conftest import MODELS, load_module

_MODULES: dict[str, object] = {}


def module(name: str):
    if name not in _MODULES:
        _MODULES[name] = load_module(MODELS / f"{name}.py")
    return _MODULES[name]


def numel(model) -> int:
    return sum(p.numel() for p in model.parameters())


def gptj_params(L, h, f, V):
    """Embedding; per layer one LayerNorm, q, k, v, out without bias, fc_in and fc_out with
    bias; final LayerNorm; untied head with bias."""
    per_layer = 2 * h + 4 * h * h + (h * f + f) + (f * h + h)
    return V * h + L * per_layer + 2 * h + (h * V + V)


def falcon_params(L, h, a, kv, f, V, tied=True):
    """Embedding; per layer two LayerNorms, fused QKV (a query heads, kv keys and values of
    h/a), dense, two MLP matrices, no biases; final LayerNorm; the head when untied."""
    g = kv * (h // a)
    per_layer = 2 * 2 * h + h * (h + 2 * g) + h * h + 2 * h * f
    return V * h + L * per_layer + 2 * h + (0 if tied else V * h)


def test_gptj_6b_parameter_count():
    expected = gptj_params(28, 4096, 16384, 50400)
    assert expected == 6_050_882_784
    with torch.device("meta"):
        ours = module("gptj").build_model(preset="6b")
        hf = GPTJForCausalLM(GPTJConfig())  # GPTJConfig defaults are GPT-J-6B
    assert numel(ours) == expected == numel(hf)


@pytest.mark.parametrize("tied", [True, False])
def test_falcon_180b_parameter_count(tied):
    expected = falcon_params(80, 14848, 232, 8, 4 * 14848, 65024, tied)
    assert expected == (178_557_088_768 if tied else 179_522_565_120)
    with torch.device("meta"):
        ours = module("falcon").build_model(preset="180b", tie_weights=tied)
        hf = FalconForCausalLM(FalconConfig(  # tiiuae/falcon-180B config.json
            hidden_size=14848, num_attention_heads=232, num_hidden_layers=80, num_kv_heads=8,
            new_decoder_architecture=True, parallel_attn=True, bias=False, alibi=False,
            multi_query=True, vocab_size=65024, tie_word_embeddings=tied))
    assert numel(ours) == expected == numel(hf)


def _hf_tiny(name: str, tied: bool):
    if name == "gptj":
        return GPTJForCausalLM(GPTJConfig(n_layer=2, n_embd=64, n_head=4, rotary_dim=8,
                                          n_inner=256, vocab_size=512, n_positions=64,
                                          bos_token_id=0, eos_token_id=0))
    return FalconForCausalLM(FalconConfig(
        hidden_size=64, num_attention_heads=4, num_kv_heads=2, num_hidden_layers=2,
        new_decoder_architecture=True, parallel_attn=True, bias=False, alibi=False,
        ffn_hidden_size=256, vocab_size=512, tie_word_embeddings=tied))


@pytest.mark.parametrize("name, cfg", [("gptj", {}), ("falcon", {"tie_weights": True}),
                                       ("falcon", {"tie_weights": False})])
def test_tiny_logits_equal_hugging_face(name, cfg):
    """Same weights (HF's random init, renamed), same logits: checks the block layout, the
    partial interleaved rotary of GPT-J and Falcon's grouped QKV split."""
    torch.manual_seed(0)
    hf = _hf_tiny(name, cfg.get("tie_weights", False)).eval()
    ours = module(name).build_model(preset="tiny", **cfg).eval()
    renamed = {k.replace("transformer.h.", "layers.").replace("transformer.", ""): v
               for k, v in hf.state_dict().items()}
    state = ours.state_dict()
    assert set(state) <= set(renamed)
    ours.load_state_dict({k: renamed[k] for k in state}, strict=True)
    idx = torch.randint(0, 512, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(ours(idx), hf(idx).logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name, cfg, message", [
    ("gptj", dict(preset="tiny", rotary_dim=7), "rotary_dim=7 must be even"),
    ("gptj", dict(preset="tiny", rotary_dim=32), "at most the head size hidden/heads=16"),
    ("gptj", dict(preset="tiny", heads=5), "not divisible by heads=5"),
    ("gptj", dict(preset="7b"), "preset='7b' is unknown"),
    ("gptj", dict(preset="tiny", layers=0), "layers=0 must be >= 1"),
    ("falcon", dict(preset="tiny", kv_heads=3), "heads % kv_heads == 0"),
    ("falcon", dict(preset="tiny", hidden=60, heads=4, kv_heads=1), "must be even"),
    ("falcon", dict(preset="tiny", rope_theta=0.0), "rope_theta=0.0 must be positive"),
    ("falcon", dict(preset="40b"), "preset='40b' is unknown"),
])
def test_builders_refuse_bad_sizes(name, cfg, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("%", "%")):
        with torch.device("meta"):
            module(name).build_model(**cfg)
