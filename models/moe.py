"""Mixtral-style sparse mixture-of-experts decoder with static-shape, capacity-based dispatch.

Architecture: Jiang et al. 2024, "Mixtral of Experts", Sec. 2 and Table 1 (8 SwiGLU experts per
layer, top-2 token-choice routing with softmax over the two selected logits, Eq. 1; attention as in
Mistral 7B: GQA, RMSNorm, RoPE). Capacity dispatch: Lepikhin et al. 2020, "GShard", Sec. 2.2
(Algorithm 1); Fedus et al. 2021, "Switch Transformers", Sec. 2.2 (expert capacity =
tokens_per_batch / experts · capacity_factor).

Parameter count, hd = h/a, g = kv_heads·hd:
l·(2h² + 2h·g + E·3h·f + h·E + 2h) + 2V·h + h. Mixtral 8x7B: 46,702,792,704 (Mistral's
"46.7B total parameters", Jiang et al. Sec. 1).

Inference hook: ``kv_cache(model, batch_size, max_len, dtype=None)`` and the cached
``forward(idx, cache, start_pos)``, as in ``models/llama.py``. NB: capacity dispatch depends on
how many tokens share a forward, so with capacity_factor < E/top_k a cached decode can drop other
tokens than a full recomputation does.

Keys (``--set``): preset="mixtral-8x7b" (or "tiny"); layers, hidden, heads, kv_heads, ffn, vocab,
experts, top_k override the preset (None = from the preset); capacity_factor=1.0;
rope_theta=1000000.0 (Mixtral's config).

Dispatch with static shapes (so fake tensors can trace it and FLOPs scale with top_k and
capacity_factor, not with the number of experts): the N = B·T tokens of a batch form one group;
each expert has C = ceil(top_k · N / E · capacity_factor) slots. A token's slot in its expert is a
cumsum over the one-hot expert mask, first choices of all tokens before second choices (GShard).
Tokens are scattered (index_add) into an (E, C, h) buffer, the experts run as batched matmuls over
stacked (E, h, f) weights (torch.bmm), and outputs are gathered back (index_select) and weighted.

NB: tokens over an expert's capacity are dropped (they contribute zero for that choice), as in
Switch/GShard; Mixtral itself is dropless (Megablocks grouped GEMMs). capacity_factor = E/top_k
makes C = N, which can never drop. The buffer's work is E·C rows whether or not slots are filled.
NB: no router load-balancing auxiliary loss is added.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

PRESETS = {
    # Jiang et al. 2024, Table 1
    "mixtral-8x7b": dict(
        layers=32, hidden=4096, heads=32, kv_heads=8, ffn=14336, vocab=32000, experts=8, top_k=2
    ),
    "tiny": dict(layers=2, hidden=64, heads=4, kv_heads=2, ffn=128, vocab=512, experts=4, top_k=2),
}


class RMSNorm(nn.Module):
    """x · rsqrt(mean(x²) + eps) · weight (Zhang & Sennrich 2019, Eq. 4), as explicit ops."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


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
    return emb.cos().to(like.dtype), emb.sin().to(like.dtype)


def apply_rope(x, cos, sin):
    # x: (B, nh, T, hs); rotate the pair (x1, x2) of halves by the position's angle
    x1, x2 = x.chunk(2, dim=-1)  # 2 x (B, nh, T, hs/2)
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin  # (B, nh, T, hs)


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
    def __init__(self, hidden: int, heads: int, kv_heads: int):
        super().__init__()
        if hidden % heads or heads % kv_heads:
            raise ValueError(f"need hidden % heads == 0 and heads % kv_heads == 0, got "
                             f"hidden={hidden}, heads={heads}, kv_heads={kv_heads}")
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, hidden // heads
        self.wq = nn.Linear(hidden, heads * self.head_dim, bias=False)
        self.wk = nn.Linear(hidden, kv_heads * self.head_dim, bias=False)
        self.wv = nn.Linear(hidden, kv_heads * self.head_dim, bias=False)
        self.wo = nn.Linear(heads * self.head_dim, hidden, bias=False)

    def forward(self, x, cos, sin, kv=None, start_pos: int = 0):
        B, T, C = x.shape
        q = self.wq(x).view(B, T, self.heads, self.head_dim).transpose(1, 2)  # (B, nh, T, hs)
        k = self.wk(x).view(B, T, self.kv_heads, self.head_dim).transpose(1, 2)  # (B, nkv, T, hs)
        v = self.wv(x).view(B, T, self.kv_heads, self.head_dim).transpose(1, 2)  # (B, nkv, T, hs)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        mask, causal = None, True
        if kv is not None:  # inference: attend over the cache, the new tokens included
            k, v, mask, causal = cached_kv(k, v, kv, start_pos)  # 2 x (B, nkv, S, hs)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                           enable_gqa=True)  # (B, nh, T, hs)
        return self.wo(y.transpose(1, 2).reshape(B, T, C))  # (B, T, C)


