"""Autograd saves buffers: BatchNorm's running statistics, position ids read by an embedding,
an index table read by index_select (as Hugging Face models and Swin keep them)."""
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, t=8, d=16):
        super().__init__()
        self.register_buffer("position_ids", torch.arange(t))
        self.register_buffer("table", torch.arange(t).flip(0))
        self.pos = nn.Embedding(t, d)
        self.fc = nn.Linear(d, d)
        self.bn = nn.BatchNorm1d(d)

    def forward(self, x):
        h = self.fc(x) + self.pos(self.position_ids)
        h = h.index_select(1, self.table)
        return self.bn(h.transpose(1, 2))


def build_model():
    return Net()


def example_inputs(batch_size, seq_len):
    return (torch.randn(batch_size, 8, 16),)
