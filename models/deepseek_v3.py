"""DeepSeek-V3 decoder: multi-head latent attention (MLA) and DeepSeekMoE (shared + routed experts).

Architecture: DeepSeek-AI 2024, "DeepSeek-V3 Technical Report" (arXiv 2412.19437), Sec. 2.1;
sizes from Sec. 4.2 and the published config (``deepseek-ai/DeepSeek-V3`` config.json: hidden
7168, 61 layers of which the first 3 (first_k_dense_replace) have a dense SwiGLU of 18432, the
other 58 one shared and 256 routed experts of 2048, top-8; 128 heads; q_lora_rank 1536,
kv_lora_rank 512, qk_nope_head_dim 128, qk_rope_head_dim 64, v_head_dim 128; vocabulary 129280;
untied embedding and head). RMSNorm before attention and MoE, after the q and kv down-projections.

MLA (Sec. 2.1.1, Eq. 1-11), the form training runs (no weight absorption): queries through a
low-rank bottleneck, c_Q = RMSNorm(W_DQ h), q = W_UQ c_Q split per head into a 128-wide part
without position and a 64-wide RoPE part; keys and values through c_KV = RMSNorm(W_DKV h) and
W_UKV (per head: 128 key, 128 value), plus one decoupled 64-wide RoPE key k_R = RoPE(W_KR h)
shared by every head. Attention runs through ``F.scaled_dot_product_attention`` with q/k head dim
192 and v head dim 128, softmax scale 1/sqrt(192); v is padded with zero columns to 192 and the
output sliced back to 128, as Hugging Face's ``modeling_deepseek_v3`` does for flash attention.

DeepSeekMoE (Sec. 2.1.2, Eq. 12-16): y = x + Σ shared FFN(x) + Σ_i g_i FFN_i(x), affinities
s_i = sigmoid(x·e_i), the top-k of s_i + b_i chosen (b: the bias of auxiliary-loss-free
balancing, a buffer here, zero, updated by a rule outside the gradient, Sec. 2.1.2), gates
g_i = s_i / Σ_topk s_j times the routed scaling factor 2.5 (config ``routed_scaling_factor``).
Routed experts are stacked (E, in, out) parameters run as batched matmuls over a static-shape
capacity dispatch, as ``models/moe.py`` does (GShard Sec. 2.2; Switch Transformers Sec. 2.2):
each expert has C = ceil(top_k·N / E · capacity_factor) slots for the N = B·T tokens, filled by
a gather of the tokens (a permutation, as Megatron-LM's token dispatcher does); the shared
expert is a plain SwiGLU every token passes.

Parameter count, a heads, r_q, r_kv the ranks, d_n, d_r, d_v the head widths, l layers of which
l_d dense, E routed and S shared experts of width f_e, dense width f:
attn = h·r_q + r_q + r_q·a·(d_n + d_r) + h·(r_kv + d_r) + r_kv + r_kv·a·(d_n + d_v) + a·d_v·h,
l·(attn + 2h) + l_d·3h·f + (l − l_d)·((E + S)·3h·f_e + E·h) + 2V·h + h.
DeepSeek-V3: 671,026,404,352 (the report's "671B total parameters", Sec. 4.2; the hub's 685B adds
the 14B multi-token-prediction module, which is not built here).

Active parameters per token: the above less the (E − top_k) unchosen routed experts of every MoE
layer and less the input embedding table (a row lookup, no multiply): 36,625,603,584 for
DeepSeek-V3, the report's "37B activated for each token" (Sec. 4.2). With the embedding counted
it is 37.55B, which rounds to 38B: leaving the lookup out is the convention that reproduces the
published figure (the report does not state one).

Inference hook: ``kv_cache(model, batch_size, max_len, dtype=None)`` gives the MLA cache: per
layer, in the (K, V) slots of the convention, the normalized latent c_KV (batch_size, 1,
max_len, kv_rank) and the shared rotated key k_R (batch_size, 1, max_len, qk_rope_dim), what MLA
caches (DeepSeek-V2, Shao et al. 2024, Sec. 2.1.2): (512 + 64)·61 elements per token for
DeepSeek-V3, against 2·128·192·61 for the keys and values of plain multi-head attention.
``forward(idx, cache, start_pos)`` runs the tokens at positions start_pos.. in the absorbed form
(``MLA.absorbed``: W_UK folded into the query, W_UV applied to the attended latent, as
DeepSeek's inference code and serving engines run it) and returns the last position's logits.
NB: the absorbed form pads the latent value with 64 zero columns to the key width 576 for one
SDPA head width, as the training form pads v: its value product counts at 576, not 512.

Keys (``--set``): preset="deepseek-v3" (or "tiny"); layers, dense_layers, hidden, heads, q_rank,
kv_rank, qk_nope_dim, qk_rope_dim, v_dim, ffn, expert_ffn, experts, shared_experts, top_k, vocab
override the preset (None = from the preset); capacity_factor=1.0; rope_theta=10000.0 and
routed_scale=2.5 (the config's).

NB: balanced routing is assumed for cost: with capacity_factor 1 every expert serves exactly
top_k·N/E token slots, as under Megatron's force-balanced routing (the published benchmark's
setting); tokens over an expert's capacity are dropped (DeepSeek-V3 itself drops none, Sec.
2.1.2). The buffer's work is E·C rows whether or not slots are filled.
NB: node-limited routing (each token's experts on at most 4 of 8 expert groups, config n_group and
topk_group) changes which experts are chosen, not how many: it is not modelled. No
multi-token-prediction module (Sec. 2.2) and no complementary sequence-wise balance loss.
NB: the padded v makes the attention core's value product count at width 192: its FLOPs are
(192 + 192)/(192 + 128) = 1.2x those of a kernel taking v at 128 (cuDNN's, which Transformer
Engine runs for MLA), about 3% of DeepSeek-V3's step FLOPs at 4096 tokens. Without the padding
the CPU trace records SDPA's math fallback (S x S scores in memory), far from any GPU stack.
NB: RoPE rotates halves (the "rotate_half" layout) without the YaRN extension (used only after
pre-training, Sec. 4.3, to reach 128K); RMSNorm and RoPE compute in float32, as Hugging Face's
``modeling_deepseek_v3`` does.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

PRESETS = {
    # DeepSeek-V3 report Sec. 4.2 and deepseek-ai/DeepSeek-V3 config.json; tiny is a test size
    "deepseek-v3": dict(
        layers=61, dense_layers=3, hidden=7168, heads=128, q_rank=1536, kv_rank=512,
        qk_nope_dim=128, qk_rope_dim=64, v_dim=128, ffn=18432, expert_ffn=2048, experts=256,
        shared_experts=1, top_k=8, vocab=129280,
    ),
    "tiny": dict(
        layers=3, dense_layers=1, hidden=64, heads=4, q_rank=32, kv_rank=16, qk_nope_dim=16,
        qk_rope_dim=8, v_dim=16, ffn=128, expert_ffn=32, experts=8, shared_experts=1, top_k=2,
        vocab=512,
    ),
}


class RMSNorm(nn.Module):
    """x · rsqrt(mean(x²) + eps) · weight (Zhang & Sennrich 2019, Eq. 4), normalized in float32."""

    def __init__(self, dim: int, eps: float = 1e-6):  # config rms_norm_eps
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        x32 = x.float()
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) \
            * self.weight


def rope_cos_sin(T: int, dim: int, theta: float, like: torch.Tensor, start: int = 0):
    """cos, sin of shape (T, dim) for positions start..start+T-1 (RoFormer Eq. 34, frequencies
    θ^(-2i/d))."""
    inv_freq = 1.0 / theta ** (
        torch.arange(0, dim, 2, dtype=torch.float32, device=like.device) / dim
    )  # (d/2,)
    t = torch.arange(T, dtype=torch.float32, device=like.device)  # (T,)
    if start:
        t = t + start  # the new tokens' positions in a KV cache
    freqs = torch.outer(t, inv_freq)  # (T, d/2)
    emb = torch.cat((freqs, freqs), dim=-1)  # (T, d)
    return emb.cos(), emb.sin()  # float32


def apply_rope(x, cos, sin):
    # x: (B, n, T, d); rotate the pair (x1, x2) of halves by the position's angle, in float32
    x32 = x.float()
    x1, x2 = x32.chunk(2, dim=-1)  # 2 x (B, n, T, d/2)
    return (x32 * cos + torch.cat((-x2, x1), dim=-1) * sin).type_as(x)  # (B, n, T, d)


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


class MLA(nn.Module):
    """Multi-head latent attention (DeepSeek-V3 report Sec. 2.1.1), training form."""

    def __init__(self, hidden, heads, q_rank, kv_rank, qk_nope_dim, qk_rope_dim, v_dim):
        super().__init__()
        if qk_rope_dim % 2:
            raise ValueError(f"qk_rope_dim={qk_rope_dim} must be even (RoPE rotates pairs)")
        self.heads, self.nope, self.rope, self.v_dim = heads, qk_nope_dim, qk_rope_dim, v_dim
        self.kv_rank = kv_rank
        self.wq_a = nn.Linear(hidden, q_rank, bias=False)  # W_DQ
        self.q_norm = RMSNorm(q_rank)
        self.wq_b = nn.Linear(q_rank, heads * (qk_nope_dim + qk_rope_dim), bias=False)  # W_UQ, W_QR
        self.wkv_a = nn.Linear(hidden, kv_rank + qk_rope_dim, bias=False)  # W_DKV, W_KR
        self.kv_norm = RMSNorm(kv_rank)
        self.wkv_b = nn.Linear(kv_rank, heads * (qk_nope_dim + v_dim), bias=False)  # W_UK, W_UV
        self.wo = nn.Linear(heads * v_dim, hidden, bias=False)

    def forward(self, x, cos, sin, cache=None, start_pos: int = 0):
        B, T, _ = x.shape
        H = self.heads
        q = self.wq_b(self.q_norm(self.wq_a(x)))  # (B, T, H·(dn+dr))
        q = q.view(B, T, H, self.nope + self.rope).transpose(1, 2)  # (B, H, T, dn+dr)
        q_nope, q_pe = q.split([self.nope, self.rope], dim=-1)  # (B, H, T, dn), (B, H, T, dr)
        kv, k_pe = self.wkv_a(x).split([self.kv_rank, self.rope], dim=-1)  # (B,T,r_kv), (B,T,dr)
        k_pe = apply_rope(k_pe.unsqueeze(1), cos, sin)  # (B, 1, T, dr): one key for all heads
        if cache is not None:  # inference: the latent form over the cache
            c_kv = self.kv_norm(kv).unsqueeze(1)  # (B, 1, T, r_kv)
            return self.absorbed(q_nope, apply_rope(q_pe, cos, sin), c_kv, k_pe, cache, start_pos)
        q = torch.cat((q_nope, apply_rope(q_pe, cos, sin)), dim=-1)  # (B, H, T, dn+dr)
        kv = self.wkv_b(self.kv_norm(kv))  # (B, T, H·(dn+dv))
        kv = kv.view(B, T, H, self.nope + self.v_dim).transpose(1, 2)  # (B, H, T, dn+dv)
        k_nope, v = kv.split([self.nope, self.v_dim], dim=-1)  # (B, H, T, dn), (B, H, T, dv)
        k = torch.cat((k_nope, k_pe.expand(B, H, T, self.rope)), dim=-1)  # (B, H, T, dn+dr)
        # one head width for q, k and v (zero columns), so SDPA runs a fused kernel (the CPU
        # flash kernel takes one width; with two it falls back to the S x S math path)
        d = max(self.nope + self.rope, self.v_dim)
        q, k, v = (F.pad(t, (0, d - t.shape[-1])) for t in (q, k, v))  # 3 x (B, H, T, d)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                           scale=(self.nope + self.rope) ** -0.5)  # (B, H, T, d)
        y = y[..., : self.v_dim]  # (B, H, T, dv)
        return self.wo(y.transpose(1, 2).reshape(B, T, H * self.v_dim))  # (B, T, C)

    def absorbed(self, q_nope, q_pe, c_kv, k_pe, cache, start_pos: int):
        """Attention over the cached latents with W_UK absorbed into the query and W_UV applied
        after (DeepSeek-V2, Shao et al. 2024, Sec. 2.1.2 and 2.1.3; deepseek-ai/DeepSeek-V3
        ``inference/model.py``, ``attn_impl="absorb"``): scores q_nope·W_UK·c_KV + q_R·k_R, the
        same values as the training form's, without up-projecting the cache."""
        B, H, T, _ = q_nope.shape
        c_all, pe_all, mask, causal = cached_kv(c_kv, k_pe, cache, start_pos)  # (B,1,S,r), (B,1,S,dr)
        w = self.wkv_b.weight.view(H, self.nope + self.v_dim, self.kv_rank)
        w_uk, w_uv = w.split([self.nope, self.v_dim], dim=1)  # (H, dn, r), (H, dv, r)
        q = torch.cat((torch.einsum("bhtd,hdr->bhtr", q_nope, w_uk), q_pe), dim=-1)  # (B,H,T,r+dr)
        k = torch.cat((c_all, pe_all), dim=-1)  # (B, 1, S, r+dr): one latent key for all heads
        v = F.pad(c_all, (0, self.rope))  # (B, 1, S, r+dr): zero columns, one width for SDPA
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                           scale=(self.nope + self.rope) ** -0.5,
                                           enable_gqa=True)  # (B, H, T, r+dr)
        y = torch.einsum("bhtr,hvr->bhtv", y[..., : self.kv_rank], w_uv)  # (B, H, T, dv)
        return self.wo(y.transpose(1, 2).reshape(B, T, H * self.v_dim))  # (B, T, C)


