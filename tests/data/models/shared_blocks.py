"""Repeated blocks that share tensors made outside them: every decoder layer reads the encoder's
output and the model's RoPE cos/sin (BART, Whisper, decoder LLMs); residual conv blocks save
their output, which the next block saves as its input (ResNet)."""
import torch
import torch.nn.functional as F
from torch import nn


class DecoderLayer(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, d)
        self.ln = nn.LayerNorm(d)

    def forward(self, x, enc, cos, sin):
        q = self.q(self.ln(x)) * cos + self.q(x).flip(-1) * sin  # rotary-style use of cos/sin
        scores = q @ enc.transpose(1, 2)  # cross-attention reads the shared encoder output
        return x + F.softmax(scores, dim=-1) @ self.kv(enc)


class ConvBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1, bias=False)

    def forward(self, x):
        return F.relu(self.conv(x) + x)  # relu saves its output: the next block's input


class Net(nn.Module):
    def __init__(self, style, layers, d=16):
        super().__init__()
        self.style = style
        self.embed = nn.Linear(d, d)
        self.encoder = nn.Linear(d, d)
        if style == "decoder":
            self.layers = nn.ModuleList(DecoderLayer(d) for _ in range(layers))
        else:
            self.stem = nn.Conv2d(1, 4, 3, padding=1)
            self.layers = nn.Sequential(*(ConvBlock(4) for _ in range(layers)))
        self.head = nn.Linear(d, d)

    def forward(self, x):
        if self.style == "decoder":
            t = x.shape[1]
            enc = torch.tanh(self.encoder(x))
            angle = torch.arange(t, dtype=x.dtype)[:, None] * torch.ones(x.shape[-1])
            cos, sin = angle.cos(), angle.sin()
            h = self.embed(x)
            for layer in self.layers:
                h = layer(h, enc, cos, sin)
            return self.head(h)
        h = self.layers(self.stem(x[:, None]))
        return self.head(h.mean(1))


def build_model(style="decoder", layers=3):
    return Net(style, layers)


def example_inputs(batch_size, seq_len):
    return (torch.randn(batch_size, seq_len, 16),)


def loss(out, inputs):
    return out.pow(2).mean()
