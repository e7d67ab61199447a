"""GPT-2 / GPT-3 family decoder, nanoGPT-style.

Architecture: Radford et al. 2019, "Language Models are Unsupervised Multitask Learners" (GPT-2:
learned token and position embeddings, pre-LN blocks, final LayerNorm, LM head tied to the token
embedding); Brown et al. 2020, "Language Models are Few-Shot Learners", Table 2.1 (GPT-3 sizes).
Code layout follows Karpathy's nanoGPT ``model.py``.

Parameter count (tied head, ffn = 4h): V·h + P·h + l·(12h² + 13h) + 2h, with P = block_size.
GPT-2 small (l=12, h=768, V=50257, P=1024): 124,439,808 (nanoGPT prints 124M).
GPT-3 175B: ``--set layers=96 --set hidden=12288 --set heads=96 --set vocab=51200
--set ffn=49152`` at seq_len 2048 gives 174.6e9 (Brown et al. report "175.0B").

Keys (``--set``): layers=12, hidden=768, heads=12, vocab=50257, ffn=None (4·hidden),
block_size=None (the requested seq_len), dropout=0.0, bias=True, tie_weights=True,
flash=True.

Inference hook: ``kv_cache(model, batch_size, max_len, dtype=None)``, per layer K and V of
(batch_size, heads, max_len, hidden/heads) (every head cached: multi-head attention), and the
cached ``forward(idx, cache, start_pos)``, as in ``models/llama.py``; start_pos + T must stay
within block_size.

Parallel validation hook (``archcost validate``): ``pipeline_stage`` cuts the blocks into
pipeline stages, the embeddings on the first and the final LayerNorm and head on the last; it
needs an untied head (``tie_weights=False``). No ``tp_plan``: the fused ``c_attn`` projection
would need its q, k and v columns regrouped per rank before column-parallel sharding.

NB: attention masks are causal via SDPA ``is_causal=True``; the CPU SDPA kernel has no FLOP formula
in ``torch.utils.flop_counter`` and counts full (not half) attention when it does.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn


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


class CausalSelfAttention(nn.Module):
    def __init__(self, hidden: int, heads: int, dropout: float, bias: bool, flash: bool = True):
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden={hidden} is not divisible by heads={heads}")
        self.heads = heads
        self.dropout = dropout
        self.flash = flash
        self.attn_drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.c_attn = nn.Linear(hidden, 3 * hidden, bias=bias)  # q, k, v in one matmul
        self.c_proj = nn.Linear(hidden, hidden, bias=bias)
        self.resid_drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x, kv=None, start_pos: int = 0):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)  # 3 x (B, T, C)
        q = q.view(B, T, self.heads, C // self.heads).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.heads, C // self.heads).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.heads, C // self.heads).transpose(1, 2)  # (B, nh, T, hs)
        mask, causal = None, True
        if kv is not None:  # inference: attend over the cache, the new tokens included
            k, v, mask, causal = cached_kv(k, v, kv, start_pos)  # 2 x (B, nh, S, hs)
        if self.flash:
            p = self.dropout if self.training else 0.0
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p,
                                               is_causal=causal)  # (B, nh, T, hs)
        else:  # the explicit attention of Korthikanti et al. 2022, Sec. 4 (no fused kernel)
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))  # (B, nh, T, S)
            if causal:  # keys are the T queries' own positions
                mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()  # (T, T)
            if mask is not None:
                att = att.masked_fill(~mask, float("-inf"))
            att = F.softmax(att, dim=-1)
            y = self.attn_drop(att) @ v  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.resid_drop(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, hidden: int, ffn: int, dropout: float, bias: bool):
        super().__init__()
        self.c_fc = nn.Linear(hidden, ffn, bias=bias)
        self.c_proj = nn.Linear(ffn, hidden, bias=bias)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x):
        # GPT-2 uses the tanh approximation of GELU (Hendrycks & Gimpel 2016)
        return self.drop(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))  # (B, T, C)


class Block(nn.Module):
    """Pre-LN transformer block: x + attn(ln(x)), then x + mlp(ln(x)) (GPT-2 Sec. 2.3)."""

    def __init__(self, hidden: int, heads: int, ffn: int, dropout: float, bias: bool,
                 flash: bool = True):
        super().__init__()
        self.ln_1 = nn.LayerNorm(hidden, bias=bias)
        self.attn = CausalSelfAttention(hidden, heads, dropout, bias, flash)
        self.ln_2 = nn.LayerNorm(hidden, bias=bias)
        self.mlp = MLP(hidden, ffn, dropout, bias)

    def forward(self, x, kv=None, start_pos: int = 0):
        x = x + self.attn(self.ln_1(x), kv=kv, start_pos=start_pos)  # (B, T, C)
        x = x + self.mlp(self.ln_2(x))  # (B, T, C)
        return x


INIT_STD = 0.02  # GPT-2's initializer_range


def _init_weights(module: nn.Module) -> None:
    """GPT-2's initialisation (Radford et al. 2019, Sec. 2.3; nanoGPT ``_init_weights``):
    linear and embedding weights from a normal of std ``INIT_STD``, biases zero; the residual
    projections (``c_proj``) then at std ``INIT_STD / sqrt(2 x layers)``. PyTorch's defaults
    (embeddings from N(0, 1)) give the tied head logits of std ~sqrt(hidden): a cross entropy
    of ~170 at vocabulary 4,096 and hidden 256, its softmax mostly subnormal numbers, which an
    x86 core multiplies many times slower."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=INIT_STD)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