class FeedForward(nn.Module):
    """SwiGLU: w2(silu(w1 x) · w3 x) (Shazeer 2020, Eq. 6); the dense layers and shared experts."""

    def __init__(self, hidden: int, ffn: int):
        super().__init__()
        self.w1 = nn.Linear(hidden, ffn, bias=False)
        self.w3 = nn.Linear(hidden, ffn, bias=False)
        self.w2 = nn.Linear(ffn, hidden, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class DeepSeekMoE(nn.Module):
    """Shared experts plus sigmoid-routed top-k experts with a fixed capacity per expert."""

    def __init__(self, hidden, expert_ffn, experts, shared_experts, top_k, capacity_factor,
                 routed_scale):
        super().__init__()
        if not 1 <= top_k <= experts:
            raise ValueError(f"top_k={top_k} must be between 1 and experts={experts}")
        if capacity_factor <= 0:
            raise ValueError(f"capacity_factor={capacity_factor} must be positive")
        self.experts, self.top_k = experts, top_k
        self.capacity_factor, self.routed_scale = capacity_factor, routed_scale
        self.gate = nn.Linear(hidden, experts, bias=False)  # centroids e_i (Eq. 15)
        # b_i of auxiliary-loss-free balancing: routing only, updated outside the gradient
        self.register_buffer("expert_bias", torch.zeros(experts))
        # stacked SwiGLU routed experts: w2(silu(x w1) · x w3) per expert
        self.w1 = nn.Parameter(torch.empty(experts, hidden, expert_ffn))
        self.w3 = nn.Parameter(torch.empty(experts, hidden, expert_ffn))
        self.w2 = nn.Parameter(torch.empty(experts, expert_ffn, hidden))
        for w in (self.w1, self.w3, self.w2):
            nn.init.normal_(w, std=w.shape[1] ** -0.5)
        # the N_s shared experts of Eq. 12 as one SwiGLU of width N_s·f_e (the config's layout)
        self.shared = FeedForward(hidden, shared_experts * expert_ffn)

    def capacity(self, n_tokens: int) -> int:
        # Switch Transformers Sec. 2.2: tokens_per_batch / experts · capacity_factor, times top_k
        return math.ceil(self.top_k * n_tokens / self.experts * self.capacity_factor)

    def route(self, xf):
        """(N, K) expert indices and gates: top-k of s + b, gates s normalized (Eq. 13-16)."""
        scores = torch.sigmoid(self.gate(xf))  # (N, E), s_i
        top_idx = (scores + self.expert_bias).topk(self.top_k, dim=-1).indices  # (N, K)
        top = scores.gather(1, top_idx)  # (N, K)
        return top_idx, top / top.sum(-1, keepdim=True) * self.routed_scale  # (N, K)

    def forward(self, x):
        B, T, H = x.shape
        E, K = self.experts, self.top_k
        N = B * T
        C = self.capacity(N)
        xf = x.reshape(N, H)  # (N, H)
        top_idx, weights = self.route(xf)  # 2 x (N, K)
        # choice-major order (K, N): every token's first choice gets a slot before any second one
        expert = top_idx.t().reshape(K * N)  # (K·N,)
        onehot = F.one_hot(expert, E)  # (K·N, E)
        slot = ((onehot.cumsum(0) - 1) * onehot).sum(-1)  # (K·N,) position within its expert
        keep = slot < C  # (K·N,) over capacity -> dropped
        # dropped choices go to one spare slot E·C, discarded on the way in and zero on the way out
        dest = torch.where(keep, expert * C + slot, torch.full_like(slot, E * C))  # (K·N,)
        # the token in each slot (N: an empty slot, which reads a zero row): a gather, whose
        # backward needs only the indices (a scatter-add would keep its source for backward)
        token = torch.arange(N, device=x.device).repeat(K)  # (K·N,), same (K, N) order as dest
        slot_token = torch.full((E * C + 1,), N, device=x.device).scatter(0, dest, token)
        xz = torch.cat((xf, xf.new_zeros(1, H)), dim=0)  # (N+1, H); row N reads zero
        xe = xz.index_select(0, slot_token[: E * C]).view(E, C, H)  # (E, C, H)
        h = F.silu(torch.bmm(xe, self.w1)) * torch.bmm(xe, self.w3)  # (E, C, F)
        ye = torch.bmm(h, self.w2).view(E * C, H)  # (E·C, H)
        ye = torch.cat((ye, ye.new_zeros(1, H)), dim=0)  # (E·C+1, H); spare row reads zero
        y = ye.index_select(0, dest) * weights.t().reshape(K * N, 1).to(ye.dtype)  # (K·N, H)
        y = y.view(K, N, H).sum(0) + self.shared(xf)  # (N, H)
        return y.view(B, T, H)  # (B, T, H)


class Block(nn.Module):
    def __init__(self, attn: MLA, hidden: int, ffn: nn.Module):
        super().__init__()
        self.attention_norm = RMSNorm(hidden)
        self.attention = attn
        self.ffn_norm = RMSNorm(hidden)
        self.ffn = ffn  # FeedForward (the first dense_layers) or DeepSeekMoE

    def forward(self, x, cos, sin, cache=None, start_pos: int = 0):
        x = x + self.attention(self.attention_norm(x), cos, sin,
                               cache=cache, start_pos=start_pos)  # (B, T, C)
        x = x + self.ffn(self.ffn_norm(x))  # (B, T, C)
        return x


class DeepSeekV3(nn.Module):
    def __init__(self, layers, dense_layers, hidden, heads, q_rank, kv_rank, qk_nope_dim,
                 qk_rope_dim, v_dim, ffn, expert_ffn, experts, shared_experts, top_k, vocab,
                 capacity_factor, rope_theta, routed_scale):
        super().__init__()
        self.vocab, self.rope_dim, self.rope_theta = vocab, qk_rope_dim, rope_theta

        def block(i):
            attn = MLA(hidden, heads, q_rank, kv_rank, qk_nope_dim, qk_rope_dim, v_dim)
            mlp = FeedForward(hidden, ffn) if i < dense_layers else DeepSeekMoE(
                hidden, expert_ffn, experts, shared_experts, top_k, capacity_factor, routed_scale)
            return Block(attn, hidden, mlp)

        self.tok_embeddings = nn.Embedding(vocab, hidden)
        self.layers = nn.ModuleList(block(i) for i in range(layers))
        self.norm = RMSNorm(hidden)
        self.output = nn.Linear(hidden, vocab, bias=False)  # untied (config tie_word_embeddings)

    def forward(self, idx, cache=None, start_pos: int = 0):
        """Logits (B, T, V); with a ``cache`` (from :func:`kv_cache`) the T tokens sit at
        positions start_pos.. and only the last position's logits (B, 1, V) are returned."""
        B, T = idx.shape
        x = self.tok_embeddings(idx)  # (B, T, C)
        cos, sin = rope_cos_sin(T, self.rope_dim, self.rope_theta, x, start_pos)  # 2 x (T, dr)
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
    preset: str = "deepseek-v3",
    layers: int | None = None,
    dense_layers: int | None = None,
    hidden: int | None = None,
    heads: int | None = None,
    q_rank: int | None = None,
    kv_rank: int | None = None,
    qk_nope_dim: int | None = None,
    qk_rope_dim: int | None = None,
    v_dim: int | None = None,
    ffn: int | None = None,
    expert_ffn: int | None = None,
    experts: int | None = None,
    shared_experts: int | None = None,
    top_k: int | None = None,
    vocab: int | None = None,
    capacity_factor: float = 1.0,
    rope_theta: float = 10000.0,
    routed_scale: float = 2.5,
) -> nn.Module:
    if preset not in PRESETS:
        raise ValueError(f"preset={preset!r} is unknown; use one of {', '.join(PRESETS)}")
    given = dict(layers=layers, dense_layers=dense_layers, hidden=hidden, heads=heads,
                 q_rank=q_rank, kv_rank=kv_rank, qk_nope_dim=qk_nope_dim,
                 qk_rope_dim=qk_rope_dim, v_dim=v_dim, ffn=ffn, expert_ffn=expert_ffn,
                 experts=experts, shared_experts=shared_experts, top_k=top_k, vocab=vocab)
    cfg = {**PRESETS[preset], **{k: v for k, v in given.items() if v is not None}}
    _positive(**{k: v for k, v in cfg.items() if k != "dense_layers"})  # 0 dense layers is valid
    if not 0 <= cfg["dense_layers"] <= cfg["layers"]:
        raise ValueError(f"dense_layers={cfg['dense_layers']} must be between 0 and "
                         f"layers={cfg['layers']}")
    if rope_theta <= 0:
        raise ValueError(f"rope_theta={rope_theta} must be positive")
    return DeepSeekV3(**cfg, capacity_factor=capacity_factor, rope_theta=rope_theta,
                      routed_scale=routed_scale)


def example_inputs(batch_size: int, seq_len: int, model: nn.Module):
    """Token ids (batch_size, seq_len) drawn from the model's vocabulary."""
    return (torch.randint(0, model.vocab, (batch_size, seq_len)),)


def loss(output, inputs):
    """Next-token cross entropy; targets are the inputs shifted left (last target wraps)."""
    targets = torch.roll(inputs[0], -1, dims=1)  # (B, T)
    return F.cross_entropy(output.flatten(0, 1).float(), targets.flatten())


def kv_cache(model: DeepSeekV3, batch_size: int, max_len: int, dtype=None) -> list:
    """An empty MLA cache: per layer the pair (c_KV, k_R) of zeros shaped
    (batch_size, 1, max_len, kv_rank) and (batch_size, 1, max_len, qk_rope_dim), the normalized
    latent and the shared rotated key every head reads (DeepSeek-V2, Sec. 2.1.2), in ``dtype``
    (None: the parameters' dtype), on the parameters' device."""
    w = model.output.weight
    return [tuple(torch.zeros(batch_size, 1, max_len, width, dtype=dtype or w.dtype,
                              device=w.device)
                  for width in (block.attention.kv_rank, block.attention.rope))
            for block in model.layers]