class SparseMoE(nn.Module):
    """Top-k token-choice router over E SwiGLU experts with a fixed capacity per expert."""

    def __init__(self, hidden: int, ffn: int, experts: int, top_k: int, capacity_factor: float):
        super().__init__()
        if not 1 <= top_k <= experts:
            raise ValueError(f"top_k={top_k} must be between 1 and experts={experts}")
        if capacity_factor <= 0:
            raise ValueError(f"capacity_factor={capacity_factor} must be positive")
        self.experts, self.top_k, self.capacity_factor = experts, top_k, capacity_factor
        self.gate = nn.Linear(hidden, experts, bias=False)  # router
        # stacked SwiGLU expert weights: w2(silu(x w1) · x w3) per expert
        self.w1 = nn.Parameter(torch.empty(experts, hidden, ffn))
        self.w3 = nn.Parameter(torch.empty(experts, hidden, ffn))
        self.w2 = nn.Parameter(torch.empty(experts, ffn, hidden))
        for w in (self.w1, self.w3, self.w2):
            nn.init.normal_(w, std=w.shape[1] ** -0.5)

    def capacity(self, n_tokens: int) -> int:
        # Switch Transformers Sec. 2.2: tokens_per_batch / experts · capacity_factor, times top_k
        return math.ceil(self.top_k * n_tokens / self.experts * self.capacity_factor)

    def forward(self, x):
        B, T, H = x.shape
        E, K = self.experts, self.top_k
        N = B * T
        C = self.capacity(N)
        xf = x.reshape(N, H)  # (N, H)
        logits = self.gate(xf)  # (N, E)
        top_logits, top_idx = logits.topk(K, dim=-1)  # 2 x (N, K)
        weights = F.softmax(top_logits, dim=-1)  # (N, K), Mixtral Eq. 1: softmax over the top-k
        # choice-major order (K, N): every token's first choice gets a slot before any second choice
        expert = top_idx.t().reshape(K * N)  # (K·N,)
        onehot = F.one_hot(expert, E)  # (K·N, E)
        slot = ((onehot.cumsum(0) - 1) * onehot).sum(-1)  # (K·N,) position within its expert
        keep = slot < C  # (K·N,) over capacity -> dropped
        # dropped choices go to one spare row E·C, which is discarded on the way in and zero out
        dest = torch.where(keep, expert * C + slot, torch.full_like(slot, E * C))  # (K·N,)
        src = xf.repeat(K, 1)  # (K·N, H), same (K, N) order as dest
        buf = xf.new_zeros(E * C + 1, H).index_add(0, dest, src)  # (E·C+1, H)
        xe = buf[: E * C].view(E, C, H)  # (E, C, H)
        h = F.silu(torch.bmm(xe, self.w1)) * torch.bmm(xe, self.w3)  # (E, C, F)
        ye = torch.bmm(h, self.w2).view(E * C, H)  # (E·C, H)
        ye = torch.cat((ye, ye.new_zeros(1, H)), dim=0)  # (E·C+1, H); spare row reads zero
        y = ye.index_select(0, dest)  # (K·N, H)
        y = y * weights.t().reshape(K * N, 1)  # (K·N, H)
        return y.view(K, N, H).sum(0).view(B, T, H)  # (B, T, H)


