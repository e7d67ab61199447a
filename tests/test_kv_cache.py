"""The ``kv_cache`` model-file hook and the cached forward of the bundled decoders.

Ground truth is the model's own training forward, run for real on CPU tensors in float32:
generating with the cache (prefill, then one token at a time) must give the logits that
recomputing the whole sequence without a cache gives at every step, and a prefill cut in two
chunks those of one prefill. Cache sizes are checked against the closed form
2 · layers · kv_heads · head_dim · max_len · batch · itemsize, with the sizes taken from the
papers' shapes written out here, not read from the model.
"""

from __future__ import annotations

import pytest
import torch

from archcost.errors import ModelFileError
from archcost.loader import load_model_file
from tests.conftest import DATA, MODELS, load_module

_MODULES: dict[str, object] = {}

# name -> (model file, builder config); tiny sizes. The MoE runs at capacity_factor = E/top_k,
# where no token is ever dropped (models/moe.py), so its output per token does not depend on
# how many tokens share the batch, which a cached decode changes.
CASES = {
    "llama": ("llama", dict(preset="tiny")),
    "llama-native-gqa": ("llama", dict(preset="tiny", gqa="native")),
    "gpt2": ("gpt2", dict(layers=2, hidden=64, heads=4, vocab=256, seq_len=32)),
    "gpt2-explicit": ("gpt2", dict(layers=2, hidden=64, heads=4, vocab=256, seq_len=32,
                                   flash=False)),
    "moe": ("moe", dict(preset="tiny", capacity_factor=2.0)),
    "gptj": ("gptj", dict(preset="tiny")),
    "falcon": ("falcon", dict(preset="tiny")),
    "falcon-untied": ("falcon", dict(preset="tiny", tie_weights=False)),
    # 8 experts, top-2: capacity_factor 4 = E/top_k never drops
    "deepseek_v3": ("deepseek_v3", dict(preset="tiny", capacity_factor=4.0)),
}


def module(name: str):
    if name not in _MODULES:
        _MODULES[name] = load_module(MODELS / f"{name}.py")
    return _MODULES[name]


def build(case: str):
    name, cfg = CASES[case]
    mod = module(name)
    torch.manual_seed(0)
    model = mod.build_model(**cfg).eval()
    return mod, model


def prompt(model, batch: int, length: int, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, model.vocab, (batch, length), generator=gen)


@pytest.mark.parametrize("case", list(CASES))
def test_greedy_generation_with_cache_matches_recomputing(case):
    mod, model = build(case)
    B, P, steps = 2, 5, 6
    seq = prompt(model, B, P)
    cache = mod.kv_cache(model, B, P + steps)
    with torch.no_grad():
        logits = model(seq, cache=cache, start_pos=0)  # prefill
        for step in range(steps):
            full = model(seq)  # (B, T, V), no cache
            assert logits.shape == (B, 1, model.vocab)
            torch.testing.assert_close(logits, full[:, -1:], rtol=1e-5, atol=1e-5,
                                       msg=f"step {step}")
            token = logits.argmax(-1)  # (B, 1) greedy
            logits = model(token, cache=cache, start_pos=seq.shape[1])  # one decode step
            seq = torch.cat((seq, token), dim=1)


