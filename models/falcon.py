"""Falcon decoder (the 40B/180B "new decoder architecture"): parallel attention and MLP fed by
two LayerNorms, multigroup (grouped-query) attention with a fused QKV projection, RoPE, GELU.

Architecture: Almazrouei et al. 2023, "The Falcon Series of Open Language Models", Sec. 4
(parallel attention/MLP, multigroup attention, rotary positions, GELU, no biases) and the sizes
of Falcon-180B; layout and names as Hugging Face's port (transformers
``models/falcon/modeling_falcon.py`` with ``new_decoder_architecture=True``,
``parallel_attn=True``, ``bias=False``, ``alibi=False``): token embedding; per block
x + attn(ln_attn(x)) + mlp(ln_mlp(x)); one fused ``query_key_value`` projection whose output is
laid out per key/value group as (heads/kv_heads queries, one key, one value) of head_dim = h/a
each (HF's ``_split_heads``); RoPE on the whole head, rotating halves (``rotate_half``), base
10000; MLP h -> ffn -> h with exact GELU; final LayerNorm; LM head.

Tied head: the tiiuae/falcon-180B config sets no ``tie_word_embeddings``, so transformers' default
(True) ties ``lm_head`` to the word embeddings; ``tie_weights=False`` gives a separate head.

Parameter count, hd = h/a, g = kv_heads·hd, ffn = f:
V·h + l·(h·(h + 2g) + h² + 2h·f + 4h) + 2h, plus V·h for an untied head.
180B (l=80, h=14848, a=232, kv_heads=8, f=4h=59392, V=65024): 178,557,088,768 tied (what
``sum(numel)`` gives for HF's ``FalconForCausalLM`` with the 180B config); untied
179,522,565,120. The ~179.5B quoted for Falcon-180B is the untied figure (the head counted apart
from the embedding); tied it is 178.6B.

Inference hook: ``kv_cache(model, batch_size, max_len, dtype=None)`` gives the empty KV cache, per
layer K and V of (batch_size, kv_heads, max_len, head_dim) (keys cached after rotation; 8 KV
heads for 232 query heads at 180B, the cache-size saving multigroup attention is for), and
``forward(idx, cache, start_pos)`` runs the tokens at positions start_pos.. against it and
returns the last position's logits only (the loader's docstring states the convention).

Keys (``--set``): preset="180b" (or "tiny"); layers, hidden, heads, kv_heads, ffn, vocab override
the preset (None = from the preset); rope_theta=10000.0; tie_weights=True.

Numerics: LayerNorm eps 1e-5 (``layer_norm_epsilon``); RoPE rotates in float32 and casts back;
attention is SDPA with each group of heads/kv_heads query heads sharing one key/value head
(``enable_gqa``; HF broadcasts the key and value instead, the same values).
NB: RoPE cos/sin are computed in forward for the runtime length, so any seq_len traces (Falcon
was trained at 2,048 tokens).
"""

import torch
import torch.nn.functional as F
from torch import nn

# Falcon-180B (Almazrouei et al. 2023; tiiuae/falcon-180B config.json); tiny is a test size
PRESETS = {
    "180b": dict(layers=80, hidden=14848, heads=232, kv_heads=8, ffn=4 * 14848, vocab=65024),
    "tiny": dict(layers=2, hidden=64, heads=4, kv_heads=2, ffn=256, vocab=512),
}


def rope_cos_sin(T: int, head_dim: int, theta: float, like: torch.Tensor, start: int = 0):
    """cos, sin of shape (T, hs) for positions start..start+T-1 (RoFormer Eq. 34, frequencies
    θ^(-2i/d))."""
    inv_freq = 1.0 / theta ** (
        torch.arange(0, head_dim, 2, dtype=torch.float32, device=like.device) / head_dim
    )  # (hs/2,)
    t = torch.arange(T, dtype=torch.float32, device=like.device)  # (T,)
    if start:
        t = t + start  # the new tokens' positions in a KV cache
    freqs = torch.outer(t, inv_freq)  # (T, hs/2)
    emb = torch.cat((freqs, freqs), dim=-1)  # (T, hs)
    return emb.cos(), emb.sin()  # float32


def apply_rope(x, cos, sin):
    # x: (B, nh, T, hs); rotate the pair (x1, x2) of halves by the position's angle, in float32
    x32 = x.float()
    x1, x2 = x32.chunk(2, dim=-1)  # 2 x (B, nh, T, hs/2)
    return (x32 * cos + torch.cat((-x2, x1), dim=-1) * sin).type_as(x)  # (B, nh, T, hs)


