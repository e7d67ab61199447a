"""An input embedding tied to the output projection, nanoGPT style."""
import torch
from torch import nn


class Tied(nn.Module):
    """An input embedding tied to the output projection, nanoGPT style."""

    def __init__(self, vocab, d):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.head = nn.Linear(d, vocab, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, idx):
        return self.head(self.emb(idx))


def build_model(vocab: int = 50, hidden: int = 8):
    return Tied(vocab, hidden)


def example_inputs(batch_size, seq_len):
    return (torch.randint(0, 50, (batch_size, seq_len)),)
