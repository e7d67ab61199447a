"""GPT-J decoder: partial rotary positions, parallel attention and MLP from one LayerNorm.

Architecture: Wang & Komatsuzaki 2021, "GPT-J-6B: A 6 Billion Parameter Autoregressive Language
Model" (kingoflolz/mesh-transformer-jax); layout and names as Hugging Face's port
(transformers ``models/gptj/modeling_gptj.py``, ``GPTJConfig`` defaults): token embedding, no
position embedding; per block one LayerNorm whose output feeds attention and MLP in parallel,
x + attn(ln(x)) + mlp(ln(x)) (the GPT-NeoX/PaLM "parallel" block); attention projections q, k,
v, out without bias; rotary positions (RoFormer, Su et al. 2021) on the first ``rotary_dim``
channels of each head only, rotating interleaved pairs (channels 2i, 2i+1: HF's
``rotate_every_two``), the other channels pass unrotated; MLP fc_in (h -> ffn), GELU (tanh
approximation, ``gelu_new``), fc_out, both with bias; final LayerNorm; untied LM head with bias.

Parameter count, ffn = f:
V·h + l·(4h² + 2h·f + f + h + 2h) + 2h + h·V + V.
6B (l=28, h=4096, f=16384, V=50400): 6,050,882,784, which is what ``sum(numel)`` gives for
HF's ``GPTJForCausalLM(GPTJConfig())``; the mesh-transformer-jax README lists 6,053,381,344,
2,498,560 (0.04%) more, which this layout does not account for.

Inference hook: ``kv_cache(model, batch_size, max_len, dtype=None)`` gives the empty KV cache,
per layer K and V of (batch_size, heads, max_len, hidden/heads) (multi-head attention: every
head cached; keys cached after rotation), and ``forward(idx, cache, start_pos)`` runs the tokens
at positions start_pos.. against it and returns the last position's logits only (the loader's
docstring states the convention).

Keys (``--set``): preset="6b" (or "tiny"); layers, hidden, heads, rotary_dim, ffn, vocab override
the preset (None = from the preset); rope_theta=10000.0 (HF's base).

Numerics: LayerNorm eps 1e-5 (``layer_norm_epsilon``); RoPE rotates in float32 and casts back.
NB: HF computes the attention scores in float32 (``_attn`` upcasts q and k); here SDPA runs in the
compute dtype. RoPE cos/sin are computed in forward for the runtime length, so any seq_len traces
(GPT-J was trained at n_positions = 2048).
"""

import torch
import torch.nn.functional as F
from torch import nn

# GPTJConfig defaults (= EleutherAI/gpt-j-6b); tiny is a test size with partial rotary
PRESETS = {
    "6b": dict(layers=28, hidden=4096, heads=16, rotary_dim=64, ffn=16384, vocab=50400),
    "tiny": dict(layers=2, hidden=64, heads=4, rotary_dim=8, ffn=256, vocab=512),
}


def rope_cos_sin(T: int, rotary_dim: int, theta: float, like: torch.Tensor, start: int = 0):
    """cos, sin of shape (T, rotary_dim) for positions start..start+T-1, each angle repeated for
    its interleaved pair (RoFormer Eq. 34, frequencies θ^(-2i/d) with d = rotary_dim)."""
    inv_freq = 1.0 / theta ** (
        torch.arange(0, rotary_dim, 2, dtype=torch.float32, device=like.device) / rotary_dim
    )  # (rd/2,)
    t = torch.arange(T, dtype=torch.float32, device=like.device)  # (T,)
    if start:
        t = t + start  # the new tokens' positions in a KV cache
    freqs = torch.outer(t, inv_freq).repeat_interleave(2, dim=-1)  # (T, rd)
    return freqs.cos(), freqs.sin()  # float32


