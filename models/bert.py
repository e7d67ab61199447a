"""BERT-base encoder with its masked-language-model head.

Architecture: Devlin et al. 2019, "BERT: Pre-training of Deep Bidirectional Transformers", Sec. 3
(BERT-base: 12 layers, hidden 768, 12 heads, FFN 3072; token + segment + learned position
embeddings); post-LN blocks as in Vaswani et al. 2017, Sec. 3.1; the MLM head (dense + GELU +
LayerNorm, decoder tied to the word embeddings, output bias) as in Google's ``run_pretraining.py``.

Parameter count: V·h + P·h + 2h + 2h (embeddings and their LayerNorm) + l·(12h² + 13h)
+ (h² + h + 2h + V) (MLM head; its decoder weight is the word embedding). BERT-base
(V=30522, P=512): 109,514,298, the count of Hugging Face ``BertForMaskedLM`` (no pooler; the
paper's "110M" includes the pooler and not the MLM head: 109,482,240).

Keys (``--set``): layers=12, hidden=768, heads=12, ffn=3072, vocab=30522, max_positions=512.
The requested seq_len must not exceed max_positions (learned positions).

NB: the MLM head scores every position (as Hugging Face does), not only the ~15% masked ones; no
next-sentence-prediction head; no attention padding mask.
"""

import torch
import torch.nn.functional as F
from torch import nn


class SelfAttention(nn.Module):
    def __init__(self, hidden: int, heads: int):
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden={hidden} is not divisible by heads={heads}")
        self.heads = heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)  # 3 x (B, T, C)
        q = q.view(B, T, self.heads, C // self.heads).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.heads, C // self.heads).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.heads, C // self.heads).transpose(1, 2)  # (B, nh, T, hs)
        y = F.scaled_dot_product_attention(q, k, v)  # (B, nh, T, hs), bidirectional
        return self.proj(y.transpose(1, 2).reshape(B, T, C))  # (B, T, C)


class Block(nn.Module):
    """Post-LN encoder block: LN(x + attn(x)), then LN(x + FFN(x)) (Vaswani et al. 2017)."""

    def __init__(self, hidden: int, heads: int, ffn: int):
        super().__init__()
        self.attn = SelfAttention(hidden, heads)
        self.ln_1 = nn.LayerNorm(hidden, eps=1e-12)
        self.fc1 = nn.Linear(hidden, ffn)
        self.fc2 = nn.Linear(ffn, hidden)
        self.ln_2 = nn.LayerNorm(hidden, eps=1e-12)

    def forward(self, x):
        x = self.ln_1(x + self.attn(x))  # (B, T, C)
        x = self.ln_2(x + self.fc2(F.gelu(self.fc1(x))))  # (B, T, C)
        return x


INITIALIZER_RANGE = 0.02  # BERT's initializer_range (Google's bert_config.json)


def _init_weights(module: nn.Module) -> None:
    """BERT's initialisation (Google's ``modeling.py``, ``create_initializer``; Hugging Face
    ``BertPreTrainedModel._init_weights``): linear and embedding weights from a normal of std
    ``INITIALIZER_RANGE``, biases zero (LayerNorms keep ones and zeros). PyTorch's defaults
    (embeddings from N(0, 1)) give the tied head logits of std ~sqrt(hidden): a cross entropy of
    ~58 at vocabulary 4,096 and hidden 256, not ln(4096) = 8.3, its softmax mostly subnormal
    numbers, which an x86 core multiplies many times slower (the backward's matmuls 3.3x)."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=INITIALIZER_RANGE)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


class BERT(nn.Module):
    def __init__(self, layers, hidden, heads, ffn, vocab, max_positions):
        super().__init__()
        self.vocab, self.max_positions = vocab, max_positions
        self.word_embeddings = nn.Embedding(vocab, hidden)
        self.position_embeddings = nn.Embedding(max_positions, hidden)
        self.token_type_embeddings = nn.Embedding(2, hidden)  # segments A and B
        self.emb_ln = nn.LayerNorm(hidden, eps=1e-12)
        self.layers = nn.ModuleList(Block(hidden, heads, ffn) for _ in range(layers))
        # MLM head; its decoder weight is word_embeddings.weight, read in forward (tied)
        self.mlm_dense = nn.Linear(hidden, hidden)
        self.mlm_ln = nn.LayerNorm(hidden, eps=1e-12)
        self.mlm_bias = nn.Parameter(torch.zeros(vocab))
        self.apply(_init_weights)

    def forward(self, idx, token_type_ids):
        B, T = idx.shape
        if T > self.max_positions:
            raise ValueError(f"sequence length {T} exceeds max_positions={self.max_positions}")
        pos = torch.arange(T, device=idx.device)  # (T,)
        x = (
            self.word_embeddings(idx)
            + self.position_embeddings(pos)
            + self.token_type_embeddings(token_type_ids)
        )  # (B, T, C)
        x = self.emb_ln(x)  # (B, T, C)
        for block in self.layers:
            x = block(x)  # (B, T, C)
        x = self.mlm_ln(F.gelu(self.mlm_dense(x)))  # (B, T, C)
        return F.linear(x, self.word_embeddings.weight, self.mlm_bias)  # (B, T, V)


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
    ffn: int = 3072,
    vocab: int = 30522,
    max_positions: int = 512,
    seq_len: int = 512,
) -> nn.Module:
    """BERT-base by default; raises if the requested seq_len exceeds max_positions."""
    _positive(layers=layers, hidden=hidden, heads=heads, ffn=ffn, vocab=vocab,
              max_positions=max_positions, seq_len=seq_len)
    if seq_len > max_positions:
        raise ValueError(
            f"seq_len={seq_len} exceeds max_positions={max_positions} (BERT's learned positions);"
            f" use a shorter --seq-len or --set max_positions={seq_len}"
        )
    return BERT(layers, hidden, heads, ffn, vocab, max_positions)


def example_inputs(batch_size: int, seq_len: int, model: nn.Module):
    """Token ids and segment ids (0 or 1), each (batch_size, seq_len)."""
    idx = torch.randint(0, model.vocab, (batch_size, seq_len))
    token_type_ids = torch.randint(0, 2, (batch_size, seq_len))
    return (idx, token_type_ids)


def loss(output, inputs):
    """MLM cross entropy at every position; targets are the ids rolled left by one.

    NB: without masking, predicting the ids themselves would be trivial; rolling keeps the task
    non-trivial at the same cost.
    """
    targets = torch.roll(inputs[0], -1, dims=1)  # (B, T)
    return F.cross_entropy(output.flatten(0, 1).float(), targets.flatten())
