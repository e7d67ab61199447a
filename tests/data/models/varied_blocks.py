"""Blocks alike in class and parameter shapes that differ in non-tensor settings: each carries
its position (``layer_idx``, a label), every other block runs its projection twice (``twice``, a
setting, like Swin's shifted windows or Gemma's sliding layers) and stochastic depth's rate grows
linearly from 0 (``drop_prob``: a no-op at 0, the same ops at every rate above it)."""
import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, d, layer_idx, twice, drop_prob):
        super().__init__()
        self.fc = nn.Linear(d, d)
        self.layer_idx = layer_idx
        self.twice = twice
        self.drop_prob = drop_prob

    def forward(self, x):
        h = self.fc(x)
        if self.twice:
            h = self.fc(torch.tanh(h))
        if self.drop_prob > 0.0 and self.training:
            keep = (torch.rand(x.shape[0], 1, 1) >= self.drop_prob).to(x.dtype)
            h = h * keep / (1.0 - self.drop_prob)
        return x + h


class Net(nn.Module):
    def __init__(self, layers, max_drop, d=16):
        super().__init__()
        self.embed = nn.Linear(d, d)
        self.layers = nn.ModuleList(
            Block(d, i, i % 2 == 1, max_drop * i / max(layers - 1, 1)) for i in range(layers))
        self.head = nn.Linear(d, d)

    def forward(self, x):
        h = self.embed(x)
        for layer in self.layers:
            h = layer(h)
        return self.head(h)


def build_model(layers=6, max_drop=0.1):
    return Net(layers, max_drop)


def example_inputs(batch_size, seq_len):
    return (torch.randn(batch_size, seq_len, 16),)


def loss(out, inputs):
    return out.pow(2).mean()
