"""Llama 3 decoder: RMSNorm, rotary positions, grouped-query attention, SwiGLU, untied head.

Architecture: Grattafiori et al. 2024, "The Llama 3 Herd of Models", Sec. 3.2 and Table 3 (sizes);
RMSNorm: Zhang & Sennrich 2019; RoPE: Su et al. 2021, "RoFormer"; GQA: Ainslie et al. 2023;
SwiGLU: Shazeer 2020, "GLU Variants Improve Transformer". No biases anywhere.

Parameter count, hd = h/a, kv width g = kv_heads·hd:
l·(2h² + 2h·g + 3h·f + 2h) + 2V·h + h (untied embedding and head, final norm).
8B: 8,030,261,248; 70B: 70,553,706,496; 405B: 405,853,388,800 (Meta's model cards: 8.03B,
70.6B, 405.9B).

Parallel validation hooks (``archcost validate``): ``tp_plan`` shards attention by heads and
SwiGLU by its inner width (Megatron-LM's layout: wq, wk, wv, w1, w3 column-parallel, wo and w2
row-parallel; embedding, norms and head replicated, or with sequence parallelism the norms and
residual stream sharded over the sequence); ``pipeline_stage`` cuts the blocks into stages, the
embedding on the first and the final norm and head on the last.

Inference hook: ``kv_cache(model, batch_size, max_len, dtype=None)`` gives the empty KV cache,
per layer K and V of (batch_size, kv_heads, max_len, head_dim); ``forward(idx, cache,
start_pos)`` runs the tokens at positions start_pos.. against it and returns the last position's
logits only (the loader's docstring states the convention).

Keys (``--set``): preset="8b" (one of 8b, 70b, 405b, tiny); layers, hidden, heads, kv_heads, ffn,
vocab override the preset (None = from the preset); rope_theta=500000.0; gqa="repeat" (or
"native").

Numerics as Meta's reference model (meta-llama/llama3 ``llama/model.py``) and torchtitan's copy
of it (``torchtitan/models/llama/model.py``, 9dec370) run them: RMSNorm normalizes in float32
(``self._norm(x.float()).type_as(x) * self.weight``), RoPE rotates q and k in float32 and casts
back, and with ``gqa="repeat"`` (the default) each key/value head is copied to its query heads
before attention (``repeat_kv``); ``gqa="native"`` hands the grouped heads to SDPA
(``enable_gqa``, no copies), as Transformer Engine's attention takes them.

NB: RoPE cos/sin are computed in forward for the runtime length, so any seq_len traces. RoPE rotates
the two halves of each head (the "rotate_half" layout) in real arithmetic rather than interleaved
pairs as complex numbers as in Meta's reference code; the two are the same map up to a fixed
permutation of the q/k weight rows. No rope frequency scaling (that is Llama 3.1).
"""

import torch
import torch.nn.functional as F
from torch import nn

# "The Llama 3 Herd of Models", Table 3; tiny is a test size
PRESETS = {
    "8b": dict(layers=32, hidden=4096, heads=32, kv_heads=8, ffn=14336, vocab=128256),
    "70b": dict(layers=80, hidden=8192, heads=64, kv_heads=8, ffn=28672, vocab=128256),
    "405b": dict(layers=126, hidden=16384, heads=128, kv_heads=8, ffn=53248, vocab=128256),
    "tiny": dict(layers=2, hidden=64, heads=4, kv_heads=2, ffn=176, vocab=512),
}