class GPT(nn.Module):
    def __init__(self, layers, hidden, heads, vocab, ffn, block_size, dropout, bias, tie_weights,
                 flash=True):
        super().__init__()
        self.vocab = vocab
        self.block_size = block_size
        self.max_seq_len = block_size  # the longest sequence it runs (archcost infer checks it)
        self.wte = nn.Embedding(vocab, hidden)
        self.wpe = nn.Embedding(block_size, hidden)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.layers = nn.ModuleList(
            Block(hidden, heads, ffn, dropout, bias, flash) for _ in range(layers)
        )
        self.ln_f = nn.LayerNorm(hidden, bias=bias)
        # A tied head reads wte.weight in forward (no second module holding the same Parameter),
        # so the tie survives anything that swaps parameters module by module.
        self.lm_head = None if tie_weights else nn.Linear(hidden, vocab, bias=False)
        self.apply(_init_weights)
        for name, p in self.named_parameters():  # residual projections, scaled by depth
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=INIT_STD / math.sqrt(2 * layers))

    def forward(self, idx, cache=None, start_pos: int = 0):
        """Logits (B, T, V); with a ``cache`` (from :func:`kv_cache`) the T tokens sit at
        positions start_pos.. and only the last position's logits (B, 1, V) are returned."""
        B, T = idx.shape
        if start_pos + T > self.block_size:
            raise ValueError(f"sequence length {start_pos + T} exceeds block_size={self.block_size}")
        pos = torch.arange(T, device=idx.device)  # (T,)
        if start_pos:
            pos = pos + start_pos  # the new tokens' positions in a KV cache
        x = self.drop(self.wte(idx) + self.wpe(pos))  # (B, T, C)
        if cache is None:
            for block in self.layers:
                x = block(x)  # (B, T, C)
        else:
            for block, kv in zip(self.layers, cache, strict=True):
                x = block(x, kv, start_pos)  # (B, T, C)
            x = x[:, -1:]  # (B, 1, C): the head on the last token only
        x = self.ln_f(x)  # (B, T, C)
        if self.lm_head is None:
            return F.linear(x, self.wte.weight)  # (B, T, V)
        return self.lm_head(x)  # (B, T, V)


def _positive(**sizes) -> None:
    """Refuse sizes no model has (archcost types --set values; their domain is the builder's)."""
    for key, value in sizes.items():
        if value is not None and value < 1:
            raise ValueError(f"{key}={value} must be >= 1")


def build_model(
    *,
    layers: int = 12,
    hidden: int = 768,
    heads: int = 12,
    vocab: int = 50257,
    ffn: int | None = None,
    seq_len: int = 1024,
    block_size: int | None = None,
    dropout: float = 0.0,
    bias: bool = True,
    tie_weights: bool = True,
    flash: bool = True,
) -> nn.Module:
    """GPT-2 small by default; ``block_size`` (learned positions) defaults to ``seq_len``.

    ``flash=False`` computes attention explicitly (QK^T, softmax, dropout, @V) instead of the
    fused scaled-dot-product kernel, as the activation-memory analysis of Korthikanti et al.
    2022 assumes.
    """
    _positive(layers=layers, hidden=hidden, heads=heads, vocab=vocab, ffn=ffn, seq_len=seq_len,
              block_size=block_size)
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout={dropout} must be in [0, 1)")
    return GPT(
        layers, hidden, heads, vocab, ffn or 4 * hidden, block_size or seq_len, dropout, bias,
        tie_weights, flash,
    )


def example_inputs(batch_size: int, seq_len: int, model: nn.Module):
    """Token ids (batch_size, seq_len) drawn from the model's vocabulary."""
    return (torch.randint(0, model.vocab, (batch_size, seq_len)),)


def loss(output, inputs):
    """Next-token cross entropy; targets are the inputs shifted left (last target wraps)."""
    idx = inputs[0]
    targets = torch.roll(idx, -1, dims=1)  # (B, T)
    return F.cross_entropy(output.flatten(0, 1).float(), targets.flatten())


def kv_cache(model: GPT, batch_size: int, max_len: int, dtype=None) -> list:
    """An empty KV cache: per layer a (K, V) pair of zeros shaped (batch_size, heads, max_len,
    hidden/heads) in ``dtype`` (None: the parameters' dtype), on the parameters' device."""
    w = model.wte.weight
    return [tuple(torch.zeros(batch_size, block.attn.heads, max_len,
                              w.shape[1] // block.attn.heads, dtype=dtype or w.dtype,
                              device=w.device) for _ in range(2))
            for block in model.layers]


class Stage(nn.Module):
    """One pipeline stage: token ids (first stage) or the hidden state in, the hidden state or
    (last stage) the logits out. Holds the model's own submodules, not copies."""

    def __init__(self, model: GPT, layers, first: bool, last: bool):
        super().__init__()
        self.first = first
        self.wte = model.wte if first else None
        self.wpe = model.wpe if first else None
        self.drop = model.drop if first else None
        self.layers = nn.ModuleList(model.layers[i] for i in layers)
        self.ln_f = model.ln_f if last else None
        self.lm_head = model.lm_head if last else None

    def forward(self, x):
        if self.first:
            pos = torch.arange(x.shape[1], device=x.device)  # (T,)
            x = self.drop(self.wte(x) + self.wpe(pos))  # (B, T, C)
        for block in self.layers:
            x = block(x)  # (B, T, C)
        if self.lm_head is not None:
            x = self.lm_head(self.ln_f(x))  # (B, T, V)
        return x


def pipeline_stage(model: GPT, layers, first: bool, last: bool) -> nn.Module:
    """The pipeline stage running blocks ``layers`` (indices), with the embeddings when
    ``first`` and the final LayerNorm and head when ``last``."""
    if model.lm_head is None and first != last:
        raise ValueError("tie_weights=True shares the token embedding between the first and the "
                         "last pipeline stage; set --set tie_weights=false")
    return Stage(model, layers, first, last)
