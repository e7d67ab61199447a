"""Vision Transformer ViT-B/16 image classifier.

Architecture: Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words", Sec. 3.1 (Eq. 1-4: patch
embedding, class token, learned 1-D positions, pre-LN encoder, MLP head) and Table 1 (ViT-Base:
12 layers, hidden 768, MLP 3072, 12 heads).

Parameter count, n = (image_size/patch)² patches, c channels, K classes:
(c·p²·h + h) + h + (n+1)·h + l·(12h² + 13h) + 2h + (h·K + K).
ViT-B/16 at 224: 86,567,656 (timm ``vit_base_patch16_224``; the paper's Table 1 says 86M).

Keys (``--set``): image_size=224, patch=16, layers=12, hidden=768, heads=12, ffn=3072,
classes=1000, channels=3.

``example_inputs`` ignores ``seq_len``: the input is a batch of images (B, channels, H, W); the
token count is fixed by the image, (image_size/patch)² + 1.

NB: the classification head is a single linear layer (the fine-tuning head, Sec. 3.1), not the
pre-training MLP head with one hidden layer.
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
        y = F.scaled_dot_product_attention(q, k, v)  # (B, nh, T, hs), not causal
        return self.proj(y.transpose(1, 2).reshape(B, T, C))  # (B, T, C)


class Block(nn.Module):
    """Pre-LN encoder block (Eq. 2-3): x + MSA(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, hidden: int, heads: int, ffn: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden, eps=1e-6)
        self.attn = SelfAttention(hidden, heads)
        self.norm2 = nn.LayerNorm(hidden, eps=1e-6)
        self.fc1 = nn.Linear(hidden, ffn)
        self.fc2 = nn.Linear(ffn, hidden)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))  # (B, T, C)
        x = x + self.fc2(F.gelu(self.fc1(self.norm2(x))))  # (B, T, C)
        return x


class ViT(nn.Module):
    def __init__(self, image_size, patch, layers, hidden, heads, ffn, classes, channels):
        super().__init__()
        if image_size % patch:
            raise ValueError(f"image_size={image_size} is not a multiple of patch={patch}")
        self.image_size, self.channels = image_size, channels
        n_patches = (image_size // patch) ** 2
        self.patch_embed = nn.Conv2d(channels, hidden, kernel_size=patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, hidden))
        self.pos_embed = nn.Parameter(torch.empty(1, n_patches + 1, hidden))
        nn.init.normal_(self.pos_embed, std=0.02)
        self.layers = nn.ModuleList(Block(hidden, heads, ffn) for _ in range(layers))
        self.norm = nn.LayerNorm(hidden, eps=1e-6)
        self.head = nn.Linear(hidden, classes)

    def forward(self, img):
        B = img.shape[0]
        x = self.patch_embed(img)  # (B, C, H/p, W/p)
        x = x.flatten(2).transpose(1, 2)  # (B, n, C)
        x = torch.cat((self.cls_token.expand(B, -1, -1), x), dim=1)  # (B, n+1, C)
        x = x + self.pos_embed  # (B, n+1, C)
        for block in self.layers:
            x = block(x)  # (B, n+1, C)
        return self.head(self.norm(x)[:, 0])  # (B, K) from the class token


def _positive(**sizes) -> None:
    """Refuse sizes no model has (archcost types --set values; their domain is the builder's)."""
    for key, value in sizes.items():
        if value is not None and value < 1:
            raise ValueError(f"{key}={value} must be >= 1")


def build_model(
    *,
    image_size: int = 224,
    patch: int = 16,
    layers: int = 12,
    hidden: int = 768,
    heads: int = 12,
    ffn: int = 3072,
    classes: int = 1000,
    channels: int = 3,
) -> nn.Module:
    _positive(image_size=image_size, patch=patch, layers=layers, hidden=hidden, heads=heads,
              ffn=ffn, classes=classes, channels=channels)
    return ViT(image_size, patch, layers, hidden, heads, ffn, classes, channels)


def example_inputs(batch_size: int, seq_len: int, model: nn.Module):
    """Images (batch_size, channels, image_size, image_size); ``seq_len`` is ignored."""
    s = model.image_size
    return (torch.randn(batch_size, model.channels, s, s),)


def loss(output, inputs):
    """Cross entropy against class 0 for every image (labels made here, not an input)."""
    labels = torch.zeros(output.shape[0], dtype=torch.long, device=output.device)  # (B,)
    return F.cross_entropy(output.float(), labels)