class RMSNorm(nn.Module):
    """x · rsqrt(mean(x²) + eps) · weight (Zhang & Sennrich 2019, Eq. 4), as explicit ops."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        x32 = x.float()  # normalized in float32, as Meta's reference model
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) \
            * self.weight


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
    def __init__(self, hidden: int, heads: int, kv_heads: int, gqa: str = "repeat"):
        super().__init__()
        if hidden % heads or heads % kv_heads:
            raise ValueError(f"need hidden % heads == 0 and heads % kv_heads == 0, got "
                             f"hidden={hidden}, heads={heads}, kv_heads={kv_heads}")
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, hidden // heads
        self.repeat = gqa == "repeat"
        self.wq = nn.Linear(hidden, heads * self.head_dim, bias=False)
        self.wk = nn.Linear(hidden, kv_heads * self.head_dim, bias=False)
        self.wv = nn.Linear(hidden, kv_heads * self.head_dim, bias=False)
        self.wo = nn.Linear(heads * self.head_dim, hidden, bias=False)

    def forward(self, x, cos, sin, kv=None, start_pos: int = 0):
        B, T, _ = x.shape
        q = self.wq(x).view(B, T, -1, self.head_dim).transpose(1, 2)  # (B, nh, T, hs)
        k = self.wk(x).view(B, T, -1, self.head_dim).transpose(1, 2)  # (B, nkv, T, hs)
        v = self.wv(x).view(B, T, -1, self.head_dim).transpose(1, 2)  # (B, nkv, T, hs)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        mask, causal = None, True
        if kv is not None:  # inference: attend over the cache, the new tokens included
            k, v, mask, causal = cached_kv(k, v, kv, start_pos)  # 2 x (B, nkv, S, hs)
        S = k.shape[2]
        if self.repeat and q.shape[1] != k.shape[1]:  # repeat_kv: copy each k/v head to its group
            rep = q.shape[1] // k.shape[1]
            k, v = (t[:, :, None].expand(B, t.shape[1], rep, S, self.head_dim)
                    .reshape(B, t.shape[1] * rep, S, self.head_dim) for t in (k, v))  # (B, nh, S, hs)
        # enable_gqa: each group of nh/nkv query heads shares one k/v head (no copies)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                           enable_gqa=not self.repeat)  # (B, nh, T, hs)
        return self.wo(y.transpose(1, 2).reshape(B, T, -1))  # (B, T, C)


class FeedForward(nn.Module):
    """SwiGLU: w2(silu(w1 x) · w3 x) (Shazeer 2020, Eq. 6)."""

    def __init__(self, hidden: int, ffn: int):
        super().__init__()
        self.w1 = nn.Linear(hidden, ffn, bias=False)
        self.w3 = nn.Linear(hidden, ffn, bias=False)
        self.w2 = nn.Linear(ffn, hidden, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))  # (B, T, C)


class Block(nn.Module):
    def __init__(self, hidden: int, heads: int, kv_heads: int, ffn: int, gqa: str = "repeat"):
        super().__init__()
        self.attention_norm = RMSNorm(hidden)
        self.attention = Attention(hidden, heads, kv_heads, gqa)
        self.ffn_norm = RMSNorm(hidden)
        self.feed_forward = FeedForward(hidden, ffn)

    def forward(self, x, cos, sin, kv=None, start_pos: int = 0):
        # the cache by keyword: a tensor-parallel plan lays out the positional inputs only
        x = x + self.attention(self.attention_norm(x), cos, sin,
                               kv=kv, start_pos=start_pos)  # (B, T, C)
        x = x + self.feed_forward(self.ffn_norm(x))  # (B, T, C)
        return x


class Llama(nn.Module):
    def __init__(self, layers, hidden, heads, kv_heads, ffn, vocab, rope_theta, gqa="repeat"):
        super().__init__()
        self.vocab = vocab
        self.head_dim = hidden // heads
        self.rope_theta = rope_theta
        self.tok_embeddings = nn.Embedding(vocab, hidden)
        self.layers = nn.ModuleList(Block(hidden, heads, kv_heads, ffn, gqa)
                                    for _ in range(layers))
        self.norm = RMSNorm(hidden)
        self.output = nn.Linear(hidden, vocab, bias=False)  # untied (Llama 3, Sec. 3.2)

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
    preset: str = "8b",
    layers: int | None = None,
    hidden: int | None = None,
    heads: int | None = None,
    kv_heads: int | None = None,
    ffn: int | None = None,
    vocab: int | None = None,
    rope_theta: float = 500000.0,
    gqa: str = "repeat",
) -> nn.Module:
    if preset not in PRESETS:
        raise ValueError(f"preset={preset!r} is unknown; use one of {', '.join(PRESETS)}")
    if gqa not in ("repeat", "native"):
        raise ValueError(f"gqa={gqa!r} is unknown; use repeat or native")
    given = dict(layers=layers, hidden=hidden, heads=heads, kv_heads=kv_heads, ffn=ffn, vocab=vocab)
    cfg = {**PRESETS[preset], **{k: v for k, v in given.items() if v is not None}}
    _positive(**cfg)
    if rope_theta <= 0:
        raise ValueError(f"rope_theta={rope_theta} must be positive")
    return Llama(**cfg, rope_theta=rope_theta, gqa=gqa)


def example_inputs(batch_size: int, seq_len: int, model: nn.Module):
    """Token ids (batch_size, seq_len) drawn from the model's vocabulary."""
    return (torch.randint(0, model.vocab, (batch_size, seq_len)),)


