"""A small valid model file used by the tests."""
import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.ln = nn.LayerNorm(d)
        self.fc = nn.Linear(d, d)

    def forward(self, x):  # (B, T, d) -> (B, T, d)
        return x + torch.nn.functional.gelu(self.fc(self.ln(x)))


class Net(nn.Module):
    def __init__(self, d_in, d, layers, frozen_input):
        super().__init__()
        self.inp = nn.Linear(d_in, d)
        self.layers = nn.ModuleList(Block(d) for _ in range(layers))
        self.out = nn.Linear(d, 4)
        if frozen_input:
            self.inp.requires_grad_(False)

    def forward(self, x):
        x = self.inp(x)
        for layer in self.layers:
            x = layer(x)
        return self.out(x)


def build_model(d_in: int = 16, hidden: int = 32, layers: int = 4, frozen_input: bool = False,
                name: str = "tiny"):
    return Net(d_in, hidden, layers, frozen_input)


def example_inputs(batch_size, seq_len, d_in=16):
    return (torch.randn(batch_size, seq_len, d_in),)


def other_builder(hidden: int = 8):
    return Net(16, hidden, 2, False)