def cached_kv(k, v, kv, start_pos: int):
    """Write the new k, v (B, nkv, T, hs) at [start_pos, start_pos+T) of the layer's cache
    ``kv`` = (K, V) in its dtype; return the cached keys and values of positions
    [0, start_pos+T) in k's dtype, and the attention mask for the new queries: ``None`` with
    ``is_causal`` (prefill from 0), ``None`` without (one new token sees them all), else a
    causal boolean mask aligned to the bottom right (query i sees keys up to start_pos + i)."""
    k_cache, v_cache = kv
    T, end = k.shape[2], start_pos + k.shape[2]
    k_cache[:, :, start_pos:end] = k.to(k_cache.dtype)
    v_cache[:, :, start_pos:end] = v.to(v_cache.dtype)
    k_all = k_cache[:, :, :end].to(k.dtype)  # (B, nkv, start_pos+T, hs)
    v_all = v_cache[:, :, :end].to(v.dtype)  # (B, nkv, start_pos+T, hs)
    if start_pos == 0 or T == 1:
        return k_all, v_all, None, start_pos == 0
    mask = torch.ones(T, end, dtype=torch.bool, device=k.device).tril(start_pos)  # (T, end)
    return k_all, v_all, mask, False


class Attention(nn.Module):
    """Multigroup attention: kv_heads groups, each of heads/kv_heads queries, one key, one value
    (Almazrouei et al. 2023, Sec. 4.2.1), from one fused projection."""

    def __init__(self, hidden: int, heads: int, kv_heads: int):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, hidden // heads
        self.query_key_value = nn.Linear(hidden, (heads + 2 * kv_heads) * self.head_dim,
                                         bias=False)
        self.dense = nn.Linear(hidden, hidden, bias=False)

    def forward(self, x, cos, sin, kv=None, start_pos: int = 0):
        B, T, C = x.shape
        rep = self.heads // self.kv_heads
        qkv = self.query_key_value(x).view(B, T, self.kv_heads, rep + 2, self.head_dim)
        q = qkv[:, :, :, :rep].reshape(B, T, self.heads, self.head_dim).transpose(1, 2)  # (B, nh, T, hs)
        k = qkv[:, :, :, rep].transpose(1, 2)  # (B, nkv, T, hs)
        v = qkv[:, :, :, rep + 1].transpose(1, 2)  # (B, nkv, T, hs)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        mask, causal = None, True
        if kv is not None:  # inference: attend over the cache, the new tokens included
            k, v, mask, causal = cached_kv(k, v, kv, start_pos)  # 2 x (B, nkv, S, hs)
        # query head i (group-major order) reads key/value head i // rep
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                           enable_gqa=True)  # (B, nh, T, hs)
        return self.dense(y.transpose(1, 2).reshape(B, T, C))  # (B, T, C)


class MLP(nn.Module):
    def __init__(self, hidden: int, ffn: int):
        super().__init__()
        self.dense_h_to_4h = nn.Linear(hidden, ffn, bias=False)
        self.dense_4h_to_h = nn.Linear(ffn, hidden, bias=False)

    def forward(self, x):
        return self.dense_4h_to_h(F.gelu(self.dense_h_to_4h(x)))  # (B, T, C)


class Block(nn.Module):
    """x + attn(ln_attn(x)) + mlp(ln_mlp(x)): parallel sub-layers, a LayerNorm each."""

    def __init__(self, hidden: int, heads: int, kv_heads: int, ffn: int):
        super().__init__()
        self.ln_attn = nn.LayerNorm(hidden, eps=1e-5)
        self.ln_mlp = nn.LayerNorm(hidden, eps=1e-5)
        self.self_attention = Attention(hidden, heads, kv_heads)
        self.mlp = MLP(hidden, ffn)

    def forward(self, x, cos, sin, kv=None, start_pos: int = 0):
        attn = self.self_attention(self.ln_attn(x), cos, sin,
                                   kv=kv, start_pos=start_pos)  # (B, T, C)
        return x + attn + self.mlp(self.ln_mlp(x))  # (B, T, C)


INITIALIZER_RANGE = 0.02  # transformers' FalconConfig default