@pytest.mark.parametrize("case", list(CASES))
def test_prefill_in_two_chunks_matches_one(case):
    mod, model = build(case)
    B, T, cut, max_len = 2, 12, 5, 16
    seq = prompt(model, B, T)
    one, two = mod.kv_cache(model, B, max_len), mod.kv_cache(model, B, max_len)
    with torch.no_grad():
        whole = model(seq, cache=one, start_pos=0)
        model(seq[:, :cut], cache=two, start_pos=0)
        chunked = model(seq[:, cut:], cache=two, start_pos=cut)  # start_pos > 0, T > 1
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-5)
    for (k1, v1), (k2, v2) in zip(one, two, strict=True):
        torch.testing.assert_close(k2, k1, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(v2, v1, rtol=1e-5, atol=1e-5)
        assert not k1[:, :, T:].any() and not v1[:, :, T:].any()  # nothing past the tokens


ITEMSIZE = {torch.float32: 4, torch.bfloat16: 2, torch.float8_e4m3fn: 1}

# name, config, (layers, kv_heads, head_dim) from the papers' shapes
SIZES = [
    ("llama", dict(preset="tiny"), (2, 2, 64 // 4)),
    # Llama 3 8B (Grattafiori et al. 2024, Table 3): 32 layers, 8 KV heads of 4096/32
    ("llama", dict(preset="8b"), (32, 8, 128)),
    ("moe", dict(preset="tiny"), (2, 2, 64 // 4)),
    # Mixtral 8x7B (Jiang et al. 2024, Table 1): 32 layers, 8 KV heads of 128
    ("moe", dict(preset="mixtral-8x7b"), (32, 8, 128)),
    # GPT-2 small is multi-head attention: every head is cached (Radford et al. 2019)
    ("gpt2", dict(), (12, 12, 64)),
    ("gpt2", dict(layers=2, hidden=64, heads=4, vocab=256), (2, 4, 16)),
    ("gptj", dict(preset="tiny"), (2, 4, 16)),
    # GPT-J 6B (GPTJConfig defaults): 28 layers, multi-head, 16 heads of 4096/16
    ("gptj", dict(preset="6b"), (28, 16, 256)),
    ("falcon", dict(preset="tiny"), (2, 2, 16)),
    # Falcon-180B (Almazrouei et al. 2023): 80 layers, 8 KV heads of 14848/232 = 64
    ("falcon", dict(preset="180b"), (80, 8, 64)),
]


@pytest.mark.parametrize("dtype", [None, torch.bfloat16, torch.float8_e4m3fn])
@pytest.mark.parametrize("name, cfg, shape", SIZES)
def test_cache_bytes_closed_form(name, cfg, shape, dtype):
    layers, kv_heads, head_dim = shape
    B, max_len = 3, 40
    with torch.device("meta"):
        model = module(name).build_model(**cfg)
    cache = module(name).kv_cache(model, B, max_len, dtype)
    itemsize = ITEMSIZE[dtype or torch.float32]
    assert len(cache) == layers
    assert all(len(kv) == 2 for kv in cache)
    for t in (t for kv in cache for t in kv):
        assert t.shape == (B, kv_heads, max_len, head_dim)
        assert t.dtype == (dtype or torch.float32) and t.device.type == "meta"
    total = sum(t.numel() * t.element_size() for kv in cache for t in kv)
    assert total == 2 * layers * kv_heads * head_dim * max_len * B * itemsize


@pytest.mark.parametrize("dtype", [None, torch.bfloat16, torch.float8_e4m3fn])
@pytest.mark.parametrize("cfg, shape", [
    (dict(preset="tiny"), (3, 16, 8)),
    # DeepSeek-V3 config: 61 layers, kv_lora_rank 512, qk_rope_head_dim 64
    (dict(preset="deepseek-v3"), (61, 512, 64)),
])
def test_mla_cache_holds_the_latent_and_the_rope_key(cfg, shape, dtype):
    """MLA caches (d_c + d_R) elements per token and layer, not 2·heads·head_dim (DeepSeek-V2,
    Shao et al. 2024, Sec. 2.1.2 and Table 1)."""
    layers, kv_rank, rope = shape
    B, max_len = 3, 40
    mod = module("deepseek_v3")
    with torch.device("meta"):
        model = mod.build_model(**cfg)
    cache = mod.kv_cache(model, B, max_len, dtype)
    assert len(cache) == layers
    for c_kv, k_pe in cache:
        assert c_kv.shape == (B, 1, max_len, kv_rank) and k_pe.shape == (B, 1, max_len, rope)
    total = sum(t.numel() * t.element_size() for kv in cache for t in kv)
    itemsize = ITEMSIZE[dtype or torch.float32]
    assert total == layers * (kv_rank + rope) * max_len * B * itemsize


def test_llama_8b_caches_128_kib_per_token_in_bf16():
    # 2 (K, V) · 32 layers · 8 KV heads · 128 · 2 bytes = 131,072 bytes per token
    with torch.device("meta"):
        model = module("llama").build_model(preset="8b")
    cache = module("llama").kv_cache(model, 1, 1, torch.bfloat16)
    assert sum(t.numel() * t.element_size() for kv in cache for t in kv) == 131_072


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float8_e4m3fn])
@pytest.mark.parametrize("case", ["llama", "gpt2", "moe", "gptj", "falcon",
                                  "deepseek_v3"])
def test_low_precision_cache_holds_the_rounded_keys_and_values(case, dtype):
    mod, model = build(case)
    B, T = 2, 7
    seq = prompt(model, B, T)
    full, low = mod.kv_cache(model, B, T), mod.kv_cache(model, B, T, dtype)
    with torch.no_grad():
        model(seq, cache=full, start_pos=0)
        out = model(seq, cache=low, start_pos=0)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert all(t.dtype == dtype for kv in low for t in kv)
    # the first layer's K, V are computed before any cache is read: the same, rounded on write
    (k, v), (kl, vl) = full[0], low[0]
    assert torch.equal(kl, k.to(dtype)) and torch.equal(vl, v.to(dtype))
    assert not torch.equal(kl.float(), k)  # the rounding happened


def test_cache_rejects_a_sequence_past_gpt2_positions():
    mod, model = build("gpt2")  # block_size 32
    cache = mod.kv_cache(model, 1, 40)
    with pytest.raises(ValueError, match="exceeds block_size=32"):
        model(prompt(model, 1, 2), cache=cache, start_pos=31)


@pytest.mark.parametrize("name", ["llama", "gpt2", "moe", "gptj", "falcon",
                                  "deepseek_v3"])
def test_loader_finds_the_hook(name):
    spec = load_model_file(str(MODELS / f"{name}.py"))
    assert spec.kv_cache_fn is not None
    with torch.device("meta"):
        model = spec.build(1, 8)
    cache = spec.kv_cache(model, 2, 8)
    assert len(cache) == len(model.layers)


def test_missing_hook_is_a_one_line_error():
    spec = load_model_file(str(DATA / "models" / "tiny_ok.py"))
    assert spec.kv_cache_fn is None
    with pytest.raises(ModelFileError) as err:
        spec.kv_cache(spec.build(1, 4), 1, 4)
    message = str(err.value)
    assert "\n" not in message
    assert "tiny_ok.py defines no kv_cache()" in message and "def kv_cache(" in message


@pytest.mark.parametrize("case", ["llama", "gpt2", "moe", "gptj", "falcon",
                                  "deepseek_v3"])
def test_prefill_and_decode_run_under_fake_tensors(case):
    """The cached forward traces the way archcost captures inference: meta-built model,
    parameters swapped for fake bf16 tensors, an fp8 cache, no_grad."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    name, cfg = CASES[case]
    mod = module(name)
    with torch.device("meta"):
        model = mod.build_model(**cfg)
    B, prompt_len = 2, 8
    with FakeTensorMode(allow_non_fake_inputs=False), torch.no_grad():
        for m in model.modules():
            for n, p in list(m._parameters.items()):
                if p is not None:
                    m._parameters[n] = torch.nn.Parameter(torch.empty(p.shape,
                                                                      dtype=torch.bfloat16))
            for n, b in list(m._buffers.items()):
                if b is not None:
                    m._buffers[n] = torch.zeros(b.shape, dtype=torch.bfloat16)
        cache = mod.kv_cache(model, B, prompt_len + 1, torch.float8_e4m3fn)
        prefill = model(torch.zeros(B, prompt_len, dtype=torch.long), cache=cache, start_pos=0)
        decode = model(torch.zeros(B, 1, dtype=torch.long), cache=cache, start_pos=prompt_len)
    assert prefill.shape == decode.shape == (B, 1, model.vocab)
    assert prefill.dtype == decode.dtype == torch.bfloat16