def loss(output, inputs):
    """Next-token cross entropy; targets are the inputs shifted left (last target wraps)."""
    targets = torch.roll(inputs[0], -1, dims=1)  # (B, T)
    return F.cross_entropy(output.flatten(0, 1).float(), targets.flatten())


def kv_cache(model: Llama, batch_size: int, max_len: int, dtype=None) -> list:
    """An empty KV cache: per layer a (K, V) pair of zeros shaped (batch_size, kv_heads, max_len,
    head_dim) in ``dtype`` (None: the parameters' dtype), on the parameters' device."""
    w = model.output.weight
    return [tuple(torch.zeros(batch_size, block.attention.kv_heads, max_len, model.head_dim,
                              dtype=dtype or w.dtype, device=w.device) for _ in range(2))
            for block in model.layers]


def tp_plan(model: Llama, sequence_parallel: bool = False) -> dict:
    """``parallelize_module`` plan of the tensor-parallel layout (Shoeybi et al. 2019, Sec. 3).

    Each block's attention and feed-forward input is made one replicated DTensor, so the
    backward all-reduces its gradient once per sub-layer, not once per column-parallel linear.
    With ``sequence_parallel`` (Korthikanti et al. 2022, Sec. 4.2.2) the norms and the residual
    stream are sharded over the sequence: all-gather before, reduce-scatter after each
    sub-layer; the replicated embedding's output is split locally and the head's input gathered.
    """
    from torch.distributed.tensor import Replicate, Shard
    from torch.distributed.tensor.parallel import (
        ColwiseParallel,
        PrepareModuleInput,
        PrepareModuleOutput,
        RowwiseParallel,
        SequenceParallel,
    )

    stream = Shard(1) if sequence_parallel else Replicate()
    plan: dict = {}
    if sequence_parallel:
        plan["tok_embeddings"] = PrepareModuleOutput(output_layouts=Replicate(),
                                                     desired_output_layouts=Shard(1))
        plan["norm"] = SequenceParallel()
        plan["output"] = PrepareModuleInput(input_layouts=Shard(1),
                                            desired_input_layouts=Replicate(),
                                            use_local_output=True)
    for i in range(len(model.layers)):
        p = f"layers.{i}."
        plan[p + "attention"] = PrepareModuleInput(input_layouts=(stream, None, None),
                                                   desired_input_layouts=(Replicate(), None, None))
        plan[p + "feed_forward"] = PrepareModuleInput(input_layouts=(stream,),
                                                      desired_input_layouts=(Replicate(),))
        for name in ("attention.wq", "attention.wk", "attention.wv", "feed_forward.w1",
                     "feed_forward.w3"):
            plan[p + name] = ColwiseParallel()
        for name in ("attention.wo", "feed_forward.w2"):
            plan[p + name] = RowwiseParallel(output_layouts=stream)
        if sequence_parallel:
            plan[p + "attention_norm"] = SequenceParallel()
            plan[p + "ffn_norm"] = SequenceParallel()
    return plan


class Stage(nn.Module):
    """One pipeline stage: token ids (first stage) or the hidden state in, the hidden state or
    (last stage) the logits out. Holds the model's own submodules, not copies."""

    def __init__(self, model: Llama, layers, first: bool, last: bool):
        super().__init__()
        self.head_dim, self.rope_theta = model.head_dim, model.rope_theta
        self.tok_embeddings = model.tok_embeddings if first else None
        self.layers = nn.ModuleList(model.layers[i] for i in layers)
        self.norm = model.norm if last else None
        self.output = model.output if last else None

    def forward(self, x):
        if self.tok_embeddings is not None:
            x = self.tok_embeddings(x)  # (B, T, C)
        cos, sin = rope_cos_sin(x.shape[1], self.head_dim, self.rope_theta, x)  # 2 x (T, hs)
        for block in self.layers:
            x = block(x, cos, sin)  # (B, T, C)
        if self.output is not None:
            x = self.output(self.norm(x))  # (B, T, V)
        return x


def pipeline_stage(model: Llama, layers, first: bool, last: bool) -> nn.Module:
    """The pipeline stage running blocks ``layers`` (indices), with the embedding when
    ``first`` and the final norm and head when ``last``."""
    return Stage(model, layers, first, last)