def _init_weights(module: nn.Module) -> None:
    """transformers' ``FalconPreTrainedModel._init_weights``: linear and embedding weights from
    a normal of std ``INITIALIZER_RANGE``, biases zero. PyTorch's default embedding (N(0, 1))
    under the tied head gives logits of std ~sqrt(hidden) and a softmax of subnormal numbers."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=INITIALIZER_RANGE)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


class Falcon(nn.Module):
    def __init__(self, layers, hidden, heads, kv_heads, ffn, vocab, rope_theta, tie_weights):
        super().__init__()
        self.vocab = vocab
        self.head_dim = hidden // heads
        self.rope_theta = rope_theta
        self.word_embeddings = nn.Embedding(vocab, hidden)
        self.layers = nn.ModuleList(Block(hidden, heads, kv_heads, ffn) for _ in range(layers))
        self.ln_f = nn.LayerNorm(hidden, eps=1e-5)
        # A tied head reads word_embeddings.weight in forward (no second module holding the same
        # Parameter), so the tie survives anything that swaps parameters module by module.
        self.lm_head = None if tie_weights else nn.Linear(hidden, vocab, bias=False)
        self.apply(_init_weights)

    def _head(self, x):
        if self.lm_head is None:
            return F.linear(x, self.word_embeddings.weight)  # (B, T, V)
        return self.lm_head(x)  # (B, T, V)

    def forward(self, idx, cache=None, start_pos: int = 0):
        """Logits (B, T, V); with a ``cache`` (from :func:`kv_cache`) the T tokens sit at
        positions start_pos.. and only the last position's logits (B, 1, V) are returned."""
        B, T = idx.shape
        x = self.word_embeddings(idx)  # (B, T, C)
        cos, sin = rope_cos_sin(T, self.head_dim, self.rope_theta, x, start_pos)  # 2 x (T, hs)
        if cache is None:
            for block in self.layers:
                x = block(x, cos, sin)  # (B, T, C)
            return self._head(self.ln_f(x))  # (B, T, V)
        for block, kv in zip(self.layers, cache, strict=True):
            x = block(x, cos, sin, kv, start_pos)  # (B, T, C)
        return self._head(self.ln_f(x[:, -1:]))  # (B, 1, V): the head on the last token only


def _positive(**sizes) -> None:
    """Refuse sizes no model has (archcost types --set values; their domain is the builder's)."""
    for key, value in sizes.items():
        if value is not None and value < 1:
            raise ValueError(f"{key}={value} must be >= 1")


def build_model(
    *,
    preset: str = "180b",
    layers: int | None = None,
    hidden: int | None = None,
    heads: int | None = None,
    kv_heads: int | None = None,
    ffn: int | None = None,
    vocab: int | None = None,
    rope_theta: float = 10000.0,
    tie_weights: bool = True,
) -> nn.Module:
    if preset not in PRESETS:
        raise ValueError(f"preset={preset!r} is unknown; use one of {', '.join(PRESETS)}")
    given = dict(layers=layers, hidden=hidden, heads=heads, kv_heads=kv_heads, ffn=ffn,
                 vocab=vocab)
    cfg = {**PRESETS[preset], **{k: v for k, v in given.items() if v is not None}}
    _positive(**cfg)
    if cfg["hidden"] % cfg["heads"] or cfg["heads"] % cfg["kv_heads"]:
        raise ValueError(f"need hidden % heads == 0 and heads % kv_heads == 0, got "
                         f"hidden={cfg['hidden']}, heads={cfg['heads']}, "
                         f"kv_heads={cfg['kv_heads']}")
    if (cfg["hidden"] // cfg["heads"]) % 2:
        raise ValueError(f"the head size hidden/heads={cfg['hidden'] // cfg['heads']} must be "
                         "even for rotary positions")
    if rope_theta <= 0:
        raise ValueError(f"rope_theta={rope_theta} must be positive")
    return Falcon(**cfg, rope_theta=rope_theta, tie_weights=tie_weights)


def example_inputs(batch_size: int, seq_len: int, model: nn.Module):
    """Token ids (batch_size, seq_len) drawn from the model's vocabulary."""
    return (torch.randint(0, model.vocab, (batch_size, seq_len)),)


def loss(output, inputs):
    """Next-token cross entropy; targets are the inputs shifted left (last target wraps)."""
    targets = torch.roll(inputs[0], -1, dims=1)  # (B, T)
    return F.cross_entropy(output.flatten(0, 1).float(), targets.flatten())


def kv_cache(model: Falcon, batch_size: int, max_len: int, dtype=None) -> list:
    """An empty KV cache: per layer a (K, V) pair of zeros shaped (batch_size, kv_heads, max_len,
    head_dim) in ``dtype`` (None: the parameters' dtype), on the parameters' device."""
    w = model.word_embeddings.weight
    return [tuple(torch.zeros(batch_size, block.self_attention.kv_heads, max_len, model.head_dim,
                              dtype=dtype or w.dtype, device=w.device) for _ in range(2))
            for block in model.layers]
