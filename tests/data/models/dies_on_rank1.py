"""A model file whose builder fails on one rank of a distributed run (a user bug that only shows
on some ranks)."""

import os

from torch import nn


def build_model(hidden: int = 16):
    if os.environ.get("RANK") == "1":
        raise RuntimeError("out of disk space on this node")
    return nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))


def example_inputs(batch_size: int, seq_len: int, hidden: int = 16):
    import torch

    return (torch.randn(batch_size, hidden),)