def apply_rope(x, cos, sin):
    # x: (B, nh, T, hs); rotate the pairs (x[2i], x[2i+1]) of the first rd channels, in float32
    rd = cos.shape[-1]
    x32 = x.float()
    rot, rest = x32[..., :rd], x32[..., rd:]  # (B, nh, T, rd), (B, nh, T, hs - rd)
    pairs = rot.unflatten(-1, (rd // 2, 2))  # (B, nh, T, rd/2, 2)
    turned = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)  # (B, nh, T, rd)
    return torch.cat((rot * cos + turned * sin, rest), dim=-1).type_as(x)  # (B, nh, T, hs)


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
    def __init__(self, hidden: int, heads: int):
        super().__init__()
        self.heads, self.head_dim = heads, hidden // heads
        self.q_proj = nn.Linear(hidden, hidden, bias=False)
        self.k_proj = nn.Linear(hidden, hidden, bias=False)
        self.v_proj = nn.Linear(hidden, hidden, bias=False)
        self.out_proj = nn.Linear(hidden, hidden, bias=False)

    def forward(self, x, cos, sin, kv=None, start_pos: int = 0):
        B, T, C = x.shape
        q = self.q_proj(x).view(B, T, self.heads, self.head_dim).transpose(1, 2)  # (B, nh, T, hs)
        k = self.k_proj(x).view(B, T, self.heads, self.head_dim).transpose(1, 2)  # (B, nh, T, hs)
        v = self.v_proj(x).view(B, T, self.heads, self.head_dim).transpose(1, 2)  # (B, nh, T, hs)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        mask, causal = None, True
        if kv is not None:  # inference: attend over the cache, the new tokens included
            k, v, mask, causal = cached_kv(k, v, kv, start_pos)  # 2 x (B, nh, S, hs)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                           is_causal=causal)  # (B, nh, T, hs)
        return self.out_proj(y.transpose(1, 2).reshape(B, T, C))  # (B, T, C)


class MLP(nn.Module):
    def __init__(self, hidden: int, ffn: int):
        super().__init__()
        self.fc_in = nn.Linear(hidden, ffn)
        self.fc_out = nn.Linear(ffn, hidden)

    def forward(self, x):
        return self.fc_out(F.gelu(self.fc_in(x), approximate="tanh"))  # (B, T, C)


class Block(nn.Module):
    """Parallel block: x + attn(ln_1(x)) + mlp(ln_1(x)), one LayerNorm for both."""

    def __init__(self, hidden: int, heads: int, ffn: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(hidden, eps=1e-5)
        self.attn = Attention(hidden, heads)
        self.mlp = MLP(hidden, ffn)

    def forward(self, x, cos, sin, kv=None, start_pos: int = 0):
        h = self.ln_1(x)  # (B, T, C)
        return x + self.attn(h, cos, sin, kv=kv, start_pos=start_pos) + self.mlp(h)  # (B, T, C)


class GPTJ(nn.Module):
    def __init__(self, layers, hidden, heads, rotary_dim, ffn, vocab, rope_theta):
        super().__init__()
        self.vocab = vocab
        self.rotary_dim = rotary_dim
        self.rope_theta = rope_theta
        self.wte = nn.Embedding(vocab, hidden)
        self.layers = nn.ModuleList(Block(hidden, heads, ffn) for _ in range(layers))
        self.ln_f = nn.LayerNorm(hidden, eps=1e-5)
        self.lm_head = nn.Linear(hidden, vocab)  # untied, with bias

    def forward(self, idx, cache=None, start_pos: int = 0):
        """Logits (B, T, V); with a ``cache`` (from :func:`kv_cache`) the T tokens sit at
        positions start_pos.. and only the last position's logits (B, 1, V) are returned."""
        B, T = idx.shape
        x = self.wte(idx)  # (B, T, C)
        cos, sin = rope_cos_sin(T, self.rotary_dim, self.rope_theta, x, start_pos)  # 2 x (T, rd)
        if cache is None:
            for block in self.layers:
                x = block(x, cos, sin)  # (B, T, C)
            return self.lm_head(self.ln_f(x))  # (B, T, V)
        for block, kv in zip(self.layers, cache, strict=True):
            x = block(x, cos, sin, kv, start_pos)  # (B, T, C)
        return self.lm_head(self.ln_f(x[:, -1:]))  # (B, 1, V): the head on the last token only


def _positive(**sizes) -> None:
    """Refuse sizes no model has (archcost types --set values; their domain is the builder's)."""
    for key, value in sizes.items():
        if value is not None and value < 1:
            raise ValueError(f"{key}={value} must be >= 1")


def build_model(
    *,
    preset: str = "6b",
    layers: int | None = None,
    hidden: int | None = None,
    heads: int | None = None,
    rotary_dim: int | None = None,
    ffn: int | None = None,
    vocab: int | None = None,
    rope_theta: float = 10000.0,
) -> nn.Module:
    if preset not in PRESETS:
        raise ValueError(f"preset={preset!r} is unknown; use one of {', '.join(PRESETS)}")
    given = dict(layers=layers, hidden=hidden, heads=heads, rotary_dim=rotary_dim, ffn=ffn,
                 vocab=vocab)
    cfg = {**PRESETS[preset], **{k: v for k, v in given.items() if v is not None}}
    _positive(**cfg)
    if cfg["hidden"] % cfg["heads"]:
        raise ValueError(f"hidden={cfg['hidden']} is not divisible by heads={cfg['heads']}")
    head_dim = cfg["hidden"] // cfg["heads"]
    if cfg["rotary_dim"] % 2 or cfg["rotary_dim"] > head_dim:
        raise ValueError(f"rotary_dim={cfg['rotary_dim']} must be even and at most the head "
                         f"size hidden/heads={head_dim}")
    if rope_theta <= 0:
        raise ValueError(f"rope_theta={rope_theta} must be positive")
    return GPTJ(**cfg, rope_theta=rope_theta)


def example_inputs(batch_size: int, seq_len: int, model: nn.Module):
    """Token ids (batch_size, seq_len) drawn from the model's vocabulary."""
    return (torch.randint(0, model.vocab, (batch_size, seq_len)),)


def loss(output, inputs):
    """Next-token cross entropy; targets are the inputs shifted left (last target wraps)."""
    targets = torch.roll(inputs[0], -1, dims=1)  # (B, T)
    return F.cross_entropy(output.flatten(0, 1).float(), targets.flatten())


def kv_cache(model: GPTJ, batch_size: int, max_len: int, dtype=None) -> list:
    """An empty KV cache: per layer a (K, V) pair of zeros shaped (batch_size, heads, max_len,
    head_dim) in ``dtype`` (None: the parameters' dtype), on the parameters' device."""
    w = model.lm_head.weight
    return [tuple(torch.zeros(batch_size, block.attn.heads, max_len, block.attn.head_dim,
                              dtype=dtype or w.dtype, device=w.device) for _ in range(2))
            for block in model.layers]
