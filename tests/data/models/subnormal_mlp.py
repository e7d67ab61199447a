"""A two-layer MLP that scales its hidden activations into the subnormal range (below 1.18e-38
in fp32): every element of that product is subnormal by construction."""
import torch
from torch import nn

SCALE = 1e-39  # |a(x)| < 11.8 stays below fp32's smallest normal once scaled


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(32, 64)
        self.b = nn.Linear(64, 32)

    def forward(self, x):  # (B, 32) -> (B, 32)
        return self.b(self.a(x).clamp(-10.0, 10.0) * SCALE)


def build_model(*, batch_size: int = 4, seq_len: int = 1):
    return Net()


def example_inputs(batch_size: int, seq_len: int):
    return (torch.randn(batch_size, 32),)


def loss(output, inputs):
    return output.pow(2).mean()