class Block(nn.Module):
    def __init__(self, hidden, heads, kv_heads, ffn, experts, top_k, capacity_factor):
        super().__init__()
        self.attention_norm = RMSNorm(hidden)
        self.attention = Attention(hidden, heads, kv_heads)
        self.ffn_norm = RMSNorm(hidden)
        self.moe = SparseMoE(hidden, ffn, experts, top_k, capacity_factor)

    def forward(self, x, cos, sin, kv=None, start_pos: int = 0):
        x = x + self.attention(self.attention_norm(x), cos, sin,
                               kv=kv, start_pos=start_pos)  # (B, T, C)
        x = x + self.moe(self.ffn_norm(x))  # (B, T, C)
        return x


class MoETransformer(nn.Module):
    def __init__(self, layers, hidden, heads, kv_heads, ffn, vocab, experts, top_k,
                 capacity_factor, rope_theta):
        super().__init__()
        self.vocab = vocab
        self.head_dim = hidden // heads
        self.rope_theta = rope_theta
        self.tok_embeddings = nn.Embedding(vocab, hidden)
        self.layers = nn.ModuleList(
            Block(hidden, heads, kv_heads, ffn, experts, top_k, capacity_factor)
            for _ in range(layers)
        )
        self.norm = RMSNorm(hidden)
        self.output = nn.Linear(hidden, vocab, bias=False)  # untied

    def forward(self, idx, cache=None, start_pos: int = 0):
        """Logits (B, T, V); with a ``cache`` (from :func:`kv_cache`) the T tokens sit at
        positions start_pos.. and only the last position's logits (B, 1, V) are returned."""
        B, T = idx.shape
        x = self.tok_embeddings(idx)  # (B, T, C)
        cos, sin = rope_cos_sin(T, self.head_dim, self.rope_theta, x, start_pos)  # 2 x (T, hs)
        if cache is None:
            for block in self.layers:
                x = block(x, cos, sin)  # (B, T, C)
            return self.output(self.norm(x))  # (B, T, V)
        for block, kv in zip(self.layers, cache, strict=True):
            x = block(x, cos, sin, kv, start_pos)  # (B, T, C)
        return self.output(self.norm(x[:, -1:]))  # (B, 1, V): the head on the last token only


def _positive(**sizes) -> None:
    """Refuse sizes no model has (archcost types --set values; their domain is the builder's)."""
    for key, value in sizes.items():
        if value is not None and value < 1:
            raise ValueError(f"{key}={value} must be >= 1")


def build_model(
    *,
    preset: str = "mixtral-8x7b",
    layers: int | None = None,
    hidden: int | None = None,
    heads: int | None = None,
    kv_heads: int | None = None,
    ffn: int | None = None,
    vocab: int | None = None,
    experts: int | None = None,
    top_k: int | None = None,
    capacity_factor: float = 1.0,
    rope_theta: float = 1000000.0,
) -> nn.Module:
    if preset not in PRESETS:
        raise ValueError(f"preset={preset!r} is unknown; use one of {', '.join(PRESETS)}")
    given = dict(layers=layers, hidden=hidden, heads=heads, kv_heads=kv_heads, ffn=ffn,
                 vocab=vocab, experts=experts, top_k=top_k)
    cfg = {**PRESETS[preset], **{k: v for k, v in given.items() if v is not None}}
    _positive(**cfg)
    if rope_theta <= 0:
        raise ValueError(f"rope_theta={rope_theta} must be positive")
    return MoETransformer(**cfg, capacity_factor=capacity_factor, rope_theta=rope_theta)


def example_inputs(batch_size: int, seq_len: int, model: nn.Module):
    """Token ids (batch_size, seq_len) drawn from the model's vocabulary."""
    return (torch.randint(0, model.vocab, (batch_size, seq_len)),)


def loss(output, inputs):
    """Next-token cross entropy; targets are the inputs shifted left (last target wraps)."""
    targets = torch.roll(inputs[0], -1, dims=1)  # (B, T)
    return F.cross_entropy(output.flatten(0, 1).float(), targets.flatten())


def kv_cache(model: MoETransformer, batch_size: int, max_len: int, dtype=None) -> list:
    """An empty KV cache: per layer a (K, V) pair of zeros shaped (batch_size, kv_heads, max_len,
    head_dim) in ``dtype`` (None: the parameters' dtype), on the parameters' device."""
    w = model.output.weight
    return [tuple(torch.zeros(batch_size, block.attention.kv_heads, max_len, model.head_dim,
                              dtype=dtype or w.dtype, device=w.device) for _ in range(2))
            for block in model.layers]
